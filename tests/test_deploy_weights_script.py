"""The weights Job's script (deploy/k8s/base/fetch-weights.sh), run for real with bash on a temporary
volume. Downloads need the internet and conversion needs the real multi-GB checkpoints, so the two
external commands are replaced by small recording executables (OBJVID_HF_BIN / OBJVID_CONVERT_BIN);
the real CLIs' flags are checked against the script separately.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "deploy" / "k8s" / "base" / "fetch-weights.sh"

# Writes each requested file (or one placeholder for a whole-repo download) into --local-dir.
HF_STUB = r"""#!/usr/bin/env bash
set -eu
echo "hf $*" >> "$CALLS"
[ "$1" = download ] || { echo "unexpected command $1" >&2; exit 2; }
repo="$2"; shift 2
files=(); dest=""
while [ $# -gt 0 ]; do
  case "$1" in
    --local-dir) dest="$2"; shift 2 ;;
    --revision) shift 2 ;;
    --*) echo "unexpected flag $1" >&2; exit 2 ;;
    *) files+=("$1"); shift ;;
  esac
done
[ -n "$dest" ] || { echo "no --local-dir" >&2; exit 2; }
mkdir -p "$dest"
if [ "${#files[@]}" -eq 0 ]; then files=(whole-repo.bin); fi
for f in "${files[@]}"; do echo "$repo/$f" > "$dest/$f"; done
"""

# Mirrors `objvid-diffusion convert`: checks its inputs exist and writes --out.
CONVERT_STUB = r"""#!/usr/bin/env bash
set -eu
echo "convert $*" >> "$CALLS"
[ "${FAIL_CONVERT:-0}" = 1 ] && { echo "conversion failed" >&2; exit 3; }
[ "$1" = convert ] || exit 2; shift
while [ $# -gt 0 ]; do
  case "$1" in
    --gen3c) [ -f "$2" ] || exit 4; shift 2 ;;
    --tokenizer|--text-encoder) [ -d "$2" ] || exit 4; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --dtype) case "$2" in bf16|fp32|keep) shift 2 ;; *) exit 2 ;; esac ;;
    --allow-pickle) shift ;;
    *) exit 2 ;;
  esac
done
mkdir -p "$out" && echo '{}' > "$out/objvid_gen3c.json"
"""


@pytest.fixture
def volume(tmp_path: Path) -> dict:
    if shutil.which("bash") is None:
        pytest.skip("bash not found")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("hf", HF_STUB), ("convert", CONVERT_STUB)):
        path = bin_dir / name
        path.write_text(body)
        path.chmod(0o755)
    root = tmp_path / "models"
    root.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CALLS": str(tmp_path / "calls.log"),
        "OBJVID_WEIGHTS_ROOT": str(root),
        "OBJVID_HF_BIN": str(bin_dir / "hf"),
        "OBJVID_CONVERT_BIN": str(bin_dir / "convert"),
    }
    return {"root": root, "env": env, "calls": tmp_path / "calls.log"}


def run_script(volume: dict, **extra: str) -> subprocess.CompletedProcess:
    env = {**volume["env"], **extra}
    return subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def calls(volume: dict) -> list[str]:
    path = volume["calls"]
    return path.read_text().splitlines() if path.exists() else []


def test_all_fetches_moge_and_converts_gen3c(volume):
    proc = run_script(volume, OBJVID_WEIGHTS_SET="all")
    assert proc.returncode == 0, proc.stderr
    root = volume["root"]
    assert (root / "moge-vitl" / "model.pt").read_text().strip() == "Ruicheng/moge-vitl/model.pt"
    assert (root / "moge-vitl" / ".objvid-ready").exists()
    assert (root / "gen3c" / "objvid_gen3c.json").exists()
    assert (root / "gen3c" / ".objvid-ready").exists()
    assert not (root / "gen3c.partial").exists()
    assert not (root / "raw").exists(), "raw downloads are removed unless OBJVID_WEIGHTS_KEEP_RAW=1"
    log = calls(volume)
    repos = [line.split()[2] for line in log if line.startswith("hf ")]
    assert repos == [
        "Ruicheng/moge-vitl",
        "nvidia/GEN3C-Cosmos-7B",
        "nvidia/Cosmos-Tokenize1-CV8x8x8-720p",
        "google-t5/t5-11b",
    ]
    (convert,) = [shlex.split(line) for line in log if line.startswith("convert ")]
    args = dict(zip(convert[2::2], convert[3::2], strict=True))
    assert args["--gen3c"] == f"{root}/raw/GEN3C-Cosmos-7B/model.pt"
    assert args["--tokenizer"] == f"{root}/raw/Cosmos-Tokenize1-CV8x8x8-720p"
    assert args["--text-encoder"] == f"{root}/raw/t5-11b"
    assert args["--out"] == f"{root}/gen3c.partial"
    assert args["--dtype"] == "bf16"
    assert "--allow-pickle" not in convert
    assert "event=done set=all" in proc.stdout


def test_second_run_only_checks(volume):
    assert run_script(volume, OBJVID_WEIGHTS_SET="all").returncode == 0
    before = len(calls(volume))
    proc = run_script(volume, OBJVID_WEIGHTS_SET="all")
    assert proc.returncode == 0, proc.stderr
    assert len(calls(volume)) == before, "ready directories must not be downloaded again"
    assert proc.stdout.count("reason=ready") == 2


def test_depth_set_fetches_only_moge(volume):
    proc = run_script(volume, OBJVID_WEIGHTS_SET="depth")
    assert proc.returncode == 0, proc.stderr
    assert (volume["root"] / "moge-vitl" / ".objvid-ready").exists()
    assert not (volume["root"] / "gen3c").exists()
    assert all("moge" in line for line in calls(volume))


def test_keep_raw_keeps_the_original_checkpoints(volume):
    proc = run_script(volume, OBJVID_WEIGHTS_SET="gen3c", OBJVID_WEIGHTS_KEEP_RAW="1")
    assert proc.returncode == 0, proc.stderr
    assert (volume["root"] / "raw" / "t5-11b" / "pytorch_model.bin").exists()


def test_conversion_options_reach_the_converter(volume):
    proc = run_script(
        volume,
        OBJVID_WEIGHTS_SET="gen3c",
        OBJVID_GEN3C_DTYPE="keep",
        OBJVID_CONVERT_ALLOW_PICKLE="1",
        OBJVID_T5_FILES="config.json spiece.model model.safetensors",
    )
    assert proc.returncode == 0, proc.stderr
    (convert,) = [shlex.split(line) for line in calls(volume) if line.startswith("convert ")]
    assert convert[convert.index("--dtype") + 1] == "keep" and "--allow-pickle" in convert
    (t5,) = [line for line in calls(volume) if "google-t5/t5-11b" in line]
    assert "config.json spiece.model model.safetensors" in t5


def test_revision_is_passed_to_every_download(volume):
    proc = run_script(volume, OBJVID_WEIGHTS_SET="all", OBJVID_HF_REVISION="abc123")
    assert proc.returncode == 0, proc.stderr
    downloads = [line for line in calls(volume) if line.startswith("hf ")]
    assert downloads and all("--revision abc123" in line for line in downloads)


def test_failed_conversion_leaves_no_ready_marker_and_a_rerun_recovers(volume):
    proc = run_script(volume, OBJVID_WEIGHTS_SET="gen3c", FAIL_CONVERT="1")
    assert proc.returncode != 0
    assert not (volume["root"] / "gen3c" / ".objvid-ready").exists()
    proc = run_script(volume, OBJVID_WEIGHTS_SET="gen3c")
    assert proc.returncode == 0, proc.stderr
    assert (volume["root"] / "gen3c" / ".objvid-ready").exists()


def test_unknown_set_is_rejected_naming_the_field(volume):
    proc = run_script(volume, OBJVID_WEIGHTS_SET="everything")
    assert proc.returncode != 0
    assert "field=OBJVID_WEIGHTS_SET" in proc.stderr and "value=everything" in proc.stderr
    assert calls(volume) == []


def test_missing_volume_is_reported(volume, tmp_path):
    proc = run_script(volume, OBJVID_WEIGHTS_ROOT=str(tmp_path / "absent"))
    assert proc.returncode != 0
    assert "reason=missing_root" in proc.stderr


def test_script_matches_the_real_cli_flags():
    """The flags the script passes exist in the installed `hf` and `objvid-diffusion convert`."""
    bin_dir = Path(sys.executable).parent
    hf = bin_dir / "hf"
    if not hf.exists():
        pytest.skip("hf CLI (huggingface_hub) not installed in this environment")
    help_text = subprocess.run(
        [str(hf), "download", "--help"], capture_output=True, text=True, timeout=120, check=False
    ).stdout
    for flag in ("--local-dir", "--revision"):
        assert flag in help_text, f"hf download has no {flag}"
    convert = bin_dir / "objvid-diffusion"
    proc = subprocess.run(
        [str(convert), "convert", "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"objvid-diffusion convert --help failed: {proc.stderr.strip()[-300:]}"
    for flag in ("--gen3c", "--tokenizer", "--text-encoder", "--out", "--dtype", "--allow-pickle"):
        assert flag in proc.stdout, f"objvid-diffusion convert has no {flag}"
