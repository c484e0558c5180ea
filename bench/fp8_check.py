"""FP8 linears on the GPU: the kernel against its arithmetic, and the full-size DiT against bf16.

`python bench/fp8_check.py` (CUDA) prints one JSON line per measure:
- `kernel`: torch._scaled_mm with row-wise scales against the same e4m3 numbers multiplied in
  float32 (model/fp8.py's CPU path) at the DiT's FFN shape, and the GEMM times of both dtypes;
- `dit`: one 3-latent block at 832x480 through the 30-layer, dim-1536 DiT with random weights
  (model/tiny.py's seeded recipe), bf16 against FP8, at the sampler's four timesteps: relative L2
  error and cosine of the predicted flow.
"""

from __future__ import annotations

import json
import time

import torch

from dysink_cli.model.config import WAN_1_3B
from dysink_cli.model.dit import WanDiT
from dysink_cli.model.fp8 import fp8_linear, quantize_rows, use_fp8
from dysink_cli.model.rope import wan_frequencies
from dysink_cli.model.tiny import init_untrained
from dysink_cli.toy.dit_context import dit_call

TIMESTEPS = (1000.0, 937.5, 833.3333, 625.0)
LATENT_HW = (60, 104)  # 480 x 832 / 8


def gemm_ms(fn, repeats: int = 50) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000 / repeats


def kernel_check() -> dict:
    gen = torch.Generator(device="cuda").manual_seed(0)
    tokens, dim, ffn = 3 * 30 * 52, WAN_1_3B.dim, WAN_1_3B.ffn_dim
    x = torch.randn(tokens, dim, device="cuda", generator=gen, dtype=torch.bfloat16)
    w = torch.randn(ffn, dim, device="cuda", generator=gen, dtype=torch.bfloat16) / dim**0.5
    wq, ws = quantize_rows(w)
    got = fp8_linear(x, wq, ws, None).float()
    want = fp8_linear(x.cpu(), wq.cpu(), ws.cpu(), None).float().cuda()  # the float32 arithmetic
    exact = x.float() @ w.float().t()
    flops = 2 * tokens * dim * ffn
    bf16_ms = gemm_ms(lambda: x @ w.t())
    fp8_ms = gemm_ms(lambda: fp8_linear(x, wq, ws, None))
    return {
        "measure": "kernel", "shape": [tokens, dim, ffn],
        "rel_err_vs_same_e4m3_in_fp32": float((got - want).norm() / want.norm()),
        "rel_err_vs_exact": float((got - exact).norm() / exact.norm()),
        "bf16_ms": round(bf16_ms, 4), "fp8_ms_with_quantise": round(fp8_ms, 4),
        "bf16_tflops": round(flops / bf16_ms / 1e9, 1), "fp8_tflops": round(flops / fp8_ms / 1e9, 1),
    }  # fmt: skip


@torch.no_grad()
def dit_check() -> list[dict]:
    dit = init_untrained(WanDiT(WAN_1_3B), 0).to("cuda", torch.bfloat16).eval()
    freqs = wan_frequencies(WAN_1_3B.head_dim, WAN_1_3B.rope_theta)
    gen = torch.Generator(device="cuda").manual_seed(1)
    x = torch.randn(1, 3, WAN_1_3B.in_dim, *LATENT_HW, device="cuda", generator=gen, dtype=torch.bfloat16)
    text = dit.encode_text(torch.randn(1, 512, WAN_1_3B.text_dim, device="cuda", generator=gen))
    rows = []
    for t in TIMESTEPS:
        step = torch.tensor([t], device="cuda")
        use_fp8(dit.blocks, on=False)
        ref = dit_call(dit, x, step, text, torch.tensor([0]), freqs)[0].float()
        use_fp8(dit.blocks, on=True)
        got = dit_call(dit, x, step, text, torch.tensor([0]), freqs)[0].float()
        cos = torch.nn.functional.cosine_similarity(got.flatten(), ref.flatten(), dim=0)
        rows.append({
            "measure": "dit", "timestep": t, "rel_l2": round(float((got - ref).norm() / ref.norm()), 5),
            "cosine": round(float(cos), 6),
        })  # fmt: skip
    return rows


def main() -> None:
    print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__}), flush=True)
    print(json.dumps(kernel_check()), flush=True)
    for row in dit_check():
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
