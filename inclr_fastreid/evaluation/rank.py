"""Vectorised CMC / mAP / mINP ranking evaluation: a drop-in for ``fastreid.evaluation.rank``.

FastReID 1.4.0's ``ReidEvaluator`` compiles a Cython ranker with ``make`` inside site-packages and
its pure-Python fallback (``eval_market1501``) loops over queries (docs/design.md §3). ``evaluate_rank``
here has the same signature and Market-1501 semantics, but works on chunks of queries with one
stable ``torch.sort`` per chunk and boolean/cumulative arrays, so a Market-1501-sized evaluation
(3,368 x 15,913) takes seconds on a CPU and the working set stays bounded (``max_memory_bytes``).

Semantics (identical to FastReID's ``eval_market1501`` wherever that function returns):
- per query, gallery entries with the same pid AND the same camid are removed ("junk");
- a query whose identity has no remaining gallery entry is skipped; all skipped -> AssertionError;
- CMC[k] = fraction of valid queries whose first match is within the top k+1 valid entries;
- AP = mean over the matches of (matches so far) / (rank of the match), ranks among valid entries;
- INP = (number of matches) / (rank of the last match);
- ``max_rank`` > gallery size: warn and clamp to the gallery size, as FastReID does.

Differences, all where FastReID has no well-defined answer:
- Ties in distance are broken by gallery index (stable sort). FastReID uses ``np.argsort``'s
  default (unstable) quicksort, whose order among equal distances is unspecified; a tie between a
  match and a non-match can therefore change FastReID's AP/CMC from machine to machine.
- When a query keeps fewer than ``max_rank`` valid entries, FastReID's Python code fails (ragged
  CMC rows) and its Cython code reads stale buffer values; here CMC stays 1 past the end of the
  list (the match was found), which is the definition's value.
- NaN distances raise ``ValueError`` (FastReID silently ranks them last).
- ``use_metric_cuhk03=True`` runs ``eval_cuhk03`` below: FastReID's single-gallery-shot metric
  with one Python loop over queries (rarely used), the same global-RNG draws as FastReID (seeded
  results are equal), torch input, and CMC padded with 1 when fewer gallery identities than
  ``max_rank`` remain (FastReID fails there). Like FastReID it returns ``(cmc, mAP)``.
"""
from __future__ import annotations

import warnings
from typing import Any, Tuple

import numpy as np
import torch

__all__ = ["evaluate_rank", "eval_market1501", "eval_cuhk03", "encode_ids"]

#: Default bound on the per-chunk working set of the vectorised evaluator (bytes).
DEFAULT_MAX_MEMORY_BYTES = 64 * 1024 ** 2   # Market-1501: 131 queries per chunk
# Bytes held per (query, gallery) entry of a chunk: sorted values (<=8) + sort indices (8) + the
# gathered pid codes (4) + the match mask (1), rounded up for the sort's own scratch space.
_BYTES_PER_ENTRY = 32


def encode_ids(q_ids: Any, g_ids: Any, name: str) -> Tuple[np.ndarray, np.ndarray]:
    """Map query and gallery ids (any comparable dtype) to shared dense int32 codes.

    Equal ids get equal codes, so equality tests on codes equal those on the raw ids.
    """
    q = np.asarray(q_ids.cpu() if torch.is_tensor(q_ids) else q_ids).reshape(-1)
    g = np.asarray(g_ids.cpu() if torch.is_tensor(g_ids) else g_ids).reshape(-1)
    try:
        _, inverse = np.unique(np.concatenate([q, g]), return_inverse=True)
    except TypeError as exc:
        raise TypeError(f"query/gallery {name} must be mutually comparable (ints), got dtypes "
                        f"{q.dtype} and {g.dtype}") from exc
    inverse = inverse.reshape(-1).astype(np.int32)
    return inverse[: q.size], inverse[q.size:]


def _check_inputs(distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any):
    """Validate shapes and return (distmat as 2-D torch tensor, encoded ids)."""
    if torch.is_tensor(distmat):
        dist = distmat.detach()
    else:
        arr = np.asarray(distmat)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)):
            raise TypeError(f"distmat must be a numeric array or tensor, got dtype {arr.dtype}")
        if any(stride < 0 for stride in arr.strides):
            arr = np.ascontiguousarray(arr)              # torch cannot view negative strides
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # read-only arrays: we never write
            dist = torch.from_numpy(arr)
    if dist.dim() != 2:
        raise ValueError(f"distmat must be 2-D (num_query, num_gallery), got shape "
                         f"{tuple(dist.shape)}")
    if dist.is_complex() or dist.dtype == torch.bool:
        raise TypeError(f"distmat must hold real distances, got {dist.dtype}")
    num_q, num_g = dist.shape
    if num_q == 0 or num_g == 0:
        raise ValueError(f"distmat is empty (shape {tuple(dist.shape)}): need at least one query "
                         "and one gallery entry")
    for name, ids, expected in (("q_pids", q_pids, num_q), ("g_pids", g_pids, num_g),
                                ("q_camids", q_camids, num_q), ("g_camids", g_camids, num_g)):
        n = int(ids.numel() if torch.is_tensor(ids) else np.size(ids))
        if n != expected:
            raise ValueError(f"{name} has {n} entries but distmat has shape {tuple(dist.shape)} "
                             f"(expected {expected}): pass one id per query row / gallery column")
    qp, gp = encode_ids(q_pids, g_pids, "pids")
    qc, gc = encode_ids(q_camids, g_camids, "camids")
    return dist, qp, gp, qc, gc


def _clamp_max_rank(max_rank: int, num_g: int) -> int:
    max_rank = int(max_rank)
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    if num_g < max_rank:
        warnings.warn(f"Note: number of gallery samples is quite small, got {num_g}; "
                      f"max_rank clamped from {max_rank} to {num_g}")
        max_rank = num_g
    return max_rank


def _chunk_rows(num_g: int, max_memory_bytes: int) -> int:
    if max_memory_bytes <= 0:
        raise ValueError(f"max_memory_bytes must be positive, got {max_memory_bytes}")
    return max(1, int(max_memory_bytes) // (_BYTES_PER_ENTRY * num_g))


def _ranked_chunk(dist: torch.Tensor, start: int, stop: int, gp_t: torch.Tensor,
                  gc_t: torch.Tensor, qp_t: torch.Tensor, qc_t: torch.Tensor):
    """Stable-sort query rows [start, stop) of ``dist`` by distance.

    Returns ``(values, match, pos_row, pos_col, junk_before)``: the sorted distances, the
    same-identity mask in ranked order, and for every true (non-junk) match in row-major order its
    chunk row, its column in the full ranked list and how many junk entries rank before it.
    """
    values, order = torch.sort(dist[start:stop], dim=1, stable=True)
    if values.is_floating_point() and torch.isnan(values[:, -1]).any():   # NaN sorts last
        bad = int(torch.isnan(values[:, -1]).nonzero()[0]) + start
        raise ValueError(f"distmat has NaN distances (first in query row {bad}); fix the features "
                         "or distance computation before evaluating")
    match = gp_t[order] == qp_t[start:stop, None]
    # Same-identity entries are few: test the camera (junk) only there.
    row, col = match.nonzero(as_tuple=True)            # row-major, ranked order within a row
    is_junk = (gc_t[order[row, col]] == qc_t[start + row]).to(torch.int64)
    del order
    # Junk strictly before each entry within its row: exclusive cumsum minus the row's base.
    junk_excl = torch.cumsum(is_junk, 0) - is_junk
    first_of_row = torch.ones_like(row, dtype=torch.bool)
    first_of_row[1:] = row[1:] != row[:-1]
    row_base = torch.zeros(stop - start, dtype=torch.int64, device=row.device)
    row_base[row[first_of_row]] = junk_excl[first_of_row]
    junk_before = junk_excl - row_base[row]
    keep = is_junk == 0
    return values, match, row[keep], col[keep], junk_before[keep]


def eval_market1501(distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any,
                    max_rank: int, *, max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES
                    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Market-1501 CMC, per-query AP and INP, vectorised over chunks of queries.

    Same outputs as FastReID's ``eval_market1501`` (see module docstring): ``cmc`` float32 of
    length ``max_rank`` (clamped to the gallery size), ``all_AP`` and ``all_INP`` float64 arrays
    over the valid queries in query order.
    """
    dist, qp, gp, qc, gc = _check_inputs(distmat, q_pids, g_pids, q_camids, g_camids)
    num_q, num_g = dist.shape
    max_rank = _clamp_max_rank(max_rank, num_g)
    device = dist.device
    qp_t, gp_t = torch.from_numpy(qp).to(device), torch.from_numpy(gp).to(device)
    qc_t, gc_t = torch.from_numpy(qc).to(device), torch.from_numpy(gc).to(device)

    first_rank_counts = torch.zeros(max_rank + 1, dtype=torch.int64)
    all_ap, all_inp = [], []
    rows = _chunk_rows(num_g, max_memory_bytes)
    for start in range(0, num_q, rows):
        stop = min(num_q, start + rows)
        values, match, pos_row, pos_col, junk_before = _ranked_chunk(
            dist, start, stop, gp_t, gc_t, qp_t, qc_t)
        del values, match
        n_pos = torch.bincount(pos_row, minlength=stop - start)
        # Rank among the valid (non-junk) entries, 1-based.
        rank = (pos_col + 1 - junk_before).to(torch.float64)
        # k-th match of its row (1-based): position within the row's run of positives.
        row_start = torch.cumsum(n_pos, 0) - n_pos
        k = (torch.arange(pos_row.numel(), device=device) - row_start[pos_row] + 1)
        k = k.to(torch.float64)

        valid = n_pos > 0
        precision_sum = torch.zeros(stop - start, dtype=torch.float64, device=device)
        precision_sum.index_add_(0, pos_row, k / rank)
        # Positives are in ranked order within a row: the first and last of a valid row.
        first_rank = rank[row_start[valid]]
        last_rank = rank[row_start[valid] + n_pos[valid] - 1]
        n_valid = n_pos[valid].to(torch.float64)
        all_ap.append((precision_sum[valid] / n_valid).cpu())
        all_inp.append((n_valid / last_rank).cpu())
        bucket = (first_rank.to(torch.int64) - 1).clamp_(max=max_rank).cpu()
        first_rank_counts += torch.bincount(bucket, minlength=max_rank + 1)

    num_valid_q = int(first_rank_counts.sum())
    assert num_valid_q > 0, 'Error: all query identities do not appear in gallery'
    cmc = torch.cumsum(first_rank_counts[:max_rank], 0).to(torch.float64) / num_valid_q
    return (cmc.numpy().astype(np.float32), torch.cat(all_ap).numpy(),
            torch.cat(all_inp).numpy())


def eval_cuhk03(distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any,
                max_rank: int) -> Tuple[np.ndarray, float]:
    """CUHK03 single-gallery-shot CMC (10 random draws of one image per gallery identity) and mAP.

    Re-implements FastReID's ``eval_cuhk03``: a loop over queries making the same draws on numpy's
    global RNG (so seeded results equal FastReID's), returning ``(cmc, mAP)`` like FastReID.
    """
    dist, qp, gp, qc, gc = _check_inputs(distmat, q_pids, g_pids, q_camids, g_camids)
    num_q, num_g = dist.shape
    max_rank = _clamp_max_rank(max_rank, num_g)
    num_repeats = 10
    all_cmc, all_ap = [], []
    rows = _chunk_rows(num_g, DEFAULT_MAX_MEMORY_BYTES)
    for start in range(0, num_q, rows):
        stop = min(num_q, start + rows)
        _, order = torch.sort(dist[start:stop], dim=1, stable=True)
        order = order.cpu().numpy()
        for i in range(stop - start):
            q = start + i
            ranked = order[i]
            keep = ~((gp[ranked] == qp[q]) & (gc[ranked] == qc[q]))
            kept_pids = gp[ranked][keep]
            raw_cmc = (kept_pids == qp[q]).astype(np.int32)
            if not raw_cmc.any():
                continue
            # Gallery identities in order of first appearance (FastReID's dict order); one image
            # per identity drawn uniformly per repeat, with the draws FastReID makes.
            uniq, first_idx, inverse = np.unique(kept_pids, return_index=True,
                                                 return_inverse=True)
            appearance = np.argsort(first_idx, kind="stable")
            inverse_order = np.empty_like(appearance)
            inverse_order[appearance] = np.arange(appearance.size)
            group = inverse_order[inverse.reshape(-1)]          # identity index in dict order
            members = np.argsort(group, kind="stable")           # kept positions grouped
            counts = np.bincount(group, minlength=uniq.size)
            offsets = np.cumsum(counts) - counts
            cmc = np.zeros(max_rank, dtype=np.float32)
            for _ in range(num_repeats):
                draws = np.random.randint(0, counts)
                chosen = np.sort(members[offsets + draws])
                hit = np.minimum(np.cumsum(raw_cmc[chosen]), 1).astype(np.float32)
                padded = np.ones(max_rank, dtype=np.float32)   # past the list: match was found
                n = min(max_rank, hit.size)
                padded[:n] = hit[:n]
                cmc += padded
            all_cmc.append(cmc / num_repeats)
            hits = np.cumsum(raw_cmc)
            all_ap.append(float((hits / np.arange(1, hits.size + 1) * raw_cmc).sum()
                                / raw_cmc.sum()))
    assert len(all_cmc) > 0, 'Error: all query identities do not appear in gallery'
    cmc_mean = np.asarray(all_cmc, dtype=np.float32).sum(0) / len(all_cmc)
    return cmc_mean.astype(np.float32), float(np.mean(all_ap))


def evaluate_rank(distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any,
                  max_rank: int = 50, use_metric_cuhk03: bool = False, use_cython: bool = True,
                  *, max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES):
    """Drop-in for ``fastreid.evaluation.rank.evaluate_rank``: ``(cmc, all_AP, all_INP)``.

    ``distmat`` is a (num_query, num_gallery) numpy array or torch tensor (any device);
    ``use_cython`` is accepted for signature compatibility and ignored (nothing to compile).
    With ``use_metric_cuhk03=True`` returns FastReID's ``(cmc, mAP)`` from :func:`eval_cuhk03`.
    """
    del use_cython
    if use_metric_cuhk03:
        return eval_cuhk03(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
    return eval_market1501(distmat, q_pids, g_pids, q_camids, g_camids, max_rank,
                           max_memory_bytes=max_memory_bytes)
