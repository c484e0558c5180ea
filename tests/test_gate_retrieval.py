"""DySink gate, retrieval scoring, exclusion, top-k, dedup and window expansion (golden values)."""

from __future__ import annotations

import torch

from dysink_cli.engine.memory.retrieval import (
    dedup_max_similarity,
    effective_window,
    excluded_mask,
    retrieval_scores,
    select_top_k,
)
from dysink_cli.model.gate import entry_ratios, gate_keep, head_affinity


def test_head_affinity_is_the_mean_raw_dot_product():
    q_mean = torch.tensor([[[1.0, 2.0]]])  # (B=1, H=1, D=2)
    keys = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # (1, N=2, 1, 2)
    assert head_affinity(q_mean, keys).tolist() == [[1.5]]  # (1 + 2) / 2, no 1/sqrt(d)


def test_ratio_is_strict_and_per_head():
    local = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    entries = torch.tensor([[[2.0, 2.0, 1.0, 0.0]]])  # equal is not greater
    assert entry_ratios(entries, local).tolist() == [0.5]


def test_per_entry_rule_drops_only_above_threshold():
    ratios = torch.tensor([0.5, 0.75, 9 / 12, 10 / 12])
    assert gate_keep(ratios, 0.5, "per-entry").tolist() == [True, False, False, False]
    assert gate_keep(ratios, 0.8, "per-entry").tolist() == [True, True, True, False]


def test_max_rule_is_all_or_nothing():
    assert gate_keep(torch.tensor([0.25, 0.5]), 0.5, "max").tolist() == [True, True]
    assert gate_keep(torch.tensor([0.25, 0.75]), 0.5, "max").tolist() == [False, False]
    assert gate_keep(torch.tensor([0.9]), 0.5, "off").tolist() == [True]


def test_window_expansion_counts_bank_entries():
    assert [effective_window(9, 3, 2, n) for n in (0, 1, 2, 5)] == [15, 12, 9, 9]


def test_exclusion_is_one_block_wider_than_attention():
    # block at frame 15 with W = 9: frames [6, 15) excluded; sink frames too
    frames = [0, 3, 6, 9, 12]
    assert excluded_mask(frames, 15, 9, 0).tolist() == [False, False, True, True, True]
    assert excluded_mask(frames, 15, 9, 3).tolist() == [True, False, True, True, True]


def test_scores_are_the_mean_of_cosines_not_the_cosine_of_the_mean():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    bank = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    scores = retrieval_scores(q, bank)
    assert torch.allclose(scores, torch.tensor([0.5, 2**-0.5]))


def test_top_k_skips_excluded_and_handles_short_banks():
    scores = torch.tensor([0.9, 0.8, 0.95, 0.1])
    excluded = torch.tensor([False, False, True, False])
    assert select_top_k(scores, excluded, 2) == [0, 1]
    assert select_top_k(scores, torch.tensor([True, True, True, False]), 2) == [3]
    assert select_top_k(scores, torch.ones(4, dtype=torch.bool), 2) == []


def test_dedup_similarity_floors_at_zero():
    assert dedup_max_similarity(torch.tensor([1.0, 0.0]), torch.zeros(0, 2)) == (0.0, [])
    best, sims = dedup_max_similarity(torch.tensor([1.0, 0.0]), torch.tensor([[-1.0, 0.0], [0.0, 1.0]]))
    assert best == 0.0 and sims == [-1.0, 0.0]
