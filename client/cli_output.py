"""What the CLI prints: progress bars per stage (rich, on stderr), the one-line errors, the summary
table, or one JSON object on stdout (``--json``)."""

from __future__ import annotations

import json
import sys
import time

from objvid.client.run import Reporter

STAGE_LABELS = {
    "inputs": "inputs",
    "stack": "local servers",
    "depth": "depth",
    "scene": "scene",
    "placement": "placement",
    "render": "render",
    "diffusion": "diffusion",
    "fidelity": "object fidelity",
    "update": "scene update",
    "encoding": "encoding",
    "stack_stop": "stopping servers",
}
LABEL_WIDTH = max(len(v) for v in STAGE_LABELS.values())
BAR_WIDTH = 20


def stage_time_column():
    """A rich column: the seconds a stage's bar was running, summed over its runs (a stage runs once per
    chunk), counted from ``start`` to ``finish`` like the summary table, not until the bar first fills."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class StageTime(ProgressColumn):
        def render(self, task):
            since = task.fields.get("since")
            seconds = task.fields.get("spent", 0.0) + (time.monotonic() - since if since is not None else 0.0)
            return Text(f"{seconds:6.1f}s", style="progress.elapsed")

    return StageTime()


class RichReporter(Reporter):
    """One progress bar per stage on stderr."""

    def __init__(self, console):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
        )
        from rich.table import Column

        self.console = console
        # Every column but the description has a fixed width; the description is cut (with an ellipsis) to
        # what is left of the terminal's width, so a longer text never narrows the bars (all bars redraw).
        fixed = 1 + LABEL_WIDTH + BAR_WIDTH + 7 + 7 + 5  # spinner, label, bar, "121/121", "  12.3s", gaps
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn(f"[bold]{{task.fields[stage]:<{LABEL_WIDTH}}}"),
            BarColumn(bar_width=BAR_WIDTH),
            MofNCompleteColumn(),
            stage_time_column(),
            TextColumn("{task.description}", table_column=Column(
                no_wrap=True, overflow="ellipsis", max_width=max(12, console.width - fixed - 1))),
            console=console,
            transient=False,
        )  # fmt: skip
        self.tasks: dict[str, int] = {}
        self.progress.start()

    def start(self, stage, total=None, text=""):
        now = time.monotonic()
        if stage in self.tasks:
            self.progress.update(self.tasks[stage], total=total, completed=0, description=text, since=now)
            self.progress.start_task(self.tasks[stage])
        else:
            self.tasks[stage] = self.progress.add_task(
                text, total=total, stage=STAGE_LABELS.get(stage, stage), spent=0.0, since=now
            )

    def update(self, stage, completed=None, total=None, text=None):
        if stage not in self.tasks:
            self.start(stage, total, text or "")
        kw = {}
        if completed is not None:
            kw["completed"] = completed
        if total is not None:
            kw["total"] = total
        if text is not None:
            kw["description"] = text
        self.progress.update(self.tasks[stage], **kw)

    def finish(self, stage, text=None):
        if stage in self.tasks:
            t = next(t for t in self.progress.tasks if t.id == self.tasks[stage])
            total = t.total if t.total is not None else max(t.completed, 1)
            since = t.fields.get("since")
            spent = t.fields.get("spent", 0.0) + (time.monotonic() - since if since is not None else 0.0)
            self.progress.update(self.tasks[stage], total=total, completed=total, spent=spent, since=None)
            if text:
                self.progress.update(self.tasks[stage], description=text)

    def note(self, text):
        self.progress.console.print(f"[yellow]note:[/yellow] {text}")

    def close(self):
        self.progress.stop()


class Output:
    """Where messages go: rich on stderr (default), nothing (--quiet) or JSON on stdout (--json)."""

    def __init__(self, quiet: bool, as_json: bool):
        from rich.console import Console

        self.quiet, self.json = quiet, as_json
        self.err = Console(stderr=True, highlight=False)
        self.reporter: RichReporter | None = None

    def make_reporter(self) -> Reporter:
        if self.quiet or self.json:
            return Reporter()
        self.reporter = RichReporter(self.err)
        return self.reporter

    def close(self) -> None:
        if self.reporter is not None:
            self.reporter.close()
            self.reporter = None

    def info(self, text: str) -> None:
        if not (self.quiet or self.json):
            self.err.print(text)

    def error(self, stage: str, reason: str) -> None:
        self.close()
        print(f"error: {stage}: {reason}", file=sys.stderr, flush=True)
        if self.json:
            print(json.dumps({"status": "error", "stage": stage, "reason": reason}), flush=True)

    def summary(self, title: str, result: dict, rows: list[tuple[str, str]]) -> None:
        self.close()
        if self.json:
            print(json.dumps({"status": "ok", **result}, default=str), flush=True)
            return
        if self.quiet:
            return
        from rich.table import Table

        table = Table(title=title, show_header=True, header_style="bold")
        table.add_column("stage")
        table.add_column("seconds", justify="right")
        for stage, seconds in result.get("timings", {}).items():
            table.add_row(STAGE_LABELS.get(stage, stage), f"{seconds:.2f}")
        self.err.print(table)
        for key, value in rows:
            self.err.print(f"[bold]{key}:[/bold] {value}")
