"""What the toy VAE alone allows on issue 13's measures (CPU, ~2 minutes)

    python3 bench/toy_vae_ceiling.py [--weights W] [--seeds 4] [--frames 81]

For each required theme and its evaluate.py camera motion, renders the exact ground truth of
`--seeds` maps, passes it through the toy VAE (encode, then the causal decode) and scores the
round trip as a render is scored: the theme classifier's share, the camera speed along the command
and the edge sharpness, beside the exact frames' own. A DiT that drew the exact latents would score
the round trip's figures, so they bound what any DiT training can reach with this VAE.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dysink_cli.toy.adherence import ThemeClassifier, camera_velocity, edge_sharpness, speed_along  # noqa: E402
from dysink_cli.toy.evaluate import REQUIRED, ground_truth  # noqa: E402
from dysink_cli.toy.models import WEIGHTS_PATH, load_toy_networks  # noqa: E402


def scores(classifier: ThemeClassifier, frames: torch.Tensor, theme: str, motion: str) -> str:
    """Recognised share, speed along the command (px/frame) and edge sharpness of frames [T, 3, H, W]."""
    share, speed = classifier.share(frames, theme), speed_along(camera_velocity(frames), motion)
    return f"{share:10.3f} {speed:6.2f} {edge_sharpness(frames):9.3f}"


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=Path, default=WEIGHTS_PATH)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--frames", type=int, default=81, help="4k + 1 frames per clip")
    args = parser.parse_args()
    torch.set_num_threads(2)
    _, vae, _, _, _ = load_toy_networks("cpu", torch.float32, args.weights)
    classifier = ThemeClassifier.fit()
    print(f"{'theme':10s} {'seed':>4s} | truth: recognised speed sharpness | VAE round trip: the same")
    for theme, motion in REQUIRED.items():
        for seed in range(args.seeds):
            truth = ground_truth(theme, motion, args.frames, seed)  # (T, 3, 96, 128) in [0, 1]
            video = (truth * 2 - 1).permute(1, 0, 2, 3)[None]
            trip = (vae.decode(vae.encode(video))[0].float() + 1) / 2  # (T, 3, 96, 128)
            exact, decoded = scores(classifier, truth, theme, motion), scores(classifier, trip, theme, motion)
            print(f"{theme:10s} {seed:4d} | {exact} | {decoded}", flush=True)


if __name__ == "__main__":
    main()
