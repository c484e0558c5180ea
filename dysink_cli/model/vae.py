"""Wan2.1 causal video VAE (`WAN/wan/modules/vae.py` WanVAE_, `SF/utils/wan_wrapper.py`).

`WanVAE` has the Wan2.1_VAE.pth keys and keeps no inference state. Latents are normalised,
`[B, T, 16, h, w]`; frames are float32 `[B, T', 3, H, W]` in [-1, 1]. `decode_chunk(z, state)`
streams with an explicit `DecoderState`; chunked decoding equals decoding at once (the same math;
bit-identical for the same chunks, so a resumed render repeats the uninterrupted one exactly).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dysink_cli.errors import ConfigError
from dysink_cli.model.compiling import compiled
from dysink_cli.model.config import VAEConfig
from dysink_cli.model.vae_blocks import (
    AttentionBlock,
    CausalConv3d,
    CausalHead,
    Resample,
    ResidualBlock,
    RMS_norm,
    Slot,
    causal_step,
)
from dysink_cli.model.vae_chains import compiled_chains, rms_norm


@dataclass(frozen=True, eq=False)
class DecoderState:
    """Temporal cache of the streaming decoder: Wan's `_feat_map` as named slots.

    Immutable by convention: `decode_chunk` returns a new state and never edits the one given.
    `frames` has one slot per cached causal conv, keyed by its module path under `decoder.`
    (e.g. "upsamples.4.residual.2"): its last <= 2 input frames `[B, C, t, h, w]`, None before
    it cached any. `first_chunk_seen` has one flag per upsample3d time conv (e.g.
    "upsamples.3.time_conv"), True once the first chunk went through without the time conv (the
    reference's 'Rep' marker); such a layer has no frames until its next call.
    """

    frames: Mapping[str, Slot]
    first_chunk_seen: Mapping[str, bool]

    @property
    def is_fresh(self) -> bool:
        """True when nothing was decoded yet (the next latent yields 1 frame, not 4)."""
        return all(v is None for v in self.frames.values())

    def to_tensors(self) -> dict[str, Tensor]:
        """Flat tensors for a checkpoint: `frames.<slot>` (a 0-element tensor for None) and
        `first_chunk_seen.<slot>` (a bool scalar). Tensors are shared, not copied (channels-last
        slots excepted: safetensors wants contiguous ones)."""
        out = {f"frames.{k}": torch.empty(0) if v is None else v.contiguous() for k, v in self.frames.items()}
        for k, seen in self.first_chunk_seen.items():
            out[f"first_chunk_seen.{k}"] = torch.tensor(seen)
        return out

    @classmethod
    def from_tensors(
        cls, tensors: Mapping[str, Tensor], *, device: torch.device | str | None = None
    ) -> DecoderState:
        """Inverse of `to_tensors` (exact); frames are moved to `device` when given."""
        frames: dict[str, Slot] = {}
        seen: dict[str, bool] = {}
        for key, value in tensors.items():
            group, _, slot = key.partition(".")
            if group == "frames":
                frames[slot] = None if value.numel() == 0 else value.to(device)
            elif group == "first_chunk_seen":
                seen[slot] = bool(value)
            else:
                raise ValueError(f"unexpected decoder-state tensor {key!r}")
        return cls(frames, seen)


class _CausalStack(nn.Module):
    """Encoder3d/Decoder3d walk: children run in registration order, Sequentials one level deep;
    each cached layer gets its slots by module path and hands back new ones."""

    def layers(self) -> list[tuple[str, nn.Module]]:
        out: list[tuple[str, nn.Module]] = []
        for name, child in self.named_children():
            if type(child) is nn.Sequential:
                out += [(f"{name}.{i}", layer) for i, layer in child.named_children()]
            else:
                out.append((name, child))
        return out

    def slot_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(every cached causal conv, the upsample3d time convs), as module paths."""
        convs: list[str] = []
        firsts: list[str] = []
        for name, layer in self.layers():
            if isinstance(layer, CausalConv3d):
                convs.append(name)
            elif isinstance(layer, ResidualBlock | CausalHead):
                convs += [f"{name}.{slot}" for slot in layer.SLOTS]
            elif isinstance(layer, Resample) and layer.mode.endswith("3d"):
                convs.append(f"{name}.time_conv")
                if layer.mode == "upsample3d":
                    firsts.append(f"{name}.time_conv")
        return tuple(convs), tuple(firsts)

    def forward(
        self, x: Tensor, frames: Mapping[str, Slot], first_chunk_seen: Mapping[str, bool]
    ) -> tuple[Tensor, dict[str, Slot], dict[str, bool]]:
        """One chunk [B, C, T, H, W] through the stack; returns new slot dicts, inputs untouched."""
        new_frames, seen = dict(frames), dict(first_chunk_seen)
        for name, layer in self.layers():
            if isinstance(layer, CausalConv3d):
                x, new_frames[name] = causal_step(layer, x, frames[name])
            elif isinstance(layer, ResidualBlock):
                a, b = (f"{name}.{slot}" for slot in layer.SLOTS)
                x, (new_frames[a], new_frames[b]) = layer(x, (frames[a], frames[b]))
            elif isinstance(layer, CausalHead):
                x, new_frames[f"{name}.2"] = layer.step(x, frames[f"{name}.2"])
            elif isinstance(layer, Resample) and layer.mode == "upsample3d":
                k = f"{name}.time_conv"
                x, new_frames[k], seen[k] = layer.upsample3d(x, frames[k], first_chunk_seen[k])
            elif isinstance(layer, Resample) and layer.mode == "downsample3d":
                k = f"{name}.time_conv"
                x, new_frames[k] = layer.downsample3d(x, frames[k])
            else:
                x = layer(x)
        return x, new_frames, seen


def _middle(dim: int) -> nn.Sequential:
    return nn.Sequential(ResidualBlock(dim, dim), AttentionBlock(dim), ResidualBlock(dim, dim))


class Encoder3d(_CausalStack):
    """Wan Encoder3d: conv1, residual levels with 2-D/3-D downsampling, middle, head."""

    def __init__(
        self, dim: int, z_dim: int, dim_mult: Sequence[int], num_res_blocks: int,
        temperal_downsample: Sequence[bool],
    ) -> None:  # fmt: skip
        super().__init__()
        dims = [dim * u for u in (1, *dim_mult)]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(itertools.pairwise(dims)):
            for _ in range(num_res_blocks):
                layers.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if i != len(dim_mult) - 1:
                mode = "downsample3d" if temperal_downsample[i] else "downsample2d"
                layers.append(Resample(out_dim, mode))
        self.downsamples = nn.Sequential(*layers)
        self.middle = _middle(dims[-1])
        self.head = CausalHead(dims[-1], z_dim)


class Decoder3d(_CausalStack):
    """Wan Decoder3d: conv1, middle, residual levels with 3-D/2-D upsampling, head to RGB."""

    def __init__(
        self, dim: int, z_dim: int, dim_mult: Sequence[int], num_res_blocks: int,
        temperal_upsample: Sequence[bool],
    ) -> None:  # fmt: skip
        super().__init__()
        dims = [dim * u for u in (dim_mult[-1], *reversed(dim_mult))]
        self.conv1 = CausalConv3d(z_dim, dims[0], 3, padding=1)
        self.middle = _middle(dims[0])
        layers: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(itertools.pairwise(dims)):
            if i > 0:
                in_dim //= 2  # the previous level's Resample halved the channels
            for _ in range(num_res_blocks + 1):
                layers.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if i != len(dim_mult) - 1:
                mode = "upsample3d" if temperal_upsample[i] else "upsample2d"
                layers.append(Resample(out_dim, mode))
        self.upsamples = nn.Sequential(*layers)
        self.head = CausalHead(dims[-1], 3)


def _check_config(cfg: VAEConfig) -> None:
    levels = len(cfg.dim_mult)
    if len(cfg.temperal_downsample) != levels - 1:
        raise ConfigError(
            f"VAE temperal_downsample has {len(cfg.temperal_downsample)} entries, "
            f"dim_mult has {levels} levels",
            "give one temporal flag per downsampling (levels - 1)",
        )
    if len(cfg.latent_mean) != cfg.z_dim or len(cfg.latent_std) != cfg.z_dim:
        raise ConfigError(
            f"VAE latent_mean/latent_std have {len(cfg.latent_mean)}/{len(cfg.latent_std)} "
            f"entries for z_dim {cfg.z_dim}",
            "give one mean and one std per latent channel",
        )
    spatial, temporal = 2 ** (levels - 1), 2 ** sum(cfg.temperal_downsample)
    if (cfg.spatial_stride, cfg.temporal_stride) != (spatial, temporal):
        raise ConfigError(
            f"VAE strides {cfg.spatial_stride}/{cfg.temporal_stride} do not match the "
            f"architecture's {spatial}/{temporal}",
            "set spatial_stride and temporal_stride from dim_mult and temperal_downsample",
        )


class WanVAE(nn.Module):
    """Wan2.1 VAE (WanVAE_ + the wrapper's normalisation); inference only, no autograd."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        _check_config(cfg)
        self.cfg = cfg
        self.encoder = Encoder3d(
            cfg.dim, cfg.z_dim * 2, cfg.dim_mult, cfg.num_res_blocks, cfg.temperal_downsample
        )
        self.conv1 = CausalConv3d(cfg.z_dim * 2, cfg.z_dim * 2, 1)
        self.conv2 = CausalConv3d(cfg.z_dim, cfg.z_dim, 1)
        self.channels_last = False  # use_channels_last()
        self.decoder = Decoder3d(
            cfg.dim, cfg.z_dim, cfg.dim_mult, cfg.num_res_blocks, cfg.temperal_downsample[::-1]
        )
        self._decoder_slots = self.decoder.slot_names()

    def use_compiled_ops(self, fold_biases: bool = False) -> None:
        """Fuse the RMS_norm (+ SiLU) chains with torch.compile (CUDA); the same frames, fewer passes.
        `fold_biases`: the residual blocks' conv biases added inside the chains (vae_chains): 5 %
        faster on an H100, but 1 bf16 step off there (bench/RESULTS.md), so not the default."""
        norm = compiled(rms_norm, dynamic=True)
        chains = compiled_chains(fold_biases)
        for module in self.modules():
            if isinstance(module, RMS_norm):
                module.fn = norm
            elif isinstance(module, ResidualBlock | CausalHead):
                module.chains = chains

    def use_channels_last(self) -> None:
        """Run the decoder on channels-last activations and weights (CUDA: cuDNN's convolutions
        take that layout natively, so no layout conversion around each of them); same math."""
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last_3d)
            elif isinstance(module, nn.Conv2d):
                module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
        self.channels_last = True

    def decoder_state(self) -> DecoderState:
        """A fresh decoder state: every slot empty, no first chunk seen."""
        convs, firsts = self._decoder_slots
        return DecoderState(dict.fromkeys(convs), dict.fromkeys(firsts, False))

    @torch.no_grad()
    def decode_chunk(self, z: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """Decode normalised latents z [B, T, 16, h, w] that follow `state` (Wan decode, streamed).

        De-normalises as z / (1/std) + mean, applies conv2, then decodes the latents in one call
        (a fresh state's first latent alone).
        Returns float32 frames [B, T', 3, 8h, 8w] clamped to [-1, 1] (T' = 4T - 3 on a fresh
        state, 4T after) and the state after the last latent.
        """
        self._check_state(state)
        b, t, c, h, w = z.shape
        if c != self.cfg.z_dim or t == 0:
            raise ValueError(f"latents {tuple(z.shape)} are not [B, T>=1, {self.cfg.z_dim}, h, w]")
        dtype = self.conv2.weight.dtype
        mean, inv_std = self._latent_stats(dtype, z.device)
        z = z.to(dtype).transpose(1, 2) / inv_std + mean  # [B, 16, T, h, w]
        stride, scale = self.cfg.temporal_stride, self.cfg.spatial_stride
        n_frames = stride * t - (stride - 1) * state.is_fresh
        out = z.new_empty(b, n_frames, 3, h * scale, w * scale, dtype=torch.float32)
        frames, seen, done = state.frames, state.first_chunk_seen, 0
        if self.channels_last:  # slots restored from a checkpoint come back contiguous
            cl = torch.channels_last_3d
            frames = {k: None if v is None else v.contiguous(memory_format=cl) for k, v in frames.items()}
        # A fresh state's first latent goes alone (no time upsampling: 1 frame); the rest in one
        # call, which equals the reference's latent-by-latent loop (causal convs with a 2-frame
        # cache; the first time conv after the lone latent pads with zeros either way).
        chunks = [z[:, :, :1], z[:, :, 1:]] if state.is_fresh and t > 1 else [z]
        for chunk in chunks:
            if self.channels_last:
                chunk = chunk.contiguous(memory_format=torch.channels_last_3d)
            x = self.conv2(chunk)  # [B, 16, T, h, w]
            x, frames, seen = self.decoder(x, frames, seen)  # [B, 3, 1 or 4T, H, W]
            out[:, done : done + x.shape[2]] = x.transpose(1, 2)
            done += x.shape[2]
        assert done == n_frames, (done, n_frames)
        return out.clamp_(-1.0, 1.0), DecoderState(frames, seen)

    def decode(self, z: Tensor) -> Tensor:
        """Decode z [B, T, 16, h, w] alone, from a fresh state -> [B, 4T - 3, 3, 8h, 8w]."""
        return self.decode_chunk(z, self.decoder_state())[0]

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        """Wan encode: video [B, 3, T, H, W] in [-1, 1] -> normalised float32 mu [B, T', 16, h, w].

        Chunks of 1, 4, 4, ... frames share a cache local to this call; T' = 1 + (T - 1) // 4,
        leftover frames are ignored (as in the reference). Latent = (mu - mean) * (1/std).
        """
        _, c, t, h, w = video.shape
        scale, stride = self.cfg.spatial_stride, self.cfg.temporal_stride
        if c != 3 or t == 0 or h % scale or w % scale:
            raise ValueError(
                f"video {tuple(video.shape)} is not [B, 3, T>=1, H, W] with H and W multiples of {scale}"
            )
        dtype = self.conv1.weight.dtype
        x = video.to(dtype)
        convs, _ = self.encoder.slot_names()
        frames: dict[str, Slot] = dict.fromkeys(convs)
        outs = []
        for i in range(1 + (t - 1) // stride):
            chunk = x[:, :, :1] if i == 0 else x[:, :, 1 + stride * (i - 1) : 1 + stride * i]
            out, frames, _ = self.encoder(chunk, frames, {})
            outs.append(out)
        mu = self.conv1(torch.cat(outs, dim=2))[:, : self.cfg.z_dim]  # [B, 16, T', h, w]
        mean, inv_std = self._latent_stats(dtype, video.device)
        return ((mu - mean) * inv_std).float().transpose(1, 2).contiguous()

    def _latent_stats(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        """(mean, 1/std), each [1, 16, 1, 1, 1]; float32 constants cast first, as the wrapper."""
        mean = torch.tensor(self.cfg.latent_mean, dtype=torch.float32, device=device).to(dtype)
        std = torch.tensor(self.cfg.latent_std, dtype=torch.float32, device=device).to(dtype)
        return mean.view(1, -1, 1, 1, 1), (1.0 / std).view(1, -1, 1, 1, 1)

    def _check_state(self, state: DecoderState) -> None:
        convs, firsts = self._decoder_slots
        for what, got, want in (
            ("frames", set(state.frames), set(convs)),
            ("first_chunk_seen", set(state.first_chunk_seen), set(firsts)),
        ):
            if got != want:
                raise ValueError(
                    f"decoder state does not fit this VAE ({what}): missing "
                    f"{sorted(want - got)[:3]}, unexpected {sorted(got - want)[:3]}"
                )
