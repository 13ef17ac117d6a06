"""``Scene``: a GEN3C-style 3D cache (1-2 buffer slots of scene points) plus rigid objects, resident on
one device, rendered for any batch of cameras.

This module holds the ``Scene`` class: construction (one RGB-D view, N posed views, a free cloud), the
buffer policy (``add_view``), properties and ``render``. The parts live beside it: ``slots`` (lifting an
RGB-D view to points), ``scene_objects`` (the object layer: add / move / remove / read objects, normals for
culling), ``scene_state`` (state dicts, PLY export), ``multiview`` (per-frame buffer selection),
``placement`` and ``update``.

Units: the scene's world units are those of the depth map (GEN3C: MoGe units); cameras are OpenCV.
Not thread-safe for concurrent mutation; rendering holds no global state, so distinct scenes can be
used from distinct threads (the service serialises device work itself).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import scene_state
from . import validate as V
from .render import check_options, pick_backend
from .render import render as _render
from .render_common import RenderOutput, unpack_colors
from .scene_objects import ObjectNotFoundError, SceneObjects, empty_layer
from .scene_state import STATE_VERSION, ply_bytes
from .slots import (
    BOUNDARY_RATIO,
    MAX_DEPTH,
    Slot,
    check_threshold,
    clean_depth,
    make_cloud,
    reliable_depth_mask,
    source_P,
    unproject,
)
from .units import clamped_fraction

__all__ = [
    "FRAME_BUFFER_MAX",
    "MAX_DEPTH",
    "STATE_VERSION",
    "ObjectNotFoundError",
    "Scene",
    "clean_depth",
    "ply_bytes",
    "reliable_depth_mask",
    "unproject",
]

FRAME_BUFFER_MAX = 2  # GEN3C's buffer slots


class Scene(SceneObjects):
    """Scene points in 1-2 buffer slots (slot 0 newest, the seed view last) plus objects.

    Build with ``Scene.from_rgbd`` / ``Scene.from_views`` / ``Scene.from_points`` /
    ``Scene.from_state_dict``. The object methods (``add_object``, ``set_transform``, ...) come from
    ``scene_objects.SceneObjects``.
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
        self._slots: list[Slot] = _slots or []
        self._filter = filter_points_threshold
        self._max_depth = float(max_depth)
        self._obj = empty_layer(self._device)
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
            filter_points_threshold=check_threshold(filter_points_threshold),
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
            filter_points_threshold=check_threshold(filter_points_threshold),
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
        scene._slots = [Slot(make_cloud(pts, col, None, scene._device))]
        return scene

    def _lift(self, image, depth, K, w2c, mask) -> Slot:
        """One RGB-D view -> a grid slot (``slots``); sets ``depth_clamped_fraction`` of this view."""
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
        cloud = make_cloud(
            pts, img.reshape(-1, 3), valid.reshape(-1), self._device, source_P(Kd, w2cd), boundary.reshape(-1)
        )
        return Slot(cloud, (H, W), Kd, w2cd)

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

    # ---------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def num_points(self) -> int:
        """Scene points stored over all slots (grid slots store H*W, masked-out pixels included)."""
        return sum(s.cloud.n for s in self._slots)

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
        return scene_state.state_dict(self)

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: str | torch.device = "cpu") -> Scene:
        """Inverse of ``state_dict`` onto ``device``."""
        scene_state.check_state(state)
        scene = cls(
            device, filter_points_threshold=state["filter_points_threshold"], max_depth=state["max_depth"]
        )
        return scene_state.restore(scene, state)

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
