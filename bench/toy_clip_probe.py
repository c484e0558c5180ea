"""Does the clip teacher (toy/train_clip.py) draw the pan its prompt names? (seconds on a GPU)

    python3 bench/toy_clip_probe.py --checkpoint CKPT [--steps 24] [--device cuda]

For each required theme and each pan, the clip network of a training checkpoint draws a 9-latent
clip from the start of a video (33 frames) by Euler integration of its flow over `--steps` levels
of the shifted schedule, from pure noise with nothing but the prompt; the clip is decoded and its
camera velocity (phase correlation) printed along the named pan (the truth: 2.0 px per frame). A
teacher that does not move cannot teach the generator to (the dmd stage distils from it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dysink_cli.toy.adherence import camera_velocity, speed_along  # noqa: E402
from dysink_cli.toy.data import CLIP_BLOCKS, FRAMES_PER_BLOCK  # noqa: E402
from dysink_cli.toy.dit_context import dit_call  # noqa: E402
from dysink_cli.toy.evaluate import REQUIRED  # noqa: E402
from dysink_cli.toy.profiles import PROFILES  # noqa: E402
from dysink_cli.toy.train_dit import SHIFT  # noqa: E402
from dysink_cli.toy.trainer import Trainer  # noqa: E402

PANS = ("left", "right", "up", "down")


@torch.no_grad()
def clip_speed(trainer: Trainer, theme: str, motion: str, steps: int, seed: int) -> float:
    """Speed along `motion` (px per frame) of one clip the clip network draws from noise."""
    net, vae, device = trainer.clip.net, trainer.nets.vae, trainer.device
    assert net is not None, "the checkpoint holds no clip network (run the clip stage first)"
    ids, mask = trainer.tokenizer([f"a {theme} landscape, the camera pans {motion}"])
    text = net.encode_text(trainer.nets.t5.encode(ids.to(device), mask.to(device)))
    gen = torch.Generator().manual_seed(seed)
    frames = FRAMES_PER_BLOCK * CLIP_BLOCKS
    h, w = (s // vae.cfg.spatial_stride for s in (96, 128))
    x = torch.randn(1, frames, vae.cfg.z_dim, h, w, generator=gen).to(device)
    u = torch.linspace(1.0, 0.0, steps + 1)
    sigmas = SHIFT * u / (1 + (SHIFT - 1) * u)  # the training table's shift
    start = torch.zeros(1, dtype=torch.long)
    for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        flow, _ = dit_call(net, x, torch.full((1,), float(s) * 1000), text, start, trainer.freqs)
        x = x + float(s_next - s) * flow
    video, _ = vae.decode_chunk(x, vae.decoder_state())
    return speed_along(camera_velocity((video[0].float().cpu() * 0.5 + 0.5).clamp(0, 1)), motion)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    trainer = Trainer(PROFILES["toy-clip"], args.checkpoint, torch.device(args.device))
    trainer.load(args.checkpoint)
    print("theme       speed along left right up down (px per frame; truth 2.0)")
    all_speeds = []
    for seed, theme in enumerate(REQUIRED):
        speeds = [clip_speed(trainer, theme, m, args.steps, 10 * seed + i) for i, m in enumerate(PANS)]
        all_speeds += speeds
        print(f"{theme:10s}  " + " ".join(f"{v:5.2f}" for v in speeds), flush=True)
    within = sum(abs(v - 2.0) <= 0.4 for v in all_speeds)
    print(f"median {statistics.median(all_speeds):.2f}; within 20 % of 2.0: {within} of {len(all_speeds)}")


if __name__ == "__main__":
    main()
