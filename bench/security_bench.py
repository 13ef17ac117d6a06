"""What issue 13's defences cost, and how the measured hostile inputs fare now, against a live cache server.

Rows (each: calls, median and p95 ms; server RSS growth where it matters):
- UpdateObject without / with --snapshot-dir (the journal's fsync before the answer);
- AddObject of a 100k-sample GLB through the parser process vs. parsed in the request thread (workers=0);
- the issue's measured hostile files: negative face count PLY (was ~1 h of CPU), 200k empty faces (0.4 s),
  sample_points = 20,000,000 on a 1 KB GLB (+3.2 GB), 4M-instance glTF, 900 M pixel PNG in CreateScene;
- restart: load time of a scene with N journal records after kill -9 (replay).

    python bench/security_bench.py            # CPU, small sizes (a minute)
    python bench/security_bench.py --device cuda --calls 200

Prints a table and writes bench/results/security_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import object_files as of  # noqa: E402  (tests/object_files.py: the same hostile files the tests use)
from cache_service_helpers import (  # noqa: E402
    cloud_msg,
    create_rgbd_scene,
    cube_cloud,
    matrix_transform,
    rgbd,
    running,
    stub_for,
    translation,
    view_msg,
)

from objvid.runtime.memguard import resident_bytes  # noqa: E402
from objvid.v1 import cache_pb2  # noqa: E402


def _times(fn, n: int) -> dict:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    out.sort()
    return {
        "calls": n,
        "median_ms": round(statistics.median(out), 3),
        "p95_ms": round(out[int(0.95 * (n - 1))], 3),
    }


def _update_object(device: str, calls: int, snapshot_dir: str | None) -> dict:
    pts, cols = cube_cloud()
    with running(device=device, snapshot_dir=snapshot_dir) as server:
        _, stub = stub_for(server)
        sid = create_rgbd_scene(stub).scene_id
        oid = stub.AddObject(
            cache_pb2.AddObjectRequest(scene_id=sid, cloud=cloud_msg(pts, cols))
        ).object.object_id
        k = [0]

        def move():
            k[0] += 1
            T = matrix_transform(translation(0.001 * k[0], 0.3, 1.8))
            stub.UpdateObject(cache_pb2.UpdateObjectRequest(scene_id=sid, object_id=oid, transform=T))

        return _times(move, calls)


def _add_object(device: str, calls: int, workers: int) -> dict:
    glb = of.box("glb")
    with running(device=device, parse_workers=max(workers, 1)) as server:
        if workers == 0:
            server.servicer.parse_pool.workers = 0  # parse in the request thread
        _, stub = stub_for(server)
        sid = create_rgbd_scene(stub).scene_id
        f = cache_pb2.ObjectFile(data=glb, filename="box.glb", sample_points=100_000)
        stub.AddObject(cache_pb2.AddObjectRequest(scene_id=sid, file=f))  # warm: the worker starts
        return _times(lambda: stub.AddObject(cache_pb2.AddObjectRequest(scene_id=sid, file=f)), calls)


def _hostile(device: str) -> list[dict]:
    import grpc

    cases = [
        ("negative face count PLY", of.negative_face_count_ply(), "neg.ply", 0),
        ("200k empty faces PLY", of.empty_faces_ply(200_000), "empty.ply", 0),
        ("sample_points=20M on a 1 KB GLB", of.glb(*of.triangle_doc()), "tri.glb", 20_000_000),
        ("4M-instance glTF", of.instanced_glb(22), "inst.glb", 0),
    ]
    rows = []
    with running(device=device) as server:
        _, stub = stub_for(server)
        sid = create_rgbd_scene(stub).scene_id
        f = cache_pb2.ObjectFile(data=of.box("glb"), filename="warm.glb", sample_points=10)
        stub.AddObject(cache_pb2.AddObjectRequest(scene_id=sid, file=f))  # the parser process is started
        for label, data, name, samples in cases:
            rss0 = resident_bytes()
            t0 = time.perf_counter()
            try:
                f = cache_pb2.ObjectFile(data=data, filename=name, sample_points=samples)
                stub.AddObject(cache_pb2.AddObjectRequest(scene_id=sid, file=f), timeout=120)
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
            rows.append({"case": label, "bytes": len(data), "code": code, "ms": round((time.perf_counter() - t0) * 1e3, 2),
                         "server_rss_growth_mb": round((resident_bytes() - rss0) / 2**20, 1)})  # fmt: skip
        image, depth, K = rgbd()
        view = view_msg(image, depth, K)
        view.image.Clear()
        view.image.encoded = of.png_header(30000, 30000)
        t0 = time.perf_counter()
        try:
            stub.CreateScene(cache_pb2.CreateSceneRequest(rgbd=view), timeout=60)
            code = "OK"
        except grpc.RpcError as exc:
            code = exc.code().name
        rows.append({"case": "900 M pixel PNG in CreateScene", "bytes": len(view.image.encoded), "code": code,
                     "ms": round((time.perf_counter() - t0) * 1e3, 2), "server_rss_growth_mb": 0.0})  # fmt: skip
    return rows


def _replay(device: str, records: int) -> dict:
    pts, cols = cube_cloud()
    with tempfile.TemporaryDirectory() as d:
        with running(device=device, snapshot_dir=d) as server:
            _, stub = stub_for(server)
            sid = create_rgbd_scene(stub).scene_id
            oid = stub.AddObject(
                cache_pb2.AddObjectRequest(scene_id=sid, cloud=cloud_msg(pts, cols))
            ).object.object_id
            for k in range(records):
                T = matrix_transform(translation(0.001 * k, 0.3, 1.8))
                stub.UpdateObject(cache_pb2.UpdateObjectRequest(scene_id=sid, object_id=oid, transform=T))
            server.store._writer = None  # like kill -9: no final snapshot on stop (the journal stays)
        wal = sum(p.stat().st_size for p in Path(d).glob("*.wal"))
        t0 = time.perf_counter()
        with running(device=device, snapshot_dir=d) as server:  # loads journaled scenes at start-up
            seconds = time.perf_counter() - t0
            ok = server.store.entry(sid).resident
    return {"records": records, "journal_bytes": wal, "start_with_replay_s": round(seconds, 3), "loaded": ok}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--replay-records", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        rows = {
            "update_object_no_snapshots": _update_object(args.device, args.calls, None),
            "update_object_journal_fsync": _update_object(args.device, args.calls, d),
        }
    rows["add_object_glb_100k_parser_process"] = _add_object(args.device, max(4, args.calls // 4), 1)
    rows["add_object_glb_100k_request_thread"] = _add_object(args.device, max(4, args.calls // 4), 0)
    hostile = _hostile(args.device)
    replay = _replay(args.device, args.replay_records)
    print(f"{'latency':<40} {'calls':>6} {'median ms':>10} {'p95 ms':>10}")
    for name, r in rows.items():
        print(f"{name:<40} {r['calls']:>6} {r['median_ms']:>10.2f} {r['p95_ms']:>10.2f}")
    print(f"\n{'hostile input':<36} {'bytes':>8} {'status':>20} {'ms':>9} {'RSS +MB':>8}")
    for r in hostile:
        print(
            f"{r['case']:<36} {r['bytes']:>8} {r['code']:>20} {r['ms']:>9.1f} {r['server_rss_growth_mb']:>8.1f}"
        )
    print(f"\nrestart after kill -9 with {replay['records']} journal records ({replay['journal_bytes']} bytes): "
          f"{replay['start_with_replay_s']} s, scene loaded: {replay['loaded']}")  # fmt: skip
    out = ROOT / "bench" / "results" / f"security_{args.device.replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"device": args.device, "latency": rows, "hostile": hostile, "replay": replay}, indent=1)
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
