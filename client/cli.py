"""``objvid-client``: generate | render | lift | serve | demo (typer + rich).

Without ``--depth-addr/--cache-addr/--triton-addr`` the client starts what is missing as a local stack
on 127.0.0.1 (child processes, stopped on success, error, Ctrl-C and SIGTERM). Every flag falls back to
an environment variable ``OBJVID_CLIENT_<FLAG>`` where noted in ``--help``. Errors print one line,
``error: <stage>: <reason>``, and exit 1 (130 after Ctrl-C, 143 after SIGTERM).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from objvid import trajectory as traj
from objvid.client import pipeline
from objvid.client.errors import Interrupted, ObjvidError
from objvid.client.sdk import ObjvidClient
from objvid.client.stack import DEFAULT_DEPTH_MODEL, LocalStack, StackConfig

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="objvid: put a 3D object into a camera-controlled generated video (GEN3C).",
)

ENV = "OBJVID_CLIENT_"
STAGE_LABELS = {
    "inputs": "inputs",
    "stack": "local servers",
    "depth": "depth",
    "scene": "scene",
    "placement": "placement",
    "render": "render",
    "diffusion": "diffusion",
    "update": "scene update",
    "encoding": "encoding",
}


# ---------------------------------------------------------------------------------------------------
# Output


class RichReporter(pipeline.Reporter):
    """One progress bar per stage on stderr."""

    def __init__(self, console):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[stage]:<13}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, int] = {}
        self.progress.start()

    def start(self, stage, total=None, text=""):
        if stage in self.tasks:
            self.progress.update(self.tasks[stage], total=total, completed=0, description=text)
            self.progress.start_task(self.tasks[stage])
        else:
            self.tasks[stage] = self.progress.add_task(
                text, total=total, stage=STAGE_LABELS.get(stage, stage)
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
            self.progress.update(self.tasks[stage], total=total, completed=total)
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

    def make_reporter(self) -> pipeline.Reporter:
        if self.quiet or self.json:
            return pipeline.Reporter()
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


# ---------------------------------------------------------------------------------------------------
# Signals, services


@contextmanager
def _signals():
    """SIGTERM raises Interrupted in the main thread so every cleanup path runs as for Ctrl-C."""

    def on_term(signum, _frame):
        raise Interrupted(signum)

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextmanager
def connect(reporter: pipeline.Reporter, *, need_depth: bool, need_cache: bool, backend: str | None,
            depth_addr: str | None, cache_addr: str | None, triton_addr: str | None, token: str | None,
            tls_ca: Path | None, depth_model: str, gen3c_weights: Path | None, device: str,
            log_dir: Path):  # fmt: skip
    """An ObjvidClient; starts the missing servers as a local stack (stopped on exit)."""
    cfg = StackConfig(
        depth=need_depth and not depth_addr,
        depth_model=depth_model,
        cache=need_cache and not cache_addr,
        backend=backend if backend and not triton_addr else None,
        gen3c_weights=str(gen3c_weights) if gen3c_weights else None,
        device=device,
    )
    if cfg.backend == "gen3c" and not cfg.gen3c_weights:
        raise ObjvidError(
            "stack",
            "the gen3c backend needs --gen3c-weights DIR (env OBJVID_CLIENT_GEN3C_WEIGHTS) to start a local "
            "Triton, or --triton-addr of a running one; --backend preview runs without weights (not GEN3C)",
        )
    names = [n for n, on in (("depth", cfg.depth), ("cache", cfg.cache), ("diffusion", cfg.backend)) if on]
    if tls_ca and names:
        flags = {"depth": "--depth-addr", "cache": "--cache-addr", "diffusion": "--triton-addr"}
        raise ObjvidError(
            "inputs",
            "--tls-ca encrypts every connection, but the local stack serves plaintext: give "
            + ", ".join(flags[n] for n in names)
            + " of TLS services too, or leave out --tls-ca",
        )
    stack = None
    services = {"depth": depth_addr, "cache": cache_addr, "triton": triton_addr, "local_stack": []}
    try:
        if names:
            reporter.start("stack", len(names), "starting " + ", ".join(names))
            ready: list[str] = []

            def on_event(name, state):
                if state == "ready":
                    ready.append(name)
                    reporter.update("stack", len(ready), text=f"{name} ready")

            t0 = time.perf_counter()
            try:
                stack = LocalStack(cfg, log_dir, on_event).start()
            except OSError as exc:
                raise ObjvidError("stack", str(exc)) from None
            reporter.finish("stack")
            depth_addr = depth_addr or stack.depth_addr
            cache_addr = cache_addr or stack.cache_addr
            triton_addr = triton_addr or stack.triton_addr
            services.update(depth=depth_addr, cache=cache_addr, triton=triton_addr, local_stack=names,
                            stack_seconds=round(time.perf_counter() - t0, 3), logs=str(log_dir),
                            device=cfg.device)  # fmt: skip
            if cfg.depth:
                services["depth_model"] = depth_model
        try:
            client = ObjvidClient(depth_addr, cache_addr, triton_addr, token=token, tls_ca=tls_ca)
        except ValueError as exc:
            raise ObjvidError("inputs", str(exc)) from None
        try:
            yield client, services
        finally:
            client.close()
    finally:
        if stack is not None:
            stack.stop()


def _run(out: Output, fn):
    """Run a command body; map failures to one error line and an exit code."""
    try:
        with _signals():
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


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        stream=sys.stderr,
    )


# ---------------------------------------------------------------------------------------------------
# Shared options

ObjectOpt = Annotated[list[Path], typer.Option("--object", help="object file (.ply/.obj/.glb/.gltf/.stl); repeat for several")]  # fmt: skip
MethodOpt = Annotated[str, typer.Option(help="fused (scene splat + object z-buffer) or full (one z-buffer)")]
RadiusOpt = Annotated[
    float,
    typer.Option("--object-radius", help="object point radius in pixels (0 = the cache's default, 0.75)"),
]
TrajOpt = Annotated[str, typer.Option(help=f"GEN3C preset: {', '.join(traj.PRESETS)}")]
RotOpt = Annotated[str, typer.Option("--camera-rotation", help=f"{', '.join(traj.ROTATIONS)}")]
DistOpt = Annotated[float, typer.Option(help="GEN3C movement distance (scene units x center depth 1.0)")]
PathOpt = Annotated[
    Path | None, typer.Option("--camera-path", help="camera path JSON (overrides --trajectory)")
]
FramesOpt = Annotated[
    int | None, typer.Option(help="frames (gen3c: 120N+1; default 121 or the camera path's)")
]
FpsOpt = Annotated[float, typer.Option(help="frames per second")]
WidthOpt = Annotated[int | None, typer.Option(help="video width, multiple of 16 (default 1280)")]
HeightOpt = Annotated[int | None, typer.Option(help="video height, multiple of 16 (default 704)")]
AnchorOpt = Annotated[list[str], typer.Option("--anchor", help="placement pixel U,V (or U%,V%) per object")]
HeightObjOpt = Annotated[list[float], typer.Option("--object-height", help="object height in scene units")]
PoseOpt = Annotated[list[str], typer.Option("--object-pose", help="x,y,z[,rx,ry,rz[,s]] or a 4x4 JSON file; per object")]  # fmt: skip
DepthOpt = Annotated[
    Path | None, typer.Option("--depth", help="depth map (.npy/.npz/.png mm/.exr) instead of MoGe")
]
IntrOpt = Annotated[Path | None, typer.Option("--intrinsics", help="K JSON for --depth")]
WorkOpt = Annotated[Path | None, typer.Option("--workdir", help="keeps renders, masks, manifest (default <out>_work)")]  # fmt: skip
DepthAddr = Annotated[str | None, typer.Option("--depth-addr", envvar=ENV + "DEPTH_ADDR", help="depth service host:port")]  # fmt: skip
CacheAddr = Annotated[str | None, typer.Option("--cache-addr", envvar=ENV + "CACHE_ADDR", help="cache service host:port")]  # fmt: skip
TritonAddr = Annotated[str | None, typer.Option("--triton-addr", envvar=ENV + "TRITON_ADDR", help="Triton gRPC host:port")]  # fmt: skip
TokenOpt = Annotated[str | None, typer.Option("--token", envvar=ENV + "TOKEN", help="bearer token")]
TlsOpt = Annotated[
    Path | None, typer.Option("--tls-ca", envvar=ENV + "TLS_CA", help="PEM CA bundle (enables TLS)")
]
DepthModelOpt = Annotated[str, typer.Option("--depth-model", envvar=ENV + "DEPTH_MODEL", help="MoGe checkpoint path or hub id (local stack)")]  # fmt: skip
WeightsOpt = Annotated[Path | None, typer.Option("--gen3c-weights", envvar=ENV + "GEN3C_WEIGHTS", help="GEN3C weights folder (local stack)")]  # fmt: skip
DeviceOpt = Annotated[str, typer.Option("--device", envvar=ENV + "DEVICE", help="local stack device: auto, cpu, cuda, cuda:N")]  # fmt: skip
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress; print only the output path")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print a JSON summary on stdout, no progress")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="log events to stderr")]


def _config(**kw) -> pipeline.GenerateConfig:
    return pipeline.GenerateConfig(**kw)


def _run_pipeline(command: str, cfg: pipeline.GenerateConfig, out: Output, addrs: dict) -> dict:
    pipeline.validate(cfg, command)  # before any server starts
    reporter = out.make_reporter()
    need_depth = pipeline.needs_depth_service(cfg) if command == "generate" else cfg.depth is None
    workdir = cfg.workdir or cfg.out.parent / f"{cfg.out.stem}_work"
    t0 = time.perf_counter()
    with connect(reporter, need_depth=need_depth, need_cache=True,
                 backend=cfg.backend if command == "generate" else None, log_dir=workdir / "logs",
                 **addrs) as (client, services):  # fmt: skip
        fn = pipeline.generate if command == "generate" else pipeline.render
        result = fn(cfg, client, reporter, services)
    timings = {"stack": services.get("stack_seconds", 0.0), **result["timings"]}
    timings.pop("total", None)
    order = ["stack", *pipeline.STAGES_ORDER]
    result["timings"] = {
        k: timings[k] for k in sorted(timings, key=lambda k: order.index(k) if k in order else 99)
    }
    result["timings"]["total"] = round(time.perf_counter() - t0, 3)  # includes starting and stopping servers
    return result


# ---------------------------------------------------------------------------------------------------
# Commands


@app.command()
def generate(
    image: Annotated[Path, typer.Option("--image", help="background photo (PNG/JPEG)")],
    objects: ObjectOpt,
    method: MethodOpt = "fused",
    object_radius: RadiusOpt = pipeline.DEFAULT_OBJECT_RADIUS_PX,
    trajectory: TrajOpt = traj.DEFAULT_PRESET,
    camera_rotation: RotOpt = traj.DEFAULT_ROTATION,
    movement_distance: DistOpt = traj.DEFAULT_MOVEMENT_DISTANCE,
    camera_path: PathOpt = None,
    frames: FramesOpt = None,
    fps: FpsOpt = 24.0,
    width: WidthOpt = None,
    height: HeightOpt = None,
    anchor: AnchorOpt = None,
    object_height: HeightObjOpt = None,
    object_pose: PoseOpt = None,
    depth: DepthOpt = None,
    intrinsics: IntrOpt = None,
    prompt: Annotated[str, typer.Option(help="text prompt (gen3c)")] = "",
    negative_prompt: Annotated[str, typer.Option(help="negative prompt (gen3c)")] = "",
    seed: Annotated[int | None, typer.Option(help="random seed (default 1)")] = None,
    steps: Annotated[int | None, typer.Option(help="denoising steps (default 35)")] = None,
    guidance: Annotated[float | None, typer.Option(help="classifier-free guidance (default 1.0)")] = None,
    backend: Annotated[
        str, typer.Option(envvar=ENV + "BACKEND", help="gen3c, or preview (CPU hole filling, NOT GEN3C)")
    ] = "gen3c",  # fmt: skip
    save_buffer: Annotated[
        bool, typer.Option("--save-buffer", help="also write <out>_buffer.mp4: renders left of the video")
    ] = False,  # fmt: skip
    workdir: WorkOpt = None,
    out: Annotated[Path, typer.Option("--out", help="output mp4")] = Path("out.mp4"),
    depth_addr: DepthAddr = None,
    cache_addr: CacheAddr = None,
    triton_addr: TritonAddr = None,
    token: TokenOpt = None,
    tls_ca: TlsOpt = None,
    depth_model: DepthModelOpt = DEFAULT_DEPTH_MODEL,
    gen3c_weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Generate a video of the object in the scene along a camera trajectory."""
    _setup_logging(verbose)
    output = Output(quiet, as_json)
    cfg = _config(
        image=image, objects=list(objects or []), out=out, method=method, object_radius=object_radius,
        trajectory=trajectory,
        camera_rotation=camera_rotation, movement_distance=movement_distance, camera_path=camera_path,
        frames=frames, fps=fps, width=width, height=height, anchors=list(anchor or []),
        object_heights=list(object_height or []), object_poses=list(object_pose or []), depth=depth,
        intrinsics=intrinsics, prompt=prompt, negative_prompt=negative_prompt, seed=seed, steps=steps,
        guidance=guidance, backend=backend, save_buffer=save_buffer, workdir=workdir,
    )  # fmt: skip
    addrs = dict(depth_addr=depth_addr, cache_addr=cache_addr, triton_addr=triton_addr, token=token,
                 tls_ca=tls_ca, depth_model=depth_model, gen3c_weights=gen3c_weights, device=device)  # fmt: skip
    _generate_and_report(cfg, output, addrs)


def _generate_and_report(cfg: pipeline.GenerateConfig, output: Output, addrs: dict) -> dict:
    result = _run(output, lambda: _run_pipeline("generate", cfg, output, addrs))
    rows = [("video", f"{result['video']} ({result['frames']} frames, {result['width']}x{result['height']}, "
                      f"{result['fps']:g} fps)")]  # fmt: skip
    if result.get("buffer_video"):
        rows.append(("buffer video", result["buffer_video"]))
    rows.append(("work dir", result["workdir"]))
    rows.append(("backend", "preview (hole filling, NOT GEN3C)" if result["preview"] else result["backend"]))
    output.summary("objvid generate", result, rows)
    if output.quiet and not output.json:
        print(result["video"])
    return result


@app.command()
def render(
    image: Annotated[Path, typer.Option("--image", help="background photo (PNG/JPEG)")],
    objects: ObjectOpt = None,
    method: MethodOpt = "fused",
    object_radius: RadiusOpt = pipeline.DEFAULT_OBJECT_RADIUS_PX,
    trajectory: TrajOpt = traj.DEFAULT_PRESET,
    camera_rotation: RotOpt = traj.DEFAULT_ROTATION,
    movement_distance: DistOpt = traj.DEFAULT_MOVEMENT_DISTANCE,
    camera_path: PathOpt = None,
    frames: FramesOpt = None,
    fps: FpsOpt = 24.0,
    width: WidthOpt = None,
    height: HeightOpt = None,
    anchor: AnchorOpt = None,
    object_height: HeightObjOpt = None,
    object_pose: PoseOpt = None,
    depth: DepthOpt = None,
    intrinsics: IntrOpt = None,
    png_dir: Annotated[
        Path | None, typer.Option("--png-dir", help="also write rgb_/mask_/object_NNNN.png here")
    ] = None,  # fmt: skip
    no_video: Annotated[bool, typer.Option("--no-video", help="PNG frames only (needs --png-dir)")] = False,
    workdir: WorkOpt = None,
    out: Annotated[Path, typer.Option("--out", help="output mp4 of the renders")] = Path("render.mp4"),
    depth_addr: DepthAddr = None,
    cache_addr: CacheAddr = None,
    token: TokenOpt = None,
    tls_ca: TlsOpt = None,
    depth_model: DepthModelOpt = DEFAULT_DEPTH_MODEL,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Render the cache along the trajectory (no diffusion): check placement and camera paths."""
    _setup_logging(verbose)
    output = Output(quiet, as_json)
    if no_video and png_dir is None:
        output.error("inputs", "--no-video needs --png-dir")
        raise typer.Exit(1)
    cfg = _config(
        image=image, objects=list(objects or []), out=out, method=method, object_radius=object_radius,
        trajectory=trajectory,
        camera_rotation=camera_rotation, movement_distance=movement_distance, camera_path=camera_path,
        frames=frames, fps=fps, width=width, height=height, anchors=list(anchor or []),
        object_heights=list(object_height or []), object_poses=list(object_pose or []), depth=depth,
        intrinsics=intrinsics, workdir=workdir, png_dir=png_dir, no_video=no_video, backend="preview",
    )  # fmt: skip
    addrs = dict(depth_addr=depth_addr, cache_addr=cache_addr, triton_addr=None, token=token, tls_ca=tls_ca,
                 depth_model=depth_model, gen3c_weights=None, device=device)  # fmt: skip
    result = _run(output, lambda: _run_pipeline("render", cfg, output, addrs))
    rows = []
    if result["video"]:
        rows.append(
            (
                "renders",
                f"{result['video']} ({result['frames']} frames, {result['width']}x{result['height']})",
            )
        )
    if result["png_dir"]:
        rows.append(("frames", result["png_dir"]))
    output.summary("objvid render", result, rows)
    if quiet and not as_json:
        print(result["video"] or result["png_dir"])


@app.command()
def lift(
    image: Annotated[Path, typer.Option("--image", help="photo to lift")],
    out: Annotated[
        Path, typer.Option("--out", help="scene PLY (K JSON, depth .npy, image PNG beside it)")
    ] = Path("scene.ply"),  # fmt: skip
    width: Annotated[int, typer.Option(help="working width")] = pipeline.DEFAULT_WIDTH,
    height: Annotated[int, typer.Option(help="working height")] = pipeline.DEFAULT_HEIGHT,
    intrinsics_out: Annotated[
        Path | None, typer.Option("--intrinsics-out", help="K JSON (default <out>_K.json)")
    ] = None,  # fmt: skip
    depth_out: Annotated[
        Path | None, typer.Option("--depth-out", help="depth .npy (default <out>_depth.npy)")
    ] = None,  # fmt: skip
    depth_addr: DepthAddr = None,
    token: TokenOpt = None,
    tls_ca: TlsOpt = None,
    depth_model: DepthModelOpt = DEFAULT_DEPTH_MODEL,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Lift an image to a coloured scene point cloud (PLY) plus its intrinsics (JSON) and depth (.npy)."""
    _setup_logging(verbose)
    output = Output(quiet, as_json)

    def body():
        reporter = output.make_reporter()
        addrs = dict(depth_addr=depth_addr, cache_addr=None, triton_addr=None, token=token, tls_ca=tls_ca,
                     depth_model=depth_model, gen3c_weights=None, device=device)  # fmt: skip
        with connect(reporter, need_depth=True, need_cache=False, backend=None,
                     log_dir=out.parent / f"{out.stem}_work" / "logs", **addrs) as (client, _):  # fmt: skip
            return pipeline.lift(image, out, client, width, height, intrinsics_out, depth_out, reporter)

    result = _run(output, body)
    output.summary("objvid lift", result, [("scene", f"{result['ply']} ({result['points']} points)"),
                                          ("intrinsics", result["intrinsics"]), ("depth", result["depth"])])  # fmt: skip
    if quiet and not as_json:
        print(result["ply"])


@app.command()
def serve(
    backend: Annotated[
        str, typer.Option(envvar=ENV + "BACKEND", help="Triton model to load: gen3c or preview")
    ] = "preview",  # fmt: skip
    no_depth: Annotated[bool, typer.Option("--no-depth", help="do not start the depth service")] = False,
    depth_model: DepthModelOpt = DEFAULT_DEPTH_MODEL,
    gen3c_weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    logs: Annotated[Path, typer.Option("--logs", help="folder for the servers' logs")] = Path("objvid_logs"),
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Start the local stack and keep it running (Ctrl-C stops it); prints the addresses."""
    _setup_logging(verbose)
    output = Output(False, as_json)
    if backend not in pipeline.BACKENDS:
        output.error("inputs", f"--backend must be one of {', '.join(pipeline.BACKENDS)}, got {backend!r}")
        raise typer.Exit(1)

    def body():
        cfg = StackConfig(depth=not no_depth, depth_model=depth_model, backend=backend,
                          gen3c_weights=str(gen3c_weights) if gen3c_weights else None,
                          device=device)  # fmt: skip
        output.info(f"starting the local stack ({backend} backend, device {cfg.device}) ...")
        with LocalStack(cfg, logs) as stack:
            addrs = stack.addresses()
            if as_json:
                print(json.dumps({"status": "ready", **addrs, "logs": str(logs.resolve())}), flush=True)
            else:
                for name, addr in addrs.items():
                    output.err.print(f"[bold]{name:<12}[/bold] {addr}")
                output.err.print(f"use: --depth-addr {addrs.get('depth', '-')} --cache-addr {addrs['cache']} "
                                 f"--triton-addr {addrs['triton_grpc']}   (Ctrl-C stops)")  # fmt: skip
                if backend == "preview":
                    output.err.print("[yellow]backend: preview (hole filling, NOT GEN3C)[/yellow]")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM (Interrupted): the normal way to stop
                output.info("stopping the local stack ...")
        output.info("stopped")

    _run(output, body)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="output mp4")] = Path("out/demo.mp4"),
    assets: Annotated[
        Path, typer.Option("--assets", help="demo assets folder (created when missing)")
    ] = Path("examples/assets"),  # fmt: skip
    frames: Annotated[int, typer.Option(help="frames")] = 121,
    width: Annotated[int, typer.Option(help="video width")] = 1280,
    height: Annotated[int, typer.Option(help="video height")] = 704,
    trajectory: TrajOpt = "left",
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """The synthetic room + sneaker through the preview backend (no weights needed); prints the video path."""
    from objvid.client.assets import write_assets

    _setup_logging(verbose)
    output = Output(quiet, as_json)
    names = ("room.png", "room_depth.npy", "room_K.json", "sneaker.ply")
    if not all((assets / n).is_file() for n in names):
        output.info(f"writing the demo assets into {assets} ...")
        write_assets(assets, width, height)
    cfg = _config(
        image=assets / "room.png", objects=[assets / "sneaker.ply"], out=out, depth=assets / "room_depth.npy",
        intrinsics=assets / "room_K.json", frames=frames, width=width, height=height, backend="preview",
        trajectory=trajectory,
    )  # fmt: skip
    addrs = dict(depth_addr=None, cache_addr=None, triton_addr=None, token=None, tls_ca=None,
                 depth_model=DEFAULT_DEPTH_MODEL, gen3c_weights=None, device=device)  # fmt: skip
    result = _generate_and_report(cfg, output, addrs)
    if not (quiet or as_json):
        print(f"demo video: {result['video']}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
