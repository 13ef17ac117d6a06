"""objvid studio in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``, WebGL in
software through SwiftShader) drives ``objvid-client studio`` served on 127.0.0.1 over the local stack.

One studio and one browser for the module (starting them is the slow part); small sizes (320x176, 9 frames,
a 20k-point sneaker) keep software WebGL workable on 2 cores. The tests run in file order: they share the
studio's state the way two people at one studio would.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from objvid.client import camera_path, video
from objvid.client.placement import parse_object_pose, transform_matrix
from objvid.testing import assets

pytestmark = pytest.mark.slow

W, H, FRAMES = 320, 176, 9
CHROMIUM, DRIVER = (
    shutil.which("chromium") or "/usr/bin/chromium",
    shutil.which("chromedriver") or "/usr/bin/chromedriver",
)
# The flags that render viser's WebGL page headless here (reference/ecosystem.md).
CHROME_FLAGS = ["--headless=new", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                "--disable-dev-shm-usage", "--window-size=1000,700", "--autoplay-policy=no-user-gesture-required"]  # fmt: skip

# Page helpers (viser's GUI: Mantine inputs whose <label for=...> names the first input of a row).
JS_ROW_INPUTS = """
const [label, n] = arguments;
const l = [...document.querySelectorAll('label')].find(x => x.innerText.trim() === label);
if (!l) return null;
const first = document.getElementById(l.htmlFor);
if (!first) return null;
let p = first;
while (p && p.querySelectorAll('input[type=text]').length < n) p = p.parentElement;
if (!p) return null;
const all = [...p.querySelectorAll('input[type=text]')];
return all.slice(all.indexOf(first), all.indexOf(first) + n);
"""
# The "--object-pose" field: the text input holding x,y,z,rx,ry,rz,s.
JS_POSE_FIELD = """
const f = [...document.querySelectorAll('input')].find(i => /^[-+0-9.e]+(,[-+0-9.e]+){6}$/.test(i.value));
return f ? f.value : null;
"""
JS_BUTTON = """
return [...document.querySelectorAll('button')].find(b => b.innerText.trim() === arguments[0]) || null;
"""


def _marker_pids(marker: str) -> list[int]:
    """Live (non-zombie) processes whose environment holds ``OBJVID_TEST_MARK=<marker>`` (psutil)."""
    pids = []
    for p in psutil.process_iter():
        try:
            if p.status() != psutil.STATUS_ZOMBIE and p.environ().get("OBJVID_TEST_MARK") == marker:
                pids.append(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return pids


def _wait(fn, timeout: float, what: str, every: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as exc:  # noqa: BLE001 - the page may be mid-update
            last = exc
        if last is not None and last is not False and not isinstance(last, Exception):
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def room(tmp_path_factory) -> dict[str, str]:
    return assets.write_assets(tmp_path_factory.mktemp("assets"), W, H, num_points=20_000)


@pytest.fixture(scope="module")
def studio(room, tmp_path_factory):
    """``objvid-client studio`` (preview backend) on a free port -> {url, workdir}; stopped with SIGTERM."""
    work = tmp_path_factory.mktemp("studio")
    marker = uuid.uuid4().hex
    env = dict(os.environ, OBJVID_TEST_MARK=marker)
    cmd = [sys.executable, "-m", "objvid.client", "studio", "--image", room["image"], "--depth", room["depth"],
           "--intrinsics", room["intrinsics"], "--object", room["object"], "--object-height", "0.8", "--width", str(W), "--height",
           str(H), "--frames", str(FRAMES), "--backend", "preview", "--device", "cpu", "--port", "0",
           "--workdir", str(work), "--quiet"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=open(work / "studio.err", "wb"), text=True, env=env
    )
    line = proc.stdout.readline()  # blocks until the URL is printed (or the process ends)
    assert line.startswith("objvid studio: http://127.0.0.1:"), (line, (work / "studio.err").read_text())
    yield {"url": line.split(": ", 1)[1].strip(), "workdir": work, "proc": proc}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 143
    deadline = time.monotonic() + 15
    while _marker_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _marker_pids(marker) == [], "processes left behind"


def _chrome(download_dir: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {"download.default_directory": str(download_dir)})
    driver = webdriver.Chrome(options=opts, service=Service(DRIVER))
    driver.set_page_load_timeout(180)
    driver.set_script_timeout(180)
    return driver


@pytest.fixture(scope="module")
def page(studio, tmp_path_factory):
    driver = _chrome(tmp_path_factory.mktemp("downloads"))
    driver.get(studio["url"])
    _wait(lambda: driver.execute_script(JS_BUTTON, "Generate"), 180, "the studio's panel")
    yield driver
    driver.quit()


# ---------------------------------------------------------------------------------------------------
# page helpers


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)


def _canvas(driver) -> np.ndarray:
    from selenium.webdriver.common.by import By

    canvases = driver.find_elements(By.CSS_SELECTOR, "canvas")
    biggest = max(canvases, key=lambda c: c.size["width"] * c.size["height"])
    return _png(biggest.screenshot_as_png)


def _preview(driver) -> np.ndarray:
    """The preview picture as shown, resized back to the preview size (W x H here)."""
    from selenium.webdriver.common.by import By

    img = _wait(lambda: [i for i in driver.find_elements(By.CSS_SELECTOR, "img")
                         if (i.get_attribute("src") or "").startswith("blob:")], 60, "the preview image")[0]  # fmt: skip
    shot = Image.open(io.BytesIO(img.screenshot_as_png)).convert("RGB").resize((W, H), Image.BILINEAR)
    return np.asarray(shot).astype(np.int16)


def _pose(driver) -> np.ndarray:
    value = driver.execute_script(JS_POSE_FIELD)
    assert value, "no --object-pose field in the page"
    return transform_matrix(parse_object_pose(value))


def _type(driver, element, text: str) -> None:
    from selenium.webdriver.common.keys import Keys

    element.click()
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.BACKSPACE)
    element.send_keys(text, Keys.ENTER)


def _click(driver, label: str) -> None:
    button = _wait(lambda: driver.execute_script(JS_BUTTON, label), 30, f"button {label!r}")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
    button.click()


@pytest.fixture(scope="module")
def scene_only(room) -> np.ndarray:
    """The input view rendered from the cache library without objects (the preview's background)."""
    from objvid.cache.scene import Scene
    from objvid.client import inputs
    from objvid.client.pipeline import DEFAULT_FILTER_THRESHOLD

    image = inputs.load_image(room["image"])
    depth, _ = inputs.load_depth(room["depth"])
    K = inputs.load_intrinsics(room["intrinsics"], (W, H))
    scene = Scene.from_rgbd(image, depth, K, filter_points_threshold=DEFAULT_FILTER_THRESHOLD)
    out = scene.render(np.eye(4), K, H, W, mode="scene", outputs=("rgb",))
    return out.rgb[0, 0].cpu().numpy().astype(np.int16)


def _object_box(room, pose: np.ndarray) -> tuple[int, int, int, int]:
    """Pixel box (u0, v0, u1, v1) of the sneaker at ``pose`` in the input view (the preview at frame 0)."""
    from objvid.cache.io import load_object
    from objvid.client import inputs

    pts, _ = load_object(room["object"])
    world = pts.astype(np.float64) @ pose[:3, :3].T + pose[:3, 3]
    K = inputs.load_intrinsics(room["intrinsics"], (W, H))
    uvw = world @ K.T
    u, v = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
    return int(u.min()), int(v.min()), int(np.ceil(u.max())), int(np.ceil(v.max()))


def _inside(mask: np.ndarray, box, pad: int = 3) -> float:
    u0, v0, u1, v1 = box
    ys, xs = np.nonzero(mask)
    ok = (xs >= u0 - pad) & (xs <= u1 + pad) & (ys >= v0 - pad) & (ys <= v1 + pad)
    return float(ok.mean()) if len(xs) else 0.0


# ---------------------------------------------------------------------------------------------------
# tests (in order: they share one studio)


def test_page_shows_the_point_cloud_and_the_object_where_its_pose_says(page, room, scene_only):
    view = _canvas(page)
    assert view.std() > 20 and len(np.unique(view.reshape(-1, 3), axis=0)) > 500, "the 3D view is blank"
    # the object in the 3D view: hiding it changes the picture
    (show,) = [e for e in page.find_elements("css selector", "input[type=checkbox]")
               if e.get_attribute("id") == page.execute_script(
                   "return [...document.querySelectorAll('label')].find(l => l.innerText.trim() === "
                   "'show objects in 3D').htmlFor")]  # fmt: skip
    page.execute_script("arguments[0].click();", show)
    hidden = _wait(lambda: (lambda c: c if np.abs(c - view).max() > 60 else None)(_canvas(page)), 60,
                   "the 3D view without the object")  # fmt: skip
    page.execute_script("arguments[0].click();", show)
    assert (np.abs(hidden - view).max(axis=2) > 60).sum() > 200
    # the preview (the cache's fused render of frame 0 = the input view) has the object at its pose
    preview = _preview(page)
    changed = np.abs(preview - scene_only).max(axis=2) > 60
    box = _object_box(room, _pose(page))
    assert changed.sum() > 300, "no object in the preview"
    assert _inside(changed, box) > 0.9, f"object pixels outside its projected box {box}"


def test_moving_the_object_in_the_page_moves_the_preview_and_the_exported_pose(
    page, room, studio, scene_only, tmp_path
):
    before_pose = _pose(page)
    before = _preview(page)
    x, y, z = page.execute_script(JS_ROW_INPUTS, "position", 3)
    new_x = before_pose[0, 3] + 0.6  # to the right, in scene units (metres)
    _type(page, x, f"{new_x:.3f}")
    moved = _wait(lambda: (lambda p: p if abs(p[0, 3] - new_x) < 1e-3 else None)(_pose(page)), 60,
                  "the --object-pose field to follow")  # fmt: skip
    np.testing.assert_allclose(moved[:3, :3], before_pose[:3, :3], atol=1e-6)  # only the position changed
    np.testing.assert_allclose(moved[1:3, 3], before_pose[1:3, 3], atol=1e-6)
    after = _wait(lambda: (lambda p: p if np.abs(p - before).max(axis=2).__gt__(60).sum() > 300 else None)(
        _preview(page)), 60, "the preview to change")  # fmt: skip
    changed = np.abs(after - scene_only).max(axis=2) > 60
    assert _inside(changed, _object_box(room, moved)) > 0.9
    assert _inside(changed, _object_box(room, before_pose), pad=0) < 0.9  # it left the old place
    # a second browser sees the same session, and so does this page after a reload
    other = _chrome(tmp_path)
    try:
        other.get(studio["url"])
        _wait(
            lambda: abs(_pose(other)[0, 3] - new_x) < 1e-3, 120, "the second browser to show the moved object"
        )
    finally:
        other.quit()
    page.refresh()
    _wait(lambda: abs(_pose(page)[0, 3] - new_x) < 1e-3, 120, "the reloaded page to show the moved object")


def test_keyframe_path_exports_the_json_that_the_cli_renders(page, room, studio, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = max(page.find_elements(By.CSS_SELECTOR, "canvas"), key=lambda c: c.size["width"])
    exported = studio["workdir"] / "camera_path.json"
    # The browser reports its view camera to the studio asynchronously: on a loaded machine a click can
    # overtake the drag's last camera update. Wait longer on each attempt; the camera must really move.
    for attempt in range(3):
        _click(page, "Clear keyframes")
        _wait(lambda: "0 keyframes" in page.find_element(By.TAG_NAME, "body").text, 60, "no keyframes")
        for k, drag in enumerate((0, 60, 60)):
            if drag:  # orbit the view a little between keyframes
                ActionChains(page).move_to_element_with_offset(canvas, -200, 0).click_and_hold().move_by_offset(
                    drag, 10).release().perform()  # fmt: skip
                time.sleep(1.0 + 2.0 * attempt)
            _click(page, "Add keyframe (current view)")
            _wait(lambda k=k: f"{k + 1} keyframes" in page.find_element(By.TAG_NAME, "body").text, 60,
                  f"{k + 1} keyframes")  # fmt: skip
        exported.unlink(missing_ok=True)
        _click(page, "Export camera path (JSON)")
        _wait(exported.is_file, 60, "the exported camera path")
        data = json.loads(exported.read_text())
        path = camera_path.parse_camera_path(data)
        centres = [np.linalg.inv(w)[:3, 3] for w in path.w2cs]
        if np.linalg.norm(centres[-1] - centres[0]) > 1e-3:
            break
    assert np.linalg.norm(centres[-1] - centres[0]) > 1e-3, "the keyframes did not move the camera"
    assert (path.width, path.height, path.num_frames) == (W, H, FRAMES)
    # the CLI renders exactly this path
    out = tmp_path / "render.mp4"
    proc = subprocess.run([sys.executable, "-m", "objvid.client", "render", "--image", room["image"], "--depth",
                           room["depth"], "--intrinsics", room["intrinsics"], "--object", room["object"],
                           "--camera-path", str(exported), "--device", "cpu", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "render_work" / "cameras.json").read_text()) == data
    assert video.read_video(out).shape == (FRAMES, H, W, 3)


def test_generate_with_the_preview_backend_plays_the_video_in_the_page(page, studio):
    _click(page, "Generate")
    script = (
        "const v = document.getElementById('objvid-video'); return v && v.readyState >= 2 && v.duration > 0;"
    )
    _wait(lambda: page.execute_script(script), 400, "a playable video in the page", every=2)
    t0 = page.execute_script("return document.getElementById('objvid-video').currentTime;")
    _wait(lambda: page.execute_script("return document.getElementById('objvid-video').currentTime;") != t0, 60,
          "the video to play")  # fmt: skip
    for label in ("Download video (mp4)", "Download buffer video (mp4)", "Download manifest (JSON)"):
        assert page.execute_script(JS_BUTTON, label) is not None
    run = studio["workdir"] / "runs" / "001"
    assert video.read_video(run / "video.mp4").shape == (FRAMES, H, W, 3)
    manifest = json.loads((run / "work" / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["preview"] is True
    assert (run / "video_buffer.mp4").is_file()
