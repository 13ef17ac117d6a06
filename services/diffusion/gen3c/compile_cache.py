"""Where ``torch.compile`` keeps its compiled artefacts, so a restarted server skips most of the compile.

The first GEN3C forward after a start compiles the transformer block (Inductor + Triton): 16.4 s cold on an
H200, 6.4 s with the caches of an earlier run on disk (docs/performance.md, issue 18). Inductor's default
cache lives under ``/tmp/torchinductor_<user>``, which a container restart or a new pod loses. Pointing it
at a persistent directory (``objvid-diffusion serve --compile-cache DIR``, the Triton model parameter
``compile_cache``, a volume in Kubernetes) keeps it: ``DIR/inductor`` (FX graph cache, AOTAutograd cache,
autotuning results), ``DIR/triton`` (compiled GPU kernels) and ``DIR/fa4`` (FlashAttention-4's compiled CuTe
kernels, which it keeps only when asked to).

Both are torch's own caches, keyed on the graph, the torch / Triton versions and the GPU, so a stale entry
is never used for a different build; the directory can be shared by every rank of a multi-GPU group.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

INDUCTOR_ENV, TRITON_ENV = "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"
FA4_ENV, FA4_ENABLE_ENV = "FLASH_ATTENTION_CUTE_DSL_CACHE_DIR", "FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED"


def use_compile_cache(directory: str | os.PathLike, where: str = "compile_cache") -> dict[str, str]:
    """Point Inductor's, Triton's and FlashAttention-4's on-disk caches at ``directory`` (created if missing)
    for this process and the processes it starts; call before the first compile. Returns the environment it set.

    ValueError naming ``where`` when the directory cannot be created or written.
    """
    root = Path(os.path.expanduser(os.path.expandvars(str(directory)))).resolve()
    paths = {INDUCTOR_ENV: root / "inductor", TRITON_ENV: root / "triton", FA4_ENV: root / "fa4"}
    try:
        for path in paths.values():
            path.mkdir(parents=True, exist_ok=True)
            probe = path / f".objvid-write-check-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
    except OSError as err:
        raise ValueError(
            f"{where}: cannot use {str(root)!r} as the compile cache ({err.strerror or err})"
        ) from None
    env = {name: str(path) for name, path in paths.items()}
    env[FA4_ENABLE_ENV] = "1"
    os.environ.update(env)
    fa4_cache = sys.modules.get("flash_attn.cute.cache_utils")
    if fa4_cache is not None:  # imported already: it read the environment at import
        fa4_cache.CUTE_DSL_CACHE_ENABLED, fa4_cache.CUTE_DSL_CACHE_DIR = True, env[FA4_ENV]
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = True  # on by default in recent torch; the cache dir is what we move
    return env
