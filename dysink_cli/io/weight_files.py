"""Strict weight loading from the published weight-file layouts; one error names the first mismatches.

`read_weight_file` reads .safetensors, a diffusers shard index or a weights-only .pt/.pth (with
`meta=True` only headers: every tensor on the meta device). `unwrap`, `clean_keys` and
`pe_state_dict` turn release layouts into the modules' bare keys (LoRA adapters: io/lora.py).
`load_strict` checks every key and shape; `materialize` casts and freezes. Imports errors only.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dysink_cli.errors import WeightsError

INDEX_SUFFIX = ".safetensors.index.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
WRAPPERS = ("generator_ema", "generator", "model", "state_dict", "weights")
FSDP_INFIX = "_fsdp_wrapped_module."
_ST_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}


def _first_line(err: BaseException, with_type: bool = False) -> str:
    text = str(err).strip()
    line = text.splitlines()[0] if text else ""
    if with_type or not line:
        return f"{type(err).__name__}: {line}" if line else type(err).__name__
    return line


def _to_meta(obj: Any) -> Any:
    """The same nested structure with every tensor replaced by an empty meta tensor."""
    if isinstance(obj, Tensor):
        return torch.empty(obj.shape, dtype=obj.dtype, device="meta")
    if isinstance(obj, Mapping):
        return {k: _to_meta(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_meta(v) for v in obj)
    return obj


def _read_safetensors(path: Path, meta: bool) -> dict[str, Tensor]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            if not meta:
                return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
            out = {}
            for k in f.keys():  # noqa: SIM118
                piece = f.get_slice(k)
                dtype = _ST_DTYPES.get(piece.get_dtype())
                if dtype is None:
                    raise WeightsError(
                        f"{path}: tensor {k} has unsupported dtype {piece.get_dtype()}",
                        "convert the file to float32, float16 or bfloat16",
                    )
                out[k] = torch.empty(piece.get_shape(), dtype=dtype, device="meta")
            return out
    except WeightsError:
        raise
    except Exception as err:  # noqa: BLE001 - safetensors raises its own SafetensorError and OSError
        raise WeightsError(f"cannot read {path}: {_first_line(err)}", "re-download the file") from None


def _read_index(path: Path, meta: bool) -> dict[str, Tensor]:
    """A diffusers shard index: `weight_map` {key: shard file}, every listed key in its shard."""
    try:
        weight_map = json.loads(path.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise WeightsError(
            f"cannot read shard index {path}: {_first_line(err)}",
            "re-download the index json next to its shards",
        ) from None
    out: dict[str, Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = path.parent / shard
        if not shard_path.is_file():
            raise WeightsError(
                f"{path} lists shard {shard}, which is not in {path.parent}",
                "download every shard the index names",
            )
        out.update(_read_safetensors(shard_path, meta))
    missing = sorted(set(weight_map) - set(out))
    if missing:
        raise WeightsError(
            f"{path}: {len(missing)} keys of the index are in no shard (first: {', '.join(missing[:3])})",
            "re-download the shards",
        )
    return out


def _torch_load(path: Path) -> Any:
    """Weights-only load, memory-mapped; files in torch's pre-1.6 format cannot be mapped and are read."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "_use_new_zipfile_serialization" not in str(err):
            raise
    return torch.load(path, map_location="cpu", weights_only=True)


REFUSED_HINT = "convert it to safetensors with a trusted tool, or get the file from its official source"
# pickle opcodes that import or call Python code (a weights-only load never needs them)
CODE_OPCODES = {82: "REDUCE", 99: "GLOBAL", 105: "INST", 111: "OBJ", 129: "NEWOBJ", 146: "NEWOBJ_EX",
                149: "STACK_GLOBAL"}  # fmt: skip


def _refusal(path: Path, err: pickle.UnpicklingError) -> WeightsError:
    """What torch's weights-only unpickler refused, and why, as one line (never "re-download it":
    the file may be exactly what its author published). Other garbage is a damaged file."""
    text = str(err)
    code = re.search(r"GLOBAL ([\w.]+)", text)
    opcode = re.search(r"Unsupported operand (\d+)", text)
    if code is not None:
        what = code[1]
    elif opcode is not None and int(opcode[1]) in CODE_OPCODES:
        what = f"pickle opcode {CODE_OPCODES[int(opcode[1])]}"
    else:
        return WeightsError(f"{path} is not a readable torch weights file", "re-download it")
    return WeightsError(
        f"refused to load {path}: its pickle wants to run code ({what}), which a weights file never needs",
        REFUSED_HINT,
    )


def _read_pickle(path: Path, meta: bool) -> Any:
    """torch.load with weights_only=True and mmap=True: tensors and plain containers only."""
    try:
        obj = _torch_load(path)
    except pickle.UnpicklingError as err:
        raise _refusal(path, err) from None
    except Exception as err:  # noqa: BLE001 - a damaged file fails anywhere inside torch.load
        raise WeightsError(
            f"cannot read {path}: {_first_line(err, with_type=True)[:200]}", "re-download it"
        ) from None
    return _to_meta(obj) if meta else obj


def read_weight_file(path: str | Path, meta: bool = False) -> Any:
    """The raw object of a weights file (dict of tensors, or a wrapper dict for .pt files).

    meta=True reads headers only: shapes and dtypes, nothing materialised.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path} does not exist", "check the weights folder and the manifest")
    name = path.name.lower()
    if name.endswith(INDEX_SUFFIX):
        return _read_index(path, meta)
    if name.endswith(".safetensors"):
        return _read_safetensors(path, meta)
    if name.endswith(PICKLE_SUFFIXES):
        return _read_pickle(path, meta)
    raise WeightsError(f"{path}: unknown weights format", "use .safetensors, a shard index, .pt or .pth")


def unwrap(obj: Any, source: str | Path, use_ema: bool = True) -> dict[str, Tensor]:
    """Descend `generator_ema` (when use_ema) / `generator` / `model` / `state_dict` / `weights`."""
    order = WRAPPERS if use_ema else tuple(w for w in WRAPPERS if w != "generator_ema")
    top = list(obj) if isinstance(obj, Mapping) else []
    while isinstance(obj, Mapping):
        key = next((k for k in order if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            break
        obj = obj[key]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(
            f"{source}: no state dict found (top-level keys: {', '.join(map(str, top[:8])) or 'none'})",
            f"expected tensors at the top level or under {' / '.join(order)}"
            + ("" if use_ema else "; set files.use_ema = true for an EMA-only file"),
        )
    return dict(obj)


def clean_key(key: str, strip_model: bool) -> str:
    """Remove every `_fsdp_wrapped_module.`, a leading `module.`, and (generator files) `model.`."""
    key = key.replace(FSDP_INFIX, "")
    key = key.removeprefix("module.")
    return key.removeprefix("model.") if strip_model else key


def clean_keys(state: Mapping[str, Tensor], source: str | Path, strip_model: bool) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        new = clean_key(key, strip_model)
        if new in out:
            raise WeightsError(
                f"{source}: keys collide after removing prefixes ({key} -> {new})",
                "the file mixes wrapped and bare copies of the same weights",
            )
        out[new] = value
    return out


# timm / open_clip PE-Core names -> lcm_pe names (inverse of timm's `_convert_pe`).
_TIMM_TOP = (
    ("patch_embed.proj.", "conv1."),
    ("norm_pre.", "ln_pre."),
    ("norm.", "ln_post."),
    ("attn_pool.latent", "attn_pool.probe"),
    ("attn_pool.proj.", "attn_pool.attn.out_proj."),
    ("attn_pool.norm.", "attn_pool.layernorm."),
    ("attn_pool.mlp.fc1.", "attn_pool.mlp.c_fc."),
    ("attn_pool.mlp.fc2.", "attn_pool.mlp.c_proj."),
)
_TIMM_BLOCK = (
    ("norm1.", "ln_1."),
    ("norm2.", "ln_2."),
    ("attn.qkv.", "attn.in_proj_"),
    ("attn.proj.", "attn.out_proj."),
    ("mlp.fc1.", "mlp.c_fc."),
    ("mlp.fc2.", "mlp.c_proj."),
)
_TIMM_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.+)$")


def _rename(key: str, table: tuple[tuple[str, str], ...]) -> str:
    return next((new + key[len(old) :] for old, new in table if key.startswith(old)), key)


def timm_to_lcm_pe(state: Mapping[str, Tensor], source: str | Path) -> dict[str, Tensor]:
    """timm `vit_pe_core_*` keys -> lcm_pe keys: q+kv -> in_proj, head [out, W] -> proj [W, out]."""
    out: dict[str, Tensor] = {}
    pool: dict[str, Tensor] = {}
    for key, value in state.items():
        block = _TIMM_BLOCK_KEY.match(key)
        if key == "cls_token":
            out["class_embedding"] = value.flatten()  # (1, 1, W) -> (W,)
        elif key == "pos_embed":
            out["positional_embedding"] = value.flatten(0, -2)  # (1, N, W) -> (N, W)
        elif key.startswith(("attn_pool.q.", "attn_pool.kv.")):
            pool[key] = value
        elif key == "head.weight":
            out["proj"] = value.t().contiguous()  # (out, W) -> (W, out)
        elif key == "head.bias":
            if not value.is_meta and bool(value.any()):
                raise WeightsError(
                    f"{source}: head.bias is not zero, but lcm_pe's proj has no bias",
                    "use PE-Core weights converted from Meta's release",
                )
        elif key.startswith("rope."):
            continue  # timm's fixed RoPE tables; the model recomputes them
        elif block:
            out[f"transformer.resblocks.{block[1]}.{_rename(block[2], _TIMM_BLOCK)}"] = value
        else:
            out[_rename(key, _TIMM_TOP)] = value
    for part in ("weight", "bias"):
        q, kv = pool.pop(f"attn_pool.q.{part}", None), pool.pop(f"attn_pool.kv.{part}", None)
        if (q is None) != (kv is None):
            raise WeightsError(
                f"{source}: attn_pool.q.{part} and attn_pool.kv.{part} must come together",
                "the file is incomplete; re-download it",
            )
        if q is not None:
            out[f"attn_pool.attn.in_proj_{part}"] = torch.cat([q, kv], dim=0)  # (W + 2W, ...)
    return out


def pe_state_dict(obj: Any, source: str | Path) -> dict[str, Tensor]:
    """A PE-Core file (Meta CLIP .pt, lcm_pe bare, timm or open_clip) -> lcm_pe bare keys."""
    state = clean_keys(unwrap(obj, source), source, strip_model=False)
    if any(k.startswith("visual.") for k in state):
        # Only the vision tower: text-tower keys have the same names without the prefix.
        state = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
    if any(k.startswith("trunk.") for k in state):  # open_clip nests the timm tower
        state = {k.removeprefix("trunk."): v for k, v in state.items()}
    if "cls_token" in state or "patch_embed.proj.weight" in state:
        state = timm_to_lcm_pe(state, source)
    return state


@dataclass(frozen=True)
class KeyReport:
    """How a state dict fits a module: matched keys, and the missing / unexpected / wrong-shape ones."""

    expected: int
    matched: int
    missing: list[str]
    unexpected: list[str]
    wrong_shapes: list[str]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shapes)

    def summary(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing (first: {', '.join(self.missing[:3])})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected (first: {', '.join(self.unexpected[:3])})")
        if self.wrong_shapes:
            parts.append(f"{len(self.wrong_shapes)} wrong shapes (first: {self.wrong_shapes[0]})")
        return f"{self.matched}/{self.expected} keys fit; " + "; ".join(parts) if parts else "all keys fit"


def compare_keys(module: nn.Module, state_dict: Mapping[str, Tensor]) -> KeyReport:
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    return KeyReport(len(expected), len(expected) - len(missing) - len(shapes), missing, unexpected, shapes)


def load_strict(module: nn.Module, state_dict: dict[str, Tensor], source: str | Path) -> nn.Module:
    """Load `state_dict` into `module` (possibly on meta) with exact keys and shapes, assign=True."""
    report = compare_keys(module, state_dict)
    if not report.ok:
        raise WeightsError(
            f"{source}: weights do not fit the model: {report.summary()}",
            "check that the file is for this model and size",
        )
    on_meta = any(p.is_meta for p in module.parameters())
    dtypes = {k: v.dtype for k, v in module.state_dict().items()}
    cast = {k: v if on_meta else v.to(dtypes[k]) for k, v in state_dict.items()}
    module.load_state_dict(cast, strict=True, assign=on_meta)
    return module


def materialize(
    module: nn.Module, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> nn.Module:
    """Cast/move a loaded module and freeze it for inference."""
    module.to(device=device, dtype=dtype)
    module.eval().requires_grad_(False)
    return module
