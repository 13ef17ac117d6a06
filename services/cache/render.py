"""Render dispatch: modes x splats x buffer slots over one backend.

Backends: ``"triton"`` (CUDA, ``kernels.py``), ``"torch"`` (vectorised PyTorch, ``render_torch.py``) and
``"reference"`` (``render_reference.py``, float64 on the CPU, slow: for tests). ``None`` picks Triton on
CUDA when it imports, else torch.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

import numpy as np
import torch

from . import render_reference, render_torch
from .render_common import (
    DEFAULT_OUTPUTS,
    INDEX_MASK,
    MODES,
    OUTPUTS,
    SPLATS,
    Footprint,
    RenderOutput,
    normaliser_groups,
    object_footprint,
    projection_matrices,
    source_snap,
    unpack_colors,
)

# Bytes of per-view temporaries (accumulators / key buffers) allowed at once; views are chunked beyond.
TEMP_BYTES_BUDGET = 4 << 30
BACKENDS = ("triton", "torch", "reference")


@dataclass
class Cloud:
    """A point cloud resident on the device: ``xyz`` (3,P) float32 (SoA), ``packed`` (P,) int32 colours,
    ``source_P`` (3,4) float64 ``K @ w2c[:3]`` of the view it was lifted from (None for free clouds)."""

    xyz: torch.Tensor
    packed: torch.Tensor
    source_P: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.xyz.shape[1])


@dataclass
class ObjectLayer:
    """All objects concatenated: ``cloud`` in object-local coordinates, ``oid`` (M,) int16 per point, and
    per object (id, start, count, transform (4,4) float64) in insertion order; ``normals`` (3,M) float32
    object-local unit normals (zero = never culled) or None (no culling at all)."""

    cloud: Cloud
    oid: torch.Tensor
    spans: list[tuple[int, int, int, np.ndarray]] = field(default_factory=list)
    normals: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return self.cloud.n


def triton_available(device: torch.device) -> bool:
    return device.type == "cuda" and importlib.util.find_spec("triton") is not None


def pick_backend(backend: str | None, device: torch.device) -> str:
    if backend is None:
        return "triton" if triton_available(device) else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    if backend == "triton" and importlib.util.find_spec("triton") is None:
        raise ValueError("backend: 'triton' requested but the triton package is not installed")
    return backend


def check_options(mode, splat, footprint, object_radius_px, outputs) -> tuple[str, ...]:
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    if splat not in SPLATS:
        raise ValueError(f"splat: expected one of {SPLATS}, got {splat!r}")
    if isinstance(footprint, bool) or not isinstance(footprint, int | np.integer) or not 1 <= footprint <= 15:
        raise ValueError(f"footprint: expected an int in 1..15, got {footprint!r}")
    r = float(object_radius_px) if isinstance(object_radius_px, int | float | np.floating) else None
    if r is None or not np.isfinite(r) or r < 0 or r > 7:
        raise ValueError(f"object_radius_px: expected a number in [0, 7], got {object_radius_px!r}")
    outs = DEFAULT_OUTPUTS if outputs is None else tuple(outputs)
    bad = [o for o in outs if o not in OUTPUTS]
    if bad or not outs:
        raise ValueError(f"outputs: expected a non-empty subset of {OUTPUTS}, got {outputs!r}")
    return outs


def _backend_module(name: str):
    if name == "triton":
        from . import kernels

        return kernels
    return render_torch


def render(
    slots: list[Cloud],
    objects: ObjectLayer,
    w2cs: np.ndarray,
    Ks: np.ndarray,
    H: int,
    W: int,
    mode: str,
    splat: str,
    footprint: int,
    object_radius_px: float,
    outputs: tuple[str, ...],
    backend: str,
    device: torch.device,
    slot_ids: list[int] | None = None,
    scene_hook=None,
) -> RenderOutput:
    """Render T cameras ((T,4,4) / (T,3,3) float64, already validated) for the slots ``slot_ids`` (default
    all) of ``slots`` (all the scene's slots: GEN3C's depth normaliser groups views over them).
    ``scene_hook(slot_index, c0, c1, acc)`` may edit a chunk's GEN3C accumulators (C, H*W, 5) in place
    before they are resolved (foreground masking)."""
    ids = list(range(len(slots))) if slot_ids is None else list(slot_ids)
    if backend == "reference":
        return _render_reference(
            slots,
            objects,
            w2cs,
            Ks,
            H,
            W,
            mode,
            splat,
            footprint,
            object_radius_px,
            outputs,
            device,
            ids,
            scene_hook,
        )
    be = _backend_module(backend)
    all_slots = slots
    slots = [all_slots[i] for i in ids]
    T = len(w2cs)
    n_out = 1 if mode == "objects" else len(slots)
    has_obj = objects.n > 0
    M = objects.n
    if M + max(s.n for s in slots) > INDEX_MASK:
        raise ValueError("points: more than 2^32 points in one z-buffer")
    out = _alloc(outputs, T, n_out, H, W, device)
    if mode == "objects" and not has_obj:  # nothing to draw: every pixel is a hole
        for name, t in out.items():
            if t is not None:
                t.fill_(-1 if name == "object_mask" else 0)
        return RenderOutput(**out)
    P = projection_matrices(w2cs, Ks)  # (T,3,4) float64
    P_dev = torch.as_tensor(P, dtype=torch.float64).to(device, non_blocking=True)
    gen3c = splat == "gen3c" and mode in ("fused", "scene")
    zmax = snaps = None
    if gen3c:  # upstream's normaliser: max z over warp chunks of 2 (camera, slot) views, all slots
        zmax = normaliser_groups(torch.stack([be.gen3c_zmax(s.xyz, P_dev) for s in all_slots], dim=1))
        zmax = zmax[:, ids]
        snaps = [torch.as_tensor(source_snap(P, s.source_P)).to(device) for s in slots]
    obj_P = [
        torch.as_tensor(np.einsum("tij,jk->tik", P, tr), dtype=torch.float64).to(device, non_blocking=True)
        for (_, _, _, tr) in objects.spans
    ]
    obj_eye = [  # camera centres in each object's frame, for back-face culling
        None if objects.normals is None else torch.as_tensor(object_eyes(w2cs, tr)).to(device)
        for (_, _, _, tr) in objects.spans
    ]
    scene_fp, obj_fp = Footprint(size=int(footprint)), object_footprint(object_radius_px)

    # fused + z-buffer scene == one z-buffer with object points first (their lower indices win exact
    # depth ties), so fused/zbuffer runs exactly like full: objects are rasterised once per chunk.
    zb_scene = mode == "full" or splat == "zbuffer"
    objects_in_zb = has_obj and zb_scene and mode in ("full", "fused")
    separate_layer = has_obj and (mode == "objects" or (mode == "fused" and not zb_scene))
    per_view = H * W * (20 if (splat == "gen3c" and mode in ("fused", "scene")) else 8)
    per_view += H * W * 8 if (separate_layer or (objects_in_zb and n_out > 1)) else 0
    step = max(1, TEMP_BYTES_BUDGET // max(1, per_view))

    def raster_objects(keys, c0, c1):
        for (_, start, count, _), Po, eye in zip(objects.spans, obj_P, obj_eye, strict=True):
            sub = Cloud(
                objects.cloud.xyz[:, start : start + count], objects.cloud.packed[start : start + count]
            )
            cull = None
            if eye is not None:
                cull = (objects.normals[:, start : start + count], eye[c0:c1])
            be.zbuffer(keys, sub.xyz, sub.packed, Po[c0:c1], start, obj_fp, cull=cull)

    for c0 in range(0, T, step):
        c1 = min(T, c0 + step)
        C = c1 - c0
        obj_keys = None
        if separate_layer or (objects_in_zb and n_out > 1):
            obj_keys = be.new_keys(C, H, W, device)
            raster_objects(obj_keys, c0, c1)
        for n in range(n_out):
            dst = {k: v[c0:c1, n] for k, v in out.items() if v is not None}
            scene_acc = scene_keys = scene_packed = None
            layer = obj_keys if separate_layer else None
            if mode != "objects":
                slot = slots[n]
                scene_packed = slot.packed
                if zb_scene:
                    if objects_in_zb and obj_keys is not None:  # reuse the object raster per slot
                        scene_keys = obj_keys if n == n_out - 1 else obj_keys.clone()
                    else:
                        scene_keys = be.new_keys(C, H, W, device)
                        if objects_in_zb:
                            raster_objects(scene_keys, c0, c1)
                    be.zbuffer(scene_keys, slot.xyz, slot.packed, P_dev[c0:c1], M, scene_fp)
                else:
                    scene_acc = be.gen3c_acc(
                        slot.xyz, slot.packed, P_dev[c0:c1], H, W, zmax[c0:c1, n], snaps[n][c0:c1]
                    )
                    if scene_hook is not None:
                        scene_hook(ids[n], c0, c1, scene_acc)
            be.resolve(
                dst, scene_acc, scene_keys, layer, scene_packed, objects.cloud.packed, objects.oid, M, H, W
            )
    return RenderOutput(**{k: out.get(k) for k in OUTPUTS})


def _alloc(outputs, T, N, H, W, device) -> dict[str, torch.Tensor | None]:
    spec = {
        "rgb": ((T, N, H, W, 3), torch.uint8),
        "mask": ((T, N, H, W), torch.bool),
        "depth": ((T, N, H, W), torch.float32),
        "object_mask": ((T, N, H, W), torch.int16),
        "rgb_float": ((T, N, H, W, 3), torch.float32),
    }
    return {
        k: (torch.empty(*spec[k][0], dtype=spec[k][1], device=device) if k in outputs else None)
        for k in OUTPUTS
    }


def object_eyes(w2cs: np.ndarray, tr: np.ndarray) -> np.ndarray:
    """(T,3) float64 camera centres of (T,4,4) w2cs in the frame of an object with transform ``tr``."""
    C = -np.einsum("tji,tj->ti", w2cs[:, :3, :3], w2cs[:, :3, 3])  # -R^T t
    inv = np.linalg.inv(tr)
    return C @ inv[:3, :3].T + inv[:3, 3]


def _ref_cloud(
    cloud: Cloud, world_T: np.ndarray | None, oid: np.ndarray, normals: torch.Tensor | None = None
) -> render_reference.RefCloud:
    xyz = cloud.xyz.detach().cpu().to(torch.float64).T.numpy()
    nrm = None if normals is None else normals.detach().cpu().to(torch.float64).T.numpy()
    if world_T is not None:
        xyz = xyz @ world_T[:3, :3].T + world_T[:3, 3]
        if nrm is not None:  # similarity transform: rotate (the uniform scale does not change directions)
            R = world_T[:3, :3] / np.cbrt(np.linalg.det(world_T[:3, :3]))
            nrm = nrm @ R.T
    rgb, valid = unpack_colors(cloud.packed.detach().cpu())
    return render_reference.RefCloud(xyz, rgb.numpy(), valid.numpy(), oid, cloud.source_P, nrm)


def _render_reference(
    slots, objects, w2cs, Ks, H, W, mode, splat, footprint, radius, outputs, device, ids, scene_hook
):
    if scene_hook is not None:
        raise ValueError("backend: 'reference' does not take a scene hook (foreground masking)")
    ref_slots = [_ref_cloud(s, None, np.full(s.n, -1)) for s in slots]
    ref_obj = None
    if objects.n:
        parts = []
        for oid, start, count, tr in objects.spans:
            sub = Cloud(
                objects.cloud.xyz[:, start : start + count], objects.cloud.packed[start : start + count]
            )
            nrm = None if objects.normals is None else objects.normals[:, start : start + count]
            parts.append(_ref_cloud(sub, tr, np.full(count, oid), nrm))
        ref_obj = render_reference.RefCloud(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("points", "colors", "valid", "object_ids")
            ),
            normals=None if objects.normals is None else np.concatenate([p.normals for p in parts]),
        )
    res = render_reference.render(
        ref_slots, ref_obj, w2cs, Ks, H, W, mode, splat, footprint, radius, slot_ids=ids
    )
    res["depth"] = res["depth"].to(torch.float32)
    res["rgb_float"] = res["rgb_float"].to(torch.float32)
    return RenderOutput(**{k: (res[k].to(device) if k in outputs else None) for k in OUTPUTS})
