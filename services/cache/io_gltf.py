"""glTF 2.0 / GLB structure check, run before trimesh parses anything.

trimesh trusts a file's declared sizes: it allocates accessors of any declared ``count``, expands every
node instance of a mesh into its own copy and decodes every texture at full size. ``check_gltf`` reads
only the container and the JSON and refuses, with a message naming the part:

- a GLB header or chunk that does not fit the bytes present (truncation), a JSON chunk that is not JSON;
- buffers whose declared ``byteLength`` is larger than the bytes present, buffers or images that refer to
  external files (not sent: the client converts a ``.gltf`` with its files into one ``.glb``);
- buffer views and accessors that reach outside their buffer (declared ``count`` x element size), negative
  or non-integer counts and offsets;
- a node graph with a cycle, and meshes whose vertices + indices, multiplied by the number of node
  instances that draw them, exceed ``max_mesh_elements``;
- textures whose total decoded pixels (from the image headers, nothing decoded) exceed ``max_texture_pixels``.

Returns a summary (``GltfSummary``) the loader uses for its memory estimate.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import struct
from dataclasses import dataclass

from .io_limits import LoadLimitExceeded, LoadLimits, ObjectFileError

_COMPONENT_BYTES = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}
_TYPE_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_GLB_MAGIC = b"glTF"
_CHUNK_JSON = 0x4E4F534A
_CHUNK_BIN = 0x004E4942


@dataclass
class GltfSummary:
    mesh_elements: int = 0  # vertices + indices after instancing
    texture_pixels: int = 0


def _int(value, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ObjectFileError(
            f"unreadable glTF ({where}: expected an integer >= {minimum}, got {value!r:.40})"
        )
    return value


def _list(doc: dict, key: str) -> list:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise ObjectFileError(f"unreadable glTF ({key}: expected a list)")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ObjectFileError(f"unreadable glTF ({key}[{i}]: expected an object)")
    return value


def _index(value, where: str, items) -> int:
    i = _int(value, where)
    if i >= len(items):
        raise ObjectFileError(f"unreadable glTF ({where}: index {i} out of range, {len(items)} present)")
    return i


def split_glb(data: bytes) -> tuple[bytes, bytes | None]:
    """GLB container -> (JSON chunk bytes, BIN chunk bytes or None); ValueError on any inconsistency."""
    if len(data) < 20 or data[:4] != _GLB_MAGIC:
        raise ObjectFileError("unreadable GLB (no 'glTF' header)")
    version, length = struct.unpack_from("<II", data, 4)
    if version != 2:
        raise ObjectFileError(f"unsupported GLB version {version} (glTF 2.0 only)")
    if length > len(data):
        raise ObjectFileError(f"truncated GLB (header declares {length} bytes, {len(data)} present)")
    chunks: list[tuple[int, bytes]] = []
    pos = 12
    while pos + 8 <= length:
        size, kind = struct.unpack_from("<II", data, pos)
        if pos + 8 + size > length:
            raise ObjectFileError(
                f"truncated GLB (chunk {len(chunks)} declares {size} bytes, {length - pos - 8} present)"
            )
        chunks.append((kind, data[pos + 8 : pos + 8 + size]))
        pos += 8 + size
    if not chunks or chunks[0][0] != _CHUNK_JSON:
        raise ObjectFileError("unreadable GLB (the first chunk is not JSON)")
    binary = next((c for k, c in chunks[1:] if k == _CHUNK_BIN), None)
    return chunks[0][1], binary


def parse_json(text: bytes, what: str = "glTF") -> dict:
    try:
        doc = json.loads(text.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ObjectFileError(f"unreadable {what} (JSON is not UTF-8 text at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ObjectFileError(
            f"unreadable {what} (invalid JSON at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise ObjectFileError(f"unreadable {what} (JSON nested too deeply)") from None
    if not isinstance(doc, dict):
        raise ObjectFileError(f"unreadable {what} (JSON top level is not an object)")
    version = str((doc.get("asset") or {}).get("version", "")) if isinstance(doc.get("asset"), dict) else ""
    if not version.startswith("2"):
        raise ObjectFileError(f"unsupported glTF version {version!r:.20} (glTF 2.0 only)")
    return doc


def _data_uri(uri: str, where: str) -> bytes:
    head, sep, payload = uri.partition(",")
    if not sep or ";base64" not in head:
        raise ObjectFileError(f"unreadable glTF ({where}: data URI is not base64)")
    try:
        return base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        raise ObjectFileError(f"unreadable glTF ({where}: invalid base64 data URI)") from None


def _external(uri: str, where: str) -> ObjectFileError:
    return ObjectFileError(
        f"{where}: refers to the external file {uri[:80]!r}, which was not sent (send one self-contained "
        "file: a .glb, or a .gltf with embedded buffers; objvid-client converts a .gltf and its files "
        "automatically)"
    )


def check_gltf(data: bytes, fmt: str, limits: LoadLimits) -> GltfSummary:
    """Check a ``glb`` or ``gltf`` file before parsing (see module docstring); ObjectFileError or
    LoadLimitExceeded otherwise."""
    if fmt == "glb":
        text, binary = split_glb(data)
        doc = parse_json(text, "GLB")
    else:
        binary = None
        doc = parse_json(data)
    buffer_bytes = _buffers(doc, binary)
    views = _views(doc)
    counts = _accessor_counts(doc, views, limits)
    summary = GltfSummary()
    summary.mesh_elements = _instanced_elements(doc, _mesh_sizes(doc, counts), limits)
    limits.check(
        "meshes: vertices + indices after node instancing", summary.mesh_elements, "max_mesh_elements"
    )
    summary.texture_pixels = _texture_pixels(doc, views, buffer_bytes, limits)
    return summary


def _buffer_payload(buf: dict, i: int, binary: bytes | None) -> bytes:
    where = f"buffers[{i}]"
    uri = buf.get("uri")
    if uri is None:
        if i != 0 or binary is None:
            raise ObjectFileError(f"unreadable glTF ({where}: no uri and no GLB binary chunk)")
        return binary
    if isinstance(uri, str) and uri.startswith("data:"):
        return _data_uri(uri, where)
    raise _external(str(uri), f"{where}.uri")


def _buffers(doc: dict, binary: bytes | None) -> list[bytes]:
    """Each buffer's bytes (GLB chunk or data URI), at least as many as it declares."""
    out = []
    for i, buf in enumerate(_list(doc, "buffers")):
        declared = _int(buf.get("byteLength"), f"buffers[{i}].byteLength", 1)
        payload = _buffer_payload(buf, i, binary)
        if len(payload) < declared:
            raise ObjectFileError(
                f"truncated glTF (buffers[{i}]: declares {declared} bytes, {len(payload)} present)"
            )
        out.append(payload)
    return out


def _views(doc: dict) -> list[dict]:
    """The buffer views, each inside its buffer."""
    buffers = _list(doc, "buffers")
    views = _list(doc, "bufferViews")
    for i, view in enumerate(views):
        where = f"bufferViews[{i}]"
        b = _index(view.get("buffer"), f"{where}.buffer", buffers)
        offset = _int(view.get("byteOffset", 0), f"{where}.byteOffset")
        length = _int(view.get("byteLength"), f"{where}.byteLength", 1)
        _int(view.get("byteStride", 4), f"{where}.byteStride", 1)
        if offset + length > buffers[b]["byteLength"]:
            raise ObjectFileError(f"unreadable glTF ({where}: reaches outside buffers[{b}])")
    return views


def _accessor_counts(doc: dict, views: list[dict], limits: LoadLimits) -> list[int]:
    """Each accessor's ``count``, checked: ``count`` elements fit in its buffer view, under the limit."""
    counts = []
    for i, acc in enumerate(_list(doc, "accessors")):
        where = f"accessors[{i}]"
        count = _int(acc.get("count"), f"{where}.count", 1)
        comp = _COMPONENT_BYTES.get(acc.get("componentType"))
        ncomp = _TYPE_COMPONENTS.get(acc.get("type"))
        if comp is None or ncomp is None:
            raise ObjectFileError(f"unreadable glTF ({where}: unknown componentType or type)")
        if "bufferView" in acc:
            _accessor_fits(acc, where, count, comp * ncomp, views)
        limits.check(f"{where}.count", count, "max_mesh_elements")
        counts.append(count)
    return counts


def _accessor_fits(acc: dict, where: str, count: int, element: int, views: list[dict]) -> None:
    v = _index(acc["bufferView"], f"{where}.bufferView", views)
    offset = _int(acc.get("byteOffset", 0), f"{where}.byteOffset")
    stride = views[v].get("byteStride") or element
    if offset + (count - 1) * stride + element > views[v]["byteLength"]:
        raise ObjectFileError(
            f"unreadable glTF ({where}: {count} elements of {element} bytes reach outside bufferViews[{v}])"
        )


def _mesh_sizes(doc: dict, counts: list[int]) -> list[int]:
    """Vertices (POSITION counts) + indices of each mesh, over its primitives."""
    sizes = []
    for m, mesh in enumerate(_list(doc, "meshes")):
        prims = mesh.get("primitives", [])
        if not isinstance(prims, list):
            raise ObjectFileError(f"unreadable glTF (meshes[{m}].primitives: expected a list)")
        sizes.append(
            sum(_primitive_size(prim, f"meshes[{m}].primitives[{p}]", counts) for p, prim in enumerate(prims))
        )
    return sizes


def _primitive_size(prim, where: str, counts: list[int]) -> int:
    attrs = prim.get("attributes", {}) if isinstance(prim, dict) else None
    if not isinstance(attrs, dict):
        raise ObjectFileError(f"unreadable glTF ({where}.attributes: expected an object)")
    total = 0
    for key, a in attrs.items():
        a = _index(a, f"{where}.attributes.{key}", counts)
        if key == "POSITION":
            total += counts[a]
    if "indices" in prim:
        total += counts[_index(prim["indices"], f"{where}.indices", counts)]
    return total


def _children(nodes: list[dict], mesh_count: int) -> list[list[int]]:
    """Each node's child indices (checked), and its mesh index checked."""
    children = []
    for i, node in enumerate(nodes):
        kids = node.get("children", [])
        if not isinstance(kids, list):
            raise ObjectFileError(f"unreadable glTF (nodes[{i}].children: expected a list)")
        children.append([_index(k, f"nodes[{i}].children", nodes) for k in kids])
        if "mesh" in node:
            _index(node["mesh"], f"nodes[{i}].mesh", range(mesh_count))
    return children


def _roots(doc: dict, nodes: list[dict], children: list[list[int]]) -> list[int]:
    """The root nodes of the default scene (or every node without a parent when there are no scenes)."""
    scenes = _list(doc, "scenes")
    if not scenes:
        has_parent = {k for kids in children for k in kids}
        return [i for i in range(len(nodes)) if i not in has_parent]
    s = _index(doc.get("scene", 0), "scene", scenes)
    roots = scenes[s].get("nodes", [])
    if not isinstance(roots, list):
        raise ObjectFileError(f"unreadable glTF (scenes[{s}].nodes: expected a list)")
    return [_index(r, f"scenes[{s}].nodes", nodes) for r in roots]


def _reachable(roots: list[int], children: list[list[int]]) -> set[int]:
    reach, stack = set(roots), list(roots)
    while stack:
        for k in children[stack.pop()]:
            if k not in reach:
                reach.add(k)
                stack.append(k)
    return reach


def _instanced_elements(doc: dict, mesh_size: list[int], limits: LoadLimits) -> int:
    """Sum over mesh instances reachable from the scene roots of the mesh's size (cycles refused).

    Instances of a node = the number of root-to-node paths, counted in topological order (Kahn) over the
    reachable graph; each count is capped just above the limit, so shared subtrees cannot blow it up."""
    nodes = _list(doc, "nodes")
    children = _children(nodes, len(mesh_size))
    roots = _roots(doc, nodes, children)
    reach = _reachable(roots, children)
    indeg = dict.fromkeys(reach, 0)
    for n in reach:
        for k in children[n]:
            indeg[k] += 1
    mult = dict.fromkeys(reach, 0)
    for r in roots:
        mult[r] += 1
    ready = [n for n in reach if indeg[n] == 0]
    done, total, cap = 0, 0, limits.max_mesh_elements + 1
    while ready:
        n = ready.pop()
        done += 1
        mult[n] = min(mult[n], cap)
        if "mesh" in nodes[n]:
            total += mult[n] * mesh_size[nodes[n]["mesh"]]
        for k in children[n]:
            mult[k] += mult[n]
            indeg[k] -= 1
            if indeg[k] == 0:
                ready.append(k)
    if done != len(reach):
        raise ObjectFileError("unreadable glTF (nodes: the node hierarchy has a cycle)")
    return total


def _texture_pixels(doc: dict, views: list, buffer_bytes: list, limits: LoadLimits) -> int:
    from PIL import Image, UnidentifiedImageError

    total = 0
    for i, img in enumerate(_list(doc, "images")):
        where = f"images[{i}]"
        if "bufferView" in img:
            v = views[_index(img["bufferView"], f"{where}.bufferView", views)]
            start = v.get("byteOffset", 0)
            payload = buffer_bytes[v["buffer"]][start : start + v["byteLength"]]
        elif isinstance(img.get("uri"), str) and img["uri"].startswith("data:"):
            payload = _data_uri(img["uri"], where)
        elif "uri" in img:
            raise _external(str(img["uri"]), f"{where}.uri")
        else:
            continue
        try:
            with Image.open(io.BytesIO(payload)) as im:  # reads the header only
                w, h = im.size
        except Image.DecompressionBombError as exc:
            raise LoadLimitExceeded(f"{where}: {exc} (--max-texture-pixels)") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise ObjectFileError(f"{where}: not a decodable image ({type(exc).__name__})") from None
        total += w * h
        limits.check(
            f"{where}: texture {w}x{h}, all textures together", total, "max_texture_pixels", " pixels"
        )
    return total
