"""The shared server framework (objvid.serving): bind on port 0 and report it, ready file, health gated on
readiness, SIGTERM drain that exits even with a stuck handler, the token rules, one error mapping."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from serving_helpers import RAISES, call, probe_server

from objvid.runtime import channels, errors, wire
from objvid.serving import status
from objvid.serving.config import ServingConfig
from objvid.v1 import depth_pb2, depth_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]


def test_port_zero_is_bound_and_reported_on_stdout_and_in_the_ready_file(tmp_path, capsys):
    ready = tmp_path / "ready.json"
    server, _ = probe_server(ServingConfig(host="127.0.0.1", port=0, metrics_port=0, ready_file=str(ready)))
    server.bind()
    try:
        line = capsys.readouterr().out.strip().splitlines()[-1]
        info = json.loads(line)
        assert info["service"] == "probe" and info["port"] == server.port > 0
        assert info["metrics_port"] == server.metrics_port > 0 and info["host"] == "127.0.0.1"
        assert json.loads(ready.read_text()) == info
        assert not list(tmp_path.glob(".*tmp"))  # written through a temporary file, renamed
        with channels.make_channel(server.address) as channel:
            # Health is gated on readiness: NOT_SERVING until set_serving(True).
            assert not channels.check_health(channel)
            server.set_serving(True)
            assert channels.check_health(channel) and channels.check_health(channel, "objvid.test.Probe")
            assert call(channel, "Echo", b"hi", timeout=5) == b"hi"
    finally:
        server.stop(0)
    assert not ready.exists()


def test_metrics_endpoint_binds_the_serving_host_by_default():
    server, _ = probe_server(ServingConfig(host="127.0.0.1", port=0, metrics_port=0))
    server.bind()
    try:
        assert server.metrics._http.server_address[0] == "127.0.0.1"  # the serving host, not 0.0.0.0
        assert server.metrics_port > 0
    finally:
        server.stop(0)
    off, _ = probe_server(ServingConfig(host="127.0.0.1", port=0, metrics_port=None))
    off.bind()
    try:
        assert off.metrics_port is None and off.metrics._http is None
    finally:
        off.stop(0)


def test_sigterm_drains_and_exits_within_the_grace_even_with_a_stuck_handler(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "serving_helpers.py"), "--grace", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT / "tests",
    )  # fmt: skip
    try:
        info = json.loads(proc.stdout.readline())
        channel = channels.make_channel(f"127.0.0.1:{info['port']}")
        assert channels.check_health(channel, timeout=10)
        threading.Thread(
            target=lambda: _ignore_errors(call, channel, "Stuck", timeout=60), daemon=True
        ).start()
        while (line := proc.stderr.readline()) and line.strip() != "stuck":  # the handler is running
            pass
        assert line.strip() == "stuck"
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        # grace 0.5 s (+ the framework's wait for the executor), far below the 5 s watchdog margin
        assert time.monotonic() - start < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_server_exits_when_its_parent_process_is_killed(tmp_path):
    """The local stack's safety net: ``--parent-pid`` (here a ``sleep`` standing in for the client)."""
    parent = subprocess.Popen(["sleep", "60"])
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "serving_helpers.py"), "--parent-pid", str(parent.pid),
         "--ready-file", str(ready)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT / "tests",
    )  # fmt: skip
    try:
        info = json.loads(proc.stdout.readline())
        assert json.loads(ready.read_text())["port"] == info["port"]
        time.sleep(1.5)
        assert proc.poll() is None  # parent alive: still serving
        parent.kill()
        parent.wait()
        assert proc.wait(timeout=20) == 0
        assert not ready.exists()
    finally:
        for p in (proc, parent):
            if p.poll() is None:
                p.kill()
                p.wait()


def _ignore_errors(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except grpc.RpcError:
        pass


def test_a_token_over_plaintext_is_refused_unless_allowed():
    with pytest.raises(ValueError, match="--allow-insecure-token"):
        ServingConfig(token="t").check_serving()
    ServingConfig(token="t", allow_insecure_token=True).check_serving()
    ServingConfig(token="t", tls_cert="c.pem", tls_key="k.pem").check_serving()
    with pytest.raises(ValueError, match="tls_cert/tls_key"):
        ServingConfig(tls_cert="c.pem").check_serving()


def test_the_depth_service_requires_its_token_when_configured():
    from objvid.depth.server import DepthServer, ServerConfig

    srv = DepthServer(
        ServerConfig(host="127.0.0.1", port=0, metrics_port=None, token="depth-secret", allow_insecure_token=True,
                     malloc_tuning=False, warmup=False)
    ).listen()  # fmt: skip
    try:
        with channels.make_channel(srv.address) as channel:
            stub = depth_pb2_grpc.DepthServiceStub(channel)
            request = depth_pb2.LiftRequest()
            with pytest.raises(grpc.RpcError) as exc:
                stub.Lift(request, timeout=5)
            assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as exc:
                stub.Lift(request, timeout=5, metadata=wire.bearer_metadata("wrong"))
            assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
            # With the token the call reaches the service (the model is not loaded yet: UNAVAILABLE).
            with pytest.raises(grpc.RpcError) as exc:
                stub.Lift(request, timeout=5, metadata=wire.bearer_metadata("depth-secret"))
            assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
            assert srv.metrics.requests.labels(code="UNAUTHENTICATED")._value.get() == 2
            # Health stays open (and says NOT_SERVING while loading).
            assert not channels.check_health(channel)
            srv.grpc.set_serving(True)
            assert channels.check_health(channel)
    finally:
        srv.stop(0)


@pytest.mark.parametrize(
    "name, code, text",
    [
        ("invalid", grpc.StatusCode.INVALID_ARGUMENT, "camera.width: must be > 0"),
        ("notfound", grpc.StatusCode.NOT_FOUND, "scene_id: no scene 'x'"),
        ("exhausted", grpc.StatusCode.RESOURCE_EXHAUSTED, "--max-cameras"),
        ("unavailable", grpc.StatusCode.UNAVAILABLE, "still loading"),
        ("value", grpc.StatusCode.INVALID_ARGUMENT, "options.footprint: must be in 1..15"),
        ("memory", grpc.StatusCode.RESOURCE_EXHAUSTED, "host out of memory"),
        ("boom", grpc.StatusCode.INTERNAL, "internal error in Raise (RuntimeError: kaboom); server log ref="),
    ],
)
def test_one_error_mapping(name, code, text):
    got_code, message, unexpected = status.status_of(RAISES[name]())
    assert got_code == code and (unexpected == (code == grpc.StatusCode.INTERNAL))
    if not unexpected:
        assert text in message


def test_errors_over_the_wire_one_line_and_one_log_line(caplog):
    server, servicer = probe_server(ServingConfig(host="127.0.0.1", port=0))
    server.bind()
    server.set_serving(True)
    try:
        with channels.make_channel(server.address) as channel, caplog.at_level(logging.INFO):
            for name, expected in (
                ("invalid", grpc.StatusCode.INVALID_ARGUMENT),
                ("boom", grpc.StatusCode.INTERNAL),
            ):
                with pytest.raises(grpc.RpcError) as exc:
                    call(channel, "Raise", name.encode(), timeout=5)
                assert exc.value.code() == expected
                assert "\n" not in exc.value.details()
            assert "kaboom" in exc.value.details() and "second line" not in exc.value.details()
    finally:
        server.stop(0)
    internal = [r for r in caplog.records if "rpc_internal_error" in r.getMessage()]
    assert len(internal) == 1 and internal[0].exc_info is None and "\n" not in internal[0].getMessage()
    assert ("Raise", "INVALID_ARGUMENT") in servicer.calls and ("Raise", "INTERNAL") in servicer.calls


def test_typed_errors_read_field_then_reason():
    assert str(errors.InvalidArgument("images[3]", "empty image bytes")) == "images[3]: empty image bytes"
    assert isinstance(errors.InvalidArgument("x", "y"), ValueError)
    assert errors.NotFound("scene_id: gone").status == "NOT_FOUND"


@pytest.mark.parametrize("service", ["depth", "cache", "diffusion"])
def test_every_server_help_shows_env_names_defaults_and_switches(service):
    """One config mechanism: each flag names its OBJVID_<SERVICE>_<FLAG> variable and its default; on/off
    flags are --x/--no-x; no Python type leaks into the help."""
    proc = subprocess.run([sys.executable, "-m", f"objvid.{service}", "serve", "--help"], capture_output=True,
                          text=True, check=True, timeout=120)  # fmt: skip
    text = " ".join(proc.stdout.split())
    import importlib

    import click

    serve = importlib.import_module(f"objvid.{service}.cli").cli.commands["serve"]
    options = [p for p in serve.params if isinstance(p, click.Option) and p.name != "help"]
    for option in options:
        env = option.envvar[0] if isinstance(option.envvar, list) else option.envvar
        assert env == f"OBJVID_{service.upper()}_{option.opts[0][2:].upper().replace('-', '_')}", option.opts
        assert option.show_envvar and option.show_default and f"env var: {env}" in text
        if option.is_flag:
            assert option.secondary_opts == [f"--no-{o[2:]}" for o in option.opts], option.opts
    assert f"OBJVID_{service.upper()}_METRICS_PORT" in text and "PORT|OFF" in text
    assert "--allow-insecure-token / --no-allow-insecure-token" in text and "--parent-pid PID" in text
    for leak in ("<class", "list[", "<list", "Optional[", "INTEGER RANGE"):
        assert leak not in text, leak
