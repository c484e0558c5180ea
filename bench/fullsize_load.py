"""Full-size weight-file round trip on the GPU (issue 4): write random-weight files in the real
release layouts, load them through the loader `dysink render --weights` uses, render a few
seconds at 832x480 (NullSink: the GPU box has no ffmpeg), and report load time and peak memory.

    python bench/fullsize_load.py --dir /tmp/weights --seconds 3

Layouts: DySink `stage1_base.pt` ({"generator": {"model.<key>": fp32}}), a rank-256
`stage2_lora.pt` (PEFT keys, lora_config), `Wan2.1_VAE.pth`, `models_t5_umt5-xxl-enc-bf16.pth`
(bf16), a `google/umt5-xxl/tokenizer.json` (a small word-level vocabulary: the real one cannot be
downloaded here) and Meta's `PE-Core-S16-384.pt` ({"state_dict": {"visual.<key>"}} + text keys).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dysink_cli.config import resolve_config  # noqa: E402
from dysink_cli.io.ffmpeg import NullSink  # noqa: E402
from dysink_cli.model.config import PE_CORE_S16_384, UMT5_XXL, WAN_1_3B, WAN_VAE  # noqa: E402
from dysink_cli.model.dit import WanDiT  # noqa: E402
from dysink_cli.model.pe_core import PECoreVision  # noqa: E402
from dysink_cli.model.t5 import UMT5Encoder  # noqa: E402
from dysink_cli.model.tiny import init_untrained  # noqa: E402
from dysink_cli.model.vae import WanVAE  # noqa: E402
from dysink_cli.render.events import BlockDone, Note  # noqa: E402
from dysink_cli.render.job import RenderJob  # noqa: E402
from dysink_cli.render.session import render  # noqa: E402
from dysink_cli.timeline import Segment  # noqa: E402

LORA_TARGETS = [f"{a}.{p}" for a in ("self_attn", "cross_attn") for p in "qkvo"] + ["ffn.0", "ffn.2"]


def cpu_state(module: torch.nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", dtype).contiguous() for k, v in module.state_dict().items()}


def write_files(root: Path, rank: int = 256) -> dict[str, float]:
    root.mkdir(parents=True, exist_ok=True)
    sizes = {}
    with torch.device("cuda"):
        dit = init_untrained(WanDiT(WAN_1_3B), 11)
    torch.save(
        {"generator": {f"model.{k}": v for k, v in cpu_state(dit, torch.float32).items()}},
        root / "stage1_base.pt",
    )
    gen = torch.Generator(device="cuda").manual_seed(12)
    lora = {}
    for i, block in enumerate(dit.blocks):
        for name in LORA_TARGETS:
            linear = block.get_submodule(name)
            a = torch.randn(rank, linear.in_features, generator=gen, device="cuda") / linear.in_features**0.5
            b = torch.randn(linear.out_features, rank, generator=gen, device="cuda") * 1e-3
            lora[f"base_model.model.blocks.{i}.{name}.lora_A.weight"] = a.cpu()
            lora[f"base_model.model.blocks.{i}.{name}.lora_B.weight"] = b.cpu()
    torch.save(
        {"generator_lora": lora, "critic_lora": {}, "lora_config": {"rank": rank, "alpha": rank}},
        root / "stage2_lora.pt",
    )
    del dit, lora
    with torch.device("cuda"):
        vae = init_untrained(WanVAE(WAN_VAE), 13)
    torch.save(cpu_state(vae, torch.float32), root / "Wan2.1_VAE.pth")
    del vae
    with torch.device("cuda"):
        t5 = init_untrained(UMT5Encoder(UMT5_XXL).to(torch.bfloat16), 14)
    torch.save(cpu_state(t5, torch.bfloat16), root / "models_t5_umt5-xxl-enc-bf16.pth")
    del t5
    torch.cuda.empty_cache()
    with torch.device("cuda"):
        pe = init_untrained(PECoreVision(PE_CORE_S16_384), 15)
    visual = {f"visual.{k}": v for k, v in cpu_state(pe, torch.float32).items()}
    text = {"positional_embedding": torch.zeros(77, 512), "token_embedding.weight": torch.zeros(49408, 512)}
    torch.save({"state_dict": {**visual, **text}}, root / "PE-Core-S16-384.pt")
    write_tokenizer(root / "google" / "umt5-xxl")
    for path in root.rglob("*"):
        if path.is_file():
            sizes[str(path.relative_to(root))] = path.stat().st_size / 1e9
    return sizes


def write_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder.mkdir(parents=True, exist_ok=True)
    words = ["a", "red", "fox", "running", "through", "snow", "the", "city", "at", "night"]
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, default=Path("/tmp/dysink-weights"))
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    start = time.perf_counter()
    sizes = write_files(args.dir)
    print(
        f"wrote {sum(sizes.values()):.1f} GB in {time.perf_counter() - start:.0f} s: "
        + ", ".join(f"{k} {v:.2f} GB" for k, v in sizes.items()),
        flush=True,
    )
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    cfg = resolve_config("dysink", [f'model.weights="{args.dir}"'])
    job = RenderJob(
        segments=(Segment(0.0, "a red fox running through snow"),),
        seconds=args.seconds,
        output=Path("/tmp/fullsize.mp4"),
        config=cfg,
        seed=0,
        device="cuda",
        overwrite=True,
    )
    marks: dict[str, float] = {}
    t0 = time.perf_counter()

    def on_event(event: object) -> None:
        if isinstance(event, Note) and event.message.startswith("warmed up"):
            marks["loaded_s"] = time.perf_counter() - t0
        if isinstance(event, BlockDone) and "first_block_s" not in marks:
            marks["first_block_s"] = time.perf_counter() - t0

    stats = render(job, on_event, sink_factory=NullSink)
    rss = psutil.Process().memory_info().rss / 1e9
    print(
        "load (T5 encode + free, DiT + rank-256 LoRA merge, VAE, PE-Core, warm-up): "
        f"{marks['loaded_s']:.1f} s; first block at {marks['first_block_s']:.1f} s; "
        f"{stats.video_frames} frames in {stats.wall_s:.1f} s; "
        f"peak GPU {torch.cuda.max_memory_allocated() / 1e9:.1f} GB; peak RSS {stats.peak_rss_gb:.1f} GB "
        f"(now {rss:.1f} GB)"
    )


if __name__ == "__main__":
    main()
