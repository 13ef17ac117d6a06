"""``DynamicScene``: GEN3C's 4D cache (``Cache4D``, reference 2.5) for a posed RGB-D video, plus objects.

Sources are kept compact on the device: colour (F, H, W, 3) uint8, z-depth (F, H, W) float16 (or float32),
validity (F, H, W) bool, K (F, 3, 3) and w2c (F, 4, 4) on the host. A frame's points are computed on the
fly from its depth and K when it is rendered (one frame = H*W points, never the whole clip), so a 121-frame
704x1280 clip costs ~0.7 GB of sources with float16 depth instead of the ~1.8 GB of resident points
(110 M points x 16 bytes) a static cache would hold.

Rendering is frame-synchronous, as upstream: target camera f of a chunk starting at ``start`` sees only
source frame ``start + f`` (no cross-frame fusion, no cache update). Objects live in the world of the
video's cameras (placed once from frame 0's points) and are drawn into every frame, occluded by that
frame's scene points; an optional per-frame pose track moves them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from objvid.runtime.errors import FailedPrecondition, ResourceExhausted

from . import validate as V
from .render import Cloud, ObjectLayer, check_options, pick_backend
from .render import render as _render
from .render_common import OUTPUTS, RenderOutput
from .scene import MAX_DEPTH, Scene

DEPTH_DTYPES = {"float16": torch.float16, "float32": torch.float32}


def source_bytes(frames: int, height: int, width: int, depth_dtype: str = "float16") -> int:
    """Device bytes of a clip's sources: colour (3) + depth (2 or 4) + validity (1) per pixel."""
    return frames * height * width * (3 + DEPTH_DTYPES[depth_dtype].itemsize + 1)


def frame_peak_bytes(height: int, width: int) -> int:
    """Device bytes besides the sources: one frame's points while it renders (xyz float32 + packed colour,
    16 B/px) with the float32 unprojection temporaries (~24 B/px), plus frame 0's resident points used
    to place objects (16 B/px). The renderer's own temporaries are bounded by ``render.TEMP_BYTES_BUDGET``."""
    return height * width * 56


def _reliable(depth: torch.Tensor, threshold: float, window: int = 5, eps: float = 1e-6) -> torch.Tensor:
    """GEN3C's depth-edge filter on the device: (max - min) / (mean + eps) over a window x window box
    < threshold and depth > 0. (H, W) float32 -> (H, W) bool."""
    d = depth[None, None]
    pad = window // 2
    hi = F.max_pool2d(d, window, stride=1, padding=pad)
    lo = -F.max_pool2d(-d, window, stride=1, padding=pad)
    mean = F.avg_pool2d(d, window, stride=1, padding=pad)
    return (((hi - lo) / (mean + eps) < threshold) & (d > 0))[0, 0]


class DynamicScene:
    """A posed RGB-D video as a frame-synchronous cache, with rigid objects (see the module docstring).

    images (F, H, W, 3) uint8; depths (F, H, W) z-depth in scene units (NaN/+inf -> ``max_depth``, clamped
    to [0, max_depth], 0 = no point); Ks (F, 3, 3) pixels; w2cs (F, 4, 4) rigid OpenCV world-to-camera;
    masks (F, H, W) bool (False = no point) or None; ``filter_points_threshold`` GEN3C's depth-edge filter
    (None = off); ``max_bytes`` the device budget for the sources plus one frame's transients
    (ResourceExhausted beyond it; None = no limit).
    """

    def __init__(
        self,
        images: Any,
        depths: Any,
        Ks: Any,
        w2cs: Any,
        masks: Any = None,
        *,
        device: str | torch.device = "cpu",
        depth_dtype: str = "float16",
        filter_points_threshold: float | None = None,
        max_depth: float = MAX_DEPTH,
        max_bytes: int | None = None,
    ):
        img = V.to_numpy(images, "images")
        if img.ndim != 4 or img.shape[-1] != 3 or img.dtype != np.uint8 or 0 in img.shape:
            raise ValueError(f"images: expected (F,H,W,3) uint8, got {tuple(img.shape)} {img.dtype}")
        n, H, W = img.shape[:3]
        d = V.to_numpy(depths, "depths")
        if d.ndim == 4 and d.shape[1] == 1:
            d = d[:, 0]
        if d.shape != (n, H, W):
            raise ValueError(
                f"depths: expected shape {(n, H, W)} (frames, H, W of images), got {tuple(d.shape)}"
            )
        if d.dtype.kind not in "fiu":
            raise ValueError(f"depths: expected numbers, got dtype {d.dtype}")
        self.Ks = V.intrinsics(Ks, "Ks", batch=True)
        self.w2cs = V.rigid(w2cs, "w2cs", batch=True)
        for name, arr in (("Ks", self.Ks), ("w2cs", self.w2cs)):
            if len(arr) != n:
                raise ValueError(f"{name}: {len(arr)} cameras for {n} frames")
        if depth_dtype not in DEPTH_DTYPES:
            raise ValueError(f"depth_dtype: expected one of {tuple(DEPTH_DTYPES)}, got {depth_dtype!r}")
        self._device = torch.device(device)
        need = source_bytes(n, H, W, depth_dtype) + frame_peak_bytes(H, W)
        if max_bytes is not None and need > max_bytes:
            raise ResourceExhausted(
                "frames", f"{n} frames of {W}x{H} need {need / 2**20:.0f} MiB on the device, "
                f"over the budget of {max_bytes / 2**20:.0f} MiB"
            )  # fmt: skip
        self.max_depth = V.positive(max_depth, "max_depth")
        if filter_points_threshold is not None and not 0 < float(filter_points_threshold) <= 1:
            raise ValueError(f"filter_points_threshold: expected (0, 1], got {filter_points_threshold}")
        self._filter = None if filter_points_threshold is None else float(filter_points_threshold)
        valid = np.ones((n, H, W), bool)
        if masks is not None:
            m = V.to_numpy(masks, "masks")
            if m.ndim == 4 and m.shape[1] == 1:
                m = m[:, 0]
            if m.shape != (n, H, W):
                raise ValueError(f"masks: expected shape {(n, H, W)}, got {tuple(m.shape)}")
            valid = m.astype(bool)
        raw = d.astype(np.float32)
        seen = np.isfinite(raw) & (raw > 0) & valid
        #: Fraction of the clip's valid depth over ``max_depth`` (clamped): the wrong unit when large.
        self.depth_clamped_fraction = float((raw[seen] > self.max_depth).mean()) if seen.any() else 0.0
        dev, ddt = self._device, DEPTH_DTYPES[depth_dtype]
        self._rgb = torch.from_numpy(np.ascontiguousarray(img)).to(dev)
        clean = np.clip(np.nan_to_num(d.astype(np.float32), nan=self.max_depth, posinf=self.max_depth,
                                      neginf=0.0), 0.0, self.max_depth)  # fmt: skip
        self._depth = torch.from_numpy(clean).to(dev, ddt)
        self._valid = torch.from_numpy(valid).to(dev)
        self.size = (H, W)
        # Objects (and their placement on frame 0's points) live in a static Scene of frame 0.
        self.objects = Scene.from_rgbd(img[0], clean[0], self.Ks[0], self.w2cs[0], valid[0], device=dev,
                                       filter_points_threshold=self._filter, max_depth=self.max_depth)  # fmt: skip

    # ---------------------------------------------------------------- properties
    @property
    def num_frames(self) -> int:
        return int(self._rgb.shape[0])

    @property
    def device(self) -> torch.device:
        return self._device

    def source_bytes(self) -> int:
        """Bytes of the resident sources (colour, depth, validity) on the device."""
        return sum(t.numel() * t.element_size() for t in (self._rgb, self._depth, self._valid))

    def device_bytes(self) -> int:
        """Sources plus frame 0's placement points and the objects."""
        return self.source_bytes() + self.objects.device_bytes()

    # The ``Scene`` interface the cache service uses (a video scene stands in for a static one).
    @property
    def num_points(self) -> int:
        return self._rgb.shape[0] * self.size[0] * self.size[1]

    @property
    def num_slots(self) -> int:
        return 1

    @property
    def seed_camera(self):
        """(K, w2c, H, W) of frame 0."""
        return self.Ks[0].copy(), self.w2cs[0].copy(), self.size[0], self.size[1]

    @property
    def object_ids(self) -> list[int]:
        return self.objects.object_ids

    @property
    def num_objects(self) -> int:
        return self.objects.num_objects

    def get_transform(self, oid: int) -> np.ndarray:
        return self.objects.get_transform(oid)

    def remove_object(self, oid: int) -> None:
        self.objects.remove_object(oid)

    def object_points(self, oid: int, world: bool = True):
        return self.objects.object_points(oid, world)

    def export(self, include_objects: bool = True) -> tuple[bytes, int]:
        """Frame 0's points (and the objects) as PLY."""
        return self.objects.export(include_objects)

    def update_from_view(self, *args, **kwargs):
        raise FailedPrecondition(
            "scene_id", "video scenes are not updated (GEN3C's Cache4D renders from the video)"
        )

    add_view = update_from_view  # the cache service's UpdateScene adds a prepared view

    # ---------------------------------------------------------------- objects
    def add_object(self, points: Any, colors: Any, transform: Any = None, **kw) -> int:
        """Object-local points (M, 3), colours (M, 3) uint8, pose in the video's world (options as
        ``Scene.add_object``) -> object id."""
        return self.objects.add_object(points, colors, transform, **kw)

    def place_object(self, oid: int, anchor_px: Any = None, height: float | None = None, **kw) -> np.ndarray:
        """Stand an object on the support plane seen in frame 0 (pixel ``anchor_px`` of frame 0)."""
        return self.objects.place_object(oid, anchor_px=anchor_px, height=height, **kw)

    def set_transform(self, oid: int, transform: Any) -> None:
        self.objects.set_transform(oid, transform)

    # ---------------------------------------------------------------- points on the fly
    def frame_cloud(self, i: int) -> Cloud:
        """Source frame i as a device point cloud: (3, H*W) float32 world points, packed colours (invalid
        pixels flagged). Points: X = R^T (z K^-1 [u, v, 1] - t), pixel centres at integers."""
        H, W = self.size
        dev = self._device
        d = self._depth[i].to(torch.float32)
        valid = self._valid[i] & (d > 0)
        if self._filter is not None:
            valid &= _reliable(d, self._filter)
        Kinv = torch.as_tensor(np.linalg.inv(self.Ks[i]), dtype=torch.float32, device=dev)
        w2c = self.w2cs[i]
        R = torch.as_tensor(w2c[:3, :3], dtype=torch.float32, device=dev)
        t = torch.as_tensor(w2c[:3, 3], dtype=torch.float32, device=dev)
        v, u = torch.meshgrid(torch.arange(H, device=dev, dtype=torch.float32),
                              torch.arange(W, device=dev, dtype=torch.float32), indexing="ij")  # fmt: skip
        pix = torch.stack([u.reshape(-1), v.reshape(-1), torch.ones(H * W, device=dev)])  # (3, P)
        cam = (Kinv @ pix) * d.reshape(1, -1)
        xyz = (R.T @ (cam - t[:, None])).contiguous()
        c = self._rgb[i].reshape(-1, 3).to(torch.int32)  # packed as render_common.pack_colors
        packed = c[:, 0] | (c[:, 1] << 8) | (c[:, 2] << 16) | (valid.reshape(-1).to(torch.int32) << 24)
        return Cloud(xyz, packed)

    # ---------------------------------------------------------------- rendering
    def _layer(self, poses: dict[int, np.ndarray] | None) -> ObjectLayer:
        base = self.objects._obj
        if not poses:
            return base
        spans = [(o, s, n, poses.get(o, tr)) for (o, s, n, tr) in base.spans]
        return ObjectLayer(base.cloud, base.oid, spans)

    def render_frames(
        self,
        w2cs: Any,
        Ks: Any,
        height: int | None = None,
        width: int | None = None,
        start: int = 0,
        object_track: dict[int, Any] | None = None,
        mode: str = "fused",
        splat: str = "gen3c",
        footprint: int = 2,
        object_radius_px: float = 0.75,
        outputs: Any = None,
        backend: str | None = None,
    ) -> Iterator[RenderOutput]:
        """Frame-synchronous render, one frame at a time: target camera f (``w2cs`` (T, 4, 4), ``Ks``
        (T, 3, 3) or (3, 3), at ``height`` x ``width``, default the video's size) sees source frame
        ``start + f``. ``object_track`` {oid: (F, 4, 4) poses
        indexed by the source frame} overrides objects' transforms per frame. Yields ``RenderOutput``
        with (1, 1, H, W[, 3]) tensors on the device (N = 1: one source per frame)."""
        H, W = self.size if height is None else V.image_size(height, width)
        w2c_np = V.rigid(w2cs, "w2cs", batch=True)
        K_np = V.intrinsics(Ks, "Ks", batch=True)
        if len(K_np) == 1 and len(w2c_np) > 1:
            K_np = np.repeat(K_np, len(w2c_np), axis=0)
        if len(K_np) != len(w2c_np):
            raise ValueError(f"Ks: {len(K_np)} intrinsics for {len(w2c_np)} cameras (w2cs)")
        T = len(w2c_np)
        if isinstance(start, bool) or not 0 <= int(start) or int(start) + T > self.num_frames:
            raise ValueError(
                f"start_frame: frames {start}..{int(start) + T - 1} requested, the video has {self.num_frames}"
            )
        track = self._check_track(object_track)
        outs = check_options(mode, splat, footprint, object_radius_px, outputs)
        be = pick_backend(backend, self._device)
        for f in range(T):
            src = int(start) + f
            poses = {oid: tr[src] for oid, tr in track.items()}
            yield _render([self.frame_cloud(src)], self._layer(poses), w2c_np[f : f + 1], K_np[f : f + 1],
                          H, W, mode, splat, int(footprint), float(object_radius_px), outs, be,
                          self._device)  # fmt: skip

    def render(self, w2cs: Any, Ks: Any, height: int | None = None, width: int | None = None, start: int = 0,
               slots: Any = None, **kw) -> RenderOutput:  # fmt: skip
        """:meth:`render_frames` stacked: (T, 1, H, W[, 3]) tensors (a batch of the service's trajectory)."""
        if slots is not None and list(np.atleast_1d(slots)) != [0]:
            raise ValueError(f"slots: a video scene has one slot per frame, got {slots}")
        parts = list(self.render_frames(w2cs, Ks, height, width, start, **kw))
        return RenderOutput(**{
            k: (torch.cat([getattr(p, k) for p in parts]) if getattr(parts[0], k) is not None else None)
            for k in OUTPUTS
        })  # fmt: skip

    def _check_track(self, track: dict[int, Any] | None) -> dict[int, np.ndarray]:
        out = {}
        for oid, poses in (track or {}).items():
            self.objects._span(oid)  # NotFound for unknown ids
            a = V.rigid(poses, f"object_track[{oid}]", batch=True, allow_scale=True)
            if len(a) != self.num_frames:
                raise ValueError(f"object_track[{oid}]: {len(a)} poses for {self.num_frames} frames")
            out[oid] = a
        return out

    # ---------------------------------------------------------------- snapshots
    def state_dict(self) -> dict[str, Any]:
        """CPU tensors and plain values (``torch.save``-able, ``weights_only`` loadable)."""
        return {
            "kind": "video",
            "rgb": self._rgb.cpu(),
            "depth": self._depth.cpu(),
            "valid": self._valid.cpu(),
            "Ks": torch.from_numpy(self.Ks.copy()),
            "w2cs": torch.from_numpy(self.w2cs.copy()),
            "filter_points_threshold": self._filter,
            "max_depth": self.max_depth,
            "objects": self.objects.state_dict(),
            "depth_clamped_fraction": self.depth_clamped_fraction,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: str | torch.device = "cpu") -> DynamicScene:
        dtype = "float16" if state["depth"].dtype == torch.float16 else "float32"
        scene = cls(state["rgb"].numpy(), state["depth"].float().numpy(), state["Ks"].numpy(), state["w2cs"].numpy(),
                    state["valid"].numpy(), device=device, depth_dtype=dtype,
                    filter_points_threshold=state["filter_points_threshold"], max_depth=state["max_depth"])  # fmt: skip
        scene.objects = Scene.from_state_dict(state["objects"], device)
        scene.depth_clamped_fraction = float(state.get("depth_clamped_fraction", 0.0))
        return scene


def scene_from_state(state: dict[str, Any], device: str | torch.device = "cpu"):
    """A snapshot -> ``Scene`` or ``DynamicScene`` (video scenes carry ``kind: video``)."""
    if state.get("kind") == "video":
        return DynamicScene.from_state_dict(state, device)
    return Scene.from_state_dict(state, device)
