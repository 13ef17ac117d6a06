"""The input-mode seam: an :class:`InputSource` turns the user's input files into the views a scene is
built from.

A mode is one module: a subclass that says which configs it accepts, reads and checks its files
(stage ``inputs``, no network) and produces its views (stage ``depth`` when it needs the depth service).
The rest of the pipeline (cameras, scene, placement, render, diffusion, encoding) sees only
:class:`SourceView` objects. Register a new mode in ``objvid.client.sources.MODES``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from objvid.client.options import GenerateConfig


@dataclass
class SourceView:
    """One view of the scene at the working size. image (H, W, 3) uint8; depth (H, W) float32 z-depth in
    scene units (invalid = 0); mask (H, W) bool (True = valid depth); K (3, 3) pixels; w2c (4, 4) OpenCV
    world-to-camera (the first view is the world frame: identity)."""

    image: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    K: np.ndarray
    w2c: np.ndarray = field(default_factory=lambda: np.eye(4))


#: ``lift(images, width, height)`` -> views with depth, mask and K (the depth service, through the SDK).
LiftFn = Callable[[Sequence[np.ndarray], int, int], list]


class InputSource(ABC):
    """An input mode. Construct with the config and working size: reads and checks the input files
    (ValueError naming the option and the problem)."""

    #: Short name, recorded in the manifest (``inputs.mode``).
    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def accepts(cls, config: GenerateConfig) -> bool:
        """True when ``config`` asks for this mode."""

    @classmethod
    @abstractmethod
    def needs_lift(cls, config: GenerateConfig) -> bool:
        """True when this mode needs the depth service for its input (decided without reading files)."""

    @abstractmethod
    def __init__(self, config: GenerateConfig, width: int, height: int): ...

    @abstractmethod
    def records(self) -> dict:
        """The manifest's ``inputs`` entries for this mode's files (``manifest.file_record`` each)."""

    @abstractmethod
    def views(self, lift: LiftFn) -> tuple[list[SourceView], dict]:
        """-> (views at the working size, the manifest's ``depth`` record). ``lift`` (and ``lift.posed``,
        the geometry model's posed lifting, LiftViews) is called only when :meth:`needs_lift` said so."""

    # Optional hooks (multi-view modes); the defaults are the single-view behaviour.

    #: The view whose camera starts the trajectory and whose image is the first frame.
    seed_view: int = 0
    #: Long videos add each chunk's last frame to the scene (GEN3C); multi-view scenes are never updated.
    updates_scene: ClassVar[bool] = True

    @classmethod
    def default_size(cls, config: GenerateConfig) -> tuple[int, int] | None:
        """(width, height) the input sets when the options do not (None: GEN3C's 1280 x 704)."""
        return None

    @classmethod
    def default_frames(cls, config: GenerateConfig) -> int | None:
        """The frame count the input sets when the options do not (None: 121)."""
        return None

    def cameras(self, preset_w2cs, frames: int):
        """(Ks, w2cs, manifest record) of the video without a camera path; None: the preset from view 0."""
        return None

    def manifest_record(self) -> dict | None:
        """The manifest's ``views`` record (multi-view modes)."""
        return None

    def scene_message(self):
        """The CreateScene source when it is not the single view (``objvid.v1.RgbdViews``); None otherwise."""
        return None
