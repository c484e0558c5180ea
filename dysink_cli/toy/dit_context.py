"""Block-causal training calls of the real WanDiT: one block per call, attending to given context.

`ContextCache` is a `LayerCache` (model/dit.py's protocol, as the engine's KVCache is): it hands
the model the context K/V of each layer (sink, retrieved or window blocks, computed by earlier
calls at their own positions) and records the call's own K/V. Softmax attention does not depend on
the order of keys, so this is the inference call of the same context (tests check it against the
engine's cache). RoPE positions may differ per sample (`block_rope`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dysink_cli.model.dit import AttnContext, WanDiT
from dysink_cli.model.rope import RopeFrequencies, RopeTable, rope_angles

LayerKV = list[tuple[Tensor, Tensor]]  # per layer (k, v), each (B, n, H, D)


class ContextCache:
    """Context K/V per layer prepended to the call's own; the call's K/V kept in `written`."""

    def __init__(self, context: LayerKV | None = None) -> None:
        self.context = context
        self.written: LayerKV = []

    def attend_kv(self, layer: int, k: Tensor, v: Tensor, k_raw: Tensor) -> tuple[Tensor, Tensor, int]:
        self.written.append((k, v))
        if not self.context:
            return k, v, 0
        ck, cv = self.context[layer]
        return torch.cat([ck, k], dim=1), torch.cat([cv, v], dim=1), 0


def join_context(parts: list[LayerKV]) -> LayerKV | None:
    """Concatenate several blocks' K/V along tokens, per layer (None when there are none)."""
    parts = [p for p in parts if p]
    if not parts:
        return None
    return [
        (torch.cat([p[layer][0] for p in parts], dim=1), torch.cat([p[layer][1] for p in parts], dim=1))
        for layer in range(len(parts[0]))
    ]


def fold_blocks(kv: LayerKV, blocks: int) -> LayerKV:
    """K/V of (B * blocks) one-block rows -> (B) rows of `blocks` blocks each, in row order."""
    return [
        (k.unflatten(0, (-1, blocks)).flatten(1, 2), v.unflatten(0, (-1, blocks)).flatten(1, 2))
        for k, v in kv
    ]


def block_rope(
    freqs: RopeFrequencies, starts: Tensor, frames: int, grid_hw: tuple[int, int], device: torch.device
) -> RopeTable:
    """RoPE table (B, n, 1, c) of one block per sample starting at latent frame starts[b].

    The same float64 products as rope_angles (frame * omega) for every sample's frames.
    """
    height, width = grid_hw
    assert freqs.temporal.shape[0] == 1, "per-head RoPE bases are not trained"
    spatial = rope_angles(freqs, torch.zeros(frames), height, width)[0]  # (n, c), temporal part 0
    c_t = freqs.temporal.shape[-1]
    positions = starts.to(torch.float64)[:, None] + torch.arange(frames, dtype=torch.float64)  # (B, F)
    t = positions[:, :, None] * freqs.temporal[0]  # (B, F, c_t)
    t = t[:, :, None, :].expand(-1, -1, height * width, -1).flatten(1, 2)  # (B, n, c_t)
    angles = torch.cat([t, spatial[None, :, c_t:].expand(t.shape[0], -1, -1)], dim=-1)  # (B, n, c)
    a = angles.unsqueeze(2).to(device)  # (B, n, 1, c)
    cos, sin = torch.cos(a), torch.sin(a)
    return RopeTable(cos, sin, cos.float(), sin.float())


def repeat_text(text_kv: LayerKV, times: int) -> LayerKV:
    """Each sample's cross-attention K/V repeated for its `times` consecutive rows."""
    if times == 1:
        return text_kv
    return [(k.repeat_interleave(times, dim=0), v.repeat_interleave(times, dim=0)) for k, v in text_kv]


def dit_call(
    dit: WanDiT,
    latents: Tensor,
    timestep: Tensor,
    text_kv: LayerKV,
    starts: Tensor,
    freqs: RopeFrequencies,
    context: LayerKV | None = None,
) -> tuple[Tensor, LayerKV]:
    """One block per row: latents (B, F, C, h, w) at latent frames starts (B,), timesteps (B,).

    Returns the flow (B, F, C, h, w) and the call's per-layer K/V (what the engine would cache).
    """
    b, frames, _, h, w = latents.shape
    _, ph, pw = dit.cfg.patch_size
    rope = block_rope(freqs, starts, frames, (h // ph, w // pw), latents.device)
    cache = ContextCache(context)
    t = timestep.to(latents.device, torch.float32)[:, None].expand(b, frames)
    flow = dit(latents.permute(0, 2, 1, 3, 4), t, text_kv, rope, AttnContext(cache=cache))
    return flow.permute(0, 2, 1, 3, 4), cache.written
