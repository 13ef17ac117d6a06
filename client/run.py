"""One run of a command: progress, per-stage timings, the manifest, and the single failure path.

:meth:`Run.stage` times a block, drives its progress bar and turns what fails inside into
``ObjvidError(stage, reason)`` (``errors.stage_error``). :meth:`Run.execute` runs a command body and, on
any failure (including Ctrl-C / SIGTERM), aborts the open video writers (no partial mp4) and records
``status: error`` in ``<workdir>/manifest.json``; there is no other place that does this.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from objvid.client import manifest as mf
from objvid.client.errors import failure_reason, stage_error
from objvid.client.options import GenerateConfig


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
        try:
            with self.timings.stage(name):
                yield
        except Exception as exc:
            err = stage_error(name, exc)
            if err is None or err is exc:
                raise
            raise err from None
        self.reporter.finish(name)

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

    def execute(self, body: Callable[[Run], dict]) -> dict:
        """``body(self)`` -> its result; on any failure abort the writers, record the error, re-raise."""
        try:
            return body(self)
        except BaseException as exc:
            for w in self.writers:
                w.abort()
            try:
                self.write_manifest("error", failure_reason(exc))
            except OSError:
                pass
            raise
