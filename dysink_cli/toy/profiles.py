"""Training profiles: sizes, batches, stage budgets and learning rates (toy/trainer.py runs them).

"toy" is the shipped model's schedule on the GPU (bf16 autocast, about 30 minutes in all; `--budget-minutes`
sets the sum of the minute budgets), "cpu" the same model on a laptop, "micro" and "smoke" the sizes of tests.
"toy-camera" adds the "camera" stage before "dmd" (measured worse, bench/RESULTS.md: not in "toy"),
"toy-pan" the "pan" stage (toy/train_pan.py; measured worse: the renders went flat), "toy-rollout" the
"rollout" stage (sf on context rolled out from sigma 1.0 or 0.94, the render's case; measured, not
shipped), "toy-guided" the same with the dmd stage's real score guided by contrast captions (not run);
"cpu-dmd" and "cpu-guided" run dmd alone on a laptop, unguided and guided (the CPU trial of the guidance).
"toy-clip" trains the clip teacher (train_clip.py), then runs dmd on the generator's own three-block
rollouts scored by it (measured from the shipped weights: every theme drawn as desert; not shipped).
"micro-clip" is its test size. "toy-degrade" and "cpu-degrade" add the "degrade" stage (teacher forcing
on context blurred and noised as a render's own blocks are, toy/degrade.py); "toy-degrade-dmd" and
"cpu-degrade-dmd" also degrade the dmd stage's context. "toy-fine" is "toy" with 8-px DiT tokens
(patch 1 x 1 latent pixels, 4x the tokens; retrained with `--from-weights W --new-dit`);
"toy-fine-flow" retrains it so with soft context from the "dit" stage on, no "sf", and a guided dmd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from dysink_cli.model.config import DiTConfig, PECoreConfig, T5Config, VAEConfig
from dysink_cli.toy.degrade import NONE, SOFT_CONTEXT, Degrade
from dysink_cli.toy.models import TEXT_LEN, TOY, ToyConfigs

STAGES = ("vae", "pe", "words", "dit", "sf", "text", "camera", "pan", "rollout", "degrade", "clip", "dmd")
TEXT_STEPS = 720  # the "text" stage: openings of videos, where only the prompt tells the theme
DEGRADE_MINUTES = 5.0  # "degrade": teacher forcing on blurred and noised context (toy/degrade.py)
ROLLOUT_MINUTES = 5.0  # "rollout": sf on context rolled out from (near) pure noise (train_dit.ROLLOUT_STEPS)
PAN_MINUTES = 5.0  # the "pan" stage: own rollouts from noise, target the shifted last frame (train_pan)
CAMERA_MINUTES = 5.0  # the "camera" stage: the prompt's motion, mostly not the context's (data.CAMERA_MIX)
CLIP_MINUTES = 3.5  # "clip": the clip teacher (train_clip.py), fine-tuned from the DiT on whole clips
CLIP_DMD_MINUTES = 4.0  # "toy-clip"'s dmd stage: rollouts of three blocks cost ~3x a block's step
CLIP_GUIDANCE = 1.5  # "toy-clip": contrast guidance of the clip teacher (the motion words' weight)
DMD_GUIDANCE = 3.0  # "toy-guided": Self-Forcing's real-score guidance scale (there CFG, here by contrast)
FLOW_DIT_MINUTES = 9.0  # "toy-fine-flow": the flow model's minutes, one device call
FLOW_GUIDANCE = 1.5  # "toy-fine-flow": contrast guidance of dmd's real score, the flow teacher's
HALF_SOFT = Degrade(share=0.5)  # "toy-fine-flow"'s "dit" stage: half the rows see soft context
DMD_MINUTES = 2.0  # the "dmd" stage: distribution matching of the 4-step sampler (toy/train_dmd.py)
WORDS_STEPS = 2500  # the "words" stage: ~900 steps to learn the theme words, then a margin


def lr_factor(step: int, warmup: int, progress: float) -> float:
    """The learning rate's share at `step` (0-based) of a stage `progress` (0..1) through its budget:
    a linear warm-up over `warmup` steps times a cosine from 1 down to 0.1."""
    warm = min(1.0, (step + 1) / warmup)
    return warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@dataclass(frozen=True)
class Profile:
    """Sizes, batches, budgets (minutes, steps; 0 = unbounded) and learning rates of one run."""

    configs: ToyConfigs
    vae_batch: tuple[int, int, int]  # worlds, clips per world, latent frames
    pe_batch: tuple[int, int]  # worlds, places per world
    dit_batch: tuple[int, int]  # worlds, samples per world
    budgets: dict[str, tuple[float, int]]
    lr: dict[str, float]
    frame_size: tuple[int, int] = (128, 96)  # width, height
    warmup: int = 100
    log_every: int = 25
    moments_dtype: torch.dtype = torch.bfloat16
    dit_reuse: int = 1  # optimiser steps per rendered and encoded DiT batch (fresh noise each)
    text_batch: tuple[int, int] = (8, 2)  # worlds, samples per world of the "text" stage
    words_batch: int = 512  # captions per step of the "words" stage (umT5 and the probe alone)
    dmd_fake_lr_scale: float = 4.0  # "dmd": the fake denoiser tracks the generator this much faster
    dmd_guidance: float = 0.0  # "dmd": contrast guidance of the real score (train_dmd; 0 = none)
    dmd_teacher: str = "block"  # "dmd": the DiT scores a block ("block") or the clip teacher a rollout
    dmd_degrade: Degrade = NONE  # "dmd" (block teacher): the context of a share of rows blurred and noised
    dit_degrade: Degrade = NONE  # "dit" (teacher forcing): likewise, so the flow teacher reads soft context
    text_encoder_lr_scale: float = 10.0  # "text" stage: umT5 and the probe learn words from bytes slowly
    text_reuse: int = 4  # its steps per drawn batch (openings are cheap to train, dear to draw)
    autocast: bool = True  # bf16 autocast on CUDA (weights and optimiser stay float32)


PROFILES: dict[str, Profile] = {
    "toy": Profile(
        TOY, (12, 4, 3), (16, 8), (16, 8),
        {
            "vae": (6.3, 0), "pe": (1.0, 0), "words": (0, WORDS_STEPS), "dit": (13.0, 0), "sf": (5.5, 0),
            "text": (0, TEXT_STEPS), "camera": (0, 0), "pan": (0, 0), "rollout": (0, 0),
            "degrade": (0, 0), "clip": (0, 0), "dmd": (DMD_MINUTES, 0),
        },
        {
            "vae": 1e-3, "pe": 5e-4, "words": 3e-3, "dit": 4e-4, "sf": 1.5e-4, "text": 3e-4, "camera": 2e-4,
            "pan": 1e-4, "rollout": 1.5e-4, "degrade": 1.5e-4, "clip": 3e-4,
            "dmd": 5e-5,
        },
        dit_reuse=3, text_batch=(16, 8),
    ),
    "micro": Profile(
        ToyConfigs(
            dit=DiTConfig(
                dim=32, ffn_dim=64, freq_dim=32, num_heads=2, num_layers=2, text_dim=16, text_len=TEXT_LEN
            ),
            vae=VAEConfig(dim=4, num_res_blocks=1, latent_mean=(0.0,) * 16, latent_std=(1.0,) * 16),
            t5=T5Config(
                vocab_size=384, dim=16, dim_attn=16, dim_ffn=32, num_heads=2, num_layers=1, text_len=TEXT_LEN
            ),
            pe=PECoreConfig(
                image_size=16, patch_size=8, width=16, layers=1, heads=2, output_dim=8, attn_pooler_heads=2
            ),
        ),
        (1, 2, 2), (2, 2), (2, 1),
        {
            "vae": (0, 2), "pe": (0, 2), "words": (0, 2), "dit": (0, 3), "sf": (0, 3), "text": (0, 2),
            "camera": (0, 3), "pan": (0, 0), "rollout": (0, 0),
            "degrade": (0, 0), "clip": (0, 0), "dmd": (0, 3),
        },
        {
            "vae": 1e-3, "pe": 1e-3, "words": 1e-3, "dit": 1e-3, "sf": 1e-3, "text": 1e-3, "camera": 1e-3,
            "pan": 1e-3, "rollout": 1e-3, "degrade": 1e-3, "clip": 1e-3,
            "dmd": 1e-3,
        },
        frame_size=(32, 32), warmup=1, log_every=1, moments_dtype=torch.float32, dit_reuse=2, words_batch=4,
    ),
    "cpu": Profile(  # the toy on a laptop CPU: smaller batches, longer budgets
        TOY, (2, 2, 5), (4, 4), (4, 2),
        {
            "vae": (8.0, 0), "pe": (2.0, 0), "words": (0, WORDS_STEPS), "dit": (25.0, 0), "sf": (10.0, 0),
            "text": (0, TEXT_STEPS), "camera": (2 * CAMERA_MINUTES, 0), "pan": (0, 0), "rollout": (0, 0),
            "degrade": (0, 0), "clip": (0, 0), "dmd": (4 * DMD_MINUTES, 0),
        },
        {
            "vae": 6e-4, "pe": 5e-4, "words": 3e-3, "dit": 4e-4, "sf": 1.5e-4, "text": 3e-4, "camera": 2e-4,
            "pan": 1e-4, "rollout": 1.5e-4, "degrade": 1.5e-4, "clip": 3e-4,
            "dmd": 5e-5,
        },
        warmup=50, log_every=10, words_batch=64,
    ),
    "smoke": Profile(
        TOY, (1, 1, 2), (2, 2), (2, 1),
        {
            "vae": (0, 1), "pe": (0, 1), "words": (0, 1), "dit": (0, 2), "sf": (0, 3), "text": (0, 1),
            "camera": (0, 2), "pan": (0, 0), "rollout": (0, 0),
            "degrade": (0, 0), "clip": (0, 0), "dmd": (0, 1),
        },
        {
            "vae": 1e-4, "pe": 1e-4, "words": 1e-4, "dit": 1e-4, "sf": 1e-4, "text": 1e-4, "camera": 1e-4,
            "pan": 1e-4, "rollout": 1e-4, "degrade": 1e-4, "clip": 1e-4,
            "dmd": 1e-4,
        },
        warmup=1, log_every=1, words_batch=8,
    ),
}  # fmt: skip


def fine_tune(base: str, stage: str, minutes: float) -> Profile:
    """`base` with one fine-tuning stage (those after "text") given `minutes` and the others none."""
    tuned = dict.fromkeys(STAGES[STAGES.index("camera") : STAGES.index("dmd")], (0, 0))
    return replace(PROFILES[base], budgets={**PROFILES[base].budgets, **tuned, stage: (minutes, 0)})


PROFILES["toy-camera"] = fine_tune("toy", "camera", CAMERA_MINUTES)
# 8-px DiT tokens (a 1 x 1 latent patch): a pan at 2 px/frame moves one token per latent frame
FINE_TOKENS = replace(TOY, dit=replace(TOY.dit, patch_size=(1, 1, 1)))
FINE_DIT_MINUTES = {"dit": (9.0, 0), "sf": (3.5, 0)}  # 4x the tokens: two device calls of < 10 minutes
PROFILES["toy-fine"] = replace(
    PROFILES["toy"], configs=FINE_TOKENS, budgets={**PROFILES["toy"].budgets, **FINE_DIT_MINUTES}
)
PROFILES["toy-pan"] = fine_tune("toy", "pan", PAN_MINUTES)
PROFILES["toy-rollout"] = fine_tune("toy", "rollout", ROLLOUT_MINUTES)
PROFILES["toy-degrade"] = fine_tune("toy", "degrade", DEGRADE_MINUTES)
# degrade, then dmd on the same soft context (its teacher the degraded-context model)
PROFILES["toy-degrade-dmd"] = replace(PROFILES["toy-degrade"], dmd_degrade=SOFT_CONTEXT)
# the same on a DiT with 8-px tokens warm-started from the shipped one (bench/toy_fine_trial.py --write-start)
PROFILES["toy-fine-degrade"] = replace(PROFILES["toy-degrade-dmd"], configs=FINE_TOKENS)
# 8-px tokens trained anew with soft context from the start: "dit" degrades half the rows' context,
# no "sf" (dmd's teacher stays the flow model), then "text" and dmd on soft context, guided by
# contrast captions; "toy-fine-flow-plain" is the same unguided (the control arm of one device run)
PROFILES["toy-fine-flow"] = replace(
    PROFILES["toy-fine"],
    budgets={
        **PROFILES["toy-fine"].budgets, "dit": (FLOW_DIT_MINUTES, 0), "sf": (0, 0), "text": (3.0, TEXT_STEPS)
    },
    dit_degrade=HALF_SOFT, dmd_degrade=SOFT_CONTEXT, dmd_guidance=FLOW_GUIDANCE,
)  # fmt: skip
PROFILES["toy-fine-flow-plain"] = replace(PROFILES["toy-fine-flow"], dmd_guidance=0.0)
# the same in one short device call (dit 3.5, text 1, dmd 1.5): the recipe's trial at GPU scale
PROFILES["toy-fine-flow-short"] = replace(
    PROFILES["toy-fine-flow"],
    budgets={
        **PROFILES["toy-fine-flow"].budgets, "dit": (3.5, 0), "text": (1.0, TEXT_STEPS), "dmd": (1.5, 0)
    },
)  # fmt: skip
PROFILES["cpu-degrade"] = fine_tune("cpu", "degrade", 4 * DEGRADE_MINUTES)
PROFILES["cpu-degrade-dmd"] = replace(PROFILES["cpu-degrade"], dmd_degrade=SOFT_CONTEXT)
PROFILES["cpu-rollout"] = fine_tune("cpu", "rollout", 4 * ROLLOUT_MINUTES)  # the laptop's 4x minutes
PROFILES["toy-guided"] = replace(PROFILES["toy-rollout"], dmd_guidance=DMD_GUIDANCE)
# dmd alone from exported weights on a laptop, guided and not (the control): 20 minutes each
_CPU_NO_TUNING = fine_tune("cpu", "camera", 0.0)
PROFILES["cpu-dmd"] = replace(_CPU_NO_TUNING, budgets={**_CPU_NO_TUNING.budgets, "dmd": (20.0, 0)})
PROFILES["cpu-guided"] = replace(PROFILES["cpu-dmd"], dmd_guidance=DMD_GUIDANCE)
# the clip teacher (3.5 min), then dmd on the generator's own three-block rollouts scored by it
_CLIP = fine_tune("toy", "clip", CLIP_MINUTES)
PROFILES["toy-clip"] = replace(
    _CLIP, budgets={**_CLIP.budgets, "dmd": (CLIP_DMD_MINUTES, 0)}, dmd_teacher="clip",
    dmd_guidance=CLIP_GUIDANCE,
)  # fmt: skip
# the clip stage alone on a laptop (its probe: bench/toy_clip_probe.py), then the same dmd
PROFILES["cpu-clip"] = replace(
    fine_tune("cpu", "clip", 4 * CLIP_MINUTES), dmd_teacher="clip", dmd_guidance=CLIP_GUIDANCE
)
_MICRO = PROFILES["micro"]  # the tests' clip teacher and rollout DMD
PROFILES["micro-clip"] = replace(
    _MICRO, budgets={**_MICRO.budgets, "clip": (0, 3)}, dmd_teacher="clip", dmd_guidance=1.0
)
