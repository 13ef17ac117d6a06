#!/usr/bin/env bash
# Third H200 session of issue 18: FlashAttention-4 (flash-attn-4, CuTe DSL) in the GEN3C DiT.
# Its compiler library (nvidia-cutlass-dsl-libs-cu13, 92 MB as a wheel) is over one call's 64 MiB, so it
# travels as an xz tarball in two halves (.gpu_a, .gpu_b; see docs/performance.md) over calls a and b.
#   a: install the small wheels, keep half a (a fresh machine; the next call must follow within its idle release)
#   b: join the halves; attention kernels incl. FA4 tiles; where a DiT forward spends its time; a 3-step chunk
#      per variant side by side (bf16 = cuDNN, fa4, fa4-cfgbatch); the CUDA tests of the GEN3C paths
#   c VARIANT: the VAE with cuDNN's heuristics vs cudnn.benchmark; a whole 35-step chunk of VARIANT (fa4)
#   e: the CUDA tests of the FA4 paths (FA4 op, FA4 in compiled blocks, FP8 + FA4)
#   d: compile cost at restart (first DiT forward in a fresh process) with FA4, cold and with the disk caches
# Fourth session (issue 18, the last seconds):
#   f: 3-step chunks side by side: fa4-prev (previous default), fa4 (one-frame condition encode), fa4-tuned
#      (+ Inductor kernel tuning), fa4-tuned-cfgbatch, fa4-cfgbatch
#   g [VARIANT]: a whole 35-step chunk of VARIANT (default fa4-gelu: the new default), then the CUDA tests of the GEN3C paths
#   h: 3-step chunks: fa4-tuned vs fa4-autotune (Triton GEMM templates + fused GELU epilogue)
#   i: 3-step chunks: fa4 vs fa4-gelu (cuBLASLt GELU epilogue), then the CUDA test of that GEMM
#   j: every CUDA test (tests/test_cuda_paths.py) on the new defaults
# Fifth session (issue 18, the whole chunk measured):
#   k VARIANT: a whole 35-step chunk of VARIANT only, saved as diffusion_chunk_i18e_35_VARIANT.json
# Preparing the carried folders here (git-ignored through .git/info/exclude: /.whl/ /.gpu_a/ /.gpu_b/), with
# P="--no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
#    --platform manylinux2014_x86_64 --platform any" (grpcio and protobuf ship manylinux2014 wheels only):
#   pip download $P -d .whl diffusers==0.42.1 grpcio==1.81.1 grpcio-health-checking==1.81.1 \
#     grpcio-reflection==1.81.1 protobuf==6.33.5 flash-attn-4==4.0.0b36 quack-kernels==0.6.5 \
#     nvidia-cutlass-dsl==4.8.1 nvidia-cutlass-dsl-libs-base==4.8.1 nvidia-cutlass-dsl-libs-core==4.8.1 \
#     apache-tvm-ffi==0.1.15.post2 torch-c-dlpack-ext==0.1.5
#   pip download $P -d /tmp/cu13 nvidia-cutlass-dsl-libs-cu13==4.8.1
#   mkdir /tmp/x && (cd /tmp/x && unzip -q /tmp/cu13/*.whl && tar cf - . | xz -9 -T2 > /tmp/cu13.tar.xz)
#   split -b 31M /tmp/cu13.tar.xz /tmp/cu13.part. && mkdir -p .gpu_a .gpu_b
#   mv /tmp/cu13.part.aa .gpu_a/ && mv /tmp/cu13.part.ab .gpu_b/
# Calls: `a` with carry [.whl, .gpu_a], then `b`, `c`, `d` or `e` with carry [.gpu_b].
set -u
stage=${1:?stage a, b or c}
O=${OUT:-bench/results}; mkdir -p "$O"
export PYTHONPATH=$PWD/bench/_path:/tmp/site:/tmp/site/nvidia_cutlass_dsl/dsl_packages PYTHONUNBUFFERED=1
whole_chunk() {  # VARIANT NAME: a whole 35-step chunk of VARIANT -> $O/NAME.json, log $O/NAME.log, its tail
  timeout 560 python -W ignore bench/diffusion_chunk.py --steps 35 --variants "$1" --phases chunk \
    --out "$O/$2.json" > "$O/$2.log" 2>&1
  tail -n 12 "$O/$2.log"
}
join_fa4() {  # stages b and c: the second half (.gpu_b) joins the first, kept by stage a
  test -d /tmp/site || { echo "no /tmp/site: stage a ran on another machine"; exit 1; }
  test -d /tmp/site/nvidia_cutlass_dsl/cu13 || cat /tmp/stash/cu13.part.aa .gpu_b/cu13.part.ab | xz -d | tar x -C /tmp/site || exit 1
}
case $stage in
a)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  mkdir -p /tmp/stash && cp .gpu_a/* /tmp/stash/ && ls -la /tmp/stash
  nvidia-smi --query-gpu=name,power.limit,driver_version --format=csv
  ;;
b)
  join_fa4
  python -c "import flash_attn.cute, cutlass; print('fa4 import ok', cutlass.__version__)" 2>&1 | tail -3
  timeout 100 python -W ignore bench/attention_bench.py --fa4-tiles 128x176,128x192,128x160,192x128 \
    --out "$O/attention_b.json" > "$O/attention_b.log" 2>&1
  timeout 150 python -W ignore bench/dit_profile.py --variants fast-cudnn-compile,fast-fa4-compile \
    --out "$O/dit_profile.json" > "$O/dit_profile.log" 2>&1
  timeout 250 python -W ignore bench/diffusion_chunk.py --steps 3 --variants bf16,fa4,fa4-cfgbatch --phases chunk \
    --out "$O/diffusion_chunk_fa4_3.json" > "$O/chunk3.log" 2>&1
  timeout 60 python -m pytest -q -p no:cacheprovider -W ignore tests/test_cuda_paths.py -k "fa4 or cuda_defaults" > "$O/cuda_tests.log" 2>&1
  for f in attention_b dit_profile chunk3 cuda_tests; do echo "== $f"; tail -n 16 "$O/$f.log"; done
  ;;
c)
  join_fa4
  timeout 150 python -W ignore bench/vae_bench.py --out "$O/vae_bench.json" > "$O/vae_bench.log" 2>&1
  tail -n 12 "$O/vae_bench.log"
  whole_chunk "${2:-fa4}" diffusion_chunk_fa4_35
  ;;
d)
  join_fa4
  timeout 250 python -W ignore bench/diffusion_chunk.py --phases compile-cache --compile-modes cold,disk \
    --out "$O/compile_cache_fa4.json" > "$O/compile_cache.log" 2>&1
  tail -n 8 "$O/compile_cache.log"
  ;;
f)
  join_fa4
  timeout 560 python -W ignore bench/diffusion_chunk.py --steps 3 --phases chunk \
    --variants fa4-prev,fa4,fa4-tuned,fa4-tuned-cfgbatch,fa4-cfgbatch \
    --out "$O/diffusion_chunk_i18d_3.json" > "$O/chunk3.log" 2>&1
  tail -n 14 "$O/chunk3.log"
  ;;
g)
  join_fa4
  whole_chunk "${2:-fa4-gelu}" diffusion_chunk_i18d_35
  timeout 120 python -m pytest -q -p no:cacheprovider -W ignore tests/test_cuda_paths.py 2>&1 | tail -n 12
  ;;
h)
  join_fa4
  timeout 560 python -W ignore bench/diffusion_chunk.py --steps 3 --phases chunk --variants fa4-tuned,fa4-autotune \
    --out "$O/diffusion_chunk_i18d_autotune.json" > "$O/chunk3_autotune.log" 2>&1
  tail -n 30 "$O/chunk3_autotune.log"
  ;;
i)
  join_fa4
  timeout 60 python -m pytest -q -p no:cacheprovider -W ignore tests/test_cuda_paths.py -k gelu > "$O/cuda_tests.log" 2>&1
  timeout 400 python -W ignore bench/diffusion_chunk.py --steps 3 --phases chunk --variants fa4,fa4-gelu \
    --out "$O/diffusion_chunk_i18d_gelu.json" > "$O/chunk3_gelu.log" 2>&1
  for f in cuda_tests chunk3_gelu; do echo "== $f"; tail -n 8 "$O/$f.log"; done
  ;;
j)
  join_fa4
  timeout 200 python -m pytest -q -p no:cacheprovider -W ignore tests/test_cuda_paths.py 2>&1 | tail -n 15
  ;;
k)
  join_fa4
  whole_chunk "${2:?variant}" "diffusion_chunk_i18e_35_$2"
  ;;
e)
  join_fa4
  timeout 150 python -m pytest -q -p no:cacheprovider -W ignore tests/test_cuda_paths.py -k "fa4" 2>&1 | tail -n 15
  ;;
esac
