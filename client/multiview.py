"""Multi-view input (``--views``): several posed RGB-D views of one static scene instead of one photo.

Three sources (``load_views``):

- ``FILE.npz`` in upstream GEN3C's multi-view format (``gen3c_multiview.py``): ``images_key_frames``
  (N,3,H,W) float in [-1,1], ``depth_key_frames`` (N,1,H,W) z-depth, ``mask_key_frames`` (N,1,H,W),
  ``K_key_frames`` (N,3,3) pixels, ``w2cs_key_frames`` (N,4,4) OpenCV world-to-camera; optional
  ``w2cs_all`` (T,4,4) and ``Ks_all`` (T,3,3): the target trajectory. No neural model is used.
- an image folder or glob, or a video: unposed frames (``frames.py`` picks them) that the depth
  service's multi-view geometry model (``LiftViews``) turns into posed RGB-D views.

The cache holds all N views as sources and picks at most 2 buffer slots per frame as upstream's
``Cache3D_BufferSelector`` does; the manifest records which view fed each slot in each frame.
Trajectories: ``--camera-path``, else the npz's ``w2cs_all`` (``--views-trajectory auto|npz``), else the
preset relative to the seed view (``--seed-view``, default 0): ``w2c_i = L_i @ w2c_seed``, K = the seed's.
Long videos follow upstream's multi-view loop: no scene update; each chunk starts from the previous
chunk's last generated frame and renders the same sources. The input mode itself is
``objvid.client.sources.multi_view``; this module holds the file formats and the rules.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from objvid.client import inputs as io

NPZ_KEYS = ("images_key_frames", "depth_key_frames", "mask_key_frames", "K_key_frames", "w2cs_key_frames")
TRAJECTORY_MODES = ("auto", "npz", "preset")
ROTATION_TOL = 1e-3  # |R R^T - I| and |det R - 1| allowed in stored float32 poses


@dataclass
class ViewsInput:
    """N posed RGB-D views in one world frame (OpenCV) at one size.

    images (N,H,W,3) uint8; depths (N,H,W) float32 z-depth; masks (N,H,W) bool (True = valid);
    Ks (N,3,3) and w2cs (N,4,4) float64; optional target trajectory w2cs_all (T,4,4) / Ks_all (T,3,3).
    """

    images: np.ndarray | list
    depths: np.ndarray | None
    masks: np.ndarray | None
    Ks: np.ndarray | None
    w2cs: np.ndarray | None
    source: str
    w2cs_all: np.ndarray | None = None
    Ks_all: np.ndarray | None = None
    model: str = ""
    files: list = field(default_factory=list)  # unposed: the image files or "video.mp4#frame"

    @property
    def posed(self) -> bool:
        """False until the geometry model has given depth and cameras (image folder / video input)."""
        return self.depths is not None

    @property
    def count(self) -> int:
        return len(self.images)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.images.shape[2]), int(self.images.shape[1])

    def resized(self, width: int, height: int) -> ViewsInput:
        """The views at width x height: images bilinear, depth and masks nearest, K scaled (GEN3C's rule)."""
        if not self.posed:  # images may differ in size: each is squashed to the working size
            return replace(self, images=np.stack([io.resize_image(i, width, height) for i in self.images]))
        w0, h0 = self.size
        if (w0, h0) == (width, height):
            return self
        Ks_all = None
        if self.Ks_all is not None:
            Ks_all = np.stack([io.scale_intrinsics(K, (w0, h0), (width, height)) for K in self.Ks_all])
        return ViewsInput(
            images=np.stack([io.resize_image(i, width, height) for i in self.images]),
            depths=np.stack([io.resize_nearest(d, width, height) for d in self.depths]),
            masks=np.stack([io.resize_nearest(m, width, height) for m in self.masks]),
            Ks=np.stack([io.scale_intrinsics(K, (w0, h0), (width, height)) for K in self.Ks]),
            w2cs=self.w2cs,
            source=self.source,
            w2cs_all=self.w2cs_all,
            Ks_all=Ks_all,
            model=self.model,
            files=self.files,
        )


def is_npz(spec: str | Path) -> bool:
    return str(spec).lower().endswith(".npz")


# ---------------------------------------------------------------------------------------------------
# npz


def load_npz(path: str | Path, name: str = "--views") -> ViewsInput:
    """Read and check an upstream multi-view npz. ValueError ``"--views FILE: <key>: <reason>"``.
    The last file read is kept (the plan asks for its size before the input mode reads it)."""
    path = Path(path)
    try:
        key = (str(path.resolve()), path.stat().st_mtime_ns, path.stat().st_size, name)
    except OSError:
        key = None
    if key is not None and _LAST_NPZ.get("key") == key:
        return _LAST_NPZ["views"]
    views = _load_npz(path, name)
    _LAST_NPZ.update(key=key, views=views)
    return views


_LAST_NPZ: dict = {}


def _load_npz(path: Path, name: str) -> ViewsInput:
    where = f"{name} {path}"
    if not path.is_file():
        raise ValueError(f"{where}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{where}: not a readable .npz ({exc})") from None
    missing = [k for k in NPZ_KEYS if k not in data]
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(missing)} (upstream multi-view format needs "
                         f"{', '.join(NPZ_KEYS)}; optional w2cs_all, Ks_all)")  # fmt: skip
    img = _numbers(data["images_key_frames"], where, "images_key_frames")
    if img.ndim != 4 or img.shape[1] != 3:
        raise ValueError(f"{where}: images_key_frames: expected (N, 3, H, W), got {img.shape}")
    n, _, h, w = img.shape
    if n == 0:
        raise ValueError(f"{where}: images_key_frames: no views (N = 0)")
    if not np.isfinite(img).all() or img.min() < -1.001 or img.max() > 1.001:
        raise ValueError(f"{where}: images_key_frames: values must be finite and in [-1, 1] "
                         f"(got [{np.nanmin(img):.3g}, {np.nanmax(img):.3g}])")  # fmt: skip
    depth = _shaped(data, "depth_key_frames", (n, 1, h, w), where)[:, 0].astype(np.float32)
    mask = _shaped(data, "mask_key_frames", (n, 1, h, w), where)[:, 0]
    Ks = _shaped(data, "K_key_frames", (n, 3, 3), where).astype(np.float64)
    w2cs = _shaped(data, "w2cs_key_frames", (n, 4, 4), where).astype(np.float64)
    valid_mask = np.nan_to_num(mask.astype(np.float64)) > 0.5
    for i in range(n):
        check_intrinsics(Ks[i], f"{where}: K_key_frames[{i}]")
        check_rigid(w2cs[i], f"{where}: w2cs_key_frames[{i}]")
        if not (valid_mask[i] & (np.nan_to_num(depth[i], nan=0.0) > 0)).any():
            raise ValueError(
                f"{where}: mask_key_frames[{i}]: no valid pixel (empty mask or no depth > 0 inside it)"
            )
    w2cs_all = Ks_all = None
    if "w2cs_all" in data:
        w2cs_all = _numbers(data["w2cs_all"], where, "w2cs_all").astype(np.float64)
        if w2cs_all.ndim != 3 or w2cs_all.shape[1:] != (4, 4) or len(w2cs_all) == 0:
            raise ValueError(f"{where}: w2cs_all: expected (T, 4, 4) with T >= 1, got {w2cs_all.shape}")
        for t in range(len(w2cs_all)):
            check_rigid(w2cs_all[t], f"{where}: w2cs_all[{t}]")
    if "Ks_all" in data:
        if w2cs_all is None:
            raise ValueError(f"{where}: Ks_all is given without w2cs_all")
        Ks_all = _shaped(data, "Ks_all", (len(w2cs_all), 3, 3), where).astype(np.float64)
        for t in range(len(Ks_all)):
            check_intrinsics(Ks_all[t], f"{where}: Ks_all[{t}]")
    images = np.clip(np.round((img.transpose(0, 2, 3, 1) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return ViewsInput(images, depth, valid_mask, Ks, w2cs, "npz", w2cs_all, Ks_all)


def _numbers(a: np.ndarray, where: str, key: str) -> np.ndarray:
    if a.dtype.kind not in "fiub":
        raise ValueError(f"{where}: {key}: expected numbers, got dtype {a.dtype}")
    return a.astype(np.float64) if a.dtype.kind != "f" else a


def _shaped(data: dict, key: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    a = _numbers(data[key], where, key)
    if a.shape != shape:
        if a.ndim >= 1 and a.ndim == len(shape) and a.shape[0] != shape[0]:
            raise ValueError(
                f"{where}: {key}: {a.shape[0]} entries, expected {shape[0]} (one per view / frame)"
            )
        raise ValueError(f"{where}: {key}: expected shape {shape}, got {a.shape}")
    if key != "depth_key_frames" and not np.isfinite(a).all():
        raise ValueError(f"{where}: {key}: contains NaN or inf")
    return a


def check_intrinsics(K: np.ndarray, name: str) -> None:
    if not np.allclose(K[2], [0, 0, 1], atol=1e-6) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"{name}: not pixel intrinsics (needs fx, fy > 0 and last row 0 0 1)")


def check_rigid(T: np.ndarray, name: str) -> None:
    """A world-to-camera matrix: last row 0 0 0 1, rotation orthonormal with det +1 (no scale/shear)."""
    if not np.allclose(T[3], [0, 0, 0, 1], atol=1e-6):
        raise ValueError(f"{name}: last row must be 0 0 0 1, got {T[3].tolist()}")
    R = T[:3, :3]
    err = float(np.abs(R @ R.T - np.eye(3)).max())
    det = float(np.linalg.det(R))
    if err > ROTATION_TOL or abs(det - 1.0) > ROTATION_TOL:
        raise ValueError(f"{name}: not rigid (rotation part has |R R^T - I| = {err:.2g}, det = {det:.4g}; "
                         "scale, shear and reflections are not camera poses)")  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Trajectories


def trajectory(views: ViewsInput, seed_view: int, mode: str, preset_w2cs: np.ndarray | None,
               frames: int) -> tuple[np.ndarray, np.ndarray, str]:  # fmt: skip
    """Target cameras ((T,3,3) Ks, (T,4,4) w2cs, description) for a multi-view run without a camera path.

    mode auto: the npz's ``w2cs_all`` when present, else the preset; npz: ``w2cs_all`` (error without it);
    preset: ``preset_w2cs`` (poses L_i from an identity start) applied to the seed view, ``L_i @ w2c_seed``,
    with the seed's K. ``w2cs_all`` without ``Ks_all`` uses the last key view's K, as upstream.
    """
    if mode not in TRAJECTORY_MODES:
        raise ValueError(f"--views-trajectory must be one of {', '.join(TRAJECTORY_MODES)}, got {mode!r}")
    if mode == "npz" and views.w2cs_all is None:
        raise ValueError("--views-trajectory npz: the views have no w2cs_all trajectory")
    if mode != "preset" and views.w2cs_all is not None:
        if frames > len(views.w2cs_all):
            raise ValueError(
                f"--frames {frames}: the npz trajectory w2cs_all has only {len(views.w2cs_all)} poses"
            )
        w2cs = views.w2cs_all[:frames]
        Ks = views.Ks_all[:frames] if views.Ks_all is not None else np.repeat(views.Ks[-1][None], frames, 0)
        return Ks.copy(), w2cs.copy(), "npz w2cs_all" + (" + Ks_all" if views.Ks_all is not None else "")
    w2cs = np.einsum("tij,jk->tik", preset_w2cs, views.w2cs[seed_view])
    return np.repeat(views.Ks[seed_view][None], frames, 0), w2cs, f"preset relative to view {seed_view}"


def check_seed_view(seed_view: int, count: int) -> None:
    if isinstance(seed_view, bool) or not isinstance(seed_view, int) or not 0 <= seed_view < count:
        raise ValueError(f"--seed-view must be a view index in [0, {count}), got {seed_view!r}")


def active_slot(slot_sources: np.ndarray | None) -> int:
    """The first buffer slot in use in a frame (0 for single-view scenes)."""
    if slot_sources is None or len(slot_sources) == 0:
        return 0
    used = np.nonzero(np.asarray(slot_sources) >= 0)[0]
    return int(used[0]) if len(used) else 0


def rgbd_views_message(views: ViewsInput, seed_view: int):
    """``objvid.v1.RgbdViews`` of the views (invalid pixels masked out, as upstream's ``input_mask``)."""
    from objvid.client.sdk import ObjvidClient
    from objvid.v1 import cache_pb2

    msg = cache_pb2.RgbdViews(seed_view=seed_view)
    for i in range(views.count):
        msg.views.append(ObjvidClient.rgbd_view(views.images[i], views.depths[i], views.Ks[i], views.w2cs[i],
                                                views.masks[i]))  # fmt: skip
    return msg


# ---------------------------------------------------------------------------------------------------
# Pipeline hooks (``pipeline.py`` calls these; everything multi-view stays in this module)


FUSIONS = ("select", "latent-max")
MAX_FUSION_VIEWS = 8  # = objvid.diffusion.base.MAX_FUSION_VIEWS


def plan_inputs(cfg) -> ViewsInput | None:
    """Check --image / --views exclusivity and load npz views (native size). None without --views."""
    if cfg.view_fusion not in FUSIONS:
        raise ValueError(f"--view-fusion must be one of {', '.join(FUSIONS)}, got {cfg.view_fusion!r}")
    if cfg.view_fusion == "latent-max" and cfg.views is None:
        raise ValueError("--view-fusion latent-max needs --views (it fuses several source views)")
    if cfg.views is None:
        if cfg.image is None:
            raise ValueError("--image is required (or --views for several views of the scene)")
        return None
    if cfg.image is not None:
        raise ValueError("--image and --views are exclusive (the seed view's image is the first frame)")
    if cfg.depth is not None or cfg.intrinsics is not None:
        raise ValueError("--depth/--intrinsics apply to --image; --views carry their own depth and cameras")
    if cfg.views_trajectory not in TRAJECTORY_MODES:
        raise ValueError(f"--views-trajectory must be one of {', '.join(TRAJECTORY_MODES)}, "
                         f"got {cfg.views_trajectory!r}")  # fmt: skip
    from objvid.client import view_frames as vf

    kind = vf.classify(cfg.views)
    if kind == "npz":
        views = load_npz(cfg.views)
    else:
        if cfg.views_trajectory == "npz":
            raise ValueError("--views-trajectory npz needs a .npz with w2cs_all")
        views = load_unposed(cfg, kind)
    check_seed_view(cfg.seed_view, views.count)
    if cfg.view_fusion == "latent-max" and views.count > MAX_FUSION_VIEWS:
        raise ValueError(f"--view-fusion latent-max takes at most {MAX_FUSION_VIEWS} views (every view is sent "
                         f"to the model), got {views.count}; use --max-views or select")  # fmt: skip
    if cfg.views_trajectory == "npz" and views.w2cs_all is None and cfg.camera_path is None:
        raise ValueError(f"--views-trajectory npz: {cfg.views} has no w2cs_all trajectory")
    return views


def load_unposed(cfg, kind: str) -> ViewsInput:
    """Images of a folder / glob, or frames of a video (``view_frames``), not yet posed."""
    from objvid.client import view_frames as vf

    if kind == "video":
        frames, idx, total = vf.read_video_frames(cfg.views, cfg.view_select, cfg.max_views, cfg.view_step,
                                                  cfg.view_interval)  # fmt: skip
        files = [f"{cfg.views}#{i}" for i in idx]
        source = f"video ({len(idx)} of {total} frames, --view-select {cfg.view_select})"
    else:
        vf.frame_indices("first", 1, cfg.max_views, cfg.view_step, cfg.view_interval)  # checks the numbers
        paths = vf.image_files(cfg.views, kind, cfg.max_views)
        frames = [io.load_image(p, "--views") for p in paths]
        files, source = [str(p) for p in paths], "images"
    return ViewsInput(frames, None, None, None, None, source, files=files)


def default_size(views: ViewsInput | None) -> tuple[int, int] | None:
    """(width, height) the npz views set when --width/--height are not given (None: GEN3C's default)."""
    return views.size if views is not None and views.posed else None


def needs_geometry(cfg) -> bool:
    """True when --views are unposed (an image folder, a glob or a video): the depth service must run
    its geometry model."""
    return cfg.views is not None and not is_npz(cfg.views)


def buffer_slots(views: ViewsInput | None, cfg, chunks: int, max_slots: int) -> int:
    """Buffer slots the renders have: every view with latent-max, else at most ``max_slots``."""
    if views is None:
        return min(max_slots, chunks)
    return views.count if cfg.view_fusion == "latent-max" else min(max_slots, views.count)


def default_frames(views: ViewsInput | None, cfg) -> int | None:
    """The npz trajectory's length when it will be used (no camera path, mode not preset)."""
    if views is None or views.w2cs_all is None or cfg.views_trajectory == "preset" or cfg.camera_path:
        return None
    return len(views.w2cs_all)


def manifest_record(views: ViewsInput, cfg, trajectory_desc: str) -> dict:
    return {"source": views.source, "view_fusion": cfg.view_fusion, "count": views.count, "seed_view": cfg.seed_view, "files": views.files,
            "size": list(views.size), "trajectory": trajectory_desc, "model": views.model or None,
            "slot_sources": []}  # fmt: skip


def input_record(cfg) -> dict | list | None:
    """Manifest record of --views: {path, bytes, sha256} of the npz / video, or one per image file."""
    from objvid.client import manifest as mf

    if cfg.views is None:
        return None
    if is_npz(cfg.views) or Path(str(cfg.views)).is_file():
        return mf.file_record(cfg.views)
    return {"spec": str(cfg.views), "files": [mf.file_record(p) for p in sorted(glob_or_dir(cfg.views))]}


def glob_or_dir(spec) -> list[str]:
    from objvid.client import view_frames as vf

    kind = vf.classify(spec)
    return [str(p) for p in vf.image_files(spec, kind, 10**9)] if kind in ("dir", "glob") else []
