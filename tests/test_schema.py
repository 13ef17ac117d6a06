"""The objvid.v1 schema: generated code is current, every proto compiles and imports, buf lint is clean."""

import filecmp
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "protos" / "objvid" / "v1"


def test_generated_code_is_current(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "protos" / "generate.py"), str(tmp_path)], check=True)
    fresh = sorted(p.name for p in (tmp_path / "objvid" / "v1").iterdir())
    committed = sorted(p.name for p in GENERATED.iterdir() if "_pb2" in p.name)
    assert fresh == committed, "generated file set differs: run `python protos/generate.py`"
    stale = [
        n for n in fresh if not filecmp.cmp(tmp_path / "objvid" / "v1" / n, GENERATED / n, shallow=False)
    ]
    assert not stale, f"generated code is stale, run `python protos/generate.py`: {stale}"


@pytest.mark.parametrize("name", ["types", "depth", "cache", "diffusion"])
def test_schema_modules_import(name):
    pb2 = importlib.import_module(f"objvid.v1.{name}_pb2")
    importlib.import_module(f"objvid.v1.{name}_pb2_grpc")
    assert pb2.DESCRIPTOR.package == "objvid.v1"


def test_services_declared():
    from objvid.v1 import cache_pb2, depth_pb2

    cache = cache_pb2.DESCRIPTOR.services_by_name["CacheService"]
    assert {m.name for m in cache.methods} == {
        "CreateScene", "AddObject", "PlaceObject", "UpdateObject", "RemoveObject", "Render",
        "RenderTrajectory", "UpdateScene", "GetScene", "ListScenes", "DeleteScene", "ExportScene",
        "CreateVideoScene",
    }  # fmt: skip
    assert cache.methods_by_name["CreateVideoScene"].client_streaming
    assert cache.methods_by_name["RenderTrajectory"].server_streaming
    assert [m.name for m in depth_pb2.DESCRIPTOR.services_by_name["DepthService"].methods] == [
        "Lift",
        "LiftViews",
    ]


def _buf() -> str | None:
    local = ROOT / ".tools" / "node_modules" / ".bin" / "buf"
    return str(local) if local.exists() else shutil.which("buf")


def test_buf_lint_clean():
    buf = _buf()
    if buf is None:
        pytest.skip("buf not installed (make test installs it from npm into .tools/)")
    result = subprocess.run([buf, "lint"], cwd=ROOT / "protos", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
