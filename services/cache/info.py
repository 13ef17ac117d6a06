"""Scene descriptions: what the store keeps per scene (JSON, also in snapshots) and their ``SceneInfo`` /
``ObjectInfo`` messages for GetScene, ListScenes and every answer that returns a scene; UpdateScene's
``AlignmentReport``."""

from __future__ import annotations

import numpy as np

from objvid.runtime import wire
from objvid.v1 import cache_pb2, types_pb2

from . import multiview_rpc
from .store import SceneEntry, SceneNotFound
from .units import clamp_warning


def describe_scene(scene, entry: SceneEntry) -> dict:
    """JSON-able description kept by the store (and in snapshots) for GetScene / ListScenes."""
    seed = scene.seed_camera
    objects = []
    for oid in scene.object_ids:
        meta = entry.objects.get(oid, {})
        objects.append(
            {
                "id": int(oid),
                "name": meta.get("name", ""),
                "num_points": int(meta.get("num_points", 0)),
                "transform": np.asarray(scene.get_transform(oid), np.float64).ravel().tolist(),
            }
        )
    return {
        "num_points": int(scene.num_points),
        "num_slots": int(scene.num_slots),
        "device_bytes": int(scene.device_bytes()),
        "device": str(scene.device),
        "seed_camera": None
        if seed is None
        else {
            "K": np.asarray(seed[0], np.float64).ravel().tolist(),
            "w2c": np.asarray(seed[1], np.float64).ravel().tolist(),
            "height": int(seed[2]),
            "width": int(seed[3]),
        },
        "objects": objects,
        "depth_clamped_fraction": float(scene.depth_clamped_fraction),
        **multiview_rpc.describe(scene),
    }


def object_of(entry: SceneEntry, oid: int) -> cache_pb2.ObjectInfo:
    """``ObjectInfo`` of object ``oid`` from the store's description; SceneNotFound naming ``object_id``."""
    for obj in entry.info.get("objects", []):
        if obj["id"] == oid:
            return object_info(obj)
    raise SceneNotFound(f"object_id: scene {entry.scene_id!r} has no object {oid}")


def alignment_report(rep) -> tuple[cache_pb2.AlignmentReport, dict]:
    """``align.AlignmentReport`` (or None: not aligned, all zero) -> (its message, the same fields as a dict
    for the journal's idempotent answer)."""
    report = cache_pb2.AlignmentReport()
    if rep is not None:
        report = cache_pb2.AlignmentReport(
            scale=rep.scale,
            shift=rep.shift,
            error_before=rep.error_before,
            error_after=rep.error_after,
            pixels_used=rep.pixels_used,
        )
    fields = ("scale", "shift", "error_before", "error_after", "pixels_used")
    return report, {f: getattr(report, f) for f in fields}


def object_info(obj: dict) -> cache_pb2.ObjectInfo:
    return cache_pb2.ObjectInfo(
        object_id=obj["id"],
        name=obj["name"],
        num_points=obj["num_points"],
        transform=types_pb2.Matrix4(values=obj["transform"]),
    )


def scene_info(entry: SceneEntry, device: str) -> cache_pb2.SceneInfo:
    info = entry.info
    msg = cache_pb2.SceneInfo(
        scene_id=entry.scene_id,
        num_points=info.get("num_points", 0),
        num_buffer_slots=info.get("num_slots", 0),
        objects=[object_info(o) for o in info.get("objects", [])],
        device_bytes=info.get("device_bytes", entry.nbytes),
        device=info.get("device", device),
        num_source_views=info.get("num_source_views", 0),
        seed_view=info.get("seed_view", 0),
    )
    fraction = float(info.get("depth_clamped_fraction", 0.0))  # of the latest RGB-D view (cache.units)
    msg.depth_clamped_fraction = fraction
    msg.depth_warning = clamp_warning(fraction)
    seed = info.get("seed_camera")
    if seed:
        msg.seed_camera.CopyFrom(
            wire.encode_camera(
                np.array(seed["K"]).reshape(3, 3),
                np.array(seed["w2c"]).reshape(4, 4),
                seed["width"],
                seed["height"],
            )
        )
    return msg
