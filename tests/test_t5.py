"""umT5 encoder vs the `t5_encoder` fixture, bucket golden values, full-size layout, tokenizers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dysink_cli.errors import ConfigError, WeightsError
from dysink_cli.model.config import T5Config
from dysink_cli.model.t5 import UMT5Encoder, relative_position_bucket
from dysink_cli.model.tokenizer import ByteTokenizer, HFTokenizer, clean_prompt
from tests.conftest import FIXTURES

T5_DIR = FIXTURES / "t5_encoder"


def _fixture_config() -> tuple[T5Config, dict]:
    meta = json.loads((T5_DIR / "config.json").read_text())
    ctor = meta["model"]["constructor"]
    config = T5Config(
        vocab_size=ctor["vocab_size"],
        dim=ctor["dim"],
        dim_attn=ctor["dim_attn"],
        dim_ffn=ctor["dim_ffn"],
        num_heads=ctor["num_heads"],
        num_layers=ctor["encoder_layers"],
        num_buckets=ctor["num_buckets"],
        shared_pos=ctor["shared_pos"],
    )
    return config, meta["tolerance"]


@pytest.fixture(scope="module")
def fixture_run() -> tuple[UMT5Encoder, dict[str, torch.Tensor], dict]:
    assert T5_DIR.is_dir(), f"fixtures not found at {T5_DIR}"
    config, tolerance = _fixture_config()
    model = UMT5Encoder(config).eval()
    model.load_state_dict(load_file(T5_DIR / "weights.safetensors"), strict=True)
    return model, load_file(T5_DIR / "io.safetensors"), tolerance


@torch.no_grad()
def test_encoder_out_matches_fixture(fixture_run):
    model, io, tol = fixture_run
    out = model(io["ids"], io["mask"])
    torch.testing.assert_close(out, io["encoder_out"], **tol["encoder_out"])


@torch.no_grad()
def test_prompt_embeds_match_fixture(fixture_run):
    model, io, tol = fixture_run
    out = model.encode(io["ids"], io["mask"])
    torch.testing.assert_close(out, io["prompt_embeds"], **tol["prompt_embeds"])
    for row, length in enumerate(io["mask"].sum(dim=1).tolist()):
        assert torch.all(out[row, length:] == 0)
        assert torch.all(out[row, :length].abs().sum(-1) > 0)


@pytest.mark.parametrize(
    ("lo", "hi", "bucket"),
    [
        (8, 11, 8),
        (12, 15, 9),
        (16, 22, 10),
        (23, 31, 11),
        (32, 45, 12),
        (46, 63, 13),
        (64, 90, 14),
        (91, 1000, 15),
    ],
)
def test_bucket_golden_values(lo, hi, bucket):
    n = torch.arange(lo, hi + 1)
    assert torch.all(relative_position_bucket(-n, 32, 128) == bucket)
    assert torch.all(relative_position_bucket(n, 32, 128) == bucket + 16)


def test_bucket_exact_range():
    n = torch.arange(0, 8)
    assert relative_position_bucket(-n, 32, 128).tolist() == list(range(8))
    assert relative_position_bucket(n, 32, 128).tolist() == [0, *range(17, 24)]


def test_full_size_layout_on_meta():
    with torch.device("meta"):
        model = UMT5Encoder(T5Config())
    state = model.state_dict()
    assert len(state) == 242
    assert sum(t.numel() for t in state.values()) == 5_680_910_336
    assert state["token_embedding.weight"].shape == (256384, 4096)
    expected = {"token_embedding.weight", "norm.weight"}
    for i in range(24):
        p = f"blocks.{i}."
        expected |= {f"{p}norm1.weight", f"{p}norm2.weight", f"{p}ffn.gate.0.weight"}
        expected |= {f"{p}ffn.fc1.weight", f"{p}ffn.fc2.weight"}
        expected |= {f"{p}attn.{n}.weight" for n in "qkvo"}
        expected.add(f"{p}pos_embedding.embedding.weight")
    assert set(state) == expected
    assert state["blocks.3.pos_embedding.embedding.weight"].shape == (32, 64)
    assert state["blocks.3.ffn.fc2.weight"].shape == (4096, 10240)


def test_bad_head_count_raises():
    with pytest.raises(ConfigError, match="divisible"):
        UMT5Encoder(T5Config(vocab_size=10, dim=8, dim_attn=10, dim_ffn=8, num_heads=4))


# --- tokenizers ---------------------------------------------------------------------------


def test_clean_prompt_whitespace_rule():
    assert clean_prompt("  a \n\t cat &amp;amp; dog  ") == "a cat & dog"
    assert clean_prompt("") == ""


def test_byte_tokenizer_layout():
    tok = ByteTokenizer(vocab_size=1000, text_len=512)
    ids, mask = tok(["ab", "  ab  "])
    assert ids.shape == mask.shape == (2, 512)
    assert ids.dtype == mask.dtype == torch.int64
    assert ids[0, :3].tolist() == [2 + ord("a"), 2 + ord("b"), 1]
    assert torch.equal(ids[0], ids[1])  # cleaning strips the outer spaces
    assert mask[0].sum() == 3 and mask[0, :3].tolist() == [1, 1, 1]
    assert torch.all(ids[0, 3:] == 0) and torch.all(mask[0, 3:] == 0)


def test_byte_tokenizer_truncates_and_keeps_eos():
    tok = ByteTokenizer(vocab_size=7, text_len=8)
    ids, mask = tok(["x" * 50, ""])
    assert mask[0].tolist() == [1] * 8
    assert ids[0, -1] == 1 and torch.all((ids[0, :-1] >= 2) & (ids[0, :-1] < 7))
    assert ids[1].tolist() == [1] + [0] * 7 and mask[1].sum() == 1


def test_byte_tokenizer_feeds_encoder():
    config = T5Config(vocab_size=50, dim=16, dim_attn=16, dim_ffn=32, num_heads=2, num_layers=1)
    tok = ByteTokenizer(config.vocab_size, text_len=24)
    ids, mask = tok(["héllo wörld", "hi"])
    with torch.no_grad():
        out = UMT5Encoder(config).eval().encode(ids, mask)
    assert out.shape == (2, 24, 16)
    assert torch.all(out[1, 3:] == 0)


def test_byte_tokenizer_rejects_tiny_vocab():
    with pytest.raises(ConfigError):
        ByteTokenizer(vocab_size=2)


def _write_word_level(folder: Path, pad: str = "<pad>", post_eos: bool = False) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {pad: 0, "</s>": 1, "<unk>": 2, "a": 3, "cat": 4, "on": 5, "mat": 6, "&": 7}
    if pad != "<pad>":
        vocab = {"</s>": 0, "<unk>": 1, "<pad>": 2, "a": 3}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if post_eos:
        tok.post_processor = processors.TemplateProcessing(
            single="$A </s>", special_tokens=[("</s>", vocab["</s>"])]
        )
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))


@pytest.mark.parametrize("post_eos", [False, True])
def test_hf_tokenizer_from_folder(tmp_path, post_eos):
    _write_word_level(tmp_path, post_eos=post_eos)
    tok = HFTokenizer.from_folder(tmp_path, text_len=8)
    ids, mask = tok(["a  cat on\tthe mat", "a &amp;amp; a"])
    assert ids.shape == (2, 8) and ids.dtype == torch.int64
    assert ids[0].tolist() == [3, 4, 5, 2, 6, 1, 0, 0]  # "the" -> <unk>, then EOS, then pad
    assert mask[0].tolist() == [1, 1, 1, 1, 1, 1, 0, 0]
    assert ids[1].tolist() == [3, 7, 3, 1, 0, 0, 0, 0]


def test_hf_tokenizer_truncates_to_text_len(tmp_path):
    _write_word_level(tmp_path)
    ids, mask = HFTokenizer.from_folder(tmp_path, text_len=4)(["a cat on mat a cat"])
    assert ids[0].tolist() == [3, 4, 5, 1]
    assert mask[0].tolist() == [1, 1, 1, 1]


def test_hf_tokenizer_missing_files(tmp_path):
    with pytest.raises(WeightsError, match="tokenizer.json"):
        HFTokenizer.from_folder(tmp_path)


def test_hf_tokenizer_wrong_pad_id(tmp_path):
    _write_word_level(tmp_path, pad="</s>")
    with pytest.raises(WeightsError, match="expected 0"):
        HFTokenizer.from_folder(tmp_path)


def test_hf_tokenizer_malformed_json(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(WeightsError, match="cannot read"):
        HFTokenizer.from_folder(tmp_path)


@pytest.mark.skipif(
    importlib.util.find_spec("sentencepiece") is not None, reason="sentencepiece installed"
)
def test_spiece_only_without_sentencepiece(tmp_path):
    (tmp_path / "spiece.model").write_bytes(b"\x00")
    with pytest.raises(WeightsError, match="spiece.model") as info:
        HFTokenizer.from_folder(tmp_path)
    assert "sentencepiece" in info.value.hint
