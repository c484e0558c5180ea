"""The render: one video end to end (the wiring; read session.py top to bottom to learn the product).

Rooms: job (what is asked), session (the block loop), assemble (config -> loop settings, RoPE,
bank, generator, warm-up), networks (loading), decode (the streaming decoder's one owner),
workdir (the work folder and the checkpoint format), records (the per-block log line), events
(what the CLI renders), interrupt (stop signals), batch (many jobs).
Floors: render imports config, errors, timeline, engine, io and model; never cli.
Importing this package loads no torch: `render()` imports the session when it is called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dysink_cli.render.job import RenderJob, RenderStats

if TYPE_CHECKING:
    from dysink_cli.render.events import Event

__all__ = ["RenderJob", "RenderStats", "render"]


def render(job: RenderJob, on_event: Callable[[Event], None], **options: Any) -> RenderStats:
    """Render (or continue) one video; see render.session.render for the options."""
    from dysink_cli.render.session import render as run_session

    return run_session(job, on_event, **options)
