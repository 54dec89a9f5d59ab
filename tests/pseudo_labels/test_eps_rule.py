"""INCLR.CLUSTER.EPS_RULE auto (docs/design.md §4.3.1): DBSCAN's eps chosen without labels, as the grid
eps at which the global and part spaces' clusterings agree most; never an N x N dense array."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from inclr_fastreid.benchmarking.eps_rules import (agreement_at_same_eps, choose_k1_eps, compare_eps_rules, one_se_index,
                                                   one_se_pick, teacher_agreement)
from inclr_fastreid.pseudo_labels import (ClusterParams, cluster_dbscan, compute_jaccard_distance,
                                          generate_pseudo_labels, pairwise_prf)
from inclr_fastreid.pseudo_labels.eps_grid import (clustered_share, clustering_agreement, coverage_over_grid,
                                                   cross_space_agreement, dbscan_by_components, is_partition, k_distance,
                                                   k_distance_knee, labels_over_grid, multi_camera_share, per_view_agreement)
from inclr_fastreid.pseudo_labels.eps_rule import choose_eps
from inclr_fastreid.pseudo_labels.quality import camera_pair_recall

from tests.helpers import ROOT
from tests.helpers.features import identities
from tests.helpers.scripts import load_script

GRID = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)


# ------------------------------------------------------------------------------- the pieces, by hand
def test_clustering_agreement_by_hand():
    # a = {01}{23}; b = {01}, 2 and 3 outliers -> singletons. Pairs: sum C(n_ij,2) = 1, rows 2, cols 1, C(4,2) = 6:
    # expected 2*1/6 = 1/3, max (2+1)/2 = 3/2, ARI = (1 - 1/3) / (3/2 - 1/3) = 4/7
    assert clustering_agreement(np.array([0, 0, 1, 1]), np.array([0, 0, -1, -1])) == pytest.approx(4 / 7)
    assert clustering_agreement(np.array([0, 0, 1, 1]), np.array([5, 5, 2, 2])) == pytest.approx(1.0)
    assert clustering_agreement(-np.ones(6, int), -np.ones(6, int)) == 0.0  # nothing to agree on: not 1
    # two spaces that each lump nearly everything, but not the same samples, agree by chance only
    rng = np.random.default_rng(0)
    a, b = np.zeros(2000, int), np.zeros(2000, int)
    a[rng.choice(2000, 200, replace=False)] = -1
    b[rng.choice(2000, 200, replace=False)] = -1
    assert abs(clustering_agreement(a, b)) < 0.05


def _slow_cross_camera_ari(a, b, cams):
    """The cross-camera agreement from its definition: loop over the pairs i < j of different cameras."""
    same_a, same_b = [], []
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            if cams[i] != cams[j]:
                same_a.append(a[i] >= 0 and a[i] == a[j])
                same_b.append(b[i] >= 0 and b[i] == b[j])
    x, y = np.array(same_a), np.array(same_b)
    rows, cols, joint, total = x.sum(), y.sum(), (x & y).sum(), x.size
    if rows == 0 or cols == 0:
        return 0.0
    expected = rows * cols / total
    return (joint - expected) / ((rows + cols) / 2 - expected)


def test_cross_camera_agreement_equals_the_pair_loop_and_ari_when_every_image_is_its_own_camera():
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(3)
    for trial in range(20):
        n = 40
        a, b = rng.integers(-1, 6, n), rng.integers(-1, 4, n)
        cams = rng.choice([3, 7, 11], n)  # any camera ids
        assert clustering_agreement(a, b, camids=cams) == pytest.approx(_slow_cross_camera_ari(a, b, cams), abs=1e-12)
        # one camera per image: every pair is a cross-camera pair, so it is the plain ARI (outliers singletons)
        single = lambda lab: np.where(lab >= 0, lab, -np.arange(1, n + 1))  # noqa: E731
        assert clustering_agreement(a, b, camids=np.arange(n)) == pytest.approx(
            adjusted_rand_score(single(a), single(b)), abs=1e-12)
    # clusters that never cross a camera: full agreement over all pairs, nothing to agree on across cameras
    a = np.array([0, 0, 1, 1, 2, 2])
    cams = np.array([0, 0, 1, 1, 0, 0])
    assert clustering_agreement(a, a) == pytest.approx(1.0)
    assert clustering_agreement(a, a, camids=cams) == 0.0
    with pytest.raises(ValueError, match="one entry per sample"):
        clustering_agreement(a, a, camids=cams[:4])


def camera_looks(ids=100, per_id=16, cams=4, look=1.2, spread=0.5, parts=3, dim=64, seed=0):
    """Identities whose images look different under each camera (an identity-specific offset per camera,
    shared by nothing else): at a small eps each space finds the (identity, camera) groups and the spaces
    agree on them; the identities only appear at a larger eps that joins the cameras."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(ids), per_id)
    cam = rng.integers(0, cams, labels.size)
    spaces = []
    for s in range(1 + parts):
        ctr = rng.standard_normal((ids, dim))
        ctr /= np.linalg.norm(ctr, axis=1, keepdims=True)
        off = rng.standard_normal((ids, cams, dim))
        off *= look / np.linalg.norm(off, axis=2, keepdims=True)
        x = ctr[labels] + off[labels, cam] + rng.standard_normal((labels.size, dim)) * (spread * (1 + 0.15 * (s > 0)) / np.sqrt(dim))
        spaces.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return spaces, labels, cam


def test_cross_camera_agreement_finds_the_identities_where_all_pairs_find_the_camera_groups():
    """The agreement over cross-camera pairs alone (the benchmark's ``auto_xcam``; the config's AUTO_PAIRS
    cross_camera was removed) peaks at the identities where the agreement over all pairs peaks at the groups."""
    spaces, ids, cam = camera_looks()
    dists = {name: compute_jaccard_distance(x, 30, 6, 0.9)
             for name, x in zip(["global", "part1", "part2", "part3"], spaces)}
    grid_labels = {k: labels_over_grid(d, GRID, 4) for k, d in dists.items()}
    f = np.array([pairwise_prf(lab, ids)[2] for lab in grid_labels["global"]])
    all_pairs = int(np.argmax(cross_space_agreement(grid_labels)))
    cross = int(np.argmax(cross_space_agreement(grid_labels, camids=cam)))
    assert f[all_pairs] < 0.6 * f.max()  # the planted trap: the spaces agree on the camera groups
    assert f[cross] >= 0.95 * f.max() and GRID[cross] > GRID[all_pairs]


def test_coverage_by_hand():
    labels = np.array([0, 0, 1, 1, -1, 2, 2, 2, 3, 3])
    cams = np.array([10, 11, 10, 10, 11, 12, 12, 13, 12, 10])  # clusters 0, 3: two cameras; 1: one; 2 (the largest)
    assert multi_camera_share(labels, cams) == pytest.approx(4 / 10)  # 0 and 3; the largest never counts
    assert clustered_share(labels) == pytest.approx(6 / 10)  # 9 clustered minus the largest's 3
    assert multi_camera_share(np.full(4, -1), np.arange(4)) == 0.0 and clustered_share(np.full(4, -1)) == 0.0
    one = np.zeros(10, dtype=np.int64)  # everything chained into one cluster: covers nothing
    assert multi_camera_share(one, cams) == 0.0 and clustered_share(one) == 0.0
    grid = np.stack([labels, one])
    assert coverage_over_grid(grid, "multi_camera", cams).tolist() == pytest.approx([4 / 10, 0.0])
    assert coverage_over_grid(grid, "clustered").tolist() == pytest.approx([6 / 10, 0.0])
    # a single camera has no cross-camera cluster at any eps: fall back to the clustered share
    assert coverage_over_grid(grid, "multi_camera", np.zeros(10)).tolist() == pytest.approx([6 / 10, 0.0])
    with pytest.raises(ValueError, match="needs camids"):
        coverage_over_grid(grid, "multi_camera")
    for gone in ("camera", "none"):  # none (the agreement alone) was removed from AUTO_COVERAGE
        with pytest.raises(ValueError, match=f"coverage '{gone}'"):
            coverage_over_grid(grid, gone, cams)


def test_a_scale_that_chains_everything_into_one_cluster_corroborates_nothing():
    """At a too-large eps every space is one cluster (plus a few outliers): the two agree exactly, but
    such a scale is no partition of the identities, so the agreement alone must not pick it."""
    truth = np.repeat(np.arange(4), 3)
    part = truth.copy()
    part[[2, 5]] = part[[3, 6]]  # the part space at eps 1 mixes two images across identities
    one = np.zeros(12, dtype=np.int64)
    one_out = one.copy()
    one_out[7] = -1  # one cluster and an outlier: still fewer than two clusters
    grid = {"global": np.stack([truth, one, one_out]), "part1": np.stack([part, one, one_out])}
    agree = cross_space_agreement(grid)
    assert agree[0] == pytest.approx(clustering_agreement(truth, part)) and 0 < agree[0] < 1
    assert agree[1:].tolist() == [0.0, 0.0] and int(np.argmax(agree)) == 0
    assert choose_eps(grid, (0.3, 0.7, 0.8), coverage="clustered").eps == 0.3
    assert clustering_agreement(one, one) == pytest.approx(1.0)  # the pairwise ARI itself keeps its convention


def test_multi_camera_coverage_finds_identities_that_agreement_alone_splits_by_camera():
    """Dense (identity, camera) groups: every image is clustered at a small eps, the views agree on the
    groups there (agreement ~1) and on the identities at a larger eps. Agreement alone, and agreement
    times the clustered share, take the one-camera fragments; weighting by the share of images in
    multi-camera clusters takes the identities."""
    spaces, ids, cam = camera_looks(ids=60, per_id=32, look=1.0)
    dists = {name: compute_jaccard_distance(x, 30, 6, 0.9)
             for name, x in zip(["global", "part1", "part2", "part3"], spaces)}
    grid_labels = {k: labels_over_grid(d, GRID, 4) for k, d in dists.items()}
    f = np.array([pairwise_prf(lab, ids)[2] for lab in grid_labels["global"]])
    assert f[int(np.argmax(cross_space_agreement(grid_labels)))] < 0.5 * f.max()  # the agreement alone
    assert f[choose_eps(grid_labels, GRID, camids=cam, coverage="clustered").index] < 0.5 * f.max()
    multi = choose_eps(grid_labels, GRID, camids=cam, coverage="multi_camera")
    assert f[multi.index] >= 0.95 * f.max() and multi.criterion == "cross_space_agreement_x_multi_camera_share"
    # through the config's default
    r = generate_pseudo_labels(spaces[0], spaces[1:], ClusterParams(eps_rule="auto", eps_grid=GRID), camids=cam)
    assert r.eps == multi.eps
    with pytest.raises(ValueError, match="AUTO_COVERAGE multi_camera need"):
        generate_pseudo_labels(spaces[0], spaces[1:], ClusterParams(eps_rule="auto", eps_grid=GRID))


def test_k_distance_and_knee_by_hand():
    # 0-1-2-3 a chain at 0.1; 4 joined to 3 at 0.7; 5 stored nowhere (distance 1)
    rows, cols, vals = [0, 1, 2, 3], [1, 2, 3, 4], [0.1, 0.1, 0.1, 0.7]
    d = sp.coo_matrix((vals + vals, (rows + cols, cols + rows)), shape=(6, 6)).tocsr()
    d.setdiag(0.0)  # stored self-distances are skipped
    assert np.allclose(k_distance(d, 1), [0.1, 0.1, 0.1, 0.1, 0.7, 1.0])
    assert np.allclose(k_distance(d, 2), [1.0, 0.1, 0.1, 0.7, 1.0, 1.0])
    # sorted curve (1-distance, < 1): 0.1 0.1 0.1 0.1 0.7; farthest below the chord: the last 0.1
    assert k_distance_knee(d, min_samples=2) == pytest.approx(0.1)


def test_dbscan_by_components_equals_scikit_learn_on_core_points():
    spaces, _ = identities(ids=60, spread=1.2)
    d = compute_jaccard_distance(spaces[0], 20, 6, 0.9)
    for eps in (0.25, 0.45, 0.6, 0.8):
        ours, ref = dbscan_by_components(d, eps, 4), cluster_dbscan(d, eps, 4)
        within = d.tocoo()
        keep = (within.data <= eps) & (within.row != within.col)
        core = np.bincount(within.row[keep], minlength=d.shape[0]) + 1 >= 4  # itself included; structure of stored pairs <= eps
        assert np.array_equal(ours < 0, ref < 0), eps  # the same outliers
        assert clustering_agreement(ours[core], ref[core]) == pytest.approx(1.0), eps  # the same core partition
        assert clustering_agreement(ours, ref) > 0.99, eps  # borders: scikit-learn takes the first cluster to reach them
    assert labels_over_grid(d, GRID, 4).shape == (len(GRID), d.shape[0])


# ------------------------------------------------------------------------------- the planted scale
def test_auto_picks_the_planted_scale_without_labels():
    """Compact identities (7 images each): eps 0.6 chains look-alikes (F ~0.5); the identities are
    recovered (F > 0.95) only at eps <= 0.4. auto finds that scale from the spaces' agreement alone."""
    spaces, ids = identities()
    dists = {name: compute_jaccard_distance(x, 30, 6, 0.9)
             for name, x in zip(["global", "part1", "part2", "part3"], spaces)}
    grid_labels = {k: labels_over_grid(d, GRID, 4) for k, d in dists.items()}
    f = np.array([pairwise_prf(lab, ids)[2] for lab in grid_labels["global"]])
    good = {e for e, fe in zip(GRID, f) if fe > 0.95}
    assert f[GRID.index(0.6)] < 0.7 and good and max(good) <= 0.4  # the planted answer
    assert GRID[int(np.argmax(cross_space_agreement(grid_labels)))] in good  # the agreement alone finds it
    _, _, cams = identities(with_cams=True)
    choice = choose_eps(grid_labels, GRID, camids=cams, coverage="multi_camera")  # the default weighting
    assert choice.criterion == "cross_space_agreement_x_multi_camera_share" and len(choice.scores) == len(GRID)
    assert choice.eps in good
    # and a looser case (spread 1.2): the best eps moves up; auto follows it
    spaces, ids = identities(spread=1.2, seed=1)
    dists = {name: compute_jaccard_distance(x, 30, 6, 0.9)
             for name, x in zip(["global", "part1", "part2", "part3"], spaces)}
    grid_labels = {k: labels_over_grid(d, GRID, 4) for k, d in dists.items()}
    f = np.array([pairwise_prf(lab, ids)[2] for lab in grid_labels["global"]])
    assert GRID[int(np.argmax(f))] >= 0.4 and f[int(np.argmax(cross_space_agreement(grid_labels)))] >= 0.9 * f.max()
    _, _, cams = identities(spread=1.2, seed=1, with_cams=True)
    assert f[choose_eps(grid_labels, GRID, camids=cams, coverage="multi_camera").index] >= 0.9 * f.max()


def test_generate_auto_clusters_every_space_at_the_chosen_eps_and_reports_the_grid():
    spaces, ids, cams = identities(ids=60, with_cams=True)
    p = ClusterParams(eps_rule="auto", eps_grid=GRID, k1=20, lgmr_k=10)
    r = generate_pseudo_labels(spaces[0], spaces[1:], p, camids=cams)
    assert r.eps_choice["criterion"] == "cross_space_agreement_x_multi_camera_share" and r.eps_choice["grid"] == list(GRID)
    assert r.eps == r.eps_choice["eps"] and r.eps <= 0.4 and len(r.eps_choice["scores"]) == len(GRID)
    # the logged factors are the rule's own, recomputed here from the spaces' grid clusterings
    grid_labels = {k: labels_over_grid(compute_jaccard_distance(x, 20, 6, 0.9), GRID, 4)
                   for k, x in zip(["global", "part1", "part2", "part3"], spaces)}
    assert r.eps_choice["coverage"] == pytest.approx(coverage_over_grid(grid_labels["global"], "multi_camera", cams), abs=1e-4)
    assert r.eps_choice["agreement"] == pytest.approx(cross_space_agreement(grid_labels), abs=1e-4)
    assert r.eps_choice["scores"] == pytest.approx(np.multiply(r.eps_choice["agreement"], r.eps_choice["coverage"]), abs=2e-4)
    fixed = generate_pseudo_labels(spaces[0], spaces[1:], p, eps=r.eps, camids=cams)  # an eps override is taken as is
    assert fixed.eps_choice is None
    assert np.array_equal(r.labels, fixed.labels) and np.array_equal(r.labels_before_lgmr, fixed.labels_before_lgmr)
    assert "eps_auto" in r.timings and "eps_auto" not in fixed.timings
    # LGMR off: the part spaces still vote on eps (same choice), but only the global space is clustered for labels
    off = generate_pseudo_labels(spaces[0], spaces[1:], p, lgmr_enabled=False, camids=cams)
    assert off.eps_choice == r.eps_choice and off.part_labels == [] and "dbscan_part1" not in off.timings
    assert np.array_equal(off.labels, r.labels_before_lgmr)
    # without part spaces: the k-distance knee of the global space, snapped to the grid
    one = generate_pseudo_labels(spaces[0], [], p, lgmr_enabled=False, camids=cams)
    knee = k_distance_knee(compute_jaccard_distance(spaces[0], 20, 6, 0.9), 4)
    assert one.eps_choice["criterion"] == "k_distance_knee" and one.eps_choice["select"] == "knee"
    assert one.eps == GRID[int(np.argmin(np.abs(np.array(GRID) - knee)))]


def test_per_view_agreement_equals_a_slow_reference():
    """Row v, column g: the best ARI of the global clustering at g with view v's at any grid eps; 0 where
    either side is no partition; the mean over the rows is cross_space_agreement."""
    spaces, ids, cams = identities(ids=30, per_id=6, spread=1.1, with_cams=True)
    grid = (0.3, 0.45, 0.6, 0.75, 0.8)
    gl = {name: labels_over_grid(compute_jaccard_distance(x, 20, 6, 0.9), grid, 4)
          for name, x in zip(["global", "part1", "part2"], spaces)}
    for cam in (None, cams):
        ref = np.array([[max([clustering_agreement(a, b, cam) for b in gl[v] if is_partition(b)], default=0.0)
                         if is_partition(a) else 0.0 for a in gl["global"]] for v in ("part1", "part2")])
        got = per_view_agreement(gl, camids=cam)
        assert got.shape == (2, len(grid)) and np.allclose(got, ref)
        assert np.allclose(cross_space_agreement(gl, camids=cam), ref.mean(0))


# ------------------------------------------------------------------------------- the hook
@pytest.mark.parametrize("camera_norm", [False, True])
def test_hook_warns_when_auto_runs_on_raw_features(items, fastreid_warnings, camera_norm):
    """auto without CAMERA_NORM lost on adaptation on both synthetic targets (README): the hook says so,
    naming the key; with the standardisation, and for the fixed rule, it says nothing."""
    from tests.helpers.hook import make_hook

    make_hook(items, **{"INCLR.CLUSTER.METHOD": "dbscan", "INCLR.CLUSTER.EPS_RULE": "auto",
                        "INCLR.CLUSTER.CAMERA_NORM": camera_norm})
    make_hook(items, **{"INCLR.CLUSTER.METHOD": "dbscan", "INCLR.CLUSTER.EPS_RULE": "fixed"})
    warned = [r for r in fastreid_warnings.records if "INCLR.CLUSTER.CAMERA_NORM" in r.getMessage()]
    assert len({id(r) for r in warned}) == (0 if camera_norm else 1)  # one record (the handler may see it twice)


# ------------------------------------------------------------------------------- no dense N x N
def test_auto_rule_holds_nothing_n_by_n_under_a_memory_limit():
    """N = 60,000 with 1.5 GB of address space to spare: a dense N x N array of even one byte (3.6 GB)
    cannot be allocated there (checked first), yet the grid, the agreement and the knee all run."""
    code = textwrap.dedent("""
        import resource, numpy as np, scipy.sparse as sp
        from inclr_fastreid.pseudo_labels.eps_grid import k_distance_knee, labels_over_grid
        from inclr_fastreid.pseudo_labels.eps_rule import choose_eps
        n, size = 60000, 10
        rng = np.random.default_rng(0)
        def space(seed):
            r = np.random.default_rng(seed)
            ids = np.arange(n) // size
            rows = np.repeat(np.arange(n), size)
            cols = (ids[:, None] * size + np.arange(size)[None, :]).ravel()
            vals = r.uniform(0.1, 0.5, rows.size)
            link = r.integers(0, n, (n, 2))  # a few cross-identity pairs at 0.6-0.85
            rows = np.concatenate([rows, np.repeat(np.arange(n), 2)])
            cols = np.concatenate([cols, link.ravel()])
            vals = np.concatenate([vals, r.uniform(0.6, 0.85, 2 * n)])
            d = sp.coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsr()
            d = d.maximum(d.T).tocsr()
            d.setdiag(0.0)
            return d
        dists = {"global": space(1), "part1": space(2)}
        vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize")) * 1024
        limit = vm + int(1.5 * 2 ** 30)  # what the process maps already (imports, the matrices) + 1.5 GB
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            np.ones((n, n), dtype=np.bool_)
            raise SystemExit("the limit does not stop a dense N x N array")
        except MemoryError:
            pass
        grid = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
        labels = {k: labels_over_grid(d, grid, 4) for k, d in dists.items()}
        choice = choose_eps(labels, grid, camids=np.arange(n) % 6, coverage="multi_camera")
        knee = k_distance_knee(dists["global"], 4)
        print("OK", choice.eps, round(knee, 3), labels["global"][grid.index(choice.eps)].max() + 1)
    """)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    ok = out.stdout.split()
    assert ok[0] == "OK" and 0.5 <= float(ok[1]) < 0.6 and int(ok[3]) == 6000  # the 6,000 planted identities


# ------------------------------------------------------------------------------- the tools
def test_benchmark_and_cluster_quality_compare_the_rules_on_dumped_features(tmp_path, capsys):
    """A feature file as ``cluster_quality.py --dump-features`` writes it feeds ``benchmark_eps_rule.py
    --features``; ``cluster_quality``'s side-by-side table names every rule; the oracle is the best grid F."""
    import types

    bench, cluster_quality = load_script("benchmarks/benchmark_eps_rule.py"), load_script("tools/cluster_quality.py")
    spaces, ids = identities(ids=40)
    path = tmp_path / "feats.npz"
    np.savez(path, ids=ids, camids=np.zeros_like(ids), **{k: v for k, v in zip(["global", "part1", "part2", "part3"],
                                                                              spaces)})
    loaded, loaded_ids = bench.load_features(str(path))
    lower = np.repeat(np.arange(5), [2, 9, 4, 12, 7])  # --cap-per-id: at most N images of each identity
    for cap in (3, 7):
        keep = bench.cap_per_identity(lower, cap, seed=1)
        assert np.all(np.diff(keep) > 0) and np.array_equal(np.bincount(lower[keep]), np.minimum([2, 9, 4, 12, 7], cap))
    assert sorted(loaded) == ["global", "part1", "part2", "part3"] and np.array_equal(loaded_ids, ids)
    cams = np.arange(ids.size) % 3
    r = compare_eps_rules(loaded, loaded_ids, GRID, cams, k1=20)
    assert bench.f_of(r, "oracle") == pytest.approx(max(r["f_grid"])) and bench.f_of(r, "oracle") >= bench.f_of(r, "auto")
    assert r["oracle"]["eps"] in GRID and r["auto"]["eps"] == r["choice"]["eps"] and r["fixed"]["eps"] == 0.6
    assert "auto_xcam" not in r
    rx = compare_eps_rules(loaded, loaded_ids, GRID, cams, k1=20, cross_camera=True)  # --cross-camera
    grid_labels = {k: labels_over_grid(compute_jaccard_distance(v, 20, 6, 0.9), GRID, 4) for k, v in loaded.items()}
    assert rx["auto_xcam"]["eps"] == GRID[int(np.argmax(cross_space_agreement(grid_labels, camids=cams)))]
    auto = choose_eps(grid_labels, GRID, camids=cams, coverage="multi_camera")
    assert rx["auto"]["eps"] == auto.eps
    assert rx["agree"]["eps"] == GRID[int(np.argmax(cross_space_agreement(grid_labels)))]
    rc = compare_eps_rules(loaded, loaded_ids, GRID, cams, k1=20, candidates=True)  # --candidates
    assert rc["oneSE"]["eps"] == GRID[one_se_index(np.asarray(auto.per_view))]
    two = {k: loaded[k] for k in ("global", "part1")}  # one part view: oneSE is the best score, as auto
    r2 = compare_eps_rules(two, loaded_ids, GRID, cams, k1=20, candidates=True)
    assert r2["oneSE"]["eps"] == r2["auto"]["eps"] == choose_eps({k: grid_labels[k] for k in two}, GRID, camids=cams,
                                                                 coverage="multi_camera").eps
    assert rx["choice"]["criterion"] == "cross_space_agreement_x_multi_camera_share"
    for rule in ("auto", "agree", "auto_xcam", "fixed", "oracle", "mmt"):
        assert rx[rule]["cross_cam_recall"] == camera_pair_recall(rx[rule]["labels"], ids, cams)[1]
    cluster = types.SimpleNamespace(EPS_GRID=list(GRID), K1=20, K2=6, MIN_SAMPLES=4, MAX_DISTANCE=0.9, EPS=0.6,
                                    RHO=1.6e-3, CAMERA_NORM=False, AUTO_COVERAGE="clustered", K1_RULE="fixed",
                                    K1_PER_SIZE=1.5, K1_MIN=10)
    cfg = types.SimpleNamespace(INCLR=types.SimpleNamespace(CLUSTER=cluster, LGMR=types.SimpleNamespace(ENABLED=True)))
    feats = {k: torch.from_numpy(v) for k, v in loaded.items()}
    cluster_quality.print_eps_rules(cfg, feats, ["part1", "part2", "part3"], ids, cams)
    out = capsys.readouterr().out
    for row in ("| auto (no labels) |", "| auto, agreement alone", "| fixed EPS | 0.600 |", "| mmt (RHO",
                "| oracle (grid, labels) |"):
        assert row in out
    assert "cross_space_agreement_x_clustered_share, max," in out  # INCLR.CLUSTER.AUTO_COVERAGE reaches the rule
    assert "K1_RULE size" not in out
    # K1_RULE size: two more rows, auto and the oracle at the k1 the rule takes (as compare_eps_rules' k1size)
    cluster.K1_RULE, cluster.AUTO_COVERAGE = "size", "multi_camera"
    cluster_quality.print_eps_rules(cfg, feats, ["part1", "part2", "part3"], ids, cams)
    out = capsys.readouterr().out
    rk = compare_eps_rules(loaded, loaded_ids, GRID, cams, k1=20, k1_size=True)
    k, m = rk["k1size"]["k1"], rk["k1size"]["median_size"]
    assert f"| auto at k1 {k} (K1_RULE size: median cluster size {m:g} at K1 20) | {rk['k1size']['eps']:.3f} |" in out
    assert f"| oracle at k1 {k} (grid, labels) | {rk['k1size_oracle']['eps']:.3f} |" in out


def test_camera_split_counts_pairs_by_hand():
    """research/camera_split.py: identity 0 = images on cameras (0, 0, 1), identity 1 = (2, 3); labels join
    0's two camera-0 images and 1's pair, put 0's camera-1 image alone: same-camera pairs 1/1 joined,
    cross-camera pairs 1 of 3 (0's two cross pairs apart, 1's joined); clusters: one single-camera of two."""
    camera_split = load_script("research/camera_split.py")
    ids, cams, labels = np.array([0, 0, 0, 1, 1]), np.array([0, 0, 1, 2, 3]), np.array([5, 5, -1, 7, 7])
    assert camera_pair_recall(labels, ids, cams) == (1.0, pytest.approx(1 / 3))
    assert camera_split.single_camera_share(labels, cams) == 0.5


def _slow_camera_pair_recall(labels, ids, cams):
    """The obvious reference: every pair of every identity, one at a time."""
    got, tot = {True: 0, False: 0}, {True: 0, False: 0}
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            if ids[i] == ids[j]:
                same = bool(cams[i] == cams[j])
                tot[same] += 1
                got[same] += int(labels[i] >= 0 and labels[i] == labels[j])
    return got[True] / max(tot[True], 1), got[False] / max(tot[False], 1)


def test_camera_pair_recall_equals_the_pair_loop():
    from inclr_fastreid.pseudo_labels.quality import camera_pair_recall

    rng = np.random.default_rng(3)
    for _ in range(5):
        n = 150
        ids, cams = rng.integers(0, 12, n), rng.integers(0, 4, n) * 7 + 3  # any camera ids
        labels = np.where(rng.random(n) < 0.15, -1, rng.integers(0, 9, n))
        fast, slow = camera_pair_recall(labels, ids, cams), _slow_camera_pair_recall(labels, ids, cams)
        assert fast == pytest.approx(slow, abs=1e-12)
    with pytest.raises(ValueError, match="one entry per sample"):
        camera_pair_recall(labels, ids[:-1], cams)


def test_cluster_quality_clusters_as_the_config_unless_told_otherwise():
    """``cluster_quality.py`` without ``--camera-norm`` clusters the way a run with the config would (the
    synthetic config standardises per camera); the flag overrides it."""
    cluster_quality = load_script("tools/cluster_quality.py")
    pick = cluster_quality.camera_norm_settings
    assert pick(None, True) == [True] and pick(None, False) == [False]
    assert pick("off", True) == [False] and pick("on", False) == [True] and pick("both", True) == [False, True]


def test_cluster_quality_eps_table_clusters_at_the_eps_it_names_under_an_auto_config():
    """The synthetic config chooses eps and k1 itself (EPS_RULE auto, K1_RULE size); the eps / k1 table of
    ``cluster_quality.py`` must still cluster each row at the eps and k1 it prints (EPS_RULE and K1_RULE fixed)."""
    from inclr_fastreid.config import setup_cfg
    from inclr_fastreid.pseudo_labels import cluster_params_from_cfg

    cluster_quality = load_script("tools/cluster_quality.py")
    cfg = setup_cfg(os.path.join(ROOT, "configs", "INCLR", "synthetic.yml"), ["INCLR.CLUSTER.K1", "20"])
    assert (cfg.INCLR.CLUSTER.EPS_RULE, cfg.INCLR.CLUSTER.K1_RULE) == ("auto", "size")
    spaces, ids, cams = identities(ids=48, spread=1.1, with_cams=True)
    feats = {k: torch.from_numpy(v) for k, v in zip(["global", "part1", "part2", "part3"], spaces)}
    rows = cluster_quality.eps_table_rows(cfg, feats, ["part1", "part2", "part3"], ids, cams, [0.25, 0.7], [20], [True])
    for eps, k1, cam, k, outliers, q in rows:
        p = cluster_params_from_cfg(cfg, eps=eps, k1=k1, camera_norm=cam, eps_rule="fixed", k1_rule="fixed")
        ref = generate_pseudo_labels(spaces[0], spaces[1:], p, camids=cams)
        assert ref.k1 == k1 and (k, outliers) == (ref.num_classes, ref.num_outliers)
        assert q["pairwise_fscore"] == pytest.approx(pairwise_prf(ref.labels, ids)[2])
    assert rows[0][3:5] != rows[1][3:5]  # the two scales differ, so an ignored eps would show


def test_benchmark_camera_norm_clusters_the_camera_standardised_features(tmp_path, capsys, monkeypatch):
    """``benchmark_eps_rule.py --camera-norm`` scores the features ``CLUSTER.CAMERA_NORM True`` would cluster:
    each case's F(auto) is that of :func:`compare_eps_rules` on ``camera_normalize``d spaces; with a strong
    planted camera offset that raises the label F (without it the clusters follow the cameras)."""
    bench = load_script("benchmarks/benchmark_eps_rule.py")
    from inclr_fastreid.pseudo_labels import camera_normalize

    spaces, ids, cams = identities(ids=48, per_id=8, spread=0.6, with_cams=True)
    rng = np.random.default_rng(3)
    off = rng.standard_normal((6, spaces[0].shape[1]))
    off *= 1.2 / np.linalg.norm(off, axis=1, keepdims=True)  # a camera cast larger than an identity's spread
    shifted = [(x + off[cams]) / np.linalg.norm(x + off[cams], axis=1, keepdims=True) for x in spaces]
    named = dict(zip(["global", "part1", "part2", "part3"], [s.astype(np.float32) for s in shifted]))
    path = tmp_path / "cast.npz"
    np.savez(path, ids=ids, camids=cams, **named)
    f_auto = {}
    for flag in ([], ["--camera-norm"]):
        monkeypatch.setattr(sys, "argv", ["benchmark_eps_rule.py", "--features", str(path)] + flag)
        bench.main()
        row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| cast.npz")]
        assert len(row) == 1 and (("camera-norm" in row[0]) == bool(flag))
        f_auto[bool(flag)] = float(row[0].split("|")[3])
    normed = {k: camera_normalize(v, cams) for k, v in named.items()}
    expect = compare_eps_rules(normed, ids, GRID, cams)
    assert f_auto[True] == pytest.approx(bench.f_of(expect, "auto"), abs=6e-4)
    assert f_auto[True] > f_auto[False] + 0.2


def test_benchmark_draws_score_each_capped_subset_and_summarise_the_ratio(tmp_path, capsys, monkeypatch):
    """``benchmark_eps_rule.py --cap-per-id N --draws D``: D rows per cap, each a different seeded subset
    (seeds SEED..SEED+D-1, as :func:`cap_per_identity`), then the ratio F(auto)/F(oracle) over them."""
    bench = load_script("benchmarks/benchmark_eps_rule.py")
    fake = [{"auto": {"quality": {"pairwise_fscore": a}}, "oracle": {"quality": {"pairwise_fscore": o}}}
            for a, o in [(0.3, 0.6), (0.6, 0.6), (0.45, 0.5), (0.2, 0.4)]]
    summary = bench.ratio_over_draws(["f <=7/id draw 0 camera-norm", "f <=7/id draw 1 camera-norm",
                                      "f <=7/id draw 2 camera-norm", "f (9.0/id)"], fake)
    assert list(summary) == ["f <=7/id camera-norm"]  # the uncapped case has no draws
    m, sd, lo = summary["f <=7/id camera-norm"]
    assert (m, lo) == pytest.approx((0.8, 0.5)) and sd == pytest.approx(np.std([0.5, 1.0, 0.9], ddof=1))

    spaces, ids, cams = identities(ids=40, per_id=8, spread=0.8, with_cams=True)
    path = tmp_path / "f.npz"
    np.savez(path, ids=ids, camids=cams, **dict(zip(["global", "part1", "part2", "part3"], spaces)))
    monkeypatch.setattr(sys, "argv", ["benchmark_eps_rule.py", "--features", str(path), "--cap-per-id", "5",
                                      "--draws", "3", "--seed", "4"])
    bench.main()
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line.split("|") for line in out.splitlines() if line.startswith("| f.npz")}
    assert sorted(rows) == ["f.npz (8.0/id)", "f.npz <=5/id draw 0", "f.npz <=5/id draw 1", "f.npz <=5/id draw 2"]
    for d in range(3):  # draw d is the subset of seed 4 + d
        keep = bench.cap_per_identity(ids, 5, 4 + d)
        r = compare_eps_rules({k: v[keep] for k, v in zip(["global", "part1", "part2", "part3"], spaces)},
                                    ids[keep], GRID, cams[keep])
        assert float(rows[f"f.npz <=5/id draw {d}"][3]) == pytest.approx(bench.f_of(r, "auto"), abs=6e-4)
    ratios = [float(rows[f"f.npz <=5/id draw {d}"][10]) for d in range(3)]
    line = [x for x in out.splitlines() if x.startswith("  f.npz <=5/id:")]
    assert len(line) == 1 and f"min {min(ratios):.2f}" in line[0]
    monkeypatch.setattr(sys, "argv", ["benchmark_eps_rule.py", "--features", str(path), "--cap-per-id", "5",
                                      "--draws", "0"])
    with pytest.raises(SystemExit):  # no subset at all would drop the capped cases silently
        bench.main()
    assert "--draws 0: give at least 1" in capsys.readouterr().err


# ------------------------------------------------------------- the candidates compared (benchmark_eps_rule)
def test_one_se_rule_by_hand():
    """The candidate oneSE (the removed AUTO_SELECT one_se): the smallest grid index within one standard error
    (over the views, at the best) of the best mean."""
    scores = np.array([[0.1, 0.50, 0.52, 0.60, 0.2],
                       [0.1, 0.55, 0.60, 0.50, 0.2],
                       [0.1, 0.45, 0.50, 0.55, 0.2]])  # means 0.1 0.5 0.54 0.55 0.2; SE at 3: 0.05 / sqrt(3)
    assert one_se_index(scores) == 2  # 0.54 >= 0.55 - 0.0289 > 0.5
    assert one_se_index(scores[[0, 0]]) == 3  # views that agree exactly: no error, the best itself
    assert one_se_index(np.array([[0.3, 0.3, 0.1], [0.3, 0.3, 0.1]])) == 0  # ties: the finer
    with pytest.raises(ValueError, match="views >= 2"):
        one_se_index(scores[:1])
    assert one_se_pick(scores, scores.mean(0)) == 2
    assert one_se_pick(scores[:1], scores[0]) == 3  # one view: no standard error to take, the best


def test_one_se_candidate_takes_the_finer_scale_the_views_cannot_tell_from_the_best():
    """choose_eps scores each part view (agreement x coverage) and takes the best mean; oneSE, from the same
    per-view scores, the smallest eps within one standard error of it. A case where the two differ: the one-SE
    pick is finer and its labels are at least as good."""
    spaces, ids, cams = identities(ids=60, per_id=5, spread=1.4, seed=1, with_cams=True)
    gl = {name: labels_over_grid(compute_jaccard_distance(x, 30, 6, 0.9), GRID, 4)
          for name, x in zip(["global", "part1", "part2", "part3"], spaces)}
    best = choose_eps(gl, GRID, camids=cams, coverage="multi_camera")  # the rule
    views = per_view_agreement(gl) * coverage_over_grid(gl["global"], "multi_camera", cams)
    assert np.allclose(best.per_view, views) and np.allclose(best.scores, views.mean(0))
    assert best.index == int(np.argmax(views.mean(0))) and best.select == "max" and best.as_record()["select"] == "max"
    one_se = one_se_pick(np.asarray(best.per_view), np.asarray(best.scores))
    assert one_se == one_se_index(views) and GRID[one_se] < best.eps  # the case was chosen where they differ
    f = np.array([pairwise_prf(lab, ids)[2] for lab in gl["global"]])
    assert f[one_se] >= f[best.index]
    # one view only: the one-SE rule has no spread to use, so the best score
    two = choose_eps({k: gl[k] for k in ("global", "part2")}, GRID, camids=cams, coverage="multi_camera")
    assert one_se_pick(np.asarray(two.per_view), np.asarray(two.scores)) == two.index


def test_teacher_agreement_scores_the_two_teachers_clusterings_per_eps():
    """ARI of the teachers' clusterings at each eps: 1 for the same partition under other names, 0 where a
    side has fewer than two clusters; from both teachers (the same teacher twice would agree everywhere)."""
    a = np.array([[0, 0, 1, 1, 2, 2], [0, 0, 0, 0, 0, 0], [-1, -1, -1, -1, -1, -1], [0, 0, 1, 1, -1, -1]])
    renamed = np.array([[5, 5, 3, 3, 0, 0], [1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 2, 2], [1, 1, 0, 0, -1, -1]])
    assert teacher_agreement(a, renamed) == pytest.approx([1.0, 0.0, 0.0, 1.0])
    assert teacher_agreement(a[:1], np.array([[0, 1, 0, 1, 0, 1]]))[0] < 0  # crosses every pair: below chance
    with pytest.raises(ValueError, match="one shape"):
        teacher_agreement(a, a[:2])

    spaces, ids, cams = identities(ids=48, per_id=8, spread=0.8, with_cams=True)
    feats = dict(zip(["global", "part1", "part2", "part3"], spaces))
    rng = np.random.default_rng(5)
    noise = rng.standard_normal(spaces[0].shape).astype(np.float32)  # a teacher that learnt nothing
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    # a second teacher: the same identities, its own centres and noise (as an independently trained network)
    alike = compare_eps_rules(feats, ids, GRID, cams, teachers=(spaces[0], spaces[1]))
    unlike = compare_eps_rules(feats, ids, GRID, cams, teachers=(spaces[0], noise))
    assert max(alike["teacher_agreement"]) > 0.8 and max(unlike["teacher_agreement"]) < 0.1
    f = np.array(alike["f_grid"])
    assert f[GRID.index(alike["teachers"]["eps"])] >= 0.9 * f.max()
    # teachersAV weighs the teachers' agreement by auto's whole score (agreement x coverage), not the agreement
    # alone: on looser identities the two products peak at different eps
    spaces, ids, cams = identities(ids=48, per_id=8, spread=1.0, with_cams=True)
    loose = compare_eps_rules(dict(zip(["global", "part1", "part2", "part3"], spaces)), ids, GRID, cams,
                                    teachers=(spaces[0], spaces[1]))
    t_agree, choice = np.array(loose["teacher_agreement"]), loose["choice"]
    assert np.argmax(t_agree * np.array(choice["scores"])) != np.argmax(t_agree * np.array(choice["agreement"]))
    assert loose["teachersAV"]["eps"] == GRID[int(np.argmax(t_agree * np.array(choice["scores"])))]
    assert "teachers" not in compare_eps_rules(feats, ids, GRID, cams)


def test_benchmark_teachers_option_adds_the_candidates_and_checks_its_files(tmp_path, capsys, monkeypatch):
    """``--teachers FILE=T1,T2``: the teachers' columns for FILE's cases (capped subsets cut alike) and one
    line of each rule's worst ratio; a FILE not among --features, or teachers of other images, is refused."""
    bench = load_script("benchmarks/benchmark_eps_rule.py")
    spaces, ids, cams = identities(ids=40, per_id=8, spread=0.8, with_cams=True)
    names = ["global", "part1", "part2", "part3"]
    f, t1, t2 = (str(tmp_path / n) for n in ("f.npz", "t1.npz", "t2.npz"))
    np.savez(f, ids=ids, camids=cams, **dict(zip(names, spaces)))
    np.savez(t1, ids=ids, camids=cams, **dict(zip(names, spaces)))
    np.savez(t2, ids=ids, camids=cams, **dict(zip(names, spaces[1:] + spaces[:1])))  # global = part1's features
    monkeypatch.setattr(sys, "argv", ["benchmark_eps_rule.py", "--features", f, "--cap-per-id", "5",
                                      "--teachers", f"{f}={t1},{t2}", "--candidates"])
    bench.main()
    out = capsys.readouterr().out
    head = next(line for line in out.splitlines() if line.startswith("| case"))
    assert "F(teachersAV)" in head and "F(oneSE)" in head
    row = next(line for line in out.splitlines() if line.startswith("| f.npz <=5/id")).split("|")
    keep = bench.cap_per_identity(ids, 5, 0)
    r = compare_eps_rules({k: v[keep] for k, v in zip(names, spaces)}, ids[keep], GRID, cams[keep],
                                candidates=True, teachers=(spaces[0][keep], spaces[1][keep]))
    col = [c.strip() for c in head.split("|")].index("eps teachers")
    assert float(row[col]) == pytest.approx(r["teachers"]["eps"])
    assert "F(rule)/F(oracle) over all rows: auto min" in out and "teachersAV min" in out
    for spec, message in ((f"other.npz={t1},{t2}", "is not one of --features"), (f"{f}={t1}", "write FILE=T1.npz,T2.npz")):
        monkeypatch.setattr(sys, "argv", ["benchmark_eps_rule.py", "--features", f, "--teachers", spec])
        with pytest.raises(SystemExit, match=message):
            bench.main()
    np.savez(t2, ids=ids[::-1], camids=cams, **dict(zip(names, spaces)))
    monkeypatch.setattr(sys, "argv", ["benchmark_eps_rule.py", "--features", f, "--teachers", f"{f}={t1},{t2}"])
    with pytest.raises(SystemExit, match="ids differ"):
        bench.main()


def test_cluster_quality_keeps_one_teacher_by_copying_it_into_the_other():
    """``cluster_quality.py --teacher t1``: teacher 2 becomes teacher 1 (the mean features are then teacher 1's
    own); a model without two mean teachers is refused, naming --teacher mean."""
    from fastreid.modeling import build_model

    from inclr_fastreid.config import setup_cfg
    from tests.helpers.tiny import SMALL_NET, TINY

    cluster_quality = load_script("tools/cluster_quality.py")
    cfg = setup_cfg(os.path.join(ROOT, "configs", "INCLR", "duke2market.yml"),
                    TINY + SMALL_NET + ["MODEL.HEADS.NUM_CLASSES", "10", "INCLR.NUM_SAMPLES", "12", "OUTPUT_DIR", ""])
    for which, src, dst in (("t1", "teacher1", "teacher2"), ("t2", "teacher2", "teacher1")):
        torch.manual_seed(0)
        model = build_model(cfg)
        with torch.no_grad():
            for p in model.teacher2.parameters():
                p.add_(1.0)
        before = {k: v.clone() for k, v in getattr(model, src).state_dict().items()}
        cluster_quality.keep_one_teacher(model, which)
        for k, v in getattr(model, dst).state_dict().items():
            assert torch.equal(v, before[k]) and torch.equal(getattr(model, src).state_dict()[k], before[k])
    with pytest.raises(SystemExit, match="--teacher mean"):
        cluster_quality.keep_one_teacher(torch.nn.Linear(2, 2), "t1")


def test_same_eps_candidates_score_a_scale_of_one_cluster_nothing():
    """``agreeF`` / ``sameEps``: the global and part clusterings compared at one eps; where a side chains
    everything into one cluster (two such sides agree exactly) the scale scores 0, as in the auto rule."""
    g = np.array([[0, 0, 1, 1, 2, 2], [0, 0, 0, 0, 0, 0]])
    p = np.array([[0, 0, 1, 1, 2, -1], [0, 0, 0, 0, 0, 0]])
    grid_labels = {"global": g, "part1": p, "part2": p.copy()}
    f = agreement_at_same_eps(grid_labels, "f")
    assert f[0] == pytest.approx(pairwise_prf(g[0], p[0])[2]) and 0 < f[0] < 1 and f[1] == 0.0
    ari = agreement_at_same_eps(grid_labels, "ari")
    assert ari[0] == pytest.approx(clustering_agreement(g[0], p[0])) and ari[1] == 0.0
    assert not is_partition(np.array([-1, -1])) and is_partition(np.array([0, 1, -1]))


def test_benchmark_k1_grid_takes_the_k1_of_the_best_auto_score_and_the_joint_oracle(tmp_path, capsys, monkeypatch):
    """``--k1-grid``: ``k1auto`` is the k1 whose auto score (choose_eps on that k1's Jaccard matrices) is the best,
    at that k1's chosen eps, without labels; ``k1oracle`` the (k1, eps) of best F over the whole grid. With one
    k1 in the grid they are ``auto`` and ``oracle``."""
    bench = load_script("benchmarks/benchmark_eps_rule.py")
    spaces, ids, cams = identities(ids=40, per_id=8, spread=1.2, with_cams=True)
    named = dict(zip(["global", "part1", "part2", "part3"], spaces))
    k1_grid = [6, 10, 16, 30]
    best, by_hand = {}, {}
    for k1 in k1_grid:  # the slow obvious reference: each k1's own auto choice and F grid
        dists = {k: compute_jaccard_distance(x, k1, 6, max_distance=0.9) for k, x in named.items()}
        grid_labels = {k: labels_over_grid(d, GRID, 4) for k, d in dists.items()}
        choice = choose_eps(grid_labels, GRID, camids=cams, coverage="multi_camera")
        by_hand[k1] = (choice.scores[choice.index], choice.eps, dists["global"])
        best[k1] = max(pairwise_prf(lab, ids)[2] for lab in grid_labels["global"])
    scores = [by_hand[k][0] for k in k1_grid]
    k1_pick = k1_grid[int(np.argmax(scores))]
    assert k1_pick not in (k1_grid[0], k1_grid[-1]) and len(set(np.round(scores, 6))) == len(k1_grid)  # a real choice
    r = compare_eps_rules(named, ids, GRID, cams, k1_grid=k1_grid)
    assert (r["k1auto"]["k1"], r["k1auto"]["eps"]) == (k1_pick, by_hand[k1_pick][1])
    f_pick = pairwise_prf(cluster_dbscan(by_hand[k1_pick][2], by_hand[k1_pick][1], 4), ids)[2]
    assert bench.f_of(r, "k1auto") == pytest.approx(f_pick)
    assert bench.f_of(r, "k1oracle") == pytest.approx(max(best.values()))
    assert r["k1oracle"]["k1"] == max(best, key=best.get)
    assert bench.f_of(r, "k1oracle") >= bench.f_of(r, "k1auto") and bench.f_of(r, "k1oracle") >= bench.f_of(r, "oracle")
    one = compare_eps_rules(named, ids, GRID, cams, k1=16, k1_grid=[16])
    assert (one["k1auto"]["eps"], one["k1oracle"]["eps"]) == (one["auto"]["eps"], one["oracle"]["eps"])
    assert bench.f_of(one, "k1auto") == pytest.approx(bench.f_of(one, "auto"))
    assert bench.over_oracle(one, "k1auto", "k1oracle") == pytest.approx(bench.over_oracle(one))

    path = tmp_path / "f.npz"
    np.savez(path, ids=ids, camids=cams, **named)
    monkeypatch.setattr(sys, "argv", ["benchmark_eps_rule.py", "--features", str(path), "--k1-grid", "6", "10", "16", "30"])
    bench.main()
    out = capsys.readouterr().out
    row = [line.split("|") for line in out.splitlines() if line.startswith("| f.npz")][0]
    assert row[-5].strip() == f"{k1_pick} / {by_hand[k1_pick][1]:.2f}"  # k1auto's k1 / eps cell
    summary = [line for line in out.splitlines() if line.startswith("k1 grid [6, 10, 16, 30]")]
    assert len(summary) == 1 and f"{k1_pick} x1" in summary[0]


def test_benchmark_k1_size_is_the_hooks_k1_rule_and_scores_it_against_its_own_oracle(tmp_path, capsys, monkeypatch):
    """``--k1-size``: ``k1size`` is what a round with K1_RULE size clusters (same k1, eps and global labels as
    generate_pseudo_labels); ``k1size_oracle`` is the F-best grid eps at that k1."""
    bench = load_script("benchmarks/benchmark_eps_rule.py")
    spaces, ids, cams = identities(ids=40, per_id=8, spread=1.2, with_cams=True)
    named = dict(zip(["global", "part1", "part2", "part3"], spaces))
    r = compare_eps_rules(named, ids, GRID, cams, k1_size=True)
    hook = generate_pseudo_labels(spaces[0], spaces[1:], ClusterParams(eps_rule="auto", eps_grid=GRID, k1_rule="size",
                                                                       lgmr_enabled=False), camids=cams)
    from inclr_fastreid.pseudo_labels.k1_rule import median_cluster_size

    m = median_cluster_size(r["auto"]["labels"])  # auto's clustering at K1 30: what the round's first pass clusters
    assert r["k1size"]["median_size"] == hook.k1_choice["median_size"] == m and 5 <= m <= 8
    assert r["k1size"]["k1"] == hook.k1 == max(10, int(np.around(1.5 * m))) and r["k1size"]["eps"] == hook.eps
    assert np.array_equal(r["k1size"]["labels"], hook.labels_before_lgmr)
    fk = [pairwise_prf(lab, ids)[2] for lab in labels_over_grid(compute_jaccard_distance(spaces[0], hook.k1, 6, 0.9), GRID, 4)]
    assert r["k1size_oracle"]["eps"] == GRID[int(np.argmax(fk))] and bench.f_of(r, "k1size_oracle") == pytest.approx(max(fk))
    path = tmp_path / "f.npz"
    np.savez(path, ids=ids, camids=cams, **named)
    monkeypatch.setattr(sys, "argv", ["benchmark_eps_rule.py", "--features", str(path), "--k1-size", "--k1-per-size", "2"])
    bench.main()
    out = capsys.readouterr().out
    row = [line.split("|") for line in out.splitlines() if line.startswith("| f.npz")][0]
    r2 = compare_eps_rules(named, ids, GRID, cams, k1_size=True, k1_per_size=2.0)
    k2 = r2["k1size"]["k1"]
    assert k2 == max(10, int(np.around(2 * m))) and k2 != hook.k1  # K1_PER_SIZE reaches the choice
    assert row[-5].strip() == f"{k2} / {r2['k1size']['eps']:.2f}" and row[-7].strip() == f"{m:g}"
    assert row[-6].strip() == f"{bench.f_of(r2, 'k1size'):.3f}"
    summary = [line for line in out.splitlines() if line.startswith("K1_RULE size (K1_PER_SIZE 2, K1_MIN 10, K1 30)")]
    assert len(summary) == 1 and f"k1 chosen {k2} x1" in summary[0]


def test_benchmark_computes_each_k1s_matrices_once_across_k1size_and_the_k1_grid(monkeypatch):
    """``--k1-size --k1-grid``: the rules share every k1's Jaccard matrices (one per space and k1, the size rule's k1
    and K1 in the grid included), and sharing changes no label: k1size as alone, k1auto as choose_k1_eps afresh."""
    import inclr_fastreid.pseudo_labels as pl

    spaces, ids, cams = identities(ids=40, per_id=8, spread=1.2, with_cams=True)
    named = dict(zip(["global", "part1", "part2", "part3"], spaces))
    alone = compare_eps_rules(named, ids, GRID, cams, k1_size=True)
    k1s = alone["k1size"]["k1"]
    assert k1s != 30
    fresh_k1, fresh_choice, _ = choose_k1_eps(named, [k1s, 30], GRID, cams)
    calls = []
    real = pl.compute_jaccard_distance
    monkeypatch.setattr(pl, "compute_jaccard_distance",
                        lambda x, k1, *a, **kw: calls.append(int(k1)) or real(x, k1, *a, **kw))
    both = compare_eps_rules(named, ids, GRID, cams, k1_size=True, k1_grid=[k1s, 30])
    assert sorted(calls) == sorted([30] * 4 + [k1s] * 4)
    for rule in ("auto", "k1size", "k1size_oracle"):
        assert np.array_equal(both[rule]["labels"], alone[rule]["labels"]) and both[rule]["eps"] == alone[rule]["eps"]
    assert (both["k1auto"]["k1"], both["k1auto"]["eps"]) == (fresh_k1, fresh_choice.eps)
