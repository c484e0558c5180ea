"""A training-only read-out of the prompt: theme and camera word from the text encoder's output.

The toy's umT5 starts from random weights and sees bytes, so the DiT's cross-attention has to find
a theme word in 128 near-identical byte embeddings; with nothing else to go by (the first block of a
video) it drew every prompt as the average theme. The probe is a linear layer on the masked mean of
the encoder's tokens whose cross-entropy makes the encoder carry the theme and the camera word in
every token. The "words" stage trains the encoder and the probe alone on captions (`words_step`:
learning ~90 theme words from bytes takes ~900 steps at lr 3e-3, then jumps from ~70 % to ~98 %);
the DiT stages keep the probe's loss at PROBE_WEIGHT. It never ships: the exported weights are the
four networks.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dysink_cli.model.t5 import UMT5Encoder
from dysink_cli.model.tokenizer import ByteTokenizer
from dysink_cli.toy.captions import parse_prompt, random_caption
from dysink_cli.toy.world import MOTIONS, THEMES

PROBE_WEIGHT = 0.1  # against a flow MSE near 0.5


class PromptProbe(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.head = nn.Linear(dim, len(THEMES) + len(MOTIONS))
        nn.init.zeros_(self.head.weight)  # deterministic (resumes stay bit-exact); logits start at 0
        nn.init.zeros_(self.head.bias)

    def forward(self, embeds: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Theme and motion logits (B, themes), (B, motions) from embeds (B, L, D), mask (B, L)."""
        m = mask.to(embeds.dtype)[..., None]
        pooled = (embeds * m).sum(1) / m.sum(1).clamp_min(1.0)
        logits = self.head(pooled.float())
        return logits[:, : len(THEMES)], logits[:, len(THEMES) :]

    def loss(self, embeds: Tensor, mask: Tensor, captions: list[str]) -> tuple[Tensor, dict[str, float]]:
        """Cross-entropy against what each caption names (captions.parse_prompt), and accuracies."""
        parsed = [parse_prompt(c) for c in captions]
        if any(theme is None for theme, _ in parsed):
            raise ValueError("every training caption names a theme")
        device = embeds.device
        themes = torch.tensor([THEMES.index(t) for t, _ in parsed], device=device)  # type: ignore[arg-type]
        motions = torch.tensor([MOTIONS.index(m) for _, m in parsed], device=device)
        theme_logits, motion_logits = self(embeds, mask)
        loss = F.cross_entropy(theme_logits, themes) + F.cross_entropy(motion_logits, motions)
        accuracy = {
            "probe_theme": (theme_logits.argmax(1) == themes).float().mean().item(),
            "probe_motion": (motion_logits.argmax(1) == motions).float().mean().item(),
        }
        return loss, accuracy


def random_captions(rng: random.Random, count: int) -> list[str]:
    """`count` captions of random themes and motions (captions.random_caption)."""
    return [random_caption(rng, rng.choice(THEMES), rng.choice(MOTIONS)) for _ in range(count)]


def words_step(
    t5: UMT5Encoder, probe: PromptProbe, tokenizer: ByteTokenizer, opt: torch.optim.Optimizer,
    rng: random.Random, batch: int, device: torch.device,
) -> dict[str, float]:  # fmt: skip
    """One step of the "words" stage: the text encoder and the probe on `batch` fresh captions.

    Tokens past the longest caption are cut (masked keys change nothing at the kept positions).
    """
    captions = random_captions(rng, batch)
    ids, mask = tokenizer(captions)
    length = int(mask.sum(1).max())
    ids, mask = ids[:, :length].to(device), mask[:, :length].to(device)
    loss, accuracy = probe.loss(t5.encode(ids, mask), mask, captions)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {"loss": loss.item(), **accuracy}
