"""Triton-lang resolve pass of the renderer (CUDA; CPU tensors under ``TRITON_INTERPRET=1`` for tests).

``resolve``: ``_resolve_kernel``, one program per ``PIXEL_BLOCK`` pixels: reads the scene's GEN3C
accumulator or z-buffer keys and the object keys, depth-tests them (ties go to the object), and writes
uint8 RGB, bool mask, float32 depth, int16 object id and optional float RGB (``render_torch.resolve`` is
the reference). Split from ``kernels`` (the point passes) to keep each module one pass.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .render_common import KEY_EMPTY

PIXEL_BLOCK = 1024


@triton.jit
def _decode(keys, valid, obj_packed_ptr, obj_oid_ptr, scene_packed_ptr, n_obj):
    idx = keys - ((keys >> 32) << 32)  # low 32 bits, in int64 arithmetic
    z = (keys >> 32).to(tl.int32).to(tl.float32, bitcast=True)
    is_obj = idx < n_obj
    po = tl.load(obj_packed_ptr + idx, mask=valid & is_obj, other=0)
    ps = tl.load(scene_packed_ptr + (idx - n_obj), mask=valid & (idx >= n_obj), other=0)
    pk = tl.where(is_obj, po, ps)
    oid = tl.load(obj_oid_ptr + idx, mask=valid & is_obj, other=-1).to(tl.int32)
    oid = tl.where(valid & is_obj, oid, -1)
    r = (pk & 255).to(tl.float32)
    g = ((pk >> 8) & 255).to(tl.float32)
    b = ((pk >> 16) & 255).to(tl.float32)
    return r, g, b, z, oid


EMPTY = tl.constexpr(KEY_EMPTY)


@triton.jit
def _resolve_kernel(
    acc_ptr,
    skeys_ptr,
    okeys_ptr,
    scene_packed_ptr,
    obj_packed_ptr,
    obj_oid_ptr,
    n_obj,
    rgb_ptr,
    mask_ptr,
    depth_ptr,
    oid_ptr,
    rgbf_ptr,
    st_rgb,
    st_mask,
    st_depth,
    st_oid,
    st_rgbf,
    total,
    HW,
    SCENE: tl.constexpr,
    HAS_OBJ: tl.constexpr,
    W_RGB: tl.constexpr,
    W_MASK: tl.constexpr,
    W_DEPTH: tl.constexpr,
    W_OID: tl.constexpr,
    W_RGBF: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """SCENE: 0 none, 1 GEN3C accumulator, 2 z-buffer keys. Outputs are strided per camera (st_*)."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < total
    c = offs // HW
    p = offs % HW
    if SCENE == 1:
        a = acc_ptr + offs * 5
        w = tl.load(a, mask=m, other=0.0)
        s_valid = w > 0
        safe = tl.where(s_valid, w, 1.0)
        r = tl.minimum(tl.maximum(tl.load(a + 1, mask=m, other=0.0) / safe, 0.0), 255.0)
        g = tl.minimum(tl.maximum(tl.load(a + 2, mask=m, other=0.0) / safe, 0.0), 255.0)
        b = tl.minimum(tl.maximum(tl.load(a + 3, mask=m, other=0.0) / safe, 0.0), 255.0)
        z = tl.load(a + 4, mask=m, other=0.0) / safe
        oid = tl.full([BLOCK], -1, tl.int32)
    elif SCENE == 2:
        k = tl.load(skeys_ptr + offs, mask=m, other=EMPTY)
        s_valid = k != EMPTY
        r, g, b, z, oid = _decode(k, s_valid, obj_packed_ptr, obj_oid_ptr, scene_packed_ptr, n_obj)
    else:
        s_valid = offs < 0
        r = tl.zeros([BLOCK], tl.float32)
        g = r
        b = r
        z = r
        oid = tl.full([BLOCK], -1, tl.int32)
    if HAS_OBJ:
        k = tl.load(okeys_ptr + offs, mask=m, other=EMPTY)
        o_valid = k != EMPTY
        orr, og, ob, oz, ooid = _decode(k, o_valid, obj_packed_ptr, obj_oid_ptr, scene_packed_ptr, n_obj)
        take = o_valid & ((~s_valid) | (oz <= z))
        r = tl.where(take, orr, r)
        g = tl.where(take, og, g)
        b = tl.where(take, ob, b)
        z = tl.where(take, oz, z)
        oid = tl.where(take, ooid, oid)
        s_valid = s_valid | o_valid
    r = tl.where(s_valid, r, 0.0)
    g = tl.where(s_valid, g, 0.0)
    b = tl.where(s_valid, b, 0.0)
    if W_RGB:
        q = rgb_ptr + c * st_rgb + p * 3
        tl.store(q, tl.floor(r + 0.5).to(tl.uint8), mask=m)
        tl.store(q + 1, tl.floor(g + 0.5).to(tl.uint8), mask=m)
        tl.store(q + 2, tl.floor(b + 0.5).to(tl.uint8), mask=m)
    if W_RGBF:
        q = rgbf_ptr + c * st_rgbf + p * 3
        tl.store(q, r, mask=m)
        tl.store(q + 1, g, mask=m)
        tl.store(q + 2, b, mask=m)
    if W_MASK:
        tl.store(mask_ptr + c * st_mask + p, s_valid.to(tl.uint8), mask=m)
    if W_DEPTH:
        tl.store(depth_ptr + c * st_depth + p, tl.where(s_valid, z, 0.0), mask=m)
    if W_OID:
        tl.store(oid_ptr + c * st_oid + p, tl.where(s_valid, oid, -1).to(tl.int16), mask=m)


def _grid(n: int, block: int) -> tuple[int]:
    return (triton.cdiv(n, block),)


def resolve(
    out: dict, scene_acc, scene_keys, obj_keys, scene_packed, obj_packed, obj_oid, n_obj: int, H: int, W: int
) -> None:
    """Write the final images into the (C,H,W,...) views in ``out`` (see ``render_torch.resolve``)."""
    first = scene_acc if scene_acc is not None else scene_keys if scene_keys is not None else obj_keys
    C = first.shape[0]
    dev = obj_packed.device
    # placeholders for pointers a specialisation never touches (empty: no fill kernel launched)
    dummy_i32 = torch.empty(1, dtype=torch.int32, device=dev)
    dummy_i64 = torch.empty(1, dtype=torch.int64, device=dev)
    dummy = {
        "rgb": torch.empty(1, dtype=torch.uint8, device=dev),
        "mask": torch.empty(1, dtype=torch.uint8, device=dev),
        "depth": torch.empty(1, dtype=torch.float32, device=dev),
        "object_mask": torch.empty(1, dtype=torch.int16, device=dev),
        "rgb_float": torch.empty(1, dtype=torch.float32, device=dev),
    }
    ptrs, strides = {}, {}
    for k in dummy:
        t = out.get(k)
        if t is None:
            ptrs[k], strides[k] = dummy[k], 0
            continue
        frame = t[0]
        assert frame.is_contiguous(), f"{k}: frames must be contiguous"
        ptrs[k] = t.view(torch.uint8) if k == "mask" else t
        strides[k] = t.stride(0)
    scene = 1 if scene_acc is not None else 2 if scene_keys is not None else 0
    total = C * H * W
    _resolve_kernel[_grid(total, PIXEL_BLOCK)](
        scene_acc if scene_acc is not None else dummy["depth"],
        scene_keys if scene_keys is not None else dummy_i64,
        obj_keys if obj_keys is not None else dummy_i64,
        scene_packed if scene_packed is not None and scene_packed.numel() else dummy_i32,
        obj_packed if obj_packed.numel() else dummy_i32,
        obj_oid if obj_oid.numel() else dummy["object_mask"],
        n_obj,
        ptrs["rgb"],
        ptrs["mask"],
        ptrs["depth"],
        ptrs["object_mask"],
        ptrs["rgb_float"],
        strides["rgb"],
        strides["mask"],
        strides["depth"],
        strides["object_mask"],
        strides["rgb_float"],
        total,
        H * W,
        SCENE=scene,
        HAS_OBJ=obj_keys is not None,
        W_RGB="rgb" in out,
        W_MASK="mask" in out,
        W_DEPTH="depth" in out,
        W_OID="object_mask" in out,
        W_RGBF="rgb_float" in out,
        BLOCK=PIXEL_BLOCK,
    )
