"""Property-based fuzz of every object parser (PLY ascii/binary, GLB, glTF, OBJ, STL) and the measured
hostile files of issue 13.

Each case runs through the parser pool the service uses (a worker process) with generous guards: 10 s
(``--parse-timeout``) and 256 MB of address space above the worker's start-up size (``--parse-memory``).
A case passes when the parser answers points, or a ValueError / LoadLimitExceeded whose one-line message
starts with the file name; hitting a guard (a hang, or memory growth the header checks should have
refused) fails the test. No timing is asserted.
"""

from __future__ import annotations

import json
import re

import numpy as np
import object_files as of
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from objvid.cache.io_limits import LoadLimitExceeded, LoadLimits
from objvid.cache.parse_pool import ParseLimitExceeded, ParsePool

EDGE_INTS = st.sampled_from(
    [-(2**63), -(2**31), -1, 0, 1, 2, 3, 255, 65535, 2**31 - 1, 2**32, 2**63 - 1, 10**30]
)
SEEDS = {
    "cloud.ply": of.ply_cloud("binary_little_endian"),
    "cloud_be.ply": of.ply_cloud("binary_big_endian"),
    "mesh.ply": of.ply_cloud("binary_little_endian", n=5, faces=[[0, 1, 2], [0, 2, 3], [1, 3, 4]]),
    "ascii.ply": of.ply_cloud("ascii", n=5, faces=[[0, 1, 2, 3], [1, 2, 4]]),
    "tri.glb": of.glb(*of.triangle_doc()),
    "textured.glb": of.glb(*of.triangle_doc(image=of.png(4, 4))),
    "embedded.gltf": of.gltf_embedded(*of.triangle_doc()),
    "box.obj": of.box("obj"),
    "box.stl": of.box("stl"),
}


@pytest.fixture(scope="module")
def pool():
    p = ParsePool(1, timeout_s=10.0, memory_bytes=256 << 20, limits=LoadLimits(max_mesh_elements=2_000_000))
    yield p
    p.close()


def _check(pool: ParsePool, data: bytes, name: str, samples: int = 500):
    """Parse through the pool; return the points or the error. Fails on a guard or an unclear error."""
    try:
        pts, col, _ = pool.load(data, name, samples)
    except ParseLimitExceeded as exc:
        pytest.fail(f"parser guard hit for {name} ({len(data)} bytes): {exc}")
    except (ValueError, LoadLimitExceeded) as exc:
        msg = str(exc)
        assert msg.startswith(f"{name}: "), msg
        assert "\n" not in msg and len(msg) < 400, msg
        assert "--parse-memory" not in msg, msg
        return exc
    assert pts.dtype == np.float32 and pts.ndim == 2 and pts.shape[1] == 3 and np.isfinite(pts).all()
    assert col.dtype == np.uint8 and col.shape == pts.shape
    return pts


def test_seed_files_parse(pool):
    for name, data in SEEDS.items():
        out = _check(pool, data, name)
        assert isinstance(out, np.ndarray), (name, out)


@st.composite
def mutated(draw):
    """A seed file with one to three mutations: truncation, byte flips, inserted bytes, or a number of its
    text (PLY header, glTF JSON, OBJ / ASCII lines) replaced by an edge value."""
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "number", "number"]))
        if kind == "truncate" and len(data) > 1:
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif kind == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        elif kind == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        else:
            head = bytes(data[:4096])
            numbers = list(re.finditer(rb"-?\d+", head))
            if numbers:
                m = draw(st.sampled_from(numbers))
                data[m.start() : m.end()] = str(draw(EDGE_INTS)).encode()
    return name, bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=mutated())
def test_mutated_files_are_bounded_and_clear(pool, case):
    name, data = case
    _check(pool, data, name)


GLTF_FIELDS = [
    ("accessors", 0, "count"),
    ("accessors", 1, "count"),
    ("accessors", 0, "bufferView"),
    ("accessors", 0, "byteOffset"),
    ("bufferViews", 0, "byteLength"),
    ("bufferViews", 0, "byteOffset"),
    ("bufferViews", 1, "byteStride"),
    ("bufferViews", 0, "buffer"),
    ("buffers", 0, "byteLength"),
    ("nodes", 0, "mesh"),
    ("meshes", 0, "primitives"),
    ("scenes", 0, "nodes"),
]


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    field=st.sampled_from(GLTF_FIELDS),
    value=st.one_of(EDGE_INTS, st.just(None), st.text(max_size=3), st.lists(EDGE_INTS, max_size=3)),
    cycle=st.booleans(),
    as_text=st.booleans(),
)
def test_gltf_json_fields(pool, field, value, cycle, as_text):
    """Structured mutations of the glTF JSON: any field of the container set to edge values, node cycles."""
    doc, binary = of.triangle_doc(nodes=[{"mesh": 0, "children": [1]}, {"children": [0] if cycle else []}])
    key, index, name = field
    doc[key][index][name] = value
    data = of.gltf_embedded(doc, binary) if as_text else of.glb(doc, binary)
    out = _check(pool, data, "f.gltf" if as_text else "f.glb")
    if cycle:
        assert isinstance(out, Exception)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(lines=st.lists(
    st.tuples(st.sampled_from(["v", "f", "vt", "vn", "mtllib", "usemtl", "o", "#"]),
              st.lists(st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=True), st.text(max_size=4)), max_size=5)),
    max_size=40,
))  # fmt: skip
def test_obj_lines(pool, lines):
    text = "".join(f"{k} {' '.join(map(str, args))}\n" for k, args in lines).encode()
    if text:
        _check(pool, text, "random.obj")


@pytest.mark.parametrize(
    "name,data,reason",
    [
        ("negative.ply", of.negative_face_count_ply(), "negative face count"),
        ("instanced.glb", of.instanced_glb(22), "--max-mesh-elements"),
        ("bigtexture.glb", of.glb(*of.triangle_doc(image=of.png_header(8192, 8192))), "--max-texture-pixels"),
        ("bomb.glb", of.glb(*of.triangle_doc(image=of.png_header(30000, 30000))), "--max-texture-pixels"),
        ("huge.ply", of.ply_cloud().replace(b"element vertex 8", b"element vertex 900000000"), "--max-points"),
        ("short.stl", of.box("stl")[:200], "truncated STL"),
        ("external.gltf", json.dumps({"asset": {"version": "2.0"}, "buffers": [{"byteLength": 36, "uri": "x.bin"}]}).encode(), "external file 'x.bin'"),
        ("broken.glb", b"glTF" + bytes(4) + b"\xff" * 20, "unsupported GLB version"),
        ("badjson.glb", of.glb({"asset": {"version": "2.0"}})[:20] + b"{not json" + bytes(7), "truncated GLB"),
    ],
)  # fmt: skip
def test_measured_hostile_files(pool, name, data, reason):
    """The files measured in issue 13 (and their relatives): a clear one-line refusal naming the file."""
    out = _check(pool, data, name)
    assert isinstance(out, Exception) and reason in str(out), out


def test_big_sample_count_is_refused_before_parsing(pool):
    """``sample_points = 20,000,000`` on a 1 KB GLB (+3.2 GB before) is refused by its flag."""
    with pytest.raises(
        LoadLimitExceeded, match=r"sample_points: 20000000 is over the limit of \d+ \(--max-sample-points\)"
    ):
        pool.load(SEEDS["tri.glb"], "tri.glb", 20_000_000)


def test_empty_face_lists_are_bounded(pool):
    """200k empty faces (0.4 s before): parsed within the guards, answering the vertices."""
    out = _check(pool, of.empty_faces_ply(200_000), "empty_faces.ply")
    assert isinstance(out, np.ndarray) and len(out) == 3


def test_a_hung_parse_is_killed_and_the_pool_recovers():
    """A parse over --parse-timeout ends with a clear RESOURCE_EXHAUSTED error; the next parse works."""
    lines = "".join(f"{i % 7} " + " ".join(str(j % 5) for j in range(i % 7)) + "\n" for i in range(300_000))
    header = "ply\nformat ascii 1.0\nelement vertex 5\nproperty float x\nproperty float y\nproperty float z\n"
    header += "element face 300000\nproperty list uchar int vertex_indices\nend_header\n"
    slow = (header + "0 0 0\n1 0 0\n0 1 0\n1 1 0\n0 0 1\n" + lines).encode()
    pool = ParsePool(1, timeout_s=0.2)
    try:
        with pytest.raises(
            ParseLimitExceeded, match=r"slow.ply: parsing took longer than 0.2 s \(--parse-timeout\)"
        ):
            pool.load(slow, "slow.ply", 100)
        assert pool.killed == 1
        pts, _, _ = pool.load(SEEDS["cloud.ply"], "cloud.ply", 100)
        assert len(pts) == 8
    finally:
        pool.close()
