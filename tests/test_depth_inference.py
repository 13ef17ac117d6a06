"""The inference thread, the split lift (start on one thread, download on another), the server's model
injection, warm-up and thread/malloc settings."""

import threading

import grpc
import numpy as np
import pytest
import torch
from depth_checkpoints import SMALL, one_torch_thread

from objvid.depth import cli, lift
from objvid.depth.inference import InferenceThread
from objvid.depth.server import DepthServer, ServerConfig, set_torch_threads, warmup_batch_sizes
from objvid.runtime import channels, config, wire
from objvid.runtime.malloc import tune_malloc
from objvid.v1 import depth_pb2, depth_pb2_grpc


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    yield from one_torch_thread()


# ---------------------------------------------------------------------------------------------------
# InferenceThread


def test_jobs_run_in_order_on_one_thread():
    worker = InferenceThread()
    try:
        seen = []
        futures = [worker.submit(lambda i=i: seen.append((i, threading.get_ident())) or i) for i in range(20)]
        assert [f.result(timeout=10) for f in futures] == list(range(20))
        assert [i for i, _ in seen] == list(range(20))
        assert {t for _, t in seen} == {worker.ident} and worker.ident != threading.get_ident()
    finally:
        worker.close()


def test_a_failing_job_reports_and_the_thread_keeps_running():
    worker = InferenceThread()
    try:
        with pytest.raises(ZeroDivisionError):
            worker.call(lambda: 1 / 0)
        assert worker.call(lambda: 41 + 1) == 42
    finally:
        worker.close()


def test_cancelled_jobs_are_skipped_and_close_refuses_new_ones():
    worker = InferenceThread()
    gate = threading.Event()
    ran = []
    try:
        blocker = worker.submit(gate.wait, 10)
        skipped = worker.submit(ran.append, "skipped")
        kept = worker.submit(ran.append, "kept")
        assert skipped.cancel()
        gate.set()
        blocker.result(timeout=10)
        kept.result(timeout=10)
        assert ran == ["kept"]
    finally:
        worker.close()
    with pytest.raises(RuntimeError, match="closed"):
        worker.submit(lambda: None)


# ---------------------------------------------------------------------------------------------------
# start_lift / PendingLift


class _Recorder:
    """A CPU predictor with GEN3C-shaped outputs that records the thread of every call."""

    name = "recorder"
    device = torch.device("cpu")

    def __init__(self):
        self.threads: list[int] = []

    def __call__(self, x):
        self.threads.append(threading.get_ident())
        b, _, h, w = x.shape
        depth = x.mean(1) + 1.0
        mask = x[:, 0] > 0.2
        k = torch.tensor([[0.7, 0.0, 0.5], [0.0, 1.2, 0.5], [0.0, 0.0, 1.0]]).expand(b, 3, 3)
        return lift.Prediction(depth, mask, k)


def test_start_lift_result_on_another_thread_equals_lift_batch():
    rgb = [np.random.default_rng(i).integers(0, 256, (24, 40, 3), dtype=np.uint8) for i in range(2)]
    model = _Recorder()
    expected = lift.lift_batch(model, rgb, (16, 32), "cpu")
    pending = lift.start_lift(model, rgb, (16, 32), "cpu")
    got: list = []
    t = threading.Thread(target=lambda: got.extend(pending.result()))
    t.start()
    t.join()
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a.depth, b.depth)
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.intrinsics, b.intrinsics)
    assert got[0].intrinsics[0, 2] == 16.0 and got[0].intrinsics[1, 2] == 8.0


def test_host_copies_of_cpu_tensors_need_no_wait():
    t = torch.arange(6.0)
    copies = lift.HostCopies.start([t])
    assert copies.done is None and copies.wait()[0] is t


# ---------------------------------------------------------------------------------------------------
# The server: injected model, every model call on the inference thread


def test_model_calls_and_warm_up_run_on_the_inference_thread():
    model = _Recorder()
    srv = DepthServer(
        ServerConfig(host="127.0.0.1", port=0, metrics_port=None, micro_batch=2, **SMALL, malloc_tuning=False)
    ).listen()
    try:
        srv.load(model=model)
        assert srv.model is model and len(model.threads) == 1  # warm-up (CPU: one call)
        rgb = np.random.default_rng(0).integers(0, 256, (72, 128, 3), dtype=np.uint8)
        req = depth_pb2.LiftRequest(images=[wire.encode_image(rgb)] * 3)
        with channels.make_channel(srv.address) as channel:
            stub = depth_pb2_grpc.DepthServiceStub(channel)
            threads = [
                threading.Thread(target=stub.Lift, args=(req,), kwargs={"timeout": 30}) for _ in range(3)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            resp = stub.Lift(req, timeout=30)
        assert len(resp.views) == 3 and resp.model == "recorder"
        assert len(model.threads) == 1 + 4 * 2  # 4 requests x 2 micro-batches (2 + 1 images)
        assert set(model.threads) == {srv.servicer.inference.ident}
    finally:
        srv.stop(0)


def test_a_request_past_its_deadline_before_its_model_call_is_cancelled():
    gate, inside = threading.Event(), threading.Event()

    class Slow(_Recorder):
        def __call__(self, x):
            inside.set()
            gate.wait(10)
            return super().__call__(x)

    srv = DepthServer(
        ServerConfig(host="127.0.0.1", port=0, metrics_port=None, warmup=False, **SMALL, malloc_tuning=False)
    ).listen()
    slow = Slow()
    try:
        srv.load(model=slow)
        req = depth_pb2.LiftRequest(images=[wire.encode_image(np.zeros((72, 128, 3), np.uint8))])
        with channels.make_channel(srv.address) as channel:
            stub = depth_pb2_grpc.DepthServiceStub(channel)
            first = stub.Lift.future(req, timeout=30)  # holds the inference thread until the gate opens
            assert inside.wait(10)  # the first request is in the model (a fixed sleep raced under load)
            with pytest.raises(grpc.RpcError) as info:
                stub.Lift(req, timeout=0.3)  # queued behind it; its deadline passes first
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            gate.set()
            assert len(first.result().views) == 1
            assert len(stub.Lift(req, timeout=30).views) == 1  # still serving
        assert len(slow.threads) == 2  # the expired request never reached the model
    finally:
        gate.set()
        srv.stop(0)


def test_a_failed_listen_closes_what_it_opened():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        srv = DepthServer(
            ServerConfig(
                host="127.0.0.1", port=0, metrics_host="127.0.0.1", metrics_port=busy.getsockname()[1],
                **SMALL, malloc_tuning=False,
            )
        )  # fmt: skip
        with pytest.raises(OSError):
            srv.listen()  # gRPC binds, then the metrics port is taken
    assert srv.handle is None  # the gRPC server was stopped
    assert not srv.servicer.inference._thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        srv.servicer.inference.submit(lambda: None)


# ---------------------------------------------------------------------------------------------------
# Settings


def test_warmup_batch_sizes():
    config = ServerConfig(micro_batch=4, max_images=3)
    assert warmup_batch_sizes(config, torch.device("cuda")) == [1, 2, 3]
    assert warmup_batch_sizes(config, torch.device("cpu")) == [1]


def test_set_torch_threads():
    before = torch.get_num_threads()
    try:
        assert set_torch_threads(0, torch.device("cpu")) == before  # auto on CPU: left alone
        assert set_torch_threads(2, torch.device("cpu")) == 2
    finally:
        torch.set_num_threads(before)


def test_bad_torch_threads_names_the_field():
    with pytest.raises(ValueError, match="torch_threads"):
        ServerConfig(torch_threads=-1).validate()


def test_tune_malloc_is_accepted_on_glibc():
    assert tune_malloc() in (True, False)  # False only off glibc; never raises


def _config(argv):
    return cli.config_from_options(config.parse(cli.cli, ["serve", *argv]))


def test_cli_boolean_flags_and_env_fallbacks(monkeypatch):
    cfg = _config([])
    assert cfg.fast_kernels and cfg.malloc_tuning and cfg.torch_threads == 0 and cfg.metrics_port == 9101
    monkeypatch.setenv("OBJVID_DEPTH_FAST_KERNELS", "0")
    monkeypatch.setenv("OBJVID_DEPTH_TORCH_THREADS", "3")
    monkeypatch.setenv("OBJVID_DEPTH_METRICS_PORT", "off")
    cfg = _config(["--no-malloc-tuning", "--grace-seconds", "2"])
    assert not cfg.fast_kernels and not cfg.malloc_tuning and cfg.torch_threads == 3
    assert cfg.metrics_port is None and cfg.grace == 2.0  # --grace-seconds: the old spelling of --grace


def test_cli_token_needs_tls_unless_allowed(monkeypatch):
    with pytest.raises(ValueError, match="allow-insecure-token"):
        _config(["--token", "t"])
    assert _config(["--token", "t", "--allow-insecure-token"]).token == "t"
