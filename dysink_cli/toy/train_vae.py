"""VAE stage: reconstruction of world clips through the real causal encoder and decoder.

`encode_posterior` and `decode_frames` are WanVAE.encode / decode_chunk with autograd: the same
layers, chunking and cache rules (the decoder's first latent alone, then the rest in one call,
which equals block-by-block streaming; tests check it). Loss: L1 + L2 + an edge term + a small KL.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import Tensor

from dysink_cli.model.vae import WanVAE
from dysink_cli.toy.data import vae_clips

KL_WEIGHT = 1e-5
EDGE_WEIGHT = 0.5
DETAIL_WEIGHT = 8.0  # extra weight of pixels that differ from their 7x7 neighbourhood (landmarks)
DETAIL_SCALE = 0.1  # a neighbourhood difference of this much gets the full extra weight
MAX_PREROLL_LATENTS = 6  # the causal caches are trained from their state after 0..6 latents


def encode_posterior(vae: WanVAE, video: Tensor, preroll_latents: int = 0) -> tuple[Tensor, Tensor]:
    """video (B, 3, T, H, W) in [-1, 1] -> raw (un-normalised) mu, logvar (B, 16, T', h, w).

    The first `preroll_latents` chunks run without grad: the later latents are those of a stream
    already running (the cache state every later block of a render sees).
    """
    stride = vae.cfg.temporal_stride
    convs, _ = vae.encoder.slot_names()
    frames = dict.fromkeys(convs)
    outs = []
    for i in range(1 + (video.shape[2] - 1) // stride):
        chunk = video[:, :, :1] if i == 0 else video[:, :, 1 + stride * (i - 1) : 1 + stride * i]
        with torch.set_grad_enabled(torch.is_grad_enabled() and i >= preroll_latents):
            out, frames, _ = vae.encoder(chunk, frames, {})
        outs.append(out)
    mu, logvar = vae.conv1(torch.cat(outs, dim=2)).chunk(2, dim=1)
    return mu, logvar.clamp(-30.0, 20.0)


def decode_frames(vae: WanVAE, z: Tensor, preroll_latents: int = 0) -> Tensor:
    """Raw latents z (B, 16, T, h, w) from a fresh decoder state -> frames (B, 3, 4T - 3, H, W),
    without the frames of the first `preroll_latents` latents (decoded without grad)."""
    state = vae.decoder_state()
    frames, seen = dict(state.frames), dict(state.first_chunk_seen)
    outs = []
    cuts = sorted({0, 1, max(1, preroll_latents), z.shape[2]})
    for start, end in zip(cuts, cuts[1:], strict=False):
        with torch.set_grad_enabled(torch.is_grad_enabled() and start >= preroll_latents):
            x, frames, seen = vae.decoder(vae.conv2(z[:, :, start:end]), frames, seen)
        if start >= preroll_latents:
            outs.append(x)
    return torch.cat(outs, dim=2)


def edge_loss(pred: Tensor, target: Tensor) -> Tensor:
    """L1 between horizontal and vertical finite differences (sharp landmark outlines)."""
    dx = (pred.diff(dim=-1) - target.diff(dim=-1)).abs().mean()
    dy = (pred.diff(dim=-2) - target.diff(dim=-2)).abs().mean()
    return dx + dy


def detail_weights(video: Tensor) -> Tensor:
    """(B, 1, T, H, W) weights, mean 1: 1 + DETAIL_WEIGHT where a pixel stands out of its 7x7
    neighbourhood (landmarks and outlines are a few per cent of the pixels and are learnt last)."""
    frames = video.transpose(1, 2).flatten(0, 1)  # (B T, 3, H, W)
    local = F.avg_pool2d(frames, 7, stride=1, padding=3, count_include_pad=False)
    detail = (frames - local).abs().mean(dim=1, keepdim=True)
    w = 1 + DETAIL_WEIGHT * (detail / DETAIL_SCALE).clamp(max=1.0)
    w = w.unflatten(0, (video.shape[0], video.shape[2])).transpose(1, 2)
    return w / w.mean()


def vae_loss(
    vae: WanVAE, video: Tensor, generator: torch.Generator, preroll_latents: int = 0
) -> tuple[Tensor, dict[str, float]]:
    """Reconstruction of the frames after `preroll_latents` latents (whose caches run first)."""
    mu, logvar = encode_posterior(vae, video, preroll_latents)
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
    z = mu + torch.exp(0.5 * logvar) * eps
    recon = decode_frames(vae, z, preroll_latents).float()
    if preroll_latents:
        video = video[:, :, 4 * preroll_latents - 3 :]
        mu, logvar = mu[:, :, preroll_latents:], logvar[:, :, preroll_latents:]
    w = detail_weights(video)
    l1 = (w * (recon - video).abs()).mean()
    l2 = (w * (recon - video).square()).mean()
    edge = edge_loss(recon, video)
    kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).mean()
    loss = l1 + l2 + EDGE_WEIGHT * edge + KL_WEIGHT * kl
    psnr = -10 * torch.log10((recon.detach() - video).square().mean() / 4)  # frames span 2
    return loss, {"l1": l1.item(), "l2": l2.item(), "edge": edge.item(), "kl": kl.item(), "psnr": psnr.item()}


def vae_step(
    vae: WanVAE,
    opt: torch.optim.Optimizer,
    rng: random.Random,
    generator: torch.Generator,
    batch: tuple[int, int, int],
    device: torch.device,
    size: tuple[int, int],
) -> dict[str, float]:
    """One optimiser step on fresh clips: batch = (worlds, clips per world, latent frames trained),
    after a random pre-roll of 0..MAX_PREROLL_LATENTS latents."""
    worlds, per_world, latents = batch
    preroll = rng.randrange(MAX_PREROLL_LATENTS + 1)
    video = vae_clips(rng, worlds, per_world, 4 * (preroll + latents) - 3, device, size)
    loss, parts = vae_loss(vae, video, generator, preroll)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
    opt.step()
    return {"loss": loss.item(), **parts}


@torch.no_grad()
def latent_stats(
    vae: WanVAE, rng: random.Random, rounds: int, batch: tuple[int, int, int], device: torch.device,
    size: tuple[int, int],
) -> tuple[list[float], list[float]]:  # fmt: skip
    """Per-channel mean and std of the encoder's raw posterior means over world clips."""
    worlds, per_world, latents = batch
    total = sq = count = None
    for _ in range(rounds):
        frames = 4 * (latents + MAX_PREROLL_LATENTS) - 3
        mu, _ = encode_posterior(vae, vae_clips(rng, worlds, per_world, frames, device, size))
        flat = mu.transpose(0, 1).flatten(1).double()  # (16, N)
        total = flat.sum(1) if total is None else total + flat.sum(1)
        sq = flat.square().sum(1) if sq is None else sq + flat.square().sum(1)
        count = flat.shape[1] if count is None else count + flat.shape[1]
    assert total is not None and sq is not None and count is not None
    mean = total / count
    std = (sq / count - mean.square()).clamp_min(1e-8).sqrt()
    return mean.tolist(), std.tolist()


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR (dB) of frames in [-1, 1]."""
    return float(-10 * torch.log10(F.mse_loss(a.clamp(-1, 1), b) / 4))
