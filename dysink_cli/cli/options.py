"""Turn command-line options plus a Timeline into a RenderJob, checking all that needs no engine.

Precedence for weights (`resolve_weights_dir`, the one place): --weights > $DYSINK_WEIGHTS > the
config (preset, timeline settings, --set); the first one given wins, and a missing folder is an
error, never a fall-back. Default preset: `toy` (the embedded toy world) without weights, `dysink` with them.
Imports config, errors, io.ffmpeg, render.job, render.workdir and timeline: no torch.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dysink_cli.config import RenderConfig, resolve_config, with_changes
from dysink_cli.errors import ConfigError, FfmpegError, GpuError, OutputError, TimelineError, WeightsError
from dysink_cli.io.arrays import is_array, probe_array
from dysink_cli.io.ffmpeg import check_output_suffix, probe_video
from dysink_cli.render.job import RenderJob, StartFrames
from dysink_cli.render.workdir import resumable, work_dir_for
from dysink_cli.timeline import Timeline, plan_frames

WEIGHTS_ENV = "DYSINK_WEIGHTS"
EMBEDDED = ("tiny", "toy")  # models shipped in the package: no weights folder
MAX_SEED = 2**63 - 1
MAX_SECONDS = 24 * 3600  # a day of video per render: far past any model's tested length


@dataclass(frozen=True)
class RenderOptions:
    """Flags shared by `render` and `batch` (None = not given on the command line)."""

    preset: str | None = None
    overrides: tuple[str, ...] = ()
    weights: Path | None = None
    device: str = "auto"
    fps: int | None = None
    crf: int | None = None
    lossless: bool = False
    overwrite: bool = False
    debug: bool = False


def parse_seconds(text: str | None, where: str = "--seconds") -> float | None:
    """The --seconds text as a number (None when not given); our own one-line error otherwise."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise ConfigError(
            f"{where} {text!r} is not a number", "pass seconds as a number, e.g. --seconds 30"
        ) from None


def check_seconds(seconds: float | None, where: str = "--seconds") -> float:
    if seconds is None:
        raise ConfigError("no video length given", "pass --seconds, e.g. --seconds 30")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(
            f"{where} {seconds:g} is not a positive number of seconds", "pass e.g. --seconds 30"
        )
    if seconds > MAX_SECONDS:
        raise ConfigError(
            f"{where} {seconds:g} is more than {MAX_SECONDS} s (24 hours) of video",
            f"pass at most --seconds {MAX_SECONDS}; render longer stories as several videos",
        )
    return float(seconds)


def check_seed(seed: int) -> int:
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed {seed} is out of range", f"use 0 .. {MAX_SEED}")
    return seed


def _check_folder(parent: Path, what: str = "") -> None:
    """The folder a new file goes in exists, is a folder, and can be written."""
    named = f"folder {parent}" + (f" for {what}" if what else "")
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"{parent} is a file, not a folder", "pick a path inside a folder")
    if not parent.is_dir():
        raise OutputError(f"{named} does not exist", f"create it first: mkdir -p {parent}")
    try:  # a real probe: mode bits say yes to root, a read-only or virtual file system says no
        fd, probe = tempfile.mkstemp(prefix=".dysink-probe-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputError(
            f"{named} is not writable: {err.strerror or err}", "pick a folder you can write to"
        ) from None


def check_output(path: Path, overwrite: bool) -> Path:
    """The output can be created: .mp4/.mkv, its folder is writable, and no clash unless --overwrite."""
    if path.is_dir():
        raise OutputError(f"output {path} is a folder", "pass a file name, e.g. -o video.mp4")
    check_output_suffix(path)
    _check_folder(path.parent)
    if path.exists() and not overwrite and not resumable(path):
        raise OutputError(f"{path} already exists", "pass --overwrite or pick another name")
    return path


def _same_file(a: Path, b: Path) -> bool:
    """One file under two spellings (relative, `..`, a symlink, a hard link), existing or not."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_log_json(path: Path, output: Path, *, may_exist: bool) -> Path:
    """--log-json can be written without touching the video: not the output (however spelled), not in
    its work folder, not a folder, in a writable folder, and new unless `may_exist` (--overwrite, or
    a render that continues a checkpoint and appends to its log)."""
    suggestion = f"--log-json {output.with_suffix('.jsonl').name}"
    if _same_file(path, output):
        raise OutputError(
            f"--log-json {path} is the output video {output}", f"give the log its own name: {suggestion}"
        )
    work = work_dir_for(output).resolve()
    if path.resolve() == work or work in path.resolve().parents:
        raise OutputError(f"--log-json {path} is inside the render's work folder {work}", f"use {suggestion}")
    if path.is_dir():
        raise OutputError(f"--log-json {path} is a folder", f"pass a file name: {suggestion}")
    _check_folder(path.parent, "--log-json")
    if path.exists() and not may_exist:
        raise OutputError(
            f"--log-json {path} already exists", "pass --overwrite to replace it, or pick another name"
        )
    existed = path.exists()
    try:  # the proof that the log can be written, even where permissions say yes and the disk no
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as err:
        raise OutputError(
            f"--log-json {path} cannot be written: {err.strerror or err}", "pick a file you can write to"
        ) from None
    if not existed:
        path.unlink()  # nothing is left behind until the render starts
    return path


def check_device(device: str) -> str:
    """'auto', 'cpu', 'cuda' or 'cuda:N'; CUDA must be there when asked for."""
    if device not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", device):
        raise ConfigError(f"--device {device!r} is not auto, cpu, cuda or cuda:N", "use --device auto")
    if device.startswith("cuda"):
        import torch  # lazy: only a CUDA request pays for the import here

        if not torch.cuda.is_available():
            raise GpuError(
                f"--device {device} was asked for but torch sees no CUDA GPU",
                "use --device cpu (slow) or check the driver with `dysink doctor`",
            )
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise GpuError(
                f"--device {device}: only {torch.cuda.device_count()} GPU(s) visible",
                "pick an index below that",
            )
    return device


def resolve_weights_dir(
    flag: Path | None, env: Mapping[str, str], config_value: str = ""
) -> tuple[Path | None, str]:
    """(folder, where it came from): --weights, else $DYSINK_WEIGHTS, else model.weights; the first
    one given wins and must be a folder (dysink never falls back to another). (None, "") if none."""
    given = (("--weights", flag), (f"${WEIGHTS_ENV}", env.get(WEIGHTS_ENV)), ("the config", config_value))
    for origin, value in given:
        if value is not None and str(value) != "":
            folder = Path(value).expanduser()
            if folder.exists() and not folder.is_dir():
                raise WeightsError(
                    f"weights folder {folder} (from {origin}) is a file, not a folder",
                    "point it at the folder that holds the weight files",
                )
            if not folder.is_dir():
                raise WeightsError(
                    f"weights folder {folder} (from {origin}) does not exist",
                    "point it at the folder with the weight files (README: Real weights)",
                )
            return folder, origin
    return None, ""


def resolve_render_config(
    opts: RenderOptions, timeline: Timeline, env: Mapping[str, str], preset_fallback: str | None = None
) -> RenderConfig:
    """Preset (flag > timeline > fallback > toy/dysink) + timeline settings + --set + flags."""
    weights_given = opts.weights is not None or bool(env.get(WEIGHTS_ENV))
    preset = opts.preset or timeline.preset or preset_fallback or ("dysink" if weights_given else "toy")
    if timeline.settings:
        try:
            resolve_config(preset, (), timeline.settings)
        except TimelineError:
            raise
        except ConfigError as err:
            raise TimelineError(f"{timeline.source} [settings]: {err.message}", err.hint) from None
    cfg = resolve_config(preset, opts.overrides, timeline.settings)
    folder, _ = resolve_weights_dir(opts.weights, env, cfg.model.weights)
    if folder is not None:
        cfg = with_changes(cfg, "model", weights=str(folder))
    elif cfg.model.name not in EMBEDDED:
        raise WeightsError(
            f"preset {preset!r} runs {cfg.model.name} and needs its weights",
            f"pass --weights DIR or set ${WEIGHTS_ENV}; --preset toy runs the embedded toy world",
        )
    if opts.crf is not None and not 0 <= opts.crf <= 51:
        raise ConfigError(
            f"--crf {opts.crf} is outside 0..51", "18 is visually lossless, 23 is x264's default"
        )
    changes = {k: v for k, v in (("fps", opts.fps), ("crf", opts.crf)) if v is not None}
    return with_changes(cfg, "output", **changes) if changes else cfg


def build_job(
    opts: RenderOptions,
    timeline: Timeline,
    output: Path,
    seconds: float | None,
    seed: int,
    env: Mapping[str, str],
    *,
    preset_fallback: str | None = None,
    log_json: Path | None = None,
    check_exists: bool = True,
    start: StartFrames | None = None,
) -> RenderJob:
    """Everything checked that can be checked before the engine starts; the timeline fits the plan."""
    cfg = resolve_render_config(opts, timeline, env, preset_fallback)
    seconds = check_seconds(seconds)
    plan = plan_frames(seconds, cfg.output.fps, cfg.engine.frames_per_block)
    timeline.switch_blocks(plan)
    check_output(output, opts.overwrite or not check_exists)
    if log_json is not None:  # a render that continues a checkpoint appends to its log
        check_log_json(log_json, output, may_exist=opts.overwrite or resumable(output))
    if start is not None:
        check_start(start, output, (cfg.output.width, cfg.output.height))
    return RenderJob(
        segments=timeline.segments,
        seconds=seconds,
        output=output,
        config=cfg,
        seed=check_seed(seed),
        device=opts.device,
        overwrite=opts.overwrite,
        lossless=opts.lossless,
        log_json=log_json,
        start=start,
    )


def start_frames(image: Path | None, video: Path | None, include_input: bool) -> StartFrames | None:
    """--image / --continue / --include-input as one StartFrames (or None)."""
    if image is not None and video is not None:
        raise ConfigError("--image and --continue were both given", "start from one of them")
    if include_input and video is None:
        raise ConfigError("--include-input needs --continue VIDEO", "drop --include-input, or add --continue")
    if image is not None:
        return StartFrames(image, "image")
    return StartFrames(video, "video", include_input) if video is not None else None


def check_start(start: StartFrames, output: Path, render_size: tuple[int, int]) -> None:
    """The picture or video exists, is a file, is not the output, can be read, has the render's
    aspect ratio and (a video) one block's frames: checked by ffmpeg before anything loads."""
    if start.path.is_dir():
        raise ConfigError(f"{start.flag} {start.path} is a folder", f"give the path of a {start.kind} file")
    if not start.path.is_file():
        raise ConfigError(f"{start.flag} {start.path} does not exist", "check the path")
    if _same_file(start.path, output):
        raise ConfigError(
            f"{start.flag} {start.path} is the output file",
            "write the continuation to a new file (-o another.mp4); --include-input keeps the old frames",
        )
    try:
        frames, width, height = probe_array(start.path) if is_array(start.path) else probe_video(start.path)
    except (FfmpegError, ValueError) as err:
        raise ConfigError(
            f"{start.flag} {start.path} cannot be read as {start.noun}: {getattr(err, 'message', err)}",
            start.fix,
        ) from None
    start.check_geometry(frames, (width, height), render_size)
