"""Independent restatement of upstream GEN3C's ``Cache3D_BufferSelector.render_cache`` selection
(nv-tlabs/GEN3C main, ``cache_3d.py``), written from the reference text, for tests only.

Works on the full rendered tensors as upstream does (not on coverage counts like
``objvid.cache.multiview``): score = sum of each source's masks over all frames and pixels, keep the k best
(ties: lower index first; upstream's ``topk`` leaves ties unspecified), then per frame the first kept
source whose mean mask is >= 0.9 is the only one left, else all kept ones; dropped slots become
pixels -1 and mask 0.
"""

from __future__ import annotations

import torch


def buffer_selector_reference(pixels: torch.Tensor, masks: torch.Tensor, k: int = 2, threshold: float = 0.9):
    """pixels (T,N,3,H,W) in [-1,1], masks (T,N,1,H,W) {0,1} float ->
    (pixels (T,k',3,H,W), masks (T,k',1,H,W), kept source indices, per-frame active slot lists)."""
    T, N = masks.shape[:2]
    if N <= k:
        kept = list(range(N))
    else:
        score = {n: float(masks[:, n].double().sum()) for n in range(N)}
        kept = sorted(range(N), key=lambda n: (-score[n], n))[:k]
    px = pixels[:, kept].clone()
    mk = masks[:, kept].clone()
    active = []
    for t in range(T):
        full = [j for j in range(len(kept)) if float(mk[t, j].double().mean()) >= threshold]
        keep = [full[0]] if full else list(range(len(kept)))
        active.append(keep)
        for j in range(len(kept)):
            if j not in keep:
                px[t, j] = -1.0
                mk[t, j] = 0.0
    return px, mk, kept, active
