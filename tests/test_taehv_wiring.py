"""TAEHV in the product: the parity runner, its release files in a weights folder (found, loaded
strictly, checked), and the render's streaming decoder with TAEHV output."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from dysink_cli.io import weights
from dysink_cli.io.weights_check import ModelConfigs, check_plan
from dysink_cli.model.taehv import LIGHTTAEW2_1, TAEW2_1
from dysink_cli.model.tiny import TINY_VAE, init_untrained
from dysink_cli.model.vae import WanVAE
from dysink_cli.parity.__main__ import main as parity_main
from dysink_cli.render.decode import StreamingDecoder
from tests.conftest import SHARED_FIXTURES

TAEHV_FIXTURE = SHARED_FIXTURES / "decoders" / "taehv"
pytestmark = pytest.mark.skipif(
    not TAEHV_FIXTURE.is_dir(), reason=f"the TAEHV fixture is not vendored and {TAEHV_FIXTURE} is absent"
)


def folder_with(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(TAEHV_FIXTURE / "weights.safetensors", folder / name)
    return folder


def test_the_parity_runner_passes_the_taehv_fixture(capsys) -> None:
    assert parity_main([str(TAEHV_FIXTURE)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "4 passed, 0 failed" and all(line.startswith("PASS") for line in lines[:-1])


@pytest.mark.parametrize(
    ("name", "cfg"), [("taew2_1.safetensors", TAEW2_1), ("lighttaew2_1.safetensors", LIGHTTAEW2_1)]
)
def test_release_files_are_found_loaded_strictly_and_checked(tmp_path: Path, name: str, cfg) -> None:
    plan = weights.discover(folder_with(tmp_path, name))
    assert plan.taehv is not None and plan.taehv.name == name
    model = weights.load_taehv(plan, torch.float32, "cpu")
    assert model.cfg == cfg
    rows = {row.role: row for row in check_plan(plan, ModelConfigs.full_size())}
    assert rows["taehv"].status == "ok" and rows["taehv"].file == name and rows["taehv"].params > 11e6


def test_a_damaged_taehv_file_is_one_weights_error(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from dysink_cli.errors import WeightsError

    folder = folder_with(tmp_path, "taew2_1.safetensors")
    state = load_file(folder / "taew2_1.safetensors")
    del state["decoder.22.bias"]
    save_file(state, folder / "taew2_1.safetensors")
    with pytest.raises(WeightsError, match="taew2_1") as err:
        weights.load_taehv(weights.discover(folder), torch.float32, "cpu")
    assert "\n" not in str(err.value)


def test_the_streaming_decoder_writes_taehv_frames_and_checkpoints_their_state(tmp_path: Path) -> None:
    taehv = weights.load_taehv(
        weights.discover(folder_with(tmp_path, "taew2_1.safetensors")), torch.float32, "cpu"
    )
    vae = init_untrained(WanVAE(TINY_VAE), 1).eval()
    latents = torch.randn(1, 9, 16, 6, 10, generator=torch.Generator().manual_seed(3))
    decoder = StreamingDecoder(vae, None, taehv=taehv, output="taehv")
    block = latents[:, :3]
    first = decoder.frames(block)
    state = decoder.state()
    resumed = StreamingDecoder(vae, None, taehv=taehv, output="taehv")
    resumed.load_state(*state)
    rest = [resumed.frames(latents[:, 3:6]), resumed.frames(latents[:, 6:9])]
    streamed = torch.cat([first, *rest], dim=1)
    whole = taehv.decode(latents) * 2 - 1  # the writer takes [-1, 1]
    assert streamed.shape == (1, 33, 3, 48, 80) and torch.allclose(streamed, whole, atol=1e-5)
    assert decoder.frames(block) is first  # a block is decoded once
