"""Storage tiers of the memory bank: the payload codec (same / fp8), entry files, the spill writer.

A payload is one entry's host tensors (k, v, latent, and per-layer scales for fp8). Files are
safetensors written by `write_entry` (tmp + rename, real OSErrors) and read by `read_entry`
(entry_file.py: straight into the payload's tensors).
`SpillWriter` runs writes and deletes in order on one thread; `DeviceLoader` reads files and copies
to the device on a side CUDA stream. The policy (which entry lives where) is memory_bank's.
"""

from __future__ import annotations

import errno
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from dysink_cli.engine.memory.entry_file import tensor_bytes, write_tensors
from dysink_cli.errors import OutputError, ResumeError

FP8 = torch.float8_e4m3fn
KV_FORMATS = ("same", "fp8")
ENTRY_GLOB = "entry_*.safetensors*"


def host_block_bytes(nbytes: int, pinned: bool) -> int:
    """Bytes a host tensor of `nbytes` occupies: torch's caching host allocator rounds a pinned block
    up to a power of two (a 0.43 GB K or V pins 0.54 GB); pageable memory is what it holds."""
    return 1 << (nbytes - 1).bit_length() if pinned and nbytes > 1 else nbytes


@dataclass
class Payload:
    """Host tensors of one entry: k, v (L, B, n, H, D) as stored, latent (B, F, C, H, W), and for
    fp8 k_scale, v_scale (L,). `ready` is a CUDA event while the copy into them is in flight."""

    tensors: dict[str, Tensor]
    kv_dtype: torch.dtype
    ready: Any = None

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    @property
    def host_nbytes(self) -> int:
        """Host memory the tensors hold: pinned blocks are rounded up as torch allocates them."""
        return sum(host_block_bytes(t.nbytes, t.is_pinned()) for t in self.tensors.values())

    @property
    def fmt(self) -> str:
        return "fp8" if "k_scale" in self.tensors else "same"

    def wait(self) -> None:
        if self.ready is not None:
            self.ready.synchronize()


@dataclass
class DeviceKV:
    """Decoded k, v (L, B, n, H, D) on the compute device; `ready` is the side-stream event or None."""

    k: Tensor
    v: Tensor
    ready: Any = None

    @property
    def nbytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()


def quantize_fp8(t: Tensor) -> tuple[Tensor, Tensor]:
    """Per-layer scaling to float8_e4m3fn: t (L, ...) -> q (L, ...), scale (L,) float32.

    The scale is the power of two that maps the layer's absmax into [128, 256): scaling is then
    exact, so CPU and CUDA quantize bit-identically (only the fp8 rounding itself loses bits).
    """
    amax = t.detach().abs().flatten(1).amax(dim=1).float()
    _, exponent = torch.frexp(amax)  # amax = m * 2**exponent, m in [0.5, 1)
    biased = (exponent.int() - 8 + 127).clamp(1, 254)  # float32 bits of 2**(exponent - 8), built exactly
    scale = torch.where(amax > 0, (biased << 23).view(torch.float32), torch.ones_like(amax))
    shape = (-1,) + (1,) * (t.dim() - 1)
    return (t.float() / scale.view(shape)).to(FP8), scale


def dequantize_fp8(q: Tensor, scale: Tensor, dtype: torch.dtype) -> Tensor:
    """Inverse of quantize_fp8: q (L, ...) * scale (L,) in float32, then cast to dtype."""
    return (q.float() * scale.view((-1,) + (1,) * (q.dim() - 1))).to(dtype)


def _to_host(t: Tensor, pin: bool, into: Tensor | None = None) -> Tensor:
    if t.device.type == "cpu":
        return t.pin_memory() if pin and not t.is_pinned() else t.contiguous()
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=pin) if into is None else into
    return host.copy_(t, non_blocking=pin)


def entry_tensors(k: Tensor, v: Tensor, latent: Tensor, fmt: str) -> dict[str, Tensor]:
    """The tensors an entry stores in format `fmt` (fp8: quantized K/V and their per-layer scales)."""
    if fmt not in KV_FORMATS:
        raise ValueError(f"bank dtype {fmt!r} is not one of {KV_FORMATS}")
    if fmt == "fp8":
        (qk, sk), (qv, sv) = quantize_fp8(k), quantize_fp8(v)
        tensors = {"k": qk, "v": qv, "k_scale": sk, "v_scale": sv}
    else:
        tensors = {"k": k, "v": v}
    tensors["latent"] = latent.detach()
    return tensors


def kv_shapes(
    kv_shape: tuple[int, ...], kv_dtype: torch.dtype, fmt: str
) -> dict[str, tuple[tuple[int, ...], Any]]:
    """Shape and dtype of the stored K and V (`entry_tensors`) without making them."""
    stored = FP8 if fmt == "fp8" else kv_dtype
    return {"k": (tuple(kv_shape), stored), "v": (tuple(kv_shape), stored)}


def encode_entry(
    k: Tensor, v: Tensor, latent: Tensor, fmt: str, pin: bool, stream: Any = None, spares: Any = None
) -> Payload:
    """Payload in host memory (pinned when `pin`); fp8 quantizes on the source device first.

    `stream` (CUDA): the device-to-host copies run there, after the work queued so far on the current
    stream, so the next block's kernels do not wait behind them; `Payload.ready` marks their end and
    the source tensors are held for that stream until then. `spares` (pinned.PinnedSpares): pinned
    buffers made ahead on a thread, used when a set of the right shapes is ready."""
    tensors = entry_tensors(k, v, latent, fmt)
    on_cuda = {name for name, t in tensors.items() if t.device.type == "cuda"}
    if not on_cuda:
        return Payload({name: _to_host(t, pin) for name, t in tensors.items()}, k.dtype)
    big = {n: tensors[n] for n in ("k", "v") if n in on_cuda}  # the latent and scales are small
    into = spares.take(big) if spares is not None and pin and big else None
    if stream is None:
        stream = torch.cuda.current_stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        host = {name: _to_host(t, pin, (into or {}).get(name)) for name, t in tensors.items()}
        for name in on_cuda:
            tensors[name].record_stream(stream)
        ready = torch.cuda.Event()
        ready.record(stream)
    return Payload(host, k.dtype, ready)


def decode_kv(payload: Payload, device: torch.device, non_blocking: bool = False) -> DeviceKV:
    """k, v in their original dtype on `device` (dequantized when stored as fp8)."""
    t = payload.tensors
    k, v = t["k"].to(device, non_blocking=non_blocking), t["v"].to(device, non_blocking=non_blocking)
    if payload.fmt == "fp8":
        k = dequantize_fp8(k, t["k_scale"].to(device, non_blocking=non_blocking), payload.kv_dtype)
        v = dequantize_fp8(v, t["v_scale"].to(device, non_blocking=non_blocking), payload.kv_dtype)
    return DeviceKV(k, v)


def output_error(err: OSError, what: str) -> OutputError:
    """OutputError for a failed write: disk full or anything else the OS refused."""
    if err.errno == errno.ENOSPC:
        return OutputError(
            f"disk full while writing {what}",
            "free disk space or lower bank.disk_gb; the video written so far is kept",
        )
    return OutputError(
        f"cannot write {what}: {err.strerror or err}",
        "make the render's work folder writable or choose another output location",
    )


def write_entry(path: Path, payload: Payload) -> None:
    """Write a payload as an entry file (entry_file.write_tensors). Raises OSError."""
    payload.wait()
    kv_dtype = str(payload.kv_dtype).removeprefix("torch.")
    write_tensors(path, payload.tensors, {"format": payload.fmt, "kv_dtype": kv_dtype})


def _corrupt(path: Path, err: Exception | str) -> ResumeError:
    detail = (str(err).splitlines() or ["unreadable"])[0]
    return ResumeError(
        f"memory-bank entry {path.name} is corrupt or missing: {detail}",
        f"start the render again without resuming, or delete {path.parent}",
    )


def read_entry(path: Path, nbytes: int | None = None, pin: bool = False) -> Payload:
    """Read an entry file through safetensors' memory map, pinned copies when `pin` (entry_file's
    plain reads straight into pinned tensors measured 4x slower: bench/RESULTS.md); ResumeError if
    missing, truncated, or not the expected size."""
    try:
        tensor_bytes(path)  # the header checked against the file before anything is mapped
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as err:
        raise _corrupt(path, err) from None
    tensors = {name: t.pin_memory() if pin else t for name, t in tensors.items()}
    kv_dtype = getattr(torch, meta.get("kv_dtype", ""), None)
    if not {"k", "v", "latent"} <= set(tensors) or not isinstance(kv_dtype, torch.dtype):
        raise _corrupt(path, "missing tensors or metadata")
    payload = Payload(tensors, kv_dtype)
    if nbytes is not None and payload.nbytes != nbytes:
        raise _corrupt(path, f"{payload.nbytes} bytes of tensors, expected {nbytes}")
    return payload


def check_entry(path: Path, nbytes: int) -> None:
    """Header-only check of an entry file (resume): present, parseable, expected tensor bytes."""
    try:
        total = tensor_bytes(path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise _corrupt(path, err) from None
    if total != nbytes:
        raise _corrupt(path, f"{total} bytes of tensors, expected {nbytes}")


def open_work_dir(path: Path) -> Path:
    """Create the work folder and prove it is writable; OutputError otherwise."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_probe"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise output_error(err, f"the memory-bank work folder {path}") from None
    return path


def remove_orphans(work_dir: Path, keep: set[str]) -> list[str]:
    """Delete entry files (and unfinished .tmp files) not named in `keep`; return their names."""
    removed = []
    for path in sorted(work_dir.glob(ENTRY_GLOB)):
        if path.name not in keep:
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


class SpillWriter:
    """One background thread that writes and deletes entry files in submission order.

    The queue is bounded (`put` blocks: back-pressure). The first OSError is kept as an OutputError
    and raised by the next `write`, `delete` or `flush`; later jobs are skipped.
    """

    def __init__(self, max_queue: int = 4) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self.error: Exception | None = None

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                if self.error is None:
                    job()
            except OSError as err:
                self.error = output_error(err, "a memory-bank entry")
            except Exception as err:  # keep the thread alive so flush() returns and re-raises
                self.error = err
            finally:
                self._queue.task_done()

    def _submit(self, job: Callable[[], None]) -> None:
        self.raise_error()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dysink-bank-writer", daemon=True)
            self._thread.start()
        self._queue.put(job)

    def write(self, path: Path, payload: Payload, done: Callable[[], None]) -> None:
        """Write `payload` to `path`, then call `done()` on the writer thread."""

        def job() -> None:
            try:
                write_entry(path, payload)
            except OSError as err:
                self.error = output_error(err, f"memory-bank entry {path}")
                return
            done()

        self._submit(job)

    def delete(self, path: Path) -> None:
        self._submit(lambda: path.unlink(missing_ok=True))

    def flush(self) -> None:
        """Wait until every submitted job ran; raise the first write error."""
        if self._thread is not None:
            self._queue.join()
        self.raise_error()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None


class DeviceLoader:
    """Reads entry files on a thread and copies host payloads to the device (side stream on CUDA)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if self.cuda else None
        self._pool: ThreadPoolExecutor | None = None

    def to_device(self, payload: Payload) -> DeviceKV:
        """Start the H2D copy (and fp8 dequantization) of a host payload; CPU: decode now."""
        if not self.cuda:
            return decode_kv(payload, self.device)
        with torch.cuda.stream(self.stream):
            if payload.ready is not None:
                self.stream.wait_event(payload.ready)
            out = decode_kv(payload, self.device, non_blocking=True)
            out.ready = torch.cuda.Event()
            out.ready.record(self.stream)
        return out

    def load(self, path: Path, nbytes: int) -> Future[tuple[Payload, DeviceKV]]:
        """Read a file (pinned on CUDA) and start its device copy, on the reader thread."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dysink-bank-reader")

        def job() -> tuple[Payload, DeviceKV]:
            payload = read_entry(path, nbytes, pin=self.cuda)
            return payload, self.to_device(payload)

        return self._pool.submit(job)

    def ready(self, kv: DeviceKV) -> DeviceKV:
        """Make the current stream wait for `kv`'s copy and own its memory from now on."""
        if kv.ready is not None:
            stream = torch.cuda.current_stream(self.device)
            stream.wait_event(kv.ready)
            kv.k.record_stream(stream)
            kv.v.record_stream(stream)
            kv.ready = None
        return kv

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
