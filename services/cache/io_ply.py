"""PLY through trimesh's reader, behind a header check that bounds it before it allocates.

``check_ply`` reads only the header (at most 64 KiB) and refuses, naming the element: a missing ``ply`` /
``format`` / ``end_header``, unknown property types, negative or non-integer counts, counts over the limits
(``max_points`` vertices for clouds, ``max_mesh_elements`` vertices + faces for meshes), and declared data
that cannot fit the bytes present (binary: ``count x`` the smallest row size; ASCII: one line per row).
Only then does trimesh parse (``load_ply``); its raw element tables give the colours under any of the usual
names (``red/green/blue``, ``r/g/b``, ``diffuse_red/...``; integer, 16-bit or float values).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

import numpy as np

from .io_limits import LoadLimits, ObjectFileError

_SIZES = {
    "char": 1, "int8": 1, "uchar": 1, "uint8": 1, "short": 2, "int16": 2, "ushort": 2, "uint16": 2,
    "int": 4, "int32": 4, "uint": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8,
}  # fmt: skip
_COLOR_NAMES = (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue"))
_HEADER_MAX = 64 << 10
_FORMATS = ("ascii", "binary_little_endian", "binary_big_endian")


@dataclass
class PlyHeader:
    format: str
    #: (name, count, fixed bytes per row, number of list properties)
    elements: list[tuple[str, int, int, int]] = field(default_factory=list)
    data_offset: int = 0
    vertex_properties: list[str] = field(default_factory=list)
    #: bytes of data the header declares when no element has list properties (exact), else None
    exact_bytes: int | None = None

    def count(self, name: str) -> int:
        return sum(c for n, c, _, _ in self.elements if n == name)


def check_ply(data: bytes, limits: LoadLimits) -> PlyHeader:
    """Validate the header and the declared sizes (see module docstring). Raises ObjectFileError or
    LoadLimitExceeded."""
    m = re.search(rb"end_header[ \t]*\r?\n", data[:_HEADER_MAX])
    if not data.startswith(b"ply") or m is None:
        raise ObjectFileError("unreadable PLY (no 'ply' magic or no end_header in the first 64 KiB)")
    header = PlyHeader(format="")
    elements: list[list] = []
    lines = data[: m.start()].decode("ascii", "replace").splitlines()
    for number, line in enumerate(lines[1:], start=2):
        _header_line(line.split(), f"header line {number}", header, elements)
    if not header.format:
        raise ObjectFileError("unreadable PLY (no format line)")
    header.elements = [tuple(e) for e in elements]  # type: ignore[misc]
    header.data_offset = m.end()
    _check_counts(header, limits)
    _check_sizes(header, data)
    return header


def _header_line(tok: list[str], where: str, header: PlyHeader, elements: list[list]) -> None:
    """One header line: ``format``, ``element`` (a new [name, count, fixed row bytes, list props]) or
    ``property`` (added to the last element)."""
    if not tok or tok[0] in ("comment", "obj_info", "end_header"):
        return
    if tok[0] == "format":
        if len(tok) < 2 or tok[1] not in _FORMATS:
            raise ObjectFileError(f"unsupported PLY format {' '.join(tok[1:2])!r} ({where})")
        header.format = tok[1]
    elif tok[0] == "element":
        if len(tok) != 3 or not re.fullmatch(r"[+-]?\d{1,19}", tok[2]):
            raise ObjectFileError(f"unreadable PLY ({where}: expected 'element <name> <count>')")
        if int(tok[2]) < 0:
            raise ObjectFileError(f"unreadable PLY (negative {tok[1]} count {int(tok[2])})")
        elements.append([tok[1], int(tok[2]), 0, 0])
    elif tok[0] == "property":
        if not elements:
            raise ObjectFileError(f"unreadable PLY ({where}: property before any element)")
        _property(tok, where, elements[-1], header)
    else:
        raise ObjectFileError(f"unreadable PLY ({where}: unknown keyword {tok[0]!r:.20})")


def _property(tok: list[str], where: str, element: list, header: PlyHeader) -> None:
    if len(tok) == 5 and tok[1] == "list":
        if tok[2] not in _SIZES or tok[3] not in _SIZES:
            raise ObjectFileError(f"unreadable PLY ({where}: unknown list types {tok[2]!r} {tok[3]!r})")
        if tok[2] in ("float", "float32", "double", "float64"):
            raise ObjectFileError(f"unreadable PLY ({where}: list counts must have an integer type)")
        element[2] += _SIZES[tok[2]]  # a list takes at least its count
        element[3] += 1
    elif len(tok) == 3 and tok[1] in _SIZES:
        element[2] += _SIZES[tok[1]]
        if element[0] == "vertex":
            header.vertex_properties.append(tok[2])
    else:
        raise ObjectFileError(f"unreadable PLY ({where}: unknown property {' '.join(tok[1:])!r:.60})")


def _check_counts(header: PlyHeader, limits: LoadLimits) -> None:
    """Vertices, x/y/z, and every declared count against the limits."""
    vertices, faces = header.count("vertex"), header.count("face")
    if vertices == 0:
        raise ObjectFileError("zero points (no vertex element, or its count is 0)")
    if not all(a in header.vertex_properties for a in "xyz"):
        raise ObjectFileError("no x/y/z vertex properties")
    if faces:
        limits.check("element vertex + face: declared count", vertices + faces, "max_mesh_elements")
    else:
        limits.check("element vertex: declared count", vertices, "max_points")
    for name, count, row, lists in header.elements:
        if count and row == 0:
            raise ObjectFileError(f"unreadable PLY (element {name} has rows but no properties)")
        if lists or name in ("vertex", "face"):
            limits.check(f"element {name}: declared count", count, "max_mesh_elements")


def _check_sizes(header: PlyHeader, data: bytes) -> None:
    """The declared rows against the bytes present: one line per ASCII row; for binary, ``count x`` the
    smallest row size (lists empty), exactly that when no element has lists."""
    if header.format == "ascii":
        rows = sum(count for _, count, _, _ in header.elements)
        lines = data.count(b"\n", header.data_offset) + (0 if data.endswith(b"\n") else 1)
        if lines < rows:
            raise ObjectFileError(
                f"unreadable PLY (truncated: the header declares {rows} rows, {lines} lines present)"
            )
        return
    available = len(data) - header.data_offset
    need = sum(count * row for _, count, row, _ in header.elements)
    if not any(lists for _, _, _, lists in header.elements):
        header.exact_bytes = need
    if need > available:
        element = next((n for n, c, r, _ in header.elements if c * r), "vertex")
        raise ObjectFileError(
            f"unreadable PLY (truncated {element} data: the header declares at least {need} bytes, "
            f"{available} present)"
        )


def load_ply(data: bytes, header: PlyHeader):
    """trimesh-parsed PLY -> (vertices (N, 3) float64, faces (F, 3) int64 or None, colours (N, 3) uint8 or
    None, normals (N, 3) float64 from nx/ny/nz or None)."""
    import trimesh

    if header.exact_bytes is not None:  # trailing bytes after fixed-size data are ignored
        data = data[: header.data_offset + header.exact_bytes]
    try:
        loaded = trimesh.load(io.BytesIO(data), file_type="ply", process=False)
    except ValueError as exc:
        if header.format != "ascii" and "unexpected length" in str(exc):
            raise ObjectFileError(
                "unreadable PLY (its data does not match the header: truncated, trailing bytes, or face "
                "lists of different lengths, which binary PLY is read with only for one length; "
                "triangulate on export or save as ASCII PLY or GLB)"
            ) from None
        raise
    raw = loaded.metadata.get("_ply_raw", {}).get("vertex", {}).get("data")
    names = _names(raw)
    if not all(a in names for a in "xyz"):
        raise ObjectFileError("no x/y/z vertex properties")
    pts = np.asarray(loaded.vertices, np.float64).reshape(-1, 3)
    faces = np.asarray(getattr(loaded, "faces", np.zeros((0, 3))), np.int64).reshape(-1, 3)
    normals = None
    if all(f"n{a}" in names for a in "xyz") and all(len(_column(raw, f"n{a}")) == len(pts) for a in "xyz"):
        normals = np.stack([_column(raw, f"n{a}") for a in "xyz"], 1).astype(np.float64)
    return pts, (faces if len(faces) else None), _colors(raw, names, len(pts)), normals


def _names(raw) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, dict):
        return tuple(raw)
    return raw.dtype.names or ()


def _column(raw, name: str) -> np.ndarray:
    return np.asarray(raw[name]).reshape(-1)


def _colors(raw, names: tuple[str, ...], n: int) -> np.ndarray | None:
    for trio in _COLOR_NAMES:
        if all(c in names for c in trio):
            cols = [_column(raw, c) for c in trio]
            if any(len(c) != n for c in cols):
                return None
            c = np.stack(cols, 1)
            if c.dtype.kind == "f":
                c = np.nan_to_num(c.astype(np.float64), nan=0.0)
                scale = 255.0 if c.size and c.max() <= 1.0 else 1.0
                return np.clip(np.rint(c * scale), 0, 255).astype(np.uint8)
            if c.dtype.itemsize == 2:
                return (c.astype(np.uint32) // 257).clip(0, 255).astype(np.uint8)
            return np.clip(c.astype(np.int64), 0, 255).astype(np.uint8)
    return None
