"""Train the toy model: `python -m dysink_cli.toy.train --out DIR [--minutes M] [--resume DIR]`.

Runs the stages (profiles.STAGES) on data drawn from the toy world, checkpointing into --out; a
later run resumes from --resume (or from --out itself). `--from-weights FILE` starts instead from
shipped fp16 weights at the "camera" stage; with `--new-dit`, from its VAE, PE-Core and umT5 alone
at the "dit" stage (a DiT of the profile's config trained anew, e.g. "toy-fine"). `--export` writes
the shipped fp16 weights (toy/weights/toy.safetensors) and RECORD.md from a finished checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from dysink_cli.errors import ConfigError, DysinkError
from dysink_cli.toy import checkpoint as ckpt
from dysink_cli.toy.models import TOY_LATENT_MEAN, TOY_LATENT_STD, WEIGHTS_PATH, load_strict, toy_state_dict
from dysink_cli.toy.profiles import PROFILES, STAGES
from dysink_cli.toy.trainer import Trainer

MAX_EXPORT_BYTES = 16_000_000
FIRST_FINE_TUNED = "camera"  # --from-weights: the stages before it made the shipped weights
FIRST_DIT_STAGE = "dit"  # --from-weights --new-dit: the stages before it made the VAE, PE and umT5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dysink_cli.toy.train", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="checkpoint and log folder")
    parser.add_argument("--minutes", type=float, default=8.5, help="stop (with a checkpoint) after this")
    parser.add_argument("--resume", type=Path, help="checkpoint folder to continue from (default: --out)")
    parser.add_argument("--from-weights", type=Path, help="exported fp16 weights to start from (at camera)")
    parser.add_argument("--new-dit", action="store_true", help="--from-weights keeps all but the DiT")
    parser.add_argument("--stage", choices=STAGES, help="train only this stage (when it is the next one)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="toy")
    parser.add_argument("--budget-minutes", type=float, help="scale the stages' minute budgets to this sum")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--export", action="store_true", help="write the shipped weights and RECORD.md")
    parser.add_argument("--weights", type=Path, default=WEIGHTS_PATH, help="export path")
    parser.add_argument("--allow-incomplete", action="store_true", help="export before every budget is spent")
    return parser.parse_args(argv)


def log(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.new_dit and not args.from_weights:
        raise ConfigError("--new-dit keeps the other networks of --from-weights", "add --from-weights FILE")
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    profile = PROFILES[args.profile]
    if args.budget_minutes:
        total = sum(minutes for minutes, _ in profile.budgets.values())
        scaled = {k: (m * args.budget_minutes / total, s) for k, (m, s) in profile.budgets.items()}
        profile = dataclasses.replace(profile, budgets=scaled)
    trainer = Trainer(profile, args.out, device, args.seed)
    source = args.resume or args.out
    if args.from_weights:
        check_fresh_start(args.out, args.resume)
        start_from_weights(trainer, args.from_weights, new_dit=args.new_dit)
        trainer.save()
        log(f"started from {args.from_weights}: next stage {trainer.stage()}")
    elif ckpt.has_checkpoint(source):
        trainer.load(source, keep_budgets=bool(args.budget_minutes))
        log(f"resumed from {source}: steps {trainer.counters.steps}")
    if args.export:
        shipped = args.profile == "toy" and args.weights == WEIGHTS_PATH
        export(trainer, args.weights, shipped, args.allow_incomplete)
        return 0
    run = {
        "argv": sys.argv[1:] if argv is None else argv,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "date": _now(),
        "steps_before": dict(trainer.counters.steps),
    }
    trainer.runs.append(run)
    done = trainer.run(args.minutes, args.stage, log)
    run["steps_after"] = dict(trainer.counters.steps)
    trainer.save()
    log(f"{'complete' if done else 'stopped'}: steps {trainer.counters.steps}; checkpoint in {args.out}")
    return 0


def check_fresh_start(out: Path, resume: Path | None) -> None:
    """--from-weights begins a new checkpoint: refuse one to resume from."""
    if resume is not None:
        raise ConfigError("--from-weights and --resume both say where to start", "drop one of them")
    if ckpt.has_checkpoint(out):
        raise ConfigError(
            f"--out {out} already holds a checkpoint",
            f"continue it with `--out {out}` alone (no --from-weights), or choose an empty --out",
        )


def start_from_weights(trainer: Trainer, path: Path, new_dit: bool = False) -> None:
    """The four networks from an exported fp16 file (strictly, in float32), the latent statistics of
    the profile's VAE config (toy: models.TOY_LATENT_MEAN/STD), a fresh probe, and every stage before
    FIRST_FINE_TUNED counted as spent; the file's name, sha256 and RECORD.md runs go to trainer.runs.
    `new_dit`: the DiT stays the profile's fresh one, and the stages before FIRST_DIT_STAGE are spent."""
    if not path.is_file():
        raise ConfigError(f"--from-weights {path} is not a file", "pass an exported toy.safetensors")
    tensors = load_file(str(path))
    for prefix, module in trainer.nets.modules().items():
        if not (new_dit and prefix == "dit"):
            load_strict(module, tensors, prefix, path)
        module.to(trainer.device)
    cfg = trainer.profile.configs.vae
    trainer.set_latent_stats(list(cfg.latent_mean), list(cfg.latent_std))
    first = FIRST_DIT_STAGE if new_dit else FIRST_FINE_TUNED
    for stage in STAGES[: STAGES.index(first)]:
        minutes, steps = trainer.profile.budgets[stage]
        trainer.counters.seconds[stage], trainer.counters.steps[stage] = 60.0 * minutes, steps
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    earlier = recorded_runs(path.parent / "RECORD.md")
    run = {"from_weights": path.name, "sha256": digest, "earlier_runs": earlier, "first": first}
    trainer.runs.append(run)


def recorded_runs(record_file: Path) -> list[str]:
    """The non-blank lines of a RECORD.md's "Runs" section ([] without the file)."""
    text = record_file.read_text() if record_file.is_file() else ""
    section = text.split("\n## Runs\n", 1)[1].split("\n## ", 1)[0] if "\n## Runs\n" in text else ""
    return [line for line in section.splitlines() if line.strip()]


def export(trainer: Trainer, path: Path, shipped: bool, allow_incomplete: bool = False) -> None:
    """fp16 weights of the four networks (prefixed keys) and RECORD.md beside them."""
    if trainer.stage() is not None and not allow_incomplete:
        raise ConfigError(
            f"training is not complete (next stage: {trainer.stage()})", "run more minutes first"
        )
    assert trainer.latent_stats is not None
    mean, std = trainer.latent_stats
    if shipped and (_rounded(mean) != TOY_LATENT_MEAN or _rounded(std) != TOY_LATENT_STD):
        raise ConfigError(
            "toy/models.py's TOY_LATENT_MEAN/STD differ from the trained VAE's statistics",
            f"set TOY_LATENT_MEAN = {_rounded(mean)} and TOY_LATENT_STD = {_rounded(std)}",
        )
    tensors = toy_state_dict(trainer.nets)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt"})
    size = path.stat().st_size
    if size > MAX_EXPORT_BYTES:
        raise ConfigError(f"{path} is {size} bytes, over {MAX_EXPORT_BYTES}", "shrink the toy configs")
    (path.parent / "RECORD.md").write_text(record(trainer, path, size))
    log(f"exported {path} ({size} bytes)")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _rounded(values: list[float]) -> tuple[float, ...]:
    return tuple(round(v, 4) for v in values)


def _last_losses(folder: Path) -> dict[str, str]:
    rows: dict[str, str] = {}
    log_file = folder / "losses.jsonl"
    if log_file.is_file():
        for line in log_file.read_text().splitlines():
            if line.strip():
                rows[line.split('"stage": "', 1)[1].split('"', 1)[0]] = line
    return rows


def record(trainer: Trainer, path: Path, size: int) -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    c = trainer.counters
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in trainer.nets.modules().items()}
    lines = [
        "# Toy model weights", "",
        f"File: `{path.name}`, {size} bytes, fp16, keys prefixed `dit.`, `vae.`, `t5.`, `pe.`.",
        f"Exported {_now()} at git commit `{commit}`.",
        f"Parameters: {params}.", "",
        "## Runs", "",
    ]  # fmt: skip
    for run in trainer.runs:
        if "from_weights" in run:
            lines.append(
                f"- started from `{run['from_weights']}` (sha256 {run['sha256']}...; the stages before "
                f"{run.get('first', FIRST_FINE_TUNED)} counted as done"
                f"{', the DiT new' if run.get('first') == FIRST_DIT_STAGE else ''}); "
                "the runs its RECORD.md listed:"
            )
            lines += [f"  {line}" for line in run["earlier_runs"]] or ["  - (none)"]
            continue
        command = "python -m dysink_cli.toy.train " + " ".join(map(str, run["argv"]))
        lines.append(
            f"- `{command}` on {run['device']} (torch {run['torch']}), {run['date']}: "
            f"steps {run['steps_before']} -> {run.get('steps_after')}"
        )
    lines += [f"- export: `python -m dysink_cli.toy.train {' '.join(sys.argv[1:])}`"]
    lines += ["", "## Steps and seconds per stage", ""]
    lines += [
        f"- {s}: {c.steps[s]} steps, {c.seconds[s]:.0f} s "
        f"({100 * min(1.0, trainer.progress(s)):.0f} % of its budget)"
        for s in STAGES
    ]
    lines += ["", "## Final logged losses", ""]
    lines += [f"- `{row}`" for row in _last_losses(trainer.out).values()]
    stats = trainer.latent_stats
    lines += ["", f"VAE latent mean: {_rounded(stats[0]) if stats else None}"]
    lines += [f"VAE latent std: {_rounded(stats[1]) if stats else None}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except DysinkError as error:
        raise SystemExit(f"error: {error}") from None
