"""The object fidelity stage of a run: per chunk, measure the model's frames, apply the object lock, draw
the overlay; at the end, the manifest's ``object_fidelity`` record and the CLI summary lines.

Input-mode agnostic: :meth:`FidelityStage.process_chunk` takes only arrays (the generated chunk, the
cache's slot-0 renders, hole masks and object ids), so every input mode's chunk loop calls it the same
way, between the model's answer and encoding.
"""

from __future__ import annotations

import cv2
import numpy as np

from objvid.client import fidelity as fd
from objvid.client import object_lock as lock

OK_COLOR = (0, 220, 0)
FLAG_COLOR = (255, 40, 40)
SKIP_COLOR = (160, 160, 160)


class FidelityStage:
    """Collects per-frame fidelity of each object over a run.

    objects: {object id: name}; alpha, feather: the object lock (alpha 0 = off); overlay: an object with
    ``append((T, H, W, 3) uint8)`` (the ``--save-buffer`` overlay video writer) or None.
    """

    def __init__(self, objects: dict[int, str], alpha: float = 0.0, feather: float = lock.DEFAULT_FEATHER_PX,
                 thresholds: fd.Thresholds | None = None, overlay=None):  # fmt: skip
        self.objects = dict(objects)
        self.alpha = lock.check_alpha(alpha)
        self.feather = lock.check_feather(feather)
        self.thresholds = thresholds or fd.Thresholds()
        self.overlay = overlay
        self.frames: list[int] = []
        self.model: dict[int, list[fd.ObjectFrame]] = {oid: [] for oid in self.objects}
        self.locked: dict[int, list[fd.ObjectFrame]] = {oid: [] for oid in self.objects}

    def process_chunk(self, video: np.ndarray, renders: np.ndarray, object_ids: np.ndarray,
                      scene_masks: np.ndarray | None, frames: np.ndarray, skip: int = 0) -> np.ndarray:  # fmt: skip
        """video, renders (T, H, W, 3) uint8 (buffer slot 0), object_ids (T, H, W) int (-1 = none),
        scene_masks (T, H, W) (1 = rendered) or None, frames (T,) global indices -> the chunk after the
        object lock (the input itself when the lock is off). The first ``skip`` frames (a chunk's overlap
        frame) are locked but neither measured nor drawn: they are not in the video.
        """
        if not (len(video) == len(renders) == len(object_ids) == len(frames)):
            raise ValueError(f"chunk lengths differ: video {len(video)}, renders {len(renders)}, "
                             f"object ids {len(object_ids)}, frames {len(frames)}")  # fmt: skip
        ids = list(self.objects)
        out, _ = lock.lock_chunk(video, renders, object_ids, scene_masks, self.alpha, self.feather)
        drawn = []
        for t in range(skip, len(video)):
            mask = None if scene_masks is None else scene_masks[t]
            model = fd.measure_frame(renders[t], mask, object_ids[t], video[t], ids, self.thresholds)
            self.frames.append(int(frames[t]))
            for m in model:
                self.model[m.object_id].append(m)
            if self.alpha > 0:
                for m in fd.measure_frame(renders[t], mask, object_ids[t], out[t], ids, self.thresholds):
                    self.locked[m.object_id].append(m)
            if self.overlay is not None:
                drawn.append(draw_overlay(out[t], object_ids[t], model, int(frames[t])))
        if self.overlay is not None and drawn:
            self.overlay.append(np.stack(drawn))
        return out

    def report(self) -> dict:
        """The manifest's ``object_fidelity`` record (definitions in docs/client.md)."""
        objs = []
        for oid, name in self.objects.items():
            rec = {"object_id": oid, "name": name, "summary": fd.summarize(self.frames, self.model[oid]),
                   "per_frame": fd.columns(self.frames, self.model[oid])}  # fmt: skip
            if self.alpha > 0:
                rec["after_lock"] = fd.summarize(self.frames, self.locked[oid])
            objs.append(rec)
        flagged = sorted({f for o in objs for f in o["summary"]["flagged_frames"]})
        return {
            "measured_on": "the model's frames, before the object lock",
            "thresholds": self.thresholds.as_dict(),
            "parameters": {
                "color_erode_px": fd.COLOR_ERODE_PX,
                "silhouette_erode_px": fd.SILHOUETTE_ERODE_PX,
                "ring_gap_px": fd.RING_GAP_PX,
                "gain_ring_px": fd.GAIN_RING_PX,
                "background_ring_px": fd.BACKGROUND_RING_PX,
                "max_shift_px": fd.MAX_SHIFT,
                "ssim_sigma": fd.SSIM_SIGMA,
            },  # fmt: skip
            "object_lock": {"alpha": self.alpha, "feather_px": self.feather} if self.alpha > 0 else None,
            "frames": len(self.frames),
            "flagged_frames": flagged,
            "objects": objs,
        }

    def summary(self) -> list[dict]:
        """Per object: name, id and the model summary (plus ``after_lock``) without the frame lists."""
        out = []
        for oid, name in self.objects.items():
            s = {k: v for k, v in fd.summarize(self.frames, self.model[oid]).items() if k != "flagged_frames"}
            rec = {"object_id": oid, "name": name, **s}
            if self.alpha > 0:
                rec["after_lock"] = fd.summarize(self.frames, self.locked[oid])["flagged"]
            out.append(rec)
        return out


def summary_lines(summary: list[dict]) -> list[tuple[str, str]]:
    """CLI rows ("object fidelity <name>", text) from :meth:`FidelityStage.summary`."""
    rows = []
    for s in summary:
        parts = []
        for key, label, fmt in (("color_error", "color dE", "{:.1f}"), ("ssim", "SSIM", "{:.2f}"),
                                ("silhouette", "silhouette", "{:.2f}"), ("shift_px", "shift px", "{:.1f}")):  # fmt: skip
            m = s.get(key)
            if m is not None:
                parts.append(f"{label} {fmt.format(m['median'])} (worst {fmt.format(m['worst'])} "
                             f"@ frame {m['worst_frame']})")  # fmt: skip
        flagged = f"flagged {s['flagged']}/{s['evaluated']} frames"
        if s["flag_counts"]:
            flagged += " (" + ", ".join(f"{k} {v}" for k, v in s["flag_counts"].items()) + ")"
        if "after_lock" in s:
            flagged += f"; after the lock {s['after_lock']}"
        if s["evaluated"] < s["frames"]:
            flagged += f"; {s['frames'] - s['evaluated']} frames too small to judge"
        text = "; ".join(parts) + ("; " if parts else "") + flagged
        rows.append((f"object fidelity ({s['name'] or s['object_id']})", "median " + text if parts else text))
    return rows


def draw_overlay(frame: np.ndarray, object_ids: np.ndarray, measured: list[fd.ObjectFrame],
                 index: int) -> np.ndarray:  # fmt: skip
    """The frame with each object's rendered outline (green = ok, red = flagged, grey = not judged) and,
    on flagged frames, a red border and the flags written top left."""
    out = np.ascontiguousarray(frame.copy())
    notes = []
    for m in measured:
        colour = FLAG_COLOR if m.flags else OK_COLOR if m.evaluated else SKIP_COLOR
        mask = (object_ids == m.object_id).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, 1, lineType=cv2.LINE_AA)
        if m.flags:
            notes.append(f"#{m.object_id}: {','.join(m.flags)}")
    if notes:
        h, w = out.shape[:2]
        cv2.rectangle(out, (0, 0), (w - 1, h - 1), FLAG_COLOR, 4)
        text = f"frame {index} flagged " + " ".join(notes)
        scale = max(0.4, h / 720)  # ~13 px letters at 352 rows, ~26 px at 704
        cv2.putText(out, text, (8, int(8 + 22 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, FLAG_COLOR,
                    max(1, round(scale * 1.5)), cv2.LINE_AA)  # fmt: skip
    return out
