"""Object loaders: what users really have -> (points (N,3) float32, colours (N,3) uint8).

- PLY (own parser): ascii, binary_little_endian, binary_big_endian; any scalar types; colour properties
  red/green/blue, r/g/b or diffuse_red/diffuse_green/diffuse_blue (integer types 0..255, ushort scaled
  by 1/257, float types in [0,1], or [0,255] when any value exceeds 1); extra properties and elements
  ignored. With a face element the mesh is sampled (below), else the vertices are the points.
- OBJ, GLB / GLTF, STL through trimesh: meshes are sampled, point clouds returned as they are.
- Meshes are sampled uniformly by area (``sample_points`` points, seeded): colour from the texture at
  the interpolated UV (times the material colour factor), else interpolated vertex colours, else face
  colours, else the material colour, else ``DEFAULT_COLOR``.
- Clouds without colours get ``DEFAULT_COLOR`` (200, 200, 200).
Errors are ``ValueError("<file>: <reason>")``: unreadable, unsupported format, zero points, non-finite
coordinates.
"""

from __future__ import annotations

import io as _io
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_COLOR = (200, 200, 200)
DEFAULT_SAMPLE_POINTS = 100_000
FORMATS = ("ply", "obj", "glb", "gltf", "stl")

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_COLOR_NAMES = (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue"))


def load_object(
    path_or_bytes: str | os.PathLike | bytes,
    filename: str | None = None,
    sample_points: int = DEFAULT_SAMPLE_POINTS,
    seed: int = 0,
    with_normals: bool = False,
):
    """Load a point cloud or mesh file. ``filename`` names bytes input (its extension picks the format;
    without it the format is sniffed). Returns (points (N,3) float32, colors (N,3) uint8), plus normals
    (N,3) float32 with ``with_normals``: the sampled face's normal for meshes (its winding: outward for
    consistently wound meshes), a PLY cloud's nx/ny/nz, else None (see ``objvid.cache.normals``)."""
    if isinstance(path_or_bytes, bytes | bytearray | memoryview):
        data = bytes(path_or_bytes)
        name = filename or "<bytes>"
        path = None
    else:
        path = Path(path_or_bytes)
        name = filename or str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"{name}: unreadable ({exc.strerror or exc})") from exc
    if isinstance(sample_points, bool) or not isinstance(sample_points, int) or sample_points <= 0:
        raise ValueError(f"sample_points: expected a positive int, got {sample_points!r}")
    if not data:
        raise ValueError(f"{name}: unreadable (empty file)")
    fmt = _format(name, data)
    rng = np.random.default_rng(seed)
    try:
        if fmt == "ply":
            pts, col, nrm = _load_ply(data, sample_points, rng)
        else:
            pts, col, nrm = _load_trimesh(data, fmt, path, sample_points, rng)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from exc
    except Exception as exc:  # parser errors of any kind: report, never a bare traceback
        raise ValueError(f"{name}: unreadable {fmt.upper()} ({type(exc).__name__}: {exc})") from exc
    if len(pts) == 0:
        raise ValueError(f"{name}: zero points")
    if not np.isfinite(pts).all():
        raise ValueError(f"{name}: non-finite coordinates (NaN or inf)")
    pts32 = pts.astype(np.float32)
    if not np.isfinite(pts32).all():
        raise ValueError(f"{name}: coordinates overflow float32")
    out = np.ascontiguousarray(pts32), np.ascontiguousarray(col.astype(np.uint8))
    if not with_normals:
        return out
    if nrm is not None:
        nrm = np.nan_to_num(np.asarray(nrm, np.float64))
        length = np.linalg.norm(nrm, axis=1, keepdims=True)
        nrm = np.where(length > 0, nrm / np.where(length > 0, length, 1), 0.0).astype(np.float32)
    return (*out, nrm)


def _format(name: str, data: bytes) -> str:
    ext = Path(name).suffix.lower().lstrip(".")
    if ext in FORMATS:
        return ext
    if ext:
        raise ValueError(f"{name}: unsupported format '.{ext}' (supported: {', '.join(FORMATS)})")
    head = data[:256]
    if head.startswith(b"ply"):
        return "ply"
    if head.startswith(b"glTF"):
        return "glb"
    if head.lstrip().startswith(b"{"):
        return "gltf"
    if head.startswith(b"solid") or (
        len(data) >= 84 and len(data) == 84 + 50 * int.from_bytes(data[80:84], "little")
    ):
        return "stl"
    if re.search(rb"^v\s", head, re.M):
        return "obj"
    raise ValueError(f"{name}: unsupported format (could not recognise the content; name the file)")


# ------------------------------------------------------------------------------------------------ PLY
def _parse_header(data: bytes):
    m = re.search(rb"end_header[ \t]*\r?\n", data[: 1 << 20])
    if not data.startswith(b"ply") or m is None:
        raise ValueError("unreadable PLY (no 'ply' magic or no end_header)")
    lines = data[: m.start()].decode("ascii", "replace").splitlines()
    fmt, elements = None, []
    for line in lines[1:]:
        tok = line.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        if tok[0] == "format":
            fmt = tok[1]
        elif tok[0] == "element":
            count = int(tok[2])
            if count < 0:
                raise ValueError(f"unreadable PLY (negative {tok[1]} count {count})")
            elements.append({"name": tok[1], "count": count, "props": []})
        elif tok[0] == "property":
            if not elements:
                raise ValueError("unreadable PLY (property before element)")
            if tok[1] == "list":
                elements[-1]["props"].append((tok[4], "list", _ply_type(tok[2]), _ply_type(tok[3])))
            else:
                elements[-1]["props"].append((tok[2], _ply_type(tok[1]), None, None))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ValueError(f"unsupported PLY format {fmt!r}")
    return fmt, elements, m.end()


def _ply_type(t: str) -> str:
    if t not in _PLY_TYPES:
        raise ValueError(f"unreadable PLY (unknown property type {t!r})")
    return _PLY_TYPES[t]


def _load_ply(data: bytes, sample_points: int, rng):
    fmt, elements, offset = _parse_header(data)
    read = _read_ascii if fmt == "ascii" else _read_binary
    tables = read(data, offset, elements, "<" if fmt == "binary_little_endian" else ">")
    if "vertex" not in tables:
        raise ValueError("zero points (no vertex element)")
    vert = tables["vertex"]
    names = vert.dtype.names or ()
    if not all(a in names for a in "xyz"):
        raise ValueError("no x/y/z vertex properties")
    pts = np.stack([vert["x"], vert["y"], vert["z"]], 1).astype(np.float64)
    col = _ply_colors(vert)
    faces = tables.get("face")
    if faces is not None and len(faces):
        if not np.isfinite(pts).all():
            raise ValueError("non-finite coordinates (NaN or inf)")
        if faces.max() >= len(pts) or faces.min() < 0:
            raise ValueError("face index out of range")
        return _sample_mesh([_Geom(pts, faces, vertex_colors=col)], sample_points, rng)
    if col is None:
        col = np.tile(np.array(DEFAULT_COLOR, np.uint8), (len(pts), 1))
    nrm = np.stack([vert["nx"], vert["ny"], vert["nz"]], 1) if all(f"n{a}" in names for a in "xyz") else None
    return pts, col, nrm


def _ply_colors(vert: np.ndarray) -> np.ndarray | None:
    names = vert.dtype.names or ()
    for trio in _COLOR_NAMES:
        if all(n in names for n in trio):
            c = np.stack([vert[n] for n in trio], 1)
            kind = vert.dtype[trio[0]]
            if kind.kind == "f":
                c = c.astype(np.float64)
                c = np.nan_to_num(c, nan=0.0)
                scale = 255.0 if c.size and c.max() <= 1.0 else 1.0
                return np.clip(np.rint(c * scale), 0, 255).astype(np.uint8)
            if kind.itemsize == 2:
                return (c.astype(np.uint32) // 257).clip(0, 255).astype(np.uint8)
            return np.clip(c.astype(np.int64), 0, 255).astype(np.uint8)
    return None


def _needed(elements) -> set[str]:
    """Elements to parse: vertex, plus face when present (parsing stops once both are read)."""
    return {"vertex"} | ({"face"} if any(e["name"] == "face" for e in elements) else set())


def _read_binary(data: bytes, offset: int, elements, endian: str) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    needed = _needed(elements)
    for el in elements:
        if needed <= out.keys():
            break
        if all(p[1] != "list" for p in el["props"]):
            dt = np.dtype([(p[0], endian + p[1]) for p in el["props"]])
            nbytes = dt.itemsize * el["count"]
            if offset + nbytes > len(data):
                raise ValueError(f"unreadable PLY (truncated {el['name']} data)")
            out[el["name"]] = np.frombuffer(data, dt, el["count"], offset)
            offset += nbytes
        else:
            faces, offset = _binary_lists(data, offset, el, endian)
            if el["name"] == "face":
                out["face"] = faces
    return out


def _binary_lists(data: bytes, offset: int, el, endian: str):
    """Element with list properties -> triangles (F,3) int64 of its vertex_indices (fan-triangulated)."""
    props = el["props"]
    key = next((p[0] for p in props if p[1] == "list" and p[0] in ("vertex_indices", "vertex_index")), None)
    n = el["count"]
    # fast path: one list property of triangles only
    if len(props) == 1 and props[0][1] == "list" and n:
        cdt, idt = np.dtype(endian + props[0][2]), np.dtype(endian + props[0][3])
        dt = np.dtype([("n", cdt), ("i", idt, (3,))])
        if offset + dt.itemsize * n <= len(data):
            rec = np.frombuffer(data, dt, n, offset)
            if (rec["n"] == 3).all():
                return rec["i"].astype(np.int64), offset + dt.itemsize * n
    tris = []
    for _ in range(n):
        for name, kind, ctype, itype in props:
            if kind != "list":
                offset += np.dtype(kind).itemsize
                continue
            cdt, idt = np.dtype(endian + ctype), np.dtype(endian + itype)
            if offset + cdt.itemsize > len(data):
                raise ValueError(f"unreadable PLY (truncated {el['name']} data)")
            cnt = int(np.frombuffer(data, cdt, 1, offset)[0])
            offset += cdt.itemsize
            if offset + cnt * idt.itemsize > len(data):
                raise ValueError(f"unreadable PLY (truncated {el['name']} data)")
            idx = np.frombuffer(data, idt, cnt, offset).astype(np.int64)
            offset += cnt * idt.itemsize
            if name == key:
                tris.extend((idx[0], idx[j], idx[j + 1]) for j in range(1, cnt - 1))
    return np.array(tris, np.int64).reshape(-1, 3), offset


def _read_ascii(data: bytes, offset: int, elements, endian: str) -> dict[str, np.ndarray]:
    tokens = data[offset:].split()
    pos = 0
    out: dict[str, np.ndarray] = {}
    needed = _needed(elements)
    for el in elements:
        if needed <= out.keys():
            break
        props, n = el["props"], el["count"]
        if all(p[1] != "list" for p in props):
            k = len(props)
            if pos + n * k > len(tokens):
                raise ValueError(f"unreadable PLY (truncated {el['name']} data)")
            block = np.array(tokens[pos : pos + n * k], dtype=np.float64).reshape(n, k)
            pos += n * k
            rec = np.empty(n, dtype=[(p[0], p[1]) for p in props])
            for j, p in enumerate(props):
                rec[p[0]] = block[:, j]
            out[el["name"]] = rec
            continue
        key = next(
            (p[0] for p in props if p[1] == "list" and p[0] in ("vertex_indices", "vertex_index")), None
        )
        tris = []
        for _ in range(n):
            for name, kind, _c, _i in props:
                if kind != "list":
                    pos += 1
                    continue
                cnt = int(tokens[pos])
                idx = [int(t) for t in tokens[pos + 1 : pos + 1 + cnt]]
                if len(idx) != cnt:
                    raise ValueError(f"unreadable PLY (truncated {el['name']} data)")
                pos += 1 + cnt
                if name == key:
                    tris.extend((idx[0], idx[j], idx[j + 1]) for j in range(1, cnt - 1))
        if el["name"] == "face":
            out["face"] = np.array(tris, np.int64).reshape(-1, 3)
    return out


# ------------------------------------------------------------------------------------------------ meshes
class _Geom:
    """A triangle mesh (or a cloud when ``faces`` is None) with optional colour sources."""

    def __init__(
        self,
        vertices,
        faces=None,
        vertex_colors=None,
        face_colors=None,
        uv=None,
        texture=None,
        base_color=None,
    ):
        self.vertices = np.asarray(vertices, np.float64)
        self.faces = None if faces is None else np.asarray(faces, np.int64)
        self.vertex_colors = vertex_colors
        self.face_colors = face_colors
        self.uv = uv
        self.texture = texture  # (h, w, 3) uint8
        self.base_color = base_color  # (3,) uint8 or None


def _sample_mesh(geoms: list[_Geom], count: int, rng):
    """Area-uniform samples over all triangles of all meshes; clouds are appended as they are.
    -> points, colours, normals (face normals; zero for cloud points) or None when nothing is a mesh."""
    clouds = [g for g in geoms if g.faces is None or len(g.faces) == 0]
    meshes = [g for g in geoms if g.faces is not None and len(g.faces)]
    pts_out, col_out, nrm_out = [], [], []
    for g in clouds:
        pts_out.append(g.vertices)
        nrm_out.append(np.zeros_like(g.vertices))
        col_out.append(
            g.vertex_colors if g.vertex_colors is not None else _default(len(g.vertices), g.base_color)
        )
    if meshes:
        areas = []
        for g in meshes:
            tri = g.vertices[g.faces]
            areas.append(0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1))
        totals = np.array([a.sum() for a in areas])
        if not np.isfinite(totals).all():
            raise ValueError("non-finite coordinates (NaN or inf)")
        if totals.sum() <= 0:
            raise ValueError("zero points (mesh has zero surface area)")
        per_mesh = rng.multinomial(count, totals / totals.sum())
        for g, a, k in zip(meshes, areas, per_mesh, strict=True):
            if k == 0:
                continue
            fi = rng.choice(len(a), size=k, p=a / a.sum())
            r1, r2 = np.sqrt(rng.random(k)), rng.random(k)
            bary = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], 1)
            corners = g.faces[fi]
            tri = g.vertices[corners]
            pts_out.append(np.einsum("kj,kjd->kd", bary, tri))
            col_out.append(_sample_colors(g, fi, corners, bary))
            nrm_out.append(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]))
    return np.concatenate(pts_out), np.concatenate(col_out), (np.concatenate(nrm_out) if meshes else None)


def _default(n: int, base=None) -> np.ndarray:
    c = np.array(DEFAULT_COLOR if base is None else base, np.uint8)[:3]
    return np.tile(c, (n, 1))


def _sample_colors(g: _Geom, fi, corners, bary) -> np.ndarray:
    if g.texture is not None and g.uv is not None and len(g.uv) == len(g.vertices):
        uv = np.einsum("kj,kjd->kd", bary, g.uv[corners])
        h, w = g.texture.shape[:2]
        x = np.clip(np.floor((uv[:, 0] % 1.0) * w), 0, w - 1).astype(np.int64)
        y = np.clip(np.floor((1.0 - uv[:, 1] % 1.0) * h), 0, h - 1).astype(np.int64)
        c = g.texture[y, x, :3].astype(np.float64)
        if g.base_color is not None:
            c = c * (np.asarray(g.base_color[:3], np.float64) / 255.0)
        return np.clip(np.rint(c), 0, 255).astype(np.uint8)
    if g.vertex_colors is not None:
        c = np.einsum("kj,kjd->kd", bary, g.vertex_colors[corners, :3].astype(np.float64))
        return np.clip(np.rint(c), 0, 255).astype(np.uint8)
    if g.face_colors is not None:
        return g.face_colors[fi, :3].astype(np.uint8)
    return _default(len(fi), g.base_color)


def _load_trimesh(data: bytes, fmt: str, path: Path | None, count: int, rng):
    import trimesh

    if path is not None:
        loaded = trimesh.load(str(path), file_type=fmt, process=False)
    else:
        loaded = trimesh.load(_io.BytesIO(data), file_type=fmt, process=False)
    if isinstance(loaded, trimesh.Scene):
        geoms = loaded.dump(concatenate=False) if len(loaded.geometry) else []
    else:
        geoms = [loaded]
    parts = [_from_trimesh(g, trimesh) for g in geoms]
    parts = [p for p in parts if p is not None and len(p.vertices)]
    if not parts:
        raise ValueError("zero points (no geometry in the file)")
    return _sample_mesh(parts, count, rng)


def _from_trimesh(g: Any, trimesh) -> _Geom | None:
    if isinstance(g, trimesh.PointCloud):
        cols = getattr(g, "colors", None)
        vc = (
            np.asarray(cols)[:, :3].astype(np.uint8)
            if cols is not None and len(cols) == len(g.vertices)
            else None
        )
        return _Geom(g.vertices, None, vertex_colors=vc)
    if not isinstance(g, trimesh.Trimesh):
        return None
    vis = g.visual
    vc = fc = uv = tex = base = None
    if vis.kind == "texture" or isinstance(vis, trimesh.visual.texture.TextureVisuals):
        mat = getattr(vis, "material", None)
        img = None
        if mat is not None:
            img = getattr(mat, "baseColorTexture", None)
            if img is None:
                img = getattr(mat, "image", None)
            factor = getattr(mat, "baseColorFactor", None)  # glTF: multiplies the texture
            if factor is None and img is None:
                factor = getattr(mat, "diffuse", None)  # OBJ/MTL Kd: the colour when there is no texture
            if factor is not None:
                f = np.asarray(factor)
                base = (np.clip(f * 255, 0, 255) if f.dtype.kind == "f" and f.max() <= 1 else f).astype(
                    np.uint8
                )[:3]
        if img is not None and vis.uv is not None:
            tex = np.asarray(img.convert("RGB"))
            uv = np.asarray(vis.uv, np.float64)
    elif vis.kind == "vertex":
        vc = np.asarray(vis.vertex_colors)[:, :3].astype(np.uint8)
    elif vis.kind == "face":
        fc = np.asarray(vis.face_colors)[:, :3].astype(np.uint8)
    return _Geom(g.vertices, g.faces, vertex_colors=vc, face_colors=fc, uv=uv, texture=tex, base_color=base)
