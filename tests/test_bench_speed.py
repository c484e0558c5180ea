"""`dysink bench speed` on the CPU (the tiny demo), its refusals, and the pure helpers behind it:
medians of the steady-state blocks and the FLOP count of the floor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dysink_cli.benchmarks.floor import (
    ForwardFlops,
    Rates,
    block_flops,
    block_keys,
    floor_ms,
    forward_flops,
    tokens_per_frame,
)
from dysink_cli.benchmarks.results import pinned_figures, steady_stats
from dysink_cli.benchmarks.speed import SpeedRequest, plan_cases, seconds_for
from dysink_cli.cli.app import app
from dysink_cli.config import resolve_config
from dysink_cli.errors import ConfigError
from dysink_cli.model.config import WAN_1_3B, DiTConfig
from dysink_cli.timeline import plan_frames

runner = CliRunner()
# the keys of bench/results.jsonl so far, plus the ones issue 15 adds
RESULT_KEYS = {
    "date", "device", "commit", "step", "preset", "descriptors", "e2e_fps", "dit_fps", "ttff_s",
    "peak_gpu_gb", "peak_rss_gb", "ms_per_block", "blocks", "frames", "wall_s",
    "decoder", "fp8", "stored",
}  # fmt: skip


def test_tiny_on_the_cpu_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    args = ["bench", "speed", "--preset", "tiny", "--blocks", "3", "--warmup", "1", "--json", str(out)]
    result = runner.invoke(app, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    for figure in ("end-to-end FPS", "DiT-only FPS", "time to first frame", "denoise", "peak host RSS"):
        assert figure in result.stdout
    assert "median of the steady-state blocks after 1 warm-up block" in result.stdout
    assert "x264 is not in it" in result.stdout
    rows = json.loads(out.read_text())
    assert isinstance(rows, list) and len(rows) == 1
    row = rows[0]
    assert RESULT_KEYS <= set(row), RESULT_KEYS - set(row)
    assert row["preset"] == "tiny" and row["blocks"] == 3 and row["warmup_blocks"] == 1
    assert row["frames"] == 4 * 3 * 3 - 3
    assert row["e2e_fps"] > 0 and row["dit_fps"] > row["e2e_fps"]
    assert {"total", "denoise", "clean_pass", "decode", "write"} <= set(row["ms_per_block"])
    assert all(ms >= 0 for ms in row["ms_per_block"].values())
    assert row["ttff_s"] > 0 and row["peak_rss_gb"] > 0 and row["peak_gpu_gb"] is None
    assert {"denoise", "decode"} <= set(row["first_block_ms"])  # what the first frame waited for
    assert row["first_block_ms"]["denoise"] > 0
    assert (row["decoder"], row["fp8"], row["stored"], row["descriptors"]) == (
        "wan",
        False,
        "dedup",
        "standalone",
    )
    assert row["floor"] is None  # CUDA only


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_full_size_preset_on_the_cpu_is_refused(monkeypatch: pytest.MonkeyPatch, device: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = runner.invoke(app, ["bench", "speed", "--preset", "dysink", "--device", device])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 2, lines  # the error, then its fix
    assert "needs a CUDA GPU" in lines[0] and "--preset tiny" in lines[1]


def test_bad_block_counts_are_one_line_errors() -> None:
    result = runner.invoke(app, ["bench", "speed", "--preset", "tiny", "--blocks", "3", "--warmup", "3"])
    assert result.exit_code == 2 and "leaves no steady block" in result.output
    assert "Traceback" not in result.output


def test_help_lists_the_options() -> None:
    result = runner.invoke(app, ["bench", "speed", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--preset", "--decoder", "--blocks", "--warmup", "--weights", "--set", "--descriptors"):
        assert option in result.output
    assert "--json" in result.output and "--device" in result.output
    assert "bench" in runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output


def test_bench_help_loads_no_torch() -> None:
    probe = (
        "import sys\nfrom typer.testing import CliRunner\nfrom dysink_cli.cli.app import app\n"
        "calls = (['bench', '--help'], ['bench', 'speed', '--help'], ['bench', 'speed', '--blocks', 'x'])\n"
        "for args in calls:\n"
        "    print(CliRunner().invoke(app, args).exit_code)\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "0", "2", "False"], done.stdout


def _record(since_loaded_s: float, frames_written: int, **ms: float) -> dict:
    return {"since_loaded_s": since_loaded_s, "frames_written": frames_written, "ms": ms}


def test_steady_stats_are_medians_after_the_warm_up() -> None:
    records = [
        _record(5.0, 9, denoise=4000.0, decode=900.0),  # warm-up: compile, graph capture
        _record(5.5, 21, denoise=300.0, decode=100.0),
        _record(6.1, 33, denoise=350.0, decode=120.0, describe=40.0),
        _record(6.5, 45, denoise=310.0, decode=110.0),
    ]
    steady = steady_stats(records, warmup=1)
    assert steady.block_ms == pytest.approx(500.0)  # median of 500, 600, 400 ms
    assert steady.frames_per_block == 12
    assert steady.stage_ms == pytest.approx({"denoise": 310.0, "decode": 110.0, "describe": 0.0})
    first = steady_stats(records, warmup=0)  # block 0 is timed from the loop's start
    assert first.block_ms == pytest.approx(550.0) and first.frames_per_block == 12
    with pytest.raises(ValueError, match="no steady block"):
        steady_stats(records, warmup=4)


def test_forward_flops_match_a_hand_count() -> None:
    dit = DiTConfig(dim=4, ffn_dim=8, num_heads=2, num_layers=1, text_len=2)
    flops = forward_flops(dit, tokens_per_frame=2, keys_frames=3, frames=1)
    # 2 query tokens x 2 FLOPs x (qkvo 4*16 + cross q,o 2*16 + FFN 2*4*8 = 160 MACs) = 640
    assert flops.linear == 640
    # self: 4 x 2 queries x 6 keys x dim 4 = 192; cross: 4 x 2 queries x 2 text tokens x 4 = 64
    assert flops.attention == 256 and flops.total == 896
    assert (flops + flops).total == 1792
    # 1e12 linear FLOPs at 1 TFLOP/s = 1000 ms; 2e12 attention FLOPs at 4 TFLOP/s = 500 ms
    assert floor_ms(ForwardFlops(1e12, 2e12), Rates(1.0, 4.0)) == pytest.approx(1500.0)


def test_full_size_floor_matches_the_recorded_arithmetic() -> None:
    """bench/RESULTS.md: 9-frame keys 11.7 + 12.6 TFLOP, 39.2 ms; 15 frames 54.4 ms; a DySink block 257 ms."""
    assert tokens_per_frame(WAN_1_3B, 8, 832, 480) == 1560
    h100 = Rates(748.0, 532.0)
    nine = forward_flops(WAN_1_3B, 1560, 9)
    assert nine.linear / 1e12 == pytest.approx(11.7, abs=0.05)
    assert nine.attention / 1e12 == pytest.approx(12.6, abs=0.05)
    assert floor_ms(nine, h100) == pytest.approx(39.2, abs=0.05)
    assert floor_ms(forward_flops(WAN_1_3B, 1560, 15), h100) == pytest.approx(54.4, abs=0.05)
    dysink = resolve_config("dysink")
    assert block_keys(dysink) == [15, 15, 15, 15, 9]
    assert floor_ms(block_flops(dysink, WAN_1_3B, 8), h100) == pytest.approx(257, abs=0.5)
    assert block_keys(resolve_config("longlive")) == [12] * 5


def test_cases_modes_and_stored() -> None:
    request = SpeedRequest(presets=("dysink", "longlive"), descriptors=("standalone", "shared"), blocks=4)
    cases = plan_cases(request)
    assert [(c.preset, c.descriptors, c.stored) for c in cases] == [
        ("dysink", "standalone", "dedup"),
        ("dysink", "shared", "dedup"),
        ("longlive", "none", "none"),
    ]
    every = plan_cases(SpeedRequest(presets=("dysink",), overrides=("dysink.dedup_threshold=1.01",)))
    assert every[0].stored == "all"
    taehv = plan_cases(SpeedRequest(presets=("dysink",), decoder="taehv"))
    assert taehv[0].config.model.decoder == "taehv"
    fast = plan_cases(SpeedRequest(presets=("dysink",), overrides=('dysink.descriptor_decoder="taehv"',)))
    assert fast[0].descriptors == "standalone-taehv"
    for cfg in (c.config for c in cases):
        assert plan_frames(seconds_for(7, cfg), cfg.output.fps, cfg.engine.frames_per_block).blocks == 7
    with pytest.raises(ConfigError, match="takes no --weights"):
        plan_cases(SpeedRequest(presets=("tiny",), weights=Path(".")))


def test_pinned_figures_pick_the_host_allocators_bytes_and_time() -> None:
    stats = {
        "allocated_bytes.current": 3e9, "allocated_bytes.peak": 4.5e9, "allocated_bytes.freed": 1e9,
        "active_requests.peak": 7, "host_alloc_time.total": 2500.0, "host_alloc_time.max": 900.0,
    }  # fmt: skip
    assert pinned_figures(stats) == {
        "pinned.allocated_bytes.current": 3.0, "pinned.allocated_bytes.peak": 4.5, "pinning_ms": 2.5
    }  # fmt: skip
    assert pinned_figures({}) == {}  # no CUDA: nothing
