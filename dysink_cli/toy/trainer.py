"""Trainer: owns the four networks, the stage's optimiser, the RNGs and the counters.

Stages run in order (profiles.STAGES), each until its budget (minutes and/or
steps) is spent, across as many runs as it takes: state() / load() round-trip everything, so a resumed run
continues bit-exactly. Losses go to losses.jsonl (one line per logged step) and a short line to
the `log` callback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dysink_cli.model.rope import wan_frequencies
from dysink_cli.model.tokenizer import ByteTokenizer
from dysink_cli.toy import checkpoint as ckpt
from dysink_cli.toy.batches import DrawnBatch, batch_kind, draw_batch
from dysink_cli.toy.degrade import NONE, SOFT_CONTEXT
from dysink_cli.toy.models import new_toy_networks, with_latent_stats
from dysink_cli.toy.profiles import STAGES, Profile, lr_factor
from dysink_cli.toy.prompt_probe import PROBE_WEIGHT, PromptProbe, words_step
from dysink_cli.toy.train_clip import ClipTeacher, clip_dmd_loss, clip_flow_loss, dmd_source
from dysink_cli.toy.train_dit import (
    ROLLOUT_STEPS,
    SF_STEPS,
    Blocks,
    Schedule,
    own_chain_loss,
    teacher_forcing_loss,
)
from dysink_cli.toy.train_dmd import DmdCritics, contrast_embeds, dmd_loss
from dysink_cli.toy.train_pan import pan_loss
from dysink_cli.toy.train_pe import pe_step
from dysink_cli.toy.train_vae import latent_stats, vae_step

OWN_CHAIN_PROBABILITY = 0.7  # sf steps; the rest are teacher forcing


@dataclass
class Counters:
    steps: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))


class Trainer:
    def __init__(self, profile: Profile, out: Path, device: torch.device, seed: int = 0) -> None:
        self.profile, self.out, self.device = profile, out, device
        self.nets = new_toy_networks(profile.configs)
        for module in self.nets.modules().values():
            module.to(device)
        self.probe = PromptProbe(profile.configs.t5.dim).to(device)  # training only, never exported
        self.tokenizer = ByteTokenizer(profile.configs.t5.vocab_size, profile.configs.t5.text_len)
        self.freqs = wan_frequencies(profile.configs.dit.head_dim, profile.configs.dit.rope_theta)
        self.schedule = Schedule.shipped()
        self.rng = random.Random(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.counters = Counters()
        self.latent_stats: tuple[list[float], list[float]] | None = None
        self.runs: list[dict[str, Any]] = []
        self.opt: torch.optim.Optimizer | None = None
        self.opt_stage: str | None = None
        self.batch: DrawnBatch | None = None  # the DiT batch being reused
        self.critics = DmdCritics()  # the "dmd" stage's teacher and fake denoiser
        self.clip = ClipTeacher()  # the "clip" stage's network (dmd's teacher when dmd_teacher is "clip")

    # -- state ------------------------------------------------------------------------------------
    def stage(self) -> str | None:
        """The first stage whose budget is not spent (None when training is complete)."""
        return next((s for s in STAGES if self.progress(s) < 1.0), None)

    def progress(self, stage: str) -> float:
        minutes, steps = self.profile.budgets[stage]
        done = [self.counters.seconds[stage] / (60 * minutes)] if minutes else []
        done += [self.counters.steps[stage] / steps] if steps else []
        return max(done) if done else 1.0

    def trainable(self, stage: str) -> list[nn.Module]:
        n = self.nets
        if stage == "clip":  # started as a copy of the DiT when the stage begins (train_clip.py)
            return [self.clip.start(n.dit)]
        own = {"vae": [n.vae], "pe": [n.pe], "words": [n.t5, self.probe]}
        own["dmd"] = [n.dit, *self.critics.trained()]  # the teacher stays frozen
        return own.get(stage, [n.dit, n.t5, self.probe])  # the DiT stages (dit, sf, text, camera, ...)

    def optimizer(self, stage: str) -> torch.optim.Optimizer:
        if self.opt_stage != stage:
            lr, fast = self.profile.lr[stage], self.profile.text_encoder_lr_scale
            scale = {id(self.nets.t5): fast, id(self.probe): fast} if stage == "text" else {}
            if stage == "dmd":
                self.critics.start(dmd_source(self.nets.dit, self.clip, self.profile.dmd_teacher))
                scale = {id(m): self.profile.dmd_fake_lr_scale for m in self.critics.trained()}
            groups = [  # "text" trains the text encoder and the probe faster, "dmd" its fake critic
                {"params": list(m.parameters()), "scale": scale.get(id(m), 1.0)}
                for m in self.trainable(stage)
            ]
            self.opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99), weight_decay=0.01)
            self.opt_stage = stage
        assert self.opt is not None
        return self.opt

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors = {f"{p}.{k}": t for p, m in self.nets.modules().items() for k, t in m.state_dict().items()}
        tensors |= {f"probe.{k}": t for k, t in self.probe.state_dict().items()}
        tensors |= self.critics.state() | self.clip.state()
        tensors["rng.torch"] = self.generator.get_state()
        meta: dict[str, Any] = {
            "steps": self.counters.steps, "seconds": self.counters.seconds,
            "python_rng": ckpt.python_rng_state(self.rng), "latent_stats": self.latent_stats,
            "runs": self.runs, "opt_stage": self.opt_stage, "budgets": self.profile.budgets,
            "batch": None if self.batch is None else {
                "rng": self.batch.rng_state, "uses": self.batch.uses, "stage": self.batch.stage
            },
        }  # fmt: skip
        if self.opt is not None:
            opt_tensors, meta["opt"] = ckpt.optimizer_tensors(self.opt, self.profile.moments_dtype)
            tensors |= opt_tensors
        return tensors, meta

    def load(self, folder: Path, keep_budgets: bool = False) -> None:
        """Continue from a checkpoint; its stage budgets apply unless keep_budgets (a new schedule)."""
        tensors, meta = ckpt.load_checkpoint(folder)
        if meta.get("budgets") and not keep_budgets:
            budgets = self.profile.budgets | {k: (float(m), int(s)) for k, (m, s) in meta["budgets"].items()}
            self.profile = dataclasses.replace(self.profile, budgets=budgets)
        for prefix, module in self.nets.modules().items():
            own = {k[len(prefix) + 1 :]: t for k, t in tensors.items() if k.startswith(prefix + ".")}
            module.load_state_dict(own, strict=True)
        if "probe.head.weight" in tensors:  # absent from checkpoints before the "text" stage
            self.probe.load_state_dict({k[6:]: t for k, t in tensors.items() if k.startswith("probe.")})
        self.critics.load_state(tensors, self.nets.dit)
        self.clip.load_state(tensors, self.nets.dit)
        self.generator.set_state(tensors["rng.torch"])
        ckpt.set_python_rng_state(self.rng, meta["python_rng"])
        self.counters = Counters()  # stages added since the checkpoint start at 0
        self.counters.steps |= meta["steps"]
        self.counters.seconds |= meta["seconds"]
        self.runs = meta["runs"]
        if meta["latent_stats"] is not None:
            self.set_latent_stats(*meta["latent_stats"])
        self.opt, self.opt_stage = None, None
        if meta.get("opt_stage"):
            ckpt.load_optimizer(self.optimizer(meta["opt_stage"]), tensors, meta["opt"])
        self.batch = None
        if meta.get("batch"):  # draw the batch being reused again from the RNG state it came from
            now = self.rng.getstate()
            ckpt.set_python_rng_state(self.rng, meta["batch"]["rng"])
            self.batch = self.draw_batch(meta["batch"].get("stage", "dit"))
            self.batch.uses = meta["batch"]["uses"]
            self.rng.setstate(now)

    def save(self) -> None:
        ckpt.save_checkpoint(self.out, *self.state())

    def set_latent_stats(self, mean: list[float], std: list[float]) -> None:
        self.latent_stats = (mean, std)
        self.nets.vae.cfg = with_latent_stats(self.nets.vae.cfg, mean, std)

    # -- steps ------------------------------------------------------------------------------------
    def text_kv(self, captions: list[str]) -> list[tuple[Tensor, Tensor]]:
        ids, mask = self.tokenizer(captions)
        mask = mask.to(self.device)
        embeds = self.nets.t5.encode(ids.to(self.device), mask)
        self.last_text = (embeds, mask)  # for the prompt probe
        return self.nets.dit.encode_text(embeds)

    def draw_batch(self, stage: str) -> DrawnBatch:
        size = self.profile.text_batch if stage == "text" else self.profile.dit_batch  # text: openings
        with self.autocast():
            return draw_batch(self.rng, stage, self.nets.vae, size, self.device, self.profile.frame_size)

    def dit_blocks(self, stage: str) -> Blocks:
        """The current batch (drawn anew every `dit_reuse` steps; clip-taught dmd draws clips), text K/V."""
        b, p = self.batch, self.profile
        drawn_as = "clip" if stage == "dmd" and p.dmd_teacher == "clip" else stage
        reuse = p.text_reuse if stage == "text" else p.dit_reuse
        if b is None or b.uses >= reuse or batch_kind(b.stage) != batch_kind(drawn_as):
            start = time.monotonic()
            self.batch = self.draw_batch(drawn_as)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.batch.seconds = time.monotonic() - start
        d = self.batch
        d.uses += 1
        return Blocks(d.layout, d.chain, d.far, d.chain_starts, d.far_starts, self.text_kv(d.captions))

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.device.type == "cuda" and self.profile.autocast:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def dit_step(self, stage: str) -> dict[str, float]:
        blocks = self.dit_blocks(stage)
        assert self.batch is not None
        dit, own = self.nets.dit, stage in ("sf", "rollout") and self.rng.random() < OWN_CHAIN_PROBABILITY
        draw = (self.freqs, self.schedule, self.generator, self.rng)
        if stage == "dmd":
            contrast = None
            if self.profile.dmd_guidance:
                contrast = contrast_embeds(self.nets.t5, self.tokenizer, self.batch.captions, self.device)
            guided = (contrast, self.profile.dmd_guidance)
            if self.profile.dmd_teacher == "block":
                degrade = self.profile.dmd_degrade
                loss, parts = dmd_loss(dit, self.critics, blocks, self.last_text[0], *draw, *guided, degrade)
            else:
                loss, parts = clip_dmd_loss(dit, self.critics, blocks, self.last_text[0], *draw, *guided)
        elif stage == "clip":
            loss, parts = clip_flow_loss(self.clip.start(dit), blocks, self.last_text[0], *draw[:3])
        elif stage == "pan":
            loss, parts = pan_loss(dit, blocks, self.batch.captions, *draw)
        elif own:
            steps = ROLLOUT_STEPS if stage == "rollout" else SF_STEPS
            loss, parts = own_chain_loss(dit, blocks, *draw, steps)
        else:  # "camera": its context blocks move otherwise than the prompt; "degrade": soft context
            last = stage == "camera"
            degrade = {"degrade": SOFT_CONTEXT, "dit": self.profile.dit_degrade}.get(stage, NONE)
            loss, parts = teacher_forcing_loss(dit, blocks, *draw[:3], last, degrade)
        if stage not in ("dmd", "clip"):  # the probe keeps the encoder's words ("words"); these freeze it
            probe_loss, accuracy = self.probe.loss(*self.last_text, self.batch.captions)
            loss = loss + PROBE_WEIGHT * probe_loss
            parts = {**parts, **accuracy}
        opt = self.optimizer(stage)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for m in self.trainable(stage) for p in m.parameters()]
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        drawn = {"draw_s": self.batch.seconds} if self.batch.uses == 1 else {}
        return {"loss": loss.item(), **drawn, **parts}

    def step(self, stage: str) -> dict[str, Any]:
        with self.autocast():
            return self._step(stage)

    def _step(self, stage: str) -> dict[str, Any]:
        self.set_lr(stage)
        p, nets = self.profile, self.nets
        for module in nets.modules().values():
            module.train(module in self.trainable(stage)).requires_grad_(module in self.trainable(stage))
        opt, draw = self.optimizer(stage), (self.rng, self.generator)
        if stage == "vae":
            return vae_step(nets.vae, opt, *draw, p.vae_batch, self.device, p.frame_size)
        if stage == "pe":
            return pe_step(nets.pe, nets.vae, opt, *draw, p.pe_batch, self.device, p.frame_size)
        if stage == "words":
            return words_step(nets.t5, self.probe, self.tokenizer, opt, self.rng, p.words_batch, self.device)
        return self.dit_step(stage)

    def set_lr(self, stage: str) -> None:
        factor = lr_factor(self.counters.steps[stage], self.profile.warmup, self.progress(stage))
        for group in self.optimizer(stage).param_groups:
            group["lr"] = self.profile.lr[stage] * group.get("scale", 1.0) * factor

    def finish_stage(self, stage: str) -> None:
        if stage == "vae":
            p = self.profile
            stats = latent_stats(self.nets.vae, self.rng, 8, p.vae_batch, self.device, p.frame_size)
            self.set_latent_stats(*stats)
        self.opt, self.opt_stage = None, None

    # -- loop -------------------------------------------------------------------------------------
    def run(
        self, minutes: float, only: str | None, log: Callable[[str], None], max_steps: int | None = None
    ) -> bool:
        """Train until `minutes` of wall time pass (or `max_steps` steps) or every stage is done;
        True when complete."""
        deadline, taken = time.monotonic() + 60 * minutes, 0
        self.out.mkdir(parents=True, exist_ok=True)
        window: list[dict[str, Any]] = []
        while (stage := self.stage()) is not None and (only is None or stage == only):
            if time.monotonic() >= deadline or taken == max_steps:
                break
            taken += 1
            start = time.monotonic()
            parts = self.step(stage)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.counters.seconds[stage] += time.monotonic() - start
            self.counters.steps[stage] += 1
            window.append(parts)
            if self.counters.steps[stage] % self.profile.log_every == 0 or self.progress(stage) >= 1.0:
                row = {"stage": stage, "step": self.counters.steps[stage]}
                log(ckpt.append_losses(self.out, row | {"seconds": self.counters.seconds[stage]}, window))
                window = []
            if self.progress(stage) >= 1.0:
                self.finish_stage(stage)
                self.save()
        self.save()
        return self.stage() is None
