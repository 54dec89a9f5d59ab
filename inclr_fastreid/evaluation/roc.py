"""Vectorised ROC scores/labels: a drop-in for ``fastreid.evaluation.roc.evaluate_roc``.

Same outputs as FastReID's ``evaluate_roc_py``: after removing, per query, the gallery entries with
the same pid and camid, ``scores`` holds the distances of all (query, gallery) true matches (query
by query, each in ranked order) followed by those of all non-matches, and ``labels`` is 0 for the
matches and 1 for the non-matches (FastReID's convention: a larger distance means "different").
Unlike the CMC evaluation, queries without any valid match are kept. Ties in distance are ordered
by gallery index (stable sort), which only changes the order of equal scores.
"""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np
import torch

from .rank import DEFAULT_MAX_MEMORY_BYTES, _check_inputs, _chunk_rows, _ranked_chunk

__all__ = ["evaluate_roc", "evaluate_roc_py"]


def evaluate_roc_py(distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any, *,
                    max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """(scores, labels) for ``sklearn.metrics.roc_curve``, vectorised over chunks of queries.

    ``scores`` has the dtype of ``distmat``; ``labels`` is float64 like FastReID's Python code.
    The outputs are inherently num_query x num_gallery long (minus junk).
    """
    dist, qp, gp, qc, gc = _check_inputs(distmat, q_pids, g_pids, q_camids, g_camids)
    num_q, num_g = dist.shape
    device = dist.device
    qp_t, gp_t = torch.from_numpy(qp).to(device), torch.from_numpy(gp).to(device)
    qc_t, gc_t = torch.from_numpy(qc).to(device), torch.from_numpy(gc).to(device)
    pos, neg = [], []
    rows = _chunk_rows(num_g, max_memory_bytes)
    for start in range(0, num_q, rows):
        stop = min(num_q, start + rows)
        values, match, pos_row, pos_col, _ = _ranked_chunk(dist, start, stop, gp_t, gc_t,
                                                           qp_t, qc_t)
        # Row-major: query by query, each in ranked order (as FastReID).
        pos.append(values[pos_row, pos_col].cpu())
        neg.append(values[~match].cpu())          # a non-match is never junk
    pos_t, neg_t = torch.cat(pos), torch.cat(neg)
    scores = torch.cat([pos_t, neg_t]).numpy()
    labels = np.concatenate([np.zeros(pos_t.numel()), np.ones(neg_t.numel())])
    return scores, labels


def evaluate_roc(distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any,
                 use_cython: bool = True, *, max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """Drop-in for ``fastreid.evaluation.roc.evaluate_roc``; ``use_cython`` is ignored."""
    del use_cython
    return evaluate_roc_py(distmat, q_pids, g_pids, q_camids, g_camids,
                           max_memory_bytes=max_memory_bytes)
