"""One bank entry's file: named tensors and string metadata in the safetensors layout.

Written streamed (tmp + rename); `tensor_bytes` checks a header against the file before anything is
allocated or mapped (store.py reads the tensors through safetensors' memory map). Plain reads
straight into fresh (pinned) tensors were tried and measured slower: 124 against 53-70 ms for a
256 MB entry on the CPU, retrieval 175 against 40 ms per block on the H100 (bench/RESULTS.md).
Errors are OSError (the disk) or ValueError (the contents); store.py turns them into the user's
messages.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

ST_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.uint8: "U8",
}
TORCH_DTYPES = {name: dtype for dtype, name in ST_DTYPES.items()}
MAX_HEADER_BYTES = 1 << 20  # an entry's header is a few hundred bytes


def write_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> None:
    """Write `tensors` (sorted by name) and `metadata` to `path` through a .tmp file. Raises OSError."""
    names = sorted(tensors)
    flat = [tensors[n].contiguous() for n in names]
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name, t in zip(names, flat, strict=True):
        size = t.numel() * t.element_size()
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape)}
        header[name]["data_offsets"] = [offset, offset + size]
        offset += size
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(len(head).to_bytes(8, "little") + head)
            for t in flat:
                f.write(t.reshape(-1).view(torch.uint8).numpy().data)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def tensor_bytes(path: Path) -> int:
    """Bytes of tensor data the header declares, the header checked against the file: ValueError
    where it is malformed, a shape does not match its bytes or the file is shorter than it says."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        if not 0 < size <= MAX_HEADER_BYTES:
            raise ValueError(f"a header of {size} bytes")
        index = json.loads(f.read(size))
        data_bytes = os.fstat(f.fileno()).st_size - 8 - size
    if not isinstance(index, dict):
        raise ValueError("a header that is not a table")
    index.pop("__metadata__", None)
    total = 0
    for name, info in index.items():
        dtype, shape, (first, end) = TORCH_DTYPES[info["dtype"]], info["shape"], info["data_offsets"]
        if min(shape, default=0) < 0 or end - first != math.prod(shape) * dtype.itemsize:
            raise ValueError(f"tensor {name}'s shape does not match its bytes")
        if not 0 <= first <= end <= data_bytes:
            raise ValueError(f"tensor {name} is cut short")
        total += end - first
    return total
