"""Core pieces of issue 13 on their own: the host-memory guard, the scene journal (torn records), the
depth service's request-level pixel limit and unparsable requests."""

from __future__ import annotations

import threading

import grpc
import numpy as np
import object_files as of
import pytest
from depth_checkpoints import one_torch_thread, small_checkpoint, start_small_server

from objvid.cache import journal
from objvid.runtime import channels
from objvid.runtime.memguard import HostMemoryExceeded, HostMemoryGuard, parse_bytes, resident_bytes
from objvid.v1 import depth_pb2, depth_pb2_grpc, types_pb2


def test_memory_guard_admits_within_the_budget_and_refuses_beyond():
    rss = [100]
    guard = HostMemoryGuard(1000, rss=lambda: rss[0])
    with guard.reserve(500, "a"):
        with pytest.raises(
            HostMemoryExceeded,
            match=r"^b: needs about 401 bytes of host memory; the process holds 100 and 500 are reserved",
        ):
            with guard.reserve(401, "b"):
                pass
        with guard.reserve(400, "c"):
            assert guard.reserved == 900
    assert guard.reserved == 0
    rss[0] = 990
    with pytest.raises(HostMemoryExceeded, match=r"--host-memory-budget"):
        guard.check(20, "d")
    with pytest.raises(HostMemoryExceeded, match=r"more than the whole budget of 1000 bytes"):
        guard.check(1001, "e")
    assert guard.refusals == 3
    assert HostMemoryGuard(None).budget is None and HostMemoryGuard(0).budget > 0
    assert resident_bytes() > 0
    assert (
        parse_bytes("4G", "x") == 4 << 30
        and parse_bytes("512Mi", "x") == 512 << 20
        and parse_bytes(7, "x") == 7
    )
    with pytest.raises(ValueError, match="^--host-memory-budget: expected a byte count"):
        parse_bytes("lots", "--host-memory-budget")


def test_memory_guard_is_thread_safe():
    guard = HostMemoryGuard(10_000, rss=lambda: 0)
    admitted = []

    def take():
        try:
            with guard.reserve(1000, "t"):
                admitted.append(guard.reserved)
                threading.Event().wait(0.05)
        except HostMemoryExceeded:
            pass

    threads = [threading.Thread(target=take) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(admitted) <= 10_000 and guard.reserved == 0


def test_journal_round_trip_torn_tail_and_compaction(tmp_path):
    path = tmp_path / "s.wal"
    T = np.eye(4)
    for seq in range(1, 4):
        T[0, 3] = seq
        journal.append(
            path, seq, {"kind": "set_transform", "oid": 0, "transform": T.copy(), "key": f"k{seq}"}
        )
    records, valid = journal.read(path)
    assert [s for s, _ in records] == [1, 2, 3] and valid == path.stat().st_size
    assert float(records[2][1]["transform"][0, 3]) == 3.0 and records[2][1]["key"] == "k3"
    full = path.read_bytes()
    path.write_bytes(full[:-7])  # a record torn by kill -9 during its write (never acknowledged)
    assert [s for s, _ in journal.read(path)[0]] == [1, 2]
    corrupt = bytearray(full)
    corrupt[len(full) // 2] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    assert len(journal.read(path)[0]) < 3  # a bad checksum ends the journal there
    path.write_bytes(full)
    assert journal.compact(path, 2) > 0 and [s for s, _ in journal.read(path)[0]] == [3]
    assert journal.compact(path, 3) == 0 and not path.exists()


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def depth_stub(tmp_path_factory):
    server = start_small_server(
        small_checkpoint("v1", tmp_path_factory.mktemp("ckpt")),
        max_pixels=40_000_000,
        max_images=32,
        max_request_pixels=1_000_000,
    )
    channel = channels.make_channel(server.address)
    yield depth_pb2_grpc.DepthServiceStub(channel), channel
    channel.close()
    server.stop(0)


def test_depth_refuses_many_huge_pngs_before_decoding(depth_stub):
    """32 PNGs of 6000x6000 (116 KB each, +150 MB of decoding each before): refused from their headers."""
    stub, _ = depth_stub
    image = types_pb2.Image(encoded=of.png_header(6000, 6000))
    with pytest.raises(grpc.RpcError) as info:
        stub.Lift(depth_pb2.LiftRequest(images=[image] * 32), timeout=60)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (
        "images: 1152000000 pixels in all 32 images together exceed the limit of 1000000"
        in info.value.details()
    )
    bomb = types_pb2.Image(encoded=of.png_header(30000, 30000))
    with pytest.raises(grpc.RpcError) as info:
        stub.Lift(depth_pb2.LiftRequest(images=[bomb]), timeout=60)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and info.value.details().startswith(
        "images[0]:"
    )


def test_depth_unparsable_request_is_invalid_argument(depth_stub):
    _, channel = depth_stub
    call = channel.unary_unary("/objvid.v1.DepthService/Lift")
    with pytest.raises(grpc.RpcError) as info:
        call(b"\x0f\xff\xff", timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid LiftRequest" in info.value.details()
    assert channels.check_health(channel, timeout=10)
