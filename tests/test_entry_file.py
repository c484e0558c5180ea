"""Bank entry files (engine/memory/entry_file.py): every dtype round-trips bit for bit through
safetensors' own reader, and a damaged file is a one-line ResumeError, an absurd header refused
before anything is allocated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from dysink_cli.engine.memory.entry_file import ST_DTYPES, tensor_bytes, write_tensors
from dysink_cli.engine.memory.store import Payload, check_entry, read_entry, write_entry
from dysink_cli.errors import ResumeError


def test_every_dtype_round_trips_bit_for_bit(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    tensors = {f"t{i}": (torch.randn(3, 5, generator=gen) * 40).to(d) for i, d in enumerate(ST_DTYPES)}
    tensors["empty"] = torch.zeros(0, 4, dtype=torch.bfloat16)
    tensors["scalar"] = torch.tensor(2.5)
    write_tensors(tmp_path / "e.safetensors", tensors, {"format": "same"})
    with safe_open(str(tmp_path / "e.safetensors"), framework="pt") as f:
        got, meta = {name: f.get_tensor(name) for name in f.keys()}, f.metadata()
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
