"""`objvid-cache serve` / `python -m objvid.cache`: flags, env fallbacks, graceful SIGTERM; and a small CI run of
bench/cache_load.py asserting zero errors and bounded memory."""

from __future__ import annotations

import importlib.util
import platform
import re
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from objvid.cache import cli
from objvid.runtime import channels
from objvid.v1 import cache_pb2, cache_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "text, expected",
    [("4294967296", 4 << 30), ("4G", 4 << 30), ("512MiB", 512 << 20), ("1.5g", 3 << 29), ("64k", 64 << 10)],
)
def test_parse_bytes(text, expected):
    assert cli.parse_bytes(text) == expected


def test_parse_bytes_errors():
    for bad in ("", "lots", "-1G", "0"):
        with pytest.raises(ValueError):
            cli.parse_bytes(bad)
    with pytest.raises(ValueError, match="CUDA"):
        cli.parse_bytes("80%")
    assert cli.parse_bytes("50%", device_total=1000) == 500


def test_flags_fall_back_to_environment(monkeypatch):
    monkeypatch.setenv("OBJVID_CACHE_PORT", "6000")
    monkeypatch.setenv("OBJVID_CACHE_MEMORY_BUDGET", "2G")
    monkeypatch.setenv("OBJVID_CACHE_MAX_CAMERAS", "9")
    monkeypatch.setenv("OBJVID_CACHE_TOKEN", "tok")
    args = cli.build_parser().parse_args(["serve", "--port", "7000"])
    assert args.port == 7000  # the flag wins
    cfg = cli.config_from_args(args)
    assert cfg.memory_budget == 2 << 30 and cfg.limits.max_cameras == 9 and cfg.token == "tok"
    assert cfg.device == "cpu" and cfg.snapshot_dir is None and cfg.metrics_port == 9102


def test_malloc_reuse_flag_and_tuning(monkeypatch):
    assert cli.build_parser().parse_args(["serve"]).malloc_reuse == 1
    monkeypatch.setenv("OBJVID_CACHE_MALLOC_REUSE", "0")
    assert cli.build_parser().parse_args(["serve"]).malloc_reuse == 0
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert cli.tune_malloc() is True


def test_config_errors(tmp_path):
    parse = cli.build_parser().parse_args
    with pytest.raises(SystemExit, match="go together"):
        cli.config_from_args(parse(["serve", "--tls-cert", str(tmp_path / "c.pem")]))
    with pytest.raises(SystemExit, match="--max-points must be > 0"):
        cli.config_from_args(parse(["serve", "--max-points", "0"]))
    with pytest.raises(SystemExit, match="no-such.pem"):
        cli.config_from_args(parse(["serve", "--tls-cert", "no-such.pem", "--tls-key", "k.pem"]))


def test_python_m_serve_and_graceful_sigterm(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "objvid.cache", "serve", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
         "--device", "cpu", "--memory-budget", "64M", "--snapshot-dir", str(tmp_path), "--log-level", "warning"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", line).group(1))
        channel = channels.make_channel(f"127.0.0.1:{port}")
        assert channels.check_health(channel, timeout=10)
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        assert stub.ListScenes(cache_pb2.ListScenesRequest(), timeout=10).scenes == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        with pytest.raises(grpc.RpcError):
            stub.ListScenes(cache_pb2.ListScenesRequest(), timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _load_bench():
    spec = importlib.util.spec_from_file_location("cache_load", ROOT / "bench" / "cache_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_load_tool_small_run_has_no_errors_and_bounded_memory(tmp_path):
    bench = _load_bench()
    out = tmp_path / "load.json"
    result = bench.main(["--spawn", "--device", "cpu", "--small", "--clients", "1,3,3", "--requests", "15",
                         "--out", str(out)])  # fmt: skip
    assert out.exists()
    runs = result["runs"]
    assert [r["clients"] for r in runs] == [1, 3, 3]
    assert all(r["errors"] == 0 and r["frames"] == r["clients"] * 15 for r in runs), runs
    assert all(r["p50_ms"] > 0 and r["throughput_fps"] > 0 for r in runs)
    budget = 256 << 20
    assert all(0 < r["memory"]["objvid_cache_device_bytes"] <= budget for r in runs)
    # Where the time goes: server stages from /metrics, the client's call and decode.
    for r in runs:
        assert r["frames"] <= r["server_ms"]["calls"] <= r["frames"] + r["clients"]  # + a late warm-up
        assert all(
            r["server_ms"][f"{st}_ms"] >= 0 for st in ("decode", "queue", "render", "to_host", "encode")
        )
        assert r["client_ms"]["call_ms"] > 0 and r["client_ms"]["decode_ms"] > 0
    # Bounded: repeating the same load does not grow the server (beyond allocator noise).
    assert runs[2]["memory"]["rss"] - runs[1]["memory"]["rss"] < 64 << 20
