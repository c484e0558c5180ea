"""A catalogue of bad inputs: each is refused with one error line (plus at most one fix line) on
stderr, exit 1 or 2, no traceback, no `internal error`, and nothing left behind in the folder.

Each case is CLI arguments plus the files it needs (made in tmp_path, which is also the working
directory). Cases run in-process through typer's CliRunner with render() NOT patched, so a bad
value that slips through really renders and fails the "nothing left behind" check; the few that
need real argv bytes run in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from typer.testing import CliRunner

import dysink_cli.render
from dysink_cli.cli.app import app
from dysink_cli.config import RenderConfig, resolve_config
from dysink_cli.render.events import RenderStarted
from dysink_cli.render.job import RenderJob
from dysink_cli.render.workdir import job_fingerprint
from dysink_cli.timeline import Segment

RENDER = ("render", "-p", "a fox", "-s", "1", "-o", "out.mp4")
TL = ("render", "-s", "1", "-o", "out.mp4", "--timeline")
GOOD_TL = '[[segment]]\nat = 0\nprompt = "a fox"\n'
SEGMENT = '[[segment]]\nat = {}\nprompt = "then a cat"\n'
NOT_UTF8 = b"\xff\xfe a fox \xc3\x28\n"


@dataclass(frozen=True)
class Link:
    """A symlink to `target` (relative to the case's folder)."""

    target: str


@dataclass(frozen=True)
class Folder:
    """A folder with these permission bits."""

    mode: int = 0o755


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    files: dict[str, str | bytes | Link | Folder] = field(default_factory=dict)
    argv_bytes: tuple[bytes, ...] = ()  # run in a subprocess with these raw argv bytes appended


def case(id_: str, *args: str, files=None, argv_bytes=()):  # noqa: ANN001, ANN201
    """One bad input: the CLI arguments, the files it needs (made in tmp_path), raw argv bytes."""
    return pytest.param(Case(tuple(args), files or {}, tuple(argv_bytes)), id=id_)


def bad_set(id_: str, override: str, *more: str):  # noqa: ANN201
    """A render with one bad --set (plus any --set it needs to be reached)."""
    sets = [a for o in (*more, override) for a in ("--set", o)]
    return case(f"set-{id_}", *RENDER, *sets)


# fmt: off
SET_CASES = [
    # top level and structure
    bad_set("unknown-section", "modle.name=tiny"),
    bad_set("unknown-key", "engine.window=9"),
    bad_set("not-key-value", "engine.window_frames"),
    bad_set("empty-key", "=3"),
    bad_set("section-not-table", "model=3"),
    bad_set("removed-key", "output.container=mkv"),
    bad_set("description-type", "description=5"),
    # [model]
    bad_set("model.name", "model.name=wan-14b"),
    bad_set("model.weights-missing", "model.weights=/no/such/folder"),
    bad_set("model.dtype", "model.dtype=float8"),
    bad_set("model.attention", "model.attention=xformers"),
    bad_set("model.compile", "model.compile=maybe"),
    bad_set("model.cuda_graphs", "model.cuda_graphs=1"),
    bad_set("model.fp8", "model.fp8=fast"),
    bad_set("model.overlap_decode", "model.overlap_decode=2.5"),
    bad_set("model.pe_core", "model.pe_core=PE-Core-X"),
    bad_set("model.decoder", "model.decoder=vqgan"),
    bad_set("model.decoder-taehv-without-weights", "model.decoder=taehv"),
    # [engine]
    bad_set("engine.policy", "engine.policy=forever"),
    bad_set("engine.window_frames-type", "engine.window_frames=nine"),
    bad_set("engine.window_frames-small", "engine.window_frames=2"),
    bad_set("engine.sink_frames-negative", "engine.sink_frames=-1"),
    bad_set("engine.sink_frames-large", "engine.sink_frames=9"),
    bad_set("engine.frames_per_block-zero", "engine.frames_per_block=0"),
    bad_set("engine.frames_per_block-float", "engine.frames_per_block=1.5"),
    bad_set("engine.horizon_frames", "engine.horizon_frames=-3"),
    bad_set("engine.horizon_frames-rolling", "engine.horizon_frames=4", "engine.policy=rolling-sink"),
    bad_set("engine.noise", "engine.noise=pink"),
    # [dysink]
    bad_set("dysink.top_k-negative", "dysink.top_k=-1"),
    bad_set("dysink.top_k-float", "dysink.top_k=2.5"),
    bad_set("dysink.dedup_threshold-nan", "dysink.dedup_threshold=nan"),
    bad_set("dysink.dedup_threshold-negative", "dysink.dedup_threshold=-0.5"),
    bad_set("dysink.gate", "dysink.gate=sometimes"),
    bad_set("dysink.gate_threshold-inf", "dysink.gate_threshold=inf"),
    bad_set("dysink.gate_threshold-large", "dysink.gate_threshold=1.5"),
    bad_set("dysink.descriptors", "dysink.descriptors=clip"),
    bad_set("dysink.descriptor_decoder", "dysink.descriptor_decoder=clip"),
    bad_set("dysink.descriptor_decoder-taehv-tiny", "dysink.descriptor_decoder=taehv"),
    bad_set("dysink.query_blocks", "dysink.query_blocks=-2"),
    bad_set("dysink.exclusion", "dysink.exclusion=none"),
    bad_set("dysink.retrieved_bf16_roundtrip", "dysink.retrieved_bf16_roundtrip=yes"),
    # [bank]
    bad_set("bank.gpu_entries", "bank.gpu_entries=-1"),
    bad_set("bank.ram_gb-nan", "bank.ram_gb=nan"),
    bad_set("bank.disk_gb-zero", "bank.disk_gb=0"),
    bad_set("bank.max_entries", "bank.max_entries=-5"),
    bad_set("bank.dtype", "bank.dtype=int4"),
    # [rope]
    bad_set("rope.mode", "rope.mode=alibi"),
    bad_set("rope.max_distance", "rope.max_distance=-1"),
    bad_set("rope.jitter-one", "rope.jitter=1.0"),
    bad_set("rope.jitter-negative-inf", "rope.jitter=-inf"),
    bad_set("rope.jitter_heads", "rope.jitter_heads=2"),
    bad_set("rope.jitter_axes", "rope.jitter_axes=xyz"),
    bad_set("rope.jitter_scope", "rope.jitter_scope=global"),
    # [sampler]
    bad_set("sampler.steps-empty", "sampler.steps=[]"),
    bad_set("sampler.steps-rising", "sampler.steps=[250, 500]"),
    bad_set("sampler.steps-range", "sampler.steps=[5000, 10]"),
    bad_set("sampler.steps-not-list", "sampler.steps=4"),
    bad_set("sampler.steps-strings", 'sampler.steps=["a"]'),
    bad_set("sampler.shift-negative", "sampler.shift=-1"),
    bad_set("sampler.shift-nan", "sampler.shift=nan"),
    bad_set("sampler.warp", "sampler.warp=0"),
    bad_set("sampler.context_noise", "sampler.context_noise=2000"),
    # [output]
    bad_set("output.width-odd", "output.width=100"),
    bad_set("output.height-huge", "output.height=100000"),
    bad_set("output.width-negative", "output.width=-64"),
    bad_set("output.fps-zero", "output.fps=0"),
    bad_set("output.crf", "output.crf=99"),
    bad_set("output.checkpoint_every_blocks", "output.checkpoint_every_blocks=0"),
    bad_set("output.checkpoint_overhead", "output.checkpoint_overhead=1"),
    # [files]
    bad_set("files.generator", "files.generator=3"),
    bad_set("files.loras", "files.loras=lora.safetensors"),
    bad_set("files.use_ema", "files.use_ema=sure"),
    bad_set("files.vae", "files.vae=[1]"),
    bad_set("files.t5", "files.t5=true"),
    bad_set("files.tokenizer", "files.tokenizer=1.5"),
    bad_set("files.pe", "files.pe={a=1}"),
    bad_set("files.taehv", "files.taehv=0"),
]

FLAG_CASES = [
    case("fps-zero", *RENDER, "--fps", "0"),
    case("fps-huge", *RENDER, "--fps", "1000"),
    case("fps-word", *RENDER, "--fps", "abc"),
    case("crf-99", *RENDER, "--crf", "99"),
    case("crf-negative", *RENDER, "--crf", "-1"),
    case("seconds-zero", "render", "-p", "fox", "-s", "0", "-o", "out.mp4"),
    case("seconds-negative", "render", "-p", "fox", "-s", "-3", "-o", "out.mp4"),
    case("seconds-nan", "render", "-p", "fox", "-s", "nan", "-o", "out.mp4"),
    case("seconds-1e9", "render", "-p", "fox", "-s", "1e9", "-o", "out.mp4"),
    case("seconds-word", "render", "-p", "fox", "-s", "abc", "-o", "out.mp4"),
    case("seconds-missing", "render", "-p", "fox", "-o", "out.mp4"),
    case("seed-negative", *RENDER, "--seed", "-1"),
    case("seed-word", *RENDER, "--seed", "abc"),
    case("seed-huge", *RENDER, "--seed", str(2**64)),
    case("device-tpu", *RENDER, "--device", "tpu"),
    case("device-cuda-without-gpu", *RENDER, "--device", "cuda"),
    case("unknown-flag", *RENDER, "--colour", "red"),
    case("unknown-command", "paint", "--prompt", "fox"),
    case("prompt-and-timeline", *RENDER, "--timeline", "t.toml", files={"t.toml": GOOD_TL}),
    case("no-prompt", "render", "-s", "1", "-o", "out.mp4"),
    case("no-output", "render", "-p", "fox", "-s", "1"),
]

OUTPUT_CASES = [
    case("output-exists", *RENDER, files={"out.mp4": b"precious"}),
    case("output-folder-missing", "render", "-p", "fox", "-s", "1", "-o", "nope/out.mp4"),
    case("output-is-a-folder", "render", "-p", "fox", "-s", "1", "-o", "videos", files={"videos": Folder()}),
    case("output-folder-named-mp4", *RENDER, files={"out.mp4": Folder()}),
    case("output-avi", "render", "-p", "fox", "-s", "1", "-o", "out.avi"),
    case("output-no-suffix", "render", "-p", "fox", "-s", "1", "-o", "out"),
    # root writes into any folder whatever its mode bits: /proc refuses new files to root too
    case("output-folder-unwritable", "render", "-p", "fox", "-s", "1", "-o", "/proc/dysink-out.mp4"),
    case("log-json-is-output", *RENDER, "--log-json", "out.mp4"),
    case("log-json-is-output-spelled-otherwise", *RENDER, "--log-json", "./sub/../out.mp4",
         files={"sub": Folder()}),
    case("log-json-links-to-output", *RENDER, "--log-json", "log.jsonl",
         files={"log.jsonl": Link("out.mp4")}),
    case("log-json-exists", *RENDER, "--log-json", "log.jsonl", files={"log.jsonl": "old log\n"}),
    case("log-json-is-a-folder", *RENDER, "--log-json", "logs", files={"logs": Folder()}),
    case("log-json-folder-missing", *RENDER, "--log-json", "nope/log.jsonl"),
    case("log-json-parent-is-a-file", *RENDER, "--log-json", "f/log.jsonl", files={"f": "x"}),
    case("log-json-in-work-folder", *RENDER, "--log-json", "out.mp4.dysink"),
    case("log-json-folder-unwritable", *RENDER, "--log-json", "/proc/dysink-log.jsonl"),
]

PROMPT_CASES = [
    case("prompt-empty", "render", "-p", "", "-s", "1", "-o", "out.mp4"),
    case("prompt-whitespace", "render", "-p", "  \t ", "-s", "1", "-o", "out.mp4"),
    case("prompt-surrogates", "render", "-p", "a \udcff\udcfe fox", "-s", "1", "-o", "out.mp4"),
    case("prompt-bytes-argv", "render", "-s", "1", "-o", "out.mp4", "-p", argv_bytes=(b"a \xff fox",)),
    case("set-bytes-argv", *RENDER, "--set", argv_bytes=(b"model.name=\xff",)),
    case("fps-word-real-process", *RENDER, "--fps", argv_bytes=(b"abc",)),
    case("prompt-file-not-utf8", "batch", "p.txt", "-d", "o", "-s", "1", files={"p.txt": NOT_UTF8}),
]

TIMELINE_CASES = [
    case("timeline-missing", *TL, "nope.toml"),
    case("timeline-bad-toml", *TL, "t.toml", files={"t.toml": "[[segment]\nat = 0\n"}),
    case("timeline-unknown-key", *TL, "t.toml", files={"t.toml": "fps = 3\n" + GOOD_TL}),
    case("timeline-unknown-segment-key", *TL, "t.toml", files={"t.toml": GOOD_TL + "text = 'x'\n"}),
    case(
        "timeline-out-of-order",
        *TL, "t.toml",
        files={"t.toml": GOOD_TL + SEGMENT.format(0.8) + SEGMENT.format(0.4)},
    ),
    case("timeline-negative", *TL, "t.toml", files={"t.toml": GOOD_TL + SEGMENT.format(-2)}),
    case("timeline-switch-past-end", *TL, "t.toml", files={"t.toml": GOOD_TL + SEGMENT.format(30)}),
    case("timeline-first-not-at-0", *TL, "t.toml", files={"t.toml": '[[segment]]\nat = 1\nprompt = "a"\n'}),
    case("timeline-no-segments", *TL, "t.toml", files={"t.toml": "seconds = 3\n"}),
    case("timeline-empty-prompt", *TL, "t.toml", files={"t.toml": '[[segment]]\nat = 0\nprompt = " "\n'}),
    case("timeline-not-utf8", *TL, "t.toml", files={"t.toml": b'[[segment]]\nat = 0\nprompt = "\xff"\n'}),
    case("timeline-is-a-folder", *TL, "t.toml", files={"t.toml": Folder()}),
    case("timeline-bad-settings", *TL, "t.toml",
         files={"t.toml": "[settings.engine]\nwindow_frames = -1\n" + GOOD_TL}),
    case("timeline-seconds-negative", "render", "-o", "out.mp4", "--timeline", "t.toml",
         files={"t.toml": "seconds = -4\n" + GOOD_TL}),
]

PRESET_CASES = [
    case("preset-unknown", *RENDER, "--preset", "dysinc"),
    case("preset-missing-file", *RENDER, "--preset", "nope.toml"),
    case("preset-bad-toml", *RENDER, "--preset", "p.toml", files={"p.toml": "[model\nname = 'tiny'\n"}),
    case("preset-not-utf8", *RENDER, "--preset", "p.toml", files={"p.toml": b"description = '\xff'\n"}),
    case("preset-unknown-key", *RENDER, "--preset", "p.toml", files={"p.toml": "[model]\nnmae = 'tiny'\n"}),
    case("preset-is-a-folder", *RENDER, "--preset", "p.toml", files={"p.toml": Folder()}),
    case("preset-surrogate-name", *RENDER, "--preset", "tiny\udcff"),
    case("presets-show-unknown", "presets", "show", "nosuch"),
]

BATCH = ("batch", "b.jsonl", "-d", "o", "-s", "1")
BATCH_CASES = [
    case("batch-missing", "batch", "nope.txt", "-d", "o", "-s", "1"),
    case("batch-empty", "batch", "p.txt", "-d", "o", "-s", "1", files={"p.txt": "# only a comment\n\n"}),
    case("batch-bad-jsonl", *BATCH, files={"b.jsonl": '{"prompt": "fox"\n'}),
    case("batch-unknown-jsonl-key", *BATCH, files={"b.jsonl": '{"prompt": "fox", "sedd": 3}\n'}),
    case("batch-jsonl-not-object", *BATCH, files={"b.jsonl": '["fox"]\n'}),
    case("batch-jsonl-not-utf8", *BATCH, files={"b.jsonl": b'{"prompt": "\xff"}\n'}),
    case("batch-jsonl-surrogate-escape", *BATCH, files={"b.jsonl": '{"prompt": "a \\udcff fox"}\n'}),
    case(
        "batch-duplicate-outputs",
        *BATCH,
        files={"b.jsonl": '{"prompt": "a", "output": "x.mp4"}\n{"prompt": "b", "output": "x.mp4"}\n'},
    ),
    case("batch-bad-entry-seconds", *BATCH, files={"b.jsonl": '{"prompt": "a", "seconds": -1}\n'}),
    case("batch-bad-suffix", "batch", "p.csv", "-d", "o", "-s", "1", files={"p.csv": "fox\n"}),
    case("batch-folder-without-timelines", "batch", "tl", "-d", "o", "-s", "1", files={"tl": Folder()}),
    case("batch-out-dir-is-a-file", "batch", "p.txt", "-d", "o", "-s", "1",
         files={"p.txt": "fox\n", "o": "x"}),
    case("batch-out-dir-under-a-file", "batch", "p.txt", "-d", "f/o", "-s", "1",
         files={"p.txt": "fox\n", "f": "x"}),
    case("batch-bad-set", "batch", "p.txt", "-d", "o", "-s", "1", "--set", "dysink.top_k=-1",
         files={"p.txt": "fox\n"}),
    case("batch-seconds-word", "batch", "p.txt", "-d", "o", "-s", "long", files={"p.txt": "fox\n"}),
    case("batch-no-length", "batch", "p.txt", "-d", "o", files={"p.txt": "fox\n"}),
]

WORK = "out.mp4.dysink"
TINY_JOB = RenderJob((Segment(0.0, "a fox"),), 1.0, Path("out.mp4"), resolve_config("tiny"))
CHECKPOINT_WITHOUT_TENSORS = json.dumps(
    {"job": job_fingerprint(TINY_JOB), "version": 2, "tensors": "gone.safetensors", "block": 1}
)
RESUME_CASES = [
    case("resume-no-output", "resume", "nope.mp4"),
    case("resume-no-work-folder", "resume", "out.mp4", files={"out.mp4": b"video"}),
    case("resume-corrupt-checkpoint", "resume", "out.mp4",
         files={"out.mp4": b"video", f"{WORK}/checkpoint.json": "{not json"}),
    case("resume-checkpoint-missing-keys", "resume", "out.mp4",
         files={"out.mp4": b"video", f"{WORK}/checkpoint.json": '{"version": 2}'}),
    case("resume-corrupt-job-file", "resume", "out.mp4", files={f"{WORK}/job.json": "\x00garbage"}),
    case("resume-checkpoint-not-utf8", "resume", "out.mp4",
         files={"out.mp4": b"video", f"{WORK}/checkpoint.json": b'{"job": "\xff"}'}),
    case("resume-device-tpu", "resume", "out.mp4", "--device", "tpu"),
    case("resume-checkpoint-tensors-missing", "resume", "out.mp4",
         files={"out.mp4": b"video", f"{WORK}/checkpoint.json": CHECKPOINT_WITHOUT_TENSORS}),
    case("resume-recorded-config-now-invalid", "resume", "out.mp4",
         files={"out.mp4": b"video",
                f"{WORK}/job.json": CHECKPOINT_WITHOUT_TENSORS.replace('"shift": 5.0', '"shift": -1.0')}),
    case("resume-a-folder", "resume", "videos", files={"videos": Folder()}),
    case("resume-the-work-folder", "resume", WORK, files={"out.mp4": b"video", f"{WORK}/job.json": "{}"}),
    case("resume-log-json-is-output", "resume", "out.mp4", "--log-json", "out.mp4",
         files={"out.mp4": b"video", f"{WORK}/job.json": "{}"}),
]

WEIGHTS_CASES = [
    case("weights-missing-folder", *RENDER, "--weights", "nope"),
    case("weights-is-a-file", *RENDER, "--weights", "w.safetensors", files={"w.safetensors": b"x"}),
    case("weights-check-empty-folder", "weights", "check", "w", files={"w": Folder()}),
    case("weights-check-missing", "weights", "check", "nope"),
    case("weights-check-a-file", "weights", "check", "w.pt", files={"w.pt": b"x"}),
    case("weights-check-bad-preset", "weights", "check", "w", "--preset", "nosuch", files={"w": Folder()}),
    case("doctor-weights-missing", "doctor", "--weights", "nope"),
    case("non-tiny-preset-without-weights", *RENDER, "--preset", "dysink"),
]

INSPECT_CASES = [
    case("inspect-missing-video", "inspect", "nope.mp4"),
    case("inspect-not-a-video", "inspect", "v.mp4", files={"v.mp4": b"this is text, not a video\n"}),
    case("inspect-video-is-a-folder", "inspect", "v.mp4", files={"v.mp4": Folder()}),
    case("inspect-missing-log", "inspect", "{video}", "--log", "nope.jsonl", "-o", "r.png"),
    case("inspect-garbage-log", "inspect", "{video}", "--log", "l.jsonl", "-o", "r.png",
         files={"l.jsonl": "{garbage\n"}),
    case("inspect-log-not-utf8", "inspect", "{video}", "--log", "l.jsonl", "-o", "r.png",
         files={"l.jsonl": b'{"block": 0, "x": "\xff"}\n'}),
    case("inspect-log-is-a-folder", "inspect", "{video}", "--log", "logs", "-o", "r.png",
         files={"logs": Folder()}),
    case("inspect-reference-frames-zero", "inspect", "{video}", "--reference-frames", "0", "-o", "r.png"),
    case("inspect-png-folder-missing", "inspect", "{video}", "-o", "nope/r.png"),
    case("inspect-png-is-a-folder", "inspect", "{video}", "-o", "pngs", files={"pngs": Folder()}),
]

# fmt: on
CASES = [
    *SET_CASES,
    *FLAG_CASES,
    *OUTPUT_CASES,
    *PROMPT_CASES,
    *TIMELINE_CASES,
    *PRESET_CASES,
    *BATCH_CASES,
    *RESUME_CASES,
    *WEIGHTS_CASES,
    *INSPECT_CASES,
]


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 24-frame video, outside the cases' folders."""
    path = tmp_path_factory.mktemp("video") / "v.mp4"
    writer = imageio_ffmpeg.write_frames(str(path), (32, 32), fps=16)
    writer.send(None)
    for t in range(24):
        writer.send(np.full((32, 32, 3), 10 * t, dtype=np.uint8))
    writer.close()
    return path


def _make(root: Path, files: dict[str, str | bytes | Link | Folder]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Folder):
            path.mkdir()
            path.chmod(content.mode)
        elif isinstance(content, Link):
            path.symlink_to(content.target)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} | {
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_symlink()
    }


class ReachedTheBlockLoop(Exception):
    """A bad input got past every check: the real render is stopped before its first block."""


def _guarded_render(job, on_event, **options):  # noqa: ANN001, ANN003, ANN202
    def stop_at_start(event: object) -> None:
        if isinstance(event, RenderStarted):
            raise ReachedTheBlockLoop(f"{job.output}: a bad input reached the block loop")
        on_event(event)

    return REAL_RENDER(job, stop_at_start, **options)


REAL_RENDER = dysink_cli.render.render


def _run(args: list[str], argv_bytes: tuple[bytes, ...], cwd: Path) -> tuple[int, str, object]:
    if argv_bytes:
        env = {k: v for k, v in os.environ.items() if k != "DYSINK_WEIGHTS"}
        argv = [sys.executable, "-m", "dysink_cli", *args, *argv_bytes]
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, timeout=120)  # noqa: S603
        return proc.returncode, proc.stderr.decode("utf-8", "backslashreplace"), None
    result = CliRunner().invoke(app, args, catch_exceptions=True)
    return result.exit_code, result.stderr, result.exception


@pytest.mark.parametrize("bad", CASES)
def test_bad_input_is_one_line(
    bad: Case, tmp_path: Path, video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DYSINK_WEIGHTS", raising=False)
    monkeypatch.setattr("dysink_cli.render.render", _guarded_render)
    monkeypatch.chdir(tmp_path)
    _make(tmp_path, bad.files)
    before = _tree(tmp_path)
    args = [a.replace("{video}", str(video)) for a in bad.args]
    code, stderr, exception = _run(args, bad.argv_bytes, tmp_path)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert exception is None or isinstance(exception, SystemExit), repr(exception)
    assert code in (1, 2), f"exit {code}\n{stderr}"
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    assert len(lines) in (1, 2) and not lines[0].lstrip().startswith("fix:"), stderr
    assert len(lines) == 1 or lines[1].lstrip().startswith("fix:"), stderr
    assert _tree(tmp_path) == before, f"left behind: {sorted(_tree(tmp_path) - before)}"


def test_the_catalogue_is_large_and_covers_every_config_key() -> None:
    assert len(CASES) >= 70
    keys: set[str] = set()
    for section in fields(RenderConfig):
        table = getattr(RenderConfig(), section.name)
        names = [f"{section.name}.{f.name}" for f in fields(table)] if is_dataclass(table) else [section.name]
        keys.update(names)
    covered = {p.values[0].args[-1].split("=")[0] for p in SET_CASES}
    assert keys <= covered, f"keys without a bad --set case: {sorted(keys - covered)}"
