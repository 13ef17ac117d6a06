"""Import ``objvid`` from this checkout without installing it (bench machines running the bare tree).

``PYTHONPATH=bench/_path`` makes every Python process (spawned servers too) map the packages of
pyproject.toml's ``package-dir`` table to their folders, as an editable install would.
"""

import importlib.abc
import importlib.util
import sys
import tomllib
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
with open(_ROOT / "pyproject.toml", "rb") as _f:
    _DIRS = {k: _ROOT / v for k, v in tomllib.load(_f)["tool"]["setuptools"]["package-dir"].items()}


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        folder = _DIRS.get(name)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(
            name, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )


sys.meta_path.insert(0, _Finder())
