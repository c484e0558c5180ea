"""StreamingDecoder: the one owner of a render's streaming decoder state.

Each block's latents are decoded once with the persistent state (equal to decoding the whole
sequence) by the output decoder: the Wan VAE, or TAEHV (a tiny decoder, `model.decoder = "taehv"`).
The writer and DySink's "shared" descriptor both read those frames. The reference's "standalone"
descriptor decodes the block alone, with the Wan VAE (default) or with TAEHV
(`dysink.descriptor_decoder = "taehv"`). state() / load_state() checkpoint it.
Imports engine.memory.descriptors and model.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from dysink_cli.engine.memory.descriptors import describe_block, describe_frames, frames_for_descriptor
from dysink_cli.model.pe_core import PECoreVision
from dysink_cli.model.taehv import TAEHV, TAEHVState
from dysink_cli.model.vae import DecoderState, WanVAE


class StreamingDecoder:
    """Latents -> frames in [-1, 1] with a carried state; and a block's DySink descriptor."""

    def __init__(
        self,
        vae: WanVAE,
        pe: PECoreVision | None = None,
        descriptors: str = "standalone",
        taehv: TAEHV | None = None,
        output: str = "wan",
        descriptor_decoder: str = "wan",
    ) -> None:
        if "taehv" in (output, descriptor_decoder) and taehv is None:
            raise ValueError("the TAEHV decoder was asked for but not loaded")
        self.vae, self.pe, self.taehv = vae, pe, taehv
        self.descriptors, self.descriptor_decoder = descriptors, descriptor_decoder
        self.output: WanVAE | TAEHV = taehv if output == "taehv" and taehv is not None else vae
        self._state: Any = self.output.decoder_state()
        self._last: tuple[Tensor, Tensor] | None = None  # (latents, their frames) of the last decode

    def frames(self, latents: Tensor) -> Tensor:
        """Frames [B, T', 3, H, W] in [-1, 1] of the block `latents` (decoded once, then reused)."""
        if self._last is not None and self._last[0] is latents:
            return self._last[1]
        frames, self._state = self.output.decode_chunk(latents, self._state)
        if self.output is self.taehv:
            frames = frames * 2.0 - 1.0  # TAEHV decodes to [0, 1]
        self._last = (latents, frames)
        return frames

    def descriptor(self, latents: Tensor) -> Tensor:
        """DySink's descriptor of a block: from the streamed output frames ("shared"), or from the
        block decoded alone ("standalone") by the Wan VAE (the reference) or by TAEHV."""
        assert self.pe is not None, "descriptors need PE-Core"
        if self.descriptors == "shared":
            return describe_frames(frames_for_descriptor(self.frames(latents))[0], self.pe)
        if self.descriptor_decoder == "taehv":
            assert self.taehv is not None
            return describe_frames(self.taehv.decode(latents)[0], self.pe)
        return describe_block(latents, self.vae, self.pe)

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return self._state.to_tensors(), {"decoder": "taehv" if self.output is self.taehv else "wan"}

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        device = next(self.output.parameters()).device
        kind = TAEHVState if self.output is self.taehv else DecoderState
        self._state = kind.from_tensors(tensors, device=device)
        self._last = None
