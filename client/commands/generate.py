"""``generate``: inputs -> depth -> scene -> placement -> per chunk: render -> diffusion -> encoding
(-> scene update between chunks).

Per chunk: RenderTrajectory (all buffer slots, objects fused in each) -> Triton (preview or gen3c,
progress streamed) -> mp4. Long videos follow GEN3C's autoregressive loop (reference 4.4): chunk c covers
frames [120 c, 120 c + 121); after it, the last generated frame is lifted by the depth service at the
video size, object pixels are masked out (the object layer is never baked into the scene), and
UpdateScene adds it at the trajectory camera of the next chunk's first frame (K from the trajectory, not
MoGe); the next chunk is rendered with both buffer slots, generated from that last frame, and its first
frame (the 1-frame overlap) is dropped.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from objvid.client import manifest as mf
from objvid.client import stages
from objvid.client.fidelity_stage import FidelityStage
from objvid.client.options import MAX_SLOTS, GenerateConfig, chunk_ranges
from objvid.client.plan import Plan
from objvid.client.render_path import RenderPath
from objvid.client.run import Reporter, Run
from objvid.client.sdk import ObjvidClient, SceneSession
from objvid.client.sources import SourceView
from objvid.client.video import Mp4Writer, tile_buffers
from objvid.v1 import diffusion_pb2


def generate(config: GenerateConfig, client: ObjvidClient, reporter: Reporter | None = None,
             services: dict | None = None) -> dict:  # fmt: skip
    """Run ``generate``; returns a summary dict (video path, size, frames, backend, preview, timings, ...).

    Raises ObjvidError(stage, reason). The mp4 appears only when everything succeeded.
    """
    return Run("generate", config, client, reporter, services).execute(_generate)


def generate_options(cfg: GenerateConfig, chunk_index: int = 0) -> diffusion_pb2.GenerateOptions:
    """The sampling options sent to the model (unset = the model's defaults). ``chunk_index``: fresh,
    seed-determined initial noise per chunk of a long video, as upstream draws fresh noise per chunk."""
    opts = diffusion_pb2.GenerateOptions(prompt=cfg.prompt, fps=cfg.fps, chunk_index=chunk_index)
    if cfg.negative_prompt is not None:  # unset: the model uses upstream's default negative prompt
        opts.negative_prompt = cfg.negative_prompt
    if cfg.seed is not None:
        opts.seed = cfg.seed
    if cfg.steps is not None:
        opts.num_steps = cfg.steps
    if cfg.guidance is not None:
        opts.guidance = cfg.guidance
    if cfg.view_fusion == "latent-max":
        opts.view_fusion = diffusion_pb2.VIEW_FUSION_LATENT_MAX
    return opts


class Outputs:
    """The videos of a generate run (written to temporary files, published by :meth:`finish`) and the
    per-chunk masks. video: the result; renders: ``<workdir>/renders.mp4`` (buffer slots side by side);
    buffer: ``<out>_buffer.mp4`` (renders left of the video) and fidelity: ``<out>_fidelity.mp4`` (object
    outlines, flagged frames marked) with ``--save-buffer``."""

    def __init__(self, run: Run, plan: Plan, n_max: int):
        cfg = run.config
        self.run, self.n_max = run, n_max
        self.buffer_path = cfg.out.with_name(f"{cfg.out.stem}_buffer.mp4") if cfg.save_buffer else None
        self.video = run.writer(Mp4Writer(cfg.out, plan.width, plan.height, cfg.fps))
        self.renders = run.writer(Mp4Writer(run.workdir / "renders.mp4", plan.width * n_max, plan.height,
                                            cfg.fps, preset="ultrafast"))  # fmt: skip
        self.buffer = self.fidelity = None
        if self.buffer_path is not None:
            self.buffer = run.writer(
                Mp4Writer(self.buffer_path, plan.width * (1 + n_max), plan.height, cfg.fps)
            )
            self.fidelity = run.writer(
                Mp4Writer(cfg.out.with_name(f"{cfg.out.stem}_fidelity.mp4"), plan.width, plan.height, cfg.fps)
            )

    def add_chunk(self, c: int, frames: np.ndarray, video: np.ndarray, r: stages.RenderBuffers) -> None:
        """Append a chunk's kept frames (``frames``: global indices) and save its masks."""
        keep = slice(len(video) - len(frames), None)
        self.video.append(video[keep])
        tiled = tile_buffers(r.rgb[keep], self.n_max)
        self.renders.append(tiled)
        if self.buffer is not None:
            self.buffer.append(np.concatenate([tiled, video[keep]], axis=2))
        mf.save_masks(self.run.workdir / f"masks_chunk{c:02d}.npz", r.mask[keep], r.objects[keep], frames)

    def finish(self) -> dict:
        for w in self.run.writers:
            w.finish()
        return {"video": str(self.video.path.resolve()), "renders": str(self.renders.path.resolve()),
                "buffer_video": str(self.buffer_path.resolve()) if self.buffer_path else None,
                "fidelity_video": str(self.fidelity.path.resolve()) if self.fidelity else None}  # fmt: skip


def first_frame(view: SourceView, r: stages.RenderBuffers) -> np.ndarray:
    """The model's first frame: the input (seed) image with the objects drawn in (the render at the input
    camera, from the frame's first slot in use)."""
    from objvid.client.multiview import active_slot

    out = view.image.copy()
    visible = r.objects[0] >= 0
    out[visible] = r.rgb[0, active_slot(r.sources[0])][visible]
    return out


def diffuse(run: Run, first: np.ndarray, r: stages.RenderBuffers, label: str, chunk: int, path: RenderPath,
            source) -> tuple[np.ndarray, dict]:  # fmt: skip
    """Stage ``diffusion``: one chunk through Triton -> (video (T, H, W, 3) uint8, the chunk's data-path
    record). ``path`` decides whether the renders go along or the model fetches ``source()`` itself."""
    cfg = run.config
    t, h, w = r.shape
    with run.stage("diffusion", None, f"{label} ({cfg.backend})"):

        def on_progress(msg: diffusion_pb2.GenerateProgress) -> None:
            stage = diffusion_pb2.GenerateStage.Name(msg.stage).removeprefix("GENERATE_STAGE_").lower()
            run.reporter.update("diffusion", msg.step, msg.total or None, f"{label}: {stage}")

        video, last, record = path.send(run.client, cfg.backend, first, r.rgb, r.mask, generate_options(cfg, chunk),
                                        source, on_progress)  # fmt: skip
        if video.shape != (t, h, w, 3):
            raise ValueError(f"the model returned video {video.shape}, expected {(t, h, w, 3)}")
        if last is not None and last.preview != (cfg.backend == "preview"):
            run.reporter.note(f"model {last.model!r} reports preview={last.preview}")
    record.update(bytes_from_model=int(video.nbytes), bytes_from_cache=r.wire_bytes)
    return video, record


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(radius):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def update_scene(run: Run, session: SceneSession, plan: Plan, frame: np.ndarray, objects: np.ndarray,
                 K: np.ndarray, w2c: np.ndarray, label: str) -> dict:  # fmt: skip
    """Stage ``update``: lift the last generated frame and add it at the next chunk's first camera."""
    with run.stage("update", 2, f"{label}: lifting the last frame"):
        # The frame is at the working size and only the depth is used: no image back (2.7 MB at 720p).
        view = run.client.lift([frame], width=plan.width, height=plan.height, omit_image=True)[0]
        if view.depth.shape != (plan.height, plan.width):
            raise ValueError(
                f"depth service returned {view.depth.shape}, expected {(plan.height, plan.width)}"
            )
        run.reporter.update("update", 1, text=f"{label}: updating the scene")
        keep = ~_dilate(objects >= 0, 2)  # scene pixels only: the object layer stays separate
        resp = session.update_scene(run.client.rgbd_view(frame, view.depth, K, w2c, keep))
        run.reporter.update("update", 2)
        a = resp.alignment
        return {"slots": resp.scene.num_buffer_slots, "scale": a.scale, "shift": a.shift,
                "error_before": a.error_before, "error_after": a.error_after, "pixels_used": a.pixels_used,
                "object_pixels_masked": int((~keep).sum())}  # fmt: skip


def _generate(run: Run) -> dict:
    cfg = run.config
    plan = stages.inputs(run)
    run.workdir.mkdir(parents=True, exist_ok=True)
    preview = cfg.backend == "preview"
    run.manifest.update(backend=cfg.backend, preview=preview)
    if preview:
        run.reporter.note("backend: preview (OpenCV hole filling of the cache renders, not GEN3C)")
    with run.errors_as("diffusion"):  # a wrong Triton address or model fails before the depth and render work
        run.client.check_model(cfg.backend)
    stages.depth(run, plan)
    Ks, w2cs = stages.cameras(run, plan)
    session = stages.scene(run, plan)
    chunks = chunk_ranges(plan.frames)
    with run.timings.stage("encoding"):  # timed, but no bar: a done `encoding` bar before rendering misleads
        slots = len(plan.views) if cfg.view_fusion == "latent-max" else min(MAX_SLOTS, len(plan.views))
        outputs = Outputs(run, plan, slots if len(plan.views) > 1 else min(MAX_SLOTS, len(chunks)))
    names = {o["object_id"]: o["name"] for o in run.manifest.get("objects", [])}
    fidelity = FidelityStage(names, cfg.object_lock, cfg.object_lock_feather, overlay=outputs.fidelity)
    first = None
    object_pixels: list[list[int]] = []
    path = RenderPath(cfg.render_source, run.manifest["services"], cfg.backend)
    options = stages.render_options(run, plan)
    for c, (start, end) in enumerate(chunks):
        label = f"frames {start}-{end - 1}"  # one chunk: the chunk number says nothing
        if len(chunks) > 1:
            label = f"chunk {c + 1}/{len(chunks)}: {label}"
        r = stages.RenderBuffers(end - start, plan.height, plan.width)
        stages.render(run, session, Ks[start:end], w2cs[start:end], plan, label, r.add,
                      start_frame=start if plan.video else 0)  # fmt: skip
        if c == 0:
            first = first_frame(plan.view, r)
        video, sent = diffuse(run, first, r, label, c, path, lambda s=start, e=end: session.render_source(
            Ks[s:e], w2cs[s:e], plan.width, plan.height, options, s if plan.video else 0))  # fmt: skip
        kept = np.arange(start, end)[0 if c == 0 else 1 :]  # later chunks drop the 1-frame overlap
        with run.stage("fidelity", None, label):
            video = fidelity.process_chunk(video, r.rgb[:, 0], r.objects, r.mask[:, 0], np.arange(start, end),
                                           skip=len(video) - len(kept))  # fmt: skip
        with run.stage("encoding"):
            outputs.add_chunk(c, kept, video, r)
            if c == 0:
                Image.fromarray(first).save(run.workdir / "first_frame.png", compress_level=1)
        object_pixels += [[int((o == i).sum()) for i in session.object_ids] for o in r.objects[-len(kept) :]]
        record = {"index": c, "start": start, "end": end, "slots": int(r.rgb.shape[1]), **sent}
        if "views" in run.manifest:  # which source view fed each buffer slot, per kept frame
            record["slot_sources"] = r.sources[-len(kept) :]
            run.manifest["views"]["slot_sources"] += record["slot_sources"]
        if c + 1 < len(chunks):
            first = video[-1].copy()  # the next chunk is conditioned on this chunk's last frame
        # video scenes render from the video and multi-view scenes from their views: never updated
        if c + 1 < len(chunks) and not plan.video and plan.source.updates_scene:
            record["update"] = update_scene(run, session, plan, first, r.objects[-1], Ks[end - 1], w2cs[end - 1],
                                            f"chunk {c + 2}/{len(chunks)}")  # fmt: skip
        run.manifest["chunks"].append(record)
        del r, video
    with run.stage("encoding"):
        paths = outputs.finish()
    run.manifest["object_pixels"] = {"per_frame": object_pixels, "object_ids": session.object_ids}
    run.manifest["object_fidelity"] = fidelity.report()
    run.manifest["scene"]["rebuilds"] = session.rebuilds
    run.manifest["render_path"] = path.record()
    run.manifest["outputs"] = paths
    return run.finish({"video": paths["video"], "buffer_video": paths["buffer_video"],
                       "fidelity_video": paths["fidelity_video"], "object_fidelity": fidelity.summary(),
                       "frames": plan.frames, "width": plan.width, "height": plan.height, "fps": cfg.fps,
                       "backend": cfg.backend, "preview": preview, "chunks": len(chunks),
                       "workdir": str(run.workdir.resolve())})  # fmt: skip
