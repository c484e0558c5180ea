"""The parity runner over every golden fixture: outputs within tolerance, decisions identical."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file, save_file

from dysink_cli.parity.__main__ import main
from tests.conftest import FIXTURES

ALL = sorted(p for p in FIXTURES.iterdir() if (p / "config.json").is_file())
LONG = {"dysink_rollout", "interactive_switch", "rolling_sink"}  # tens of seconds each on 2 cores
CASES = [pytest.param(p, marks=pytest.mark.slow) if p.name in LONG else p for p in ALL]


@pytest.mark.parametrize("fixture", CASES, ids=[p.name for p in ALL])
def test_fixture_passes(fixture, capsys):
    assert main([str(fixture)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].endswith(" 0 failed")
    assert all(line.startswith("PASS") for line in out[:-1])


def test_save_writes_outputs_and_log(tmp_path, capsys):
    fixture = FIXTURES / "dysink_rollout"
    assert main([str(fixture), "--save", str(tmp_path)]) == 0
    saved = load_file(tmp_path / "dysink_rollout" / "outputs.safetensors")
    assert {"latents", "x0_per_step", "descriptors", "decoded_block_frames"} <= set(saved)
    log = json.loads((tmp_path / "dysink_rollout" / "log.json").read_text())
    assert len(log["blocks"]) == 8


def test_inputs_only_fixture_runs_and_counts_as_passed(tmp_path, capsys):
    """A fixture whose io holds only inputs (no expected outputs, no log) still runs and saves."""
    src = FIXTURES / "causal_window"
    dst = tmp_path / "inputs_only"
    dst.mkdir()
    io = load_file(src / "io.safetensors")
    save_file({k: io[k] for k in ("noise", "step_noise", "prompt_embeds")}, dst / "io.safetensors")
    (dst / "config.json").write_text((src / "config.json").read_text())
    (dst / "weights.safetensors").write_bytes((src / "weights.safetensors").read_bytes())
    assert main([str(dst), "--save", str(tmp_path / "out")]) == 0
    saved = load_file(tmp_path / "out" / "inputs_only" / "outputs.safetensors")
    assert saved["latents"].shape == io["latents"].shape
    assert (saved["latents"] - io["latents"]).abs().max() < 1e-3


def test_wrong_weights_fail(tmp_path, capsys):
    """The comparison is live: a perturbed fixture weight makes the run fail."""
    src = FIXTURES / "causal_window"
    dst = tmp_path / "perturbed"
    dst.mkdir()
    for name in ("config.json", "io.safetensors", "log.json"):
        (dst / name).write_bytes((src / name).read_bytes())
    weights = load_file(src / "weights.safetensors")
    weights["blocks.0.self_attn.q.weight"] = weights["blocks.0.self_attn.q.weight"] * 1.1
    save_file(weights, dst / "weights.safetensors")
    assert main([str(dst)]) == 1
    assert "FAIL" in capsys.readouterr().out
