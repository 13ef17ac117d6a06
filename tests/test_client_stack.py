"""The local stack's lifecycle with real servers: port 0 + ready file, health-gated readiness, and no
process left behind (checked with psutil) after stop(), after SIGTERM to the client, and when a child
fails while starting."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from objvid.client.errors import ObjvidError
from objvid.client.sdk import ObjvidClient
from objvid.client.stack import LocalStack, StackConfig, child_specs, wire_cache

CACHE_ONLY = StackConfig(depth=False, backend=None, device="cpu")


def _children() -> set[int]:
    """Live (non-zombie) descendants of this process. Compare with a set taken before the stack started:
    this pytest process may hold other servers (session fixtures of modules that ran earlier here)."""
    out = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out.add(p.pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _gone(pids: list[int], timeout: float = 10.0) -> bool:
    """True once none of ``pids`` is a live (non-zombie) process."""
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return all(p.status() == psutil.STATUS_ZOMBIE for p in alive if p.is_running())


def test_children_bind_port_zero_and_report_it():
    specs = {s.name: s for s in child_specs(StackConfig(backend=None))}
    for name in ("depth", "cache"):
        args = specs[name].args
        assert args[args.index("--port") + 1] == "0"
        assert args[args.index("--metrics-port") + 1] == "off"


def test_diffusion_is_pointed_at_the_cache_ready_file_only_when_both_start(tmp_path):
    from objvid.diffusion import cache_source

    specs = child_specs(StackConfig(depth=False, backend="preview"))
    assert wire_cache(specs, tmp_path)
    env = {s.name: s.env for s in specs}
    assert env["cache"] == {}
    assert env["diffusion"] == {cache_source.READY_FILE_ENV: str(tmp_path / "cache.ready.json"),
                                cache_source.ADDRESS_ENV: "", cache_source.TOKEN_ENV: ""}  # fmt: skip
    alone = child_specs(StackConfig(depth=False, cache=False, backend="preview"))
    assert not wire_cache(alone, tmp_path) and alone[0].env == {}


def test_stack_reads_the_bound_port_and_stops_every_process(tmp_path):
    stack = LocalStack(CACHE_ONLY, tmp_path).start()
    try:
        ready = json.loads((tmp_path / "cache.ready.json").read_text())
        assert stack.cache_addr == f"127.0.0.1:{ready['port']}" and ready["port"] > 0
        pids = stack.pids()
        assert ready["pid"] in pids and all(psutil.pid_exists(p) for p in pids)
        with ObjvidClient(cache_addr=stack.cache_addr) as client:
            assert client.healthy(stack.cache_addr)
    finally:
        stack.stop()
    assert _gone(pids)
    assert not (tmp_path / "cache.ready.json").exists()
    stack.stop()  # twice is fine


class _Events:
    """A Reporter that keeps what it was told (start / finish per stage, in order)."""

    def __init__(self):
        self.events: list[tuple[str, str]] = []

    def start(self, stage, total=None, text=""):
        self.events.append(("start", stage))

    def update(self, stage, completed=None, total=None, text=None): ...

    def finish(self, stage, text=None):
        self.events.append(("finish", stage))


def test_connect_times_the_stop_of_the_local_servers(tmp_path):
    """The CLI's timing table gets the stop of the local servers as its own row (``stack_stop``)."""
    from objvid.client.connect import Services, connect

    events = _Events()
    before = _children()
    with connect(events, Services(device="cpu"), need_depth=False, need_cache=True, backend=None,
                 log_dir=tmp_path) as (client, record):  # fmt: skip
        assert client.healthy(record["cache"])
        pids = sorted(_children() - before)
        assert pids  # the cache server (and its parse workers)
        assert "stack_stop_seconds" not in record
    assert record["local_stack"] == ["cache"] and record["stack_seconds"] > 0
    assert record["stack_stop_seconds"] > 0  # set once the servers are gone
    assert _gone(pids)
    assert events.events == [("start", "stack"), ("finish", "stack"), ("start", "stack_stop"),
                             ("finish", "stack_stop")]  # fmt: skip


CLIENT_SCRIPT = textwrap.dedent(
    """
    import faulthandler, json, signal, sys, time
    from objvid.client.connect import _sigterm_interrupts
    from objvid.client.stack import LocalStack, StackConfig

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test's post-mortem if this ever hangs
    with _sigterm_interrupts():  # what every objvid-client command runs under
        with LocalStack(StackConfig(depth=False, backend=None, device="cpu"), sys.argv[1]) as stack:
            print(json.dumps({"pids": stack.pids()}), flush=True)
            # Short sleeps, as the CLI's gRPC waits are: a process-directed signal may be routed to a
            # non-main thread (some kernels, gVisor), and then only the main thread's next bytecode runs
            # the Python handler; one long sleep would never return to it.
            for _ in range(1200):
                time.sleep(0.5)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_client_leaves_no_children(tmp_path, sig):
    client = subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = client.stdout.readline()
        assert line, client.communicate(timeout=30)[1]
        pids = json.loads(line)["pids"]
        assert pids and all(psutil.pid_exists(p) for p in pids)
        client.send_signal(sig)
        try:
            client.wait(timeout=60)
        except subprocess.TimeoutExpired:
            client.send_signal(signal.SIGUSR1)  # faulthandler: every thread's stack to stderr
            client.kill()
            pytest.fail(f"the client did not exit within 60 s of {sig.name}:\n{client.communicate()[1]}")
    finally:
        if client.poll() is None:
            client.kill()
    assert client.returncode != 0
    assert _gone(pids), [p for p in pids if psutil.pid_exists(p)]


def test_servers_exit_when_the_client_is_killed_outright(tmp_path):
    """SIGKILL gives the client no chance to stop its children: ``--parent-pid`` makes them go by themselves."""
    client = subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = client.stdout.readline()
        assert line, client.communicate(timeout=30)[1]
        pids = json.loads(line)["pids"]
        client.kill()
        client.wait(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
    assert _gone(pids, timeout=30), [p for p in pids if psutil.pid_exists(p)]


def test_a_child_that_fails_to_start_is_reported_and_cleaned_up(tmp_path):
    cfg = StackConfig(
        depth=True, depth_model=str(tmp_path / "missing.pt"), cache=True, backend=None, device="cpu"
    )
    stack = LocalStack(cfg, tmp_path)
    before = _children()
    with pytest.raises(
        ObjvidError, match=r"^stack: depth server exited with code \d+ while starting \(log "
    ) as err:
        stack.start()
    # the hint names the client's flag, not the depth service's --model
    assert "missing.pt" in str(err.value) and "--depth-model" in str(err.value)
    assert stack.children == []  # the cache server that did start was stopped too
    assert not _children() - before
