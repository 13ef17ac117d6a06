"""The process of one rank of a GEN3C worker group (started by ``group.py`` with the ``spawn`` method).

Each worker joins the process group (NCCL on CUDA, gloo on CPU; rendezvous through a file store in a fresh
temporary directory, so no port is needed), loads GEN3C on its device as a :class:`ParallelGen3cModel`,
reports ``ready`` and then serves jobs from its own inbox until it receives ``None`` or its parent process is
gone. Messages on the shared outbox (a ``torch.multiprocessing`` queue: tensors travel through shared memory):

  ("ready", rank, info) | ("failed", rank, kind, message)              start-up
  ("progress", job, Progress)                                         rank 0 only
  ("done", job, video (T, H, W, 3) uint8, latent (1, 16, T', h, w))   rank 0 only
  ("cancelled", job)                                                  rank 0 only
  ("error", job, rank, kind, message)                                 any rank; the group is then restarted
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import warnings

from objvid.diffusion.base import ChunkInputs

log = logging.getLogger("objvid.diffusion.parallel")


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to load its rank (picklable): the rank devices and the rendezvous, plus the
    loading fields of :class:`~objvid.diffusion.registry.ModelSettings` under the same names.

    devices: one torch device per rank ("cuda:0", ... or "cpu" repeated); dtype: "auto" or a torch dtype name;
    cfg_parallel: "auto", "1" or "2"; cp_mode: "auto", "ulysses" or "ring"; store_dir: rendezvous directory;
    compile, gelu_epilogue: "auto", "true" or "false"; attention_backend, compile_cache and fp8 as
    ``ModelSettings``.
    """

    weights_dir: str
    devices: tuple[str, ...]
    store_dir: str
    dtype: str = "auto"
    offload: tuple[str, ...] = ()
    cfg_batch: bool = False
    attention_backend: str = "auto"
    compile: str = "auto"
    compile_cache: str | None = None
    fp8: bool = False
    gelu_epilogue: str = "auto"
    cfg_parallel: str = "auto"
    cp_mode: str = "auto"
    log_level: int = logging.WARNING

    @property
    def world_size(self) -> int:
        return len(self.devices)


def load_rank(rank: int, spec: WorkerSpec):
    """Join the process group and load GEN3C for ``rank`` -> (ParallelGen3cModel, info dict)."""
    import torch
    import torch.distributed as dist

    from objvid.diffusion.parallel import plan
    from objvid.diffusion.parallel.model import ParallelGen3cModel
    from objvid.diffusion.registry import gen3c_load_options

    device = torch.device(spec.devices[rank])
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:  # share the cores instead of every rank using all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // spec.world_size))
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        init_method=f"file://{os.path.join(spec.store_dir, 'rendezvous')}",
        rank=rank,
        world_size=spec.world_size,
        device_id=device if device.type == "cuda" else None,
    )
    dtype = None
    if spec.dtype != "auto":
        dtype = getattr(torch, spec.dtype)
    model = ParallelGen3cModel.from_pretrained(
        spec.weights_dir, device=device, dtype=dtype, load_text_encoder=rank == 0, **gen3c_load_options(spec)
    )
    heads = int(model.net.transformer.config.num_attention_heads)
    layout = plan.choose_layout(spec.world_size, heads, spec.cfg_parallel, spec.cp_mode)
    model.attach(layout, plan.build_mesh(layout, device.type))
    info = {
        "layout": layout,
        "config": model.config,
        "max_latent_size": model.net.max_latent_size,
        "device": str(device),
    }
    return model, info


def worker_main(rank: int, spec: WorkerSpec, inbox, outbox, cancel) -> None:
    """Entry point of one worker process (see the module docstring for the protocol)."""
    logging.basicConfig(
        level=spec.log_level, format=f"%(asctime)s %(levelname)s rank{rank} %(name)s %(message)s"
    )
    warnings.filterwarnings("ignore", message=".*all_gather_tensor.* is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*enable_parallelism.*experimental", category=UserWarning)
    parent = os.getppid()
    try:
        model, info = load_rank(rank, spec)
    except BaseException as exc:  # noqa: BLE001 - reported to the supervisor, which fails the load
        outbox.put(("failed", rank, type(exc).__name__, str(exc)))
        return
    outbox.put(("ready", rank, info))
    try:
        _serve(rank, model, inbox, outbox, cancel, parent)
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def _serve(rank: int, model, inbox, outbox, cancel, parent: int) -> None:
    import torch

    from objvid.diffusion.parallel.model import ChunkCancelled

    model.cancelled = cancel.is_set
    while True:
        try:
            job = inbox.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:  # the supervisor is gone: do not linger holding a GPU
                return
            continue
        if job is None:
            return
        job_id, first, renders, masks, options = job
        chunk = ChunkInputs(first.numpy(), renders.numpy(), masks.numpy())
        progress = (lambda event, job=job_id: outbox.put(("progress", job, event))) if rank == 0 else None
        try:
            video = model.generate(chunk, options, progress)
            if rank == 0:
                outbox.put(("done", job_id, torch.from_numpy(video), model.last_latent))
        except ChunkCancelled:
            if rank == 0:
                outbox.put(("cancelled", job_id))
        except BaseException as exc:  # noqa: BLE001 - the supervisor fails the request and restarts the group
            log.exception("event=worker_error rank=%d job=%d", rank, job_id)
            outbox.put(("error", job_id, rank, type(exc).__name__, str(exc)))
        del job, first, renders, masks, chunk
