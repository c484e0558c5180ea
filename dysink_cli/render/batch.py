"""Batch renders: read entries, name outputs, decide what is finished, shard over ranks, gather results.

An entry is finished when `OUT.done` exists beside its output (written after a successful render) and
records the same settings (render.workdir's job fingerprint); one finished with other settings, or
under the old format without them, is rendered again. `OUT.partial` marks a render in progress; a
re-run continues its checkpoint, or starts it again when its settings changed.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from dysink_cli.config import read_text
from dysink_cli.errors import ConfigError, DysinkError
from dysink_cli.render.job import RenderJob
from dysink_cli.render.workdir import CHECKPOINT_META, JOB_FILE, job_fingerprint, work_dir_for
from dysink_cli.timeline import Timeline

JSONL_KEYS = ("prompt", "seconds", "seed", "output", "preset")
T = TypeVar("T")


@dataclass(frozen=True)
class BatchEntry:
    """One video of a batch: its position, a label for messages ('prompts.txt line 3') and prompts."""

    index: int
    label: str
    timeline: Timeline


@dataclass(frozen=True)
class EntryResult:
    """What happened to one entry (picklable: ranks exchange these)."""

    index: int
    label: str
    output: str
    status: str  # "done" | "skipped" | "failed"
    message: str = ""
    video_s: float = 0.0
    wall_s: float = 0.0
    rank: int = 0


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the non-blank, non-# lines."""
    text = read_text(path, "batch file")
    return [
        (n, line.strip())
        for n, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _jsonl_entry(index: int, label: str, line: str) -> BatchEntry:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{label} is not valid JSON: {err.msg}", 'write {"prompt": "...", "seconds": 30}'
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{label} is not a JSON object", 'write {"prompt": "...", "seconds": 30}')
    for key in data:
        if key not in JSONL_KEYS:
            close = difflib.get_close_matches(key, JSONL_KEYS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(JSONL_KEYS)}"
            raise ConfigError(f"{label}: unknown key '{key}'", hint)
    if "prompt" not in data:
        raise ConfigError(f"{label} has no prompt", 'add "prompt": "..."')
    fields = {k: v for k, v in data.items() if k != "prompt"}
    timeline = Timeline.from_dict({**fields, "segment": [{"at": 0, "prompt": data["prompt"]}]}, source=label)
    return BatchEntry(index, label, timeline)


def read_entries(path: Path) -> list[BatchEntry]:
    """Entries of a .txt (one prompt a line), .jsonl (one object a line) or a folder of timeline TOMLs."""
    if path.is_dir():
        files = sorted(path.glob("*.toml"))
        if not files:
            raise ConfigError(
                f"folder {path} has no .toml timelines", "put one timeline .toml per video there"
            )
        return [BatchEntry(i, f.name, Timeline.load(f)) for i, f in enumerate(files)]
    if not path.is_file():
        raise ConfigError(f"batch file {path} does not exist", "check the path")
    suffix = path.suffix.lower()
    if suffix not in (".txt", ".jsonl"):
        raise ConfigError(f"batch file {path} must be .txt, .jsonl or a folder", "rename it or convert it")
    lines = _lines(path)
    if not lines:
        raise ConfigError(f"batch file {path} has no entries", "write one prompt per line")
    if suffix == ".txt":
        return [
            BatchEntry(i, f"{path.name} line {n}", Timeline.from_prompt(text))
            for i, (n, text) in enumerate(lines)
        ]
    return [_jsonl_entry(i, f"{path.name} line {n}", text) for i, (n, text) in enumerate(lines)]


def slug(text: str, limit: int = 48) -> str:
    """'A red fox, running!' -> 'a-red-fox-running' (at most `limit` characters, cut at a hyphen)."""
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if len(words) > limit:
        words = words[:limit].rsplit("-", 1)[0] if "-" in words[:limit] else words[:limit]
    return words or "video"


def default_output(entry: BatchEntry) -> str:
    """NNNN-<slug>.mp4 (slug of the first prompt, or of the timeline file's name)."""
    base = Path(entry.label).stem if entry.label.endswith(".toml") else entry.timeline.segments[0].prompt
    return f"{entry.index:04d}-{slug(base)}.mp4"


def done_marker(output: Path) -> Path:
    return output.with_name(output.name + ".done")


def partial_marker(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def settings_of(job: RenderJob) -> dict[str, Any]:
    """The job's fingerprint as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(job_fingerprint(job)))


def _json_file(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_done(output: Path, job: RenderJob, label: str, video_s: float, wall_s: float) -> None:
    """Mark `output` finished, with the settings it was rendered with."""
    record = {"label": label, "seed": job.seed, "seconds": job.seconds, "video_s": video_s,
              "wall_s": wall_s, "fingerprint": settings_of(job)}  # fmt: skip
    done_marker(output).write_text(json.dumps(record) + "\n", encoding="utf-8")


def entry_state(output: Path, overwrite: bool, job: RenderJob) -> str:
    """'skip' (finished with these settings), 'changed' (finished by this batch with other settings,
    or an old `.done` without them: ours to replace), 'render', or 'foreign' (a file this batch did
    not write; needs --overwrite)."""
    if overwrite:
        return "render"
    if done_marker(output).exists() and output.exists():
        done = _json_file(done_marker(output)) or {}
        return "skip" if done.get("fingerprint") == settings_of(job) else "changed"
    if not output.exists() or partial_marker(output).exists():
        return "render"
    return "foreign"


def started_with(output: Path, job: RenderJob) -> bool:
    """The work folder beside `output` holds this job (its checkpoint's record, else its job file)."""
    work = work_dir_for(output)
    checkpoint = _json_file(work / CHECKPOINT_META)
    started = checkpoint.get("job") if checkpoint is not None else _json_file(work / JOB_FILE)
    return started == settings_of(job)


def shard(entries: Sequence[T], rank: int, world: int) -> list[T]:
    """Round-robin share of `rank` among `world` ranks."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in a world of {world}")
    return list(entries[rank::world])


@dataclass(frozen=True)
class DistInfo:
    """torchrun's WORLD_SIZE / RANK / LOCAL_RANK (1 / 0 / 0 without torchrun)."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> DistInfo:
        try:
            info = cls(int(env.get("WORLD_SIZE", 1)), int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)))
        except ValueError:
            raise ConfigError(
                "WORLD_SIZE / RANK / LOCAL_RANK are not integers", "launch with torchrun"
            ) from None
        if info.world < 1 or not 0 <= info.rank < info.world:
            raise ConfigError(f"RANK {info.rank} is not in WORLD_SIZE {info.world}", "launch with torchrun")
        return info


def init_distributed(info: DistInfo, use_cuda: bool) -> None:
    """Join torchrun's process group: nccl with one GPU per rank, gloo on CPU. No-op for one rank."""
    if info.world == 1:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
    # Ranks finish their shares hours apart; the only collective is the final gather.
    dist.init_process_group(
        "nccl" if use_cuda else "gloo", rank=info.rank, world_size=info.world, timeout=timedelta(days=7)
    )


def close_distributed(info: DistInfo) -> None:
    if info.world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def run_sharded(
    entries: Sequence[T], run_one: Callable[[T], EntryResult], info: DistInfo
) -> list[EntryResult]:
    """Run this rank's share, then gather every rank's results (sorted by entry index) on all ranks."""
    mine: list[EntryResult] = []
    for entry in shard(entries, info.rank, info.world):
        mine.append(run_one(entry))
    if info.world == 1:
        return mine
    import torch.distributed as dist

    parts: list[Any] = [None] * info.world
    dist.all_gather_object(parts, mine)
    return sorted((r for part in parts for r in part), key=lambda r: r.index)


def failure(entry: BatchEntry, output: Path, err: BaseException, rank: int) -> EntryResult:
    message = f"{err.message} ({err.hint})" if isinstance(err, DysinkError) and err.hint else str(err)
    if not isinstance(err, DysinkError):
        message = f"{type(err).__name__}: {message}"
    return EntryResult(entry.index, entry.label, str(output), "failed", message, rank=rank)
