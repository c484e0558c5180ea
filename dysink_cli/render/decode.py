"""StreamingDecoder: the one owner of the streaming VAE decoder state of a render.

Each block's latents are decoded once with the persistent state (equal to decoding the whole
sequence); the writer and DySink's "shared" descriptor both read those frames. The reference's
"standalone" descriptor decodes the block alone instead. state() / load_state() checkpoint it.
Imports engine.memory.descriptors and model.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from dysink_cli.engine.memory.descriptors import describe_block, describe_frames, frames_for_descriptor
from dysink_cli.model.pe_core import PECoreVision
from dysink_cli.model.vae import DecoderState, WanVAE


class StreamingDecoder:
    """Latents -> frames in [-1, 1] with a carried state; and a block's DySink descriptor."""

    def __init__(self, vae: WanVAE, pe: PECoreVision | None = None, descriptors: str = "standalone") -> None:
        self.vae, self.pe, self.descriptors = vae, pe, descriptors
        self._state = vae.decoder_state()
        self._last: tuple[Tensor, Tensor] | None = None  # (latents, their frames) of the last decode

    def frames(self, latents: Tensor) -> Tensor:
        """Frames [B, T', 3, H, W] of the block `latents` (decoded once, then reused)."""
        if self._last is not None and self._last[0] is latents:
            return self._last[1]
        frames, self._state = self.vae.decode_chunk(latents, self._state)
        self._last = (latents, frames)
        return frames

    def descriptor(self, latents: Tensor) -> Tensor:
        """DySink's descriptor of a block: from the streamed frames ("shared") or from the block
        decoded alone ("standalone", the reference)."""
        assert self.pe is not None, "descriptors need PE-Core"
        if self.descriptors == "shared":
            return describe_frames(frames_for_descriptor(self.frames(latents))[0], self.pe)
        return describe_block(latents, self.vae, self.pe)

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return self._state.to_tensors(), {}

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        device = next(self.vae.parameters()).device
        self._state = DecoderState.from_tensors(tensors, device=device)
        self._last = None
