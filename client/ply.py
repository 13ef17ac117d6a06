"""Writing coloured point clouds and meshes as binary PLY (``lift``'s scene output, the demo assets).

Hand-written on purpose: a fixed binary little-endian layout is ~20 lines of numpy, and the client does
not depend on a mesh library (the cache service reads these files with trimesh).
"""

from __future__ import annotations

import numpy as np


def ply_bytes(positions: np.ndarray, colors: np.ndarray, faces: np.ndarray | None = None) -> bytes:
    """positions (N, 3) float, colors (N, 3) uint8[, faces (F, 3) int] -> binary little-endian PLY:
    float32 x y z and uchar red green blue per vertex; optional triangle faces."""
    positions = np.ascontiguousarray(positions, dtype="<f4")
    colors = np.ascontiguousarray(colors, dtype=np.uint8)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(positions)}",
              "property float x", "property float y", "property float z",
              "property uchar red", "property uchar green", "property uchar blue"]  # fmt: skip
    if faces is not None:
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    header.append("end_header")
    vert = np.empty(len(positions), dtype=[("p", "<f4", 3), ("c", "u1", 3)])
    vert["p"], vert["c"] = positions, colors
    out = ("\n".join(header) + "\n").encode() + vert.tobytes()
    if faces is not None:
        f = np.empty(len(faces), dtype=[("n", "u1"), ("i", "<i4", 3)])
        f["n"], f["i"] = 3, faces
        out += f.tobytes()
    return out
