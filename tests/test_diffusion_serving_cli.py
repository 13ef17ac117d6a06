"""``objvid-diffusion``: flags, env fallbacks, errors, convert delegation, and a real ``serve`` subprocess."""

from __future__ import annotations

import os
import pathlib
import queue
import signal
import subprocess
import sys
import time

import pytest
import tritonclient.grpc as grpcclient
from diffusion_serving_helpers import chunk, generate
from net_helpers import free_ports
from tritonclient.utils import InferenceServerException

from objvid.diffusion import cli
from objvid.diffusion.registry import ModelSettings, settings_from_parameters
from objvid.runtime import config


def parse(argv, monkeypatch=None, **env):
    for key, value in env.items():
        monkeypatch.setenv(f"OBJVID_DIFFUSION_{key}", value)
    return config.parse(cli.cli, argv)


def test_defaults():
    args = parse(["serve"])
    assert (args["host"], args["http_port"], args["grpc_port"], args["metrics_port"]) == (
        "127.0.0.1",
        8000,
        8001,
        8002,
    )
    assert cli.selected_models(args) == ["preview"]
    assert not (args["offload_text_encoder"] or args["offload_vae"] or args["offload_transformer"])


def test_env_fallbacks_and_flags_override(monkeypatch, tmp_path):
    env = {"GRPC_PORT": "9001", "GEN3C_WEIGHTS": str(tmp_path), "OFFLOAD_TOKENIZER": "1", "DEVICE": "cpu"}
    args = parse(["serve"], monkeypatch, **env)
    assert args["grpc_port"] == 9001 and args["offload_vae"] and args["device"] == "cpu"
    assert cli.selected_models(args) == ["preview", "gen3c"]
    args = parse(["serve", "--grpc-port", "9100", "--models", "gen3c", "--offload-transformer"], monkeypatch)
    assert (
        args["grpc_port"] == 9100 and cli.selected_models(args) == ["gen3c"] and args["offload_transformer"]
    )
    assert parse(["serve", "--metrics-port", "off"])["metrics_port"] is None
    assert parse(["serve", "--offload-tokenizer"])["offload_vae"] is True  # the old spelling


@pytest.mark.parametrize(
    "argv, message",
    [
        (["serve", "--models", "gen3c"], "--gen3c-weights"),
        (["serve", "--models", "preview,sdxl"], "unknown model(s) ['sdxl']"),
        (["serve", "--gen3c-weights", "/nonexistent/gen3c"], "is not a directory"),
        (["serve", "--inpaint-radius", "0"], "radius must be >= 1"),
        (["serve", "--models", "gen3c", "--gen3c-weights", ".", "--device", "tpu"], "device must be"),
    ],
)
def test_serve_errors_exit_2_with_message(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("GRPC_PORT", "80O1", "expected a port 0..65535, got '80O1'"),
        ("LOG_LEVEL", "verbose", "'verbose' is not one of"),
        ("ATTENTION_BACKEND", "turbo", "'turbo' is not one of"),
        ("OFFLOAD_VAE", "maybe", "'maybe' is not a valid boolean"),
    ],
)
def test_bad_env_values_exit_2_naming_the_variable(monkeypatch, capsys, name, value, message):
    monkeypatch.setenv(f"OBJVID_DIFFUSION_{name}", value)
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert message in err and f"OBJVID_DIFFUSION_{name}" in err  # click names the variable


def test_convert_is_delegated(capsys):
    assert cli.main(["convert"]) == 2
    assert "missing required flags" in capsys.readouterr().err
    assert cli.main(["convert", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--tokenizer" in out and "OBJVID_DIFFUSION_CONVERT_TOKENIZER" in out


def test_triton_parameters_to_settings():
    settings = settings_from_parameters(
        {
            "weights_dir": "/w",
            "offload_vae": "true",
            "offload_transformer": "0",
            "cfg_batch": "yes",
            "dtype": "",
        },
        "cuda:1",
    )
    assert settings == ModelSettings(weights_dir="/w", device="cuda:1", offload=("vae",), cfg_batch=True)
    with pytest.raises(ValueError, match="unknown model parameter"):
        settings_from_parameters({"weight_dir": "/w"}, "cpu")
    with pytest.raises(ValueError, match="offload_vae must be true or false"):
        settings_from_parameters({"offload_vae": "sometimes"}, "cpu")


def test_serve_subprocess_streams_and_stops_on_sigterm(tmp_path):
    http, grpc, metrics = free_ports(3)
    env = dict(os.environ, OBJVID_DIFFUSION_GRPC_PORT=str(grpc), OBJVID_DIFFUSION_LOG_LEVEL="info")
    env.pop("LD_LIBRARY_PATH", None)  # the CLI must set it up itself
    log_path = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "objvid.diffusion", "serve", "--models", "preview",
           "--http-port", str(http), "--metrics-port", str(metrics)]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=pathlib.Path(__file__).parent
        )
    try:
        url = f"127.0.0.1:{grpc}"
        client = grpcclient.InferenceServerClient(url)
        deadline = time.monotonic() + 90
        while True:
            try:
                if client.is_model_ready("preview"):
                    break
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.5)
        reply = generate(url, "preview", *chunk(t=3))
        assert reply.error is None and reply.video.shape == (3, 32, 48, 3) and reply.progress[-1].preview
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log_path.read_text()
    assert "NOT GEN3C" in text and "event=triton_stopped" in text
    assert "Traceback" not in text


def test_serve_token_needs_the_insecure_flag(capsys):
    assert cli.main(["serve", "--token", "t"]) == 2
    assert "--allow-insecure-token" in capsys.readouterr().err


def test_pytriton_token_guards_inference_but_not_health():
    from objvid.diffusion.pytriton_server import ACCESS_HEADERS, ServerConfig, start_server
    from objvid.diffusion.registry import load_model

    http, grpc_port, metrics = free_ports(3)
    config = ServerConfig(http_port=http, grpc_port=grpc_port, metrics_port=None, token="diff-secret",
                          allow_insecure_token=True)  # fmt: skip
    triton = start_server([load_model("preview")], config)
    try:
        url = f"127.0.0.1:{grpc_port}"
        client = grpcclient.InferenceServerClient(url)
        assert client.is_server_live() and client.is_model_ready("preview")  # health: open
        errors: queue.Queue = queue.Queue()
        client.start_stream(callback=lambda result, error: errors.put(error))
        try:  # refused when the stream opens (the error may beat the request)
            client.async_stream_infer("preview", [grpcclient.InferInput("FIRST_FRAME", [1, 1, 3], "UINT8")])
        except InferenceServerException:
            pass
        denial = str(errors.get(timeout=30))
        client.stop_stream()
        assert "protocol is restricted" in denial and ACCESS_HEADERS["grpc"] in denial, denial
        allowed = generate(url, "preview", *chunk(t=2), headers={ACCESS_HEADERS["grpc"]: "diff-secret"})
        assert allowed.error is None and allowed.video.shape == (2, 32, 48, 3)
    finally:
        triton.stop()
