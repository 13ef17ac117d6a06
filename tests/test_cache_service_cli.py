"""`objvid-cache serve` / `python -m objvid.cache`: flags, env fallbacks, graceful SIGTERM; and a small CI run of
bench/cache_load.py asserting zero errors and bounded memory."""

from __future__ import annotations

import importlib.util
import json
import platform
import signal
import subprocess
import sys
from pathlib import Path

import click
import grpc
import pytest

from objvid.cache import cli
from objvid.cache.server import TRIM_THRESHOLD
from objvid.runtime import channels, config
from objvid.runtime.malloc import MMAP_THRESHOLD, tune_malloc
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


def _options(argv: list[str]) -> dict:
    return config.parse(cli.cli, ["serve", *argv])


def test_flags_fall_back_to_environment(monkeypatch):
    monkeypatch.setenv("OBJVID_CACHE_PORT", "6000")
    monkeypatch.setenv("OBJVID_CACHE_MEMORY_BUDGET", "2G")
    monkeypatch.setenv("OBJVID_CACHE_MAX_CAMERAS", "9")
    monkeypatch.setenv("OBJVID_CACHE_TOKEN", "tok")
    monkeypatch.setenv("OBJVID_CACHE_ALLOW_INSECURE_TOKEN", "1")
    monkeypatch.setenv("OBJVID_CACHE_DEVICE", "cpu")
    options = _options(["--port", "7000"])
    assert options["port"] == 7000  # the flag wins
    cfg = cli.config_from_options(options)
    assert cfg.memory_budget == 2 << 30 and cfg.limits.max_cameras == 9 and cfg.token == "tok"
    assert cfg.device == "cpu" and cfg.snapshot_dir is None and cfg.metrics_port == 9102
    assert cfg.allow_insecure_token is True
    monkeypatch.setenv("OBJVID_CACHE_METRICS_PORT", "off")
    assert cli.config_from_options(_options([])).metrics_port is None
    assert cli.config_from_options(_options(["--metrics-port", "0"])).metrics_port == 0


def test_malloc_tuning_switch_and_tuning(monkeypatch):
    assert _options([])["malloc_tuning"] is True
    assert _options(["--no-malloc-tuning"])["malloc_tuning"] is False
    monkeypatch.setenv("OBJVID_CACHE_MALLOC_TUNING", "0")
    assert _options([])["malloc_tuning"] is False
    monkeypatch.setenv("OBJVID_CACHE_MALLOC_TUNING", "maybe")
    with pytest.raises(click.BadParameter):
        _options([])
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert tune_malloc(MMAP_THRESHOLD, TRIM_THRESHOLD) is True


def test_config_errors(tmp_path, capsys):
    def config_of(*argv):
        return cli.config_from_options(_options(["--device", "cpu", *argv]))

    with pytest.raises(ValueError, match="tls_cert/tls_key"):
        config_of("--tls-cert", str(tmp_path / "c.pem"))
    with pytest.raises(click.BadParameter):
        _options(["--max-points", "0"])
    with pytest.raises(ValueError, match="allow-insecure-token"):
        config_of("--token", "t")
    # A missing TLS file is named when the server binds: exit 1 with one line.
    assert cli.main(["serve", "--device", "cpu", "--port", "0", "--tls-cert", "no-such.pem", "--tls-key", "k.pem",
                     "--metrics-port", "off"]) == 1  # fmt: skip
    # Bad flags: exit 2 with click's message naming the flag.
    assert cli.main(["serve", "--metrics-port", "nope"]) == 2
    assert "--metrics-port" in capsys.readouterr().err


def test_help_shows_env_names_defaults_and_switches():
    proc = subprocess.run([sys.executable, "-m", "objvid.cache", "serve", "--help"], capture_output=True, text=True,
                          cwd=ROOT, check=True)  # fmt: skip
    text = " ".join(proc.stdout.split())
    assert "OBJVID_CACHE_MEMORY_BUDGET" in text and "default: auto" in text
    assert (
        "--malloc-tuning / --no-malloc-tuning" in text
        and "--allow-insecure-token / --no-allow-insecure-token" in text
    )
    assert "list[" not in text and "<class" not in text and "<list" not in text


def test_python_m_serve_and_graceful_sigterm(tmp_path):
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "objvid.cache", "serve", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
         "--device", "cpu", "--memory-budget", "64M", "--snapshot-dir", str(tmp_path), "--log-level", "warning",
         "--ready-file", str(ready)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        info = json.loads(proc.stdout.readline())
        assert info["service"] == "cache" and info["host"] == "127.0.0.1" and info["pid"] == proc.pid
        assert info["port"] > 0 and info["metrics_port"] > 0 and info["tls"] is False
        assert json.loads(ready.read_text()) == info
        port = info["port"]
        channel = channels.make_channel(f"127.0.0.1:{port}")
        assert channels.check_health(channel, timeout=10)
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        assert stub.ListScenes(cache_pb2.ListScenesRequest(), timeout=10).scenes == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not ready.exists()  # removed on a clean stop
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
