"""Building blocks of the Wan2.1 causal video VAE (`WAN/wan/modules/vae.py`), with Wan's key names.

Layouts are `[B, C, T, H, W]`. Cached layers hold no state: they take their cache slot (the last
input frames of the previous call, or None) and return `(output, new slot)`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dysink_cli.model.vae_chains import EAGER, FOLDABLE, Chains, rms_norm

CACHE_T = 2  # input frames each causal conv remembers between calls (Wan CACHE_T)

# A conv's cached input frames [B, C, t<=CACHE_T, H, W]; None before its first call.
Slot = Tensor | None


class CausalConv3d(nn.Conv3d):
    """Wan CausalConv3d: all temporal padding in front; cached frames replace the leading zeros.

    The spatial zero padding is left to the convolution itself, so only the time axis is
    materialised (the reference pads all three axes with F.pad; same math, one copy less).
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        pad_t, pad_h, pad_w = self.padding  # type: ignore[misc]
        self.front_frames = 2 * pad_t
        self.padding = (0, pad_h, pad_w)

    def forward(self, x: Tensor, cache: Slot = None) -> Tensor:
        """x [B, C, T, H, W] after cache [B, C, t, H, W] (or zeros) -> [B, C', T', H', W']."""
        if self.front_frames == 0:
            return super().forward(x)
        return super().forward(torch.cat([padded_front(x, cache, self.front_frames), x], dim=2))

    def padded_forward(self, x: Tensor, biased: bool = True) -> Tensor:
        """The convolution of an input that already carries its front frames (without its bias
        when not `biased`: a later pass adds it, vae_chains)."""
        return self._conv_forward(x, self.weight, self.bias if biased else None)


def padded_front(x: Tensor, cache: Slot, frames: int) -> Tensor:
    """The `frames` frames a causal conv sees before x: the cache, zeros in front where it has fewer
    (all zeros without one), in x's layout. [B, C, frames, H, W]."""
    have = 0 if cache is None else cache.shape[2]
    if have >= frames:
        return cache  # type: ignore[return-value]
    b, c, _, h, w = x.shape
    zeros = x.new_zeros(b, c, frames - have, h, w).contiguous(memory_format=memory_format(x))
    return zeros if cache is None else torch.cat([zeros, cache], dim=2)


def memory_format(x: Tensor) -> torch.memory_format:
    """channels_last_3d for a video in that layout (WanVAE.use_channels_last), else contiguous."""
    if x.dim() == 5 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format


def _copy(frames: Tensor) -> Tensor:
    """A dense copy in the video's layout, so the slot does not pin all of x."""
    return frames.clone(memory_format=memory_format(frames))


def next_slot(x: Tensor, prev: Slot) -> Tensor:
    """Wan feat_cache rule: keep x's last CACHE_T frames; if x has fewer, prepend prev's last."""
    tail = x[:, :, -CACHE_T:]
    if tail.shape[2] < CACHE_T and prev is not None:
        return torch.cat([prev[:, :, -1:], tail], dim=2)
    return _copy(tail)  # a copy, so the slot does not pin all of x


def causal_step(conv: CausalConv3d, x: Tensor, prev: Slot) -> tuple[Tensor, Tensor]:
    """One cached call of a causal conv (Wan Encoder3d/Decoder3d/ResidualBlock cache branch)."""
    return conv(x, prev), next_slot(x, prev)


def norm_silu_step(
    chains: Chains,
    norm: RMS_norm,
    conv: CausalConv3d,
    x: Tensor,
    prev: Slot,
    bias_in: Tensor | None = None,
    bias_out: bool = True,
) -> tuple[Tensor, Tensor]:
    """`causal_step(conv, SiLU(norm(x)), prev)`, the same values and slot, with the norm chain
    written after the front frames (the cache, zeros where it has fewer) in one pass.

    `bias_in`: the bias x's convolution left out, added in the chain (vae_chains); `bias_out=False`:
    the conv's own bias is left to the caller's next pass. Both need a 3-frame causal conv."""
    if conv.front_frames != CACHE_T:
        if bias_in is not None or not bias_out:
            front = conv.front_frames
            raise ValueError(f"folding a bias needs a conv with {CACHE_T} front frames, not {front}")
        return causal_step(conv, chains.norm_silu(x, norm.gamma, norm.scale), prev)
    front = padded_front(x, prev, CACHE_T)
    if bias_in is None:
        padded = chains.norm_silu_after(front, x, norm.gamma, norm.scale)  # [B, C, 2 + T, H, W]
    else:
        padded = chains.norm_silu_after_biased(front, x, bias_in, norm.gamma, norm.scale)
    kept = 1 if prev is None and x.shape[2] == 1 else CACHE_T  # Wan's rule (next_slot)
    return conv.padded_forward(padded, biased=bias_out), _copy(padded[:, :, -kept:])


class RMS_norm(nn.Module):
    """Wan RMS_norm: x / max(||x||_2 over channels, 1e-12) * sqrt(C) * gamma; no eps, no bias.

    `fn` is vae_chains.rms_norm, or its torch.compile'd twin on CUDA (WanVAE.use_compiled_ops).
    """

    def __init__(self, dim: int, images: bool = True) -> None:
        super().__init__()
        shape = (dim, 1, 1) if images else (dim, 1, 1, 1)
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(shape))
        self.fn: Callable[[Tensor, Tensor, float], Tensor] = rms_norm

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x, self.gamma, self.scale)


class ResidualBlock(nn.Module):
    """Wan ResidualBlock: (RMS_norm, SiLU, causal conv 3) twice, + 1x1 shortcut if in != out."""

    SLOTS = ("residual.2", "residual.6")  # its cached convs, relative to the block

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            RMS_norm(in_dim, images=False),
            nn.SiLU(),
            CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMS_norm(out_dim, images=False),
            nn.SiLU(),
            nn.Dropout(0.0),
            CausalConv3d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()
        self.chains = EAGER  # or compiled (WanVAE.use_compiled_ops)

    def forward(self, x: Tensor, slots: tuple[Slot, Slot]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x [B, in, T, H, W] -> ([B, out, T, H, W], new slots of residual.2 and residual.6)."""
        ch, first_conv, second_conv = self.chains, self.residual[2], self.residual[6]
        fold = ch.fold_biases and x.dtype in FOLDABLE and None not in (first_conv.bias, second_conv.bias)
        h = self.shortcut(x)
        x, first = norm_silu_step(ch, self.residual[0], first_conv, x, slots[0], bias_out=not fold)
        bias_in = first_conv.bias if fold else None
        x, second = norm_silu_step(ch, self.residual[3], second_conv, x, slots[1], bias_in, bias_out=not fold)
        return (ch.residual_sum(x, second_conv.bias, h) if fold else x + h), (first, second)


class CausalHead(nn.Sequential):
    """Wan's head (RMS_norm, SiLU, causal conv 3), keys `head.0.gamma`, `head.2.weight`; walked as
    one cached layer so the norm chain and the cache share one pass."""

    SLOTS = ("2",)

    def __init__(self, in_dim: int, out_dim: int) -> None:
        conv = CausalConv3d(in_dim, out_dim, 3, padding=1)
        super().__init__(RMS_norm(in_dim, images=False), nn.SiLU(), conv)
        self.chains = EAGER  # or compiled (WanVAE.use_compiled_ops)

    def step(self, x: Tensor, prev: Slot) -> tuple[Tensor, Tensor]:
        """x [B, in, T, H, W] -> ([B, out, T, H, W], the conv's new slot)."""
        return norm_silu_step(self.chains, self[0], self[2], x, prev)


def interleave_halves(y: Tensor) -> Tensor:
    """[B, 2C, T, H, W] -> [B, C, 2T, H, W]: channel half j of time step tau becomes frame
    2 * tau + j (Wan upsample3d), written in one copy in y's layout."""
    b, c2, t, h, w = y.shape
    shape = (b, c2 // 2, 2 * t, h, w)
    out = torch.empty(shape, dtype=y.dtype, device=y.device, memory_format=memory_format(y))
    out.unflatten(2, (t, 2)).copy_(y.unflatten(1, (2, c2 // 2)).permute(0, 2, 3, 1, 4, 5))
    return out


def _per_frame(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Apply a 2-D module to every frame: [B, C, T, H, W] -> [B, C', T, H', W']."""
    b, c, t, h, w = x.shape
    y = fn(x.transpose(1, 2).reshape(b * t, c, h, w))  # [(B T), C, H, W]
    return y.unflatten(0, (b, t)).transpose(1, 2)


class AttentionBlock(nn.Module):
    """Wan AttentionBlock: per-frame single-head self-attention over H*W tokens, plus residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMS_norm(dim)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def _attend(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        qkv = self.to_qkv(self.norm(x)).reshape(n, 1, c * 3, h * w)
        q, k, v = qkv.permute(0, 1, 3, 2).contiguous().chunk(3, dim=-1)  # 3 x [N, 1, HW, C]
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.squeeze(1).permute(0, 2, 1).reshape(n, c, h, w))

    def forward(self, x: Tensor) -> Tensor:
        return _per_frame(self._attend, x) + x


def nearest_2x(x: Tensor) -> Tensor:
    """Nearest-exact x2 upsampling of [N, C, H, W] (pixel (i, j) from (i // 2, j // 2)) as one copy
    in x's layout: bit-identical to F.interpolate, several times faster than its NHWC kernel."""
    n, c, h, w = x.shape
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        nhwc = x.permute(0, 2, 3, 1)[:, :, None, :, None].expand(n, h, 2, w, 2, c)
        return nhwc.reshape(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)
    return x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)


class Upsample(nn.Upsample):
    """Wan Upsample: nearest-exact x2 (computed in float32 there; nearest copies values, so any
    dtype is upsampled directly, bit-identical)."""

    def __init__(self) -> None:
        super().__init__(scale_factor=(2.0, 2.0), mode="nearest-exact")

    def forward(self, x: Tensor) -> Tensor:
        return nearest_2x(x)


class Resample(nn.Module):
    """Wan Resample: 2-D up/down sampling per frame; the 3-D modes add a causal time conv.

    Modes: upsample2d, upsample3d (decoder, time x2), downsample2d, downsample3d (encoder, time /2).
    """

    MODES = ("upsample2d", "upsample3d", "downsample2d", "downsample3d")

    def __init__(self, dim: int, mode: str) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"Resample mode {mode!r} is not one of {self.MODES}")
        self.mode = mode
        if mode.startswith("upsample"):
            self.resample = nn.Sequential(
                Upsample(),
                nn.Conv2d(dim, dim // 2, 3, padding=1),
            )
        else:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=(2, 2)))
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1), padding=(0, 0, 0))

    def forward(self, x: Tensor) -> Tensor:
        """The 2-D modes: [B, C, T, H, W] -> [B, C', T, H', W']."""
        return _per_frame(self.resample, x)

    def upsample3d(self, x: Tensor, prev: Slot, first_chunk_seen: bool) -> tuple[Tensor, Slot, bool]:
        """Wan Resample 'upsample3d' -> (x [B, C/2, 2T, 2H, 2W], new slot, first_chunk_seen).

        First call: no time conv, 1 frame stays 1 (the reference's 'Rep' marker). Second call:
        zero front padding, and a zero frame goes in front of the cached frame. Later: a cached conv.
        """
        if not first_chunk_seen:
            return self(x), prev, True
        tail = x[:, :, -CACHE_T:]
        if tail.shape[2] < CACHE_T:
            front = torch.zeros_like(tail) if prev is None else prev[:, :, -1:]
            slot = torch.cat([front, tail], dim=2)
        else:
            slot = _copy(tail)
        y = self.time_conv(x, prev)  # [B, 2C, T, H, W]
        return self(interleave_halves(y)), slot, True

    def downsample3d(self, x: Tensor, prev: Slot) -> tuple[Tensor, Tensor]:
        """Wan Resample 'downsample3d' -> (x [B, C, T', H/2, W/2], new slot).

        First call: only cache (1 frame stays 1). Later: time conv (stride 2) on the last cached
        frame followed by x; the slot keeps x's last frame.
        """
        x = self(x)
        if prev is None:
            return x, _copy(x[:, :, -1:])
        slot = _copy(x[:, :, -1:])
        return self.time_conv(torch.cat([prev[:, :, -1:], x], dim=2)), slot
