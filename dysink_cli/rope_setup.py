"""RoPE frequencies of a render: Wan's, or LoL's per-head jittered bases drawn once from the seed.

LoL (arXiv 2601.16914, Alg. 1; paper-derived, no reference code): theta_h = theta0 (1 + sigma eps_h),
eps_h ~ U[-1, 1]. Drawn from (seed, "lol") so cached keys keep their rotation and a resumed
render is identical. Defaults follow the spec's best guesses: temporal axis only, shared by layers.
"""

from __future__ import annotations

import torch

from dysink_cli.config import RenderConfig
from dysink_cli.engine.noise import mix_seed
from dysink_cli.model.config import DiTConfig
from dysink_cli.model.rope import RopeFrequencies, RopeSpec, jittered_thetas, wan_frequencies

LOL_STREAM = 0x4C6F4C  # "LoL": keeps the jitter draw apart from the noise draws


def lol_frequencies(
    dit: DiTConfig,
    sigma: float,
    seed: int,
    axes: str = "t",
    scope: str = "shared",
    heads_fraction: float = 1.0,
) -> RopeSpec:
    """Per-head jittered frequencies; sigma = 0 gives Wan's frequencies exactly."""
    gen = torch.Generator().manual_seed(mix_seed(seed, LOL_STREAM))
    layers = dit.num_layers if scope == "per_layer" else 1

    def one() -> RopeFrequencies:
        thetas = jittered_thetas(dit.num_heads, sigma, gen, dit.rope_theta, heads_fraction)
        return wan_frequencies(
            dit.head_dim,
            dit.rope_theta,
            temporal_theta=thetas if "t" in axes else None,
            spatial_theta=thetas if ("h" in axes or "w" in axes) else None,
        )

    if sigma == 0:
        return wan_frequencies(dit.head_dim, dit.rope_theta)
    tables = [one() for _ in range(layers)]
    return tables if scope == "per_layer" else tables[0]


def render_rope(cfg: RenderConfig, dit: DiTConfig, seed: int) -> RopeSpec:
    r = cfg.rope
    return lol_frequencies(dit, r.jitter, seed, r.jitter_axes, r.jitter_scope, r.jitter_heads)
