"""DBSCAN on sparse Jaccard distances, centroids, LGMR cross-agreement/refinement, and the
one-call pseudo-label generator (inclr_fastreid/pseudo_labels/{clustering,lgmr,generate}.py)."""
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.cluster import DBSCAN
from sklearn.metrics import adjusted_rand_score

from inclr_fastreid.pseudo_labels import (cluster_centroids, cluster_dbscan, cluster_overlap,
                                          compute_jaccard_distance, cross_agreement,
                                          generate_pseudo_labels, knn_overlap, neighbour_overlap,
                                          refine_global_labels, relabel_by_first_occurrence)

from tests.helpers.features import clustered


# ------------------------------------------------------------------------------- clustering
def test_relabel_by_first_occurrence():
    out = relabel_by_first_occurrence([5, 5, -1, 2, 5, 2, 7, -3])
    assert out.tolist() == [0, 0, -1, 1, 0, 1, 2, -1] and out.dtype == np.int64


def test_dbscan_sparse_equals_dense_dbscan():
    x, _ = clustered(n=300, noise=0.9, seed=4)
    d = compute_jaccard_distance(x, 30, 6, 0.9)
    dense = np.ones(d.shape)  # every pair not stored is farther than the cutoff (>= eps)
    coo = d.tocoo()
    dense[coo.row, coo.col] = coo.data
    ref = DBSCAN(eps=0.6, min_samples=4, metric="precomputed").fit_predict(dense)
    got = cluster_dbscan(d, eps=0.6, min_samples=4)
    assert np.array_equal(got, relabel_by_first_occurrence(ref))
    assert got.max() >= 5 and got.dtype == np.int64


def test_dbscan_explicit_zeros_are_neighbours():
    # points 0..3 coincide (distance 0, stored explicitly); 4 is far from all
    rows = [i for i in range(4) for _ in range(4)] + [4]
    cols = [j for _ in range(4) for j in range(4)] + [4]
    d = sp.csr_matrix((np.zeros(len(rows)), (rows, cols)), shape=(5, 5))
    assert d.nnz == 17
    assert cluster_dbscan(d, eps=0.5, min_samples=4).tolist() == [0, 0, 0, 0, -1]
    # the same zeros *removed* mean "no neighbour": nothing reaches min_samples
    d2 = d.copy()
    d2.eliminate_zeros()
    assert cluster_dbscan(d2, eps=0.5, min_samples=4).tolist() == [-1] * 5


def test_dbscan_rejects_bad_input():
    with pytest.raises(TypeError, match="sparse"):
        cluster_dbscan(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="square"):
        cluster_dbscan(sp.csr_matrix((3, 4)))
    with pytest.raises(ValueError, match="negative"):
        cluster_dbscan(sp.csr_matrix(np.array([[0.0, -1.0], [-1.0, 0.0]])))


def test_cluster_centroids_by_hand():
    f = np.array([[1, 0], [0, 1], [3, 0], [0, 2], [5, 5]], np.float32)
    c = cluster_centroids(f, np.array([0, 0, 1, 1, -1]))
    # members are L2-normalised first: mean of (1,0),(0,1) -> (.5,.5); of (1,0),(0,1) -> same
    assert np.allclose(c, [[2 ** -0.5, 2 ** -0.5]] * 2, atol=1e-6)
    c = cluster_centroids(f, np.array([1, 1, 0, -1, -1]))
    assert np.allclose(c, [[1, 0], [2 ** -0.5, 2 ** -0.5]], atol=1e-6)
    assert cluster_centroids(f, np.full(5, -1)).shape == (0, 2)
    with pytest.raises(ValueError, match="no member"):
        cluster_centroids(f, np.array([0, 0, 2, 2, -1]))


# ------------------------------------------------------------------------------- LGMR
def test_neighbour_overlap_by_hand():
    a = np.array([[1, 2, 3], [4, 5, 6]])
    b = np.array([[3, 9, 1], [7, 8, 0]])
    assert np.allclose(neighbour_overlap(a, b), [2 / 4, 0.0])


def test_knn_overlap_matches_brute_force():
    g, _ = clustered(n=150, d=16, seed=5)
    rng = np.random.default_rng(6)
    p = g + 0.8 * rng.normal(size=g.shape).astype(np.float32)

    def nn(x, k):
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        d = -(x @ x.T).astype(np.float64)
        np.fill_diagonal(d, np.inf)  # self excluded (PPLR drops column 0)
        return np.argsort(d, axis=1)[:, :k]

    ng, npart = nn(g, 10), nn(p, 10)
    ref = [len(set(a) & set(b)) / len(set(a) | set(b)) for a, b in zip(ng, npart)]
    got = knn_overlap(g, p, k=10)
    assert np.allclose(got, ref) and got.dtype == np.float32
    assert np.allclose(knn_overlap(g, 2.0 * g, k=10), 1.0)
    assert 0.1 < got.mean() < 0.9


def test_cluster_overlap_matches_set_definition():
    rng = np.random.default_rng(7)
    g = rng.integers(-1, 6, 80)
    p = rng.integers(-1, 5, 80)
    ref = []
    for i in range(80):
        if g[i] < 0 or p[i] < 0:
            ref.append(0.0)
            continue
        gi, pi = set(np.flatnonzero(g == g[i])), set(np.flatnonzero(p == p[i]))
        ref.append(len(gi & pi) / len(gi | pi))
    assert np.allclose(cluster_overlap(g, p), ref)
    assert cluster_overlap([0, 0, 0, 1, 1, -1], [0, 0, 1, 1, 1, 0]).tolist() == pytest.approx(
        [2 / 4, 2 / 4, 1 / 5, 2 / 3, 2 / 3, 0.0])


def test_cross_agreement_is_mean_of_both_overlaps():
    g, lab = clustered(n=200, d=16, seed=8)
    parts = [g + s * np.random.default_rng(s).normal(size=g.shape).astype(np.float32) for s in (1, 2)]
    gl = np.asarray(lab)
    pls = [np.where(np.arange(200) % 7 == 0, -1, lab), (lab + 1) % 20]
    a = cross_agreement(g, parts, gl, pls, k=12, mode="mean")
    assert a.shape == (200, 2) and a.dtype == np.float32
    assert (a >= 0).all() and (a <= 1).all()
    for p in range(2):
        ref = 0.5 * (knn_overlap(g, parts[p], 12) + cluster_overlap(gl, pls[p]))
        assert np.allclose(a[:, p], ref)
    with pytest.raises(ValueError, match="part labellings"):
        cross_agreement(g, parts, gl, pls[:1])


def test_refine_global_labels_by_hand():
    g = np.array([3, 3, 3, 0, 0, 5, 5, -1])
    a = np.array([[.9, .1], [.2, .1], [.1, .3], [.5, .5], [.0, .1], [.6, .7], [.8, .9], [1, 1]], np.float32)
    # threshold .25: samples 1 (max .2) and 4 (max .1) drop; cluster 0 is left with one member -> dropped
    assert refine_global_labels(g, a, 0.25).tolist() == [0, -1, 0, -1, -1, 1, 1, -1]
    # min_agreement 0 keeps everybody (strict <); labels only renumbered
    assert refine_global_labels(g, a, 0.0).tolist() == [0, 0, 0, 1, 1, 2, 2, -1]
    assert refine_global_labels(g, a, 0.25, min_cluster_size=1).tolist() == [0, -1, 0, 1, -1, 2, 2, -1]
    with pytest.raises(ValueError, match="agreement must be"):
        refine_global_labels(g, a[:5], 0.1)


# ------------------------------------------------------------------------------- generator
@pytest.fixture(scope="module")
def four_spaces():
    rng = np.random.default_rng(9)
    ids, n, d = 25, 400, 24
    lab = np.repeat(np.arange(ids), n // ids)
    spaces = []
    for noise in (0.5, 0.9, 0.9, 0.9):
        c = rng.normal(size=(ids, d))
        spaces.append((c[lab] + noise * rng.normal(size=(n, d))).astype(np.float32))
    return spaces, lab


def test_generate_pseudo_labels_lgmr(four_spaces):
    (g, *parts), lab = four_spaces
    r = generate_pseudo_labels(g, parts, eps=0.6, min_samples=4, k1=30, k2=6, max_distance=0.9,
                               lgmr_enabled=True, lgmr_k=20, min_agreement=0.3)
    assert adjusted_rand_score(lab, r.labels_before_lgmr) > 0.9
    # neighbour agreement (the default) reads the part spaces' kNN lists, not their labels: not clustered
    assert r.part_labels == [] and r.agreement.shape == (400, 3) and "dbscan_part1" not in r.timings
    expected = refine_global_labels(r.labels_before_lgmr, r.agreement, 0.3)
    assert np.array_equal(r.labels, expected)
    ref_agree = cross_agreement(g, parts, r.labels_before_lgmr, [None] * 3, k=20)
    assert np.allclose(r.agreement, ref_agree)
    assert r.num_classes == r.labels.max() + 1
    assert sorted(r.centroids) == ["global", "part1", "part2", "part3"]
    for name, f in zip(["global", "part1", "part2", "part3"], [g, *parts]):
        assert np.allclose(r.centroids[name], cluster_centroids(f, r.labels))
    assert {"knn_global", "jaccard_global", "dbscan_global", "knn_part3", "lgmr", "total"} <= set(r.timings)
    # the global labels equal DBSCAN on the Jaccard distance computed on its own
    direct = cluster_dbscan(compute_jaccard_distance(g, 30, 6, 0.9), 0.6, 4)
    assert np.array_equal(direct, r.labels_before_lgmr)


def test_generate_pseudo_labels_without_lgmr(four_spaces):
    (g, *parts), lab = four_spaces
    r = generate_pseudo_labels(g, parts, lgmr_enabled=False, lgmr_k=500)  # lgmr_k unused when off
    assert r.part_labels == [] and np.array_equal(r.agreement, np.ones((400, 3), np.float32))
    assert np.array_equal(r.labels, r.labels_before_lgmr)
    assert set(r.centroids) == {"global", "part1", "part2", "part3"}
    assert "knn_part1" not in r.timings


def test_camera_norm_removes_camera_offsets():
    rng = np.random.default_rng(10)
    ids, n, d = 20, 400, 32
    lab = np.repeat(np.arange(ids), n // ids)
    cams = rng.integers(0, 4, n)
    centres = rng.normal(size=(ids, d))
    cam_bias = 4.0 * rng.normal(size=(4, d))  # camera dominates identity
    x = (centres[lab] + cam_bias[cams] + 0.4 * rng.normal(size=(n, d))).astype(np.float32)
    plain = generate_pseudo_labels(x, [], lgmr_enabled=False)
    normed = generate_pseudo_labels(x, [], lgmr_enabled=False, camera_norm=True, camids=cams)
    assert adjusted_rand_score(lab, normed.labels) > adjusted_rand_score(lab, plain.labels) + 0.3
    for bad in (None, cams[:-1]):  # missing, or one short: the error names the key that needs them
        with pytest.raises(ValueError, match="INCLR.CLUSTER.CAMERA_NORM True need.s. camids"):
            generate_pseudo_labels(x, [], lgmr_enabled=False, camera_norm=True, camids=bad)


def test_generate_rejects_inconsistent_input(four_spaces):
    (g, *parts), _ = four_spaces
    with pytest.raises(ValueError, match="rows but the global"):
        generate_pseudo_labels(g, [parts[0][:100]])
    with pytest.raises(ValueError, match="max_distance"):
        generate_pseudo_labels(g, parts, eps=0.7, max_distance=0.6)
    with pytest.raises(ValueError, match="part features"):
        generate_pseudo_labels(g, [], lgmr_enabled=True)


# ---------------------------------------------------------------- seams: clusterer, agreement mode, params
def test_a_new_clusterer_is_one_function_and_one_name(four_spaces):
    """generate_pseudo_labels calls the clusterer named by ClusterParams.method with the space's
    features; an unknown name is refused naming INCLR.CLUSTER.METHOD."""
    from inclr_fastreid.pseudo_labels import CLUSTERERS, ClusterParams, clusterer

    (g, *parts), lab = four_spaces
    seen = []

    @clusterer("truth_for_test")
    def _truth(space, params):  # labels from the planted identities, to see them come out
        seen.append((space.name, space.features.shape, params.method))
        return lab.astype(np.int64)

    try:
        r = generate_pseudo_labels(g, parts, method="truth_for_test", lgmr_enabled=True, min_agreement=0.0,
                                   agreement="mean")  # reads the part labels: every space is clustered
        assert [s[0] for s in seen] == ["global", "part1", "part2", "part3"]
        assert all(s[1] == (400, g.shape[1]) and s[2] == "truth_for_test" for s in seen)
        assert np.array_equal(r.labels_before_lgmr, lab)
        assert all(np.array_equal(p, lab) for p in r.part_labels)
    finally:
        del CLUSTERERS["truth_for_test"]
    with pytest.raises(ValueError, match="INCLR.CLUSTER.METHOD"):
        ClusterParams(method="truth_for_test")


def test_agreement_modes_mean_and_neighbour(four_spaces):
    """'neighbour' is PPLR's kNN-set overlap alone; 'mean' averages it with the cluster overlap."""
    (g, *parts), _ = four_spaces
    gl = cluster_dbscan(compute_jaccard_distance(g, 30, 6, 0.9), 0.6, 4)
    pls = [cluster_dbscan(compute_jaccard_distance(p, 30, 6, 0.9), 0.6, 4) for p in parts]
    nb = cross_agreement(g, parts, gl, pls, k=12, mode="neighbour")
    mean = cross_agreement(g, parts, gl, pls, k=12, mode="mean")
    for j, p in enumerate(parts):
        assert np.allclose(nb[:, j], knn_overlap(g, p, k=12))
        assert np.allclose(mean[:, j], 0.5 * (knn_overlap(g, p, k=12) + cluster_overlap(gl, pls[j])))
    with pytest.raises(ValueError, match="INCLR.LGMR.AGREEMENT"):
        cross_agreement(g, parts, gl, pls, k=12, mode="median")


def test_lgmr_defaults_are_pplrs_neighbour_overlap_and_no_dropped_sample(four_spaces):
    """docs/design.md §4.4: by default C_p(i) is the kNN-set overlap alone (PPLR's
    compute_cross_agreement) all the way from the config through ClusterParams to cross_agreement,
    and MIN_AGREEMENT 0 makes LGMR turn no clustered sample into an outlier; 'mean' stays an option."""
    import inspect

    from inclr_fastreid.config import setup_cfg
    from inclr_fastreid.engine.label_log import quality_record
    from inclr_fastreid.pseudo_labels import ClusterParams, cluster_params_from_cfg

    cfg = setup_cfg("", [])
    p = cluster_params_from_cfg(cfg)
    assert (cfg.INCLR.LGMR.AGREEMENT, p.agreement, ClusterParams().agreement) == ("neighbour",) * 3
    assert inspect.signature(cross_agreement).parameters["mode"].default == "neighbour"
    assert cfg.INCLR.LGMR.MIN_AGREEMENT == p.min_agreement == 0.0

    (g, *parts), lab = four_spaces
    r = generate_pseudo_labels(g, parts, p)
    assert np.allclose(r.agreement, np.stack([knn_overlap(g, q, k=20) for q in parts], 1))
    assert (r.agreement < 1).any() and (r.agreement.max(1) < 0.5).any()  # weak support is kept all the same
    before = r.labels_before_lgmr
    assert (before >= 0).sum() > 0.9 * len(before)
    assert np.array_equal(r.labels, relabel_by_first_occurrence(before))  # no new outliers, only renumbered
    mean = generate_pseudo_labels(g, parts, p, agreement="mean")
    assert not np.allclose(mean.agreement, r.agreement)

    # the label-quality log records the outliers before and after LGMR
    dropped = generate_pseudo_labels(g, parts, p, min_agreement=0.3)
    for res in (r, dropped):
        rec = quality_record(0, res, lab, 0.0, 0.0)
        assert rec["num_outliers_before_lgmr"] == int((res.labels_before_lgmr < 0).sum())
        assert rec["num_outliers"] == int((res.labels < 0).sum())
    rec = quality_record(0, dropped, lab, 0.0, 0.0)
    assert rec["num_outliers"] > rec["num_outliers_before_lgmr"] and "cross_camera_recall" not in rec
    from inclr_fastreid.pseudo_labels.quality import camera_pair_recall
    cams = np.arange(len(lab)) % 3
    rec = quality_record(0, dropped, lab, 0.0, 0.0, camids=cams)  # the labels trained on: after LGMR
    assert (rec["same_camera_recall"], rec["cross_camera_recall"]) == camera_pair_recall(dropped.labels, lab, cams)
