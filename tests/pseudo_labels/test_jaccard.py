"""Sparse k-reciprocal Jaccard distance (inclr_fastreid/pseudo_labels/jaccard.py, knn.py).

Reference: the dense textbook algorithm (Zhong et al. CVPR 2017 with SpCL's list lengths), written in
plain numpy from the definition (tests/helpers/features.py), on a few hundred clustered random features.
"""
import numpy as np
import pytest
import scipy.sparse as sp

from inclr_fastreid.pseudo_labels.jaccard import compute_jaccard_distance, jaccard_from_knn
from inclr_fastreid.pseudo_labels.k_reciprocal import half_list_length
from inclr_fastreid.pseudo_labels.knn import knn_search, l2_normalize

from tests.helpers.features import clustered, dense_reference


@pytest.fixture(scope="module")
def feats():
    return clustered()[0]


def _check_against_reference(dist, ref, max_distance):
    assert isinstance(dist, sp.csr_matrix) and dist.shape == ref.shape
    coo = dist.tocoo()
    assert np.abs(coo.data - ref[coo.row, coo.col]).max() < 1e-5
    stored = np.zeros(ref.shape, bool)
    stored[coo.row, coo.col] = True
    # every pair within the cutoff is stored (1e-7: float32 kNN vs float64 reference at the border)
    assert not ((ref <= max_distance - 1e-7) & ~stored).any()
    assert (ref[stored] <= max_distance + 1e-7).all()


@pytest.mark.parametrize("k1,k2,max_distance", [(30, 6, 0.9), (25, 1, 0.8), (20, 4, 1.0)])
def test_matches_dense_reference(feats, k1, k2, max_distance):
    ref = dense_reference(feats, k1, k2)
    assert ((ref > 0.05) & (ref < max_distance)).sum() > 1000  # a non-trivial test case
    dist = compute_jaccard_distance(feats, k1=k1, k2=k2, max_distance=max_distance)
    _check_against_reference(dist, ref, max_distance)


def test_harder_features_match_reference():
    x, _ = clustered(n=240, d=16, ids=12, noise=1.2, seed=3)  # overlapping clusters
    ref = dense_reference(x, 30, 6)
    _check_against_reference(compute_jaccard_distance(x, 30, 6, 0.9), ref, 0.9)


def test_symmetric_zero_diagonal_and_cutoff(feats):
    d9 = compute_jaccard_distance(feats, 30, 6, 0.9)
    assert (d9 != d9.T).nnz == 0 and (d9.T.tocsr().indices.size == d9.indices.size)
    assert np.array_equal(d9.diagonal(), np.zeros(len(feats)))
    assert np.all(np.diff(d9.indptr) >= 1)  # the diagonal is stored on every row
    assert d9.data.min() >= 0 and d9.data.max() <= 0.9
    # a smaller cutoff keeps exactly the entries of the larger one below it
    d5 = compute_jaccard_distance(feats, 30, 6, 0.5)
    c9, c5 = d9.tocoo(), d5.tocoo()
    keep = c9.data <= 0.5
    assert set(zip(c9.row[keep], c9.col[keep])) == set(zip(c5.row, c5.col))


def test_thread_count_does_not_change_result(feats):
    a = compute_jaccard_distance(feats, 30, 6, 0.9, n_threads=1)
    b = compute_jaccard_distance(feats, 30, 6, 0.9, n_threads=3)
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.data, b.data)


def test_torch_input_and_prescaled_rows(feats):
    torch = pytest.importorskip("torch")
    a = compute_jaccard_distance(feats, 20, 6)
    b = compute_jaccard_distance(torch.from_numpy(feats) * 3.0, 20, 6)  # scale is normalised away
    assert (a != b).nnz == 0 or np.abs((a - b).data).max() < 1e-6


def test_jaccard_from_shared_knn_equals_direct(feats):
    x = l2_normalize(feats)
    sims, idx = knn_search(x, 40)  # one longer search, shared with LGMR in generate_pseudo_labels
    a = jaccard_from_knn(x, sims, idx, 30, 6, 0.9)
    b = compute_jaccard_distance(feats, 30, 6, 0.9)
    assert np.array_equal(a.indices, b.indices) and np.abs(a.data - b.data).max() < 1e-6


def test_half_list_length_rounds_like_numpy_around():
    # SpCL: initial_rank[i, :int(np.around(k1/2)) + 1]; np.around rounds half to even
    assert [half_list_length(k) for k in (30, 20, 25, 27, 5, 1)] == [16, 11, 13, 15, 3, 1]


def test_duplicates_are_stored_as_explicit_zeros():
    x, _ = clustered(n=120, d=8, ids=6, seed=1)
    x[1] = x[0]
    x[2] = x[0]
    d = compute_jaccard_distance(x, 10, 3, 0.9)
    assert d[0, 1] == 0.0 and d[1, 2] == 0.0
    assert d.indices[d.indptr[0]:d.indptr[1]].tolist()[:3] == [0, 1, 2]  # stored, not dropped


def test_knn_self_first_even_with_many_duplicates():
    x = np.ones((12, 4), np.float32)  # all identical: ties everywhere
    x[10:] = [1, 0, 0, 0]
    sims, idx = knn_search(x, 5)
    assert np.array_equal(idx[:, 0], np.arange(12))
    assert all(len(set(r)) == 5 for r in idx.tolist())
    _, idx_o = knn_search(x, 5, exclude_self=True)
    assert all(i not in r for i, r in enumerate(idx_o.tolist()))
    assert np.allclose(sims[:, 0], 1.0, atol=1e-6)


def test_knn_matches_brute_force(feats):
    x = l2_normalize(feats).astype(np.float64)
    d = 2 - 2 * x @ x.T
    np.fill_diagonal(d, -1)
    ref = np.argsort(d, axis=1, kind="stable")[:, :15]
    _, idx = knn_search(feats, 15)
    assert np.array_equal(idx, ref)


@pytest.mark.parametrize("bad,kwargs,match", [
    (np.full((50, 4), np.nan, np.float32), {}, "NaN"),
    (np.zeros((5, 4, 2), np.float32), {}, "2-D"),
    (None, {"k1": 301}, "k1=301 exceeds"),
    (None, {"k1": 10, "k2": 11}, "k2=11 must be <= k1"),
    (None, {"max_distance": 1.5}, "max_distance"),
    (None, {"k1": 0}, "k1 must be a positive"),
])
def test_input_validation(feats, bad, kwargs, match):
    x = feats if bad is None else bad
    with pytest.raises(ValueError, match=match):
        compute_jaccard_distance(x, **kwargs)


def test_k1_equal_to_n_is_allowed():
    x, _ = clustered(n=40, d=8, ids=4, seed=2)
    d = compute_jaccard_distance(x, k1=40, k2=6)
    _check_against_reference(d, dense_reference(x, 40, 6), 0.9)


def test_cuda_tensor_path_matches_cpu(feats):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    x = torch.from_numpy(feats).cuda()
    sims_g, idx_g = knn_search(x, 30)
    u = l2_normalize(feats).astype(np.float64)
    d = 2 - 2 * u @ u.T
    np.fill_diagonal(d, -1)
    ref = np.argsort(d, axis=1, kind="stable")[:, :30]
    assert np.array_equal(idx_g[:, 0], np.arange(len(feats)))
    assert (idx_g == ref).mean() > 0.999
    assert np.abs(sims_g - np.take_along_axis(u @ u.T, ref, axis=1)).max() < 1e-5
    _, idx_o = knn_search(x, 10, exclude_self=True)
    assert not (idx_o == np.arange(len(feats))[:, None]).any()
    a = compute_jaccard_distance(x, 30, 6, 0.9)
    _check_against_reference(a, dense_reference(feats, 30, 6), 0.9)
