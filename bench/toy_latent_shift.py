"""Is the toy VAE's latent shift-equivariant under a pan? (CPU, a few minutes)

    python3 bench/toy_latent_shift.py

A pan moves the view 2 px per frame, 8 px per latent frame: one latent pixel at the VAE's 8x
stride. For each required theme and a pan right, a pan down and a still camera, encodes 37 exact
ground-truth frames and compares each latent frame with the previous one shifted by one latent
pixel the pan's way (the border row/column left out): the relative error of that prediction,
against the same comparison without the shift. If the shifted previous frame predicts the next one
about as well as a still camera's frames predict each other, "the previous latent frame shifted by
the commanded velocity" is a valid self-supervised camera target for the toy's own rollouts.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dysink_cli.toy.data import random_start  # noqa: E402
from dysink_cli.toy.evaluate import REQUIRED  # noqa: E402
from dysink_cli.toy.models import load_toy_networks  # noqa: E402
from dysink_cli.toy.world import World, camera_path  # noqa: E402

STEPS = {"right": (1, 0), "down": (0, 1), "still": (0, 0)}  # latent pixels per latent frame


def relative_errors(z: torch.Tensor, dx: int, dy: int) -> tuple[float, float]:
    """Mean over t of ||z[t+1] - shift(z[t])|| / ||z[t+1]|| (interior), shifted and unshifted."""
    shifted, plain = [], []
    h, w = z.shape[-2:]
    for t in range(2, z.shape[0] - 1):  # latent 0 holds one frame, latent 1 follows it
        nxt = z[t + 1][:, 1 : h - 1, 1 : w - 1]
        shifted.append(float((nxt - z[t][:, 1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx]).norm() / nxt.norm()))
        plain.append(float((nxt - z[t][:, 1 : h - 1, 1 : w - 1]).norm() / nxt.norm()))
    return sum(shifted) / len(shifted), sum(plain) / len(plain)


@torch.no_grad()
def main() -> None:
    torch.set_num_threads(2)
    _, vae, _, _, _ = load_toy_networks("cpu", torch.float32)
    for seed, theme in enumerate(REQUIRED):
        for motion, (dx, dy) in STEPS.items():
            path = camera_path(random_start(random.Random(seed)), [(motion, 37)])
            frames = World(theme, seed).render(path, 128, 96)  # (37, 3, 96, 128) in [0, 1]
            z = vae.encode((frames * 2 - 1).permute(1, 0, 2, 3)[None])[0]  # (10, 16, 12, 16)
            shifted, plain = relative_errors(z, dx, dy)
            print(f"{theme:10s} {motion:6s} shifted previous frame {shifted:.3f}   unshifted {plain:.3f}")


if __name__ == "__main__":
    main()
