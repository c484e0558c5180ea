"""`dysink bench revisit` on the CPU with a micro toy weights file, and the pieces behind it: the
scenarios' block arithmetic, PSNR / SSIM / the shift search, and the controls (a frame scored against
its own truth beats them; a bland policy scores at their level)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from dysink_cli.benchmarks.revisit import POLICIES, RevisitBench, RevisitRequest, toy_configs_for
from dysink_cli.benchmarks.revisit_scenarios import FPS, block_start_frame, scenarios
from dysink_cli.benchmarks.revisit_score import GroundTruth, score, ssim, to_unit
from dysink_cli.cli.app import app
from dysink_cli.config import resolve_config
from dysink_cli.errors import WeightsError
from dysink_cli.render.job import RenderJob
from dysink_cli.toy.captions import parse_prompt
from dysink_cli.toy.models import new_toy_networks, toy_state_dict
from dysink_cli.toy.profiles import PROFILES
from dysink_cli.toy.world import World

runner = CliRunner()
XY = torch.tensor([[37.0, -12.0]], dtype=torch.float64)


@pytest.fixture(scope="module")
def micro_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random micro-size toy networks in the shipped layout; the DiT head is random too (not zero),
    so each policy's context changes its frames."""
    nets = new_toy_networks(PROFILES["micro"].configs, seed=4)
    with torch.no_grad():
        nets.dit.head.head.weight.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(1))
    path = tmp_path_factory.mktemp("weights") / "micro.safetensors"
    save_file(toy_state_dict(nets), str(path), metadata={"format": "pt"})
    return path


@pytest.mark.slow  # 36 end-to-end renders (~20 s on 2 cores): make test-all, .ci/run
def test_the_cli_runs_every_policy_on_every_scenario(micro_weights: Path, tmp_path: Path) -> None:
    out, png = tmp_path / "out.json", tmp_path / "out.png"
    args = ["bench", "revisit", "--small", "--weights-file", str(micro_weights), "--json", str(out)]
    # 32x32: the micro model's own size keeps this under half a minute (the harness renders 128x96)
    size = ["--set", "output.width=32", "--set", "output.height=32"]
    result = runner.invoke(app, [*args, "--png", str(png), "--device", "cpu", *size])
    assert result.exit_code == 0, result.output
    assert "start: return to the start: out for 0.75 s" in result.stdout and "control PSNR" in result.stdout
    data = json.loads(out.read_text())
    assert [s["name"] for s in data["scenarios"]] == ["start", "middle", "long"]
    assert set(data["policies"]) == set(POLICIES) and "absent" not in data
    oracle = {"preset": "dysink", "set": [], "descriptors": "true camera position"}
    assert data["policies"]["oracle"] == oracle
    for s in data["scenarios"]:
        places = [r["place"] for r in s["returns"]]
        assert places == {"start": ["P0"] * 3, "middle": ["P1", "P0"], "long": ["P0"]}[s["name"]]
        assert set(s["curves"]["psnr"]) == set(POLICIES)
        assert set(s["retrieval"]) == {"dysink", "dysink-relative", "oracle"}
        assert s["retrieval"]["oracle"]["precision"] == 1.0  # it picks what it would pick
        for row in s["returns"] + s["controls"]:
            assert set(row["scores"]) == set(POLICIES)
            for sc in row["scores"].values():
                values = [sc["psnr"], sc["ssim"], sc["control_psnr"], sc["control_ssim"]]
                assert all(math.isfinite(v) for v in values), sc
                assert all(abs(d) <= 4 for d in sc["shift_px"])
                if row in s["returns"]:
                    assert math.isfinite(sc["free"]["psnr"]) and math.isfinite(sc["free"]["control_psnr"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_oracle_retrieves_by_camera_position(
    micro_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a return the oracle retrieves the first visit's block (and retrieves by the current block's
    position: with the recent blocks' positions it would pick the approach to P0, not P0). No ffmpeg
    is needed (the GPU machine has none): the ground-truth start goes in as a .npy."""

    def no_ffmpeg() -> str:
        raise AssertionError("the revisit bench called ffmpeg")

    monkeypatch.setattr("imageio_ffmpeg.get_ffmpeg_exe", no_ffmpeg)
    size = ("output.width=32", "output.height=32")
    request = RevisitRequest(
        small=True, weights_file=micro_weights, policies=("oracle",), scenarios=("middle",), device="cpu",
        overrides=size,
    )  # fmt: skip
    bench = RevisitBench(request)
    assert bench.networks("oracle").pe is None  # PE-Core is never asked
    (sr,) = bench.run().scenarios
    s, retrieved = sr.scenario, sr.retrieved["oracle"]
    block_of = {block_start_frame(b): b for b in range(s.blocks)}
    first_visit = {v.place: block_of[v.first_frame] for v in s.visits() if not v.repeat}
    returns = [(block_of[v.first_frame], first_visit[v.place]) for v in s.visits() if v.repeat]
    assert returns == [(6, 2), (8, 0)]  # P1, then P0
    for block, first in returns:
        assert first in retrieved[block], (block, retrieved)
    assert sr.precision["oracle"] == 1.0
    assert sr.to_json()["retrieval"]["oracle"]["retrieved_blocks"]["8"] == retrieved[8]


def test_the_command_starts_without_torch(tmp_path: Path) -> None:
    probe = (
        "import sys\nfrom typer.testing import CliRunner\nfrom dysink_cli.cli.app import app\n"
        f"r = CliRunner().invoke(app, ['bench', 'revisit', '--json', {str(tmp_path / 'no' / 'x.json')!r}])\n"
        "h = CliRunner().invoke(app, ['bench', 'revisit', '--help'])\n"
        "print(r.exit_code, h.exit_code, 'torch' in sys.modules, 'matplotlib' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=dict(os.environ))
    assert done.stdout.split() == ["2", "0", "False", "False"], done.stderr


def test_a_missing_or_foreign_weights_file_is_one_line(micro_weights: Path, tmp_path: Path) -> None:
    assert toy_configs_for(micro_weights)[0] == "micro"
    result = runner.invoke(app, ["bench", "revisit", "--small", "--weights-file", str(tmp_path / "none")])
    assert result.exit_code == 2 and "not found" in result.output and "Traceback" not in result.output
    foreign = tmp_path / "foreign.safetensors"
    save_file({"dit.x": torch.zeros(2)}, str(foreign))
    with pytest.raises(WeightsError, match="fits none of the toy sizes"):
        toy_configs_for(foreign)


@pytest.mark.parametrize("small", [False, True])
def test_scenarios_prompts_drive_the_path_and_switch_on_leg_starts(small: bool) -> None:
    cfg = resolve_config("dysink", ('model.name="toy"', "output.width=128", "output.height=96"))
    for s in scenarios(small).values():
        for leg in s.legs:
            assert parse_prompt(s.prompt(leg.motion)) == (s.theme, leg.motion)
        for first in (0, s.context_blocks):  # free-running, and after the ground-truth start
            job = RenderJob(s.segments(first), (4 * 3 * (s.blocks - first) - 3) / FPS, Path("x.mp4"), cfg)
            starts = [b - first for b in s.leg_starts() if b > first]
            assert job.plan.blocks == s.blocks - first
            assert [sw.block for sw in job.switches[1:]] == starts
        path, visits = s.path(), s.visits()
        assert path.shape == (s.frames, 2)
        for v in visits:  # a place is one position, held through its still leg
            first = next(u for u in visits if u.place == v.place)
            assert torch.equal(
                path[v.first_frame : v.end_frame],
                path[first.first_frame].expand(v.end_frame - v.first_frame, 2),
            )
    if not small:
        full = scenarios()
        assert [round(v.t) for v in full["start"].visits() if v.repeat] == [8, 16, 25]
        assert [v.place for v in full["middle"].visits() if v.repeat] == ["P1", "P0"]
        back = [v.t for v in full["long"].visits()]
        assert back[1] - back[0] >= 30


def test_psnr_ssim_and_the_shift_search() -> None:
    world = World("desert", 3)
    canvas = world.render(XY - 4, 128 + 8, 96 + 8)
    for shift in [(0, 0), (2, -3), (-4, 4), (1, 0)]:
        moved = world.render(XY + torch.tensor(shift, dtype=torch.float64))
        got = score(moved, canvas)
        assert got.shift_px == shift and got.psnr > 60 and got.ssim > 0.999
    same = score(canvas[:, :, 4:-4, 4:-4], canvas)
    assert same.psnr == pytest.approx(100.0) and same.ssim == pytest.approx(1.0, abs=1e-9)
    x = world.render(XY)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-12)
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    assert ssim(x, noise).item() < 0.2 and ssim(x, noise).item() == pytest.approx(ssim(noise, x).item())


def test_the_truth_beats_the_control_and_blandness_wins_nothing() -> None:
    for s in scenarios(small=True).values():
        truth = GroundTruth(s)
        exact = to_unit(truth.uint8(0, s.frames))  # a perfect policy: the ground truth itself
        colour = exact.mean(dim=(0, 2, 3), keepdim=True).expand_as(exact).contiguous()
        bland = {"grey": torch.full_like(exact, 0.5), "the map's mean colour": colour}
        for row in truth.rows():
            perfect = truth.scores(exact[s.context_frames :], exact, row)
            assert perfect["psnr"] > 55 and perfect["psnr"] > perfect["control_psnr"] + 30
            assert perfect["ssim"] > 0.99 > perfect["control_ssim"] and perfect["shift_px"] == [0, 0]
            if row.kind == "return":
                assert perfect["free"]["psnr"] > perfect["free"]["control_psnr"] + 30
                for name, frames in bland.items():
                    sc = truth.scores(frames[s.context_frames :], frames, row)
                    assert abs(sc["psnr"] - sc["control_psnr"]) < 1.5, (s.name, row.place, name, sc)
                    assert sc["free"]["psnr"] == sc["free"]["control_psnr"], (name, sc)
