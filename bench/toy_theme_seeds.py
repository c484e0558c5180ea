"""Theme recognition of toy weights over several seeds (each seed: another caption, map and noise).

`toy.evaluate` renders one caption per theme; one caption is a small sample when two sets of
weights differ by a few themes. This renders each named theme with `--seeds` seeds per weights file
and prints the share of frames recognised (and the classifier's majority) per render and the mean:
  python bench/toy_theme_seeds.py W1 W2 --themes meadow lava "night city" --seeds 4 --seconds 10
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dysink_cli.toy.adherence import ThemeClassifier
from dysink_cli.toy.evaluate import REQUIRED, theme_row
from dysink_cli.toy.models import load_toy_networks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("weights", type=Path, nargs="+")
    parser.add_argument("--themes", nargs="+", default=list(REQUIRED))
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--first-seed", type=int, default=100, help="evaluate.py's own seeds are 0-5")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    classifier = ThemeClassifier.fit()
    for weights in args.weights:
        nets = load_toy_networks("cpu", torch.float32, weights)
        for theme in args.themes:
            shares = []
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                row = theme_row(nets, classifier, theme, REQUIRED[theme], args.seconds, seed)
                shares.append(row["recognised"])
                kept = {k: row[k] for k in ("caption", "recognised", "predicted", "speed_along_command")}
                print(json.dumps({"weights": weights.name, "seed": seed, **kept}), flush=True)
            mean = sum(shares) / len(shares)
            print(f"{weights.name} {theme}: mean {mean:.3f} over {len(shares)}", flush=True)


if __name__ == "__main__":
    main()
