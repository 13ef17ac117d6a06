"""Small object files for the parser tests, generated here: PLY variants, GLB / glTF built by hand (so
their JSON can be mutated), trimesh-exported OBJ / STL, and crafted image headers."""

from __future__ import annotations

import base64
import json
import struct
import zlib

import numpy as np
import trimesh


def ply_cloud(fmt: str = "binary_little_endian", n: int = 8, faces: list[list[int]] | None = None) -> bytes:
    """A coloured PLY (float xyz, uchar rgb) of ``n`` points, optionally with faces (uchar count, int indices)."""
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(n, 3)).astype(np.float32)
    col = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    head = ["ply", f"format {fmt} 1.0", f"element vertex {n}"]
    head += [f"property float {a}" for a in "xyz"] + [f"property uchar {c}" for c in ("red", "green", "blue")]
    if faces is not None:
        head += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    header = ("\n".join([*head, "end_header"]) + "\n").encode()
    if fmt == "ascii":
        rows = "".join(f"{p[0]} {p[1]} {p[2]} {c[0]} {c[1]} {c[2]}\n" for p, c in zip(pts, col, strict=True))
        rows += "".join(f"{len(f)} " + " ".join(map(str, f)) + "\n" for f in faces or [])
        return header + rows.encode()
    e = "<" if fmt == "binary_little_endian" else ">"
    rec = np.zeros(n, [("p", e + "f4", 3), ("c", "u1", 3)])
    rec["p"], rec["c"] = pts, col
    body = rec.tobytes()
    for f in faces or []:
        body += bytes([len(f)]) + np.asarray(f, e + "i4").tobytes()
    return header + body


def negative_face_count_ply() -> bytes:
    """The measured hang: a binary PLY whose face element declares a negative count (~360 bytes)."""
    data = ply_cloud(n=12, faces=[[0, 1, 2]] * 4)
    return data.replace(b"element face 4", b"element face -4")


def empty_faces_ply(n_faces: int) -> bytes:
    """A binary PLY with ``n_faces`` empty face lists (0.4 s per 200k in the old parser)."""
    head = ply_cloud(n=3).split(b"end_header\n")[0]
    header = head + f"element face {n_faces}\nproperty list uchar int vertex_indices\nend_header\n".encode()
    body = ply_cloud(n=3).split(b"end_header\n", 1)[1]
    return header + body + bytes(n_faces)


def glb(doc: dict, binary: bytes = b"") -> bytes:
    """Pack a glTF JSON document and a binary chunk into GLB bytes."""
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    chunks = struct.pack("<II", len(text), 0x4E4F534A) + text
    if binary:
        chunks += struct.pack("<II", len(binary), 0x004E4942) + binary
    return b"glTF" + struct.pack("<II", 2, 12 + len(chunks)) + chunks


def triangle_doc(nodes: list[dict] | None = None, roots: list[int] | None = None, image: bytes | None = None):
    """(glTF doc, binary) of one triangle mesh drawn by ``nodes`` (default one node), optional PNG texture."""
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32).tobytes()
    idx = np.array([0, 1, 2], np.uint16).tobytes() + b"\0\0"
    binary = pos + idx
    views = [
        {"buffer": 0, "byteOffset": 0, "byteLength": len(pos)},
        {"buffer": 0, "byteOffset": len(pos), "byteLength": 6},
    ]
    prim: dict = {"attributes": {"POSITION": 0}, "indices": 1}
    accessors = [
        {
            "bufferView": 0,
            "componentType": 5126,
            "count": 3,
            "type": "VEC3",
            "min": [0, 0, 0],
            "max": [1, 1, 0],
        },
        {"bufferView": 1, "componentType": 5123, "count": 3, "type": "SCALAR"},
    ]
    doc: dict = {"asset": {"version": "2.0"}, "accessors": accessors, "bufferViews": views}
    if image is not None:
        uv = np.array([[0, 0], [1, 0], [0, 1]], np.float32).tobytes()
        views.append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(uv)})
        binary += uv
        accessors.append({"bufferView": 2, "componentType": 5126, "count": 3, "type": "VEC2"})
        prim["attributes"]["TEXCOORD_0"] = 2
        views.append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(image)})
        binary += image + b"\0" * (-len(image) % 4)
        doc["images"] = [{"bufferView": 3, "mimeType": "image/png"}]
        doc["textures"] = [{"source": 0}]
        doc["materials"] = [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}]
        prim["material"] = 0
    doc["meshes"] = [{"primitives": [prim]}]
    doc["nodes"] = nodes if nodes is not None else [{"mesh": 0}]
    doc["scenes"] = [{"nodes": roots if roots is not None else [0]}]
    doc["scene"] = 0
    doc["buffers"] = [{"byteLength": len(binary)}]
    return doc, binary


def instanced_glb(levels: int = 20) -> bytes:
    """One triangle drawn 2**levels times through a binary node tree that shares its subtrees."""
    nodes = [{"mesh": 0}]
    for _ in range(levels):
        nodes.append({"children": [len(nodes) - 1, len(nodes) - 1]})
    doc, binary = triangle_doc(nodes=nodes, roots=[len(nodes) - 1])
    return glb(doc, binary)


def gltf_embedded(doc: dict, binary: bytes) -> bytes:
    """A .gltf text file with its buffer as a base64 data URI."""
    doc = json.loads(json.dumps(doc))
    doc["buffers"] = [
        {
            "byteLength": len(binary),
            "uri": "data:application/octet-stream;base64," + base64.b64encode(binary).decode(),
        }
    ]
    return json.dumps(doc).encode()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` RGB pixels (the pixel data is a few bytes: a
    decoder would fail, but every size check reads only the header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def png(width: int, height: int, rgb=(255, 0, 0)) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), rgb).save(buf, format="PNG")
    return buf.getvalue()


def box(ext: str) -> bytes:
    """A coloured box exported by trimesh as ``ext`` (obj, stl, glb, ply)."""
    mesh = trimesh.creation.box(extents=(1.0, 2.0, 0.5))
    mesh.visual.vertex_colors = np.tile([30, 160, 90, 255], (len(mesh.vertices), 1)).astype(np.uint8)
    out = mesh.export(file_type=ext)
    return out.encode() if isinstance(out, str) else out
