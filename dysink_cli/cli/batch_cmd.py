"""`dysink batch`: one video per entry of a .txt / .jsonl / folder of timelines; torchrun-aware.

Per-entry values (seconds, seed, preset, output) win over the batch flags, which act as defaults;
--set applies to every entry. A failing entry is reported and the rest go on; exit 1 if any failed.
Imports cli.options, cli.progress, render.batch, render.job and render.workdir; render() when it runs.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dysink_cli.cli.errors import cli_errors, err_console, print_error
from dysink_cli.cli.options import RenderOptions, build_job, check_device, check_seconds, parse_seconds
from dysink_cli.cli.progress import RenderProgress
from dysink_cli.cli.render_cmd import (
    CrfOpt,
    DebugOpt,
    DeviceOpt,
    FpsOpt,
    LosslessOpt,
    PresetOpt,
    QuietOpt,
    SetOpt,
    WeightsOpt,
)
from dysink_cli.errors import ConfigError, DysinkError, OutputError
from dysink_cli.render.batch import (
    BatchEntry,
    DistInfo,
    EntryResult,
    close_distributed,
    default_output,
    done_marker,
    entry_state,
    failure,
    init_distributed,
    partial_marker,
    read_entries,
    run_sharded,
    started_with,
    write_done,
)
from dysink_cli.render.job import RenderJob
from dysink_cli.render.workdir import resumable

Planned = tuple[BatchEntry, Path, RenderJob]


def plan_entries(
    entries: list[BatchEntry], out_dir: Path, opts: RenderOptions, seconds: float | None, seed: int
) -> list[Planned]:
    """Resolve every entry's job up front; config mistakes are collected and raised together."""
    planned: list[Planned] = []
    problems: list[tuple[str, DysinkError]] = []  # (entry label, what is wrong)
    seen: dict[Path, str] = {}
    for entry in entries:
        tl = entry.timeline
        out = out_dir / (tl.output or default_output(entry))
        if out in seen:
            clash = ConfigError(
                f"output {out.name} is also used by {seen[out]}", "give each entry its own output"
            )
            problems.append((entry.label, clash))
            continue
        seen[out] = entry.label
        length = tl.seconds if tl.seconds is not None else seconds
        try:
            if length is None:
                raise ConfigError("no length", "add seconds to the entry or pass --seconds")
            entry_opts = replace(opts, preset=None)  # the entry's own preset beats --preset
            seed_for = tl.seed if tl.seed is not None else seed
            job = build_job(
                entry_opts,
                tl,
                out,
                length,
                seed_for,
                os.environ,
                preset_fallback=opts.preset,
                check_exists=False,
            )
        except DysinkError as err:
            problems.append((entry.label, err))
            continue
        planned.append((entry, out, job))
    if problems:
        refuse(problems)
    return planned


def refuse(problems: list[tuple[str, DysinkError]]) -> NoReturn:
    """One bad entry, or one mistake every bad entry shares (a bad --set), is one error line; several
    different ones are listed first, then summed up."""

    def where(label: str, err: DysinkError) -> str:
        return err.message if err.message.startswith(label) else f"{label}: {err.message}"

    label, first = problems[0]
    if len({(err.message, err.hint) for _, err in problems}) == 1:
        what = where(label, first) if len(problems) == 1 else f"{len(problems)} entries: {first.message}"
        raise type(first)(what, first.hint or "fix it; nothing was rendered")
    for label, err in problems:
        print_error("bad entry", where(label, err) + (f" ({err.hint})" if err.hint else ""))
    raise ConfigError(f"{len(problems)} bad batch entries (listed above)", "fix them; nothing was rendered")


@contextmanager
def made_folder(folder: Path) -> Iterator[None]:
    """Create `folder` (and missing parents) for the block; remove what was created if it raises."""
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(
            f"cannot create --out-dir {folder}: {err.strerror or err}", "pick a folder you can write to"
        ) from None
    try:
        yield
    except BaseException:
        for path in created:  # deepest first; each is still empty
            with suppress(OSError):
                path.rmdir()
        raise


def make_runner(
    opts: RenderOptions, info: DistInfo, progress: RenderProgress, render: Callable[..., object]
) -> Callable[[Planned], EntryResult]:
    """One entry: skip if finished, else mark .partial, render, then write .done."""

    def run_one(item: Planned) -> EntryResult:
        entry, out, job = item
        state = entry_state(out, opts.overwrite, job)
        if state == "skip":
            return EntryResult(
                entry.index, entry.label, str(out), "skipped", "finished earlier", rank=info.rank
            )
        note = "settings changed since it finished: rendered again" if state == "changed" else ""
        started = time.perf_counter()
        try:
            if state == "foreign":
                raise OutputError(
                    f"{out} exists but was not written by this batch", "pass --overwrite or remove it"
                )
            # An interrupted render continues its checkpoint, unless it is ours (.partial) and its
            # settings changed: then it starts again. Our finished video (changed settings), our
            # leftovers and --overwrite may be replaced; foreign files were refused above.
            ours = partial_marker(out).exists()
            resume = state == "render" and not opts.overwrite and resumable(out)
            resume = resume and not (ours and not started_with(out, job))
            if ours and resumable(out) and not resume:
                note = "settings changed since it was interrupted: started again"
            done_marker(out).unlink(missing_ok=True)
            partial_marker(out).touch()
            job = replace(job, overwrite=not resume)
            if info.world > 1 and job.device in ("auto", "cuda") and _cuda():
                job = replace(job, device=f"cuda:{info.local_rank}")
            stats = render(job, progress)
        except Exception as err:  # noqa: BLE001 - one broken entry must not stop the batch
            if opts.debug:
                err_console().print_exception(show_locals=False)
            if isinstance(err, DysinkError):
                print_error(f"{entry.label} failed", err.message, err.hint)
            else:
                print_error(f"{entry.label} failed", f"{type(err).__name__}: {err}", "rerun with --debug")
            return failure(entry, out, err, info.rank)
        wall = time.perf_counter() - started
        video_s = float(getattr(stats, "video_frames", 0)) / job.config.output.fps
        write_done(out, job, entry.label, video_s, wall)
        partial_marker(out).unlink(missing_ok=True)
        return EntryResult(entry.index, entry.label, str(out), "done", note, video_s, wall, info.rank)

    return run_one


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def summary_table(results: list[EntryResult]) -> Table:
    table = Table(title="batch summary", title_justify="left")
    for name, justify in (
        ("#", "right"),
        ("entry", "left"),
        ("output", "left"),
        ("status", "left"),
        ("video s", "right"),
        ("wall s", "right"),
        ("note", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    ranked = any(r.rank for r in results)
    if ranked:
        table.add_column("rank", justify="right")
    colors = {"done": "green", "skipped": "cyan", "failed": "red"}
    for r in results:
        cells = [
            str(r.index),
            r.label,
            Path(r.output).name,
            Text(r.status, style=colors[r.status]),
            f"{r.video_s:.1f}" if r.video_s else "",
            f"{r.wall_s:.1f}" if r.wall_s else "",
            r.message,
        ]
        table.add_row(*cells, *([str(r.rank)] if ranked else []))
    return table


def batch_command(
    file: Annotated[
        Path, typer.Argument(help="prompts.txt, prompts.jsonl, or a folder of timeline .toml files.")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out-dir", "-d", help="Folder for the videos (created if missing).")
    ],
    preset: PresetOpt = None,
    seconds: Annotated[
        str | None, typer.Option("--seconds", "-s", metavar="SECONDS", help="Length for entries without one.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for entries without one.")] = 0,
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    fps: FpsOpt = None,
    crf: CrfOpt = None,
    sets: SetOpt = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Render every entry again, finished ones too.")
    ] = False,
    lossless: LosslessOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Render one video per entry; re-running skips finished ones. Under torchrun, ranks share the work."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    with cli_errors(debug):
        info = DistInfo.from_env()
        opts = RenderOptions(preset, tuple(sets or ()), weights, device, fps, crf, lossless, overwrite, debug)
        check_device(device)
        entries = read_entries(file)
        if out_dir.exists() and not out_dir.is_dir():
            raise OutputError(f"--out-dir {out_dir} is a file", "pass a folder")
        default_s = parse_seconds(seconds)
        if default_s is not None:
            check_seconds(default_s)
        with made_folder(out_dir):  # removed again if an entry is refused
            planned = plan_entries(entries, out_dir, opts, default_s, seed)
        init_distributed(info, use_cuda=device != "cpu" and _cuda())
        from dysink_cli.render import render  # torch and the engine load only inside render()

        prefix = f"[rank {info.rank}] " if info.world > 1 else ""
        try:
            with RenderProgress(console, quiet=quiet, live=info.world == 1, prefix=prefix) as progress:
                results = run_sharded(planned, make_runner(opts, info, progress, render), info)
        finally:
            close_distributed(info)
        failed = sum(r.status == "failed" for r in results)
        if info.rank == 0:  # logs of long batches are files: do not squeeze the table to 80 columns
            Console(width=shutil.get_terminal_size((160, 24)).columns).print(summary_table(results))
        if failed:
            raise typer.Exit(1)
