"""MemoryBank's checkpoint state: write every entry, return the index (`checkpoint`), and reopen it
on a fresh bank over the same work folder (`load_state`). A part of MemoryBank (a base class of
it, kept apart for size); it reads and writes the bank's own fields and nothing else's.
Imports engine.memory and errors."""

from __future__ import annotations

import logging
from typing import Any

import torch

from dysink_cli.engine.memory.store import check_entry, remove_orphans
from dysink_cli.engine.memory.types import COUNTERS, STATE_VERSION, DiskFile
from dysink_cli.errors import ResumeError

log = logging.getLogger("dysink_cli.engine.memory.bank")


class BankPersistence:
    """checkpoint() / state_dict() / load_state() of MemoryBank."""

    # the bank's fields these methods use (set by MemoryBank.__init__)
    work_dir: Any
    dtype: str
    counters: dict[str, int]
    _ids: list[int]
    _frames: list[int]
    _desc: torch.Tensor
    _version: dict[int, int]
    _nbytes: dict[int, int]
    _next_id: int
    _files: dict[int, DiskFile]
    _protected: set[str]
    _deferred: dict[str, int]

    def checkpoint(self) -> dict[str, Any]:
        """Write every entry not yet on disk, wait, and return the state (see `state_dict`).

        Files named by this state are kept until the next checkpoint, so the state stays loadable.
        """
        if self.work_dir is None:
            raise ValueError("checkpoint() needs a bank with a work folder")
        for eid in self._ids:
            if not self._is_clean(eid):
                self._write(eid, self._ram[eid])
        self.flush()
        state = self.state_dict()
        self._protected = {row["file"] for row in state["entries"]}
        for name in [n for n in self._deferred if n not in self._protected]:
            (self.work_dir / name).unlink(missing_ok=True)
            del self._deferred[name]
        return state

    def state_dict(self) -> dict[str, Any]:
        """Index, descriptors (N, D) tensor, file names (None for an entry only in RAM), counters."""
        rows = [
            {
                "id": eid,
                "frame_index": frame,
                "version": self._version[eid],
                "nbytes": self._nbytes[eid],
                "file": self._files[eid].name if self._is_clean(eid) else None,
            }
            for eid, frame in zip(self._ids, self._frames, strict=True)
        ]
        return {
            "state_version": STATE_VERSION,
            "dtype": self.dtype,
            "next_id": self._next_id,
            "entries": rows,
            "descriptors": self._desc.clone(),
            "counters": dict(self.counters),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Reopen `checkpoint()`'s state on this fresh bank (same work folder and options).

        Files the state does not name (written after that checkpoint) are deleted.
        """
        if self.work_dir is None or self._ids:
            raise ValueError("load_state() needs a fresh bank with a work folder")
        try:
            if state["state_version"] != STATE_VERSION:
                raise ValueError(f"state version {state['state_version']}, expected {STATE_VERSION}")
            rows, desc = state["entries"], state["descriptors"]
            if rows and desc.shape[0] != len(rows):
                raise ValueError(f"{len(rows)} entries but {desc.shape[0]} descriptors")
            for row in rows:
                if row["file"] is None:
                    raise ValueError(f"the entry of frame {row['frame_index']} was never written to disk")
                eid = int(row["id"])
                check_entry(self.work_dir / row["file"], int(row["nbytes"]))
                self._ids.append(eid)
                self._frames.append(int(row["frame_index"]))
                self._version[eid], self._nbytes[eid] = int(row["version"]), int(row["nbytes"])
                self._files[eid] = DiskFile(row["file"], int(row["version"]), int(row["nbytes"]))
            self._desc = desc.float().clone() if rows else torch.zeros(0, 0)
            self._next_id = int(state["next_id"])
            self.counters.update({k: int(v) for k, v in state.get("counters", {}).items() if k in COUNTERS})
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ResumeError(
                f"the memory-bank state in the checkpoint is not usable: {err}",
                "start the render again without resuming",
            ) from None
        self._protected = {f.name for f in self._files.values()}
        for name in remove_orphans(self.work_dir, self._protected):
            log.info("memory bank: removed %s (written after the checkpoint)", name)
        self._apply_caps()
        self._spill_over_budget()
