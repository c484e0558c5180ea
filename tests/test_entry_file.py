"""Bank entry files (engine/memory/entry_file.py): every dtype round-trips bit for bit, a damaged
file is a one-line ResumeError, and a read holds its tensors alone in RAM (no map, no staging copy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dysink_cli.engine.memory.entry_file import ST_DTYPES, read_tensors, tensor_bytes, write_tensors
from dysink_cli.engine.memory.store import Payload, check_entry, read_entry, write_entry
from dysink_cli.errors import ResumeError


def test_every_dtype_round_trips_bit_for_bit(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    tensors = {f"t{i}": (torch.randn(3, 5, generator=gen) * 40).to(d) for i, d in enumerate(ST_DTYPES)}
    tensors["empty"] = torch.zeros(0, 4, dtype=torch.bfloat16)
    tensors["scalar"] = torch.tensor(2.5)
    write_tensors(tmp_path / "e.safetensors", tensors, {"format": "same"})
    got, meta = read_tensors(tmp_path / "e.safetensors")
    assert meta == {"format": "same"} and got.keys() == tensors.keys()
    for name, t in tensors.items():
        assert got[name].dtype == t.dtype and got[name].shape == t.shape
        assert torch.equal(got[name].reshape(-1).view(torch.uint8), t.reshape(-1).view(torch.uint8)), name
    nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
    assert tensor_bytes(tmp_path / "e.safetensors") == nbytes


def _entry(tmp_path: Path) -> tuple[Path, int]:
    k, v = torch.randn(2, 1, 6, 2, 4, dtype=torch.bfloat16), torch.randn(2, 1, 6, 2, 4, dtype=torch.bfloat16)
    payload = Payload({"k": k, "v": v, "latent": torch.randn(1, 3, 4, 2, 2)}, torch.bfloat16)
    path = tmp_path / "entry_1.safetensors"
    write_entry(path, payload)
    return path, payload.nbytes


def test_a_damaged_entry_is_a_resume_error(tmp_path: Path) -> None:
    path, nbytes = _entry(tmp_path)
    assert torch.equal(read_entry(path, nbytes).tensors["k"], read_entry(path).tensors["k"])
    check_entry(path, nbytes)
    data = path.read_bytes()
    for name, damaged in {
        "cut": data[:-5], "empty": b"", "header": b"\xff" * 8 + data[8:], "json": data[:8] + b"[" + data[9:],
    }.items():  # fmt: skip
        path.write_bytes(damaged)
        for read in (lambda: read_entry(path, nbytes), lambda: check_entry(path, nbytes)):
            with pytest.raises(ResumeError, match="corrupt or missing") as err:
                read()
            assert "\n" not in str(err.value), name
    header_end = 8 + int.from_bytes(data[:8], "little")
    head = json.loads(data[8:header_end])
    head["k"]["shape"] = [1 << 40, 1 << 20]  # an absurd shape: refused before any allocation
    blown = json.dumps(head).encode()
    path.write_bytes(len(blown).to_bytes(8, "little") + blown + data[header_end:])
    with pytest.raises(ResumeError, match="does not match its bytes"):
        read_entry(path, nbytes)
    path.unlink()
    with pytest.raises(ResumeError, match="entry_1.safetensors"):
        read_entry(path, nbytes)


PEAK = """
import sys, torch
from pathlib import Path
from dysink_cli.engine.memory.entry_file import read_tensors
from safetensors import safe_open
def peak():  # VmHWM: this process's own high-water mark (ru_maxrss carries the parent's over exec)
    line = next(x for x in open("/proc/self/status") if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024
path, before = Path(sys.argv[1]), peak()
if sys.argv[2] == "ours":
    tensors = read_tensors(path)[0]
else:  # the reader it replaced: safetensors maps the file, and pinning copied out of the map
    with safe_open(str(path), framework="pt") as f:
        tensors = {name: f.get_tensor(name).clone() for name in f.keys()}
print(peak() - before)
"""


def test_a_read_holds_its_tensors_alone(tmp_path: Path) -> None:
    """Peak RSS growth of reading a 256 MB entry, in a fresh process: about the entry's size. The
    reader it replaced (a copy out of safetensors' memory map, as pinning made) is measured beside
    it: the mapped pages it reads count too, until the map closes."""
    path = tmp_path / "big.safetensors"
    big = torch.ones(64, 1024, 1024, dtype=torch.float32)
    write_tensors(path, {"k": big}, {})
    del big
    grown = {
        how: int(subprocess.run([sys.executable, "-c", PEAK, str(path), how], capture_output=True, text=True,
                                check=True).stdout)
        for how in ("ours", "mapped")
    }  # fmt: skip
    size = 256 * 2**20
    assert grown["ours"] < 1.25 * size, json.dumps(grown)
    assert grown["mapped"] > grown["ours"] + 0.5 * size, json.dumps(grown)
