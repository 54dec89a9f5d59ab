"""Host compatibility: the one place that makes FastReID 1.4.0 run on Python 3.11+, torch 2.x,
numpy 2.x and the CPU (docs/design.md §3, §9), without editing FastReID's installed files.

Applied once, on ``import inclr_fastreid``. Each fix is a small function named after the trap it
removes, in the module of the part of FastReID it touches (``imports``, ``data``, ``engine``,
``evaluation``); CUDA code paths stay FastReID's own. ``applied_fixes()`` lists what was done.
Only FastReID is patched here: the add-on's own modules fix themselves.
"""
from __future__ import annotations

from typing import List

from .data import UnreadableImageError, _dataloader_cpu, _dataset_errors, _prefetch_errors
from .engine import (_amp, _checkpointer, _contiguous_zero_grad, _ddp_cpu, _launch_cpu, _metric_printer,
                     _output_dir, _train_loop_log)
from .evaluation import _evaluator, _no_sys_exit, _rerank
from .imports import _collections_aliases, _torch_six

__all__ = ["apply_host_compat", "applied_fixes", "UnreadableImageError"]

_APPLIED: List[str] = []
_INSTALL_HINT = (
    "inclr-fastreid needs FastReID. Install it without its torch==1.13.1 pin, then its runtime needs:\n"
    "  pip install --no-deps fastreid==1.4.0\n"
    "  pip install faiss-cpu 'opencv-python-headless<5' scikit-learn 'tabulate<0.10' 'termcolor<3' "
    "tensorboard yacs\n"
    "or put an upstream FastReID checkout on PYTHONPATH (see README, 'Install')."
)


_IMPORT_FIXES = [_collections_aliases, _torch_six]
_RUNTIME_FIXES = [_dataloader_cpu, _prefetch_errors, _evaluator, _no_sys_exit, _output_dir, _ddp_cpu, _launch_cpu, _amp,
                  _checkpointer, _dataset_errors, _contiguous_zero_grad,
                  _metric_printer, _rerank, _train_loop_log]


def applied_fixes() -> List[str]:
    """Names of the compatibility fixes applied in this process."""
    return list(_APPLIED)


def apply_host_compat() -> None:
    """Apply every fix once; idempotent. Raises ImportError with install steps if FastReID is absent."""
    if _APPLIED:
        return
    for fix in _IMPORT_FIXES:
        fix()
        _APPLIED.append(fix._compat_name)  # type: ignore[attr-defined]
    try:
        import warnings

        import fastreid  # noqa: F401
        import fastreid.data  # noqa: F401
        import fastreid.engine  # noqa: F401

        with warnings.catch_warnings():  # FastReID warns that its Cython ranker is absent: ours replaces it
            warnings.filterwarnings("ignore", message="Cython .* evaluation")
            import fastreid.evaluation  # noqa: F401
            import fastreid.evaluation.rank  # noqa: F401
            import fastreid.evaluation.roc  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "fastreid":
            raise ImportError(_INSTALL_HINT) from e
        raise
    for fix in _RUNTIME_FIXES:
        fix()
        _APPLIED.append(fix._compat_name)  # type: ignore[attr-defined]
