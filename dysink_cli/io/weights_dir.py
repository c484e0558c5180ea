"""List the checkpoint files dysink recognises in a weights folder, by name pattern (no loading)."""

from __future__ import annotations

import fnmatch
from pathlib import Path

from dysink_cli.errors import CheckpointError

# (pattern on the file name, what it is); the first match wins, so specific patterns come first.
FILE_KINDS: tuple[tuple[str, str], ...] = (
    ("diffusion_pytorch_model*.safetensors", "Wan2.1 DiT weights"),
    ("config.json", "Wan2.1 DiT config"),
    ("Wan2.1_VAE.pth", "Wan2.1 VAE"),
    ("models_t5_umt5-xxl-enc-bf16.pth", "umT5-XXL text encoder"),
    ("PE-Core-*.pt", "PE-Core vision tower (memory descriptors)"),
    ("*lora*.pt", "LoRA"),
    ("*.pt", "generator checkpoint"),
)
TOKENIZER_DIR = "google/umt5-xxl"
MAX_DEPTH = 4


def _kind(name: str) -> str | None:
    return next((kind for pattern, kind in FILE_KINDS if fnmatch.fnmatch(name, pattern)), None)


def describe_weights_dir(path: Path) -> list[tuple[str, str]]:
    """(path relative to `path`, kind) for every recognised file, sorted; the tokenizer folder as one row."""
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(
            f"weights folder {root} does not exist", "pass --weights DIR (README: Real weights)"
        )
    rows: list[tuple[str, str]] = []
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        for child in sorted(folder.iterdir()):
            rel = child.relative_to(root).as_posix()
            if child.is_dir():
                if rel.endswith(TOKENIZER_DIR):
                    rows.append((rel + "/", "umT5 tokenizer"))
                elif depth + 1 < MAX_DEPTH:
                    stack.append((child, depth + 1))
            elif (kind := _kind(child.name)) is not None:
                rows.append((rel, kind))
    return sorted(rows)
