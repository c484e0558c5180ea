"""Retrieval agreement (benchmarks/agreement.py): the comparison of two replays, the steered render
with its control on the tiny demo, and `dysink bench speed` printing it for shared descriptors.
Also the render's warm-up (render/assemble.py), which runs on the same tiny generator."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from dysink_cli.benchmarks.agreement import compare, steered_render
from dysink_cli.cli.app import app
from dysink_cli.config import resolve_config
from dysink_cli.engine.memory.descriptors import describe_block
from dysink_cli.engine.timing import StageTimer
from dysink_cli.render.assemble import build_generator, latent_hw
from dysink_cli.render.networks import NetworkSource


def test_compare_counts_only_blocks_that_retrieve() -> None:
    a = [{"retrieved": [], "stored": True}, {"retrieved": [0], "stored": False}]
    b = [{"retrieved": [], "stored": True}, {"retrieved": [0], "stored": True}]
    a.append({"retrieved": [0, 6], "stored": True})
    b.append({"retrieved": [0, 3], "stored": True})
    out = compare(a, b)
    assert out["blocks"] == 3 and out["blocks_with_retrieval"] == 2
    assert out["same_retrieval"] == 0.5
    assert out["mean_jaccard"] == (1.0 + 1 / 3) / 2
    assert out["same_store_decision"] == 2 / 3
    assert (out["stored_reference"], out["stored_other"]) == (2, 3)
    assert compare(a, a)["same_retrieval"] == 1.0 and compare(a, a)["same_store_decision"] == 1.0


def _tiny_generator(tmp_path: Path):  # noqa: ANN202
    cfg = resolve_config("tiny", ("dysink.dedup_threshold=0.5",))
    source = NetworkSource(cfg)
    cpu = torch.device("cpu")
    embeds = source.encode_prompts(["a fox"], cpu, torch.float32)
    nets = source.load(cpu, torch.float32)
    gen = build_generator(cfg, nets, 3, latent_hw(cfg, nets), tmp_path, cpu, torch.float32, StageTimer(cpu))
    gen.set_prompt(nets.dit.encode_text(embeds["a fox"]))
    return gen, nets


def test_steered_render_agrees_with_itself_and_not_with_other_descriptors(tmp_path: Path) -> None:
    gen, nets = _tiny_generator(tmp_path / "a")
    reference = lambda z: describe_block(z, nets.vae, nets.pe)  # noqa: E731
    same = steered_render(gen, 8, reference, reference)
    gen.close()
    assert same["blocks"] == 8 and same["blocks_with_retrieval"] > 0
    assert same["same_retrieval"] == 1.0 and same["same_store_decision"] == 1.0
    assert abs(same["descriptor_cosine_mean"] - 1.0) < 1e-6

    # orthogonal descriptors: the other bank stores every block, so it retrieves other blocks
    gen, nets = _tiny_generator(tmp_path / "b")
    blocks = iter(range(8))

    def orthogonal(z: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.tensor(next(blocks)), reference(z).numel()).float()

    other = steered_render(gen, 8, reference, orthogonal)
    gen.close()
    assert other["stored_other"] == 8 > other["stored_reference"]
    assert other["same_store_decision"] < 1.0 and other["same_retrieval"] < 1.0


def test_bench_speed_prints_the_agreement_for_shared_descriptors(tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    args = ["bench", "speed", "--preset", "tiny", "--blocks", "3", "--warmup", "1", "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--descriptors", "shared", "--descriptors", "standalone",
                                      "--json", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "retrieval agreement" in result.stdout
    rows = {r["descriptors"]: r for r in json.loads(out.read_text())}
    assert rows["shared"]["retrieval_agreement"]["blocks"] == 3
    assert "retrieval_agreement" not in rows["standalone"]


def test_warm_up_decodes_with_every_loaded_decoder_and_leaves_the_render_alone(tmp_path: Path) -> None:
    from dysink_cli.model.taehv import TAEHV, TAEW2_1
    from dysink_cli.model.tiny import init_untrained
    from dysink_cli.render.assemble import warm_up

    gen, nets = _tiny_generator(tmp_path / "a")
    nets.taehv = init_untrained(TAEHV(TAEW2_1), 4).eval()
    fresh: list[bool] = []
    decode = nets.taehv.decode_chunk

    def counted(latents: torch.Tensor, state):  # noqa: ANN001, ANN202
        fresh.append(not state.trimmed)
        return decode(latents, state)

    nets.taehv.decode_chunk = counted
    warm_up(gen, nets, top_k=2)
    assert fresh == [True, False]  # a block from a fresh state, then a continued one
    after = gen.next_block().latents
    gen.close()
    untouched, _ = _tiny_generator(tmp_path / "b")
    assert torch.equal(after, untouched.next_block().latents)
    untouched.close()
