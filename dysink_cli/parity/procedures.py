"""The reference procedures a fixture can name, run with dysink's own modules.

Each returns (outputs, decisions): tensors under the fixture's output names, and a log in the
fixture's log.json structure.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from dysink_cli.engine.generator import BlockGenerator
from dysink_cli.engine.loop_spec import LoopSpec
from dysink_cli.engine.memory.bank import MemoryBank
from dysink_cli.engine.memory.descriptors import describe_frames, frames_for_descriptor
from dysink_cli.engine.noise import TensorNoise
from dysink_cli.engine.schedule import denoising_timesteps
from dysink_cli.model.rope import RopeTable, rope_angles, wan_frequencies
from dysink_cli.model.taehv import TAEHV, TAEW2_1, TAEHVConfig
from dysink_cli.parity.fixture import Fixture
from dysink_cli.parity.models import load_dit, load_pe, load_t5, load_vae

Result = tuple[dict[str, Tensor], dict[str, Any]]


@torch.no_grad()
def run_dit_forward(fx: Fixture) -> Result:
    dit = load_dit(fx)
    x, t, context = fx.io["x"], fx.io["t"], fx.io["context"]
    frames, h, w = x.shape[2], x.shape[3] // dit.cfg.patch_size[1], x.shape[4] // dit.cfg.patch_size[2]
    table = RopeTable.from_angles(
        rope_angles(wan_frequencies(dit.cfg.head_dim, dit.cfg.rope_theta), torch.arange(frames), h, w)
    )
    flow = dit(x, t[:, None].expand(-1, frames), dit.encode_text(context), table)
    return {"flow_pred": flow}, {}


@torch.no_grad()
def run_vae(fx: Fixture) -> Result:
    vae = load_vae(fx, fx.config["model"], "weights.safetensors")
    latent = vae.encode(fx.io["video"])
    state = vae.decoder_state()
    per_frame = []
    for i in range(latent.shape[1]):
        frames, state = vae.decode_chunk(latent[:, i : i + 1], state)
        per_frame.append(frames)
    first, state = vae.decode_chunk(latent[:, :1], vae.decoder_state())
    rest, _ = vae.decode_chunk(latent[:, 1:4], state)
    return {
        "latent": latent,
        "decoded_full": vae.decode(latent),
        "decoded_streamed_per_frame": torch.cat(per_frame, dim=1),
        "decoded_streamed_chunks_1_3": torch.cat([first, rest], dim=1),
        "decoded_block_1to3_standalone": vae.decode(latent[:, 1:4]),
    }, {}


@torch.no_grad()
def run_t5(fx: Fixture) -> Result:
    t5 = load_t5(fx)
    raw = t5(fx.io["ids"], fx.io["mask"])
    return {"encoder_out": raw, "prompt_embeds": t5.encode(fx.io["ids"], fx.io["mask"])}, {}


def _pipeline_spec(fx: Fixture) -> LoopSpec:
    p = fx.config["pipeline"]
    local, sink, top_k = p["local_attn_size"], p.get("sink_size", 0), p.get("memory_top_k", 0)
    memory = fx.kind() in ("dysink", "interactive")
    capacity = p.get("initial_kv_cache_frames") or (
        local + p["num_frame_per_block"] * top_k if memory else local
    )
    return LoopSpec(
        policy="dysink" if memory else ("static-sink" if sink else "window"),
        frames_per_block=p["num_frame_per_block"],
        window_frames=local,
        sink_frames=sink,
        capacity_frames=capacity,
        timesteps=_timesteps(p),
        shift=p.get("timestep_shift", 5.0),
        context_timestep=float(p.get("context_noise", 0)),
        top_k=top_k,
        dedup_threshold=p.get("memory_dedup_threshold", 0.95),
        gate_rule="per-entry" if p.get("sink_anomaly_gate") else "off",
        gate_threshold=p.get("sink_anomaly_threshold", 0.5),
        query_blocks=max(1, local // p["num_frame_per_block"]),
        retrieved_bf16_roundtrip=p.get("retrieved_kv_dtype_roundtrip") == "bfloat16",
        zero_cache_on_switch=not p.get("global_sink", False),
    )


def _timesteps(p: dict[str, Any]) -> tuple[float, ...]:
    """The sampler's timesteps, computed from the step list, shift and warp flag (never read from
    the fixture; a fixture that lists `warped_timesteps` must agree, see timestep_check)."""
    steps = tuple(p.get("denoising_step_list", (1000, 750, 500, 250)))
    return tuple(
        denoising_timesteps(steps, p.get("timestep_shift", 5.0), p.get("warp_denoising_step", True)).tolist()
    )


def listed_timesteps(fx: Fixture) -> tuple[tuple[float, ...], tuple[float, ...] | None]:
    """(computed, listed by the fixture or None) timesteps of a pipeline fixture."""
    p = fx.config["pipeline"]
    listed = p.get("warped_timesteps")
    return _timesteps(p), None if listed is None else tuple(float(t) for t in listed)


def _step_noise(fx: Fixture, blocks: int, steps: int, fpb: int) -> Tensor:
    noise = fx.io["step_noise"]
    return noise.reshape(blocks, steps, -1, fpb, *noise.shape[-3:])


@torch.no_grad()
def run_pipeline(fx: Fixture, spec: LoopSpec | None = None, bank: MemoryBank | None = None) -> Result:
    """Causal window / static sink / DySink / interactive DySink rollouts (spec: the loop settings
    to use instead of the fixture's own, e.g. a preset's; bank: an empty bank to use, e.g. one
    that spills to disk, instead of an in-RAM one)."""
    spec, p = spec or _pipeline_spec(fx), fx.config["pipeline"]
    blocks, fpb = p["num_blocks"], spec.frames_per_block
    dit = load_dit(fx)
    decoded: list[Tensor] = []
    if spec.uses_memory:
        vae, pe = load_vae(fx, fx.config["vae"], "vae_weights.safetensors"), load_pe(fx)

    noise = TensorNoise(fx.io["noise"], _step_noise(fx, blocks, len(spec.timesteps) - 1, fpb), fpb)
    gen = BlockGenerator(
        dit,
        spec,
        noise,
        tuple(fx.io["noise"].shape[-2:]),
        bank=bank if bank is not None else MemoryBank(p.get("memory_max_entries") or 0),
    )
    prompts = [fx.io[k] for k in sorted(k for k in fx.io if k.startswith("prompt_embeds"))]
    switches = list(p.get("switch_frame_indices", []))
    gen.set_prompt(dit.encode_text(prompts[0]))
    outputs: dict[str, Tensor] = {}
    log: dict[str, Any] = {"blocks": [], "switches": [], "entry_recaches": []}
    latents, x0_steps, segment = [], [], 0
    for _ in range(blocks):
        if segment < len(switches) and gen.block * fpb >= switches[segment]:
            segment += 1
            record = gen.switch_prompt(dit.encode_text(prompts[segment]))
            log["entry_recaches"] += record.pop("entry_recaches", [])
            log["switches"].append({"switch": segment - 1, **record})
            outputs.update(_switch_snapshot(gen, segment - 1, record))
        out = gen.next_block()
        if spec.uses_memory:  # the reference's descriptor: the block decoded alone
            decoded.append(frames_for_descriptor(vae.decode(out.latents)))
            gen.finish_block(describe_frames(decoded[-1][0], pe))
        out.record["prompt_segment"] = segment
        log["blocks"].append(_jsonable(out.record))
        latents.append(out.latents)
        x0_steps.append(torch.stack(out.x0_per_step))
    outputs["latents"] = torch.cat(latents, dim=1)
    outputs["x0_per_step"] = torch.stack(x0_steps)
    if spec.uses_memory:
        outputs["descriptors"] = torch.stack([b["dedup"]["descriptor"] for b in log["blocks"]])
        outputs["decoded_block_frames"] = torch.stack(decoded)
        for b in log["blocks"]:
            b["dedup"].pop("descriptor")
    return outputs, log


def _switch_snapshot(gen: BlockGenerator, index: int, record: dict[str, Any]) -> dict[str, Tensor]:
    n = len(record["window_recache_frames"]) * gen.tokens_per_frame
    end = gen.cache.local_end
    out = {
        f"switch{index}_window_k": gen.cache.k[:, :, end - n : end].clone(),
        f"switch{index}_window_v": gen.cache.v[:, :, end - n : end].clone(),
    }
    for entry in gen.memory.bank.entries if gen.memory else []:
        out[f"switch{index}_entry{entry.frame_index}_k"] = entry.k.clone()
        out[f"switch{index}_entry{entry.frame_index}_v"] = entry.v.clone()
    return out


@torch.no_grad()
def run_rolling_sink(fx: Fixture, spec: LoopSpec | None = None) -> Result:
    p, rs = fx.config["pipeline"], fx.config["rolling_sink"]
    fpb, blocks, horizon = p["num_frame_per_block"], p["num_blocks"], rs["horizon_frames"]
    spec = spec or LoopSpec(
        policy="rolling-sink",
        frames_per_block=fpb,
        window_frames=horizon,
        capacity_frames=horizon,
        horizon_frames=horizon,
        timesteps=_timesteps(p),
        shift=p.get("timestep_shift", 5.0),
        context_timestep=float(p.get("context_noise", 0)),
    )
    dit = load_dit(fx)
    noise = TensorNoise(fx.io["noise"], _step_noise(fx, blocks, len(spec.timesteps) - 1, fpb), fpb)
    gen = BlockGenerator(dit, spec, noise, tuple(fx.io["noise"].shape[-2:]))
    gen.set_prompt(dit.encode_text(fx.io["prompt_embeds"]))
    latents, x0_steps, passes = [], [], []
    for _ in range(blocks):
        out = gen.next_block()
        latents.append(out.latents)
        x0_steps.append(torch.stack(out.x0_per_step))
        rs_rec = out.record.get("rolling_sink")
        entry = {"block": out.index, "current_start_frame": out.start_frame, "reinserted": rs_rec is not None}
        if rs_rec:
            first = rs_rec["rope_first"]
            entry.update(
                source_frames=rs_rec["source_frames"], rope_positions=list(range(first, first + fpb))
            )
        passes.append(entry)
    return {"output_latents": torch.cat(latents, dim=1), "x0_pred": torch.stack(x0_steps)}, {
        "clean_passes": passes
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (v if isinstance(v, Tensor) else _jsonable(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


@torch.no_grad()
def run_taehv(fx: Fixture) -> Result:
    """The TAEHV decoder (taew2_1 layout): whole and block-streamed decodes, a half-size preview
    (last spatial upsample off), and the encoder."""
    state = load_file(str(fx.path / "weights.safetensors"))
    full = _taehv(state, TAEW2_1)
    latents = fx.io["taehv_latents"]
    streamed, memory = [], full.decoder_state()
    for start in range(0, latents.shape[1], 3):
        frames, memory = full.decode_chunk(latents[:, start : start + 3], memory)
        streamed.append(frames)
    preview = _taehv(state, replace(TAEW2_1, decoder_space_upscale=(True, True, False)))
    return {
        "decoded_full": full.decode(latents),
        "decoded_streamed_blocks": torch.cat(streamed, dim=1),
        "decoded_preview_half": preview.decode(latents),
        "encoded": full.encode(fx.io["taehv_frames"]),
    }, {}


def _taehv(state: dict[str, Tensor], cfg: TAEHVConfig) -> TAEHV:
    model = TAEHV(cfg)
    model.load_state_dict({k: v.float() for k, v in model.fit_state_dict(state).items()}, strict=True)
    return model.eval()


PROCEDURES = {
    "dit_forward": run_dit_forward,
    "vae": run_vae,
    "t5": run_t5,
    "causal": run_pipeline,
    "dysink": run_pipeline,
    "interactive": run_pipeline,
    "rolling_sink": run_rolling_sink,
    "taehv": run_taehv,
}
