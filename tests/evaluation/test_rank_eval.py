"""Tests for the vectorised ranking evaluator (inclr_fastreid/evaluation/rank.py, roc.py).

References: a brute-force per-query loop written here from the definitions, and FastReID's own
Python ``eval_market1501`` / ``evaluate_roc_py`` / ``eval_cuhk03`` on tie-free inputs.
"""
import warnings

import numpy as np
import pytest
import torch

import inclr_fastreid  # noqa: F401  (host compat so fastreid.evaluation imports)
from inclr_fastreid.evaluation.rank import evaluate_rank
from inclr_fastreid.evaluation.roc import evaluate_roc

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "Cython ... unavailable" on import
    import fastreid.evaluation.rank as fr_rank
    import fastreid.evaluation.roc as fr_roc


def brute_force(dist, q_pids, g_pids, q_cams, g_cams, max_rank):
    """Per-query loop from the definitions; ties ordered by gallery index."""
    num_q, num_g = dist.shape
    max_rank = min(max_rank, num_g)
    cmc_sum = [0] * max_rank
    aps, inps = [], []
    for q in range(num_q):
        ranked = sorted(range(num_g), key=lambda j: (dist[q][j], j))
        valid = [j for j in ranked if not (g_pids[j] == q_pids[q] and g_cams[j] == q_cams[q])]
        match_ranks = [r + 1 for r, j in enumerate(valid) if g_pids[j] == q_pids[q]]
        if not match_ranks:
            continue
        for k in range(max_rank):
            if match_ranks[0] <= k + 1:
                cmc_sum[k] += 1
        aps.append(sum((i + 1) / r for i, r in enumerate(match_ranks)) / len(match_ranks))
        inps.append(len(match_ranks) / match_ranks[-1])
    cmc = np.array([c / len(aps) for c in cmc_sum])
    return cmc, np.array(aps), np.array(inps)


def make_case(seed, num_q=40, num_g=260, num_ids=30, num_cams=4, tie_free: bool = True):
    """Random ids/cameras with identity structure in the distances; some queries have no
    gallery identity at all and some only same-camera (junk) gallery images."""
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(0, num_ids + 5, num_q)          # ids >= num_ids never in gallery
    g_pids = rng.integers(0, num_ids, num_g)
    q_cams = rng.integers(0, num_cams, num_q)
    g_cams = rng.integers(0, num_cams, num_g)
    # Identity 0: gallery images only in camera 0, and one query of it in camera 0 -> all junk.
    g_cams[g_pids == 0] = 0
    q_pids[0], q_cams[0] = 0, 0
    dist = rng.random((num_q, num_g))
    dist -= 0.4 * (q_pids[:, None] == g_pids[None, :]) * rng.random((num_q, num_g))
    if tie_free:  # keep each row's order, with distinct values
        dist = np.argsort(np.argsort(dist, axis=1), axis=1) / num_g
    dist = dist.astype(np.float32)
    assert not tie_free or all(len(np.unique(row)) == num_g for row in dist)
    return dist, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_brute_force(seed):
    dist, qp, gp, qc, gc = make_case(seed)
    exp_cmc, exp_ap, exp_inp = brute_force(dist, qp, gp, qc, gc, 50)
    assert len(exp_ap) < len(qp)  # some queries really are skipped
    cmc, ap, inp = evaluate_rank(dist, qp, gp, qc, gc, max_rank=50)
    assert cmc.dtype == np.float32 and cmc.shape == (50,)
    np.testing.assert_allclose(cmc, exp_cmc, atol=1e-6)
    np.testing.assert_allclose(ap, exp_ap, atol=1e-6)
    np.testing.assert_allclose(inp, exp_inp, atol=1e-6)


def test_max_rank_longer_than_valid_lists():
    # 30 gallery entries, max_rank 30: every query with junk keeps fewer than 30 valid entries.
    dist, qp, gp, qc, gc = make_case(7, num_q=25, num_g=30, num_ids=6, num_cams=2)
    exp_cmc, exp_ap, exp_inp = brute_force(dist, qp, gp, qc, gc, 30)
    cmc, ap, inp = evaluate_rank(dist, qp, gp, qc, gc, max_rank=30)
    np.testing.assert_allclose(cmc, exp_cmc, atol=1e-6)
    assert cmc[-1] == pytest.approx(1.0)  # every valid query found its match within its list
    np.testing.assert_allclose(ap, exp_ap, atol=1e-6)
    np.testing.assert_allclose(inp, exp_inp, atol=1e-6)


@pytest.mark.parametrize("seed", [10, 11])
def test_matches_fastreid_python(seed):
    dist, qp, gp, qc, gc = make_case(seed, num_q=50, num_g=400)
    exp = fr_rank.eval_market1501(dist, qp, gp, qc, gc, 20)
    got = evaluate_rank(dist, qp, gp, qc, gc, max_rank=20)
    np.testing.assert_allclose(got[0], exp[0], atol=1e-6)
    np.testing.assert_allclose(got[1], np.asarray(exp[1]), atol=1e-6)
    np.testing.assert_allclose(got[2], np.asarray(exp[2]), atol=1e-6)
    mAP, mINP = np.mean(got[1]), np.mean(got[2])
    assert mAP == pytest.approx(np.mean(exp[1]), abs=1e-6)
    assert mINP == pytest.approx(np.mean(exp[2]), abs=1e-6)


def test_chunking_torch_and_dtype_invariance():
    dist, qp, gp, qc, gc = make_case(4)
    ref = evaluate_rank(dist, qp, gp, qc, gc, max_rank=10)
    variants = [
        evaluate_rank(dist, qp, gp, qc, gc, max_rank=10, max_memory_bytes=1),  # 1 row / chunk
        evaluate_rank(dist, qp, gp, qc, gc, max_rank=10, max_memory_bytes=32 * 260 * 7),
        evaluate_rank(torch.from_numpy(dist), torch.from_numpy(qp), list(gp), qc, gc, 10),
        evaluate_rank(dist.astype(np.float64), qp, gp, qc, gc, max_rank=10),
    ]
    for got in variants:
        for a, b in zip(got, ref):
            np.testing.assert_array_equal(a, b)


def test_ties_break_by_gallery_index():
    # Equal distances everywhere: ranking is gallery order. Query pid 1, camera 0.
    q_pids, q_cams = np.array([1]), np.array([0])
    dist = np.zeros((1, 4), dtype=np.float32)
    # gallery: pid2/cam1, pid1/cam1 (match), pid1/cam0 (junk), pid3/cam1
    g_pids, g_cams = np.array([2, 1, 1, 3]), np.array([1, 1, 0, 1])
    cmc, ap, inp = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=3)
    # valid list = [pid2, pid1, pid3]: first (only) match at rank 2
    np.testing.assert_allclose(cmc, [0.0, 1.0, 1.0])
    np.testing.assert_allclose(ap, [0.5])
    np.testing.assert_allclose(inp, [0.5])
    # The tie order decides the result: gallery [match, non-match] vs [non-match, match].
    dist = np.zeros((1, 2))
    cmc, ap, _ = evaluate_rank(dist, [1], [1, 2], [0], [1, 1], max_rank=2)
    np.testing.assert_allclose(cmc, [1.0, 1.0])
    np.testing.assert_allclose(ap, [1.0])
    cmc, ap, _ = evaluate_rank(dist, [1], [2, 1], [0], [1, 1], max_rank=2)
    np.testing.assert_allclose(cmc, [0.0, 1.0])
    np.testing.assert_allclose(ap, [0.5])


def test_hand_computed_ap_and_inp():
    # Ranked valid list for the query: [hit, miss, hit, miss, hit]
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    g_pids, g_cams = np.array([7, 8, 7, 9, 7]), np.array([1, 1, 2, 1, 3])
    cmc, ap, inp = evaluate_rank(dist, [7], g_pids, [0], g_cams, max_rank=5)
    np.testing.assert_allclose(ap, [(1 / 1 + 2 / 3 + 3 / 5) / 3])
    np.testing.assert_allclose(inp, [3 / 5])
    np.testing.assert_allclose(cmc, [1, 1, 1, 1, 1])


def test_no_valid_query_raises_like_fastreid():
    dist = np.random.default_rng(0).random((3, 5))
    g_pids, g_cams = np.array([1, 1, 2, 2, 3]), np.array([0, 0, 0, 0, 0])
    with pytest.raises(AssertionError, match="do not appear in gallery"):
        evaluate_rank(dist, [1, 2, 4], g_pids, [0, 0, 1], g_cams, max_rank=3)


def test_max_rank_above_gallery_size_warns_and_clamps():
    dist, qp, gp, qc, gc = make_case(5, num_q=10, num_g=12, num_ids=4, num_cams=3)
    with pytest.warns(UserWarning, match="quite small"):
        cmc, ap, _ = evaluate_rank(dist, qp, gp, qc, gc, max_rank=50)
    assert cmc.shape == (12,)
    exp_cmc, exp_ap, _ = brute_force(dist, qp, gp, qc, gc, 50)
    np.testing.assert_allclose(cmc, exp_cmc, atol=1e-6)
    np.testing.assert_allclose(ap, exp_ap, atol=1e-6)


def test_bad_input_errors():
    dist, qp, gp, qc, gc = make_case(6, num_q=5, num_g=20)
    with pytest.raises(ValueError, match="g_pids has 19 entries"):
        evaluate_rank(dist, qp, gp[:-1], qc, gc)
    with pytest.raises(ValueError, match="2-D"):
        evaluate_rank(dist[0], qp[:1], gp, qc[:1], gc)
    bad = dist.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN.*row 3"):
        evaluate_rank(bad, qp, gp, qc, gc, max_rank=5)
    with pytest.raises(ValueError, match="max_rank"):
        evaluate_rank(dist, qp, gp, qc, gc, max_rank=0)


def test_roc_matches_fastreid_and_definition():
    dist, qp, gp, qc, gc = make_case(8, num_q=30, num_g=150)
    scores, labels = evaluate_roc(dist, qp, gp, qc, gc)
    exp_scores, exp_labels = fr_roc.evaluate_roc_py(dist, qp, gp, qc, gc)
    np.testing.assert_array_equal(scores, exp_scores)
    np.testing.assert_array_equal(labels, exp_labels)
    # Definition: every non-junk pair once; label 0 iff same identity.
    pos = sorted(dist[q, j] for q in range(30) for j in range(150)
                 if gp[j] == qp[q] and gc[j] != qc[q])
    neg = sorted(dist[q, j] for q in range(30) for j in range(150) if gp[j] != qp[q])
    np.testing.assert_array_equal(np.sort(scores[labels == 0]), pos)
    np.testing.assert_array_equal(np.sort(scores[labels == 1]), neg)
    chunked = evaluate_roc(dist, qp, gp, qc, gc, max_memory_bytes=1)
    np.testing.assert_array_equal(chunked[0], scores)


def test_cuhk03_same_draws_as_fastreid():
    dist, qp, gp, qc, gc = make_case(9, num_q=30, num_g=200, num_ids=25, num_cams=2)
    np.random.seed(123)
    cmc, mAP = evaluate_rank(dist, qp, gp, qc, gc, max_rank=10, use_metric_cuhk03=True)
    np.random.seed(123)
    exp_cmc, exp_mAP = fr_rank.eval_cuhk03(dist, qp, gp, qc, gc, 10)
    np.testing.assert_allclose(cmc, exp_cmc, atol=1e-6)
    assert mAP == pytest.approx(exp_mAP, abs=1e-9)
    # mAP does not depend on the draws: it is the market-1501 mAP.
    assert mAP == pytest.approx(np.mean(brute_force(dist, qp, gp, qc, gc, 10)[1]), abs=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensor_matches_cpu():
    dist, qp, gp, qc, gc = make_case(12, num_q=60, num_g=500)
    ref = evaluate_rank(dist, qp, gp, qc, gc, max_rank=20)
    got = evaluate_rank(torch.from_numpy(dist).cuda(), qp, gp, qc, gc, max_rank=20,
                        max_memory_bytes=32 * 500 * 16)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, atol=1e-12)
    scores, labels = evaluate_roc(torch.from_numpy(dist).cuda(), qp, gp, qc, gc)
    exp_scores, exp_labels = evaluate_roc(dist, qp, gp, qc, gc)
    np.testing.assert_array_equal(scores, exp_scores)
    np.testing.assert_array_equal(labels, exp_labels)


def test_strided_and_readonly_numpy_input():
    dist, qp, gp, qc, gc = make_case(13, num_q=20, num_g=80)
    ref = evaluate_rank(dist, qp, gp, qc, gc, max_rank=10)
    reversed_cols = np.ascontiguousarray(dist[:, ::-1])[:, ::-1]   # negative strides, same values
    readonly = dist.copy()
    readonly.setflags(write=False)
    for variant in (reversed_cols, readonly, np.asfortranarray(dist)):
        for a, b in zip(evaluate_rank(variant, qp, gp, qc, gc, max_rank=10), ref):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- many exact ties
def make_tied_case(seed, levels=5, **kw):
    """make_case's distances quantised to ``levels`` + 1 values: most rows hold long runs of exactly
    equal distances mixing matches, junk and non-matches; one query row is constant."""
    dist, qp, gp, qc, gc = make_case(seed, tie_free=False, **kw)
    dist = np.round(np.clip(dist, 0, 1) * levels) / levels
    dist[1] = 0.5
    return dist.astype(np.float32), qp, gp, qc, gc


def as_distances(order):
    """A tie-free distance matrix whose ranking is ``order`` (one gallery permutation per row)."""
    return np.argsort(order, axis=1).astype(np.float64)


@pytest.mark.parametrize("seed", [20, 21, 22])
def test_tie_heavy_matches_brute_force(seed):
    dist, qp, gp, qc, gc = make_tied_case(seed)
    assert max(np.unique(row, return_counts=True)[1].max() for row in dist) >= 50  # long runs of ties
    exp_cmc, exp_ap, exp_inp = brute_force(dist, qp, gp, qc, gc, 50)  # ties by gallery index
    # The case decides between tie orders: ties broken the other way round give other values.
    rev_cmc, rev_ap, _ = brute_force(dist[:, ::-1], qp, gp[::-1], qc, gc[::-1], 50)
    assert np.mean(np.abs(rev_ap - exp_ap) > 1e-6) > 0.5 and np.abs(rev_cmc - exp_cmc).max() > 0.05
    for variant in (dict(), dict(max_memory_bytes=1), dict(max_memory_bytes=32 * 260 * 7)):
        cmc, ap, inp = evaluate_rank(dist, qp, gp, qc, gc, max_rank=50, **variant)
        np.testing.assert_allclose(cmc, exp_cmc, atol=1e-6)
        np.testing.assert_allclose(ap, exp_ap, atol=1e-9)
        np.testing.assert_allclose(inp, exp_inp, atol=1e-9)
    got = evaluate_rank(torch.from_numpy(dist.astype(np.float64)), qp, gp, qc, gc, max_rank=50)
    np.testing.assert_allclose(got[1], exp_ap, atol=1e-9)
    # The CUHK03 path sorts on its own; its mAP is the Market-1501 mAP, ties included.
    _, cuhk03_map = evaluate_rank(dist, qp, gp, qc, gc, max_rank=50, use_metric_cuhk03=True)
    assert cuhk03_map == pytest.approx(np.mean(exp_ap), abs=1e-9)


def test_host_tie_order_is_numpy_default_argsort_not_gallery_index():
    """FastReID's eval_market1501 ranks with ``np.argsort(distmat, axis=1)`` (default kind, not
    stable): on tied distances its values follow that order, which is not the gallery order; on the
    tie-free matrix that resolves every tie by gallery index it gives exactly the add-on's values."""
    dist, qp, gp, qc, gc = make_tied_case(23)
    host = fr_rank.eval_market1501(dist, qp, gp, qc, gc, 20)
    host_order = np.argsort(dist, axis=1)
    by_index = np.argsort(dist, axis=1, kind="stable")
    assert (host_order != by_index).any(axis=1).mean() > 0.5  # numpy's default does not keep index order
    ref = brute_force(as_distances(host_order), qp, gp, qc, gc, 20)
    np.testing.assert_allclose(host[0], ref[0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(host[1]), ref[1], atol=1e-9)
    np.testing.assert_allclose(np.asarray(host[2]), ref[2], atol=1e-9)

    ours = evaluate_rank(dist, qp, gp, qc, gc, max_rank=20)
    assert not np.allclose(np.asarray(host[1]), ours[1])  # the documented difference, on ties only
    # Every tie resolved by gallery index (steps of 1e-6 < the 0.2 quantum): no ties left for numpy.
    resolved = dist.astype(np.float64) + np.arange(dist.shape[1]) * 1e-6
    host_resolved = fr_rank.eval_market1501(resolved, qp, gp, qc, gc, 20)
    np.testing.assert_allclose(ours[0], host_resolved[0], atol=1e-6)
    np.testing.assert_allclose(ours[1], np.asarray(host_resolved[1]), atol=1e-9)
    np.testing.assert_allclose(ours[2], np.asarray(host_resolved[2]), atol=1e-9)
