"""The CLI's options, declared once through the shared config mechanism (``objvid.runtime.config``):
every flag falls back to ``OBJVID_CLIENT_<FLAG>``, ``--help`` shows the variable and the default, on/off
options are ``--flag/--no-flag`` (they take no value) and every value shows a metavar, never a type."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from objvid.client.object_lock import DEFAULT_FEATHER_PX
from objvid.client.options import DEFAULT_OBJECT_RADIUS_PX
from objvid.runtime import trajectory as traj
from objvid.runtime.config import typer_option


def opt(*names: str, help: str, **kwargs):
    return typer_option("client", *names, help=help, **kwargs)


def flag(name: str, help: str, *short: str):
    """An on/off option: ``--name/--no-name`` (plus short spellings)."""
    return typer_option("client", f"--{name}/--no-{name}", *short, help=help)


# Inputs
Image = Annotated[
    Path | None,
    opt("--image", help="background photo (PNG/JPEG); or --input-video, or --views", metavar="PATH"),
]
InputVideo = Annotated[Path | None, opt("--input-video", help="video to re-shoot: a plain video file (.mp4/.mov/.webm...: depth from the depth service, cameras from --geometry-model or --static-camera), or posed RGB-D: GEN3C dir (rgb.mp4, depth.npz, mask.npz, camera.npz), GEN3C .pt or ViPE dir (docs/client.md)", metavar="PATH")]  # fmt: skip
StaticCamera = Annotated[bool, flag("static-camera", "plain --input-video file shot from a fixed camera: identity poses, depth scales fitted to frame 0 (no geometry model)")]  # fmt: skip
ObjectTrack = Annotated[Path | None, opt("--object-track", help="JSON: one 4x4 object-to-world pose per input-video frame (first object)", metavar="PATH")]  # fmt: skip
Objects = Annotated[list[Path] | None, opt("--object", help="object file (.ply/.obj/.glb/.gltf/.stl); repeat for several", metavar="PATH")]  # fmt: skip
Depth = Annotated[Path | None, opt("--depth", help="depth map (.npy/.npz/.png mm/.exr) instead of MoGe", metavar="PATH")]  # fmt: skip
Intrinsics = Annotated[Path | None, opt("--intrinsics", help="K JSON for --depth", metavar="PATH")]
DepthUnits = Annotated[str, opt("--depth-units", help="unit of --depth .npy/.npz/.exr values (16-bit PNG: always mm)", metavar="m|cm|mm")]  # fmt: skip
ObjectUnits = Annotated[str | None, opt("--object-units", help="unit of the object files: real size in a metric scene (glTF: m)", metavar="m|cm|mm")]  # fmt: skip
ForegroundMasking = Annotated[bool, flag("foreground-masking", "GEN3C's foreground masking of the cache renders")]  # fmt: skip
# Several views (client/multiview.py)
Views = Annotated[str | None, opt("--views", help="several views instead of --image: posed RGB-D .npz (upstream multi-view format), an image folder or glob, or a video", metavar="NPZ|DIR|GLOB|VIDEO")]  # fmt: skip
SeedView = Annotated[int, opt("--seed-view", help="view whose camera starts the trajectory and whose image is the first frame", metavar="I")]  # fmt: skip
ViewsTrajectory = Annotated[str, opt("--views-trajectory", help="auto (the npz's w2cs_all if present, else the preset), npz, or preset (relative to --seed-view)", metavar="auto|npz|preset")]  # fmt: skip
ViewSelect = Annotated[str, opt("--view-select", help="video frames: first, middle, last, all (spread), interval, first_max_frames", metavar="METHOD")]  # fmt: skip
ViewStep = Annotated[int, opt("--view-step", help="first_max_frames: frame step", metavar="N")]
ViewInterval = Annotated[int, opt("--view-interval", help="interval: take every Nth frame", metavar="N")]
MaxViews = Annotated[int, opt("--max-views", help="at most this many views (folder, glob or video)", metavar="N")]  # fmt: skip
ViewFusion = Annotated[str, opt("--view-fusion", help="several views: select (upstream: at most 2 buffer slots chosen per frame) or latent-max (the fork: every view, vector-max in latent space; gen3c)", metavar="select|latent-max")]  # fmt: skip
GeometryModel = Annotated[str, opt("--geometry-model", help="VGGT checkpoint path or hub id for --views DIR|GLOB|VIDEO and a plain --input-video (local stack)", metavar="MODEL")]  # fmt: skip
# Rendering and cameras
Method = Annotated[str, opt("--method", help="fused (scene splat + object z-buffer) or full (one z-buffer)", metavar="fused|full")]  # fmt: skip
Radius = Annotated[float, opt("--object-radius", help="object point radius in pixels (0 = the cache's default, 0.75)", metavar="PX")]  # fmt: skip
Trajectory = Annotated[
    str, opt("--trajectory", help=f"GEN3C preset: {', '.join(traj.PRESETS)}", metavar="NAME")
]
Rotation = Annotated[str, opt("--camera-rotation", help=", ".join(traj.ROTATIONS), metavar="MODE")]
Distance = Annotated[float, opt("--movement-distance", help="GEN3C movement distance (scene units x center depth 1.0)", metavar="D")]  # fmt: skip
CameraPath = Annotated[Path | None, opt("--camera-path", help="camera path JSON (overrides --trajectory)", metavar="PATH")]  # fmt: skip
Frames = Annotated[int | None, opt("--frames", help="frames (gen3c: 120N+1; default 121 or the camera path's)", metavar="N")]  # fmt: skip
Fps = Annotated[float, opt("--fps", help="frames per second", metavar="FPS")]
Width = Annotated[int | None, opt("--width", help="video width, multiple of 16 (default 1280)", metavar="PX")]
Height = Annotated[
    int | None, opt("--height", help="video height, multiple of 16 (default 704)", metavar="PX")
]
# Placement
Anchors = Annotated[list[str] | None, opt("--anchor", help="placement pixel U,V (or U%,V%) per object", metavar="U,V")]  # fmt: skip
ObjectHeights = Annotated[list[float] | None, opt("--object-height", help="object height in scene units", metavar="H")]  # fmt: skip
Poses = Annotated[list[str] | None, opt("--object-pose", help="x,y,z[,rx,ry,rz[,s]] or a 4x4 JSON file; per object", metavar="POSE")]  # fmt: skip
# Diffusion
Prompt = Annotated[str, opt("--prompt", help="text prompt (gen3c)", metavar="TEXT")]
NegativePrompt = Annotated[str | None, opt("--negative-prompt", help='negative prompt (gen3c; default: upstream GEN3C\'s; "" for none)', metavar="TEXT")]  # fmt: skip
Seed = Annotated[int | None, opt("--seed", help="random seed (default 1)", metavar="N")]
Steps = Annotated[int | None, opt("--steps", help="denoising steps (default 35)", metavar="N")]
Guidance = Annotated[
    float | None, opt("--guidance", help="classifier-free guidance (default 1.0)", metavar="G")
]
Backend = Annotated[str, opt("--backend", help="gen3c, or preview (CPU hole filling, NOT GEN3C)", metavar="gen3c|preview")]  # fmt: skip
RenderSource = Annotated[str, opt("--render-source", help="how a chunk's renders reach the model: on = the model fetches them from its cache itself (RENDER_SOURCE; ~0.9 GB less upload per 720p chunk; the Triton server needs a cache address), off = the client sends them (RENDERS + MASKS), auto = on when the model can fetch (the local stack wires it, except for its CPU preview model; a remote server is tried and falls back to off)", metavar="auto|on|off")]  # fmt: skip
SaveBuffer = Annotated[bool, flag("save-buffer", "also write <out>_buffer.mp4 (renders left of the video) and <out>_fidelity.mp4 (object outlines, flagged frames in red)")]  # fmt: skip
ObjectLock = Annotated[float, opt("--object-lock", help="blend the object's colour-matched render over the output, 0..1 (0 = off)", metavar="ALPHA")]  # fmt: skip
ObjectLockFeather = Annotated[float, opt("--object-lock-feather", help="pixels over which the lock fades in at the object's edge", metavar="PX")]  # fmt: skip
# Outputs
Workdir = Annotated[Path | None, opt("--workdir", help="keeps renders, masks, manifest (default <out>_work)", metavar="DIR")]  # fmt: skip
Out = Annotated[Path, opt("--out", help="output mp4", metavar="PATH")]
# Services
DepthAddr = Annotated[str | None, opt("--depth-addr", help="depth service host:port (default: start one locally)", metavar="HOST:PORT")]  # fmt: skip
CacheAddr = Annotated[str | None, opt("--cache-addr", help="cache service host:port (default: start one locally)", metavar="HOST:PORT")]  # fmt: skip
TritonAddr = Annotated[str | None, opt("--triton-addr", help="Triton gRPC host:port (default: start one locally)", metavar="HOST:PORT")]  # fmt: skip
Token = Annotated[str | None, opt("--token", help="bearer token", metavar="TOKEN")]
TlsCa = Annotated[Path | None, opt("--tls-ca", help="PEM CA bundle (enables TLS)", metavar="PATH")]
TlsCert = Annotated[Path | None, opt("--tls-cert", help="PEM client certificate for mTLS (with --tls-key, --tls-ca)", metavar="PATH")]  # fmt: skip
TlsKey = Annotated[Path | None, opt("--tls-key", help="PEM private key of --tls-cert", metavar="PATH")]
ConnectTimeout = Annotated[float | None, opt("--connect-timeout", help="seconds a call waits for a service to accept connections (default: 2 s until it has answered once, then the retry schedule's 7.75 s)", metavar="SECONDS")]  # fmt: skip
AllowInsecureToken = Annotated[bool, flag("allow-insecure-token", "send --token over plaintext to non-local servers (trusted networks only)")]  # fmt: skip
DepthModel = Annotated[
    str, opt("--depth-model", help="MoGe checkpoint path or hub id (local stack)", metavar="MODEL")
]
Weights = Annotated[
    Path | None, opt("--gen3c-weights", help="GEN3C weights folder (local stack)", metavar="DIR")
]
Device = Annotated[str, opt("--device", help="local stack device: auto, cpu, cuda, cuda:N", metavar="DEVICE")]
# Output style
Quiet = Annotated[bool, flag("quiet", "no progress; print only the output path", "-q")]
Json = Annotated[bool, flag("json", "print a JSON summary on stdout, no progress")]
Verbose = Annotated[bool, flag("verbose", "log events to stderr", "-v")]

RADIUS_DEFAULT = DEFAULT_OBJECT_RADIUS_PX
LOCK_FEATHER_DEFAULT = DEFAULT_FEATHER_PX
