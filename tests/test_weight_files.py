"""Checkpoint formats: tiny files in every published layout, written from the fixture weights, loaded
through the loaders render uses and replayed through the parity runner; strictness; full-size layouts.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from typer.testing import CliRunner

from dysink_cli.cli.app import app
from dysink_cli.config import FilesSection, resolve_config
from dysink_cli.errors import WeightsError
from dysink_cli.io.weight_files import read_weight_file
from dysink_cli.io.weights import (
    discover,
    load_generator,
    load_pe,
    load_text_encoder,
    load_vae,
)
from dysink_cli.io.weights_check import ModelConfigs, check_plan
from dysink_cli.model.config import PE_CORE_S16_384, UMT5_XXL, WAN_1_3B, WAN_VAE
from dysink_cli.model.dit import WanDiT
from dysink_cli.model.pe_core import PECoreVision
from dysink_cli.model.t5 import UMT5Encoder
from dysink_cli.model.vae import WanVAE
from dysink_cli.parity.__main__ import main as parity_main
from dysink_cli.parity.fixture import Fixture
from tests.conftest import FIXTURES

LORA_TARGETS = tuple(f"{a}.{p}" for a in ("self_attn", "cross_attn") for p in "qkvo") + ("ffn.0", "ffn.2")
TEXT_TOWER = (
    "transformer.resblocks.0.attn.in_proj_weight",
    "positional_embedding",
    "token_embedding.weight",
    "ln_final.weight",
    "text_projection",
    "logit_scale",
)


def _weights(fixture: str, name: str = "weights.safetensors") -> dict[str, Tensor]:
    return load_file(FIXTURES / fixture / name)


def _fixture_without_weights(fixture: str, tmp: Path) -> Path:
    """config, io and log only: the replay must take every model from --weights."""
    out = tmp / "fixtures" / fixture
    out.mkdir(parents=True)
    for name in ("config.json", "io.safetensors", "log.json"):
        if (FIXTURES / fixture / name).is_file():
            shutil.copy(FIXTURES / fixture / name, out / name)
    return out


def _replay(fixture: str, weights_dir: Path, tmp: Path, capsys) -> None:
    rc = parity_main([str(_fixture_without_weights(fixture, tmp)), "--weights", str(weights_dir), "--debug"])
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err
    assert "0 failed" in out.out


def _prefixed(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {prefix + k: v for k, v in state.items()}


def _fsdp(key: str) -> str:
    """An EMA key as FSDP names it: model._fsdp_wrapped_module.blocks.0._fsdp_wrapped_module.ffn.0.weight."""
    parts = key.split(".")
    if parts[0] == "blocks":
        parts.insert(2, "_fsdp_wrapped_module")
    return "model._fsdp_wrapped_module." + ".".join(parts)


def _split_lora(state: dict[str, Tensor], rank: int, alpha: float, seed: int, default: bool):
    """(base, peft_dict) with base + (alpha/rank) B A == state for every targeted Linear."""
    gen = torch.Generator().manual_seed(seed)
    base, peft = dict(state), {}
    adapter = ".default" if default else ""
    for key in state:
        module = key.removesuffix(".weight")
        if not key.endswith(".weight") or module.split(".", 2)[-1] not in LORA_TARGETS:
            continue
        out_dim, in_dim = state[key].shape
        a = torch.randn(rank, in_dim, generator=gen) * 0.2
        b = torch.randn(out_dim, rank, generator=gen) * 0.2
        base[key] = state[key] - (alpha / rank) * (b @ a)
        peft[f"base_model.model.{module}.lora_A{adapter}.weight"] = a
        peft[f"base_model.model.{module}.lora_B{adapter}.weight"] = b
    return base, peft


def _meta_pe(pe: dict[str, Tensor]) -> dict:
    """Meta's CLIP .pt: state_dict wrapper, module.visual.* vision keys, colliding text-tower keys."""
    text = {k: torch.full((3, 5), 7.0) for k in TEXT_TOWER}
    return {"state_dict": {**_prefixed(pe, "module.visual."), **_prefixed(text, "module.")}}


def _timm_pe(pe: dict[str, Tensor]) -> dict[str, Tensor]:
    """timm `vit_pe_core_*` layout, converted forward as timm's `_convert_pe` describes."""
    width = pe["class_embedding"].shape[0]
    renames = (
        ("conv1.", "patch_embed.proj."),
        ("positional_embedding", "pos_embed"),
        ("class_embedding", "cls_token"),
        ("transformer.resblocks.", "blocks."),
        ("ln_pre.", "norm_pre."),
        ("ln_post.", "norm."),
        ("ln_1.", "norm1."),
        ("ln_2.", "norm2."),
        ("in_proj_", "qkv."),
        ("out_proj.", "proj."),
        ("mlp.c_fc.", "mlp.fc1."),
        ("mlp.c_proj.", "mlp.fc2."),
        ("attn_pool.probe", "attn_pool.latent"),
        ("attn_pool.layernorm.", "attn_pool.norm."),
    )
    out = {}
    for key, value in pe.items():
        if key.startswith("attn_pool.attn.in_proj_"):
            part = key.rsplit("_", 1)[-1]
            out[f"attn_pool.q.{part}"], out[f"attn_pool.kv.{part}"] = value[:width], value[width:]
            continue
        if key == "proj":
            out["head.weight"], out["head.bias"] = value.t().contiguous(), torch.zeros(value.shape[1])
            continue
        new = key
        for old, rep in renames:
            new = new.replace(old, rep)
        new = new.replace("attn_pool.attn.proj.", "attn_pool.proj.")
        if key == "class_embedding":
            value = value[None, None]
        elif key == "positional_embedding":
            value = value[None]
        out[new] = value.clone()
    return out


def _wan_folder(root: Path, fixture: str, sharded: bool = False) -> Path:
    folder = root / "Wan2.1-T2V-1.3B"
    folder.mkdir(parents=True)
    state = _weights(fixture)
    ctor = json.loads((FIXTURES / fixture / "config.json").read_text())["model"]["constructor"]
    (folder / "config.json").write_text(json.dumps({"_class_name": "WanModel", **ctor}))
    if not sharded:
        save_file(state, folder / "diffusion_pytorch_model.safetensors")
        return folder
    keys = sorted(state)
    shards = {
        "diffusion_pytorch_model-00001-of-00002.safetensors": keys[: len(keys) // 2],
        "diffusion_pytorch_model-00002-of-00002.safetensors": keys[len(keys) // 2 :],
    }
    for name, part in shards.items():
        save_file({k: state[k] for k in part}, folder / name)
    index = {"metadata": {"total_size": 0}, "weight_map": {k: n for n, part in shards.items() for k in part}}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    return folder


# ---- Wan2.1 folder ------------------------------------------------------------------------------


@pytest.mark.parametrize(("fixture", "sharded"), [("causal_window", False), ("dit_forward", True)])
def test_wan_diffusers_folder_replays(tmp_path, capsys, fixture, sharded):
    _wan_folder(tmp_path / "w", fixture, sharded)
    plan = discover(tmp_path / "w")
    assert plan.generator is None and plan.wan_dit.name.startswith("diffusion_pytorch_model")
    assert plan.wan_dit.name.endswith(".index.json") == sharded
    _replay(fixture, tmp_path / "w", tmp_path, capsys)


def test_wan_config_json_must_match_the_model(tmp_path):
    folder = _wan_folder(tmp_path, "dit_forward")
    (folder / "config.json").write_text(json.dumps({"dim": 1536, "num_layers": 30}))
    cfg = Fixture.load(FIXTURES / "dit_forward").dit_config()
    with pytest.raises(WeightsError, match="describes another model: dim 1536 != 64"):
        load_generator(discover(tmp_path), cfg, torch.float32, "cpu")


# ---- generator files ----------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["generator", "generator_ema_fsdp", "model", "safetensors"])
def test_generator_file_replays_causal_window(tmp_path, capsys, layout):
    state = _weights("causal_window")
    decoy = {k: torch.zeros_like(v) for k, v in state.items()}
    root = tmp_path / "w"
    root.mkdir()
    if layout == "generator":
        torch.save({"generator": _prefixed(state, "model."), "step": 10}, root / "longlive_base.pt")
    elif layout == "generator_ema_fsdp":  # EMA preferred over the (decoy) raw generator
        ema = {_fsdp(k): v for k, v in state.items()}
        torch.save(
            {"generator": _prefixed(decoy, "model."), "generator_ema": ema, "critic": {}},
            root / "self_forcing_dmd.pt",
        )
    elif layout == "model":
        torch.save({"model": _prefixed(state, "model.")}, root / "stage1_base.pt")
    else:
        save_file(_prefixed(state, "model."), root / "my_generator.safetensors")
        (root / "preset.toml").write_text('[files]\ngenerator = "my_generator.safetensors"\n')
    _wan_folder(root, "dit_forward")  # a Wan DiT is present, and must be overridden entirely
    if layout == "safetensors":
        cfg = resolve_config(str(root / "preset.toml"))
        plan = discover(root, cfg.files)
        dit = load_generator(
            plan, Fixture.load(FIXTURES / "causal_window").dit_config(), torch.float32, "cpu"
        )
        assert all(torch.equal(dit.state_dict()[k], v) for k, v in state.items())
        return
    _replay("causal_window", root, tmp_path, capsys)


def test_use_ema_false_reads_the_raw_generator(tmp_path):
    state = _weights("dit_forward")
    raw = {k: v + 1 for k, v in state.items()}
    torch.save(
        {"generator": _prefixed(raw, "model."), "generator_ema": _prefixed(state, "model.")},
        tmp_path / "self_forcing_dmd.pt",
    )
    cfg = Fixture.load(FIXTURES / "dit_forward").dit_config()
    ema = load_generator(discover(tmp_path), cfg, torch.float32, "cpu")
    plain = load_generator(discover(tmp_path, FilesSection(use_ema=False)), cfg, torch.float32, "cpu")
    key = "blocks.0.self_attn.q.weight"
    assert torch.equal(ema.state_dict()[key], state[key]) and torch.equal(plain.state_dict()[key], raw[key])


# ---- release folders: DySink (base + two LoRAs + PE + VAE), LongLive, Self-Forcing ----------------


def test_dysink_release_folder_replays_dysink_rollout(tmp_path, capsys):
    root = tmp_path / "DySink-weights"
    root.mkdir()
    base, stage2 = _split_lora(_weights("dysink_rollout"), rank=4, alpha=8.0, seed=1, default=True)
    base, stage3 = _split_lora(base, rank=3, alpha=3.0, seed=2, default=False)
    torch.save(
        {"generator": _prefixed(base, "model."), "critic": {"x": torch.ones(1)}}, root / "stage1_base.pt"
    )
    torch.save(
        {
            "generator_lora": stage2,
            "critic_lora": {"junk": torch.ones(2)},
            "step": 3,
            "lora_config": {"type": "lora", "rank": 4, "alpha": 8, "dropout": 0.0},
        },
        root / "stage2_lora.pt",
    )
    torch.save(stage3, root / "stage3_lora.pt")  # raw PEFT dict: rank from A, alpha = rank
    torch.save(_meta_pe(_weights("dysink_rollout", "pe_weights.safetensors")), root / "PE-Core-S16-384.pt")
    torch.save(_weights("dysink_rollout", "vae_weights.safetensors"), root / "Wan2.1_VAE.pth")
    plan = discover(tmp_path)  # the release sits one level down
    assert plan.release == "DySink" and [p.name for p in plan.loras] == ["stage2_lora.pt", "stage3_lora.pt"]
    assert "stage2_lora.pt" in plan.describe() and "PE-Core-S16-384.pt" in plan.describe()
    _replay("dysink_rollout", tmp_path, tmp_path, capsys)


def test_longlive_release_folder_replays_static_sink(tmp_path, capsys):
    base, lora = _split_lora(_weights("causal_static_sink"), rank=2, alpha=2.0, seed=3, default=False)
    torch.save({"generator": _prefixed(base, "model.")}, tmp_path / "longlive_base.pt")
    torch.save({"generator_lora": lora, "critic_lora": {}}, tmp_path / "lora.pt")
    assert discover(tmp_path).release == "LongLive"
    _replay("causal_static_sink", tmp_path, tmp_path, capsys)


def test_self_forcing_release_replays_rolling_sink(tmp_path, capsys):
    state = _weights("rolling_sink")
    folder = tmp_path / "weights"
    folder.mkdir()
    ema = {_fsdp(k): v for k, v in state.items()}
    torch.save(
        {"generator": _prefixed({k: -v for k, v in state.items()}, "model."), "generator_ema": ema},
        folder / "self_forcing_dmd.pt",
    )
    assert discover(tmp_path).release == "Self-Forcing"
    _replay("rolling_sink", tmp_path, tmp_path, capsys)


# ---- VAE, T5 (+ tokenizer), PE-Core layouts ------------------------------------------------------


def test_vae_pth_loads_the_fixture_vae(tmp_path):
    state = _weights("vae")
    torch.save({k: v.clone() for k, v in state.items()}, tmp_path / "Wan2.1_VAE.pth")
    fx = Fixture.load(FIXTURES / "vae")
    vae = load_vae(discover(tmp_path), fx.vae_config(fx.config["model"]), torch.float32, "cpu")
    assert vae.state_dict().keys() == state.keys()
    assert all(torch.equal(vae.state_dict()[k], v) for k, v in state.items()) and not vae.training


def _tokenizer_folder(root: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder = root / "google" / "umt5-xxl"
    folder.mkdir(parents=True)
    tok = Tokenizer(
        models.WordLevel({"<pad>": 0, "</s>": 1, "<unk>": 2, "a": 3, "red": 4, "fox": 5}, "<unk>")
    )
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))


def test_t5_pth_replays_t5_encoder_and_tokenizer_loads(tmp_path, capsys):
    torch.save(_weights("t5_encoder"), tmp_path / "models_t5_umt5-xxl-enc-bf16.pth")
    _tokenizer_folder(tmp_path)
    _replay("t5_encoder", tmp_path, tmp_path, capsys)
    cfg = Fixture.load(FIXTURES / "t5_encoder").t5_config()
    _, tokenizer = load_text_encoder(discover(tmp_path), cfg, torch.float32, "cpu")
    ids, mask = tokenizer(["a  red fox"])
    assert ids.shape == (1, cfg.text_len) and ids[0, :4].tolist() == [3, 4, 5, 1] and int(mask.sum()) == 4


def test_t5_bf16_pth_loads_exactly_and_upcasts(tmp_path):
    """The real file is bf16: loaded weights are exactly the bf16 values, upcast to the compute dtype."""
    state = _weights("t5_encoder")
    torch.save({k: v.bfloat16() for k, v in state.items()}, tmp_path / "models_t5_umt5-xxl-enc-bf16.pth")
    _tokenizer_folder(tmp_path)
    fx = Fixture.load(FIXTURES / "t5_encoder")
    encoder, _ = load_text_encoder(discover(tmp_path), fx.t5_config(), torch.float32, "cpu")
    reference = UMT5Encoder(fx.t5_config()).eval()
    reference.load_state_dict({k: v.bfloat16().float() for k, v in state.items()})
    for k, v in encoder.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, reference.state_dict()[k])
    with torch.no_grad():
        got = encoder.encode(fx.io["ids"], fx.io["mask"])
        assert torch.equal(got, reference.encode(fx.io["ids"], fx.io["mask"]))
    assert (got - fx.io["prompt_embeds"]).abs().max() < 0.05  # bf16 rounding of the weights only


@pytest.mark.parametrize("layout", ["meta_pt", "timm", "open_clip"])
def test_pe_core_layouts_load_to_the_fixture_tower(tmp_path, layout):
    pe = _weights("dysink_rollout", "pe_weights.safetensors")
    manifest = FilesSection()
    if layout == "meta_pt":
        torch.save(_meta_pe(pe), tmp_path / "PE-Core-S16-384.pt")
    elif layout == "timm":
        save_file(_timm_pe(pe), tmp_path / "pe_timm.safetensors")
        manifest = FilesSection(pe="pe_timm.safetensors")
    else:
        text = {k: torch.full((3, 5), 7.0) for k in TEXT_TOWER}
        save_file(
            {**_prefixed(_timm_pe(pe), "visual.trunk."), **text}, tmp_path / "open_clip_model.safetensors"
        )
    fx = Fixture.load(FIXTURES / "dysink_rollout")
    tower = load_pe(discover(tmp_path, manifest), fx.pe_config(), "cpu")
    assert {k: v.dtype for k, v in tower.state_dict().items()} == dict.fromkeys(pe, torch.float32)
    assert all(torch.equal(tower.state_dict()[k], v) for k, v in pe.items())


def test_timm_head_bias_must_be_zero(tmp_path):
    timm = _timm_pe(_weights("dysink_rollout", "pe_weights.safetensors"))
    timm["head.bias"] = torch.ones_like(timm["head.bias"])
    save_file(timm, tmp_path / "open_clip_model.safetensors")
    with pytest.raises(WeightsError, match="head.bias is not zero"):
        load_pe(discover(tmp_path), Fixture.load(FIXTURES / "dysink_rollout").pe_config(), "cpu")


# ---- strictness and refusals ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        ("missing", "1 missing (first: blocks.3.ffn.2.bias)"),
        ("extra", "1 unexpected (first: blocks.9.ffn.0.weight)"),
        ("shape", "1 wrong shapes (first: head.head.bias (63,) != (64,))"),
    ],
)
def test_mismatch_is_one_error_line_naming_keys_and_file(tmp_path, change, expect):
    state = _prefixed(_weights("dit_forward"), "model.")
    if change == "missing":
        del state["model.blocks.3.ffn.2.bias"]
    elif change == "extra":
        state["model.blocks.9.ffn.0.weight"] = torch.zeros(2)
    else:
        state["model.head.head.bias"] = torch.zeros(63)
    torch.save({"generator": state}, tmp_path / "stage1_base.pt")
    cfg = Fixture.load(FIXTURES / "dit_forward").dit_config()
    with pytest.raises(WeightsError) as err:
        load_generator(discover(tmp_path), cfg, torch.float32, "cpu")
    text = str(err.value)
    assert expect in text and str(tmp_path / "stage1_base.pt") in text and "\n" not in text


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


class _Shell:
    def __reduce__(self):
        return (os.system, ("true",))


@pytest.mark.parametrize(
    ("payload", "code"),
    [("namespace", "argparse.Namespace"), ("touch", "getattr"), ("shell", "posix.system")],
)
def test_pickle_that_is_not_weights_only_is_refused(tmp_path, payload, code):
    marker = tmp_path / "unpickled"
    extra = {"namespace": argparse.Namespace(lr=1e-4), "touch": _Evil(marker), "shell": _Shell()}[payload]
    path = tmp_path / "self_forcing_dmd.pt"
    torch.save({"generator": _weights("dit_forward"), "args": extra}, path)
    cfg = Fixture.load(FIXTURES / "dit_forward").dit_config()
    with pytest.raises(WeightsError) as err:
        load_generator(discover(tmp_path), cfg, torch.float32, "cpu")
    assert err.value.message == (
        f"refused to load {path}: its pickle wants to run code ({code}), which a weights file never needs"
    )
    assert "safetensors" in err.value.hint and "official source" in err.value.hint
    assert "download" not in err.value.hint and not marker.exists()


def test_raw_pickle_with_code_is_refused_not_called_damaged(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps(_Shell(), protocol=4))  # not torch.save: the legacy unpickler path
    refused = r"refused to load .*model\.pt: its pickle wants to run code"
    with pytest.raises(WeightsError, match=refused) as err:
        with pytest.warns(UserWarning, match="pickle protocol 4"):  # torch's own note on the format
            read_weight_file(path)
    assert "(pickle opcode STACK_GLOBAL)" in err.value.message and "download" not in err.value.hint


def test_legacy_pt_loads_weights_only_and_a_damaged_file_is_one_error(tmp_path):
    state = _weights("vae")
    torch.save(state, tmp_path / "Wan2.1_VAE.pth", _use_new_zipfile_serialization=False)  # cannot be mmap'd
    fx = Fixture.load(FIXTURES / "vae")
    vae = load_vae(discover(tmp_path), fx.vae_config(fx.config["model"]), torch.float32, "cpu")
    assert torch.equal(vae.state_dict()["decoder.head.2.weight"], state["decoder.head.2.weight"])
    (tmp_path / "Wan2.1_VAE.pth").write_bytes(b"not a checkpoint" * 8)
    with pytest.raises(WeightsError, match="Wan2.1_VAE.pth is not a readable torch weights file"):
        load_vae(discover(tmp_path), fx.vae_config(fx.config["model"]), torch.float32, "cpu")


def test_lora_for_a_missing_module_is_an_error(tmp_path):
    _, lora = _split_lora(_weights("dit_forward"), rank=2, alpha=2.0, seed=0, default=False)
    lora["base_model.model.blocks.7.ffn.0.lora_A.weight"] = torch.zeros(2, 64)
    lora["base_model.model.blocks.7.ffn.0.lora_B.weight"] = torch.zeros(128, 2)
    torch.save({"generator": _weights("dit_forward")}, tmp_path / "longlive_base.pt")
    torch.save({"generator_lora": lora}, tmp_path / "lora.pt")
    cfg = Fixture.load(FIXTURES / "dit_forward").dit_config()
    with pytest.raises(WeightsError, match="LoRA for blocks.7.ffn.0, which the model does not have"):
        load_generator(discover(tmp_path), cfg, torch.float32, "cpu")


def test_headers_only_reading_gives_meta_tensors(tmp_path):
    state = _weights("dit_forward")
    save_file(state, tmp_path / "a.safetensors")
    torch.save({"generator": {k: v.bfloat16() for k, v in state.items()}}, tmp_path / "b.pt")
    for name, dtype in (("a.safetensors", torch.float32), ("b.pt", torch.bfloat16)):
        got = read_weight_file(tmp_path / name, meta=True)
        got = got.get("generator", got)
        assert all(v.is_meta and v.dtype == dtype and v.shape == state[k].shape for k, v in got.items())


# ---- discovery and the weights folder ------------------------------------------------------------


def test_discovery_errors_name_what_is_missing_and_where(tmp_path):
    torch.save({}, tmp_path / "stage1_base.pt")
    torch.save({}, tmp_path / "self_forcing_dmd.pt")
    with pytest.raises(WeightsError, match="generators of several releases"):
        discover(tmp_path)
    (tmp_path / "self_forcing_dmd.pt").unlink()
    (tmp_path / "stage1_base.pt").rename(tmp_path / "stage2_lora.pt")
    with pytest.raises(WeightsError, match="DySink LoRA stage2_lora.pt but not its base"):
        discover(tmp_path)
    (tmp_path / "stage2_lora.pt").unlink()
    plan = discover(tmp_path)
    with pytest.raises(WeightsError, match=r"no VAE file in .*looked for Wan2.1_VAE.pth"):
        load_vae(plan, WAN_VAE, torch.float32, "cpu")
    with pytest.raises(WeightsError, match="no DiT weights"):
        load_generator(plan, WAN_1_3B, torch.float32, "cpu")
    with pytest.raises(WeightsError, match=r"\[files\] vae = 'x.pth'"):
        discover(tmp_path, FilesSection(vae="x.pth"))


# ---- dysink weights check -------------------------------------------------------------------------


def _release_folder(folder: Path) -> dict[str, Tensor]:
    """A DySink release folder built from the dysink_rollout fixture (base + LoRA); its DiT state."""
    state = _weights("dysink_rollout")
    base, lora = _split_lora(state, rank=2, alpha=2.0, seed=0, default=True)
    torch.save({"generator": _prefixed(base, "model.")}, folder / "stage1_base.pt")
    torch.save({"generator_lora": lora}, folder / "stage2_lora.pt")
    torch.save(_meta_pe(_weights("dysink_rollout", "pe_weights.safetensors")), folder / "PE-Core-S16-384.pt")
    torch.save(_weights("dysink_rollout", "vae_weights.safetensors"), folder / "Wan2.1_VAE.pth")
    torch.save(
        {k: v.bfloat16() for k, v in _weights("t5_encoder").items()},
        folder / "models_t5_umt5-xxl-enc-bf16.pth",
    )
    _tokenizer_folder(folder)
    return base


def test_weights_check_reads_headers_against_the_given_models(tmp_path):
    fx = Fixture.load(FIXTURES / "dysink_rollout")
    configs = ModelConfigs(
        dit=fx.dit_config(),
        vae=fx.vae_config(fx.config["vae"]),
        t5=Fixture.load(FIXTURES / "t5_encoder").t5_config(),
        pe=fx.pe_config(),
    )
    base = _release_folder(tmp_path)
    rows = {r.role: r for r in check_plan(discover(tmp_path), configs)}
    assert list(rows) == ["generator", "lora 1", "vae", "t5", "tokenizer", "pe", "taehv"]
    assert rows["taehv"].status == "skipped" and not rows["taehv"].problem  # optional: no decoder file
    del rows["taehv"]
    assert all(r.status == "ok" for r in rows.values()), [(r.role, r.detail) for r in rows.values()]
    assert rows["t5"].dtype == "bfloat16" and rows["lora 1"].detail.startswith("rank 2, alpha 2")
    assert rows["generator"].params == sum(v.numel() for v in base.values())
    n = len(base)
    del base["blocks.0.norm3.bias"]
    torch.save({"generator": _prefixed(base, "model.")}, tmp_path / "stage1_base.pt")
    (dit, *_) = check_plan(discover(tmp_path), configs)
    assert dit.status == "wrong" and dit.problem
    assert dit.detail.startswith(f"{n - 1}/{n} keys fit; 1 missing (first: blocks.0.norm3.bias)")
    (tmp_path / "PE-Core-S16-384.pt").unlink()
    pe = check_plan(discover(tmp_path), configs, need_pe=False)[-1]
    assert (pe.status, pe.problem) == ("skipped", False)


def test_weights_check_cli_reports_missing_roles(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["weights", "check", str(tmp_path)], terminal_width=200)
    assert result.exit_code == 2 and "missing" in result.output and "Wan2.1_VAE.pth" in result.output
    assert "weights error:" in result.output and "is not usable: dit, vae, t5, tokenizer, pe" in result.output
    result = runner.invoke(app, ["weights", "check", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "weights error:" in result.output and "does not exist" in result.output
    result = runner.invoke(app, ["weights", "check", str(tmp_path), "--pe-core", "PE-Core-X"])
    assert result.exit_code == 2 and "--pe-core 'PE-Core-X' is not one of" in result.output


def test_parity_runner_skips_an_output_the_fixture_does_not_hold(tmp_path, capsys):
    """An output with no expected tensor is computed and printed as SKIP, never as PASS."""
    src = FIXTURES / "dit_forward"
    dst = tmp_path / "no_expected_output"
    shutil.copytree(src, dst)
    io = load_file(src / "io.safetensors")
    save_file({k: v for k, v in io.items() if k != "flow_pred"}, dst / "io.safetensors")
    assert parity_main([str(dst)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [
        "SKIP no_expected_output/flow_pred: computed; the fixture holds no expected tensor",
        "0 passed, 1 skipped, 0 failed",
    ]


# ---- full-size layouts (meta device) --------------------------------------------------------------


def _meta_state(module_cls, cfg) -> dict[str, Tensor]:
    with torch.device("meta"):
        return module_cls(cfg).state_dict()


def test_full_size_models_have_the_published_keys():
    dit = _meta_state(WanDiT, WAN_1_3B)
    top = {
        "patch_embedding.weight": (1536, 16, 1, 2, 2),
        "patch_embedding.bias": (1536,),
        "text_embedding.0.weight": (1536, 4096),
        "text_embedding.0.bias": (1536,),
        "text_embedding.2.weight": (1536, 1536),
        "text_embedding.2.bias": (1536,),
        "time_embedding.0.weight": (1536, 256),
        "time_embedding.0.bias": (1536,),
        "time_embedding.2.weight": (1536, 1536),
        "time_embedding.2.bias": (1536,),
        "time_projection.1.weight": (9216, 1536),
        "time_projection.1.bias": (9216,),
        "head.modulation": (1, 2, 1536),
        "head.head.weight": (64, 1536),
        "head.head.bias": (64,),
    }
    block = {
        "modulation": (1, 6, 1536),
        "norm3.weight": (1536,),
        "norm3.bias": (1536,),
        "ffn.0.weight": (8960, 1536),
        "ffn.0.bias": (8960,),
        "ffn.2.weight": (1536, 8960),
        "ffn.2.bias": (1536,),
    }
    for attn in ("self_attn", "cross_attn"):
        block |= {f"{attn}.{p}.weight": (1536, 1536) for p in "qkvo"} | {
            f"{attn}.{p}.bias": (1536,) for p in "qkvo"
        }
        block |= {f"{attn}.norm_q.weight": (1536,), f"{attn}.norm_k.weight": (1536,)}
    expected = top | {f"blocks.{i}.{k}": s for i in range(30) for k, s in block.items()}
    assert {k: tuple(v.shape) for k, v in dit.items()} == expected
    assert len(dit) == 825 and sum(v.numel() for v in dit.values()) == 1_418_996_800

    t5 = _meta_state(UMT5Encoder, UMT5_XXL)
    layer = {
        "norm1.weight": (4096,),
        "norm2.weight": (4096,),
        "ffn.gate.0.weight": (10240, 4096),
        "ffn.fc1.weight": (10240, 4096),
        "ffn.fc2.weight": (4096, 10240),
        "pos_embedding.embedding.weight": (32, 64),
    } | {f"attn.{p}.weight": (4096, 4096) for p in "qkvo"}
    expected = {"token_embedding.weight": (256384, 4096), "norm.weight": (4096,)}
    expected |= {f"blocks.{i}.{k}": s for i in range(24) for k, s in layer.items()}
    assert {k: tuple(v.shape) for k, v in t5.items()} == expected and len(t5) == 242
    assert sum(v.numel() for v in t5.values()) == 5_680_910_336

    vae = _meta_state(WanVAE, WAN_VAE)
    assert len(vae) == 194 and sum(v.numel() for v in vae.values()) == 126_892_531
    spot = {
        "encoder.conv1.weight": (96, 3, 3, 3, 3),
        "encoder.middle.1.to_qkv.weight": (1152, 384, 1, 1),
        "encoder.head.2.weight": (32, 384, 3, 3, 3),
        "conv1.weight": (32, 32, 1, 1, 1),
        "conv2.weight": (16, 16, 1, 1, 1),
        "decoder.conv1.weight": (384, 16, 3, 3, 3),
        "decoder.upsamples.4.shortcut.weight": (384, 192, 1, 1, 1),
        "decoder.upsamples.3.resample.1.weight": (192, 384, 3, 3),
        "decoder.upsamples.7.time_conv.weight": (768, 384, 3, 1, 1),
        "decoder.upsamples.11.resample.1.weight": (96, 192, 3, 3),
        "decoder.head.2.weight": (3, 96, 3, 3, 3),
        "encoder.downsamples.5.time_conv.weight": (192, 192, 3, 1, 1),
        "encoder.downsamples.8.time_conv.weight": (384, 384, 3, 1, 1),
    }
    assert {k: tuple(vae[k].shape) for k in spot} == spot

    pe = _meta_state(PECoreVision, PE_CORE_S16_384)
    assert len(pe) == 163 and sum(v.numel() for v in pe.values()) == 23_782_656
