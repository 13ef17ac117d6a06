"""What the SDK returns: :class:`LiftedView` and :class:`RenderedFrame`, and the decoding of streamed
render frames through the zero-copy wire decoder (``objvid.runtime.frames.decode_frame_bytes``: numpy
views of the received bytes, ~0.1 ms per 704x1280 frame against ~11 ms through the protobuf API,
docs/performance.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from objvid.runtime.frames import decode_frame_bytes


@dataclass
class LiftedView:
    """A lifted image. image (H, W, 3) uint8 (None: omitted, see ``ObjvidClient.lift``); depth (H, W)
    float32; mask (H, W) bool; K (3, 3) pixels."""

    image: np.ndarray | None
    depth: np.ndarray
    mask: np.ndarray
    K: np.ndarray
    model: str = ""
    w2c: np.ndarray | None = None  # LiftViews only: (4, 4) OpenCV world-to-camera, view 0 = identity


@dataclass
class RenderedFrame:
    """One rendered camera. rgb (N, H, W, 3) uint8 and mask (N, H, W) uint8 (1 = rendered) per buffer slot
    (newest first); depth (N, H, W) float32 and object_mask (N, H, W) int16 (-1 = none) when requested.

    Raw (non-PNG) outputs are read-only views of the received message: copy before writing into them.
    """

    index: int
    rgb: np.ndarray | None = None
    mask: np.ndarray | None = None
    depth: np.ndarray | None = None
    object_mask: np.ndarray | None = None
    # multi-view scenes: (N,) int32 source view of each slot in this frame (-1 = slot empty); else None
    slot_sources: np.ndarray | None = None
    # bytes of the message this frame arrived in (gRPC; 0 over shared memory)
    wire_bytes: int = 0


def frame_from_bytes(data: bytes, index: int, name: str = "RenderTrajectory") -> RenderedFrame:
    """A serialized ``RenderTrajectoryResponse`` / ``RenderResponse`` -> RenderedFrame numbered ``index``
    (ValueError naming the field when malformed)."""
    d = decode_frame_bytes(data, name)
    sources = d.get("slot_sources")
    return RenderedFrame(index, d.get("rgb"), d.get("mask"), d.get("depth"), d.get("object_mask"),
                         None if sources is None else np.array(sources, np.int32), len(data))  # fmt: skip
