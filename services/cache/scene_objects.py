"""Rigid objects of a ``Scene``: add, move, remove and read back object clouds (``SceneObjects``).

All objects of a scene live in one ``render.ObjectLayer`` on the scene's device: points in object-local
coordinates (xyz (3,M) float32, packed colours (M,) int32), the object id of every point (M,) int16, one
span (id, start, count, transform (4,4) float64) per object in insertion order, and optional object-local
normals (3,M) float32 that turn on back-face culling (``objvid.cache.normals``; zero = never culled, None
= no object is culled). A transform is rigid + uniform scale (object -> world). Ids are 0, 1, 2, ... and
never reused.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from objvid.runtime.errors import NotFound

from . import validate as V
from .normals import check as check_normals
from .normals import estimate as estimate_normals
from .render import Cloud, ObjectLayer
from .render_common import MAX_OBJECT_ID, unpack_colors
from .slots import make_cloud


class ObjectNotFoundError(NotFound, ValueError):
    """Unknown object id (a ``ValueError`` naming ``oid``; ``objvid.runtime.errors.NotFound``: NOT_FOUND)."""


def empty_layer(device: torch.device) -> ObjectLayer:
    """An ``ObjectLayer`` with no objects on ``device``."""
    return ObjectLayer(
        Cloud(
            torch.zeros(3, 0, dtype=torch.float32, device=device),
            torch.zeros(0, dtype=torch.int32, device=device),
        ),
        torch.zeros(0, dtype=torch.int16, device=device),
    )


class SceneObjects:
    """The object half of ``Scene`` (a mixin): works on ``self._obj`` (``ObjectLayer``), ``self._next_id``
    (next object id) and ``self._device``, which ``Scene`` sets up."""

    _device: torch.device
    _obj: ObjectLayer
    _next_id: int

    def add_object(self, points: Any, colors: Any, transform: Any = None, normals: Any = None) -> int:
        """Add an object cloud (object-local points (M,3), colours (M,3) uint8) with a 4x4 transform
        (rotation, translation, uniform scale; default identity). ``normals`` (M,3) object-local (zero rows
        allowed) turn on back-face culling of this object's points (``objvid.cache.normals``; None = no
        culling; ``"estimate"`` = Open3D estimate). Returns a new id (0, 1, 2, ...)."""
        pts = V.points(points, "points")
        col = V.colors(colors, "colors", n=len(pts))
        if isinstance(normals, str):
            if normals != "estimate":
                raise ValueError(f"normals: expected an (M,3) array, None or 'estimate', got {normals!r}")
            normals = estimate_normals(pts)
        nrm = None if normals is None else check_normals(normals, len(pts))
        tr = np.eye(4) if transform is None else V.rigid(transform, "transform", allow_scale=True)
        if self._next_id > MAX_OBJECT_ID:
            raise ValueError(f"oid: object id space exhausted ({MAX_OBJECT_ID + 1} objects added)")
        oid = self._next_id
        self._next_id += 1
        new = make_cloud(pts, col, None, self._device)
        start = self._obj.n
        o = self._obj
        layer_n = o.normals
        if nrm is not None or layer_n is not None:
            old = layer_n if layer_n is not None else torch.zeros(3, o.n, device=self._device)
            add = torch.zeros(3, len(pts)) if nrm is None else torch.from_numpy(np.ascontiguousarray(nrm.T))
            layer_n = torch.cat([old, add.to(self._device, torch.float32)], 1).contiguous()
        self._obj = ObjectLayer(
            Cloud(torch.cat([o.cloud.xyz, new.xyz], 1), torch.cat([o.cloud.packed, new.packed])),
            torch.cat([o.oid, torch.full((len(pts),), oid, dtype=torch.int16, device=self._device)]),
            o.spans + [(oid, start, len(pts), tr)],
            layer_n,
        )
        return oid

    def _span(self, oid: Any) -> int:
        """Index of object ``oid`` in the layer's spans; ``ObjectNotFoundError`` naming ``oid``."""
        for i, span in enumerate(self._obj.spans):
            if span[0] == oid:
                return i
        raise ObjectNotFoundError(f"oid: unknown object id {oid!r}")

    def set_transform(self, oid: int, transform: Any) -> None:
        """Replace an object's 4x4 transform (rigid + uniform scale)."""
        i = self._span(oid)
        tr = V.rigid(transform, "transform", allow_scale=True)
        o, s, n, _ = self._obj.spans[i]
        self._obj.spans[i] = (o, s, n, tr)

    def get_transform(self, oid: int) -> np.ndarray:
        """(4,4) float64 copy of an object's transform."""
        return self._obj.spans[self._span(oid)][3].copy()

    def remove_object(self, oid: int) -> None:
        """Drop an object; its id is never reused."""
        i = self._span(oid)
        o = self._obj
        _, start, count, _ = o.spans[i]
        keep = torch.ones(o.n, dtype=torch.bool, device=self._device)
        keep[start : start + count] = False
        spans = [(a, s - count if s > start else s, n, t) for j, (a, s, n, t) in enumerate(o.spans) if j != i]
        normals = None if o.normals is None else o.normals[:, keep].contiguous()
        if normals is not None and not normals.any():
            normals = None
        self._obj = ObjectLayer(
            Cloud(o.cloud.xyz[:, keep].contiguous(), o.cloud.packed[keep]), o.oid[keep], spans, normals
        )

    def object_points(self, oid: int, world: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """An object's points ((M,3) float32, world frame unless ``world=False``) and colours (M,3) uint8."""
        _, start, count, tr = self._obj.spans[self._span(oid)]
        pts = self._obj.cloud.xyz[:, start : start + count].T.cpu().numpy().astype(np.float64)
        if world:
            pts = pts @ tr[:3, :3].T + tr[:3, 3]
        rgb, _ = unpack_colors(self._obj.cloud.packed[start : start + count].cpu())
        return pts.astype(np.float32), rgb.numpy()

    @property
    def object_ids(self) -> list[int]:
        return [s[0] for s in self._obj.spans]

    @property
    def num_objects(self) -> int:
        return len(self._obj.spans)

    @property
    def num_object_points(self) -> int:
        return self._obj.n
