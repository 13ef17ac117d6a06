"""Persistence and export of a ``Scene``: state dicts (snapshots, bit-exact restore) and binary PLY.

``state_dict(scene)`` holds CPU tensors and plain Python values only (``torch.save``-able, loadable with
``weights_only=True``); ``restore(scene, state)`` fills a freshly made scene from one. ``ply_bytes`` writes
the binary little-endian PLY of ``Scene.export`` / ``export_object`` (float32 x, y, z; uchar r, g, b).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .render import Cloud, ObjectLayer
from .slots import Slot, source_P

if TYPE_CHECKING:
    from .scene import Scene

STATE_VERSION = 1


def state_dict(scene: Scene) -> dict[str, Any]:
    """Everything needed to restore ``scene`` bit-exactly (see the module docstring)."""
    obj = scene._obj
    return {
        "version": STATE_VERSION,
        "filter_points_threshold": scene._filter,
        "max_depth": scene._max_depth,
        "next_id": scene._next_id,
        "depth_clamped_fraction": scene.depth_clamped_fraction,
        "multiview": None if scene._multiview is None else dict(scene._multiview),
        "slots": [
            {
                "xyz": s.cloud.xyz.cpu().clone(),
                "packed": s.cloud.packed.cpu().clone(),
                "grid": list(s.grid) if s.grid else None,
                "K": None if s.K is None else torch.from_numpy(s.K.copy()),
                "w2c": None if s.w2c is None else torch.from_numpy(s.w2c.copy()),
            }
            for s in scene._slots
        ],
        "objects": {
            "xyz": obj.cloud.xyz.cpu().clone(),
            "packed": obj.cloud.packed.cpu().clone(),
            "oid": obj.oid.cpu().clone(),
            "spans": [[o, s, n, torch.from_numpy(t.copy())] for o, s, n, t in obj.spans],
            "normals": None if obj.normals is None else obj.normals.cpu().clone(),
        },
    }


def check_state(state: Any) -> None:
    """ValueError unless ``state`` is a ``state_dict`` of this version."""
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise ValueError(f"state: not a Scene state (version {STATE_VERSION} expected)")


def restore(scene: Scene, state: dict[str, Any]) -> Scene:
    """Fill ``scene`` (new, made with the state's threshold and max_depth) from a checked ``state``."""
    dev = scene._device
    scene._slots = []
    for s in state["slots"]:
        K = None if s["K"] is None else s["K"].numpy().astype(np.float64)
        w2c = None if s["w2c"] is None else s["w2c"].numpy().astype(np.float64)
        src = source_P(K, w2c) if K is not None and w2c is not None else None
        cloud = Cloud(s["xyz"].to(dev, torch.float32).contiguous(), s["packed"].to(dev, torch.int32), src)
        scene._slots.append(Slot(cloud, tuple(s["grid"]) if s["grid"] else None, K, w2c))
    if not scene._slots:
        raise ValueError("state: no scene slots")
    o = state["objects"]
    scene._obj = ObjectLayer(
        Cloud(o["xyz"].to(dev, torch.float32).contiguous(), o["packed"].to(dev, torch.int32)),
        o["oid"].to(dev, torch.int16),
        [(int(a), int(s), int(n), t.numpy().astype(np.float64)) for a, s, n, t in o["spans"]],
        None if o.get("normals") is None else o["normals"].to(dev, torch.float32).contiguous(),
    )
    scene._next_id = int(state["next_id"])
    scene.depth_clamped_fraction = float(state.get("depth_clamped_fraction", 0.0))
    mv = state.get("multiview")
    scene._multiview = None if mv is None else dict(mv)
    return scene


def ply_bytes(pts: np.ndarray, col: np.ndarray) -> tuple[bytes, int]:
    """(N, 3) points and (N, 3) uint8 colours -> (binary little-endian PLY (float32 xyz, uchar rgb), N)."""
    pts = np.asarray(pts).astype("<f4")
    col = np.asarray(col).astype(np.uint8)
    rec = np.empty(
        len(pts),
        dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")],
    )
    rec["x"], rec["y"], rec["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    rec["red"], rec["green"], rec["blue"] = col[:, 0], col[:, 1], col[:, 2]
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment objvid cache export\n"
        f"element vertex {len(pts)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    return header.encode("ascii") + rec.tobytes(), len(pts)
