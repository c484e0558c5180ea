"""The toy's "camera" stage: its batches' motion mix (toy/data.py MotionMix), draws of the other
stages unchanged to the bit, the last-block loss, and `--from-weights` (a run from exported fp16
weights at the camera stage, through dmd, resumed bit-exactly)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dysink_cli.errors import ConfigError
from dysink_cli.model.rope import wan_frequencies
from dysink_cli.toy import checkpoint as ckpt
from dysink_cli.toy.data import (
    CAMERA_MIX,
    OPENING_PROBABILITY,
    TEACHER_MIX,
    Layout,
    MotionMix,
    dit_batch,
    opening_layout,
    plan_sample,
    random_world,
    sample_layout,
)
from dysink_cli.toy.models import new_toy_networks
from dysink_cli.toy.profiles import PROFILES
from dysink_cli.toy.train import export, main, start_from_weights
from dysink_cli.toy.train_dit import Blocks, Schedule, teacher_forcing_loss
from dysink_cli.toy.trainer import Trainer
from dysink_cli.toy.world import velocity

MICRO = PROFILES["micro"]
CPU = torch.device("cpu")
# Digests of seeded draws, taken with the code before the "camera" stage existed: the "dit", "sf",
# "text" and "dmd" stages must draw exactly what they drew (same rng calls in the same order).
PLAN_DIGEST = "5166907b1cec6ade"
BATCH_DIGEST = "31ddf807cc03487e"


def _plan_digest(mix: MotionMix | None = None) -> str:
    """Seeded layouts and samples (the defaults omitted unless `mix`) hashed with the rng's next draw."""
    rng, h = random.Random(11), hashlib.sha256()
    for i in range(60):
        if i % 5 == 0:
            layout = opening_layout(rng)
        else:
            layout = sample_layout(rng) if mix is None else sample_layout(rng, mix.openings)
        world = random_world(rng)
        s = plan_sample(rng, world, layout) if mix is None else plan_sample(rng, world, layout, mix)
        paths = [[round(v, 3) for v in p.flatten().tolist()] for p in (s.chain_path, *s.far_paths)]
        h.update(repr((layout, s.theme, s.motion, s.caption, s.chain_start, s.far_starts, paths)).encode())
    h.update(repr(rng.random()).encode())
    return h.hexdigest()[:16]


def _batch_digest() -> str:
    rng, h = random.Random(7), hashlib.sha256()
    for _ in range(6):
        layout = sample_layout(rng)
        b = dit_batch(rng, layout, 2, 2, CPU, (16, 16))
        h.update(repr((layout, b.captions, b.chain_starts().tolist(), b.far_starts().tolist())).encode())
    h.update(repr(rng.random()).encode())
    return h.hexdigest()[:16]


def test_the_default_draws_are_the_ones_before_the_camera_stage() -> None:
    """If a deliberate change to the toy's data breaks this, recompute both digests from the new code."""
    assert _plan_digest() == PLAN_DIGEST and _batch_digest() == BATCH_DIGEST
    assert _plan_digest(TEACHER_MIX) == PLAN_DIGEST  # the defaults passed explicitly
    assert _plan_digest(CAMERA_MIX) != PLAN_DIGEST  # the digest sees the mix


def _motions(mix: MotionMix, draws: int, seed: int = 0) -> tuple[float, float, float]:
    """(share of 1-block chains, share of switched contexts, share of still contexts under a moving
    prompt), the context's and the prompt's motion read off the samples' camera paths."""
    rng = random.Random(seed)
    single = sum(sample_layout(rng, mix.openings).chain_blocks == 1 for _ in range(draws)) / draws
    world, layout = random_world(rng), Layout(3, 2, "none", 0, False)
    switched, still, moving = 0, 0, 0
    for _ in range(draws):
        s = plan_sample(rng, world, layout, mix)
        ctx, last = s.chain_path[1] - s.chain_path[0], s.chain_path[-1] - s.chain_path[-2]
        assert last.tolist() == pytest.approx(list(velocity(s.motion)))  # the prompt's motion at the end
        switched += not torch.allclose(ctx, last)
        if s.motion != "still":
            moving += 1
            still += bool(ctx.abs().max() == 0)
    return single, switched / draws, still / moving


def test_the_camera_mix_switches_contexts_and_opens_videos_as_asked() -> None:
    single, switched, still = _motions(CAMERA_MIX, 3000)
    assert single == pytest.approx(CAMERA_MIX.openings * 0.75, abs=0.03)  # opening_layout: 1 block 75 %
    assert switched == pytest.approx(CAMERA_MIX.switch, abs=0.03)
    want_still = CAMERA_MIX.switch * (CAMERA_MIX.still + (1 - CAMERA_MIX.still) / 5)  # 5 other motions
    assert still == pytest.approx(want_still, abs=0.04) and still > 0.3
    single, switched, still = _motions(TEACHER_MIX, 3000)
    assert single == pytest.approx(OPENING_PROBABILITY * 0.75, abs=0.03)
    assert switched == pytest.approx(0.25, abs=0.03) and still == pytest.approx(0.05, abs=0.02)


def test_the_camera_loss_trains_the_last_block_alone() -> None:
    dit = new_toy_networks(MICRO.configs, seed=1).dit
    torch.nn.init.normal_(dit.head.head.weight, std=0.1)
    layout = Layout(chain_blocks=3, window_blocks=2, far="none", far_blocks=0, from_start=True)
    gen = torch.Generator().manual_seed(0)
    chain, text = torch.randn(2, 3, 3, 16, 4, 4, generator=gen), torch.randn(2, 5, dit.cfg.text_dim)
    b = Blocks(layout, chain, None, torch.tensor([0, 0]), torch.zeros(2, 0), dit.encode_text(text))
    freqs, schedule = wan_frequencies(dit.cfg.head_dim), Schedule.shipped()
    _, every = teacher_forcing_loss(dit, b, freqs, schedule, torch.Generator().manual_seed(1))
    _, last = teacher_forcing_loss(dit, b, freqs, schedule, torch.Generator().manual_seed(1), True)
    assert every["flow_mse"] != every["last_block"]  # the mean over the three blocks
    assert last["flow_mse"] == last["last_block"]


def _exported(tmp_path: Path) -> Path:
    """fp16 weights exported from a micro trainer whose DiT head is not zero."""
    trainer = Trainer(MICRO, tmp_path / "base", CPU, seed=1)
    with torch.no_grad():
        trainer.nets.dit.head.head.weight.normal_(0, 0.1)
    trainer.set_latent_stats([0.0] * 16, [1.0] * 16)
    path = tmp_path / "weights" / "toy.safetensors"
    export(trainer, path, shipped=False, allow_incomplete=True)
    return path


def _dit_weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    tensors, _ = trainer.state()
    return {k: t.clone() for k, t in tensors.items() if k.split(".")[0] in ("dit", "t5", "fake", "teacher")}


def test_from_weights_runs_camera_then_dmd_and_resumes_bit_exactly(tmp_path: Path) -> None:
    path = _exported(tmp_path)
    whole = Trainer(MICRO, tmp_path / "whole", CPU, seed=2)
    start_from_weights(whole, path)
    for key, t in load_file(str(path)).items():
        prefix, name = key.split(".", 1)
        assert torch.equal(whole.nets.modules()[prefix].state_dict()[name], t.float()), key
    assert whole.stage() == "camera" and not whole.probe.head.weight.any()
    assert whole.latent_stats == (list(MICRO.configs.vae.latent_mean), list(MICRO.configs.vae.latent_std))
    assert whole.runs[0]["from_weights"] == "toy.safetensors" and len(whole.runs[0]["sha256"]) == 16
    assert whole.run(10, None, lambda _: None)
    assert whole.counters.steps["camera"] == 3 and whole.counters.steps["dmd"] == 3
    assert whole.batch is not None and whole.batch.stage == "dmd"  # dmd drew its own batch

    split = Trainer(MICRO, tmp_path / "split", CPU, seed=2)
    start_from_weights(split, path)
    split.run(10, None, lambda _: None, max_steps=4)  # camera done, one dmd step
    assert split.stage() == "dmd" and split.counters.steps["dmd"] == 1
    second = Trainer(MICRO, tmp_path / "split", CPU, seed=0)
    second.load(tmp_path / "split")
    assert second.run(10, None, lambda _: None)
    want, got = _dit_weights(whole), _dit_weights(second)
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key
    assert not torch.equal(want["dit.head.head.weight"], load_file(str(path))["dit.head.head.weight"].float())


def test_the_from_weights_command_saves_resumes_and_refuses_a_used_out(tmp_path: Path) -> None:
    path, out = _exported(tmp_path), tmp_path / "ckpt"
    common = ["--out", str(out), "--profile", "micro", "--device", "cpu"]
    assert main([*common, "--from-weights", str(path), "--minutes", "0"]) == 0
    assert ckpt.has_checkpoint(out)
    with pytest.raises(ConfigError, match="already holds a checkpoint"):
        main([*common, "--from-weights", str(path)])
    with pytest.raises(ConfigError, match="--resume"):
        main(["--out", str(tmp_path / "other"), "--resume", str(out), "--from-weights", str(path)])
    assert main(common) == 0  # resumes: camera, then dmd, to the end
    resumed = Trainer(MICRO, out, CPU)
    resumed.load(out)
    assert resumed.stage() is None and resumed.counters.steps["camera"] == 3
    shipped = tmp_path / "shipped" / "toy.safetensors"
    assert main([*common, "--export", "--weights", str(shipped)]) == 0
    record = (shipped.parent / "RECORD.md").read_text()
    assert "started from `toy.safetensors` (sha256 " in record and "--from-weights" in record
