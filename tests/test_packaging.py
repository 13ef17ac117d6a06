"""Both an editable install and a built wheel import every objvid package; test fakes ship only in
``objvid.testing``, and ``protos/objvid`` holds only the root package and the generated schema."""

import os
import subprocess
import sys
import tomllib
import venv
import warnings
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [
    "objvid",
    "objvid.v1",
    "objvid.runtime",
    "objvid.runtime.config",
    "objvid.runtime.wire",
    "objvid.runtime.channels",
    "objvid.runtime.protowire",
    "objvid.runtime.frames",
    "objvid.serving",
    "objvid.serving.server",
    "objvid.testing",
    "objvid.depth",
    "objvid.cache",
    "objvid.diffusion",
    "objvid.client",
]
IMPORT_ALL = (
    f"import importlib, objvid; [importlib.import_module(m) for m in {PACKAGES!r}]; print(objvid.__file__)"
)
SOURCE_DIRS = {
    "objvid": ROOT / "protos" / "objvid",
    "objvid/depth": ROOT / "services" / "depth",
    "objvid/cache": ROOT / "services" / "cache",
    "objvid/diffusion": ROOT / "services" / "diffusion",
    "objvid/client": ROOT / "client",
    "objvid/runtime": ROOT / "services" / "runtime",
    "objvid/serving": ROOT / "services" / "serving",
    "objvid/testing": ROOT / "services" / "testing",
}
#: Test fakes: random-weight models, synthetic upstream files, synthetic demo assets. They live in
#: objvid.testing only; these names must not appear in any production package.
FAKE_MODULES = ("random_model.py", "synthetic.py", "assets.py", "depth_model.py")


def test_protos_objvid_holds_only_the_root_package_and_the_schema():
    top = sorted(p.name for p in (ROOT / "protos" / "objvid").glob("*.py"))
    assert top == ["__init__.py"], f"shared runtime belongs in services/runtime (objvid.runtime): {top}"


def test_services_never_import_the_fakes():
    """(The client's ``demo`` command writes its inputs with ``objvid.testing.assets``, on purpose.)"""
    offenders = []
    for folder in ("services",):
        for path in (ROOT / folder).rglob("*.py"):
            if "testing" in path.relative_to(ROOT).parts or "__pycache__" in path.parts:
                continue
            text = path.read_text()
            if "objvid.testing" in text.replace("``objvid.testing``", ""):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


def test_editable_install_imports_every_package():
    code = IMPORT_ALL
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd="/")
    assert Path(out.stdout.strip()).parent == ROOT / "protos" / "objvid"


def test_editable_build_prints_no_warning(tmp_path):
    """The hook ``pip install -e .`` calls, through pip's own hook caller: no warning may come back
    (pip >= 25 prints each as ``BuildBackendWarning``; setuptools' "Editable installation." notice was one),
    and the editable wheel maps every package onto its folder."""
    from pyproject_hooks import BuildBackendHookCaller, quiet_subprocess_runner

    system = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    hooks = BuildBackendHookCaller(str(ROOT), system["build-backend"], backend_path=system.get("backend-path"),
                                   runner=quiet_subprocess_runner)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        name = hooks.build_editable(str(tmp_path))
    assert not [str(w.message) for w in caught], [f"{w.category.__name__}: {w.message}" for w in caught]
    files = zipfile.ZipFile(tmp_path / name)
    finder = next(n for n in files.namelist() if n.endswith("_finder.py"))
    text = files.read(finder).decode()
    for package, folder in SOURCE_DIRS.items():
        assert repr(str(folder)) in text, (package, folder)
    # what the silenced notice warns about: a folder named like the package in the working directory
    assert not (ROOT / "objvid").exists()


def _source_modules() -> set[str]:
    files = set()
    for prefix, folder in SOURCE_DIRS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder)
            if "__pycache__" in rel.parts or (prefix == "objvid" and rel.name == "generate.py"):
                continue
            if prefix == "objvid" and rel.parts[0] not in ("v1",) and len(rel.parts) > 1:
                continue
            files.add(f"{prefix}/{rel.as_posix()}")
    return files


def test_wheel_contains_and_imports_every_package(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("objvid-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_source_modules() - names)
    assert not missing, f"modules missing from the wheel (add the package to pyproject.toml): {missing}"
    assert "objvid/v1/cache.proto" in names
    production = [n for n in names if n.startswith("objvid/") and not n.startswith("objvid/testing/")]
    fakes = sorted(n for n in production if n.rsplit("/", 1)[-1] in FAKE_MODULES)
    assert not fakes, f"test fakes in production packages (move them to objvid.testing): {fakes}"
    assert {"objvid/testing/depth_model.py", "objvid/testing/gen3c.py"} <= names
    # A fresh venv with only the wheel; third-party deps come from this environment via PYTHONPATH
    # (PYTHONPATH does not process .pth files, so the editable finder stays out of the way).
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    target = env_dir / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
    deps = [p for p in sys.path if p.endswith("site-packages")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *deps])}
    code = IMPORT_ALL
    out = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c", code],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert out.stdout.strip().startswith(str(target))


def test_the_client_loads_no_server_plumbing():
    """The client imports objvid.runtime only: no server framework, no health servicer, no reflection."""
    code = (
        "import sys, importlib; [importlib.import_module(m) for m in "
        "('objvid.client', 'objvid.client.cli', 'objvid.client.sdk', 'objvid.client.stack')]; "
        "bad = sorted(m for m in sys.modules if m.startswith(('objvid.serving', 'grpc_reflection.', "
        "'objvid.cache', 'objvid.depth', 'objvid.diffusion')) or m == 'grpc_health.v1.health'); print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd="/")
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.slow
def test_build_emits_no_project_warnings(tmp_path):
    # sdist, then the wheel from the sdist (what `pip install` of a release does); -x: setuptools is
    # already installed here, `wheel` (a build requirement for old setuptools) need not be.
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "-x", "--outdir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    bad = [
        line
        for line in log.splitlines()
        if any(
            k in line
            for k in (
                "SetuptoolsDeprecationWarning",
                "absent from the `packages`",
                "license",
                "BuildBackendWarning",
                "Editable installation",
            )
        )
        and "warn" in line.lower()
    ]
    assert not bad, "\n".join(bad)
    (wheel,) = tmp_path.glob("objvid-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for model in ("gen3c", "preview"):
        assert f"objvid/diffusion/model_repository/{model}/config.pbtxt" in names
        assert f"objvid/diffusion/model_repository/{model}/1/model.py" in names
    assert any(n.startswith("objvid/v1/") and n.endswith(".proto") for n in names)
