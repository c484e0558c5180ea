"""The sync-free gate: attention over kept pieces merged by log-sum-exp equals dropping keys."""

from __future__ import annotations

import torch

from dysink_cli.model.attention import attention, attention_lse, merge_pieces
from dysink_cli.model.dit import AttnContext, WanDiT
from dysink_cli.model.rope import rope_tables, wan_frequencies
from dysink_cli.model.tiny import TINY_DIT, init_untrained


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_attention_lse_matches_attention_and_logsumexp():
    q, k, v = randn(1, 5, 2, 4, seed=1), randn(1, 7, 2, 4, seed=2), randn(1, 7, 2, 4, seed=3)
    out, lse = attention_lse(q, k, v)
    torch.testing.assert_close(out, attention(q, k, v))
    scores = torch.einsum("blhd,bkhd->bhlk", q, k) / 2.0  # sqrt(4)
    torch.testing.assert_close(lse, torch.logsumexp(scores, dim=-1))


def test_merge_equals_attention_over_the_kept_keys():
    q = randn(1, 6, 2, 4, seed=4)
    pieces = [(randn(1, n, 2, 4, seed=10 + n), randn(1, n, 2, 4, seed=20 + n)) for n in (3, 5, 8)]
    results = [attention_lse(q, k, v) for k, v in pieces]
    outs, lses = [o for o, _ in results], [lse for _, lse in results]
    for keep in ([True, True, True], [False, True, True], [True, False, True], [False, False, True]):
        kept = [p for p, on in zip(pieces, keep, strict=True) if on]
        want = attention(q, torch.cat([k for k, _ in kept], dim=1), torch.cat([v for _, v in kept], dim=1))
        got = merge_pieces(outs, lses, torch.tensor(keep))
        torch.testing.assert_close(got, want)


def test_merge_ignores_a_dropped_piece_that_dominates():
    """A dropped piece whose scores dwarf the others must not underflow the kept ones' weights."""
    q = torch.ones(1, 2, 1, 4, dtype=torch.float64)
    loud = (
        torch.full((1, 3, 1, 4), 100.0, dtype=torch.float64),
        torch.zeros(1, 3, 1, 4, dtype=torch.float64),
    )
    quiet = (randn(1, 3, 1, 4, seed=5), randn(1, 3, 1, 4, seed=6))
    results = [attention_lse(q, k, v) for k, v in (loud, quiet)]
    got = merge_pieces([o for o, _ in results], [lse for _, lse in results], torch.tensor([False, True]))
    torch.testing.assert_close(got, attention(q, *quiet))


def test_sync_free_gate_matches_the_host_gate_in_the_dit():
    torch.manual_seed(0)
    dit = init_untrained(WanDiT(TINY_DIT), 0).eval()
    cfg = dit.cfg
    hw, frames = (4, 4), 3
    tokens = frames * cfg.tokens_per_frame(*hw)
    text_kv = dit.encode_text(randn(1, 4, cfg.text_dim, seed=7).float())
    rope = rope_tables(wan_frequencies(cfg.head_dim), torch.arange(6, 9), 2, 2)
    x, t = randn(1, cfg.in_dim, frames, *hw, seed=8).float(), torch.full((1, frames), 500.0)
    memory = [
        [
            (
                randn(1, tokens, cfg.num_heads, cfg.head_dim, seed=30 + 2 * e).float() * s,
                randn(1, tokens, cfg.num_heads, cfg.head_dim, seed=31 + 2 * e).float(),
            )
            for e, s in ((0, 1.0), (1, 4.0))
        ]
        for _ in range(cfg.num_layers)
    ]
    outs, keeps = [], []
    with torch.no_grad():
        for sync_free in (False, True):
            ctx = AttnContext(memory=memory, gate_rule="per-entry", gate_threshold=0.5, sync_free=sync_free)
            outs.append(dit(x, t, text_kv, rope, ctx))
            keeps.append(torch.stack(ctx.gate_keeps))
    assert torch.equal(keeps[0], keeps[1])
    assert not keeps[0].all()  # some entries were dropped: the merge had something to leave out
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
