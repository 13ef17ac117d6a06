"""The studio's Generate panel: runs ``generate``'s pipeline on the current scene, shows its progress per
stage and per diffusion step, then plays the video in the page and offers the files for download.

The run goes through ``objvid.client.pipeline.generate`` with a ``GenerateConfig`` built from the session
(the scene's own image, depth and K, the objects at their poses, the camera path as a ``--camera-path``
file), on a worker thread: the page and the preview stay live, and other clients of the services are
served as usual. Errors show the CLI's one line, ``error: <stage>: <reason>``.
"""

from __future__ import annotations

import base64
import html
import logging
import threading
from pathlib import Path

from objvid.client import pipeline
from objvid.client.errors import ObjvidError

log = logging.getLogger("objvid.client.studio")

STAGES = ("inputs", "depth", "scene", "placement", "render", "diffusion", "update", "encoding")
VIDEO_ID = "objvid-video"


class PageReporter(pipeline.Reporter):
    """Pipeline progress -> the panel's progress bar and stage line (shared by every browser)."""

    def __init__(self, panel: GeneratePanel):
        self.panel = panel
        self.done: list[str] = []
        self.current = ""

    def start(self, stage, total=None, text=""):
        self.current = stage
        self.panel.show_progress(stage, 0, total, text)

    def update(self, stage, completed=None, total=None, text=None):
        self.panel.show_progress(stage, completed, total, text)

    def finish(self, stage, text=None):
        if stage not in self.done:
            self.done.append(stage)
        total = self.panel._totals.get(stage) or 1
        self.panel.show_progress(stage, total, total, text or "done")

    def note(self, text):
        self.panel.note(text)


class GeneratePanel:
    """Prompt, seed, the Generate button, progress, result (video + downloads) and errors."""

    def __init__(self, server, session, folder, message):
        self.server, self.session, self.message = server, session, message
        self.flush = lambda: None  # the app sets this: send pending object poses first
        self._lock = threading.Lock()
        self.runs = 0
        self.result: dict | None = None
        self.error: str | None = None
        self._totals: dict[str, float | None] = {}
        self.history: list[tuple] = []  # (stage, completed, total) as shown, for scripts and tests
        gui = server.gui
        with folder:
            self.gui_prompt = gui.add_text("prompt", "", hint="text prompt (gen3c)")
            self.gui_seed = gui.add_number("seed", 1, min=0, step=1)
            self.gui_button = gui.add_button("Generate", hint=f"backend: {session.config.backend}")
            self.gui_progress = gui.add_progress_bar(0.0, animated=False)
            self.gui_stage = gui.add_markdown("")
            self.gui_notes = gui.add_markdown("")
            self.gui_video = gui.add_html("")
            self.gui_dl_video = gui.add_button("Download video (mp4)", visible=False)
            self.gui_dl_buffer = gui.add_button("Download buffer video (mp4)", visible=False)
            self.gui_dl_manifest = gui.add_button("Download manifest (JSON)", visible=False)
        self.gui_button.on_click(lambda _: self.start())
        self.gui_dl_video.on_click(lambda e: self._send(e, "video"))
        self.gui_dl_buffer.on_click(lambda e: self._send(e, "buffer_video"))
        self.gui_dl_manifest.on_click(lambda e: self._send(e, "manifest"))

    # ------------------------------------------------------------------------------ progress

    def show_progress(self, stage: str, completed, total, text) -> None:
        self.history.append((stage, completed, total))
        if total is not None:
            self._totals[stage] = total
        total = self._totals.get(stage)
        if completed is not None and total:
            self.gui_progress.value = max(0.0, min(100.0, 100.0 * float(completed) / float(total)))
        step = f" {int(completed)}/{int(total)}" if completed is not None and total else ""
        self.gui_stage.content = f"**{stage}**{step} {html.escape(text or '')}"

    def note(self, text: str) -> None:
        self.gui_notes.content = f"note: {html.escape(text)}"

    # ------------------------------------------------------------------------------ running

    def start(self) -> bool:
        """Start a run on a worker thread; False when one is already running."""
        if not self._lock.acquire(blocking=False):
            return False
        self.gui_button.disabled = True
        self.runs += 1
        run_dir = self.session.workdir / "runs" / f"{self.runs:03d}"
        self.result, self.error = None, None
        for h in (self.gui_dl_video, self.gui_dl_buffer, self.gui_dl_manifest):
            h.visible = False
        self.gui_video.content = ""
        self.gui_notes.content = ""
        self.gui_progress.value = 0.0
        self._totals.clear()
        self.history = []
        threading.Thread(target=self._run, args=(run_dir,), name="studio-generate", daemon=True).start()
        return True

    def _run(self, run_dir: Path) -> None:
        try:
            self.flush()
            cfg = self.session.generate_config(
                run_dir, prompt=self.gui_prompt.value, seed=int(self.gui_seed.value)
            )
            result = pipeline.generate(cfg, self.session.client, PageReporter(self))
        except ObjvidError as err:
            self._fail(f"error: {err.stage}: {err.reason}")
        except Exception as err:  # noqa: BLE001 - any failure becomes one line in the page
            log.exception("event=generate_failed")
            self._fail(f"error: generate: {type(err).__name__}: {err}")
        else:
            self._succeed(result)
        finally:
            self.gui_button.disabled = False
            self._lock.release()

    def _fail(self, line: str) -> None:
        self.error = line
        self.gui_stage.content = f"<span style='color:#c00' id='objvid-error'>{html.escape(line)}</span>"

    def _succeed(self, result: dict) -> None:
        self.result = result
        self.gui_progress.value = 100.0
        video = Path(result["video"])
        data = base64.b64encode(video.read_bytes()).decode("ascii")
        label = "preview backend: hole filling, NOT GEN3C" if result.get("preview") else result["backend"]
        self.gui_stage.content = (f"**done**: {result['frames']} frames, {result['width']}x{result['height']} "
                                  f"({html.escape(label)}) · `{html.escape(str(video))}`")  # fmt: skip
        self.gui_video.content = (
            f'<video id="{VIDEO_ID}" src="data:video/mp4;base64,{data}" controls autoplay muted loop '
            f'playsinline style="width:100%"></video>'
        )
        self.gui_dl_video.visible = True
        self.gui_dl_buffer.visible = bool(result.get("buffer_video"))
        self.gui_dl_manifest.visible = True

    def _send(self, event, key: str) -> None:
        if not self.result or not self.result.get(key):
            return
        path = Path(self.result[key])
        event.client.send_file_download(path.name, path.read_bytes(), save_immediately=True)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no run is active (for scripts); False on timeout."""
        got = self._lock.acquire(timeout=-1 if timeout is None else timeout)
        if got:
            self._lock.release()
        return got
