"""Shared pieces of the cache-service tests (tests/test_cache_service*.py): scenes, cameras, servers, certs."""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

import grpc
import numpy as np

from objvid.cache.server import CacheServer, Limits, ServerConfig
from objvid.runtime import channels, wire
from objvid.v1 import cache_pb2, cache_pb2_grpc, types_pb2

H, W = 48, 64
FOCAL = 60.0


def intrinsics(height: int = H, width: int = W, focal: float = FOCAL) -> np.ndarray:
    return np.array([[focal, 0.0, (width - 1) / 2], [0.0, focal, (height - 1) / 2], [0.0, 0.0, 1.0]])


def rgbd(height: int = H, width: int = W, seed: int = 0):
    """Textured floor + back wall: (image (H,W,3) uint8, depth (H,W) float32, K)."""
    rng = np.random.default_rng(seed)
    K = intrinsics(height, width)
    v = np.arange(height, dtype=np.float64)[:, None].repeat(width, 1)
    slope = (v - K[1, 2]) / K[1, 1]
    floor = np.where(slope > 1e-3, 1.0 / np.maximum(slope, 1e-3), np.inf)
    depth = np.minimum(3.0, floor).astype(np.float32)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return image, depth, K


def w2c_shift(x: float = 0.0, y: float = 0.0, z: float = 0.0, yaw_deg: float = 0.0) -> np.ndarray:
    a = np.radians(yaw_deg)
    T = np.eye(4)
    T[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    T[:3, 3] = [x, y, z]
    return T


def view_msg(image, depth, K, w2c=None, mask=None) -> cache_pb2.RgbdView:
    h, w = depth.shape
    msg = cache_pb2.RgbdView(
        image=wire.encode_image(image),
        depth=wire.encode_tensor(depth),
        camera=wire.encode_camera(K, np.eye(4) if w2c is None else w2c, w, h),
    )
    if mask is not None:
        msg.mask.CopyFrom(wire.encode_tensor(mask))
    return msg


def cube_cloud(n_side: int = 6, size: float = 0.3, seed: int = 3):
    """Points on a small cube's surface grid (object-local, centred) and colours."""
    g = np.linspace(-size / 2, size / 2, n_side)
    pts = np.array(np.meshgrid(g, g, g, indexing="ij")).reshape(3, -1).T
    pts = pts[(np.abs(pts) >= size / 2 - 1e-9).any(1)].astype(np.float32)
    cols = np.random.default_rng(seed).integers(0, 256, (len(pts), 3), dtype=np.uint8)
    return pts, cols


def cloud_msg(pts, cols=None) -> types_pb2.PointCloud:
    msg = types_pb2.PointCloud(positions=wire.encode_tensor(pts))
    if cols is not None:
        msg.colors.CopyFrom(wire.encode_tensor(cols))
    return msg


def matrix_transform(T) -> types_pb2.Transform:
    return types_pb2.Transform(matrix=types_pb2.Matrix4(values=np.asarray(T, np.float64).ravel().tolist()))


def translation(x, y, z) -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = [x, y, z]
    return T


def decode_frame(frame: cache_pb2.Frame) -> dict[str, np.ndarray]:
    """Frame -> {"rgb": (N,H,W,3) uint8, "mask": (N,H,W) bool, "depth": (N,H,W), "object_mask": (N,H,W)}."""
    out = {}
    if frame.rgb:
        out["rgb"] = np.stack([wire.decode_image(im, "rgb") for im in frame.rgb])
    if frame.mask:
        out["mask"] = np.stack([wire.decode_image(im, "mask", grayscale=True) for im in frame.mask]) != 0
    if frame.HasField("depth"):
        out["depth"] = wire.decode_tensor(frame.depth)
    if frame.HasField("object_mask"):
        out["object_mask"] = wire.decode_tensor(frame.object_mask)
    return out


def start(tmp_path: Path | None = None, **overrides) -> CacheServer:
    """A CacheServer on 127.0.0.1, ephemeral port, CPU unless ``device`` is given."""
    limits = overrides.pop("limits", Limits())
    cfg = ServerConfig(host="127.0.0.1", port=0, device=overrides.pop("device", "cpu"), memory_budget=overrides.pop("memory_budget", 1 << 30),
                       limits=limits, workers=overrides.pop("workers", 16), **overrides)  # fmt: skip
    return CacheServer(cfg)


@contextlib.contextmanager
def running(**overrides):
    server = start(**overrides)
    try:
        yield server
    finally:
        server.stop(0)


def stub_for(server: CacheServer, **channel_kw) -> tuple[grpc.Channel, cache_pb2_grpc.CacheServiceStub]:
    channel = channels.make_channel(server.address, **channel_kw)
    return channel, cache_pb2_grpc.CacheServiceStub(channel)


def wait_for(cond, timeout: float = 30.0) -> bool:
    """Poll ``cond()`` every 20 ms until it is true (True) or ``timeout`` seconds pass (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


def create_rgbd_scene(stub, scene_id: str = "", seed: int = 0, **kw) -> cache_pb2.SceneInfo:
    image, depth, K = rgbd(seed=seed)
    req = cache_pb2.CreateSceneRequest(rgbd=view_msg(image, depth, K), scene_id=scene_id, **kw)
    return stub.CreateScene(req, timeout=30).scene


class Certs(dict):
    """``certs["ca.pem"]``: the PEM bytes (what channels take); ``certs.path("server.pem")``: the file (what
    servers take: ``ServingConfig`` holds paths)."""

    def __init__(self, directory: Path, files: dict[str, bytes]):
        super().__init__(files)
        self.directory = Path(directory)

    def path(self, name: str) -> str:
        return str(self.directory / name)

    def server(self, mtls: bool = False) -> dict[str, str]:
        """Server config keywords for TLS (and mTLS)."""
        kw = {"tls_cert": self.path("server.pem"), "tls_key": self.path("server.key")}
        if mtls:
            kw["tls_client_ca"] = self.path("ca.pem")
        return kw


def make_certs(directory: Path) -> Certs:
    """CA, server (SAN 127.0.0.1 / localhost) and client certificates via the openssl CLI."""
    d = Path(directory)

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=objvid-test-ca")  # fmt: skip
    for name in ("server", "client", "rogue"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}")  # fmt: skip
        (d / f"{name}.ext").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            if name == "server"
            else "extendedKeyUsage=clientAuth\n"
        )
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "server.ext")  # fmt: skip
    run("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "client.pem", "-days", "2", "-extfile", "client.ext")  # fmt: skip
    run(
        "x509", "-req", "-in", "rogue.csr", "-signkey", "rogue.key", "-out", "rogue.pem", "-days", "2"
    )  # self-signed
    return Certs(d, {p.name: p.read_bytes() for p in d.iterdir() if p.suffix in (".pem", ".key")})
