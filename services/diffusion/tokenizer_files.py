"""Which TorchScript files of a Cosmos tokenizer directory ``convert`` reads, and their agreement check.

The Hugging Face repo ``nvidia/Cosmos-Tokenize1-CV8x8x8-720p`` ships ``encoder.jit``, ``decoder.jit`` and
``autoencoder.jit``. Upstream GEN3C loads ``encoder.jit`` + ``decoder.jit`` (``JITVAE``), so they win when
present. When ``autoencoder.jit`` is there as well, every tensor it shares with them must be equal: a
directory mixing two tokenizer versions is refused, naming the first differing tensor. A directory with only
``autoencoder.jit`` is read from it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

AUTOENCODER, ENCODER, DECODER = "autoencoder.jit", "encoder.jit", "decoder.jit"


def _load(path: Path, error: type[Exception]) -> dict[str, torch.Tensor]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still the format
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise error(f"--tokenizer {path}: cannot load TorchScript ({exc})") from exc
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _merge(into: dict[str, torch.Tensor], part: dict[str, torch.Tensor], what: str, error) -> None:
    for k, v in part.items():
        if k in into and (into[k].shape != v.shape or not torch.equal(into[k], v)):
            raise error(f"--tokenizer: {k} differs between {what}")
        into[k] = v


def read_tokenizer_state(
    path: Path, error: type[Exception] = ValueError
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(upstream-named tensors, names of the .jit files read) of a tokenizer directory; ``error`` is raised
    with a message naming the file / tensor (missing files, unreadable TorchScript, disagreeing files)."""
    auto, enc, dec = path / AUTOENCODER, path / ENCODER, path / DECODER
    if enc.is_file() and dec.is_file():
        state: dict[str, torch.Tensor] = {}
        _merge(state, _load(enc, error), f"{ENCODER} and {DECODER}", error)
        _merge(state, _load(dec, error), f"{ENCODER} and {DECODER}", error)
        files = [ENCODER, DECODER]
        if auto.is_file():
            whole = _load(auto, error)
            _merge(dict(state), whole, f"{AUTOENCODER} and {ENCODER}/{DECODER}", error)
            missing = sorted(set(state) - set(whole))
            if missing:
                raise error(f"--tokenizer: {missing[0]} is in {ENCODER}/{DECODER} but not in {AUTOENCODER}")
            files.append(AUTOENCODER + " (checked)")
        return state, files
    if auto.is_file():
        return _load(auto, error), [AUTOENCODER]
    raise error(f"--tokenizer {path}: needs autoencoder.jit, or encoder.jit and decoder.jit")
