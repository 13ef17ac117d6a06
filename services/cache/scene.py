"""``Scene``: a GEN3C-style 3D cache (1-2 buffer slots of scene points) plus rigid objects, resident on
one device, rendered for any batch of cameras.

Units: the scene's world units are those of the depth map (GEN3C: MoGe units); cameras are OpenCV.
Not thread-safe for concurrent mutation; rendering holds no global state, so distinct scenes can be
used from distinct threads (the service serialises device work itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from objvid.runtime.errors import NotFound

from . import validate as V
from .normals import check as check_normals
from .normals import estimate as estimate_normals
from .render import Cloud, ObjectLayer, check_options, pick_backend
from .render import render as _render
from .render_common import (
    MAX_OBJECT_ID,
    RenderOutput,
    pack_colors,
    projection_matrices,
    unpack_colors,
)
from .units import clamped_fraction

MAX_DEPTH = 100.0  # GEN3C clamps cache depth to [0, 100] (sky / invalid end up at 100)
FRAME_BUFFER_MAX = 2  # GEN3C's buffer slots
BOUNDARY_RATIO = 0.05  # GEN3C's foreground-masking edge test (reliable_depth_mask default ratio)
STATE_VERSION = 1


class ObjectNotFoundError(NotFound, ValueError):
    """Unknown object id (a ``ValueError`` naming ``oid``; ``objvid.runtime.errors.NotFound``: NOT_FOUND)."""


@dataclass
class _Slot:
    cloud: Cloud
    grid: tuple[int, int] | None = None  # (H, W) when the points are one per pixel of a view
    K: np.ndarray | None = None  # (3,3) float64 of that view
    w2c: np.ndarray | None = None  # (4,4) float64 of that view
    mesh: Any = None  # foreground.BoundaryMesh, built on first use


def clean_depth(depth: np.ndarray, max_depth: float = MAX_DEPTH) -> np.ndarray:
    """GEN3C's clean-up: NaN and +inf -> max_depth, -inf -> 0, clamp to [0, max_depth]. float32."""
    d = np.nan_to_num(depth.astype(np.float32), nan=max_depth, posinf=max_depth, neginf=0.0)
    return np.clip(d, 0.0, max_depth).astype(np.float32)


def reliable_depth_mask(
    depth: np.ndarray, threshold: float, window: int = 5, eps: float = 1e-6
) -> np.ndarray:
    """GEN3C's ``reliable_depth_mask_range``: (max - min) / (mean + eps) over a window x window box
    (zero-padded mean, stride 1) is below ``threshold`` and depth > 0. (H,W) float32 -> (H,W) bool."""
    d = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))[None, None]
    pad = window // 2
    local_max = F.max_pool2d(d, window, stride=1, padding=pad)
    local_min = -F.max_pool2d(-d, window, stride=1, padding=pad)
    local_mean = F.avg_pool2d(d, window, stride=1, padding=pad)
    ratio = (local_max - local_min) / (local_mean + eps)
    return ((ratio < threshold) & (d > 0))[0, 0].numpy()


def unproject(depth: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """(H,W) z-depth at integer pixel centres -> (H*W,3) float32 world points (computed in float64)."""
    H, W = depth.shape
    v, u = np.meshgrid(np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64), indexing="ij")
    rays = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3) @ np.linalg.inv(K).T
    cam = rays * depth.reshape(-1, 1).astype(np.float64)
    R, t = w2c[:3, :3], w2c[:3, 3]
    return ((cam - t) @ R).astype(np.float32)  # R^T (x - t), row-vector form


class Scene:
    """Scene points in 1-2 buffer slots (slot 0 newest, the seed view last) plus objects.

    Build with ``Scene.from_rgbd`` / ``Scene.from_points`` / ``Scene.from_state_dict``.
    """

    def __init__(
        self,
        device: str | torch.device = "cpu",
        *,
        _slots=None,
        filter_points_threshold=None,
        max_depth: float = MAX_DEPTH,
    ):
        self._device = torch.device(device)
        if self._device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device: {device!r} requested but CUDA is not available")
        self._slots: list[_Slot] = _slots or []
        self._filter = filter_points_threshold
        self._max_depth = float(max_depth)
        self._obj = ObjectLayer(
            Cloud(
                torch.zeros(3, 0, dtype=torch.float32, device=self._device),
                torch.zeros(0, dtype=torch.int32, device=self._device),
            ),
            torch.zeros(0, dtype=torch.int16, device=self._device),
        )
        self._next_id = 0
        self.depth_clamped_fraction = 0.0  # of the latest RGB-D view (objvid.cache.units)
        # Multi-view scenes (``from_views``): slots are the N source views in source order, selected per
        # frame by ``multiview``; None for GEN3C's single-view buffer.
        self._multiview: dict | None = None

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_rgbd(
        cls,
        image: Any,
        depth: Any,
        K: Any,
        w2c: Any = None,
        mask: Any = None,
        device: str | torch.device = "cpu",
        filter_points_threshold: float | None = None,
        max_depth: float = MAX_DEPTH,
    ) -> Scene:
        """One point per pixel, as GEN3C's cache.

        image (H,W,3) uint8; depth (H,W) float z-depth (NaN/+inf -> max_depth, clamped to [0, max_depth]);
        K (3,3) pixels; w2c (4,4) rigid (default identity: world = input camera); mask (H,W) bool, False =
        pixel gets no point (like GEN3C's ``input_mask``); ``filter_points_threshold`` (e.g. 0.05) drops
        unreliable depth-edge pixels (5x5 (max-min)/mean >= threshold). Pixels with depth 0 get no point.
        """
        scene = cls(
            device,
            filter_points_threshold=_check_threshold(filter_points_threshold),
            max_depth=V.positive(max_depth, "max_depth"),
        )
        scene._slots = [scene._lift(image, depth, K, w2c, mask)]
        return scene

    @classmethod
    def from_views(
        cls,
        images: Any,
        depths: Any,
        Ks: Any,
        w2cs: Any,
        masks: Any = None,
        seed_view: int = 0,
        frame_buffer_max: int = 2,
        full_threshold: float = 0.9,
        device: str | torch.device = "cpu",
        filter_points_threshold: float | None = None,
        max_depth: float = MAX_DEPTH,
    ) -> Scene:
        """N posed RGB-D source views (upstream's multi-view cache; see ``multiview``).

        images (N,H,W,3) uint8 or a list; depths (N,H,W); Ks (N,3,3); w2cs (N,4,4) rigid, one world frame;
        masks (N,H,W) bool or None. Views may differ in size. ``seed_view`` gives the seed camera
        (trajectories, placement). Each view is lifted as in ``from_rgbd``; errors name ``views[i]``.
        """
        from .multiview import check_views

        n = check_views(images, depths, Ks, w2cs, masks, seed_view, frame_buffer_max, full_threshold)
        scene = cls(
            device,
            filter_points_threshold=_check_threshold(filter_points_threshold),
            max_depth=V.positive(max_depth, "max_depth"),
        )
        for i in range(n):
            try:
                scene._slots.append(
                    scene._lift(images[i], depths[i], Ks[i], w2cs[i], None if masks is None else masks[i])
                )
            except ValueError as err:
                raise ValueError(f"views[{i}].{err}") from None
        scene._multiview = {
            "frame_buffer_max": int(frame_buffer_max),
            "seed_view": int(seed_view),
            "full_threshold": float(full_threshold),
        }
        return scene

    @classmethod
    def from_points(cls, points: Any, colors: Any, device: str | torch.device = "cpu") -> Scene:
        """Arbitrary world-space cloud: points (N,3) float32, colors (N,3) uint8 (or floats in [0,1])."""
        pts = V.points(points, "points")
        col = V.colors(colors, "colors", n=len(pts))
        scene = cls(device)
        scene._slots = [_Slot(scene._cloud(pts, col, None))]
        return scene

    def _cloud(
        self,
        pts: np.ndarray,
        col: np.ndarray,
        valid: np.ndarray | None,
        source_P: np.ndarray | None = None,
        boundary: np.ndarray | None = None,
    ) -> Cloud:
        xyz = torch.from_numpy(np.ascontiguousarray(pts.T)).to(self._device)
        packed = torch.from_numpy(pack_colors(col, valid, boundary)).to(self._device)
        return Cloud(xyz, packed, source_P)

    def _lift(self, image, depth, K, w2c, mask) -> _Slot:
        img = V.image(image, "image")
        H, W = img.shape[:2]
        raw = V.depth(depth, (H, W), "depth")
        d = clean_depth(raw, self._max_depth)
        Kd = V.intrinsics(K, "K")
        w2cd = np.eye(4) if w2c is None else V.rigid(w2c, "w2c")
        valid = d > 0
        user_mask = None if mask is None else V.mask(mask, (H, W), "mask")
        if user_mask is not None:
            valid &= user_mask
        self.depth_clamped_fraction = clamped_fraction(raw, self._max_depth, user_mask)
        if self._filter is not None:
            valid &= reliable_depth_mask(d, self._filter)
        if not valid.any():
            raise ValueError("depth: empty scene (no pixel has a valid depth > 0 inside the mask)")
        pts = unproject(d, Kd, w2cd)
        boundary = ~reliable_depth_mask(d, BOUNDARY_RATIO)  # upstream's foreground-masking edges
        cloud = self._cloud(
            pts, img.reshape(-1, 3), valid.reshape(-1), _source_P(Kd, w2cd), boundary.reshape(-1)
        )
        return _Slot(cloud, (H, W), Kd, w2cd)

    def add_view(self, image: Any, depth: Any, K: Any, w2c: Any, mask: Any = None) -> None:
        """Add a view as the newest buffer slot (GEN3C's policy, at most 2 slots): with one slot the view
        is prepended, with two it replaces slot 0; the seed view stays in the last slot. The depth must
        already be aligned to the cache (no alignment here). Same clean-up and filter as ``from_rgbd``."""
        if w2c is None:
            raise ValueError("w2c: required for add_view (camera of the new view)")
        if self._multiview is not None:
            raise ValueError("scene: a multi-view scene is not updated (its source views stay as given)")
        slot = self._lift(image, depth, K, w2c, mask)
        if len(self._slots) < FRAME_BUFFER_MAX:
            self._slots.insert(0, slot)
        else:
            self._slots[0] = slot

    # ---------------------------------------------------------------- objects
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
        new = self._cloud(pts, col, None)
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

    # ---------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def object_ids(self) -> list[int]:
        return [s[0] for s in self._obj.spans]

    @property
    def num_objects(self) -> int:
        return len(self._obj.spans)

    @property
    def num_points(self) -> int:
        """Scene points stored over all slots (grid slots store H*W, masked-out pixels included)."""
        return sum(s.cloud.n for s in self._slots)

    @property
    def num_object_points(self) -> int:
        return self._obj.n

    @property
    def max_depth(self) -> float:
        """Depth clamp of RGB-D slots (GEN3C: 100); points at it are sky / invalid depth."""
        return self._max_depth

    @property
    def num_slots(self) -> int:
        return len(self._slots)

    @property
    def is_multiview(self) -> bool:
        """True for scenes built by ``from_views`` (slots = source views, selected per frame)."""
        return self._multiview is not None

    @property
    def frame_buffer_max(self) -> int:
        """Buffer slots rendered per frame (multi-view: min(sources, frame_buffer_max))."""
        return self._multiview["frame_buffer_max"] if self._multiview else len(self._slots)

    @property
    def full_threshold(self) -> float:
        return self._multiview["full_threshold"] if self._multiview else 0.9

    @property
    def seed_slot(self) -> int:
        """Slot index of the seed view: the chosen source (multi-view) or the last slot."""
        return self._multiview["seed_view"] if self._multiview else len(self._slots) - 1

    @property
    def support_slots(self) -> list[int]:
        """Slots whose points support object placement: every source view (multi-view) or the seed."""
        return list(range(len(self._slots))) if self._multiview else [len(self._slots) - 1]

    @property
    def seed_camera(self) -> tuple[np.ndarray, np.ndarray, int, int] | None:
        """(K (3,3), w2c (4,4), height, width) of the seed view, or None for point scenes."""
        s = self._slots[self.seed_slot]
        if s.grid is None:
            return None
        return s.K.copy(), s.w2c.copy(), s.grid[0], s.grid[1]

    def device_bytes(self) -> int:
        """Bytes held on the device by scene slots and objects."""
        ts = [t for s in self._slots for t in (s.cloud.xyz, s.cloud.packed)]
        ts += [self._obj.cloud.xyz, self._obj.cloud.packed, self._obj.oid]
        ts += [] if self._obj.normals is None else [self._obj.normals]
        return int(sum(t.numel() * t.element_size() for t in ts))

    def slot_points(self, slot: int = -1, valid_only: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """World points (P,3) float32 and colours (P,3) uint8 of one buffer slot (default: the seed)."""
        s = self._slots[slot]
        pts = s.cloud.xyz.T.cpu().numpy()
        rgb, valid = unpack_colors(s.cloud.packed.cpu())
        rgb, valid = rgb.numpy(), valid.numpy()
        if valid_only:
            return np.ascontiguousarray(pts[valid]), rgb[valid]
        return np.ascontiguousarray(pts), rgb

    def slot_valid(self, slot: int = -1) -> np.ndarray:
        """(P,) bool validity of a slot's points (grid slots: reshape to (H, W))."""
        return unpack_colors(self._slots[slot].cloud.packed.cpu())[1].numpy()

    def __repr__(self) -> str:
        return (
            f"Scene(device={self._device}, slots={self.num_slots}, points={self.num_points}, "
            f"objects={self.num_objects}, object_points={self.num_object_points})"
        )

    # ---------------------------------------------------------------- rendering
    def _slot_indices(self, slots: Any) -> list[int]:
        """Validated slot indices (0 = newest); ValueError naming ``slots``."""
        idx = [int(i) for i in np.atleast_1d(np.asarray(slots))]
        if not idx or any(not 0 <= i < len(self._slots) for i in idx):
            raise ValueError(f"slots: expected indices in [0, {len(self._slots)}), got {idx}")
        return idx

    def render(
        self,
        w2cs: Any,
        Ks: Any,
        height: int,
        width: int,
        mode: str = "fused",
        splat: str = "gen3c",
        footprint: int = 2,
        object_radius_px: float = 0.75,
        outputs: Any = None,
        backend: str | None = None,
        slots: Any = None,
        foreground_masking: bool = False,
    ) -> RenderOutput:
        """Render T cameras for every buffer slot (or the slot indices in ``slots``, 0 = newest).

        w2cs (T,4,4) or (4,4), Ks (T,3,3) or (3,3) (one K is shared), numpy or torch. ``mode``: fused |
        full | scene | objects; ``splat`` (scene layer in fused/scene): gen3c | zbuffer; ``footprint`` k
        of scene points in z-buffers (2 = GEN3C's bilinear neighbours); ``object_radius_px`` disc radius
        of object points (0.75 px; 0 = nearest pixel only); ``outputs`` subset of rgb, mask, depth,
        object_mask, rgb_float (default the first four); ``backend`` None (Triton on CUDA, else torch) |
        triton | torch | reference. ``foreground_masking``: GEN3C's option (``objvid.cache.foreground``): cut
        scene pixels where a mesh over the slot's depth edges is nearer than the splat (gen3c splat, RGB-D
        slots, not the reference backend). Returns ``RenderOutput`` with (T,N,H,W[,3]) tensors on the
        scene device (N = 1 for mode objects).
        """
        H, W = V.image_size(height, width)
        w2c_np = V.rigid(w2cs, "w2cs", batch=True)
        K_np = V.intrinsics(Ks, "Ks", batch=True)
        if len(K_np) == 1 and len(w2c_np) > 1:
            K_np = np.repeat(K_np, len(w2c_np), axis=0)
        if len(K_np) != len(w2c_np):
            raise ValueError(f"Ks: {len(K_np)} intrinsics for {len(w2c_np)} cameras (w2cs)")
        outs = check_options(mode, splat, footprint, object_radius_px, outputs)
        be = pick_backend(backend, self._device)
        ids = None if slots is None else self._slot_indices(slots)
        hook = None
        if foreground_masking:
            from .foreground import render_hook

            hook = render_hook(self._slots, ids, w2c_np, K_np, H, W, mode, splat, be)
        return _render(
            [s.cloud for s in self._slots],
            self._obj,
            w2c_np,
            K_np,
            H,
            W,
            mode,
            splat,
            int(footprint),
            float(object_radius_px),
            outs,
            be,
            self._device,
            slot_ids=ids,
            scene_hook=hook,
        )

    def place_object(
        self,
        oid: int,
        anchor_px: Any = None,
        height: float | None = None,
        scale: float | None = None,
        **kwargs,
    ) -> np.ndarray:
        """Stand an object on the support plane under ``anchor_px`` (see ``placement.place_object``).
        Applies and returns the (4,4) float64 transform."""
        from .placement import place_object

        return place_object(self, oid, anchor_px=anchor_px, height=height, scale=scale, **kwargs)

    # ---------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to restore the scene bit-exactly, as CPU tensors and plain Python values
        (``torch.save``-able, loadable with ``weights_only=True``)."""
        return {
            "version": STATE_VERSION,
            "filter_points_threshold": self._filter,
            "max_depth": self._max_depth,
            "next_id": self._next_id,
            "depth_clamped_fraction": self.depth_clamped_fraction,
            "multiview": None if self._multiview is None else dict(self._multiview),
            "slots": [
                {
                    "xyz": s.cloud.xyz.cpu().clone(),
                    "packed": s.cloud.packed.cpu().clone(),
                    "grid": list(s.grid) if s.grid else None,
                    "K": None if s.K is None else torch.from_numpy(s.K.copy()),
                    "w2c": None if s.w2c is None else torch.from_numpy(s.w2c.copy()),
                }
                for s in self._slots
            ],
            "objects": {
                "xyz": self._obj.cloud.xyz.cpu().clone(),
                "packed": self._obj.cloud.packed.cpu().clone(),
                "oid": self._obj.oid.cpu().clone(),
                "spans": [[o, s, n, torch.from_numpy(t.copy())] for o, s, n, t in self._obj.spans],
                "normals": None if self._obj.normals is None else self._obj.normals.cpu().clone(),
            },
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: str | torch.device = "cpu") -> Scene:
        """Inverse of ``state_dict`` onto ``device``."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(f"state: not a Scene state (version {STATE_VERSION} expected)")
        scene = cls(
            device, filter_points_threshold=state["filter_points_threshold"], max_depth=state["max_depth"]
        )
        dev = scene._device
        scene._slots = []
        for s in state["slots"]:
            K = None if s["K"] is None else s["K"].numpy().astype(np.float64)
            w2c = None if s["w2c"] is None else s["w2c"].numpy().astype(np.float64)
            src = _source_P(K, w2c) if K is not None and w2c is not None else None
            cloud = Cloud(s["xyz"].to(dev, torch.float32).contiguous(), s["packed"].to(dev, torch.int32), src)
            scene._slots.append(_Slot(cloud, tuple(s["grid"]) if s["grid"] else None, K, w2c))
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

    def update_from_view(self, image, depth, K, w2c, *, mask=None, align: bool = True):
        """Align a lifted view to this scene and add it as the newest slot (``objvid.cache.update``);
        returns the ``AlignmentReport`` (None without ``align``)."""
        from .update import update_from_view

        return update_from_view(self, image, depth, K, w2c, mask=mask, align=align)

    def export_ply(self, include_objects: bool = True) -> bytes:
        """Binary little-endian PLY of the valid scene points of all slots (+ objects in world frame):
        float32 x, y, z and uchar red, green, blue."""
        return self.export(include_objects)[0]

    def export(self, include_objects: bool = True) -> tuple[bytes, int]:
        """(``export_ply`` bytes, number of points in it)."""
        parts = [self.slot_points(i) for i in range(self.num_slots)]
        if include_objects:
            parts += [self.object_points(oid) for oid in self.object_ids]
        return ply_bytes(np.concatenate([p for p, _ in parts]), np.concatenate([c for _, c in parts]))

    def export_object(self, oid: int) -> tuple[bytes, int]:
        """(PLY bytes as ``export``, point count) of one object's points in the object's own frame."""
        return ply_bytes(*self.object_points(oid, world=False))


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


def _source_P(K: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """(3,4) float64 ``K @ w2c[:3]`` of a slot's source view (the renderer snaps only at this camera)."""
    return projection_matrices(w2c[None], K[None])[0]


def _check_threshold(thr: Any) -> float | None:
    if thr is None:
        return None
    return V.positive(thr, "filter_points_threshold")
