"""One run of a command: progress, per-stage timings, the manifest, and the single failure path.

:meth:`Run.stage` times a block, drives its progress bar and turns what fails inside into
``ObjvidError(stage, reason)`` (``errors.stage_error``). :meth:`Run.execute` runs a command body and, on
any failure (including Ctrl-C / SIGTERM), aborts the open video writers (no partial mp4) and records
``status: error`` in ``<workdir>/manifest.json``; there is no other place that does this.

Teardown (:meth:`Run.teardown`: deleting the run's cache scene) runs after the body however it ended.
Its outcome never changes the run's: once the body has returned, the video and the ``ok`` manifest are
final, so an interrupt or a failure during teardown is logged and the run still succeeds (exit 0, the
manifest stays ``ok``); after a failure the original error is what is reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from objvid.client import manifest as mf
from objvid.client.errors import failure_reason, stage_error
from objvid.client.options import GenerateConfig

log = logging.getLogger("objvid.client")


class Reporter:
    """Progress sink; the CLI draws bars, tests and the SDK use this silent one."""

    def start(self, stage: str, total: float | None = None, text: str = "") -> None: ...

    def update(self, stage: str, completed: float | None = None, total: float | None = None,
               text: str | None = None) -> None: ...  # fmt: skip

    def finish(self, stage: str, text: str | None = None) -> None: ...

    def note(self, text: str) -> None: ...


class Run:
    """One pipeline run: stage wrappers, timings, the manifest, the writers to abort on failure.

    record: write ``<workdir>/manifest.json`` (``lift`` has no work dir and records nothing).
    """

    def __init__(self, command: str, config: GenerateConfig, client, reporter: Reporter | None = None,
                 services: dict | None = None, record: bool = True):  # fmt: skip
        self.command = command
        self.config = config
        self.client = client
        self.reporter = reporter or Reporter()
        self.timings = mf.Timings()
        self.record = record
        self.out = Path(config.out)
        self.workdir = config.resolved_workdir
        self.writers: list = []  # objects with abort(): closed without publishing on failure
        self.teardowns: list[Callable[[], None]] = []  # run after the body, last registered first
        self.result: dict | None = None  # set by finish(): the run has succeeded
        self.manifest: dict = {
            "command": command,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
            "versions": mf.versions(),
            "services": dict(services or {}),
            "chunks": [],
        }

    @contextmanager
    def stage(self, name: str, total: float | None = None, text: str = ""):
        """Time the block, drive its progress bar, and turn its failures into ObjvidError(name, reason)."""
        self.reporter.start(name, total, text)
        with self.errors_as(name), self.timings.stage(name):
            yield
        self.reporter.finish(name)

    @contextmanager
    def errors_as(self, name: str):
        """Turn the block's failures into ObjvidError(name, reason), without a bar or a timing (a check)."""
        try:
            yield
        except Exception as exc:
            err = stage_error(name, exc)
            if err is None or err is exc:
                raise
            raise err from None

    def writer(self, w):
        """Register a video writer: aborted (its partial file deleted) if the run fails."""
        self.writers.append(w)
        return w

    def write_manifest(self, status: str, error: str | None = None) -> Path | None:
        if not self.record:
            return None
        self.manifest["status"] = status
        if error:
            self.manifest["error"] = error
        self.manifest["timings"] = self.timings.as_dict()
        path = self.workdir / "manifest.json"
        mf.write_json(path, self.manifest)
        return path

    def finish(self, result: dict) -> dict:
        """The body's last step: write the ``ok`` manifest and fix the result (with the manifest's path and
        the timings). From here on the run has succeeded, whatever interrupts it."""
        path = self.write_manifest("ok")
        result = {**result, "timings": self.timings.as_dict()}
        if path is not None:
            result["manifest"] = str(path.resolve())
        self.result = result
        return result

    def teardown(self, fn: Callable[[], None]) -> None:
        """Register cleanup that runs once the body has ended (see module docstring)."""
        self.teardowns.append(fn)

    def _teardown(self) -> None:
        while self.teardowns:
            fn = self.teardowns.pop()
            try:
                fn()
            except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - never changes the run's outcome
                log.warning("event=teardown_failed error=%s: %s", type(exc).__name__, exc)

    def execute(self, body: Callable[[Run], dict]) -> dict:
        """``body(self)`` -> its result; on any failure abort the writers, record the error, re-raise.
        Teardown runs after either."""
        try:
            result = body(self)
        except BaseException as exc:
            if self.result is not None:  # interrupted after finish(): the outputs and manifest are final
                log.warning("event=interrupted_after_finish error=%s", type(exc).__name__)
                return self._after(self.result)
            for w in self.writers:
                w.abort()
            try:
                self.write_manifest("error", failure_reason(exc))
            except OSError:
                pass
            try:
                self._teardown()
            except KeyboardInterrupt:
                pass
            raise
        return self._after(result)

    def _after(self, result: dict) -> dict:
        try:
            self._teardown()
        except KeyboardInterrupt:  # a second interrupt between two teardown steps: the run stays a success
            log.warning("event=teardown_interrupted")
        return result
