"""`dysink bench speed` (how fast a preset renders here) and `dysink bench revisit` (what each cache
policy remembers where the camera comes back), each figure with its definition.

Thin faces over benchmarks/speed.py and benchmarks/revisit.py, imported inside the commands (torch
loads only then): they draw rich tables and write --json (and --png). Imports cli.errors,
cli.options, cli.render_cmd (shared options) and errors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from dysink_cli.cli.errors import cli_errors
from dysink_cli.cli.options import check_device, resolve_weights_dir
from dysink_cli.cli.render_cmd import DebugOpt, DeviceOpt, SetOpt
from dysink_cli.errors import OutputError

if TYPE_CHECKING:
    from dysink_cli.benchmarks.results import SpeedResult
    from dysink_cli.benchmarks.revisit import ScenarioResult

bench_app = typer.Typer(help="Measure dysink on this machine.", no_args_is_help=True)


@bench_app.callback()
def _bench() -> None:
    """Measure dysink on this machine."""


def _gb(value: float | None, what: str) -> str:
    return f"{value:.2f} GB" if value is not None else f"- ({what})"


def result_table(r: SpeedResult) -> Table:
    """One configuration's figures as a two-column table."""
    title = f"{r.preset}: descriptors {r.descriptors}, decoder {r.decoder}, stored {r.stored}, {r.resolution}"
    caption = f"{r.device}; {r.weights} (loaded in {r.load_s:.1f} s); {r.blocks} blocks, {r.frames} frames"
    table = Table(
        Column("figure"),
        Column("value", justify="right"),
        title=escape(title),
        title_justify="left",
        caption=escape(caption),
        caption_justify="left",
    )
    table.add_row("end-to-end FPS", f"{r.e2e_fps:.1f}")
    table.add_row("DiT-only FPS", f"{r.dit_fps:.1f}")
    table.add_row("time to first frame", f"{r.ttff_s:.2f} s")
    table.add_row("ms per block", f"{r.ms_per_block['total']:.1f}")
    for stage, ms in r.ms_per_block.items():
        if stage != "total":
            table.add_row(f"  {stage}", f"{ms:.1f}")
    table.add_row("peak GPU memory", _gb(r.peak_gpu_gb, "CPU run"))
    table.add_row("peak host RSS", _gb(r.peak_rss_gb, ""))
    if r.floor is not None:
        f = r.floor
        rates = f"{f.tflop:.1f} TFLOP at {f.matmul_tflops:.0f} / {f.attention_tflops:.0f} TFLOP/s"
        table.add_row("DiT floor", f"{f.block_ms:.1f} ms = {f.fps:.1f} FPS ({rates})")
    else:
        table.add_row("DiT floor", "- (CUDA only)")
    warm = f"{r.warmup_s:.1f} s before the loop + " if r.warmup_s is not None else ""
    table.add_row("warm-up (excluded)", f"{warm}{r.warmup_blocks_s:.1f} s in {r.warmup_blocks} block(s)")
    encode = f"{r.encode_fps:.0f} FPS on this CPU" if r.encode_fps is not None else "- (no ffmpeg)"
    table.add_row("x264 encode (apart)", encode)
    agree = r.extra.get("retrieval_agreement")
    if agree is not None:
        table.add_row("retrieval agreement", _agreement(agree))
    return table


def _agreement(a: dict) -> str:
    stores = f"store decisions {a['same_store_decision']:.0%} alike"
    if not a["blocks_with_retrieval"]:
        return f"no block retrieved in {a['blocks']} ({stores})"
    return (
        f"{a['same_retrieval']:.0%} of {a['blocks_with_retrieval']} retrieving blocks as with the reference "
        f"decode (Jaccard {a['mean_jaccard']:.2f}; {stores})"
    )


def definitions(warmup: int) -> list[str]:
    """One line per figure: what it measures."""
    return [
        f"every figure: median of the steady-state blocks after {warmup} warm-up block(s); graph capture "
        "and compile excluded (reported: warm-up seconds)",
        "end-to-end FPS: a block's video frames / its wall time: DiT, decode and hand-off to the encoder "
        "(frames in a NullSink); x264 is not in it (measured apart)",
        "DiT-only FPS: a block's video frames / (denoise + clean_pass ms)",
        "time to first frame: block loop start (networks loaded, warmed up) until the first frames reach "
        "the encoder",
        "ms per block: wall time of a block; each stage: its time in the block (CUDA events on a GPU, wall "
        "clock on a CPU)",
        "peak GPU memory: torch's allocator peak over the render, networks included",
        "peak host RSS: this process's highest resident memory sampled during the render",
        "DiT floor: FLOPs of a block's DiT forwards (steps + clean pass) at this GPU's measured GEMM / "
        "attention rates",
        "x264 encode: synthetic frames at the output size through ffmpeg on this CPU, apart from the render",
        "retrieval agreement (descriptors not the reference decode): the same blocks rendered again, "
        "untimed, steered by the reference descriptors; both descriptor streams replayed through DySink's "
        "memory",
    ]


def check_outputs(*flags: tuple[str, Path | None]) -> None:
    """Each output file's folder exists (before anything heavy runs)."""
    for flag, path in flags:
        if path is not None and not path.parent.is_dir():
            raise OutputError(f"{flag} {path}: folder {path.parent} does not exist", "create it first")


JsonOpt = Annotated[Path | None, typer.Option("--json", help="Write the results as JSON.")]
PresetsOpt = Annotated[
    list[str] | None,
    typer.Option("--preset", help="Preset to measure (repeatable; default dysink). toy, tiny: CPU too."),
]


@bench_app.command("speed")
def speed_command(
    presets: PresetsOpt = None,
    decoder: Annotated[
        str | None, typer.Option("--decoder", metavar="wan|taehv", help="Output decoder (model.decoder).")
    ] = None,
    blocks: Annotated[int, typer.Option("--blocks", help="Blocks rendered per configuration.")] = 12,
    warmup: Annotated[int, typer.Option("--warmup", help="Leading blocks left out of the medians.")] = 3,
    weights: Annotated[
        Path | None,
        typer.Option("--weights", help="Weights folder to measure (default: random weights at full size)."),
    ] = None,
    sets: SetOpt = None,
    descriptors: Annotated[
        list[str] | None,
        typer.Option(
            "--descriptors", metavar="standalone|shared", help="DySink descriptor mode (repeatable)."
        ),
    ] = None,
    json_out: JsonOpt = None,
    device: DeviceOpt = "auto",
    debug: DebugOpt = False,
) -> None:
    """Render blocks of each preset into a NullSink and print FPS, stage times, memory and the floor."""
    out, err = _consoles()
    with cli_errors(debug):
        folder, _ = resolve_weights_dir(weights, {})
        check_outputs(("--json", json_out))
        check_device(device)
        from dysink_cli.benchmarks.speed import SpeedBench, SpeedRequest  # torch loads here

        request = SpeedRequest(
            presets=tuple(presets or ("dysink",)),
            decoder=decoder,
            blocks=blocks,
            warmup=warmup,
            weights=folder,
            overrides=tuple(sets or ()),
            descriptors=tuple(descriptors or ()),
            device=device,
        )
        bench = SpeedBench(request)
        results = []
        for case in bench.cases:
            err.print(f"[dim]measuring {escape(case.preset)} ({blocks} blocks, {warmup} warm-up) ...[/]")
            results.append(bench.run(case))
            out.print(result_table(results[-1]))
        for line in definitions(warmup):
            out.print(f"[dim]{escape(line)}[/]")
        if json_out is not None:
            json_out.write_text(json.dumps([r.to_json() for r in results], indent=1) + "\n")
            err.print(f"[dim]wrote {escape(str(json_out))}[/]")


def revisit_table(sr: ScenarioResult) -> Table:
    """Per return (then the new-ground control) a group of rows, one per measure; a column per policy."""
    policies = list(sr.curves)
    columns = (Column(p.replace("-", "-\n", 1), justify="right") for p in policies)
    title = escape(f"{sr.scenario.name}: {sr.scenario.description}")
    table = Table(Column("at"), Column("measure"), *columns, title=title, title_justify="left")
    measures = (
        ("PSNR dB", lambda sc: f"{sc['psnr']:.1f}"),
        ("SSIM", lambda sc: f"{sc['ssim']:.3f}"),
        ("control PSNR", lambda sc: f"{sc['control_psnr']:.1f}"),
        ("shift px", lambda sc: "{:+d},{:+d}".format(*sc["shift_px"])),
        ("start PSNR", lambda sc: f"{sc['start_psnr']:.1f}" if "start_psnr" in sc else None),
        ("free PSNR", lambda sc: f"{sc['free']['psnr']:.1f}" if "free" in sc else None),
        ("free control", lambda sc: f"{sc['free']['control_psnr']:.1f}" if "free" in sc else None),
    )
    for row in sr.rows:
        label = f"{row.place}, {row.t:.1f} s" + ("" if row.kind == "return" else " (control)")
        shown = [
            (name, cells)
            for name, show in measures
            if None not in (cells := [show(row.scores[p]) for p in policies])
        ]
        for k, (name, cells) in enumerate(shown):
            table.add_row(escape(label) if k == 0 else "", name, *cells, end_section=k == len(shown) - 1)
    return table


REVISIT_NOTES = [
    "PSNR, SSIM: the frames at that place (mean over them) against the exact ground truth of the camera "
    "position, at the one shift of +-4 px that fits them best (shift: dx right, dy down)",
    "control PSNR: the same frames against far, never-visited places of the same map, their mean (what "
    "blandness or chance scores); a policy remembers only by its margin above it",
    "start PSNR: returns to a place other than the start, against the start's truth (pulled back to it?)",
    "(control) rows: the first block on new ground, which no policy can remember: the no-memory level",
    "free: a render without the ground-truth start, its return frames against its own first visit (free "
    "control: against its own frames of new ground)",
    "oracle: the dysink preset retrieving and storing blocks by their true camera position (the "
    "ceiling of retrieval); retrieval precision: the share of a policy's retrieved blocks that the "
    "oracle would pick from the same candidates (the render from the ground-truth start)",
]
PolicyOpt = Annotated[
    list[str] | None, typer.Option("--policy", help="Policy to run (repeatable; default all).")
]
ScenarioOpt = Annotated[
    list[str] | None, typer.Option("--scenario", help="start, middle or long (repeatable; default all).")
]


@bench_app.command("revisit")
def revisit_command(
    small: Annotated[bool, typer.Option("--small", help="CPU-size scenarios (one-block legs).")] = False,
    weights_file: Annotated[
        Path | None,
        typer.Option("--weights-file", help="Toy weights (default: the shipped toy.safetensors)."),
    ] = None,
    policies: PolicyOpt = None,
    scenario_names: ScenarioOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Noise seed, the same for every policy.")] = 0,
    sets: SetOpt = None,
    json_out: JsonOpt = None,
    png_out: Annotated[Path | None, typer.Option("--png", help="Write PSNR over time as a PNG.")] = None,
    device: DeviceOpt = "auto",
    debug: DebugOpt = False,
) -> None:
    """Render toy-world scenarios whose camera comes back, with every cache policy, and score the returns."""
    out, err = _consoles()
    with cli_errors(debug):
        check_outputs(("--json", json_out), ("--png", png_out))
        check_device(device)
        from dysink_cli.benchmarks.revisit import POLICIES, RevisitBench, RevisitRequest  # torch loads here
        from dysink_cli.benchmarks.revisit_score import write_png

        request = RevisitRequest(
            small=small, policies=tuple(policies or POLICIES), seed=seed, device=device,
            scenarios=tuple(scenario_names or ("start", "middle", "long")), overrides=tuple(sets or ()),
            **({"weights_file": weights_file} if weights_file is not None else {}),
        )  # fmt: skip
        bench = RevisitBench(request, lambda line: err.print(f"[dim]rendering {escape(line)} ...[/]"))
        result = bench.run()
        for scenario in result.scenarios:
            out.print(revisit_table(scenario))
            shares = [f"{p} {'-' if v is None else f'{v:.2f}'}" for p, v in scenario.precision.items()]
            if shares:
                out.print(escape(f"retrieval precision vs the oracle: {', '.join(shares)}"))
        for line in REVISIT_NOTES:
            out.print(f"[dim]{escape(line)}[/]")
        out.print(f"[dim]{escape(result.weights)}; {result.device}; {result.wall_s:.0f} s[/]")
        if json_out is not None:
            json_out.write_text(json.dumps(result.to_json(), indent=1) + "\n")
            err.print(f"[dim]wrote {escape(str(json_out))}[/]")
        if png_out is not None:
            write_png(result, png_out)
            err.print(f"[dim]wrote {escape(str(png_out))}[/]")


def _consoles() -> tuple[Console, Console]:
    """The bench commands' stdout (tables, JSON) and stderr (progress) consoles."""
    return Console(highlight=False, soft_wrap=True), Console(stderr=True, highlight=False, soft_wrap=True)
