"""The revisit oracle's position descriptors: cosine falls with camera distance (0.5 at half a frame),
top-k by cosine is top-k by nearness, block positions, and the precision of a policy's retrievals."""

from __future__ import annotations

import pytest
import torch

from dysink_cli.benchmarks.revisit_oracle import (
    block_positions,
    frame_distances,
    nearest_blocks,
    oracle_descriptors,
    position_descriptors,
    retrieval_precision,
)
from dysink_cli.benchmarks.revisit_scenarios import block_start_frame, scenarios
from dysink_cli.engine.memory.retrieval import retrieval_scores, select_top_k

FRAME = (128.0, 96.0)


def test_nearer_positions_score_higher_and_half_a_frame_scores_one_half() -> None:
    offsets = [0.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0]  # px along x (of 128)
    for axis, frame in ((0, 128.0), (1, 96.0)):
        xy = torch.zeros(len(offsets), 2, dtype=torch.float64)
        xy[:, axis] = torch.tensor(offsets) * frame / 128.0
        desc = position_descriptors(xy + torch.tensor([300.0, -40.0], dtype=torch.float64), FRAME)
        assert torch.allclose(desc.norm(dim=-1), torch.ones(len(offsets)), atol=1e-5)
        cos = (desc @ desc[0]).tolist()
        assert all(a > b for a, b in zip(cos, cos[1:], strict=False)), cos  # strictly down, however far
        assert cos[0] == pytest.approx(1.0, abs=1e-5)
        assert cos[4] == pytest.approx(0.5, abs=1e-5)  # half a frame off: half the view shared
        assert cos[5] == pytest.approx(0.2, abs=1e-5) and cos[6] == pytest.approx(1 / 17, abs=1e-5)
    diagonal = position_descriptors(torch.tensor([[0.0, 0.0], [64.0, 48.0]]), FRAME)  # (0.5, 0.5) frames
    assert float(diagonal[0] @ diagonal[1]) == pytest.approx(1 / 3, abs=1e-5)


def test_top_k_by_cosine_picks_the_truly_nearest_stored_blocks() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        stored = torch.rand(12, 2, generator=gen, dtype=torch.float64) * 1000.0  # px: up to 8 frames
        here = torch.rand(1, 2, generator=gen, dtype=torch.float64) * 1000.0
        desc = position_descriptors(torch.cat([stored, here]), FRAME)
        picked = select_top_k(retrieval_scores(desc[-1:], desc[:-1]), torch.zeros(12, dtype=torch.bool), 2)
        nearest = frame_distances(stored, here, FRAME)[:, 0].argsort()[:2].tolist()
        assert picked == nearest  # best first


def test_block_positions_are_the_mean_camera_of_each_block() -> None:
    s = scenarios(small=True)["middle"]
    pos, path = block_positions(s), s.path()
    assert pos.shape == (s.blocks, 2)
    assert torch.equal(pos[0], path[: block_start_frame(1)].mean(dim=0))
    assert torch.equal(pos[-1], pos[0])  # back at P0
    describe = oracle_descriptors(s, FRAME)
    assert float(describe(8) @ describe(0)) == pytest.approx(1.0, abs=1e-5)
    assert float(describe(4) @ describe(0)) < float(describe(2) @ describe(0)) < 0.99


def test_nearest_blocks_and_precision() -> None:
    pos = torch.tensor([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0], [10.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    assert nearest_blocks(pos, 4, [0, 1, 2], 2, FRAME) == {0, 1}
    assert nearest_blocks(pos, 2, [0, 1, 3], 1, FRAME) == {1, 3}  # a tie keeps both
    assert nearest_blocks(pos, 2, [], 2, FRAME) == set()
    stats = [
        {"block": 3, "retrieved_frames": [0], "retrievable_frames": [0]},
        {"block": 4, "retrieved_frames": [0, 6], "retrievable_frames": [0, 3, 6]},  # the oracle: 0, 3
        {"block": 5, "retrieved_frames": []},
    ]
    assert retrieval_precision(stats, pos.repeat(2, 1), 2, FRAME) == pytest.approx(2 / 3)
    assert retrieval_precision(stats[:1], pos, 2, FRAME) == 1.0
    assert retrieval_precision(stats[2:], pos, 2, FRAME) is None  # nothing retrieved
