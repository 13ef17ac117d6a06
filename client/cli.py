"""``objvid-client``: generate | render | lift | serve | demo (typer + rich).

Without ``--depth-addr/--cache-addr/--triton-addr`` the client starts what is missing as a local stack
on 127.0.0.1 (child processes, stopped on success, error, Ctrl-C and SIGTERM). Every flag falls back to
an environment variable ``OBJVID_CLIENT_<FLAG>`` (shown in ``--help``). Errors print one line,
``error: <stage>: <reason>``, and exit 1 (130 after Ctrl-C, 143 after SIGTERM).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Annotated

import typer

from objvid.client import cli_options as o
from objvid.client import multiview as mv
from objvid.client import pipeline
from objvid.client.cli_output import Output
from objvid.client.cli_services import service_options
from objvid.client.connect import Services, connect, run_cli_body, setup_logging
from objvid.client.fidelity_stage import summary_lines
from objvid.client.sources.video import VideoSource
from objvid.client.stack import DEFAULT_DEPTH_MODEL, LocalStack
from objvid.runtime import trajectory as traj

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: full env names, no truncated boxes
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
    help="objvid: put a 3D object into a camera-controlled generated video (GEN3C).",
)


#: Command arguments that go to GenerateConfig under the same name (generate and render take them all).
_SHARED_INPUTS = (
    "image", "input_video", "object_track", "static_camera", "out", "method", "object_radius", "trajectory",
    "camera_rotation", "movement_distance", "camera_path", "frames", "fps", "width", "height", "depth",
    "intrinsics", "workdir", "depth_units", "object_units", "foreground_masking",
    "views", "seed_view", "views_trajectory", "view_select", "view_step", "view_interval", "max_views",
)  # fmt: skip


def _input_config(args: dict, **extra) -> pipeline.GenerateConfig:
    """GenerateConfig from a command's arguments (``locals()``): the inputs generate and render share,
    the repeatable options as lists, plus the command's own ``extra`` fields."""
    return pipeline.GenerateConfig(
        **{n: args[n] for n in _SHARED_INPUTS},
        objects=list(args["objects"] or []),
        anchors=list(args["anchor"] or []),
        object_heights=list(args["object_height"] or []),
        object_poses=list(args["object_pose"] or []),
        **extra,
    )


def _run_pipeline(command: str, cfg: pipeline.GenerateConfig, out: Output, services: Services) -> dict:
    """Check the inputs, connect (starting a local stack if needed), run ``command``; timings include the stack."""
    pipeline.validate(cfg, command)  # before any server starts
    reporter = out.make_reporter()
    need_depth = pipeline.needs_depth_service(cfg) if command == "generate" else cfg.depth is None
    if cfg.views is not None:  # npz views need no depth service; unposed views its geometry model
        need_depth = mv.needs_geometry(cfg)
    if not (mv.needs_geometry(cfg) or VideoSource.needs_geometry(cfg)):  # unposed views, a plain video
        services = dataclasses.replace(services, geometry_model="")
    t0 = time.perf_counter()
    result = None
    try:
        with connect(reporter, services, need_depth=need_depth, need_cache=True,
                     backend=cfg.backend if command == "generate" else None,
                     log_dir=cfg.resolved_workdir / "logs") as (client, record):  # fmt: skip
            fn = pipeline.generate if command == "generate" else pipeline.render
            result = fn(cfg, client, reporter, record)
    except KeyboardInterrupt:  # Ctrl-C / SIGTERM while the local stack stops: the run itself is complete
        if result is None:
            raise
        logging.getLogger("objvid.client").warning("event=interrupted_during_teardown (the run had finished)")
    timings = {"stack": record.get("stack_seconds", 0.0), **result["timings"]}
    if "stack_stop_seconds" in record:  # the local servers' stop, after the run
        timings["stack_stop"] = record["stack_stop_seconds"]
    timings.pop("total", None)
    order = ["stack", *pipeline.STAGES_ORDER, "stack_stop"]
    result["timings"] = {
        k: timings[k] for k in sorted(timings, key=lambda k: order.index(k) if k in order else 99)
    }
    # total = the stages + "other" (connecting, closing channels, the gaps between stages, the manifest).
    total = time.perf_counter() - t0
    result["timings"]["other"] = round(max(0.0, total - sum(result["timings"].values())), 3)
    result["timings"]["total"] = round(total, 3)
    return result


def _generate_and_report(cfg: pipeline.GenerateConfig, output: Output, services: Services) -> dict:
    result = run_cli_body(output, lambda: _run_pipeline("generate", cfg, output, services))
    rows = [("video", f"{result['video']} ({result['frames']} frames, {result['width']}x{result['height']}, "
                      f"{result['fps']:g} fps)")]  # fmt: skip
    if result.get("buffer_video"):
        rows.append(("buffer video", result["buffer_video"]))
    if result.get("fidelity_video"):
        rows.append(("fidelity video", result["fidelity_video"]))
    rows += summary_lines(result.get("object_fidelity", []))
    rows.append(("work dir", result["workdir"]))
    rows.append(("backend", "preview (hole filling, NOT GEN3C)" if result["preview"] else result["backend"]))
    output.summary("objvid generate", result, rows)
    if output.quiet and not output.json:
        print(result["video"])
    return result


@app.command()
@service_options()
def generate(
    image: o.Image = None,
    input_video: o.InputVideo = None,
    object_track: o.ObjectTrack = None,
    static_camera: o.StaticCamera = False,
    objects: o.Objects = None,
    method: o.Method = "fused",
    object_radius: o.Radius = o.RADIUS_DEFAULT,
    trajectory: o.Trajectory = traj.DEFAULT_PRESET,
    camera_rotation: o.Rotation = traj.DEFAULT_ROTATION,
    movement_distance: o.Distance = traj.DEFAULT_MOVEMENT_DISTANCE,
    camera_path: o.CameraPath = None,
    frames: o.Frames = None,
    fps: o.Fps = 24.0,
    width: o.Width = None,
    height: o.Height = None,
    anchor: o.Anchors = None,
    object_height: o.ObjectHeights = None,
    object_pose: o.Poses = None,
    depth: o.Depth = None,
    intrinsics: o.Intrinsics = None,
    depth_units: o.DepthUnits = "m",
    object_units: o.ObjectUnits = None,
    foreground_masking: o.ForegroundMasking = False,
    views: o.Views = None,
    seed_view: o.SeedView = 0,
    views_trajectory: o.ViewsTrajectory = "auto",
    view_select: o.ViewSelect = "all",
    view_step: o.ViewStep = 1,
    view_interval: o.ViewInterval = 30,
    max_views: o.MaxViews = 10,
    view_fusion: o.ViewFusion = "select",
    geometry_model: o.GeometryModel = "facebook/VGGT-1B",
    prompt: o.Prompt = "",
    negative_prompt: o.NegativePrompt = None,
    seed: o.Seed = None,
    steps: o.Steps = None,
    guidance: o.Guidance = None,
    backend: o.Backend = "gen3c",
    render_source: o.RenderSource = "auto",
    save_buffer: o.SaveBuffer = False,
    object_lock: o.ObjectLock = 0.0,
    object_lock_feather: o.ObjectLockFeather = o.LOCK_FEATHER_DEFAULT,
    workdir: o.Workdir = None,
    out: o.Out = Path("out/out.mp4"),
    services: Services = None,  # the service flags (@service_options)
    quiet: o.Quiet = False,
    as_json: o.Json = False,
    verbose: o.Verbose = False,
) -> None:
    """Generate a video of the object in the scene along a camera trajectory."""
    setup_logging(verbose)
    cfg = _input_config(
        locals(), prompt=prompt, negative_prompt=negative_prompt, seed=seed, steps=steps, guidance=guidance,
        backend=backend, save_buffer=save_buffer, object_lock=object_lock, object_lock_feather=object_lock_feather,
        view_fusion=view_fusion, render_source=render_source,
    )  # fmt: skip
    services = dataclasses.replace(services, geometry_model=geometry_model)
    _generate_and_report(cfg, Output(quiet, as_json), services)


@app.command()
@service_options(triton=False)
def render(
    image: o.Image = None,
    input_video: o.InputVideo = None,
    object_track: o.ObjectTrack = None,
    static_camera: o.StaticCamera = False,
    objects: o.Objects = None,
    method: o.Method = "fused",
    object_radius: o.Radius = o.RADIUS_DEFAULT,
    trajectory: o.Trajectory = traj.DEFAULT_PRESET,
    camera_rotation: o.Rotation = traj.DEFAULT_ROTATION,
    movement_distance: o.Distance = traj.DEFAULT_MOVEMENT_DISTANCE,
    camera_path: o.CameraPath = None,
    frames: o.Frames = None,
    fps: o.Fps = 24.0,
    width: o.Width = None,
    height: o.Height = None,
    anchor: o.Anchors = None,
    object_height: o.ObjectHeights = None,
    object_pose: o.Poses = None,
    depth: o.Depth = None,
    intrinsics: o.Intrinsics = None,
    depth_units: o.DepthUnits = "m",
    object_units: o.ObjectUnits = None,
    foreground_masking: o.ForegroundMasking = False,
    views: o.Views = None,
    seed_view: o.SeedView = 0,
    views_trajectory: o.ViewsTrajectory = "auto",
    view_select: o.ViewSelect = "all",
    view_step: o.ViewStep = 1,
    view_interval: o.ViewInterval = 30,
    max_views: o.MaxViews = 10,
    geometry_model: o.GeometryModel = "facebook/VGGT-1B",
    png_dir: Annotated[
        Path | None, o.opt("--png-dir", help="also write rgb_/mask_/object_NNNN.png here", metavar="DIR")
    ] = None,  # fmt: skip
    video: Annotated[
        bool, o.flag("video", "write the mp4 (--no-video: PNG frames only, needs --png-dir)")
    ] = True,
    workdir: o.Workdir = None,
    out: Annotated[Path, o.opt("--out", help="output mp4 of the renders", metavar="PATH")] = Path(
        "out/render.mp4"
    ),
    services: Services = None,  # the service flags (@service_options)
    quiet: o.Quiet = False,
    as_json: o.Json = False,
    verbose: o.Verbose = False,
) -> None:
    """Render the cache along the trajectory (no diffusion): check placement and camera paths."""
    setup_logging(verbose)
    output = Output(quiet, as_json)
    if not video and png_dir is None:
        output.error("inputs", "--no-video needs --png-dir")
        raise typer.Exit(1)
    cfg = _input_config(locals(), png_dir=png_dir, no_video=not video, backend="preview")
    services = dataclasses.replace(services, geometry_model=geometry_model)
    result = run_cli_body(output, lambda: _run_pipeline("render", cfg, output, services))
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
@service_options(cache=False, triton=False)
def lift(
    image: Annotated[Path, o.opt("--image", help="photo to lift", metavar="PATH")],
    out: Annotated[
        Path, o.opt("--out", help="scene PLY (K JSON, depth .npy, image PNG beside it)", metavar="PATH")
    ] = Path("scene.ply"),  # fmt: skip
    width: Annotated[int, o.opt("--width", help="working width", metavar="PX")] = pipeline.DEFAULT_WIDTH,
    height: Annotated[int, o.opt("--height", help="working height", metavar="PX")] = pipeline.DEFAULT_HEIGHT,
    intrinsics_out: Annotated[
        Path | None, o.opt("--intrinsics-out", help="K JSON (default <out>_K.json)", metavar="PATH")
    ] = None,  # fmt: skip
    depth_out: Annotated[
        Path | None, o.opt("--depth-out", help="depth .npy (default <out>_depth.npy)", metavar="PATH")
    ] = None,  # fmt: skip
    services: Services = None,  # the service flags (@service_options)
    quiet: o.Quiet = False,
    as_json: o.Json = False,
    verbose: o.Verbose = False,
) -> None:
    """Lift an image to a coloured scene point cloud (PLY) plus its intrinsics (JSON) and depth (.npy)."""
    setup_logging(verbose)
    output = Output(quiet, as_json)

    def body():
        reporter = output.make_reporter()
        log_dir = out.parent / f"{out.stem}_work" / "logs"
        with connect(
            reporter, services, need_depth=True, need_cache=False, backend=None, log_dir=log_dir
        ) as (c, _):
            return pipeline.lift(image, out, c, width, height, intrinsics_out, depth_out, reporter)

    result = run_cli_body(output, body)
    output.summary("objvid lift", result, [("scene", f"{result['ply']} ({result['points']} points)"),
                                          ("intrinsics", result["intrinsics"]), ("depth", result["depth"])])  # fmt: skip
    if quiet and not as_json:
        print(result["ply"])


@app.command()
def serve(
    backend: Annotated[
        str, o.opt("--backend", help="Triton model to load: gen3c or preview", metavar="gen3c|preview")
    ] = "preview",  # fmt: skip
    depth: Annotated[bool, o.flag("depth", "start the depth service")] = True,
    depth_model: o.DepthModel = DEFAULT_DEPTH_MODEL,
    gen3c_weights: o.Weights = None,
    device: o.Device = "auto",
    logs: Annotated[Path, o.opt("--logs", help="folder for the servers' logs", metavar="DIR")] = Path(
        "objvid_logs"
    ),
    as_json: o.Json = False,
    verbose: o.Verbose = False,
) -> None:
    """Start the local stack and keep it running (Ctrl-C stops it); prints the addresses."""
    setup_logging(verbose)
    output = Output(False, as_json)
    if backend not in pipeline.BACKENDS:
        output.error("inputs", f"--backend must be one of {', '.join(pipeline.BACKENDS)}, got {backend!r}")
        raise typer.Exit(1)
    services = Services(depth_model=depth_model, gen3c_weights=gen3c_weights, device=device)

    def body():
        cfg = services.stack_config(need_depth=depth, need_cache=True, backend=backend)
        output.info(f"starting the local stack ({backend} backend, device {cfg.device}) ...")
        with LocalStack(cfg, logs) as stack:
            _print_addresses(output, stack.addresses(), logs, backend, as_json)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM (Interrupted): the normal way to stop
                output.info("stopping the local stack ...")
        output.info("stopped")

    run_cli_body(output, body)


def _print_addresses(output: Output, addrs: dict, logs: Path, backend: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"status": "ready", **addrs, "logs": str(logs.resolve())}), flush=True)
        return
    for name, addr in addrs.items():
        output.err.print(f"[bold]{name:<12}[/bold] {addr}")
    output.err.print(f"use: --depth-addr {addrs.get('depth', '-')} --cache-addr {addrs['cache']} "
                     f"--triton-addr {addrs['triton_grpc']}   (Ctrl-C stops)")  # fmt: skip
    if backend == "preview":
        output.err.print("[yellow]backend: preview (hole filling, NOT GEN3C)[/yellow]")


def _demo_inputs(assets: Path, output: Output) -> tuple[Path, list[Path], Path, Path]:
    """The demo assets (written when missing): image, [object], depth, intrinsics."""
    from objvid.testing.assets import write_assets  # demo inputs live in the testing subpackage

    names = ("room.png", "room_depth.npy", "room_K.json", "sneaker.ply")
    if not all((assets / n).is_file() for n in names):
        output.info(f"writing the demo assets into {assets} ...")
        write_assets(assets)
    return assets / "room.png", [assets / "sneaker.ply"], assets / "room_depth.npy", assets / "room_K.json"


@app.command()
def demo(
    out: Annotated[Path, o.opt("--out", help="output mp4", metavar="PATH")] = Path("out/demo.mp4"),
    assets: Annotated[
        Path, o.opt("--assets", help="demo assets folder (created when missing)", metavar="DIR")
    ] = Path("examples/assets"),  # fmt: skip
    frames: Annotated[int, o.opt("--frames", help="frames", metavar="N")] = 121,
    width: Annotated[int, o.opt("--width", help="video width", metavar="PX")] = 1280,
    height: Annotated[int, o.opt("--height", help="video height", metavar="PX")] = 704,
    trajectory: o.Trajectory = "left",
    device: o.Device = "auto",
    quiet: o.Quiet = False,
    as_json: o.Json = False,
    verbose: o.Verbose = False,
) -> None:
    """The synthetic room + sneaker through the preview backend (no weights needed); prints the video path."""
    from objvid.testing.assets import write_assets  # demo inputs live in the testing subpackage

    setup_logging(verbose)
    output = Output(quiet, as_json)
    names = ("room.png", "room_depth.npy", "room_K.json", "sneaker.ply")
    if not all((assets / n).is_file() for n in names):
        output.info(f"writing the demo assets into {assets} ...")
        write_assets(assets, width, height)
    cfg = pipeline.GenerateConfig(
        image=assets / "room.png", objects=[assets / "sneaker.ply"], out=out, depth=assets / "room_depth.npy",
        intrinsics=assets / "room_K.json", frames=frames, width=width, height=height, backend="preview",
        trajectory=trajectory, object_units="m",  # the sneaker is modelled in metres: real size
    )  # fmt: skip
    result = _generate_and_report(cfg, output, Services(device=device))
    if not (quiet or as_json):
        print(f"demo video: {result['video']}")


# The studio's own options (the rest are generate's, from cli_options).
StudioImage = Annotated[Path | None, o.opt("--image", help="background photo (PNG/JPEG)", metavar="PATH")]
StudioDemo = Annotated[bool, o.flag("demo", "the demo room and sneaker (written to examples/assets when missing; backend preview unless given)")]  # fmt: skip
StudioFrames = Annotated[int, o.opt("--frames", help="frames of the camera path (gen3c: 120N+1)", metavar="N")]  # fmt: skip
StudioWidth = Annotated[int, o.opt("--width", help="video width, multiple of 16", metavar="PX")]
StudioHeight = Annotated[int, o.opt("--height", help="video height, multiple of 16", metavar="PX")]
StudioBackend = Annotated[str | None, o.opt("--backend", help="gen3c (default), or preview (CPU hole filling, NOT GEN3C; the default with --demo)", metavar="gen3c|preview")]  # fmt: skip
StudioPreviewWidth = Annotated[int, o.opt("--preview-width", help="preview render width", metavar="PX")]
StudioWorkdir = Annotated[Path, o.opt("--workdir", help="scene files, exports and runs", metavar="DIR")]
StudioHost = Annotated[str, o.opt("--host", help="address to serve the page on", metavar="HOST")]
StudioPort = Annotated[int, o.opt("--port", help="port (0 = a free one)", metavar="PORT")]


@app.command()
@service_options(mtls=False)
def studio(
    image: StudioImage = None,
    demo: StudioDemo = False,
    objects: o.Objects = None,
    method: o.Method = "fused",
    object_radius: o.Radius = o.RADIUS_DEFAULT,
    frames: StudioFrames = 121,
    fps: o.Fps = 24.0,
    width: StudioWidth = pipeline.DEFAULT_WIDTH,
    height: StudioHeight = pipeline.DEFAULT_HEIGHT,
    anchor: o.Anchors = None,
    object_height: o.ObjectHeights = None,
    depth: o.Depth = None,
    intrinsics: o.Intrinsics = None,
    backend: StudioBackend = None,
    preview_width: StudioPreviewWidth = 640,
    workdir: StudioWorkdir = Path("studio_work"),
    host: StudioHost = "127.0.0.1",
    port: StudioPort = 8080,
    services: Services = None,  # the service flags (@service_options)
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
) -> None:
    """Web studio: place objects and author the camera path by eye, preview, generate (prints the URL)."""
    from objvid.client.studio.command import run_studio

    setup_logging(verbose)
    output = Output(quiet, False)
    backend = backend or ("preview" if demo else "gen3c")
    if demo:
        image, objects, depth, intrinsics = _demo_inputs(Path("examples/assets"), output)
    elif image is None:
        output.error("inputs", "--image is required (or --demo for the demo room and sneaker)")
        raise typer.Exit(1)
    opts = dict(image=image, objects=list(objects or []), method=method, object_radius=object_radius,
                frames=frames, fps=fps, width=width, height=height, anchors=list(anchor or []),
                object_heights=list(object_height or []), depth=depth, intrinsics=intrinsics, backend=backend,
                preview_width=preview_width, workdir=workdir)  # fmt: skip
    run_cli_body(output, lambda: run_studio(opts, host, port, output,
                                            lambda rep, **kw: connect(rep, services, **kw)))  # fmt: skip


def main() -> None:
    app()


if __name__ == "__main__":
    main()
