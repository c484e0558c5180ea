"""Prompt tokenizers for umT5: `tokenizer(prompts) -> (ids, mask)`, both `[B, text_len]` int64.

Every prompt is cleaned (Wan `clean='whitespace'`), truncated to `text_len - 1` tokens, followed
by EOS (counted in the mask) and padded with id 0 (mask 0), as HF `padding='max_length',
truncation=True, add_special_tokens=True` does for umT5.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from dysink_cli.errors import ConfigError, WeightsError

PAD_ID = 0
UMT5_EOS_TOKEN = "</s>"
UMT5_PAD_TOKEN = "<pad>"


class Tokenizer(Protocol):
    """Turns prompts into padded token ids and an attention mask."""

    text_len: int

    def __call__(self, prompts: list[str]) -> tuple[Tensor, Tensor]: ...


def clean_prompt(text: str) -> str:
    """Wan `HuggingfaceTokenizer._clean(clean='whitespace')`: ftfy, unescape twice, squash spaces.

    ftfy.fix_text runs only when ftfy is installed.
    """
    try:
        import ftfy
    except ImportError:
        pass
    else:
        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def pad_and_stack(token_lists: Sequence[Sequence[int]], eos_id: int, text_len: int) -> tuple[Tensor, Tensor]:
    """Truncate to `text_len - 1`, append `eos_id`, pad with 0 -> ids, mask `[B, text_len]`."""
    ids = torch.full((len(token_lists), text_len), PAD_ID, dtype=torch.int64)  # (B, text_len)
    mask = torch.zeros((len(token_lists), text_len), dtype=torch.int64)  # (B, text_len)
    for row, tokens in enumerate(token_lists):
        kept = [*tokens[: text_len - 1], eos_id]
        ids[row, : len(kept)] = torch.tensor(kept, dtype=torch.int64)
        mask[row, : len(kept)] = 1
    return ids, mask


def _check_text_len(text_len: int) -> None:
    if text_len < 1:
        raise ConfigError(f"text_len {text_len} must be at least 1", "umT5 uses text_len = 512")


class ByteTokenizer:
    """Deterministic demo tokenizer: UTF-8 byte `c` -> `2 + c % (vocab_size - 2)`; EOS 1, pad 0."""

    eos_id = 1

    def __init__(self, vocab_size: int, text_len: int = 512) -> None:
        if vocab_size < 3:
            raise ConfigError(
                f"ByteTokenizer vocab_size {vocab_size} must be at least 3",
                "ids 0 and 1 are pad and EOS; at least one id must be left for bytes",
            )
        _check_text_len(text_len)
        self.vocab_size = vocab_size
        self.text_len = text_len

    def __call__(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        span = self.vocab_size - 2
        tokens = [[2 + c % span for c in clean_prompt(p).encode("utf-8")] for p in prompts]
        return pad_and_stack(tokens, self.eos_id, self.text_len)


class HFTokenizer:
    """umT5 tokenizer from a local folder: `tokenizer.json` (tokenizers) or `spiece.model`."""

    def __init__(self, encode: Callable[[str], list[int]], eos_id: int, text_len: int = 512) -> None:
        """`encode(text) -> list[int]` without special tokens; use `from_folder` to build one."""
        _check_text_len(text_len)
        self._encode = encode
        self.eos_id = eos_id
        self.text_len = text_len

    @classmethod
    def from_folder(cls, path: str | Path, text_len: int = 512) -> HFTokenizer:
        """Load `path/tokenizer.json`, else `path/spiece.model` when sentencepiece is installed."""
        folder = Path(path)
        tokenizer_json = folder / "tokenizer.json"
        if tokenizer_json.is_file():
            return cls._from_tokenizer_json(tokenizer_json, text_len)
        spiece = folder / "spiece.model"
        if spiece.is_file():
            return cls._from_spiece(spiece, text_len)
        raise WeightsError(
            f"no tokenizer.json or spiece.model in {folder}",
            "point at the google/umt5-xxl folder shipped with Wan2.1-T2V-1.3B",
        )

    @classmethod
    def _from_tokenizer_json(cls, file: Path, text_len: int) -> HFTokenizer:
        from tokenizers import Tokenizer as RustTokenizer

        try:
            tok = RustTokenizer.from_file(str(file))
        except Exception as exc:  # noqa: BLE001 - tokenizers raises bare Exception on bad files
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise WeightsError(f"cannot read {file}: {first_line}", "re-download tokenizer.json") from None
        eos_id = tok.token_to_id(UMT5_EOS_TOKEN)
        if eos_id is None:
            raise WeightsError(f"{file} has no {UMT5_EOS_TOKEN} token", "use the umT5 tokenizer.json")
        pad_id = tok.token_to_id(UMT5_PAD_TOKEN)
        if pad_id is not None and pad_id != PAD_ID:
            raise WeightsError(
                f"{file} maps {UMT5_PAD_TOKEN} to id {pad_id}, expected 0", "use the umT5 tokenizer"
            )
        tok.no_padding()
        tok.no_truncation()

        def encode(text: str) -> list[int]:
            return tok.encode(text, add_special_tokens=False).ids

        return cls(encode, eos_id, text_len)

    @classmethod
    def _from_spiece(cls, file: Path, text_len: int) -> HFTokenizer:
        try:
            import sentencepiece
        except ImportError:
            raise WeightsError(
                f"{file.parent} has spiece.model but no tokenizer.json",
                "add tokenizer.json from google/umt5-xxl or `pip install sentencepiece`",
            ) from None
        sp = sentencepiece.SentencePieceProcessor(model_file=str(file))
        if sp.pad_id() not in (-1, PAD_ID):
            raise WeightsError(f"{file} has pad id {sp.pad_id()}, expected 0", "use the umT5 spiece.model")

        def encode(text: str) -> list[int]:
            return list(sp.encode(text))

        return cls(encode, int(sp.eos_id()), text_len)

    def __call__(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        tokens = [self._encode(clean_prompt(p)) for p in prompts]
        return pad_and_stack(tokens, self.eos_id, self.text_len)
