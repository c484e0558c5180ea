"""python -m dysink_cli.parity DIR [DIR ...] [--save OUT] [--weights DIR]

Runs each fixture directory through dysink, prints one line per check (PASS, FAIL, or SKIP for an
output the fixture holds no expected tensor for) and `N passed, M failed`; exit code 0 only if no
check failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from safetensors.torch import save_file

from dysink_cli.errors import DysinkError
from dysink_cli.parity.checks import Check, compare_decisions, compare_tensor
from dysink_cli.parity.fixture import Fixture
from dysink_cli.parity.presets import preset_checks
from dysink_cli.parity.procedures import PROCEDURES


def run_fixture(path: Path, save: Path | None, weights: Path | None) -> list[Check]:
    fx = Fixture.load(path)
    if weights is not None:
        from dysink_cli.parity.models import fixture_overrides

        fx.weights_override = fixture_overrides(fx, weights)
    outputs, decisions = PROCEDURES[fx.kind()](fx)
    names = fx.config.get("outputs") or list(outputs)
    if fx.kind() == "rolling_sink":
        names = ["output_latents"] + [n for n in ("x0_pred",) if n in fx.io]
    checks = [compare_tensor(fx, name, outputs[name]) for name in names if name in outputs]
    missing = [n for n in names if n not in outputs]
    checks += [Check(f"{fx.name}/{n}", False, "not produced") for n in missing]
    if fx.log is not None:
        checks += compare_decisions(fx, decisions)
    if weights is None:  # the user's path too: the fixture through the preset a user would pick
        checks += preset_checks(fx)
    if save is not None:
        out_dir = save / fx.name
        out_dir.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.detach().float().cpu().contiguous() for k, v in outputs.items()},
            out_dir / "outputs.safetensors",
        )
        (out_dir / "log.json").write_text(json.dumps(decisions, indent=1))
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dysink_cli.parity", description=__doc__)
    parser.add_argument("dirs", nargs="+", type=Path, help="fixture directories")
    parser.add_argument("--save", type=Path, help="write outputs.safetensors and log.json per fixture here")
    parser.add_argument("--weights", type=Path, help="load the models from this weights folder instead")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    passed = skipped = failed = 0
    for path in args.dirs:
        try:
            checks = run_fixture(path, args.save, args.weights)
        except (DysinkError, KeyError, ValueError, RuntimeError, OSError) as err:
            if args.debug:
                traceback.print_exc()
            checks = [Check(path.name.rstrip("/") or str(path), False, f"could not run: {err}")]
        for check in checks:
            print(check.line(), flush=True)
            skipped += check.skipped
            passed += check.passed and not check.skipped
            failed += not check.passed
    print(f"{passed} passed, " + (f"{skipped} skipped, " if skipped else "") + f"{failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
