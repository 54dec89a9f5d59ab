"""Files a run writes and reads: atomic writes (a kill never leaves a truncated file that a resume
would read) and checkpoint loading that can never run code (``weights_only=True``)."""
from __future__ import annotations

import os
import pickle
import tempfile
from typing import IO, Any, Callable, Dict, List

import torch

from .errors import UserError


def _atomic_write(path: str, mode: str, write: Callable[[IO], None], suffix: str = "") -> None:
    """Write through ``write(f)`` to a temporary file beside ``path``, fsync, then rename into place."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: a kill never truncates."""
    _atomic_write(path, "wb", lambda f: torch.save(obj, f), suffix=".pth")


def atomic_write_text(path: str, text: str) -> None:
    """Write text to a temporary file beside ``path`` and rename it into place."""
    _atomic_write(path, "w", lambda f: f.write(text))


def atomic_savez(path: str, **arrays: Any) -> None:
    """``numpy.savez_compressed`` to a temporary file beside ``path``, then rename."""
    import numpy as np

    _atomic_write(path, "wb", lambda f: np.savez_compressed(f, **arrays), suffix=".npz")


class CheckpointLoadError(UserError, RuntimeError):
    """A checkpoint could not be read safely (missing, truncated, or needs arbitrary unpickling)."""


def safe_torch_load(path: str, mmap: bool = False):
    """``torch.load(weights_only=True)``: a model file cannot run code; refusals say why.
    ``mmap=True`` maps tensors from the file instead of reading them (to look at a checkpoint's extras)."""
    if not os.path.isfile(path):
        raise CheckpointLoadError(f"Checkpoint not found: {path!r}. Check MODEL.WEIGHTS / the path given.")
    try:
        return torch.load(path, map_location=torch.device("cpu"), weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise CheckpointLoadError(
            f"Refusing to load {path!r}: it needs arbitrary unpickling, which could run code "
            f"(torch.load weights_only=True said: {str(e).splitlines()[0]}). Re-save it as a plain "
            "state dict of tensors and Python types, or load it yourself if you trust its source."
        ) from e
    except (EOFError, RuntimeError) as e:
        raise CheckpointLoadError(
            f"Checkpoint {path!r} is truncated or corrupt ({type(e).__name__}: {e}). "
            "Delete it (and fix OUTPUT_DIR/last_checkpoint) or point to another file."
        ) from e


class CheckpointMismatchError(CheckpointLoadError, ValueError):
    """A checkpoint's keys or shapes do not fit the network; the message lists them."""


def check_state_dict(expected: Dict[str, Any], state: Dict[str, Any], source: str, *,
                     ignore: Callable[[str], bool] = lambda key: False, hint: str = "") -> None:
    """Raise :class:`CheckpointMismatchError` listing the keys of ``state`` that are missing,
    unexpected or mis-shaped for a network whose state dict is ``expected`` ("module." prefixes
    ignored; keys where ``ignore(key)`` may differ). FastReID only logs these and goes on with a
    partly random network."""
    def strip(d: Dict[str, Any]) -> Dict[str, Any]:
        return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in d.items()}

    expected, state = strip(expected), strip(state)
    missing = sorted(k for k in expected.keys() - state.keys() if not ignore(k))
    unexpected = sorted(k for k in state.keys() - expected.keys() if not ignore(k))
    shapes = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs network {tuple(expected[k].shape)}"
                    for k in expected.keys() & state.keys()
                    if not ignore(k) and tuple(state[k].shape) != tuple(expected[k].shape))
    if not (missing or unexpected or shapes):
        return

    def fmt(items: List[str]) -> str:
        return ", ".join(items[:12]) + (f" ... (+{len(items) - 12} more)" if len(items) > 12 else "")

    raise CheckpointMismatchError(
        f"{source} does not match the network built from the config."
        + (f"\n  missing: {fmt(missing)}" if missing else "")
        + (f"\n  unexpected: {fmt(unexpected)}" if unexpected else "")
        + (f"\n  wrong shape: {fmt(shapes)}" if shapes else "")
        + (f"\n{hint}" if hint else "")
    )
