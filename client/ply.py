"""Writing coloured point clouds and meshes as binary PLY (``lift``'s scene output, the demo assets).

Hand-written on purpose: a fixed binary little-endian layout is ~20 lines of numpy, and the client does
not depend on a mesh library (the cache service reads these files with trimesh).
"""

from __future__ import annotations

import numpy as np


def ply_bytes(positions: np.ndarray, colors: np.ndarray, faces: np.ndarray | None = None,
              normals: np.ndarray | None = None) -> bytes:  # fmt: skip
    """positions (N, 3) float, colors (N, 3) uint8[, faces (F, 3) int][, normals (N, 3)] -> binary
    little-endian PLY: float32 x y z, uchar red green blue (and float32 nx ny nz) per vertex; optional
    triangle faces."""
    positions = np.ascontiguousarray(positions, dtype="<f4")
    colors = np.ascontiguousarray(colors, dtype=np.uint8)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(positions)}",
              "property float x", "property float y", "property float z",
              "property uchar red", "property uchar green", "property uchar blue"]  # fmt: skip
    if normals is not None:
        header += ["property float nx", "property float ny", "property float nz"]
    if faces is not None:
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    header.append("end_header")
    fields = [("p", "<f4", 3), ("c", "u1", 3)] + ([("n", "<f4", 3)] if normals is not None else [])
    vert = np.empty(len(positions), dtype=fields)
    vert["p"], vert["c"] = positions, colors
    if normals is not None:
        vert["n"] = normals
    out = ("\n".join(header) + "\n").encode() + vert.tobytes()
    if faces is not None:
        f = np.empty(len(faces), dtype=[("n", "u1"), ("i", "<i4", 3)])
        f["n"], f["i"] = 3, faces
        out += f.tobytes()
    return out
