"""`dysink bench revisit`: does a cache policy remember a place when the camera comes back to it?

Per scenario (revisit_scenarios.py): (1) the toy world draws the path's ground truth; (2) its first
block goes to the render as `--continue` start frames (exact, a .npy: StartFrames); (3) each policy
renders the rest with the toy model, frames kept in memory by a CaptureSink; (4) at each return the
frames are scored against the truth of that camera position (revisit_score.py, one shift of +-4 px),
beside controls: the same frames against far, never-visited places of the map (`control_*`, their
mean) and the first block on new ground (the no-memory level); (5) the free-running render (no start
frames) scores its returns against its own first visit. The `oracle` is the dysink preset retrieving
and storing by the true camera position (revisit_oracle.py); each DySink-style policy's retrievals
are checked against the oracle's picks from the same candidates. Returns dataclasses, never prints.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from torch import Tensor

from dysink_cli.benchmarks import revisit_oracle as oracle
from dysink_cli.benchmarks.results import commit_id
from dysink_cli.benchmarks.revisit_scenarios import FPS, LATENTS_PER_BLOCK, Scenario, scenarios
from dysink_cli.benchmarks.revisit_score import MAX_SHIFT_PX, GroundTruth, Row, frame_psnr, to_unit
from dysink_cli.benchmarks.speed import seconds_for
from dysink_cli.config import RenderConfig, resolve_config
from dysink_cli.errors import ConfigError, WeightsError
from dysink_cli.io.ffmpeg import NullSink, as_frames
from dysink_cli.model.dit import WanDiT
from dysink_cli.model.pe_core import PECoreVision
from dysink_cli.model.t5 import UMT5Encoder
from dysink_cli.model.vae import WanVAE
from dysink_cli.render.device import DTYPES, resolve_device
from dysink_cli.render.events import BlockDone, Event
from dysink_cli.render.job import RenderJob, StartFrames
from dysink_cli.render.networks import Networks
from dysink_cli.render.session import render
from dysink_cli.toy.models import WEIGHTS_PATH, ToyConfigs, ToyNetworks, load_toy_networks

POLICIES: dict[str, tuple[str, tuple[str, ...]]] = {  # name -> (preset, extra --set)
    "self-forcing": ("self-forcing", ()),
    "longlive": ("longlive", ()),
    "dysink": ("dysink", ()),
    "dysink-relative": ("dysink", ('rope.mode="relative"',)),
    "rolling-sink": ("rolling-sink", ()),
    "lol": ("lol", ()),
    "oracle": ("dysink", ()),  # descriptors from the true camera position, not PE-Core
}
ORACLE = "oracle"
TOY_OUTPUT = ('model.name="toy"', "output.width=128", "output.height=96", f"output.fps={FPS}")


@dataclass(frozen=True)
class RevisitRequest:
    """What the user asked for."""

    small: bool = False
    weights_file: Path = WEIGHTS_PATH
    policies: tuple[str, ...] = tuple(POLICIES)
    scenarios: tuple[str, ...] = ("start", "middle", "long")
    seed: int = 0
    device: str = "auto"
    overrides: tuple[str, ...] = ()


@dataclass
class ScenarioResult:
    scenario: Scenario
    rows: list[Row]
    curves: dict[str, list[float]] = field(default_factory=dict)  # PSNR of each generated frame
    # DySink-style policies: share of retrieved blocks the oracle would pick; block -> retrieved blocks
    precision: dict[str, float | None] = field(default_factory=dict)
    retrieved: dict[str, dict[int, list[int]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        s = self.scenario
        retrieval = {
            p: {"precision": self.precision[p], "retrieved_blocks": {str(b): r for b, r in got.items()}}
            for p, got in self.retrieved.items()
        }
        return {
            "name": s.name, "description": s.description, "theme": s.theme, "map_seed": s.seed,
            "seconds": s.frames / FPS, "context_frames": s.context_frames,
            "returns": [r.to_json() for r in self.rows if r.kind == "return"],
            "controls": [{"kind": r.kind, **r.to_json()} for r in self.rows if r.kind != "return"],
            "curves": {"first_frame": s.context_frames, "fps": FPS, "psnr": self.curves},
            "retrieval": retrieval,
        }  # fmt: skip


@dataclass
class RevisitResult:
    scenarios: list[ScenarioResult]
    policies: dict[str, RenderConfig]
    device: str
    weights: str
    small: bool
    seed: int
    wall_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": commit_id(), "device": self.device, "weights": self.weights, "small": self.small,
            "seed": self.seed, "wall_s": round(self.wall_s, 2), "max_shift_px": MAX_SHIFT_PX,
            "policies": {n: policy_json(n) for n in self.policies},
            "scenarios": [s.to_json() for s in self.scenarios],
        }  # fmt: skip


def policy_json(name: str) -> dict[str, Any]:
    preset, extra = POLICIES[name]
    note = {"descriptors": "true camera position"} if name == ORACLE else {}
    return {"preset": preset, "set": list(extra), **note}


def toy_configs_for(path: Path) -> tuple[str, ToyConfigs]:
    """The toy profile (trainer.PROFILES) whose networks have exactly the file's tensor shapes."""
    from dysink_cli.toy.profiles import PROFILES

    if not path.is_file():
        raise WeightsError(
            f"toy weights file {path} not found", "train and export the toy, or pass --weights-file"
        )
    with safe_open(str(path), "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    for name, profile in PROFILES.items():
        cfgs = profile.configs
        with torch.device("meta"):
            nets = ToyNetworks(
                WanDiT(cfgs.dit), WanVAE(cfgs.vae), UMT5Encoder(cfgs.t5), PECoreVision(cfgs.pe)
            )
        want = {
            f"{p}.{k}": tuple(t.shape) for p, m in nets.modules().items() for k, t in m.state_dict().items()
        }
        if want == shapes:
            return name, cfgs
    raise WeightsError(
        f"{path} fits none of the toy sizes ({', '.join(PROFILES)})",
        "export it with python -m dysink_cli.toy.train",
    )


class CaptureSink(NullSink):
    """NullSink that keeps the frames (uint8 (T, H, W, 3) arrays) in `into`."""

    def __init__(self, *args: Any, into: list[np.ndarray], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.into = into

    def write(self, frames: Any) -> None:
        arr = as_frames(frames, self.width, self.height).copy()
        self.into.append(arr)
        self.frames_written += arr.shape[0]


def policy_config(name: str, overrides: tuple[str, ...] = ()) -> RenderConfig:
    if name not in POLICIES:
        raise ConfigError(f"--policy {name!r} is not one of {', '.join(POLICIES)}", "e.g. --policy dysink")
    preset, extra = POLICIES[name]
    return resolve_config(preset, (*TOY_OUTPUT, *extra, *overrides))


def check_configs(configs: dict[str, RenderConfig], chosen: list[Scenario]) -> tuple[int, int]:
    """The policies' one output size (width, height); the scenarios' block arithmetic must hold."""
    sizes = {(c.output.width, c.output.height, c.output.fps, c.model.dtype) for c in configs.values()}
    if len(sizes) != 1:
        raise ConfigError(
            f"the policies render at different sizes or dtypes: {sorted(sizes)}", "drop the --set"
        )
    width, height, fps, _ = sizes.pop()
    for name, cfg in configs.items():
        most = max(1, cfg.engine.window_frames // cfg.engine.frames_per_block)
        if fps != FPS or cfg.engine.frames_per_block != LATENTS_PER_BLOCK:
            raise ConfigError(
                f"{name}: the scenarios are laid out at {FPS} fps and {LATENTS_PER_BLOCK} latents a block",
                "drop the --set of output.fps / engine.frames_per_block",
            )
        for s in chosen:
            if s.context_blocks > most:
                raise ConfigError(
                    f"{name} keeps {most} block(s) of context; {s.name} hands in {s.context_blocks}"
                )
    return width, height


class RevisitBench:
    """Loads the toy once, then renders and scores each scenario under each policy."""

    def __init__(self, request: RevisitRequest, on_progress: Callable[[str], None] = lambda _: None) -> None:
        self.request, self.progress = request, on_progress
        known = scenarios(request.small)
        unknown = [s for s in request.scenarios if s not in known]
        if unknown:
            raise ConfigError(
                f"--scenario {unknown[0]!r} is not one of {', '.join(known)}", "e.g. --scenario middle"
            )
        self.scenarios = [known[s] for s in dict.fromkeys(request.scenarios)]
        self.configs = {p: policy_config(p, request.overrides) for p in dict.fromkeys(request.policies)}
        self.size = check_configs(self.configs, self.scenarios)
        self.device = resolve_device(request.device)
        self.profile, toy = toy_configs_for(request.weights_file)
        first = next(iter(self.configs.values()))
        dtype = DTYPES[first.model.dtype] if self.device.type == "cuda" else torch.float32
        self.dit, self.vae, self.t5, self.tokenizer, self.pe = load_toy_networks(
            self.device, dtype, request.weights_file, toy
        )
        self.description = f"toy weights {request.weights_file} ({self.profile} size)"

    @torch.no_grad()
    def embeds(self, prompts: list[str]) -> dict[str, Tensor]:
        """The toy T5's embedding of each prompt, on the CPU (as NetworkSource.encode_prompts)."""
        out = {}
        for prompt in prompts:
            ids, mask = self.tokenizer([prompt])
            out[prompt] = self.t5.encode(ids.to(self.device), mask.to(self.device)).float().cpu()
        return out

    def networks(self, policy: str) -> Networks:
        pe = self.pe if self.configs[policy].engine.policy == "dysink" and policy != ORACLE else None
        return Networks(self.dit, self.vae, pe, self.description)

    def render(
        self, scenario: Scenario, policy: str, start: Path | None, embeds: dict[str, Tensor]
    ) -> tuple[Tensor, list[dict[str, Any]]]:
        """uint8 (T, H, W, 3) frames of one render (after the start frames, or all of them: free)
        and its per-block stats (BlockDone)."""
        cfg, stats = self.configs[policy], []
        describe = oracle.oracle_descriptors(scenario, self.size) if policy == ORACLE else None

        def on_event(event: Event) -> None:
            if isinstance(event, BlockDone):
                stats.append(event.stats)

        first = scenario.context_blocks if start is not None else 0
        captured: list[np.ndarray] = []
        with tempfile.TemporaryDirectory(prefix="dysink-revisit-") as tmp:
            job = RenderJob(
                segments=scenario.segments(first), seconds=seconds_for(scenario.blocks - first, cfg),
                output=Path(tmp) / "revisit.mkv", config=cfg, seed=self.request.seed, device=str(self.device),
                overwrite=True, start=StartFrames(start, "video") if start is not None else None,
            )  # fmt: skip
            assert job.plan.blocks == scenario.blocks - first, (job.plan.blocks, scenario.blocks, first)
            sink = partial(CaptureSink, into=captured)
            render(job, on_event, networks=self.networks(policy), embeds=embeds, sink_factory=sink,
                   block_descriptor=describe)  # fmt: skip
        frames = torch.from_numpy(np.concatenate(captured))
        assert frames.shape[0] == scenario.frames - (scenario.context_frames if start else 0), frames.shape
        return frames, stats

    def run(self) -> RevisitResult:
        started = time.perf_counter()
        results = [self.run_scenario(s) for s in self.scenarios]
        device = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        return RevisitResult(
            results, self.configs, device, self.description, self.request.small, self.request.seed,
            time.perf_counter() - started,
        )  # fmt: skip

    def run_scenario(self, scenario: Scenario) -> ScenarioResult:
        # 1. ground truth: every frame's view, with a margin for the shift search
        truth = GroundTruth(scenario, *self.size)
        embeds = self.embeds(scenario.prompts())
        result = ScenarioResult(scenario, truth.rows())
        with tempfile.TemporaryDirectory(prefix="dysink-revisit-") as tmp:
            # 2. the first block(s) of ground truth, as exact frames to continue from (a .npy:
            # no ffmpeg needed, so the GPU machine without one runs the bench too)
            context = Path(tmp) / "context.npy"
            np.save(context, truth.uint8(0, scenario.context_frames).numpy())
            for policy in self.configs:
                # 3. the renders: from the ground truth, and free-running
                self.progress(f"{scenario.name}: {policy} ({scenario.blocks} blocks, twice)")
                given_uint8, stats = self.render(scenario, policy, context, embeds)
                given, free = to_unit(given_uint8), to_unit(self.render(scenario, policy, None, embeds)[0])
                self.check_retrieval(result, policy, stats)
                # 4.-5. the scores
                curve = frame_psnr(given, truth.canvas[scenario.context_frames :])
                result.curves[policy] = [round(float(p), 2) for p in curve]
                for row in result.rows:
                    row.scores[policy] = truth.scores(given, free, row)
        return result

    def check_retrieval(self, result: ScenarioResult, policy: str, stats: list[dict[str, Any]]) -> None:
        """A DySink-style render's retrieved blocks, and the share the oracle would pick too."""
        cfg = self.configs[policy]
        if cfg.engine.policy == "dysink":
            result.retrieved[policy] = oracle.retrieved_blocks(stats)
            where = oracle.block_positions(result.scenario)
            result.precision[policy] = oracle.retrieval_precision(stats, where, cfg.dysink.top_k, self.size)
