"""Object loaders: what users really have -> (points (N,3) float32, colours (N,3) uint8).

Every format is parsed by trimesh, behind checks that bound it before it allocates (``io_limits``):

- PLY (``io_ply``): ascii, binary_little_endian, binary_big_endian; any scalar types; colour properties
  red/green/blue, r/g/b or diffuse_red/diffuse_green/diffuse_blue (integer types 0..255, ushort scaled by
  1/257, float types in [0,1], or [0,255] when any value exceeds 1); extra properties and elements ignored.
  With a face element the mesh is sampled (below), else the vertices are the points.
- GLB / GLTF (``io_gltf`` checks the container, accessors, instancing and texture sizes first), OBJ and
  STL (declared counts checked): meshes are sampled, point clouds returned as they are. A ``.gltf`` must
  be self-contained (embedded buffers); the client turns a ``.gltf`` or an ``.obj`` with its ``.mtl`` and
  textures into one GLB (``objvid.client.bundle``).
- Meshes are sampled uniformly by area (``sample_points`` points, seeded): colour from the texture at
  the interpolated UV (times the material colour factor), else interpolated vertex colours, else face
  colours, else the material colour, else ``DEFAULT_COLOR``.
- Clouds without colours get ``DEFAULT_COLOR`` (200, 200, 200).
Errors: ``ObjectFileError("<file>: <reason>")`` (a ValueError) (unreadable, unsupported format, zero points, non-finite
coordinates) or ``LoadLimitExceeded("<file>: <part>: <value> is over the limit of <n> (--flag)")``.
The parsers hold the GIL and cannot be interrupted: the cache service runs ``load_object`` in a worker
process (``parse_pool``) that it kills on deadline, cancellation or timeout.
"""

from __future__ import annotations

import io as _io
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .io_limits import LoadLimitExceeded, LoadLimits, ObjectFileError

DEFAULT_COLOR = (200, 200, 200)
DEFAULT_SAMPLE_POINTS = 100_000
FORMATS = ("ply", "obj", "glb", "gltf", "stl")
#: Largest coordinate magnitude accepted (beyond it no placement scale or render is meaningful).
MAX_ABS_COORD = 1e12


def load_object(
    path_or_bytes: str | os.PathLike | bytes,
    filename: str | None = None,
    sample_points: int = DEFAULT_SAMPLE_POINTS,
    seed: int = 0,
    limits: LoadLimits | None = None,
    with_normals: bool = False,
):
    """Load a point cloud or mesh file. ``filename`` names bytes input (its extension picks the format;
    without it the format is sniffed). Returns (points (N,3) float32, colors (N,3) uint8), plus normals
    (N,3) float32 with ``with_normals``: the sampled face's normal for meshes (its winding: outward for
    consistently wound meshes), a PLY cloud's nx/ny/nz, else None (see ``objvid.cache.normals``)."""
    limits = limits or LoadLimits()
    if isinstance(sample_points, bool) or not isinstance(sample_points, int) or sample_points <= 0:
        raise ObjectFileError(f"sample_points: expected a positive int, got {sample_points!r}")
    limits.check("sample_points", sample_points, "max_sample_points")
    data, name, path = _read_input(path_or_bytes, filename, limits)
    fmt = _format(name, data)
    pts, col, nrm = _parse(data, fmt, name, path, sample_points, np.random.default_rng(seed), limits)
    out = _checked_points(pts, name), np.ascontiguousarray(col.astype(np.uint8))
    if not with_normals:
        return out
    if nrm is not None:
        nrm = np.nan_to_num(np.asarray(nrm, np.float64))
        length = np.linalg.norm(nrm, axis=1, keepdims=True)
        nrm = np.where(length > 0, nrm / np.where(length > 0, length, 1), 0.0).astype(np.float32)
    return (*out, nrm)


def _read_input(path_or_bytes, filename: str | None, limits: LoadLimits) -> tuple[bytes, str, Path | None]:
    """(bytes, the name errors use, the path or None), the size checked before a file is read."""
    if isinstance(path_or_bytes, bytes | bytearray | memoryview):
        data, name, path = bytes(path_or_bytes), filename or "<bytes>", None
    else:
        path = Path(path_or_bytes)
        name = filename or str(path)
        try:
            limits.check(f"{name}: file size", path.stat().st_size, "max_object_bytes", " bytes")
            data = path.read_bytes()
        except OSError as exc:
            raise ObjectFileError(f"{name}: unreadable ({exc.strerror or exc})") from exc
    if not data:
        raise ObjectFileError(f"{name}: unreadable (empty file)")
    limits.check(f"{name}: file size", len(data), "max_object_bytes", " bytes")
    return data, name, path


def _parse(data: bytes, fmt: str, name: str, path: Path | None, count: int, rng, limits: LoadLimits):
    """The format's loader; every error becomes one line starting with the file's name."""
    try:
        with _pillow_limit(limits.max_texture_pixels):
            if fmt == "ply":
                return _load_ply(data, count, rng, limits)
            return _load_trimesh(data, fmt, path, count, rng, limits)
    except LoadLimitExceeded as exc:
        raise LoadLimitExceeded(f"{name}: {exc}") from None
    except ObjectFileError as exc:
        raise ObjectFileError(f"{name}: {_first_line(exc)}") from None
    except MemoryError:
        raise LoadLimitExceeded(f"{name}: ran out of memory while parsing (--parse-memory)") from None
    except RecursionError:
        raise ObjectFileError(f"{name}: unreadable {fmt.upper()} (nested too deeply)") from None
    except Exception as exc:  # parser errors of any kind: report, never a bare traceback
        raise ObjectFileError(
            f"{name}: unreadable {fmt.upper()} ({type(exc).__name__}: {_first_line(exc)})"
        ) from None


def _checked_points(pts: np.ndarray, name: str) -> np.ndarray:
    """(N, 3) float32, C-ordered: at least one point, finite, within +-MAX_ABS_COORD."""
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise ObjectFileError(f"{name}: zero points (no vertex with x, y and z)")
    if not np.isfinite(pts).all():
        raise ObjectFileError(f"{name}: non-finite coordinates (NaN or inf)")
    big = float(np.abs(pts).max())
    if big > MAX_ABS_COORD:
        raise ObjectFileError(
            f"{name}: coordinates up to {big:.3g} are beyond +-{MAX_ABS_COORD:g} (rescale the object)"
        )
    return np.ascontiguousarray(pts.astype(np.float32))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""


def estimate_load_bytes(nbytes: int, sample_points: int) -> int:
    """Host bytes ``load_object`` may hold at its peak for a file of ``nbytes`` (a generous rule of thumb
    measured on the test files: parsed tables ~10x the file, sampling ~200 bytes per point)."""
    return 16 * nbytes + 200 * sample_points + (32 << 20)


@contextmanager
def _pillow_limit(pixels: int):
    """Pillow's decompression-bomb guard at the texture limit while parsing (errors above it, not 2x)."""
    from PIL import Image

    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max(1, pixels // 2)
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _format(name: str, data: bytes) -> str:
    ext = Path(name).suffix.lower().lstrip(".")
    if ext in FORMATS:
        return ext
    if ext:
        raise ObjectFileError(f"{name}: unsupported format '.{ext}' (supported: {', '.join(FORMATS)})")
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
    raise ObjectFileError(f"{name}: unsupported format (could not recognise the content; name the file)")


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
            raise ObjectFileError("non-finite coordinates (NaN or inf)")
        if totals.sum() <= 0:
            raise ObjectFileError("zero points (mesh has zero surface area)")
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


def _load_ply(data: bytes, count: int, rng, limits: LoadLimits) -> tuple[np.ndarray, np.ndarray]:
    from .io_ply import check_ply, load_ply

    header = check_ply(data, limits)
    pts, faces, col, nrm = load_ply(data, header)
    if faces is not None:
        if not np.isfinite(pts).all():
            raise ObjectFileError("non-finite coordinates (NaN or inf)")
        if faces.max() >= len(pts) or faces.min() < 0:
            raise ObjectFileError("face index out of range")
        return _sample_mesh([_Geom(pts, faces, vertex_colors=col)], count, rng)
    if col is None:
        col = _default(len(pts))
    return pts, col, nrm


def _check_counts(data: bytes, fmt: str, limits: LoadLimits) -> None:
    """OBJ / STL: declared or counted elements against the limits, before trimesh parses."""
    if fmt == "obj":
        lines = {
            k: len(re.findall(rb"(?m)^[ \t]*" + k + rb"[ \t]", data)) for k in (rb"v", rb"f", rb"vt", rb"vn")
        }
        limits.check("vertices + faces", lines[rb"v"] + lines[rb"f"], "max_mesh_elements")
        limits.check("texture coordinates + normals", lines[rb"vt"] + lines[rb"vn"], "max_mesh_elements")
    elif fmt == "stl" and not data[:5].lower().startswith(b"solid"):
        if len(data) < 84:
            raise ObjectFileError(f"unreadable STL (binary header needs 84 bytes, {len(data)} present)")
        n = int.from_bytes(data[80:84], "little")
        if 84 + 50 * n > len(data):
            raise ObjectFileError(
                f"truncated STL (declares {n} triangles = {84 + 50 * n} bytes, {len(data)} present)"
            )
        limits.check("triangles x 4 (3 corners + 1 face)", 4 * n, "max_mesh_elements")
    elif fmt == "stl":
        limits.check("facets x 4 (3 corners + 1 face)", 4 * data.count(b"facet normal"), "max_mesh_elements")


def _load_trimesh(data: bytes, fmt: str, path: Path | None, count: int, rng, limits: LoadLimits):
    import trimesh

    if fmt in ("glb", "gltf") and path is None:
        from .io_gltf import check_gltf

        check_gltf(data, fmt, limits)
    else:
        _check_counts(data, fmt, limits)
    if path is not None:  # a local file: trimesh resolves its .mtl / .bin / textures beside it
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
        raise ObjectFileError("zero points (no geometry in the file)")
    cloud_points = sum(len(p.vertices) for p in parts if p.faces is None or len(p.faces) == 0)
    limits.check("point cloud points", cloud_points, "max_points")
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
