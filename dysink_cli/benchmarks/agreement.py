"""Retrieval agreement: does DySink retrieve the same blocks with the configured descriptors
("shared", or decoded by TAEHV) as with the reference's (PE-Core on the Wan VAE's decode of each
block alone)?

A short render is steered by the reference descriptors; every block is described both ways, and
each stream is replayed through its own `DySinkMemory` (the real dedup, exclusion and top-k rules).
The replay of the reference stream must retrieve what the render did (the control). `dysink bench
speed` reports it for every configuration whose descriptors are not the reference decode;
bench/toy_taehv_descriptors.py measures it on the toy world.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dysink_cli.config import RenderConfig
from dysink_cli.engine.generator import BlockGenerator
from dysink_cli.engine.loop_spec import LoopSpec
from dysink_cli.engine.memory.bank import MemoryBank
from dysink_cli.engine.memory.descriptors import describe_block
from dysink_cli.engine.memory.policy import DySinkMemory
from dysink_cli.engine.timing import StageTimer
from dysink_cli.render.assemble import build_generator, latent_hw
from dysink_cli.render.decode import StreamingDecoder
from dysink_cli.render.networks import Networks

Describe = Callable[[Tensor], Tensor]  # a block's latents [1, F, C, h, w] -> its descriptor (D,)


class _OneToken:
    """A cache stand-in for DySinkMemory.remember: retrieval decisions never read the K/V values."""

    def last_tokens(self, n: int) -> tuple[Tensor, Tensor]:
        return torch.zeros(1, 1, 1, 1, 1), torch.zeros(1, 1, 1, 1, 1)


def retrievals(spec: LoopSpec, descriptors: list[Tensor], latents: list[Tensor]) -> list[dict[str, Any]]:
    """What DySinkMemory retrieves (first frames, sorted) and stores, block by block, fed with these
    descriptors (on the CPU, in a bank of its own)."""
    memory, out = DySinkMemory(spec, MemoryBank()), []
    for i, (desc, lat) in enumerate(zip(descriptors, latents, strict=True)):
        f0 = i * spec.frames_per_block
        _, record = memory.retrieve(f0, memory.window_frames(), torch.device("cpu"), torch.float32)
        stored = memory.remember(f0, lat.cpu(), desc.cpu(), _OneToken(), 1)["added_to_bank"]
        out.append({"retrieved": sorted(record["retrieved_frames"]) if record else [], "stored": stored})
    memory.close()
    return out


def compare(reference: list[dict[str, Any]], other: list[dict[str, Any]]) -> dict[str, Any]:
    """Agreement of two replays: among the blocks where either retrieves, the share retrieving the
    same blocks and their mean Jaccard overlap; the share of equal store decisions; blocks stored."""
    blocks = len(reference)
    with_memory = [i for i in range(blocks) if reference[i]["retrieved"] or other[i]["retrieved"]]
    picks = [(set(reference[i]["retrieved"]), set(other[i]["retrieved"])) for i in with_memory]
    same = [a == b for a, b in picks]
    jaccard = [len(a & b) / len(a | b) for a, b in picks]
    same_store = [a["stored"] == b["stored"] for a, b in zip(reference, other, strict=True)]
    return {
        "blocks": blocks, "blocks_with_retrieval": len(with_memory),
        "same_retrieval": sum(same) / len(same) if same else 1.0,
        "mean_jaccard": statistics.mean(jaccard) if jaccard else 1.0,
        "same_store_decision": sum(same_store) / max(1, blocks),
        "stored_reference": sum(a["stored"] for a in reference),
        "stored_other": sum(b["stored"] for b in other),
    }  # fmt: skip


@torch.no_grad()
def steered_render(gen: BlockGenerator, blocks: int, reference: Describe, other: Describe) -> dict[str, Any]:
    """Render `blocks` blocks steered by `reference` descriptors, describe each both ways, replay
    both streams and compare (raises if the reference replay misses what the render retrieved)."""
    ref, alt, lats, rendered = [], [], [], []
    for _ in range(blocks):
        out = gen.next_block()
        retrieval = out.record.get("retrieval")
        rendered.append(sorted(retrieval["retrieved_frames"]) if retrieval else [])
        ref.append(reference(out.latents).float().cpu())
        alt.append(other(out.latents).float().cpu())
        lats.append(out.latents.cpu())
        gen.finish_block(ref[-1].to(out.latents.device))
    a, b = retrievals(gen.spec, ref, lats), retrievals(gen.spec, alt, lats)
    if [x["retrieved"] for x in a] != rendered:
        raise AssertionError("replaying the reference descriptors did not retrieve what the render did")
    cos = [float(torch.nn.functional.cosine_similarity(x, y, dim=0)) for x, y in zip(ref, alt, strict=True)]
    return compare(a, b) | {"descriptor_cosine_mean": statistics.mean(cos)}


def configured_agreement(
    cfg: RenderConfig, nets: Networks, text_kv: Any, blocks: int, seed: int, device: torch.device
) -> dict[str, Any]:
    """`steered_render` with the render's own generator and bank, reference descriptors against
    the ones `cfg` configures (dysink.descriptors, dysink.descriptor_decoder)."""
    assert nets.pe is not None, "DySink descriptors need PE-Core"
    pe, vae = nets.pe, nets.vae
    configured = StreamingDecoder(
        vae, pe, cfg.dysink.descriptors, nets.taehv,
        output=cfg.model.decoder, descriptor_decoder=cfg.dysink.descriptor_decoder,
    )  # fmt: skip
    dtype = next(nets.dit.parameters()).dtype
    with tempfile.TemporaryDirectory(prefix="dysink-agreement-") as tmp:
        hw = latent_hw(cfg, nets)
        gen = build_generator(cfg, nets, seed, hw, Path(tmp), device, dtype, StageTimer(device))
        try:
            gen.set_prompt(text_kv)
            return steered_render(gen, blocks, lambda z: describe_block(z, vae, pe), configured.descriptor)
        finally:
            gen.close()
