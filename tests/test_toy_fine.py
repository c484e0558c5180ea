"""8-px DiT tokens for the toy (profile "toy-fine"): a DiT retrained with `--from-weights --new-dit`
beside the exported VAE, PE-Core and umT5, and weights whose patch the loader reads from the file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dysink_cli.errors import ConfigError
from dysink_cli.toy.models import TOY, load_toy_networks
from dysink_cli.toy.profiles import PROFILES
from dysink_cli.toy.train import export, main, start_from_weights
from dysink_cli.toy.trainer import Trainer
from tests.test_toy_camera import _exported

MICRO = PROFILES["micro"]
FINE_DIT = replace(MICRO.configs.dit, patch_size=(1, 1, 1))
FINE_MICRO = replace(MICRO, configs=replace(MICRO.configs, dit=FINE_DIT))


def test_toy_fine_is_the_toy_with_one_latent_pixel_per_token() -> None:
    fine, toy = PROFILES["toy-fine"], PROFILES["toy"]
    assert fine.configs.dit.patch_size == (1, 1, 1) and toy.configs.dit.patch_size == (1, 2, 2)
    assert replace(fine.configs.dit, patch_size=(1, 2, 2)) == toy.configs.dit
    assert (fine.configs.vae, fine.configs.t5, fine.configs.pe) == (TOY.vae, TOY.t5, TOY.pe)
    assert {k: v for k, v in fine.budgets.items() if k not in ("dit", "sf")} == {
        k: v for k, v in toy.budgets.items() if k not in ("dit", "sf")
    }
    assert fine.budgets["dit"][0] + fine.budgets["sf"][0] <= 12.5  # with text and dmd: two calls


def test_new_dit_keeps_the_other_networks_trains_from_dit_and_loads_back(tmp_path: Path) -> None:
    source = _exported(tmp_path)
    shipped = load_file(str(source))
    trainer = Trainer(FINE_MICRO, tmp_path / "fine", torch.device("cpu"), seed=4)
    start_from_weights(trainer, source, new_dit=True)
    for prefix, module in trainer.nets.modules().items():
        own = module.state_dict()
        if prefix == "dit":
            assert own["patch_embedding.weight"].shape[2:] == (1, 1, 1)
            assert not own["head.head.weight"].any()  # fresh: the untrained head is zero
        else:
            assert all(torch.equal(t.half(), shipped[f"{prefix}.{k}"]) for k, t in own.items()), prefix
    assert trainer.stage() == "dit" and trainer.runs[-1]["first"] == "dit"
    parts = trainer.step("dit")
    assert torch.isfinite(torch.tensor(parts["flow_mse"]))
    out = tmp_path / "fine.safetensors"
    export(trainer, out, shipped=False, allow_incomplete=True)
    assert "counted as done, the DiT new" in (tmp_path / "RECORD.md").read_text()
    dit, *_ = load_toy_networks("cpu", torch.float32, out, MICRO.configs)  # the patch read from the file
    assert dit.cfg.patch_size == (1, 1, 1)
    assert torch.equal(dit.head.head.weight, trainer.nets.dit.head.head.weight.half().float())


def test_new_dit_needs_weights_to_keep(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--from-weights"):
        main(["--out", str(tmp_path / "x"), "--profile", "micro", "--new-dit"])
