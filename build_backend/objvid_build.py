"""objvid's PEP 517 build backend: setuptools' ``build_meta``, every hook unchanged, minus one notice.

Why: objvid maps its import names onto several folders (``package-dir`` in pyproject.toml: ``objvid`` ->
``protos/objvid``, ``objvid.cache`` -> ``services/cache``, ...). For such a layout setuptools' editable
install uses a meta path finder and, since setuptools 64, ends every ``pip install -e .`` with an
``InformationOnly`` warning, "Editable installation. Please be careful with folders in your working
directory with the same name as your package ...", which pip >= 25 prints as a ``BuildBackendWarning``.
The other editable modes warn too (``editable_mode=strict``: "Strict editable installation performed
using the auxiliary directory"; ``compat``: a deprecation warning, and its ``.pth`` would point at the
repository root, where ``objvid`` is not). The notice does not apply here: the repository has no folder
named ``objvid`` at its root (tests/test_packaging.py checks it), and that notice alone is silenced; any
other warning of any hook still reaches pip.
"""

from __future__ import annotations

import warnings

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403 - every hook of setuptools' backend, unchanged
from setuptools.warnings import InformationOnly

#: The notice's summary line (setuptools.command.editable_wheel, meta path finder and link tree modes).
EDITABLE_NOTICE = r"Editable installation\."


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """setuptools' ``build_editable`` without its "Editable installation." notice (see module doc)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=EDITABLE_NOTICE, category=InformationOnly)
        return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
