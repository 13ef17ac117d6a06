#!/usr/bin/env bash
# Second GPU call (issues 15 and 18): the CUDA tests after the z-buffer launch change, the video cache's
# peak memory, and the chunk data path with a run-to-run baseline for the gen3c and zbuffer splats.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD/bench/_path:/tmp/site PYTHONUNBUFFERED=1
O=${OUT:-bench/results}; mkdir -p "$O"
timeout 120 python -m pytest -q -p no:cacheprovider tests/test_cuda_paths.py > "$O/cuda_tests.log" 2>&1
timeout 90 python bench/dynamic_cache_bench.py --device cuda --out "$O/dynamic_cache_h200.json" > "$O/dynamic_cache.log" 2>&1
for s in gen3c zbuffer; do
  timeout 60 python bench/chunk_data.py --device cuda --splat $s --out "$O/chunk_data_$s.json" > "$O/chunk_data_$s.log" 2>&1
done
for f in cuda_tests dynamic_cache chunk_data_gen3c chunk_data_zbuffer; do echo "== $f"; tail -n 12 "$O/$f.log"; done
