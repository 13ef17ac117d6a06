"""Input modes (see :mod:`objvid.client.sources.base`). A new mode is a new module plus one entry in
:data:`MODES`; the first mode that accepts a config is used."""

from __future__ import annotations

from objvid.client.options import GenerateConfig
from objvid.client.sources.base import InputSource, LiftFn, SourceView
from objvid.client.sources.multi_view import MultiViewSource
from objvid.client.sources.single_image import SingleImageSource
from objvid.client.sources.video import VideoSource

MODES: tuple[type[InputSource], ...] = (VideoSource, MultiViewSource, SingleImageSource)


def mode_for(config: GenerateConfig) -> type[InputSource]:
    """The input mode for ``config``; ValueError when none accepts it."""
    for mode in MODES:
        if mode.accepts(config):
            return mode
    raise ValueError("no input given: use --image PATH, --input-video PATH or --views (several views)")


__all__ = [
    "MODES",
    "InputSource",
    "LiftFn",
    "MultiViewSource",
    "SingleImageSource",
    "SourceView",
    "VideoSource",
    "mode_for",
]
