"""TAEHV tiny autoencoder for Wan2.1 latents (madebyollin/taehv `taehv.py`; `taew2_1`, `lighttaew2_1`).

`TAEHV` has the released checkpoint's keys (`encoder.N.*`, `decoder.N.*`) and keeps no inference
state. `decode_chunk(latents, state)` streams NTCHW latents to NTCHW frames in [0, 1] with an
explicit `TAEHVState` (each MemBlock's last input frame); streamed decoding equals `decode`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from dysink_cli.errors import ConfigError
from dysink_cli.model.config import WAN_LATENT_MEAN, WAN_LATENT_STD
from dysink_cli.model.vae_blocks import Upsample

Memory = Tensor | None  # a MemBlock's last input frame [N, C, H, W], None before its first frame


@dataclass(frozen=True)
class TAEHVConfig:
    """TAEHV for Wan2.1 (patch size 1). Flags are per stage; a time flag means stride 2, else 1.

    `latents_normalised`: True (taew2_1) takes the DiT's normalised latents as they are; False
    (lighttaew2_1) first un-normalises them, raw = latent * std + mean (and `encode` inverts it).
    """

    latent_channels: int = 16
    image_channels: int = 3
    decoder_widths: tuple[int, ...] = (256, 128, 64)
    encoder_width: int = 64
    blocks_per_stage: int = 3
    decoder_time_upscale: tuple[bool, ...] = (False, True, True)
    decoder_space_upscale: tuple[bool, ...] = (True, True, True)
    encoder_time_downscale: tuple[bool, ...] = (True, True, False)
    latents_normalised: bool = True
    latent_mean: tuple[float, ...] = WAN_LATENT_MEAN
    latent_std: tuple[float, ...] = WAN_LATENT_STD

    def __post_init__(self) -> None:
        flags = ("decoder_time_upscale", "decoder_space_upscale", "encoder_time_downscale")
        want = dict.fromkeys(flags, len(self.decoder_widths))
        want |= {"latent_mean": self.latent_channels, "latent_std": self.latent_channels}
        for name, n in want.items():
            if len(getattr(self, name)) != n:
                raise ConfigError(
                    f"TAEHV {name} has {len(getattr(self, name))} entries, not {n}",
                    "give one flag per decoder stage and one mean and std per latent channel",
                )

    @property
    def frames_to_trim(self) -> int:
        """Start-up frames dropped once per stream: raw frames per latent - 1 (3 for taew2_1, so T
        latents give 4T - 3 frames, as the Wan VAE)."""
        return 2 ** sum(self.decoder_time_upscale) - 1


TAEW2_1 = TAEHVConfig(latents_normalised=True)
LIGHTTAEW2_1 = TAEHVConfig(latents_normalised=False)


@dataclass(frozen=True, eq=False)
class TAEHVState:
    """Streaming memory of the decoder; immutable by convention (`decode_chunk` returns a new one).
    `memory`: per MemBlock, keyed by decoder index ("3", "4", ...), its last input frame [N, C, H, W]
    (None before the first chunk). `trimmed`: the start-up frames were dropped (first chunk done)."""

    memory: Mapping[str, Memory]
    trimmed: bool

    def to_tensors(self) -> dict[str, Tensor]:
        """Flat tensors for a checkpoint: `memory.<slot>` (0-element for None) and `trimmed` (bool)."""
        out = {f"memory.{k}": torch.empty(0) if v is None else v.contiguous() for k, v in self.memory.items()}
        out["trimmed"] = torch.tensor(self.trimmed)
        return out

    @classmethod
    def from_tensors(
        cls, tensors: Mapping[str, Tensor], *, device: torch.device | str | None = None
    ) -> TAEHVState:
        """Inverse of `to_tensors` (exact); memory is moved to `device` when given."""
        slots = {k: k.removeprefix("memory.") for k in tensors if k.startswith("memory.")}
        odd = sorted(set(tensors) - set(slots) - {"trimmed"})
        if odd or "trimmed" not in tensors:
            raise ValueError(f"not a TAEHV state: unexpected tensors {odd[:3]} or no 'trimmed'")
        memory = {s: None if tensors[k].numel() == 0 else tensors[k].to(device) for k, s in slots.items()}
        return cls(memory, bool(tensors["trimmed"]))


def _conv(n_in: int, n_out: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=bias)


def _is_channels_last(x: Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


class Clamp(nn.Module):
    """Soft clamp of the latents: tanh(x / 3) * 3."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x / 3) * 3


class MemBlock(nn.Module):
    """relu(conv(cat[x_t, x_{t-1}]) -> relu -> conv -> relu -> conv + x_t), one conv call for all t."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            _conv(2 * n, n), nn.ReLU(inplace=True), _conv(n, n), nn.ReLU(inplace=True), _conv(n, n)
        )

    def forward(self, x: Tensor, batch: int, past: Memory) -> tuple[Tensor, Tensor]:
        """x [N*T, C, H, W] (frames folded, time inner), past: the frame before x's first (None:
        zeros). Returns the output [N*T, C, H, W] and the new memory, x's last frame [N, C, H, W]."""
        nt, c, h, w = x.shape
        fmt = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
        both = torch.empty((nt, 2 * c, h, w), dtype=x.dtype, device=x.device, memory_format=fmt)
        x5, both5 = x.unflatten(0, (batch, -1)), both.unflatten(0, (batch, -1))  # (N, T, *, H, W)
        both5[:, :, :c] = x5
        both5[:, 1:, c:] = x5[:, :-1]  # past = x shifted one frame later
        if past is None:
            both5[:, 0, c:].zero_()
        else:
            both5[:, 0, c:] = past
        return self.conv(both).add_(x).relu_(), x5[:, -1].clone()


class TGrow(nn.Module):
    """1x1 conv n -> n*s, then each frame becomes s frames (channel group 0 is the earliest)."""

    def __init__(self, n: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n, n * stride, 1, bias=False)

    def fit_weight(self, weight: Tensor) -> Tensor:
        """A checkpoint weight with more output channels than n*s (time upscaling disabled at load)
        keeps its last n*s, the latest frames' (taehv.py `patch_tgrow_layers`)."""
        out = self.conv.out_channels
        if weight.ndim == 4 and weight.shape[0] > out and weight.shape[0] % self.conv.in_channels == 0:
            return weight[-out:]
        return weight

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        key = prefix + "conv.weight"
        if key in state_dict:  # state_dict is load_state_dict's own copy
            state_dict[key] = self.fit_weight(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, x: Tensor) -> Tensor:
        nt, c, h, w = x.shape
        s, y = self.stride, self.conv(x)  # (NT, s*C, H, W)
        if s == 1:
            return y
        if not _is_channels_last(y):
            return y.view(nt * s, c, h, w)
        # channels-last: move the groups out of the channel axis, channels stay innermost (one copy)
        y = y.permute(0, 2, 3, 1).unflatten(3, (s, c)).permute(0, 3, 1, 2, 4)  # (NT, s, H, W, C)
        return y.reshape(nt * s, h, w, c).permute(0, 3, 1, 2)


class TPool(nn.Module):
    """s consecutive frames concatenated along channels (earliest first), 1x1 conv n*s -> n."""

    def __init__(self, n: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n * stride, n, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        nt, c, h, w = x.shape
        return self.conv(x.reshape(nt // self.stride, self.stride * c, h, w))


def _decoder(cfg: TAEHVConfig) -> nn.Sequential:
    widths = cfg.decoder_widths
    layers: list[nn.Module] = [Clamp(), _conv(cfg.latent_channels, widths[0]), nn.ReLU(inplace=True)]
    for i, width in enumerate(widths):
        out = widths[min(i + 1, len(widths) - 1)]
        layers += [MemBlock(width) for _ in range(cfg.blocks_per_stage)]
        layers += [
            Upsample() if cfg.decoder_space_upscale[i] else nn.Identity(),  # nearest x2, one copy
            TGrow(width, 2 if cfg.decoder_time_upscale[i] else 1),
            _conv(width, out, bias=False),
        ]
    return nn.Sequential(*layers, nn.ReLU(inplace=True), _conv(widths[-1], cfg.image_channels))


def _encoder(cfg: TAEHVConfig) -> nn.Sequential:
    width = cfg.encoder_width
    layers: list[nn.Module] = [_conv(cfg.image_channels, width), nn.ReLU(inplace=True)]
    for down in cfg.encoder_time_downscale:
        layers += [TPool(width, 2 if down else 1), _conv(width, width, stride=2, bias=False)]
        layers += [MemBlock(width) for _ in range(cfg.blocks_per_stage)]
    return nn.Sequential(*layers, _conv(width, cfg.latent_channels))


def _run(stack: nn.Sequential, x: Tensor, memory: Mapping[str, Memory]) -> tuple[Tensor, dict[str, Memory]]:
    """x [N, T, C, H, W] through `stack` with frames folded into the batch; per-layer, not per-frame."""
    batch, new_memory = x.shape[0], dict(memory)
    y = x.flatten(0, 1)  # (N*T, C, H, W)
    for i, layer in enumerate(stack):
        if isinstance(layer, MemBlock):
            y, new_memory[str(i)] = layer(y, batch, memory.get(str(i)))
        else:
            y = layer(y)
    return y.unflatten(0, (batch, -1)), new_memory


class TAEHV(nn.Module):
    """TAEHV autoencoder (taehv.py `TAEHV`, parallel mode); inference only, no autograd."""

    def __init__(self, cfg: TAEHVConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = _encoder(cfg)
        self.decoder = _decoder(cfg)
        self.channels_last = False  # use_channels_last()
        self._slots = tuple(str(i) for i, layer in enumerate(self.decoder) if isinstance(layer, MemBlock))

    def fit_state_dict(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The checkpoint with each TGrow weight fitted (`TGrow.fit_weight`), for loaders that
        compare shapes before `load_state_dict` (which applies the same rule by itself)."""
        out = dict(state_dict)
        for i, layer in enumerate(self.decoder):
            key = f"decoder.{i}.conv.weight"
            if isinstance(layer, TGrow) and key in out:
                out[key] = layer.fit_weight(out[key])
        return out

    def use_channels_last(self) -> None:
        """Run the decoder on channels-last activations and weights (cuDNN's native layout); same math."""
        for module in self.decoder.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
        self.channels_last = True

    def decoder_state(self) -> TAEHVState:
        """A fresh stream: every MemBlock's memory empty, start-up frames not yet trimmed."""
        return TAEHVState(dict.fromkeys(self._slots), trimmed=False)

    @torch.no_grad()
    def decode_chunk(self, latents: Tensor, state: TAEHVState) -> tuple[Tensor, TAEHVState]:
        """Decode latents [N, T, 16, h, w] that follow `state` -> float32 frames [N, T', 3, s*h,
        s*w] in [0, 1] (T' = 4T - 3 on a fresh state, 4T after) and the state after them."""
        n, t, c, _, _ = latents.shape
        if c != (want := self.cfg.latent_channels) or t == 0:
            raise ValueError(f"latents {tuple(latents.shape)} are not [N, T>=1, {want}, h, w]")
        if set(state.memory) != set(self._slots):
            raise ValueError(f"TAEHV state slots {sorted(state.memory)} do not fit {self._slots}")
        dtype = self.decoder[1].weight.dtype
        x = latents.to(dtype)
        if not self.cfg.latents_normalised:
            mean, std = self._latent_stats(dtype, x.device)
            x = x * std + mean
        if self.channels_last:
            x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (n, t))
        y, memory = _run(self.decoder, x, state.memory)  # (N, 4T, 3, H, W)
        frames = y.to(torch.float32, memory_format=torch.contiguous_format).clamp_(0.0, 1.0)
        if not state.trimmed:
            frames = frames[:, self.cfg.frames_to_trim :]
        return frames, TAEHVState(memory, trimmed=True)

    def decode(self, latents: Tensor) -> Tensor:
        """Decode latents [N, T, 16, h, w] as one fresh stream -> [N, 4T - 3, 3, 8h, 8w] (taew2_1)."""
        return self.decode_chunk(latents, self.decoder_state())[0]

    @torch.no_grad()
    def encode(self, frames: Tensor) -> Tensor:
        """Frames [N, T, 3, H, W] in [0, 1] -> float32 latents [N, T / 4, 16, H / 8, W / 8] in the
        DiT's convention (taehv.py `encode_video`). T must be a multiple of 4 and H, W of 8: the
        reference pads T at the end with the last frame; here that is the caller's choice."""
        n, t, c, h, w = frames.shape
        stride = 2 ** sum(self.cfg.encoder_time_downscale)
        scale = 2 ** len(self.cfg.encoder_time_downscale)  # one stride-2 conv per stage
        if c != self.cfg.image_channels or t == 0 or t % stride or h % scale or w % scale:
            raise ValueError(
                f"frames {tuple(frames.shape)} are not [N, T, 3, H, W] with T a multiple of {stride} "
                f"and H, W multiples of {scale} (pad T at the end with the last frame, as taehv does)"
            )
        dtype = self.encoder[0].weight.dtype
        latents, _ = _run(self.encoder, frames.to(dtype), {})
        if not self.cfg.latents_normalised:
            mean, std = self._latent_stats(dtype, latents.device)
            latents = (latents - mean) / std
        return latents.float()

    def _latent_stats(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        """(mean, std), each [1, 1, 16, 1, 1] for NTCHW latents."""
        stats = torch.tensor((self.cfg.latent_mean, self.cfg.latent_std), dtype=torch.float32, device=device)
        mean, std = stats.to(dtype).view(2, 1, 1, -1, 1, 1)
        return mean, std
