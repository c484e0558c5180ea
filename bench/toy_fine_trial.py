"""CPU trial of 8-px DiT tokens (issue 13, session 11): does a pan survive the toy's own blocks when
a latent frame of the pan moves the view by one whole token?

At 2 px/frame the pan moves 8 px per latent frame: half a 16-px token of the shipped DiT (patch
2 x 2 latent pixels), one token of a DiT with a 1 x 1 patch (profiles.FINE_TOKENS). Training that
DiT from scratch is a GPU job (`--from-weights W --new-dit --profile toy-fine`); on the CPU this
warm-starts it from the shipped DiT instead (`fine_dit_state`: every block as shipped; the 1 x 1
patch embedding is the sum of the 2 x 2 kernel, which embeds a flat patch as before; the head's
output is the mean of its four sub-pixel outputs), writes that as toy weights, and runs the
"degrade" stage of profile "cpu-degrade" on it for `--steps` steps or the stage's budget, whichever
ends first (20 CPU minutes, as session 10's trial with the shipped tokens: block 4 after one own
block, 0 of 24 within 20 %).
  python bench/toy_fine_trial.py --out /tmp/fine --steps 208
  python bench/toy_fine_trial.py --out /tmp/fine --stage-minutes 40   # continues its checkpoint
  python bench/toy_motion_probe.py --rollout 4 --weights /tmp/fine/fine-degrade.safetensors
On a GPU, `--write-start F` writes the warm-start weights alone, for `python -m dysink_cli.toy.train
--from-weights F --profile toy-fine-degrade` (degrade, then dmd on degraded context, at batch 128).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from any directory

from dysink_cli.toy.checkpoint import has_checkpoint  # noqa: E402
from dysink_cli.toy.models import WEIGHTS_PATH  # noqa: E402
from dysink_cli.toy.profiles import DEGRADE_MINUTES, FINE_TOKENS, fine_tune  # noqa: E402
from dysink_cli.toy.train import export, start_from_weights  # noqa: E402
from dysink_cli.toy.trainer import Trainer  # noqa: E402


def fine_dit_state(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Shipped toy tensors with the DiT's patch embedding and head made 1 x 1 (see the docstring)."""
    out = dict(tensors)
    weight = tensors["dit.patch_embedding.weight"]  # (dim, C, 1, 2, 2)
    out["dit.patch_embedding.weight"] = weight.float().sum(dim=(3, 4), keepdim=True).to(weight.dtype)
    channels = FINE_TOKENS.dit.out_dim
    for key in ("dit.head.head.weight", "dit.head.head.bias"):
        t = tensors[key]  # (4 * C, ...) with the channel fastest inside a patch (WanDiT.unpatchify)
        out[key] = t.float().reshape(-1, channels, *t.shape[1:]).mean(0).to(t.dtype)
    return out


def write_start(path: Path) -> Path:
    """The shipped toy weights with the DiT made 1 x 1 (fine_dit_state), written to `path`."""
    save_file(fine_dit_state(load_file(str(WEIGHTS_PATH))), str(path), metadata={"format": "pt"})
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    parser.add_argument("--steps", type=int, default=208)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--write-start", type=Path, help="only write the warm-start weights to this file")
    parser.add_argument("--stage-minutes", type=float, default=4 * DEGRADE_MINUTES, help="the stage's budget")
    args = parser.parse_args()
    if args.write_start:
        write_start(args.write_start)
        return
    if args.out is None:
        parser.error("--out is required unless --write-start")
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    profile = replace(fine_tune("cpu", "degrade", args.stage_minutes), configs=FINE_TOKENS)
    trainer = Trainer(profile, args.out / "ckpt", torch.device("cpu"), seed=0)
    if has_checkpoint(args.out / "ckpt"):
        trainer.load(args.out / "ckpt", keep_budgets=True)
    else:
        start = write_start(args.out / "fine-start.safetensors")
        start_from_weights(trainer, start)
    trainer.run(args.minutes, "degrade", lambda line: print(line, flush=True), max_steps=args.steps)
    export(trainer, args.out / "fine-degrade.safetensors", shipped=False, allow_incomplete=True)


if __name__ == "__main__":
    main()
