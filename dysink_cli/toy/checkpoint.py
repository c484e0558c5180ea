"""The trainer's checkpoint: tensors in safetensors shards of at most 15 MiB, plus one JSON file.

Shards keep every file under the device's 16 MiB transfer limit. Writes go to temporary names
and are renamed last, so an interrupted save leaves the previous checkpoint readable.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

SHARD_BYTES = 15 * 2**20
META = "ckpt.json"


def save_checkpoint(folder: Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Write shards ckpt-NN.safetensors and ckpt.json (which names them) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, Tensor]] = [{}]
    size = 0
    for key in sorted(tensors):
        t = tensors[key].detach().to("cpu").contiguous()
        nbytes = t.numel() * t.element_size()
        if size and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][key] = t
        size += nbytes
    names = [f"ckpt-{i:02d}.safetensors" for i in range(len(shards))]
    for name, shard in zip(names, shards, strict=True):
        save_file(shard, str(folder / (name + ".tmp")))
    for name in names:
        os.replace(folder / (name + ".tmp"), folder / name)
    for stale in folder.glob("ckpt-*.safetensors"):
        if stale.name not in names:
            stale.unlink()
    tmp = folder / (META + ".tmp")
    tmp.write_text(json.dumps({**meta, "shards": names}, indent=1))
    os.replace(tmp, folder / META)


def load_checkpoint(folder: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    meta = json.loads((folder / META).read_text())
    tensors: dict[str, Tensor] = {}
    for name in meta.pop("shards"):
        tensors.update(load_file(str(folder / name)))
    return tensors, meta


def has_checkpoint(folder: Path) -> bool:
    return (folder / META).is_file()


def python_rng_state(rng: random.Random) -> list[Any]:
    version, state, gauss = rng.getstate()
    return [version, list(state), gauss]


def set_python_rng_state(rng: random.Random, saved: list[Any]) -> None:
    rng.setstate((saved[0], tuple(saved[1]), saved[2]))


def optimizer_tensors(
    opt: torch.optim.Optimizer, dtype: torch.dtype
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Adam moments (in `dtype`) and steps as tensors; the param groups as JSON."""
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            value = torch.as_tensor(value)
            tensors[f"opt.{idx}.{key}"] = (
                value.to(dtype) if value.is_floating_point() and value.dim() else value
            )
    return tensors, {"param_groups": sd["param_groups"]}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    params = [p for group in opt.param_groups for p in group["params"]]
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if not key.startswith("opt."):
            continue
        _, idx, name = key.split(".", 2)
        param = params[int(idx)]
        if value.dim():  # moments live beside their parameter; Adam keeps `step` on the CPU
            value = value.to(param.device, param.dtype)
        state.setdefault(int(idx), {})[name] = value.to(torch.float32) if not value.dim() else value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def append_losses(folder: Path, row: dict[str, Any], window: list[dict[str, Any]]) -> str:
    """`row` plus the mean of each float over the logged steps in `window`, appended to
    folder/losses.jsonl; returns the row as one `key=value` line for the log."""
    keys = sorted({k for w in window for k, v in w.items() if isinstance(v, float)})
    means = {k: sum(w[k] for w in window if k in w) / sum(1 for w in window if k in w) for k in keys}
    row = {k: round(v, 1) if k == "seconds" else v for k, v in row.items()}
    row |= {k: round(v, 5) for k, v in means.items()}
    with (folder / "losses.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")
    return " ".join(f"{k}={v}" for k, v in row.items())
