"""TAEHV decode speed at 832x480 on the GPU: one 3-latent block, random fp16 weights in the
release layout, streamed (memory carried), eager and channels-last; medians of 20 after 5 warm-ups.

    python3 bench/taehv_speed.py
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dysink_cli.model.taehv import TAEHV, TAEW2_1  # noqa: E402
from dysink_cli.model.tiny import init_untrained  # noqa: E402


def time_decode(model: TAEHV, z: torch.Tensor, reps: int = 20) -> float:
    state = model.decoder_state()
    for _ in range(5):
        _, state = model.decode_chunk(z, state)
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        _, state = model.decode_chunk(z, state)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


@torch.no_grad()
def main() -> None:
    z = torch.randn(1, 3, 16, 60, 104, device="cuda")
    for dtype in (torch.float16, torch.bfloat16):
        model = init_untrained(TAEHV(TAEW2_1).cuda(), 1).to(dtype).eval()
        eager = time_decode(model, z.to(dtype))
        model.use_channels_last()
        cl = time_decode(model, z.to(dtype))
        print(f"TAEHV decode, 3 latents -> 12 frames at 832x480, {dtype}: {eager:.2f} ms, "
              f"channels-last {cl:.2f} ms", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
