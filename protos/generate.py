"""Regenerate the Python code of the objvid.v1 schema with the pinned grpcio-tools.

Usage: python protos/generate.py [OUT_DIR]   (default: protos/, next to the .proto files)
The generated *_pb2*.py / *.pyi files are committed; tests/test_schema.py checks that regenerating them
changes nothing, so never edit them by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def generate(out_dir: Path = ROOT) -> list[Path]:
    """Run protoc on protos/objvid/v1/*.proto into out_dir; returns the generated files."""
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "objvid" / "v1").glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    args = ["protoc", f"-I{ROOT}", f"-I{include}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}"]
    args += [f"--pyi_out={out_dir}", *protos]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    return sorted((out_dir / "objvid" / "v1").glob("*_pb2*.py*"))


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT):
        print(path)
