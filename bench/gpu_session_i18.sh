#!/usr/bin/env bash
# Issue 18's GPU measurements in one device call (see docs/performance.md): carried wheels, then
# zbuffer launch sweep, per-frame transports, chunk data path, and a real 35-step GEN3C chunk (bf16).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD/bench/_path:/tmp/site PYTHONUNBUFFERED=1
O=${OUT:-bench/results}; mkdir -p "$O"
nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv > "$O/gpu.txt" 2>&1
timeout 80 python bench/zbuffer_tuning.py --rounds 9 --out "$O/zbuffer_tuning.json" > "$O/zbuffer_tuning.log" 2>&1
timeout 100 python bench/cache_load.py --spawn --device cuda --height 704 --width 1280 --outputs rgb,mask,depth \
  --clients 1,8 --procs --requests 60 --transports grpc,grpc-compact,shm,shm-compact \
  --out "$O/cache_load.json" > "$O/cache_load.log" 2>&1
timeout 50 python bench/chunk_data.py --device cuda --out "$O/chunk_data.json" > "$O/chunk_data.log" 2>&1
timeout 330 python bench/diffusion_chunk.py --steps 35 --variants bf16 --phases chunk \
  --out "$O/diffusion_chunk_35.json" > "$O/diffusion_chunk_35.log" 2>&1
for f in zbuffer_tuning cache_load chunk_data diffusion_chunk_35; do echo "== $f"; tail -n 16 "$O/$f.log"; done
