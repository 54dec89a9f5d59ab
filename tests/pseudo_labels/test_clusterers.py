"""The paper's clustering, both readings (docs/design.md §4.3): k-means with K = INCLR.CLUSTER.NUM_CLUSTERS,
and DBSCAN with INCLR.CLUSTER.EPS_RULE mmt (MMT-DBSCAN's eps from rho, fixed at the first round)."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.metrics import adjusted_rand_score

from inclr_fastreid.errors import ConfigError
from inclr_fastreid.pseudo_labels import (ClusterParams, cluster_dbscan, compute_jaccard_distance,
                                          generate_pseudo_labels)
from inclr_fastreid.pseudo_labels.clustering import cluster_kmeans, mmt_eps



def blobs(n=240, d=16, ids=12, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, d))
    lab = np.arange(n) % ids
    return (centres[lab] + noise * rng.normal(size=(n, d))).astype(np.float32), lab


def dense_mmt_rule(dense, rho):
    """MMT-DBSCAN's rule written on the dense N x N matrix: sorted upper triangle, mean of the first m."""
    n = dense.shape[0]
    tri = np.sort(dense[np.triu_indices(n, k=1)])
    m = int(np.round(rho * tri.size))
    return tri[:m].mean()


def densify(d):
    """Dense Jaccard matrix from the sparse one: a pair not stored is distance 1."""
    dense = np.ones(d.shape)
    coo = d.tocoo()
    dense[coo.row, coo.col] = coo.data
    return dense


# ------------------------------------------------------------------------------- mmt eps
@pytest.mark.parametrize("rho", [1.6e-3, 0.02, 0.3])
def test_mmt_eps_equals_the_dense_rule(rho):
    x, _ = blobs(n=200, noise=0.8, seed=1)
    full = compute_jaccard_distance(x, 20, 6, max_distance=1.0)
    dense = densify(full)
    assert np.allclose(dense, dense.T)
    assert mmt_eps(full, 200, rho) == pytest.approx(dense_mmt_rule(dense, rho), rel=1e-12, abs=1e-12)


def test_mmt_eps_counts_pairs_left_out_of_a_cut_matrix_as_one():
    x, _ = blobs(n=200, noise=0.8, seed=2)
    cut = compute_jaccard_distance(x, 20, 6, max_distance=0.5)
    stored_upper = sp.triu(cut, k=1).nnz
    rho = 3 * stored_upper / (200 * 199 / 2)  # m exceeds the stored pairs: the rest are 1
    eps = mmt_eps(cut, 200, rho)
    assert eps == pytest.approx(dense_mmt_rule(densify(cut), rho), rel=1e-12)
    assert 0.5 < eps < 1.0
    # and a small rho, served by the stored pairs alone, equals the rule on the uncut matrix
    full = compute_jaccard_distance(x, 20, 6, max_distance=1.0)
    assert mmt_eps(cut, 200, 1.6e-3) == pytest.approx(dense_mmt_rule(densify(full), 1.6e-3), rel=1e-12)


def test_mmt_eps_by_hand():
    # N = 4: 6 upper pairs; stored (0,1)=0.2, (2,3)=0.0 (an explicit zero), lower mirror and diagonal
    rows, cols, vals = [0, 1, 2, 3, 0, 1, 2, 3], [1, 0, 3, 2, 0, 1, 2, 3], [0.2, 0.2, 0.0, 0.0, 0, 0, 0, 0]
    d = sp.csr_matrix((vals, (rows, cols)), shape=(4, 4))
    assert mmt_eps(d, 4, 2 / 6) == pytest.approx(0.1)  # m = 2: {0.0, 0.2}
    assert mmt_eps(d, 4, 3 / 6) == pytest.approx(1.2 / 3)  # m = 3: {0.0, 0.2, 1 (not stored)}
    with pytest.raises(ConfigError, match="INCLR.CLUSTER.RHO"):
        mmt_eps(d, 4, 0.01)  # round(0.06) = 0 pairs


# ------------------------------------------------------------------------------- k-means
def test_kmeans_gives_k_clusters_no_outliers_and_recovers_blobs():
    x, lab = blobs()
    labels = cluster_kmeans(x, 12, seed=3)
    assert labels.dtype == np.int64 and labels.min() == 0 and labels.max() == 11
    assert set(labels.tolist()) == set(range(12))  # exactly K, no -1
    assert labels[0] == 0  # relabelled by first occurrence
    assert adjusted_rand_score(lab, labels) > 0.99
    assert np.array_equal(labels, cluster_kmeans(x, 12, seed=3))  # deterministic for a seed
    more = cluster_kmeans(x, 30, seed=3)
    assert set(more.tolist()) == set(range(30))
    with pytest.raises(ConfigError, match="INCLR.CLUSTER.NUM_CLUSTERS"):
        cluster_kmeans(x[:10], 12)


def test_kmeans_through_generate_clusters_every_space_with_the_same_k():
    x, lab = blobs(seed=4)
    parts = [blobs(seed=s)[0] for s in (5, 6, 7)]
    r = generate_pseudo_labels(x, parts, method="kmeans", num_clusters=12, k1=20, lgmr_k=10, min_agreement=0.0,
                               agreement="mean")  # a mode that reads the part labels: the parts are clustered
    assert (r.labels_before_lgmr >= 0).all() and r.labels_before_lgmr.max() == 11
    assert adjusted_rand_score(lab, r.labels_before_lgmr) > 0.99
    assert len(r.part_labels) == 3 and {"kmeans_global", "kmeans_part3"} <= set(r.timings)
    for p in r.part_labels:
        assert set(p.tolist()) == set(range(12))
    assert r.eps is None and r.timings["jaccard_global"] == 0.0  # no Jaccard distance for k-means
    r0 = generate_pseudo_labels(torch.from_numpy(x), [], method="kmeans", num_clusters=7, lgmr_enabled=False, k1=20)
    assert r0.num_classes == 7 and r0.num_outliers == 0


# ------------------------------------------------------------------------------- EPS_RULE mmt
def test_eps_rule_mmt_computes_eps_at_the_first_round_and_takes_it_back_as_an_override():
    x, _ = blobs(n=300, d=24, ids=20, noise=0.7, seed=8)
    p = ClusterParams(eps_rule="mmt", k1=20, lgmr_enabled=False, max_distance=0.9)
    first = generate_pseudo_labels(x, [], p)
    expected = mmt_eps(compute_jaccard_distance(x, 20, 6, 0.9), 300, 1.6e-3)
    assert first.eps == pytest.approx(expected, rel=1e-12) and first.eps != p.eps
    assert np.array_equal(first.labels, cluster_dbscan(compute_jaccard_distance(x, 20, 6, 0.9), first.eps, 4))
    # a later round on other features: the frozen eps is used, not recomputed
    y, _ = blobs(n=300, d=24, ids=20, noise=0.5, seed=9)
    later = generate_pseudo_labels(y, [], p, eps=first.eps)
    assert later.eps == first.eps
    assert np.array_equal(later.labels, cluster_dbscan(compute_jaccard_distance(y, 20, 6, 0.9), first.eps, 4))
    # fixed: the configured eps
    assert generate_pseudo_labels(x, [], lgmr_enabled=False, k1=20).eps == 0.6


def test_eps_rule_mmt_with_too_low_max_distance_names_the_key():
    x, _ = blobs(n=300, d=24, ids=20, noise=0.7, seed=8)
    with pytest.raises(ConfigError, match="INCLR.CLUSTER.MAX_DISTANCE"):
        generate_pseudo_labels(x, [], ClusterParams(eps_rule="mmt", rho=0.3, eps=0.1, max_distance=0.2,
                                                    lgmr_enabled=False, k1=20))


def test_eps_rule_mmt_that_gives_zero_names_rho():
    # 40 identities x 5 exact duplicates: 400 pairs at Jaccard distance 0, more than round(1.6e-3 * C(200, 2)) = 32
    x, _ = blobs(n=40, d=24, ids=40, noise=0.7, seed=8)
    dup = np.repeat(x, 5, axis=0)
    assert mmt_eps(compute_jaccard_distance(dup, 20, 6, 0.9), 200, 1.6e-3) == 0.0
    with pytest.raises(ConfigError, match="eps=0.*INCLR.CLUSTER.RHO"):
        generate_pseudo_labels(dup, [], ClusterParams(eps_rule="mmt", lgmr_enabled=False, k1=20))


def test_frozen_eps_survives_a_checkpoint_round_trip(tmp_path):
    from inclr_fastreid.engine.state import PseudoLabelState

    s = PseudoLabelState()
    s.scale.eps, s.seed, s.num_classes = 0.4375, 7, 3
    path = tmp_path / "state.pth"
    torch.save(s.state_dict(), path)
    t = PseudoLabelState()
    t.load_state_dict(torch.load(path, weights_only=True))
    assert t.scale.eps == 0.4375 and t.seed == 7
    old = s.state_dict()
    del old["eps"]  # a checkpoint written before EPS_RULE existed
    u = PseudoLabelState()
    u.load_state_dict(old)
    assert u.scale.eps is None and u.seed == 7


def test_quality_record_carries_eps():
    from inclr_fastreid.engine.label_log import quality_record

    x, _ = blobs(n=300, d=24, ids=20, noise=0.7, seed=8)
    r = generate_pseudo_labels(x, [], eps_rule="mmt", lgmr_enabled=False, k1=20)
    assert quality_record(0, r, None, 1.0, 1.0)["eps"] == pytest.approx(r.eps, abs=1e-6)
    assert quality_record(0, generate_pseudo_labels(x, [], method="kmeans", num_clusters=20, lgmr_enabled=False,
                                                    k1=20), None, 1.0, 1.0)["eps"] is None
