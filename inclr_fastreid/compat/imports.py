"""Import-time traps: these run before any ``fastreid.data`` / ``fastreid.evaluation`` import."""
from __future__ import annotations

import collections.abc
import sys
import types

import torch

from ._fix import fix as _fix


@_fix("collections ABC aliases (removed in Python 3.10)")
def _collections_aliases() -> None:
    for name in ("Mapping", "MutableMapping", "Sequence", "Iterable", "Callable"):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))


@_fix("torch._six (removed in torch 2.0)")
def _torch_six() -> None:
    if "torch._six" in sys.modules:
        return
    import importlib.util

    if importlib.util.find_spec("torch._six") is not None:  # pragma: no cover - torch < 2.0
        return
    six = types.ModuleType("torch._six")
    six.string_classes = (str, bytes)  # type: ignore[attr-defined]
    six.int_classes = int  # type: ignore[attr-defined]
    six.inf = float("inf")  # type: ignore[attr-defined]
    sys.modules["torch._six"] = six
    torch._six = six  # type: ignore[attr-defined]
