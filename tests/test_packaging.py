"""Building the distribution prints no setuptools warnings about this project's configuration
(license metadata, undeclared packages), and the wheel carries the Triton model repository."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_build_emits_no_project_warnings(tmp_path):
    # sdist, then the wheel from the sdist (what `pip install` of a release does); -x: setuptools is
    # already installed here, `wheel` (a build requirement for old setuptools) need not be.
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "-x", "--outdir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    bad = [
        line
        for line in log.splitlines()
        if any(k in line for k in ("SetuptoolsDeprecationWarning", "absent from the `packages`", "license"))
        and "warn" in line.lower()
    ]
    assert not bad, "\n".join(bad)
    (wheel,) = tmp_path.glob("objvid-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for model in ("gen3c", "preview"):
        assert f"objvid/diffusion/model_repository/{model}/config.pbtxt" in names
        assert f"objvid/diffusion/model_repository/{model}/1/model.py" in names
    assert any(n.startswith("objvid/v1/") and n.endswith(".proto") for n in names)
