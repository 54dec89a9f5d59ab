"""k-means in torch where the features are (pseudo_labels/kmeans.py), the part spaces clustered only when a mode
reads their labels, CPU tensors giving the numpy path's labels, and the per-space progress log."""
import itertools
import logging

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from inclr_fastreid.pseudo_labels import (CLUSTERERS, cluster_dbscan, compute_jaccard_distance, generate_pseudo_labels,
                                          knn_overlap, refine_global_labels)
from inclr_fastreid.pseudo_labels.clustering import cluster_kmeans, relabel_by_first_occurrence
from inclr_fastreid.pseudo_labels.kmeans import kmeans, kmeans_plus_plus_torch, lloyd

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def spaces(n=300, ids=15, d=24, seed=0):
    """Global + 3 part spaces of the same identities, the parts noisier."""
    rng = np.random.default_rng(seed)
    lab = np.arange(n) % ids
    out = []
    for noise in (0.5, 0.9, 0.9, 0.9):
        c = rng.normal(size=(ids, d))
        out.append((c[lab] + noise * rng.normal(size=(n, d))).astype(np.float32))
    return out, lab


# ------------------------------------------------------------------------------- k-means++ and Lloyd
def _kpp_sequence_probability(x, seq):
    """P(k-means++ with one trial per centre picks the samples ``seq`` in order), by hand: first uniform, then each
    next one with probability d2 / sum(d2), d2 = squared distance to the nearest centre so far."""
    n = x.shape[0]
    prob = 1.0 / n
    d2 = ((x - x[seq[0]]) ** 2).sum(1)
    for s in seq[1:]:
        prob *= d2[s] / d2.sum()
        d2 = np.minimum(d2, ((x - x[s]) ** 2).sum(1))
    return prob


def test_pooled_kmeans_plus_plus_draws_from_the_current_distance_distribution():
    """With a pool of 2 the candidates come from stale pools by rejection: the sequences of seeds still follow
    k-means++'s own distribution, enumerated by hand over all ordered triples of 6 points."""
    x = np.array([[0, 0], [1, 0], [0, 2], [3, 3], [5, 0], [5, 1]], dtype=np.float64)
    xt = torch.from_numpy(x.astype(np.float32))
    runs = 4000
    counts = {}
    for seed in range(runs):
        c, _ = kmeans_plus_plus_torch(xt, 3, seed, trials=1, pool=2)
        seq = tuple(int(np.flatnonzero((x == c[i].numpy()).all(1))[0]) for i in range(3))
        counts[seq] = counts.get(seq, 0) + 1
    exact = {seq: _kpp_sequence_probability(x, seq) for seq in itertools.permutations(range(6), 3)}
    assert sum(exact.values()) == pytest.approx(1.0)
    assert set(counts) <= {s for s, p in exact.items() if p > 0}
    for seq, p in exact.items():  # binomial standard error, 4.5 sigma
        assert abs(counts.get(seq, 0) / runs - p) < 4.5 * np.sqrt(p * (1 - p) / runs) + 1e-3, seq


def test_greedy_seeding_takes_the_candidate_leaving_the_smallest_potential():
    """Greedy k-means++ on far-apart blobs seeds every blob once; one trial (plain k-means++) often does not."""
    rng = np.random.default_rng(1)
    centres = 50.0 * rng.normal(size=(20, 8))
    x = torch.from_numpy((centres[np.arange(400) % 20] + rng.normal(size=(400, 8))).astype(np.float32))
    blob = np.arange(400) % 20

    def blobs_hit(c):
        nearest = torch.cdist(c, x).argmin(dim=1).numpy()
        return len(set(blob[nearest].tolist()))

    assert all(blobs_hit(kmeans_plus_plus_torch(x, 20, s)[0]) == 20 for s in range(5))


def test_lloyd_equals_scikit_learn_from_the_same_start():
    """Same seeds in, scikit-learn's Lloyd (tol 1e-4, its stopping rules) and ours give the same labels and inertia."""
    (g, *_), _ = spaces(n=600, ids=30, d=32, seed=3)
    init = g[np.random.default_rng(0).choice(600, 24, replace=False)]
    ref = KMeans(24, init=init, n_init=1, tol=1e-4, max_iter=100, algorithm="lloyd").fit(g)
    labels, dmin, centres, it = lloyd(torch.from_numpy(g), torch.from_numpy(init.copy()))
    assert it > 2 and np.array_equal(labels.numpy(), ref.labels_)
    assert float(dmin.double().sum()) == pytest.approx(ref.inertia_, rel=1e-4)
    assert np.allclose(centres.numpy(), ref.cluster_centers_, atol=1e-4)


def test_an_empty_cluster_takes_the_sample_farthest_from_its_centre():
    """A start centre no sample is closest to gets the worst-served sample (scikit-learn's rule), so all k occur."""
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(size=(50, 4)), 10 + rng.normal(size=(50, 4))]).astype(np.float32)
    x[7] = [4.0, 4.0, 4.0, 4.0]  # the farthest from the first blob's centre
    init = np.stack([x[0], x[60], np.full(4, 1e3, np.float32)])  # the third centre is nobody's
    labels, _, centres, _ = lloyd(torch.from_numpy(x), torch.from_numpy(init))
    assert sorted(set(labels.numpy().tolist())) == [0, 1, 2]
    ref = KMeans(3, init=init, n_init=1, tol=1e-4, algorithm="lloyd").fit(x)
    assert np.array_equal(labels.numpy(), ref.labels_)


def test_kmeans_matches_scikit_learn_quality_and_is_deterministic():
    """Over 5 seeds, our greedy k-means++ leaves the potential scikit-learn's leaves, and k-means ends at the
    inertia scikit-learn's KMeans (MMT's) ends at (different random streams: single runs differ either way)."""
    from sklearn.cluster import kmeans_plusplus

    (g, *_), lab = spaces(n=600, ids=30, d=32, seed=4)

    def potential(c):
        return ((g[:, None] - c[None]) ** 2).sum(-1).min(1).sum()

    seeds = range(5)
    ours_seed = np.mean([potential(kmeans_plus_plus_torch(torch.from_numpy(g), 30, s)[0].numpy()) for s in seeds])
    ref_seed = np.mean([potential(kmeans_plusplus(g, 30, random_state=s)[0]) for s in seeds])
    runs = [kmeans(g, 30, seed=s) for s in seeds]
    ours = np.mean([r.inertia for r in runs])
    ref = np.mean([KMeans(30, n_init=1, random_state=s).fit(g).inertia_ for s in seeds])
    assert ours_seed < 1.05 * ref_seed and ours < 1.03 * ref
    assert np.mean([adjusted_rand_score(lab, r.labels) for r in runs]) > 0.8
    again = kmeans(g, 30, seed=4)
    assert np.array_equal(runs[4].labels, again.labels) and runs[4].inertia == again.inertia


def test_cluster_kmeans_takes_cpu_tensors_and_numpy_alike():
    (g, *_), _ = spaces(n=400, seed=6)
    a = cluster_kmeans(g, 15, seed=2)
    assert np.array_equal(a, cluster_kmeans(torch.from_numpy(g), 15, seed=2))
    assert np.array_equal(a, cluster_kmeans(torch.from_numpy(g).double(), 15, seed=2))
    assert np.array_equal(a, relabel_by_first_occurrence(a)) and set(a.tolist()) == set(range(15))
    with pytest.raises(ValueError, match="NaN"):
        cluster_kmeans(np.full((20, 4), np.nan, np.float32), 2)


# ------------------------------------------------------------------------------- only what is read
@pytest.fixture
def count_calls(monkeypatch):
    """Wrap every clusterer: the spaces it was called on, in order."""
    seen = []
    for name, fn in list(CLUSTERERS.items()):
        def wrapped(space, params, fn=fn):
            seen.append(space.name)
            return fn(space, params)
        monkeypatch.setitem(CLUSTERERS, name, wrapped)
    return seen


@pytest.mark.parametrize("method", ["dbscan", "kmeans"])
def test_under_lgmr_defaults_only_the_global_space_is_clustered_and_labels_are_as_before(count_calls, method):
    """Neighbour agreement reads the part spaces' kNN lists only: they are searched, not clustered, and the round's
    labels equal those of clustering the global space and refining with the kNN overlaps, computed here apart."""
    (g, *parts), _ = spaces(seed=7)
    kw = dict(method=method, num_clusters=15, k1=20, lgmr_k=10)
    for min_agreement in (0.0, 0.3):  # the threshold reads the agreement, and neighbour agreement reads no labels
        del count_calls[:]
        r = generate_pseudo_labels(g, parts, min_agreement=min_agreement, **kw)
        assert count_calls == ["global"] and r.part_labels == []
        assert {"knn_part1", "knn_part2", "knn_part3"} <= set(r.timings)
        assert not any(k.startswith(f"{method}_part") for k in r.timings)
        if method == "dbscan":
            before = cluster_dbscan(compute_jaccard_distance(g, 20, 6, 0.9), 0.6, 4)
        else:
            before = cluster_kmeans(g, 15, seed=1)
        agreement = np.stack([knn_overlap(g, p, k=10) for p in parts], 1)
        assert np.array_equal(r.labels_before_lgmr, before)
        assert np.allclose(r.agreement, agreement)
        assert np.array_equal(r.labels, refine_global_labels(before, agreement, min_agreement))


@pytest.mark.parametrize("method", ["dbscan", "kmeans"])
def test_a_mode_reading_part_labels_clusters_every_space(count_calls, method):
    (g, *parts), _ = spaces(seed=8)
    r = generate_pseudo_labels(g, parts, method=method, num_clusters=15, k1=20, lgmr_k=10, agreement="mean",
                               min_agreement=0.2)
    assert count_calls == ["global", "part1", "part2", "part3"] and len(r.part_labels) == 3
    assert {f"{method}_global", f"{method}_part3"} <= set(r.timings)


def test_eps_rule_auto_scores_every_space_but_clusters_parts_at_the_chosen_eps_only_when_read(count_calls):
    (g, *parts), _ = spaces(seed=9)
    kw = dict(eps_rule="auto", k1=20, lgmr_k=10, auto_coverage="clustered")
    nb = generate_pseudo_labels(g, parts, **kw)
    mean = generate_pseudo_labels(g, parts, agreement="mean", **kw)
    for r in (nb, mean):  # the grid is scored on every space either way
        assert {"jaccard_global", "jaccard_part1", "jaccard_part3"} <= set(r.timings)
    assert nb.part_labels == [] and "dbscan_part1" not in nb.timings
    assert len(mean.part_labels) == 3 and "dbscan_part1" in mean.timings
    assert nb.eps == mean.eps and np.array_equal(nb.labels_before_lgmr, mean.labels_before_lgmr)


# ------------------------------------------------------------------------------- torch input, progress log
@pytest.mark.parametrize("method", ["dbscan", "kmeans"])
def test_cpu_tensors_give_the_numpy_labels(method):
    (g, *parts), _ = spaces(seed=10)
    kw = dict(method=method, num_clusters=15, k1=20, lgmr_k=10, agreement="mean")
    a = generate_pseudo_labels(g, parts, **kw)
    b = generate_pseudo_labels(torch.from_numpy(g), [torch.from_numpy(p) for p in parts], **kw)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.agreement, b.agreement)
    assert all(np.array_equal(p, q) for p, q in zip(a.part_labels, b.part_labels))
    assert all(isinstance(v, np.ndarray) and np.array_equal(v, b.centroids[k]) for k, v in a.centroids.items())


def test_each_space_logs_its_start_and_end():
    (g, *parts), _ = spaces(seed=11)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log = logging.getLogger("fastreid.inclr_fastreid.pseudo_labels.generate")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        generate_pseudo_labels(g, parts, method="kmeans", num_clusters=15, k1=20, lgmr_k=10)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    lines = [r.getMessage() for r in records]
    for i, name in enumerate(["global", "part1", "part2", "part3"]):
        assert any(line.startswith(f"clustering: {name} {i + 1}/4 (") for line in lines), lines
        assert any(line.startswith(f"clustering: {name} {i + 1}/4 done in ") for line in lines), lines
    assert "kNN, then kmeans" in lines[0] and "kNN only" in lines[2]
    assert any(line.startswith("clustering: kmeans global in ") for line in lines), lines  # clustered after the kNN
    assert lines[-1].startswith("clustering: done in ")


# ------------------------------------------------------------------------------- CUDA, where there is one
@needs_cuda
def test_cuda_kmeans_runs_on_the_gpu_with_the_cpu_quality():
    (g, *_), lab = spaces(n=600, ids=30, d=32, seed=12)
    gpu = kmeans(torch.from_numpy(g).cuda(), 30, seed=5)
    cpu = kmeans(g, 30, seed=5)
    assert gpu.centres.is_cuda
    assert gpu.inertia == pytest.approx(cpu.inertia, rel=1e-3)
    assert adjusted_rand_score(cpu.labels, gpu.labels) > 0.99


@needs_cuda
@pytest.mark.parametrize("method", ["dbscan", "kmeans"])
def test_cuda_tensors_cluster_like_numpy(method):
    (g, *parts), _ = spaces(seed=13)
    kw = dict(method=method, num_clusters=15, k1=20, lgmr_k=10, agreement="mean")
    a = generate_pseudo_labels(g, parts, **kw)
    b = generate_pseudo_labels(torch.from_numpy(g).cuda(), [torch.from_numpy(p).cuda() for p in parts], **kw)
    assert adjusted_rand_score(a.labels, b.labels) > 0.99
    assert isinstance(b.labels, np.ndarray) and isinstance(b.centroids["part1"], np.ndarray)
    assert np.allclose(a.agreement, b.agreement, atol=0.05)
