"""The CLI with render() patched: the RenderJob it builds, exit codes and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dysink_cli import __version__
from dysink_cli.cli.app import app
from dysink_cli.cli.errors import ERROR_TABLE, lookup
from dysink_cli.cli.options import WEIGHTS_ENV, resolve_weights_dir
from dysink_cli.cli.progress import stats_line
from dysink_cli.errors import (
    ConfigError,
    DysinkError,
    FfmpegError,
    GpuError,
    Interrupted,
    OutputError,
    ResumeError,
    TimelineError,
    WeightsError,
)
from dysink_cli.io.weights_check import describe_weights_dir
from dysink_cli.render.events import BlockDone, Finished, Note, PromptSwitch, RenderStarted
from dysink_cli.render.job import RenderJob, RenderStats
from dysink_cli.timeline import Segment, Timeline, plan_frames

runner = CliRunner()


class FakeRender:
    """Stands in for dysink_cli.render.render: records jobs, emits the usual events, writes a stub file."""

    def __init__(self) -> None:
        self.jobs: list[RenderJob] = []
        self.error: BaseException | None = None

    def __call__(self, job: RenderJob, on_event) -> RenderStats:  # noqa: ANN001
        self.jobs.append(job)
        if self.error is not None:
            raise self.error
        cfg = job.config
        plan = plan_frames(job.seconds, cfg.output.fps, cfg.engine.frames_per_block)
        on_event(Note("demo weights"))
        for sw in Timeline(job.segments).switch_blocks(plan)[1:]:
            on_event(
                PromptSwitch(
                    sw.segment, sw.block, sw.requested_s, sw.effective_s, job.segments[sw.segment].prompt
                )
            )
        on_event(
            RenderStarted(
                str(job.output), plan.blocks, plan.latent_frames, plan.video_frames, plan.fps, plan.duration_s
            )
        )
        for b in range(plan.blocks):
            frames = plan.block_start_frame(b + 1) if b + 1 < plan.blocks else plan.video_frames
            stats = {
                "bank_size": b,
                "retrieved_frames": [0, 3][: min(b, 2)],
                "gate_closures": 0,
                "rss_gb": 1.0,
            }
            on_event(BlockDone(b, plan.blocks, frames, frames / plan.fps, stats))
        job.output.write_bytes(b"stub")
        on_event(Finished(str(job.output), plan.video_frames, plan.duration_s, 0.5))
        return RenderStats(job.output, plan.video_frames, plan.blocks, 0.5, plan.video_frames / 0.5, 0.0, 1.0)


@pytest.fixture
def fake_render(monkeypatch: pytest.MonkeyPatch) -> FakeRender:
    fake = FakeRender()
    monkeypatch.setattr("dysink_cli.render.render", fake)
    monkeypatch.delenv("DYSINK_WEIGHTS", raising=False)
    return fake


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    return folder


def run(*args: str | Path, env: dict[str, str] | None = None):  # noqa: ANN201
    return runner.invoke(app, [str(a) for a in args], env=env)


def test_render_builds_the_job_with_the_toy_world_by_default(fake_render: FakeRender, tmp_path: Path) -> None:
    out = tmp_path / "demo.mp4"
    result = run("render", "--prompt", "a red fox running through snow", "--seconds", "5", "-o", out)
    assert result.exit_code == 0, result.output
    (job,) = fake_render.jobs
    assert job.segments == (Segment(0.0, "a red fox running through snow"),)
    assert (job.seconds, job.output, job.seed, job.device) == (5.0, out, 0, "auto")
    assert job.config.model.name == "toy" and not job.overwrite and not job.lossless
    assert "plan: 81 frames = 7 blocks x 3 latents (21) at 16 fps = 5.06 s, asked for 5 s" in result.output
    assert "wrote" in result.output


def test_weights_pick_the_dysink_preset_flag_beats_env(
    fake_render: FakeRender, tmp_path: Path, weights: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    base = ("render", "-p", "fox", "-s", "2", "--fps", "8", "--crf", "23", "--seed", "9")
    assert (
        run(
            *base, "-o", tmp_path / "a.mp4", "--weights", weights, env={"DYSINK_WEIGHTS": str(other)}
        ).exit_code
        == 0
    )
    assert run(*base, "-o", tmp_path / "b.mp4", env={"DYSINK_WEIGHTS": str(other)}).exit_code == 0
    first, second = fake_render.jobs
    assert first.config.model.name == "wan-1.3b" and first.config.engine.policy == "dysink"
    assert first.config.model.weights == str(weights) and second.config.model.weights == str(other)
    assert (first.config.output.fps, first.config.output.crf, first.seed) == (8, 23, 9)


def test_set_overrides_and_flags(fake_render: FakeRender, tmp_path: Path) -> None:
    result = run(
        "render",
        "-p",
        "fox",
        "-s",
        "1",
        "-o",
        tmp_path / "a.mkv",
        "--set",
        "dysink.top_k=3",
        "--set",
        "engine.window_frames=12",
        "--lossless",
        "--device",
        "cpu",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    (job,) = fake_render.jobs
    assert (job.config.dysink.top_k, job.config.engine.window_frames, job.lossless, job.device) == (
        3,
        12,
        True,
        "cpu",
    )
    assert "plan:" not in result.output and "wrote" not in result.output


def test_timeline_render(fake_render: FakeRender, tmp_path: Path) -> None:
    tl = tmp_path / "t.toml"
    tl.write_text(
        "seconds = 4\nseed = 5\n[settings.dysink]\ntop_k = 1\n"
        '[[segment]]\nat = 0\nprompt = "a"\n[[segment]]\nat = 2\nprompt = "b"\n'
    )
    result = run("render", "--timeline", tl, "-o", tmp_path / "t.mp4", "--seed", "6")
    assert result.exit_code == 0, result.output
    (job,) = fake_render.jobs
    assert job.segments == (Segment(0, "a"), Segment(2.0, "b"))
    assert (job.seconds, job.seed, job.config.dysink.top_k) == (4.0, 6, 1)
    assert "prompt 2 at block 3: 2.06 s (asked 2 s): b" in result.output


def error_of(result) -> str:  # noqa: ANN001
    assert "Traceback" not in result.output
    return " ".join(result.output.split())


@pytest.mark.parametrize("seconds", ["0", "-5", "nan", "inf"])
def test_bad_seconds(fake_render: FakeRender, tmp_path: Path, seconds: str) -> None:
    result = run("render", "-p", "fox", "--seconds", seconds, "-o", tmp_path / "a.mp4")
    assert result.exit_code == 2
    assert "is not a positive number of seconds" in error_of(result)
    assert not fake_render.jobs


def test_seconds_that_is_not_a_number(fake_render: FakeRender, tmp_path: Path) -> None:
    result = run("render", "-p", "fox", "--seconds", "abc", "-o", tmp_path / "a.mp4")
    assert result.exit_code == 2 and "--seconds 'abc' is not a number" in error_of(result)
    assert not fake_render.jobs


@pytest.mark.parametrize(
    ("preset", "message"),
    [("nosuch", "unknown preset 'nosuch'"), ("dysnk", "did you mean 'dysink'?")],
)
def test_missing_preset(fake_render: FakeRender, tmp_path: Path, preset: str, message: str) -> None:
    result = run("render", "-p", "fox", "-s", "1", "-o", tmp_path / "a.mp4", "--preset", preset)
    assert result.exit_code == 2 and message in error_of(result)


def test_garbled_preset_file(fake_render: FakeRender, tmp_path: Path) -> None:
    bad = tmp_path / "mine.toml"
    bad.write_text("[engine\npolicy = ")
    result = run("render", "-p", "fox", "-s", "1", "-o", tmp_path / "a.mp4", "--preset", bad)
    assert result.exit_code == 2 and "is not valid TOML" in error_of(result)
    bad.write_text('[engine]\npolicy = "windw"\n')
    result = run("render", "-p", "fox", "-s", "1", "-o", tmp_path / "a.mp4", "--preset", bad)
    assert result.exit_code == 2 and "engine.policy = 'windw' is not one of" in error_of(result)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[[segment]\nat = 0", "is not valid TOML"),
        (
            '[[segment]]\nat = 0\nprompt = "a"\n[[segment]]\nat = 9\nprompt = "b"\n',
            "segment 2 (at = 9 s) starts at or past the end of the 5.06 s video",
        ),
        (
            '[settings.dysink]\ntopk = 2\n[[segment]]\nat = 0\nprompt = "a"\n',
            "[settings]: unknown config key 'dysink.topk'",
        ),
    ],
)
def test_garbled_timeline(fake_render: FakeRender, tmp_path: Path, body: str, message: str) -> None:
    tl = tmp_path / "t.toml"
    tl.write_text(body)
    result = run("render", "--timeline", tl, "-s", "5", "-o", tmp_path / "a.mp4")
    assert result.exit_code == 2 and message in error_of(result)
    assert "timeline error" in result.output


def test_prompt_xor_timeline(fake_render: FakeRender, tmp_path: Path) -> None:
    tl = tmp_path / "t.toml"
    tl.write_text('[[segment]]\nat = 0\nprompt = "a"\n')
    both = run("render", "-p", "fox", "--timeline", tl, "-s", "1", "-o", tmp_path / "a.mp4")
    neither = run("render", "-s", "1", "-o", tmp_path / "a.mp4")
    assert both.exit_code == neither.exit_code == 2
    assert "both given" in error_of(both) and "pass either --prompt or --timeline" in error_of(neither)


def test_output_checks(fake_render: FakeRender, tmp_path: Path) -> None:
    missing = run("render", "-p", "fox", "-s", "1", "-o", tmp_path / "nope" / "a.mp4")
    assert missing.exit_code == 2 and "nope does not exist" in error_of(missing)
    wrong = run("render", "-p", "fox", "-s", "1", "-o", tmp_path / "a.avi")
    assert wrong.exit_code == 2 and "must end in .mp4 or .mkv" in error_of(wrong)
    existing = tmp_path / "old.mp4"
    existing.write_bytes(b"x")
    clash = run("render", "-p", "fox", "-s", "1", "-o", existing)
    assert clash.exit_code == 2 and "already exists" in error_of(clash) and "--overwrite" in clash.output
    assert run("render", "-p", "fox", "-s", "1", "-o", existing, "--overwrite").exit_code == 0
    assert fake_render.jobs[-1].overwrite
    locked = run("render", "-p", "fox", "-s", "1", "-o", "/proc/dysink-b.mp4")  # no new files, even for root
    assert locked.exit_code == 2 and "is not writable" in error_of(locked)


def test_weights_dir_missing(fake_render: FakeRender, tmp_path: Path) -> None:
    flag = run("render", "-p", "fox", "-s", "1", "-o", tmp_path / "a.mp4", "--weights", tmp_path / "gone")
    env = run(
        "render",
        "-p",
        "fox",
        "-s",
        "1",
        "-o",
        tmp_path / "a.mp4",
        env={"DYSINK_WEIGHTS": str(tmp_path / "gone")},
    )
    assert flag.exit_code == env.exit_code == 2
    assert "weights folder" in error_of(flag) and "(from --weights) does not exist" in error_of(flag)
    assert "(from $DYSINK_WEIGHTS)" in error_of(env)
    real = run("render", "-p", "fox", "-s", "1", "-o", tmp_path / "a.mp4", "--preset", "dysink")
    assert real.exit_code == 2 and "needs its weights" in error_of(real)


def test_cuda_asked_but_absent(
    fake_render: FakeRender, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = run("render", "-p", "fox", "-s", "1", "-o", tmp_path / "a.mp4", "--device", "cuda")
    assert (
        result.exit_code == 2
        and "torch sees no CUDA GPU" in error_of(result)
        and "GPU error" in result.output
    )
    bad = run("render", "-p", "fox", "-s", "1", "-o", tmp_path / "a.mp4", "--device", "tpu")
    assert bad.exit_code == 2 and "is not auto, cpu, cuda or cuda:N" in error_of(bad)


def test_unknown_set_key_suggests(fake_render: FakeRender, tmp_path: Path) -> None:
    result = run("render", "-p", "fox", "-s", "1", "-o", tmp_path / "a.mp4", "--set", "dysink.topk=3")
    text = error_of(result)
    assert (
        result.exit_code == 2
        and "unknown config key 'dysink.topk'" in text
        and "did you mean 'top_k'?" in text
    )
    typed = run(
        "render", "-p", "fox", "-s", "1", "-o", tmp_path / "a.mp4", "--set", "engine.window_frames=wide"
    )
    assert typed.exit_code == 2 and "must be an integer" in error_of(typed)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.dtype=bf16", "config error: model.dtype = 'bf16' is not one of bfloat16, float16, float32"),
        ("output.crf=99", "config error: output.crf = 99 is not in [0, 51]"),
        ("bank.disk_gb=0", "config error: bank.disk_gb = 0.0 is not > 0"),
        ('output.container="mp4"', "config error: output.container = 'mp4' is no longer a setting"),
    ],
)
def test_bad_settings_fail_before_the_render_starts(
    fake_render: FakeRender, tmp_path: Path, override: str, message: str
) -> None:
    result = run("render", "-p", "fox", "-s", "1", "-o", tmp_path / "a.mp4", "--set", override)
    assert result.exit_code == 2 and message in error_of(result) and not fake_render.jobs


def test_runtime_errors_exit_1_without_traceback_unless_debug(
    fake_render: FakeRender, tmp_path: Path
) -> None:
    fake_render.error = FfmpegError("ffmpeg failed (exit code 1) while writing a.mp4: boom", "free disk")
    plain = run("render", "-p", "fox", "-s", "1", "-o", tmp_path / "a.mp4")
    assert plain.exit_code == 1 and "ffmpeg error: ffmpeg failed (exit code 1)" in error_of(plain)
    assert "fix: free disk" in plain.output
    debug = run("render", "-p", "fox", "-s", "1", "-o", tmp_path / "a.mp4", "--debug")
    assert debug.exit_code == 1 and "Traceback" in debug.output
    fake_render.error = RuntimeError("CUDA out of memory")
    crash = run("render", "-p", "fox", "-s", "1", "-o", tmp_path / "a.mp4")
    assert crash.exit_code == 1 and "internal error: RuntimeError: CUDA out of memory" in error_of(crash)
    fake_render.error = KeyboardInterrupt()
    stopped = run("render", "-p", "fox", "-s", "1", "-o", tmp_path / "a.mp4")
    assert stopped.exit_code == 130 and "interrupted" in stopped.output


def test_one_error_table_owns_the_exit_codes() -> None:
    expected = {
        TimelineError: 2,
        ConfigError: 2,
        WeightsError: 2,
        GpuError: 2,
        OutputError: 2,
        FfmpegError: 1,
        ResumeError: 1,
        Interrupted: 130,
        DysinkError: 1,
    }
    assert {cls: code for cls, (code, _) in ERROR_TABLE.items()} == expected
    assert not any(hasattr(cls, "exit_code") for cls in expected)  # errors.py holds no exit codes
    for cls, code in expected.items():
        assert lookup(cls("x"))[0] == code
    assert lookup(Interrupted("stopped", signum=15)) == (143, "interrupted")  # SIGTERM
    assert lookup(Interrupted("stopped", signum=1)) == (129, "interrupted")  # SIGHUP


@pytest.mark.parametrize(("signum", "code"), [(2, 130), (15, 143), (1, 129)])
def test_a_stop_signal_exits_128_plus_its_number(
    fake_render: FakeRender, tmp_path: Path, signum: int, code: int
) -> None:
    fake_render.error = Interrupted("stopped after block 3; checkpoint saved", "dysink resume OUT", signum)
    result = run("render", "-p", "fox", "-s", "1", "-o", tmp_path / "a.mp4")
    assert result.exit_code == code and "interrupted: stopped after block 3" in error_of(result)


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0 and result.output == f"dysink {__version__}\n"


STARTUP_PROBE = """
import sys
from typer.testing import CliRunner
from dysink_cli import __version__
from dysink_cli.cli.app import app

runner = CliRunner()
for args in {calls!r}:
    result = runner.invoke(app, args)
    print(result.exit_code, args[0] if args else "")
heavy = [name for name in ("torch", "matplotlib") if name in sys.modules]
print("heavy:", ",".join(heavy) or "none")
"""


def test_help_presets_and_usage_errors_load_no_torch_or_matplotlib(tmp_path: Path) -> None:
    """The thin CLI: start-up, listings and every usage error run without torch or matplotlib."""
    calls = [
        ["--help"],
        ["--version"],
        ["presets"],
        ["presets", "show", "dysink"],
        ["render", "--help"],
        ["render", "-p", "fox", "-s", "0", "-o", str(tmp_path / "a.mp4")],  # bad seconds
        ["render", "-p", "fox", "-s", "1", "-o", str(tmp_path / "a.avi")],  # bad suffix
        ["render", "-p", "fox", "-s", "1", "-o", str(tmp_path / "a.mp4"), "--set", "model.dtype=bf16"],
        ["render", "-p", "fox", "-s", "1", "-o", str(tmp_path / "a.mp4"), "--preset", "dysink"],  # no weights
        ["render", "-p", "fox", "-s", "1", "-o", str(tmp_path / "a.mp4"), "--device", "tpu"],
        ["batch", str(tmp_path / "none.txt"), "--out-dir", str(tmp_path / "out")],
        ["resume", str(tmp_path / "never.mp4")],
        ["weights", "check", str(tmp_path / "nope")],
        ["inspect", str(tmp_path / "nope.mp4")],
    ]
    probe = subprocess.run(
        [sys.executable, "-c", STARTUP_PROBE.format(calls=calls)],
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if k != WEIGHTS_ENV},
    )
    assert probe.returncode == 0, probe.stderr
    lines = probe.stdout.splitlines()
    codes = [int(line.split()[0]) for line in lines[:-1]]
    assert codes[:5] == [0, 0, 0, 0, 0] and all(code in (1, 2) for code in codes[5:]), lines
    assert lines[-1] == "heavy: none", lines


def test_presets_list_and_show(tmp_path: Path) -> None:
    listed = run("presets")
    assert listed.exit_code == 0
    names = [line.split()[0] for line in listed.output.splitlines()]
    assert {"dysink", "dysink-paper", "longlive", "self-forcing", "tiny"} <= set(names)
    shown = run("presets", "show", "dysink-paper", "--set", "dysink.top_k=4")
    assert shown.exit_code == 0 and 'gate = "max"' in shown.output and "top_k = 4" in shown.output
    missing = run("presets", "show", "nosuch")
    assert missing.exit_code == 2 and "unknown preset 'nosuch'" in error_of(missing)


def test_doctor(tmp_path: Path, weights: Path) -> None:
    (weights / "Wan2.1_VAE.pth").write_bytes(b"")
    result = run("doctor", "--weights", weights)
    assert result.exit_code == 0, result.output
    assert "torch" in result.output and "ffmpeg" in result.output and "Wan2.1 VAE" in result.output
    assert "free disk" in result.output


def test_python_dash_m_runs_the_app() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dysink_cli", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "render" in result.stdout and "batch" in result.stdout


def test_describe_weights_dir(tmp_path: Path) -> None:
    names = [
        "Wan2.1-T2V-1.3B/diffusion_pytorch_model-00001-of-00002.safetensors",
        "Wan2.1-T2V-1.3B/config.json",
        "Wan2.1-T2V-1.3B/Wan2.1_VAE.pth",
        "Wan2.1-T2V-1.3B/models_t5_umt5-xxl-enc-bf16.pth",
        "Wan2.1-T2V-1.3B/google/umt5-xxl/tokenizer.json",
        "stage1_base.pt",
        "stage2_lora.pt",
        "PE-Core-S16-384.pt",
        "notes.txt",
    ]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert describe_weights_dir(tmp_path) == [
        ("PE-Core-S16-384.pt", "PE-Core vision tower (memory descriptors)"),
        ("Wan2.1-T2V-1.3B/Wan2.1_VAE.pth", "Wan2.1 VAE"),
        ("Wan2.1-T2V-1.3B/config.json", "Wan2.1 DiT config"),
        ("Wan2.1-T2V-1.3B/diffusion_pytorch_model-00001-of-00002.safetensors", "Wan2.1 DiT weights"),
        ("Wan2.1-T2V-1.3B/google/umt5-xxl/", "umT5 tokenizer"),
        ("Wan2.1-T2V-1.3B/models_t5_umt5-xxl-enc-bf16.pth", "umT5-XXL text encoder"),
        ("stage1_base.pt", "generator weights"),
        ("stage2_lora.pt", "LoRA"),
    ]
    with pytest.raises(WeightsError, match="does not exist"):
        describe_weights_dir(tmp_path / "gone")


def test_weights_dir_precedence_first_given_wins_and_never_falls_back(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder in (a, b, c):
        folder.mkdir()
    env = {WEIGHTS_ENV: str(b)}
    assert resolve_weights_dir(a, env, str(c)) == (a, "--weights")
    assert resolve_weights_dir(None, env, str(c)) == (b, f"${WEIGHTS_ENV}")
    assert resolve_weights_dir(None, {WEIGHTS_ENV: ""}, str(c)) == (c, "the config")
    assert resolve_weights_dir(None, {}, "") == (None, "")
    with pytest.raises(WeightsError, match=r"\(from --weights\) does not exist"):
        resolve_weights_dir(tmp_path / "nope", env, str(c))  # b and c exist: no fall-back
    with pytest.raises(WeightsError, match=r"\(from the config\) does not exist"):
        resolve_weights_dir(None, {}, str(tmp_path / "nope"))


def test_stats_line() -> None:
    line = stats_line({"bank_size": 12, "retrieved_frames": [0, 9], "gate_closures": 3, "gpu_mem_gb": 10.24})
    assert line.plain == "bank 12 entries | retrieved 2 blocks | gate closed 3 | GPU 10.2 GB"


def test_decoder_flag_picks_the_output_decoder(
    fake_render: FakeRender, tmp_path: Path, weights: Path
) -> None:
    assert (
        run("render", "-p", "fox", "-s", "1", "-o", tmp_path / "a.mp4", "--weights", weights).exit_code == 0
    )
    assert fake_render.jobs[-1].config.model.decoder == "wan"
    flag = (
        "render",
        "-p",
        "fox",
        "-s",
        "1",
        "-o",
        tmp_path / "b.mp4",
        "--weights",
        weights,
        "--decoder",
        "taehv",
    )
    assert run(*flag).exit_code == 0 and fake_render.jobs[-1].config.model.decoder == "taehv"
    tiny = run("render", "-p", "fox", "-s", "1", "-o", tmp_path / "c.mp4", "--decoder", "taehv")
    assert tiny.exit_code == 2 and "needs a weights folder with taew2_1" in error_of(tiny)
