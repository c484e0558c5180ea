"""Context degradation for teacher forcing: the truth's context blocks made to look like a render's.

A render's context is the toy's own 4-step draws: softer than the truth (edges spread over about a
latent pixel) and off by some noise. Trained on the truth's sharp context alone, the toy continues a
pan it is shown but holds still after a block it drew (bench/RESULTS.md, session 10: blurring the
true context by one latent pixel drops the continued pan from a median 1.46 to 0.37 px/frame).
The "degrade" stage blurs and noises the context of a share of the rows (never the target, which
stays the truth), so the continuation is learnt from soft context and the target still matches it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Degrade:
    """Which rows' context is degraded (`share`) and how much: a Gaussian blur of sigma drawn in
    `blur_px` (latent pixels) and Gaussian noise of std drawn in [0, `noise_max`] (normalised latents)."""

    share: float = 0.0
    blur_px: tuple[float, float] = (0.3, 1.5)
    noise_max: float = 0.3


NONE = Degrade()
SOFT_CONTEXT = Degrade(share=0.75)  # the "degrade" stage's draw


def blur_matrix(size: int, sigma: Tensor) -> Tensor:
    """(B, size, size) Gaussian blur along one axis for each sigma (B,) in pixels; rows sum to 1 (the
    edge renormalised), and sigma 0 is the identity."""
    i = torch.arange(size, dtype=torch.float64)
    dist2 = (i[:, None] - i[None, :]).square()
    s = sigma.to(torch.float64).clamp_min(1e-3)[:, None, None]
    weights = torch.exp(-dist2 / (2 * s * s))
    return (weights / weights.sum(-1, keepdim=True)).float()


def blur(x: Tensor, sigma: Tensor) -> Tensor:
    """x (B, ..., h, w) with row b blurred by sigma[b] pixels over its last two axes."""
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    mh, mw = blur_matrix(h, sigma).to(x), blur_matrix(w, sigma).to(x)
    out = torch.einsum("bij,bnjk,blk->bnil", mh, x.reshape(b, -1, h, w), mw)
    return out.reshape(x.shape)


def draw(rows: int, spec: Degrade, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Per-row (blur sigma, noise std), both 0 for the rows left sharp."""
    chosen = torch.rand(rows, generator=generator) < spec.share
    lo, hi = spec.blur_px
    sigma = lo + (hi - lo) * torch.rand(rows, generator=generator)
    noise = spec.noise_max * torch.rand(rows, generator=generator)
    return sigma * chosen, noise * chosen
