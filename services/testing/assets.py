"""Synthetic demo assets, deterministic and fast (numpy only): test and demo inputs, not production code.

- :func:`render_room`: an RGB-D view of a furnished room (textured wooden floor with a rug, papered walls
  with a picture, ceiling, a sofa, a cabinet and a ball), ray-cast analytically at any size. Returns the
  image (H, W, 3) uint8, the exact z-depth (H, W) float32 in metres and K (3, 3) in pixels (OpenCV,
  pixel centres at integer coordinates; the world frame is the camera frame).
- :func:`sneaker_mesh`: a sneaker-like coloured mesh built from primitives (sole, upper, toe cap, heel
  counter, tongue, laces), in metres, y up (mesh convention), toe along +x, sole at y = 0;
  :func:`sample_surface` turns it into a coloured point cloud (area-weighted, seeded).
- :func:`write_assets`: writes room.png, room_depth.npy, room_K.json, sneaker.ply (points) and
  sneaker_mesh.ply (faces) into a folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from objvid.client.ply import ply_bytes

# Room geometry in the room frame (x right, y down, z forward; floor at y = 0), metres.
CAMERA_HEIGHT = 1.5
CAMERA_PITCH_DEG = 15.0  # looking down
ROOM_X = (-3.0, 3.0)
ROOM_Z_BACK = 6.0
ROOM_Z_FRONT = -1.0
CEILING_Y = -2.8
FOCAL_FRACTION = 0.75  # fx = fy = 0.75 W

# (x0, x1, y0, y1, z0, z1) boxes and their material names.
_BOXES = (
    ((-2.2, 0.0, -0.45, 0.0, 4.8, 5.9), "sofa"),  # seat
    ((-2.2, 0.0, -0.95, 0.0, 5.55, 5.95), "sofa"),  # back
    ((-2.35, -2.2, -0.65, 0.0, 4.8, 5.95), "sofa_arm"),
    ((0.0, 0.15, -0.65, 0.0, 4.8, 5.95), "sofa_arm"),
    ((1.8, 2.95, -1.25, 0.0, 3.4, 4.6), "cabinet"),
)
_BALL = (np.array([-1.5, -0.32, 2.6]), 0.32)
_RUG = (-1.3, 1.3, 1.9, 4.1)  # x0, x1, z0, z1 on the floor
_PICTURE = (-1.7, -0.5, -1.95, -1.2)  # x0, x1, y0, y1 on the back wall


def room_intrinsics(width: int, height: int) -> np.ndarray:
    """K (3, 3) float64 of the demo camera: fx = fy = 0.75 W, principal point at the image centre."""
    f = FOCAL_FRACTION * width
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def _hash01(*ints: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random [0, 1) per integer tuple (a small integer hash)."""
    h = np.zeros(np.broadcast(*ints).shape, dtype=np.uint64)
    for i, v in enumerate(ints):
        h ^= (np.asarray(v).astype(np.int64).astype(np.uint64) + np.uint64(0x9E3779B9 + i)) * np.uint64(
            2654435761
        )
        h ^= h >> np.uint64(13)
        h *= np.uint64(0x5BD1E995)
        h ^= h >> np.uint64(15)
    return (h & np.uint64(0xFFFFFF)).astype(np.float64) / float(0x1000000)


@dataclass
class _Hits:
    t: np.ndarray  # (P,) ray parameter (= z-depth, rays have camera z = 1)
    material: np.ndarray  # (P,) int material index
    normal: np.ndarray  # (P, 3) room-frame normal


_MATERIALS = ("floor", "ceiling", "wall_back", "wall_left", "wall_right", "wall_front", "sofa", "sofa_arm",
              "cabinet", "ball")  # fmt: skip
_MAT = {name: i for i, name in enumerate(_MATERIALS)}


def _intersect(origin: np.ndarray, dirs: np.ndarray) -> _Hits:
    """Nearest hit of each ray (origin (3,), dirs (P, 3)) with the room's planes, boxes and ball."""
    p = dirs.shape[0]
    best = np.full(p, np.inf)
    mat = np.zeros(p, np.int64)
    normal = np.zeros((p, 3))
    with np.errstate(divide="ignore", invalid="ignore"):
        planes = (
            (1, 0.0, "floor", (0, -1, 0)),
            (1, CEILING_Y, "ceiling", (0, 1, 0)),
            (2, ROOM_Z_BACK, "wall_back", (0, 0, -1)),
            (0, ROOM_X[0], "wall_left", (1, 0, 0)),
            (0, ROOM_X[1], "wall_right", (-1, 0, 0)),
            (2, ROOM_Z_FRONT, "wall_front", (0, 0, 1)),
        )
        for axis, value, name, n in planes:
            t = (value - origin[axis]) / dirs[:, axis]
            hit = (t > 1e-6) & (t < best)
            best[hit], mat[hit], normal[hit] = t[hit], _MAT[name], n
        for (x0, x1, y0, y1, z0, z1), name in _BOXES:
            lo, hi = np.array([x0, y0, z0]), np.array([x1, y1, z1])
            ta = (lo - origin) / dirs
            tb = (hi - origin) / dirs
            tmin, tmax = np.minimum(ta, tb), np.maximum(ta, tb)
            t_near = tmin.max(axis=1)
            t_far = tmax.min(axis=1)
            hit = (t_near <= t_far) & (t_near > 1e-6) & (t_near < best)
            axis_hit = tmin.argmax(axis=1)
            n = np.zeros((p, 3))
            n[np.arange(p), axis_hit] = -np.sign(dirs[np.arange(p), axis_hit])
            best[hit], mat[hit], normal[hit] = t_near[hit], _MAT[name], n[hit]
        centre, radius = _BALL
        oc = origin - centre
        b = dirs @ oc
        a = (dirs * dirs).sum(axis=1)
        c = oc @ oc - radius * radius
        disc = b * b - a * c
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        hit = (disc > 0) & (t > 1e-6) & (t < best)
        best[hit], mat[hit] = t[hit], _MAT["ball"]
        pts = origin + t[hit, None] * dirs[hit]
        normal[hit] = (pts - centre) / radius
    return _Hits(best, mat, normal)


def _shade(points: np.ndarray, hits: _Hits) -> np.ndarray:
    """Albedo x (ambient + Lambert) per hit point -> (P, 3) float in [0, 1]."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    m = hits.material
    albedo = np.zeros_like(points)

    def put(name: str, rgb: np.ndarray) -> None:
        sel = m == _MAT[name]
        albedo[sel] = rgb[sel] if np.ndim(rgb) == 2 else rgb

    # Floor: planks 0.18 m wide with per-plank tone and grain; a patterned rug on top.
    plank = np.floor(x / 0.18)
    seg = np.floor(z / 1.2 + 0.37 * (plank % 3))
    tone = 0.75 + 0.25 * _hash01(plank, seg)
    grain = 0.9 + 0.1 * np.sin(z * 40.0 + 3.0 * _hash01(plank) * 6.28)
    seam = ((x / 0.18) % 1.0 < 0.04) | ((z / 1.2 + 0.37 * (plank % 3)) % 1.0 < 0.01)
    wood = np.stack([0.62, 0.42, 0.25]) * (tone * grain * np.where(seam, 0.55, 1.0))[:, None]
    rx0, rx1, rz0, rz1 = _RUG
    in_rug = (x > rx0) & (x < rx1) & (z > rz0) & (z < rz1)
    u, v = (x - rx0) / (rx1 - rx0), (z - rz0) / (rz1 - rz0)
    border = (u < 0.06) | (u > 0.94) | (v < 0.06) | (v > 0.94)
    diamonds = (np.abs((u * 6) % 1 - 0.5) + np.abs((v * 6) % 1 - 0.5)) < 0.3
    rug = np.where(
        border[:, None], [0.55, 0.12, 0.12], np.where(diamonds[:, None], [0.85, 0.75, 0.45], [0.2, 0.3, 0.55])
    )
    put("floor", np.where(in_rug[:, None], rug, wood))
    put("ceiling", np.array([0.93, 0.93, 0.9]))
    # Walls: striped paper; the back wall holds a picture (a sun over hills).
    stripes = 0.9 + 0.1 * (np.floor(x * 8) % 2)
    side = 0.9 + 0.1 * (np.floor(z * 8) % 2)
    put("wall_left", np.stack([0.78, 0.82, 0.72]) * side[:, None])
    put("wall_right", np.stack([0.78, 0.82, 0.72]) * side[:, None])
    put("wall_front", np.array([0.78, 0.82, 0.72]))
    px0, px1, py0, py1 = _PICTURE
    in_pic = (x > px0) & (x < px1) & (y > py0) & (y < py1)
    pu, pv = (x - px0) / (px1 - px0), (y - py0) / (py1 - py0)
    frame = (pu < 0.05) | (pu > 0.95) | (pv < 0.07) | (pv > 0.93)
    hill = pv > 0.62 + 0.12 * np.sin(pu * 7.0)
    sun = (pu - 0.7) ** 2 + (pv - 0.3) ** 2 < 0.015
    pic = np.where(
        frame[:, None], [0.25, 0.16, 0.08],
        np.where(hill[:, None], [0.25, 0.55, 0.2], np.where(sun[:, None], [0.98, 0.85, 0.2], [0.55, 0.75, 0.95])),
    )  # fmt: skip
    put("wall_back", np.where(in_pic[:, None], pic, np.stack([0.85, 0.8, 0.7]) * stripes[:, None]))
    weave = 0.92 + 0.08 * _hash01(np.floor(x * 60), np.floor(y * 60), np.floor(z * 60))
    put("sofa", np.stack([0.2, 0.35, 0.6]) * weave[:, None])
    put("sofa_arm", np.stack([0.16, 0.28, 0.5]) * weave[:, None])
    drawer = (np.abs(((-y) / 0.3125) % 1 - 0.5) > 0.47) | (np.abs(x - 2.375) < 0.01)
    knob = (np.abs(((-y) / 0.3125) % 1 - 0.5) < 0.06) & (np.abs(np.abs(x - 2.375) - 0.12) < 0.025)
    cab = np.stack([0.55, 0.36, 0.2]) * (0.9 + 0.1 * np.sin(x * 50))[:, None]
    put("cabinet", np.where((drawer | knob)[:, None], [0.2, 0.13, 0.07], cab))
    c, r = _BALL
    ball_stripe = (np.floor((np.arctan2(x - c[0], z - c[2]) + np.pi) / (np.pi / 4)) % 2) == 0
    put("ball", np.where(ball_stripe[:, None], [0.85, 0.15, 0.1], [0.95, 0.95, 0.92]))

    light = np.array([0.45, -0.8, 0.4])
    light /= np.linalg.norm(light)
    lambert = np.clip(-(hits.normal @ light), 0.0, 1.0)
    lamp = np.array([0.0, CEILING_Y + 0.1, 3.0])
    dist = np.linalg.norm(points - lamp, axis=1)
    light_amount = 0.45 + 0.4 * lambert + 0.35 / (1.0 + 0.15 * dist * dist)
    return np.clip(albedo * light_amount[:, None], 0.0, 1.0)


def render_room(width: int = 1280, height: int = 704) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ray-cast the demo room -> (image (H, W, 3) uint8, depth (H, W) float32 z in metres, K (3, 3) float64)."""
    if width < 16 or height < 16:
        raise ValueError(f"room size must be at least 16x16, got {width}x{height}")
    K = room_intrinsics(width, height)
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    dirs_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1).reshape(
        -1, 3
    )
    pitch = np.radians(CAMERA_PITCH_DEG)
    # Camera -> room rotation: forward (0, 0, 1) tilts down to (0, sin p, cos p) (y is down).
    R = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(pitch), np.sin(pitch)], [0.0, -np.sin(pitch), np.cos(pitch)]])
    dirs = dirs_cam @ R.T
    origin = np.array([0.0, -CAMERA_HEIGHT, 0.0])
    hits = _intersect(origin, dirs)
    points = origin + hits.t[:, None] * dirs
    rgb = _shade(points, hits)
    image = np.round(rgb * 255.0).astype(np.uint8).reshape(height, width, 3)
    depth = hits.t.astype(np.float32).reshape(height, width)  # camera-frame z, since dirs_cam have z = 1
    return image, depth, K


# ---------------------------------------------------------------------------------------------------
# The sneaker


@dataclass
class Mesh:
    """vertices (V, 3) float32 metres; faces (F, 3) int32; colors (V, 3) uint8 per vertex.

    part (F,) int: which primitive each face belongs to; solids: per primitive, a function
    (P, 3) float64 points -> (P,) bool "strictly inside" (used to drop hidden samples).
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    part: np.ndarray | None = None
    solids: list = field(default_factory=list)


_INSIDE_MARGIN = 1e-3  # metres: samples on touching surfaces are kept


def _ellipsoid(centre, radii, color, n_u=32, n_v=16, y_min=None) -> Mesh:
    """Ellipsoid (optionally cut at y >= y_min by clamping, giving a flat bottom) as a UV-sphere mesh."""
    th = np.linspace(0, np.pi, n_v + 1)
    ph = np.linspace(0, 2 * np.pi, n_u, endpoint=False)
    T, P = np.meshgrid(th, ph, indexing="ij")
    pts = np.stack([np.sin(T) * np.cos(P), np.cos(T), np.sin(T) * np.sin(P)], -1).reshape(-1, 3)
    pts = pts * np.asarray(radii) + np.asarray(centre)
    if y_min is not None:
        pts[:, 1] = np.maximum(pts[:, 1], y_min)
    faces = []
    for i in range(n_v):
        for j in range(n_u):
            a, b = i * n_u + j, i * n_u + (j + 1) % n_u
            c, d = a + n_u, b + n_u
            faces += [(a, c, b), (b, c, d)]
    cols = np.tile(np.asarray(color, np.uint8), (len(pts), 1))
    c, r = np.asarray(centre, float), np.asarray(radii, float) - _INSIDE_MARGIN
    floor = -np.inf if y_min is None else y_min + _INSIDE_MARGIN

    def inside(p: np.ndarray) -> np.ndarray:
        return ((((p - c) / r) ** 2).sum(axis=1) < 1.0) & (p[:, 1] > floor)

    faces = np.asarray(faces, np.int32)
    return Mesh(pts.astype(np.float32), faces, cols, np.zeros(len(faces), np.int64), [inside])


def _box(lo, hi, color) -> Mesh:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    quads = ((0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3))
    faces = np.asarray([f for a, b, c, d in quads for f in ((a, b, c), (a, c, d))], np.int32)

    def inside(p: np.ndarray) -> np.ndarray:
        return ((p > lo + _INSIDE_MARGIN) & (p < hi - _INSIDE_MARGIN)).all(axis=1)

    cols = np.tile(np.asarray(color, np.uint8), (8, 1))
    return Mesh(corners.astype(np.float32), faces, cols, np.zeros(len(faces), np.int64), [inside])


def _merge(parts: list[Mesh]) -> Mesh:
    verts, faces, cols, part, solids, offset = [], [], [], [], [], 0
    for m in parts:
        verts.append(m.vertices)
        faces.append(m.faces + offset)
        cols.append(m.colors)
        part.append(m.part + len(solids))
        solids += m.solids
        offset += len(m.vertices)
    return Mesh(np.concatenate(verts), np.concatenate(faces).astype(np.int32), np.concatenate(cols),
                np.concatenate(part), solids)  # fmt: skip


def sneaker_mesh() -> Mesh:
    """A sneaker ~0.30 m long (toe towards +x), 0.11 m wide (z), 0.13 m tall (y up), sole on y = 0."""
    white, red, navy, gum, grey = (240, 240, 236), (200, 30, 40), (25, 35, 80), (150, 95, 45), (200, 200, 205)
    parts = [
        _ellipsoid((0, 0.018, 0), (0.058, 0.02, 0.152), gum, y_min=0.0),  # sole
        _ellipsoid((0, 0.03, 0.002), (0.055, 0.016, 0.148), white, y_min=0.02),  # midsole
        _ellipsoid((0, 0.045, -0.015), (0.05, 0.075, 0.12), red, y_min=0.04),  # upper
        _ellipsoid((0, 0.05, 0.09), (0.046, 0.032, 0.05), white, y_min=0.04),  # toe cap
        _ellipsoid((0, 0.075, -0.105), (0.045, 0.055, 0.03), navy, y_min=0.04),  # heel counter
        _box((-0.022, 0.09, 0.0), (0.022, 0.13, 0.06), navy),  # tongue
    ]
    for k in range(4):  # laces across the instep
        z = 0.005 + 0.015 * k
        parts.append(_box((-0.035, 0.104 - 0.006 * k, z), (0.035, 0.11 - 0.006 * k, z + 0.006), grey))
    # A stripe on each side of the upper.
    parts.append(_box((0.047, 0.05, -0.07), (0.052, 0.065, 0.05), white))
    parts.append(_box((-0.052, 0.05, -0.07), (-0.047, 0.065, 0.05), white))
    mesh = _merge(parts)
    # Turn the toe from +z to +x (a rotation about y: (x, y, z) -> (z, y, -x)): objvid's placement faces
    # the object's +z towards the camera, so the camera sees the sneaker's side profile.
    x, y, z = mesh.vertices.T
    mesh.vertices = np.stack([z, y, -x], axis=1).astype(np.float32)
    mesh.solids = [(lambda p, f=f: f(np.stack([-p[:, 2], p[:, 1], p[:, 0]], axis=1))) for f in mesh.solids]
    return mesh


def sample_surface(mesh: Mesh, num_points: int = 250_000, seed: int = 0, with_normals: bool = False):
    """Area-weighted surface samples -> (positions (N, 3) float32, colors (N, 3) uint8); seeded, deterministic.

    With ``mesh.solids``, samples inside another primitive (hidden surfaces) are dropped, so the cloud is
    the visible outer shell only. ``with_normals`` adds (N, 3) float32 unit normals: the sampled face's
    normal turned away from its primitive's centre (every primitive is convex).
    """
    rng = np.random.default_rng(seed)
    tri = mesh.vertices[mesh.faces].astype(np.float64)  # (F, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    prob = area / area.sum()
    pos_all, col_all, nrm_all, have = [], [], [], 0
    while have < num_points:
        n = 2 * (num_points - have) + 1000
        face = rng.choice(len(area), size=n, p=prob)
        r1, r2 = rng.random(n), rng.random(n)
        s = np.sqrt(r1)
        w = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)  # barycentric weights
        pos = (tri[face] * w[:, :, None]).sum(axis=1)
        cols = (mesh.colors[mesh.faces[face]].astype(np.float64) * w[:, :, None]).sum(axis=1)
        nrm = np.cross(tri[face, 1] - tri[face, 0], tri[face, 2] - tri[face, 0])
        if mesh.part is not None:  # outwards from the primitive's vertex centroid
            centre = np.stack([mesh.vertices[mesh.faces[mesh.part == k]].reshape(-1, 3).mean(0)
                               for k in range(int(mesh.part.max()) + 1)])  # fmt: skip
            flip = np.einsum("ij,ij->i", nrm, pos - centre[mesh.part[face]]) < 0
            nrm[flip] *= -1
        keep = np.ones(n, bool)
        if mesh.solids and mesh.part is not None:
            for k, inside in enumerate(mesh.solids):
                keep &= ~(inside(pos) & (mesh.part[face] != k))
        pos_all.append(pos[keep])
        col_all.append(cols[keep])
        nrm_all.append(nrm[keep])
        have += int(keep.sum())
    pos = np.concatenate(pos_all)[:num_points]
    cols = np.concatenate(col_all)[:num_points]
    out = pos.astype(np.float32), np.clip(np.round(cols), 0, 255).astype(np.uint8)
    if not with_normals:
        return out
    nrm = np.concatenate(nrm_all)[:num_points]
    return (*out, (nrm / np.linalg.norm(nrm, axis=1, keepdims=True)).astype(np.float32))


def write_assets(
    out_dir: str | Path, width: int = 1280, height: int = 704, num_points: int = 250_000
) -> dict:
    """Write the demo assets into ``out_dir``; returns {name: path}.

    room.png (H, W, 3), room_depth.npy float32 (H, W) metres, room_K.json {"K", "width", "height"},
    sneaker.ply (coloured points with outward normals, metres, y up), sneaker_mesh.ply (the mesh with faces).
    """
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image, depth, K = render_room(width, height)
    paths = {
        "image": out / "room.png",
        "depth": out / "room_depth.npy",
        "intrinsics": out / "room_K.json",
        "object": out / "sneaker.ply",
        "mesh": out / "sneaker_mesh.ply",
    }
    Image.fromarray(image).save(paths["image"], compress_level=1)
    np.save(paths["depth"], depth)
    paths["intrinsics"].write_text(json.dumps({"K": K.tolist(), "width": width, "height": height}, indent=1))
    mesh = sneaker_mesh()
    pos, cols, nrm = sample_surface(mesh, num_points, with_normals=True)
    paths["object"].write_bytes(ply_bytes(pos, cols, normals=nrm))
    paths["mesh"].write_bytes(ply_bytes(mesh.vertices, mesh.colors, mesh.faces))
    return {k: str(v) for k, v in paths.items()}
