"""Multi-file objects become one self-contained file before they are sent.

The cache service gets one file's bytes. An ``.obj`` names its colours in a ``.mtl`` beside it (which in
turn names texture images), and a ``.gltf`` may keep its buffers and images in separate files; sent alone,
their colours were lost (or the file refused). ``object_payload`` checks that every referenced file
exists (a clear error naming the missing one otherwise) and converts such objects with trimesh into one
GLB (geometry, UVs, textures and material colours embedded). Self-contained files (``.ply``, ``.stl``,
``.glb``, an ``.obj`` without ``mtllib``, a ``.gltf`` with ``data:`` URIs only) are sent unchanged.

Objects without any colour are drawn in the documented default colour, RGB (200, 200, 200)
(``objvid.cache.io.DEFAULT_COLOR``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from objvid.runtime import limits as L

from .limits import ClientLimits, check_file_size


def _obj_references(text: str, folder: Path, what: str) -> list[Path]:
    """Files an OBJ needs beside it: its material libraries and the images they name."""
    needed = []
    for lib in re.findall(r"(?m)^[ \t]*mtllib[ \t]+(.+?)[ \t]*$", text):
        mtl = folder / lib.strip()
        if not mtl.is_file():
            raise ValueError(f"{what}: its material library {lib.strip()!r} is missing (expected at {mtl})")
        needed.append(mtl)
        mtl_text = mtl.read_text(errors="replace")
        for image in re.findall(r"(?m)^[ \t]*map_Kd[ \t]+(?:-\S+[ \t]+\S+[ \t]+)*(.+?)[ \t]*$", mtl_text):
            path = folder / image.strip()
            if not path.is_file():
                raise ValueError(
                    f"{what}: texture {image.strip()!r} named in {mtl.name} is missing (expected at {path})"
                )
            needed.append(path)
    return needed


def _gltf_references(data: bytes, folder: Path, what: str) -> list[Path]:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ValueError(f"{what}: not a glTF JSON file") from None
    needed = []
    for key in ("buffers", "images"):
        for i, item in enumerate(doc.get(key, []) if isinstance(doc, dict) else []):
            uri = item.get("uri") if isinstance(item, dict) else None
            if isinstance(uri, str) and not uri.startswith("data:"):
                from urllib.parse import unquote

                path = folder / unquote(uri)
                if not path.is_file():
                    raise ValueError(f"{what}: {key}[{i}].uri {uri!r} is missing (expected at {path})")
                needed.append(path)
    return needed


def _to_glb(path: Path, what: str) -> bytes:
    import trimesh

    try:
        loaded = trimesh.load(str(path), process=False)
    except Exception as exc:  # noqa: BLE001 - any parser error becomes one line naming the file
        raise ValueError(
            f"{what}: unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})"
        ) from None
    scene = loaded if isinstance(loaded, trimesh.Scene) else trimesh.Scene(loaded)
    for geom in scene.geometry.values():
        # An MTL texture (map_Kd) is the colour as it is (what OBJ viewers show); glTF would multiply it
        # by the Kd factor, so the texture becomes the base colour on its own.
        material = getattr(getattr(geom, "visual", None), "material", None)
        if isinstance(material, trimesh.visual.material.SimpleMaterial) and material.image is not None:
            geom.visual.material = trimesh.visual.material.PBRMaterial(baseColorTexture=material.image)
    return scene.export(file_type="glb")


def object_payload(
    path: str | Path, limits: ClientLimits | None = None, what: str = "--object"
) -> tuple[bytes, str]:
    """(bytes, filename) to send for the object file at ``path`` (see module docstring)."""
    limits = limits or ClientLimits()
    path = Path(path)
    what = f"{what} {path}"
    flag = "the cache service's --max-object-bytes"
    check_file_size(path, limits.max_object_bytes, what.split(" ")[0], flag)
    data = path.read_bytes()
    suffix = path.suffix.lower()
    needed: list[Path] = []
    if suffix == ".obj":
        needed = _obj_references(data.decode("utf-8", errors="replace"), path.parent, what)
    elif suffix == ".gltf":
        needed = _gltf_references(data, path.parent, what)
    if not needed:
        return data, path.name
    total = len(data) + sum(p.stat().st_size for p in needed)
    if total > limits.max_object_bytes:
        raise ValueError(
            L.over(f"{what} with its {len(needed)} files", total, limits.max_object_bytes, flag, " bytes")
        )
    glb = _to_glb(path, what)
    if len(glb) > limits.max_object_bytes:
        raise ValueError(L.over(f"{what} as one GLB", len(glb), limits.max_object_bytes, flag, " bytes"))
    return glb, path.with_suffix(".glb").name
