"""Where a CLI command's services come from, and how it ends.

:func:`connect` yields an :class:`ObjvidClient`: addresses given are used as they are, the missing
servers are started as a local stack (stopped on exit). :func:`run_cli_body` maps every failure to one
``error: <stage>: <reason>`` line and an exit code (1; 130 after Ctrl-C; 143 after SIGTERM).
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import typer

from objvid.client.calls import RetryPolicy
from objvid.client.cli_output import Output
from objvid.client.errors import Interrupted, ObjvidError
from objvid.client.run import Reporter
from objvid.client.sdk import ObjvidClient
from objvid.client.stack import DEFAULT_DEPTH_MODEL, LocalStack, StackConfig

ADDR_FLAGS = {"depth": "--depth-addr", "cache": "--cache-addr", "diffusion": "--triton-addr"}


@dataclass
class Services:
    """The service options of a command: addresses (None = start locally), credentials, local-stack settings."""

    depth_addr: str | None = None
    cache_addr: str | None = None
    triton_addr: str | None = None
    token: str | None = None
    tls_ca: Path | None = None
    depth_model: str = DEFAULT_DEPTH_MODEL
    gen3c_weights: Path | None = None
    device: str = "auto"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    allow_insecure_token: bool = False
    geometry_model: str = ""  # VGGT for unposed --views (local stack); empty = not loaded
    connect_timeout: float | None = None  # --connect-timeout; None = the SDK's (calls.Connections)

    def stack_config(self, need_depth: bool, need_cache: bool, backend: str | None) -> StackConfig:
        """The local stack that starts exactly the needed services without an address."""
        cfg = StackConfig(depth=need_depth and not self.depth_addr, depth_model=self.depth_model,
                          geometry_model=self.geometry_model,
                          cache=need_cache and not self.cache_addr,
                          backend=backend if backend and not self.triton_addr else None,
                          gen3c_weights=str(self.gen3c_weights) if self.gen3c_weights else None,
                          device=self.device)  # fmt: skip
        if cfg.backend == "gen3c" and not cfg.gen3c_weights:
            raise ObjvidError("stack", "the gen3c backend needs --gen3c-weights DIR (env OBJVID_CLIENT_GEN3C_WEIGHTS) "
                                       "to start a local Triton, or --triton-addr of a running one; --backend "
                                       "preview runs without weights (not GEN3C)")  # fmt: skip
        local = local_services(cfg)
        if self.tls_ca and local:
            raise ObjvidError("inputs", "--tls-ca encrypts every connection, but the local stack serves plaintext: "
                                        "give " + ", ".join(ADDR_FLAGS[n] for n in local)
                                        + " of TLS services too, or leave out --tls-ca")  # fmt: skip
        return cfg


def local_services(cfg: StackConfig) -> list[str]:
    return [n for n, on in (("depth", cfg.depth), ("cache", cfg.cache), ("diffusion", cfg.backend)) if on]


@contextmanager
def connect(reporter: Reporter, services: Services, *, need_depth: bool, need_cache: bool,
            backend: str | None, log_dir: Path):  # fmt: skip
    """-> (ObjvidClient, the manifest's ``services`` record); starts the missing servers (stopped on exit).
    The record gets ``stack_seconds`` (start) and, after the exit, ``stack_stop_seconds`` (stop)."""
    cfg = services.stack_config(need_depth, need_cache, backend)
    names = local_services(cfg)
    addrs = {"depth": services.depth_addr, "cache": services.cache_addr, "triton": services.triton_addr}
    record = {**addrs, "local_stack": []}
    stack = None
    try:
        if names:
            stack = _start_stack(reporter, cfg, names, log_dir)
            addrs = {"depth": addrs["depth"] or stack.depth_addr, "cache": addrs["cache"] or stack.cache_addr,
                     "triton": addrs["triton"] or stack.triton_addr}  # fmt: skip
            record.update(
                addrs, local_stack=names, stack_seconds=stack.seconds, logs=str(log_dir), device=cfg.device
            )
            if cfg.depth:
                record["depth_model"] = cfg.depth_model
            if stack.cache_wired:  # the local model fetches renders from the local cache (render_path.py)
                record["model_cache"] = "local stack"
        try:
            client = ObjvidClient(addrs["depth"], addrs["cache"], addrs["triton"], token=services.token,
                                  tls_ca=services.tls_ca, tls_cert=services.tls_cert, tls_key=services.tls_key,
                                  allow_insecure_token=services.allow_insecure_token,
                                  retry=RetryPolicy(connect_timeout=services.connect_timeout))  # fmt: skip
        except ValueError as exc:
            raise ObjvidError("inputs", str(exc)) from None
        try:
            yield client, record
        finally:
            client.close()
    finally:
        if stack is not None:
            # The stop has its own row in the timing table: an idle diffusion server takes ~4 s (Triton
            # unloads the model, then polls its exit once a second; PyTriton cleans up its workers).
            reporter.start("stack_stop", None, ", ".join(names))
            t0 = time.perf_counter()
            stack.stop()
            record["stack_stop_seconds"] = round(time.perf_counter() - t0, 3)
            reporter.finish("stack_stop")


def _start_stack(reporter: Reporter, cfg: StackConfig, names: list[str], log_dir: Path) -> LocalStack:
    reporter.start("stack", len(names), "starting " + ", ".join(names))
    ready: list[str] = []

    def on_event(name: str, state: str) -> None:
        if state == "ready":
            ready.append(name)
            reporter.update("stack", len(ready), text=f"{name} ready")

    t0 = time.perf_counter()
    try:
        stack = LocalStack(cfg, log_dir, on_event).start()
    except OSError as exc:
        raise ObjvidError("stack", str(exc)) from None
    stack.seconds = round(time.perf_counter() - t0, 3)
    reporter.finish("stack")
    return stack


@contextmanager
def _sigterm_interrupts():
    """SIGTERM raises Interrupted in the main thread so every cleanup path runs as for Ctrl-C."""

    def on_term(signum, _frame):
        raise Interrupted(signum)

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_cli_body(out: Output, fn):
    """Run a command body; map failures to one error line and an exit code."""
    try:
        with _sigterm_interrupts():
            return fn()
    except ObjvidError as err:
        out.error(err.stage, err.reason)
        raise typer.Exit(1) from None
    except Interrupted as exc:
        out.error("interrupted", f"stopped by {signal.Signals(exc.signum).name}")
        raise typer.Exit(128 + exc.signum) from None
    except KeyboardInterrupt:
        out.error("interrupted", "stopped by Ctrl-C")
        raise typer.Exit(130) from None
    finally:
        out.close()


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")  # fmt: skip
