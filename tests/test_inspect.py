"""`dysink inspect`: metrics on hand-made arrays and on synthetic videos written in the test."""

from __future__ import annotations

import json
from pathlib import Path

import imageio_ffmpeg
import matplotlib.image
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from dysink_cli.cli.inspect_cmd import inspect_command
from dysink_cli.diagnostics import metrics
from dysink_cli.diagnostics.plot import build_figure, write_png
from dysink_cli.diagnostics.report import analyze, read_log, report_to_json
from dysink_cli.errors import ConfigError

H, W = 48, 64


def _frame(t: float, square_xy: tuple[float, float], blue: float) -> np.ndarray:
    """A horizontal red ramp, a flat blue level and a white 10x10 square."""
    frame = np.zeros((H, W, 3), dtype=np.uint8)  # (H, W, 3)
    frame[..., 0] = np.linspace(30, 220, W, dtype=np.float32)[None, :].astype(np.uint8)
    frame[..., 1] = 60
    frame[..., 2] = int(blue)
    x, y = (round(float(v)) for v in square_xy)
    frame[y : y + 10, x : x + 10] = 255
    return frame


def drift_frames(n: int) -> np.ndarray:
    """Steady drift away from the start: the square slides, the blue level rises."""
    return np.stack(
        [_frame(t, (2 + 50 * t / (n - 1), 4 + 30 * t / (n - 1)), 30 + 190 * t / (n - 1)) for t in range(n)]
    )


def loop_frames(n: int, period: int = 24) -> np.ndarray:
    """The square circles with a fixed period over a fixed background."""
    angles = 2 * np.pi * np.arange(n) / period
    return np.stack([_frame(0, (27 + 18 * np.cos(a), 19 + 14 * np.sin(a)), 90) for a in angles])


def write_video(path: Path, frames: np.ndarray, fps: int = 16) -> Path:
    """Near-lossless H.264 (crf 0, 4:4:4)."""
    writer = imageio_ffmpeg.write_frames(str(path), (W, H), fps=fps, quality=10, pix_fmt_out="yuv444p")
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    drift = drift_frames(96)
    jump_back = np.concatenate([drift_frames(60), drift_frames(60)[:36]])  # rewinds at frame 60
    return {
        "drift": write_video(root / "drift.mp4", drift),
        "jump_back": write_video(root / "jump_back.mp4", jump_back),
        "loop": write_video(root / "loop.mp4", loop_frames(96)),
    }


# --- pure metrics ---------------------------------------------------------------------------


def test_downscale_is_an_area_average() -> None:
    checker = np.indices((128, 96)).sum(axis=0) % 2 * 255  # (128, 96) 0/255 checkerboard
    frames = np.repeat(checker[None, :, :, None], 3, axis=3).astype(np.uint8)  # (1, 128, 96, 3)
    small = metrics.downscale(frames, 64)
    assert small.shape == (1, 64, 48, 3) and small.dtype == np.float32
    np.testing.assert_allclose(small, 0.5)
    assert metrics.downscale(frames[0], 200).shape == (128, 96, 3)  # never upscales


def test_collapse_curve_hand_values() -> None:
    levels = [0.0, 0.0, 0.2, 0.4, 0.1, 0.4]  # frame t is a flat image at this level
    frames = np.stack([np.full((4, 4, 3), v, dtype=np.float32) for v in levels])
    curve = metrics.collapse_curve(frames, reference_frames=2)
    np.testing.assert_allclose(curve.distance, levels, atol=1e-6)
    np.testing.assert_allclose(curve.peak, [0, 0, 0.2, 0.4, 0.4, 0.4], atol=1e-6)
    np.testing.assert_allclose(curve.drop_pct, [0, 0, 0, 0, 75, 0], atol=1e-4)
    figures = metrics.collapse_figures(curve, reference_frames=2)
    assert figures.drop_max == pytest.approx(75.0) and figures.drop_max_frame == 4
    assert figures.drop_mean == pytest.approx(75.0 / 4)


def test_repeat_curve_matches_brute_force() -> None:
    frames = np.random.default_rng(0).random((40, 4, 5, 3)).astype(np.float32)
    curve = metrics.repeat_curve(frames, min_lag=5, chunk=7)  # several chunks
    assert np.isnan(curve.distance[:5]).all() and (curve.index[:5] == -1).all()
    for t in range(5, 40):
        dists = [metrics.rms_distance(frames[t], frames[s]) for s in range(t - 4)]
        assert curve.index[t] == np.argmin(dists)
        assert curve.distance[t] == pytest.approx(min(dists), abs=1e-6)


def test_repeat_score_loop_high_drift_low() -> None:
    for frames, low, high in ((loop_frames(96), 0.8, 1.0), (drift_frames(96), 0.0, 0.05)):
        small = metrics.downscale(frames)
        score, threshold = metrics.repeat_score(metrics.repeat_curve(small, 16), metrics.step_curve(small))
        assert low <= score <= high and threshold > 0


def test_flicker_constant_and_alternating() -> None:
    constant = np.full((10, 8, 8, 3), 77, dtype=np.uint8)
    assert metrics.flicker(constant) == (0.0, 1.0)
    alternating = np.zeros((10, 8, 8, 3), dtype=np.uint8)
    alternating[1::2] = 255
    assert metrics.flicker(alternating) == (255.0, 0.0)
    assert metrics.flicker(alternating.astype(np.float32) / 255)[0] == pytest.approx(255.0)


# --- videos -----------------------------------------------------------------------------------


def test_smooth_drift_does_not_collapse(videos: dict[str, Path]) -> None:
    report = analyze(videos["drift"])
    assert report.num_frames == 96 and report.fps == pytest.approx(16)
    assert report.collapse_figures.drop_max < 10
    assert report.collapse_figures.drop_mean < 2
    assert report.repeat_score < 0.05


def test_jump_back_collapses(videos: dict[str, Path]) -> None:
    report = analyze(videos["jump_back"])
    figures = report.collapse_figures
    assert figures.drop_max > 90 and figures.drop_max_frame == 60
    assert figures.drop_mean > 15  # 36 of 87 frames fall back, 100% down to ~40%
    assert report.repeat_score > 0.3  # the replayed frames repeat frames 0..35


def test_loop_repeats_in_video(videos: dict[str, Path]) -> None:
    assert analyze(videos["loop"]).repeat_score > 0.8


def test_flicker_of_videos(tmp_path: Path) -> None:
    constant = write_video(tmp_path / "constant.mp4", np.full((20, H, W, 3), 128, dtype=np.uint8))
    assert analyze(constant, reference_frames=2).flicker == pytest.approx(0.0, abs=0.5)
    alternating = np.zeros((20, H, W, 3), dtype=np.uint8)
    alternating[1::2] = 255
    flicker = analyze(write_video(tmp_path / "alt.mp4", alternating), reference_frames=2).flicker
    assert flicker == pytest.approx(255.0, abs=3.0)


def test_png_is_written_and_readable(videos: dict[str, Path], tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    lines = [
        {
            "block": i,
            "start_frame": 9 * i,
            "bank_size": i,
            "retrieved_frames": list(range(0, 9 * i, 9))[-2:],
            "gate_closures": i % 3,
            "gpu_mem_gb": 10.5,
            "rss_gb": 4.0,
            "fps": 15.0 + i,
            "ms": {"dit": 300.0},
        }
        for i in range(10)
    ]
    log.write_text("\n".join(json.dumps(line) for line in lines))
    png = tmp_path / "report.png"
    write_png(analyze(videos["jump_back"], log), png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 500


# --- log ----------------------------------------------------------------------------------------


def test_read_log_tolerates_missing_and_extra_keys(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text('{"block": 0, "bank_size": 3, "new": [1]}\n\n{"block": 1, "fps": 16, "ms": {"vae": 5}}\n')
    blocks = read_log(log)
    assert [b.block for b in blocks] == [0, 1]
    assert blocks[0].bank_size == 3 and blocks[0].fps is None
    assert blocks[1].fps == 16.0 and blocks[1].ms == {"vae": 5.0}


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]", '{"bank_size": "many"}'])
def test_read_log_rejects_malformed_line(tmp_path: Path, bad: str) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text('{"block": 0}\n' + bad + "\n")
    with pytest.raises(ConfigError, match="line 2"):
        read_log(log)


# --- CLI ----------------------------------------------------------------------------------------


def _app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)  # keep `inspect` a subcommand, as in the real app
    app.command("inspect")(inspect_command)
    return app


def test_cli_json(videos: dict[str, Path], tmp_path: Path) -> None:
    png = tmp_path / "out.png"
    result = CliRunner().invoke(_app(), ["inspect", str(videos["jump_back"]), "--json", "-o", str(png)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("collapse_drop_max", "collapse_drop_mean", "repeat_score", "flicker", "curves"):
        assert key in data
    assert data == {**report_to_json(analyze(videos["jump_back"])), "png": str(png)}
    assert len(data["curves"]["collapse_distance"]) == 96 and data["curves"]["repeat_distance"][0] is None
    assert data["log"] is None and png.is_file()


def test_cli_table(videos: dict[str, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["inspect", str(videos["drift"]), "-o", str(tmp_path / "t.png")])
    assert result.exit_code == 0, result.output
    assert "sink-collapse max" in result.stdout and "repeat score" in result.stdout


def test_cli_malformed_log_exits_2_with_the_house_error(videos: dict[str, Path], tmp_path: Path) -> None:
    """The one error boundary (cli/errors.py): one red line and its fix, exit code from the table."""
    log = tmp_path / "bad.jsonl"
    log.write_text('{"block": 0}\n{"block": 1,\n')
    args = ["inspect", str(videos["drift"]), "--log", str(log), "-o", str(tmp_path / "x.png")]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 2
    error, fix = result.output.strip().splitlines()
    assert error.startswith("config error: ") and "line 2" in error and fix.strip().startswith("fix: ")
    assert not (tmp_path / "x.png").exists()
    missing = CliRunner().invoke(_app(), ["inspect", str(tmp_path / "nope.mp4")])
    assert missing.exit_code == 2 and missing.output.startswith("config error: video ")


def _render_log(path: Path, blocks: int, fps: int = 16, fpb: int = 3) -> Path:
    """A log as `dysink render --log-json` writes it: start_frame counts latents, frames_written and
    video_s count video frames (4 per latent after the first)."""
    lines = []
    for b in range(blocks):
        frames = 4 * fpb * (b + 1) - 3
        retrieved = [0, fpb] if b >= 3 else []
        lines.append(
            {"block": b, "start_frame": fpb * b, "frames_written": frames, "video_s": frames / fps,
             "bank_size": b, "retrieved_frames": retrieved, "gate_closures": b % 2, "fps": 20.0}
        )  # fmt: skip
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def test_log_panels_span_the_video_in_seconds(tmp_path: Path) -> None:
    blocks = 8
    video = write_video(tmp_path / "v.mp4", drift_frames(4 * 3 * blocks - 3))  # 93 frames, 5.81 s
    report = analyze(video, _render_log(tmp_path / "log.jsonl", blocks))
    length_s = report.num_frames / report.fps
    fig = build_figure(report)
    speed = next(ax for ax in fig.axes if ax.get_title(loc="left").startswith("Throughput"))
    x = speed.lines[0].get_xdata()
    assert x[-1] == pytest.approx(length_s) and x[0] == pytest.approx(9 / 16)  # each block where it ends
    assert fig.axes[0].get_xlim()[1] >= length_s * 0.99  # the shared axis covers the whole video
    retrieved = next(ax for ax in fig.axes if ax.get_title(loc="left").startswith("Frames retrieved"))
    ys = sorted(set(retrieved.collections[0].get_offsets()[:, 1].tolist()))
    assert ys == pytest.approx([0.0, 9 / 16])  # latent 3 starts at video frame 9


def test_log_panels_of_an_old_log_use_latent_starts(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4", drift_frames(93))
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps({"block": b, "start_frame": 3 * b, "fps": 20.0}) for b in range(8)))
    speed = next(
        ax
        for ax in build_figure(analyze(video, log)).axes
        if ax.get_title(loc="left").startswith("Throughput")
    )
    assert speed.lines[0].get_xdata()[-1] == pytest.approx((4 * 21 - 3) / 16)  # latent 21, not frame 21
