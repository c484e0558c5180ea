"""A render's work folder (`OUT.dysink/`): the checkpoint file format, the memory bank's files and
the video parts of a resumed render. The one place that knows `checkpoint.json`.

A checkpoint is one safetensors file of tensors plus `checkpoint.json` (replaced atomically last),
so a crash while writing leaves the previous checkpoint intact. The work folder asks each state
owner (generator, decoder) for `state()` and hands it back with `load_state()`. A resumed render
writes its new frames into a part file here; at the end the parts are joined by stream copy.
Imports config, errors, engine.state and io; torch and safetensors load only when a checkpoint is
read or written, so the CLI can check paths early.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dysink_cli.config import build_config, config_to_dict
from dysink_cli.errors import OutputError, ResumeError
from dysink_cli.render.job import RenderJob, StartFrames
from dysink_cli.timeline import Segment

if TYPE_CHECKING:
    from torch import Tensor

    from dysink_cli.engine.state import Stateful

CHECKPOINT_META = "checkpoint.json"
CHECKPOINT_VERSION = 2
JOB_FILE = "job.json"  # the job, written at the start: a render killed before its first checkpoint restarts
LOCK_FILE = "lock"


def work_dir_for(output: Path) -> Path:
    """`video.mp4` -> `video.mp4.dysink/` beside it."""
    output = Path(output)
    return output.with_name(output.name + ".dysink")


def resumable(output: Path) -> bool:
    """An interrupted render of `output` left its work folder (re-running the job continues it)."""
    work = work_dir_for(output)
    return (work / CHECKPOINT_META).is_file() or (work / JOB_FILE).is_file()


def job_fingerprint(job: RenderJob) -> dict[str, Any]:
    """What must match for a work folder to continue this job (also enough to rebuild it)."""
    fingerprint = {
        "segments": [[s.at_s, s.prompt] for s in job.segments],
        "seconds": job.seconds,
        "seed": job.seed,
        "config": config_to_dict(job.config),
        "lossless": job.lossless,
    }
    if job.start is not None:
        fingerprint["start"] = job.start.fingerprint()
    return fingerprint


def checkpoint_due(since_last_s: float, last_cost_s: float | None, overhead: float) -> bool:
    """A periodic checkpoint may run when it keeps checkpointing within `overhead` of the time:
    at least last_cost / overhead seconds of rendering since the last one ended (0: always)."""
    if overhead <= 0 or last_cost_s is None:
        return True
    return since_last_s >= last_cost_s / overhead


@dataclass
class Checkpoint:
    """Loop state after block `meta['block'] - 1`: plain metadata and tensors."""

    meta: dict[str, Any]
    tensors: dict[str, Tensor]

    @property
    def block(self) -> int:
        """The first block a resume renders."""
        return int(self.meta["block"])


class WorkDir:
    """`OUT.dysink/`: opened for one render; checkpoints, parts, the bank's folder."""

    def __init__(self, output: Path) -> None:
        self.output = Path(output)
        self.path = work_dir_for(self.output)
        self._lock: int | None = None
        self._created = self._new_lock = False

    def acquire(self, job: RenderJob) -> Checkpoint | None:
        """Lock the output for this process, then find the checkpoint this job continues.

        A second render of the same output is refused at once, naming the running one; the kernel
        drops the lock of a killed process, so a stale one is taken over. A refused render leaves
        nothing behind."""
        if not self.path.parent.is_dir():
            raise OutputError(
                f"folder {self.path.parent} does not exist", "create it or pick another output path"
            )
        self._created = not self.path.exists()
        self.open()
        self._new_lock = not (self.path / LOCK_FILE).exists()
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise OutputError(
                f"{self.output} is being rendered right now by {holder}",
                "wait for that render to finish, or stop it, or pick another output path",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"dysink pid {os.getpid()} (started {time.strftime('%Y-%m-%d %H:%M:%S')})".encode())
        self._lock = fd
        try:
            checkpoint = self.find(job)
            (self.path / JOB_FILE).write_text(json.dumps(job_fingerprint(job)))
            return checkpoint
        except BaseException:  # refused: leave the folder as it was found
            if not self._created and self._new_lock:
                (self.path / LOCK_FILE).unlink(missing_ok=True)
            self.release(remove=self._created)
            raise

    def release(self, remove: bool = False) -> None:
        """Drop the lock (and the folder, for a render that leaves nothing to resume)."""
        if remove:
            self.remove()
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    @property
    def bank_dir(self) -> Path:
        return self.path / "bank"

    def open(self) -> None:
        """Create the folder and prove it is writable."""
        try:
            self.path.mkdir(exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as err:
            raise OutputError(
                f"cannot write the work folder {self.path}: {err.strerror or err}",
                "make the output's folder writable or pick another output path",
            ) from None

    def find(self, job: RenderJob) -> Checkpoint | None:
        """The checkpoint this job continues, or None for a fresh start (errors for a clash)."""
        out = self.output
        if job.overwrite:
            self._clear()
            return None
        checkpoint = self.load() if self.path.is_dir() else None
        if checkpoint is None:
            if out.exists() and not self._same_job_started(job):
                raise OutputError(f"{out} already exists", "pass --overwrite or pick another name")
            if not (out.parent if str(out.parent) else Path(".")).is_dir():
                raise OutputError(
                    f"folder {out.parent} does not exist", "create it or pick another output path"
                )
            return None
        if checkpoint.meta.get("job") != json.loads(json.dumps(job_fingerprint(job))):
            raise ResumeError(
                f"{self.path} holds a different render's checkpoint",
                "run the same command as before, or pass --overwrite to start again",
            )
        return checkpoint

    def _same_job_started(self, job: RenderJob) -> bool:
        """This job was started here and killed before its first checkpoint: its partial output
        is ours to replace (the restart renders the same frames)."""
        try:
            started = json.loads((self.path / JOB_FILE).read_text())
        except (OSError, ValueError):
            return False
        return started == json.loads(json.dumps(job_fingerprint(job)))

    def save(self, meta: dict[str, Any], owners: dict[str, Stateful]) -> None:
        """Write every owner's state to a new file, then point checkpoint.json at it, then tidy."""
        from safetensors import SafetensorError
        from safetensors.torch import save_file

        from dysink_cli.engine.state import join_states

        tensors, states = join_states({name: owner.state() for name, owner in owners.items()})
        name = f"checkpoint-{meta['block']:07d}.safetensors"
        old = self._read_meta()
        try:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(self.path / name))
            record = {**meta, "states": states, "version": CHECKPOINT_VERSION, "tensors": name}
            tmp = self.path / (CHECKPOINT_META + ".tmp")
            tmp.write_text(json.dumps(record, indent=1))
            os.replace(tmp, self.path / CHECKPOINT_META)
        except (OSError, SafetensorError) as err:
            (self.path / name).unlink(missing_ok=True)
            raise OutputError(
                f"cannot write a checkpoint in {self.path}: {err}",
                "free disk space; the video written so far is kept and plays",
            ) from None
        if old and old.get("tensors") and old["tensors"] != name:
            (self.path / old["tensors"]).unlink(missing_ok=True)

    @staticmethod
    def restore(checkpoint: Checkpoint, owners: dict[str, Stateful]) -> None:
        """Hand each owner its part of the checkpoint."""
        from dysink_cli.engine.state import split_states

        parts = split_states(checkpoint.tensors, checkpoint.meta["states"], list(owners))
        for name, owner in owners.items():
            owner.load_state(*parts[name])

    def _read_meta(self) -> dict[str, Any] | None:
        path = self.path / CHECKPOINT_META
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ResumeError(
                f"checkpoint {path} is unreadable: {err}",
                "delete the work folder (or pass --overwrite) to start again",
            ) from None

    def load(self) -> Checkpoint | None:
        """The last checkpoint here, or None if there is none. Corrupt files raise ResumeError."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        meta = self._read_meta()
        if meta is None:
            return None
        if meta.get("version") != CHECKPOINT_VERSION or "tensors" not in meta:
            raise ResumeError(
                f"checkpoint in {self.path} has an unknown format", "start again with --overwrite"
            )
        try:
            tensors = load_file(str(self.path / meta["tensors"]))
        except (OSError, SafetensorError) as err:
            raise ResumeError(
                f"checkpoint tensors {self.path / meta['tensors']} are corrupt: {err}",
                "start again with --overwrite (the video so far is kept)",
            ) from None
        return Checkpoint(meta, tensors)

    def part_path(self, index: int) -> Path:
        """Where a resumed render writes its frames: part-<index> in the work folder."""
        return self.path / f"part-{index:03d}{self.output.suffix}"

    def join(self, parts: list[dict[str, Any]], ffmpeg: str) -> None:
        """Stream-copy the parts' written frames into the output."""
        from dysink_cli.io.concat import join_parts

        join_parts([(Path(p["path"]), int(p["frames"])) for p in parts], self.output, self.path, ffmpeg)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def _clear(self) -> None:
        """Empty the folder for a fresh start (--overwrite), keeping the lock this process holds."""
        for entry in self.path.iterdir():
            if entry.name == LOCK_FILE:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _start_from(recorded: dict[str, Any] | None) -> StartFrames | None:
    if recorded is None:
        return None
    return StartFrames(Path(recorded["path"]), recorded["kind"], bool(recorded["include_input"]))


def job_from_checkpoint(output: Path, device: str = "auto", log_json: Path | None = None) -> RenderJob:
    """The RenderJob recorded in OUT.dysink/ (for `dysink resume OUT`): the checkpoint's, or the
    job file of a render killed before its first checkpoint (which then starts again)."""
    work = work_dir_for(output)
    meta_path, job_path = work / CHECKPOINT_META, work / JOB_FILE
    if not meta_path.is_file() and not job_path.is_file():
        raise ResumeError(
            f"nothing to resume: {work} holds no interrupted render", "render it with dysink render"
        )
    try:
        fp = (
            json.loads(meta_path.read_text())["job"]
            if meta_path.is_file()
            else json.loads(job_path.read_text())
        )
        return RenderJob(
            segments=tuple(Segment(float(a), p) for a, p in fp["segments"]),
            seconds=fp["seconds"],
            output=Path(output),
            config=build_config(fp["config"]),
            seed=fp["seed"],
            device=device,
            lossless=fp["lossless"],
            log_json=log_json,
            start=_start_from(fp.get("start")),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ResumeError(
            f"checkpoint in {work} is unreadable: {err}", "start again with --overwrite"
        ) from None
