#!/bin/sh
# Build the objvid wheel inside an image build (first stage of every Dockerfile here).
# Generates the protobuf/gRPC modules first when the checkout does not carry them.
# Usage: build-wheel.sh SRC_DIR WHEEL_DIR
set -eu
src="$1"
out="$2"
cd "$src"
if ! ls protos/objvid/v1/*_pb2.py >/dev/null 2>&1; then
  echo "event=generate_protos dir=protos/objvid/v1"
  python -m pip install --no-cache-dir "grpcio-tools==1.81.1"
  python -m grpc_tools.protoc -I protos \
    --python_out=protos --grpc_python_out=protos --pyi_out=protos \
    protos/objvid/v1/*.proto
fi
python -m pip wheel --no-cache-dir --no-deps --wheel-dir "$out" .
ls "$out"/objvid-*.whl
