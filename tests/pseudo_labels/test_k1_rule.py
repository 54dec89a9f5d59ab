"""K1_RULE size (docs/design.md §4.3.2): the Jaccard distance's k1 from the first clustering's median
cluster size, without labels; chosen once, kept by the hook across a resume (tests/pseudo_labels/test_scale.py)."""
import numpy as np
import pytest

from inclr_fastreid.pseudo_labels import ClusterParams, generate_pseudo_labels
from inclr_fastreid.pseudo_labels.k1_rule import k1_from_cluster_size, median_cluster_size

from tests.helpers.features import identities

GRID = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)


def test_median_cluster_size_by_hand():
    # clusters of 3, 3, 5 and one chained cluster of 40; outliers are not a cluster
    labels = np.array([0] * 3 + [1] * 3 + [2] * 5 + [3] * 40 + [-1] * 30)
    assert median_cluster_size(labels) == 4.0  # median of (3, 3, 5, 40): the giant cluster does not move it
    assert median_cluster_size(np.array([5, 5, 7, 7, 7, -1])) == 2.5  # ids need not start at 0
    assert median_cluster_size(np.full(9, -1)) == 0.0 and median_cluster_size(np.array([], np.int64)) == 0.0


def test_k1_from_cluster_size_by_hand():
    assert k1_from_cluster_size(7, 1.5, 10, 30) == 10  # 10.5 rounds half to even, then the floor
    assert k1_from_cluster_size(9, 1.5, 10, 30) == 14  # 13.5 -> 14
    assert k1_from_cluster_size(11, 1.5, 10, 30) == 16  # 16.5 -> 16
    assert k1_from_cluster_size(18, 1.5, 10, 30) == 27
    assert k1_from_cluster_size(40, 1.5, 10, 30) == 30  # K1 is the ceiling
    assert k1_from_cluster_size(3, 1.5, 10, 30) == 10
    assert k1_from_cluster_size(10, 2.0, 5, 30) == 20
    assert k1_from_cluster_size(0, 1.5, 10, 30) == 30  # no cluster, no density to read: K1 as configured
    with pytest.raises(ValueError, match="k1_min <= k1_max"):
        k1_from_cluster_size(10, 1.5, 31, 30)
    with pytest.raises(ValueError, match="per_size"):
        k1_from_cluster_size(10, 0.0, 10, 30)


@pytest.mark.parametrize("per_id, k1_expected", [(7, 10), (12, 18)])
def test_size_rule_runs_the_round_at_the_k1_of_the_first_clusterings_median_size(per_id, k1_expected):
    """Identities of ``per_id`` images: the first clustering (at K1 30, auto eps) recovers them, so its median
    cluster size is per_id, and the round is the one at k1 = 1.5 x per_id, exactly as if that k1 were given."""
    spaces, ids, cams = identities(ids=60, per_id=per_id, with_cams=True)
    p = ClusterParams(eps_rule="auto", eps_grid=GRID, k1=30, lgmr_k=10, k1_rule="size", camera_norm=True)
    r = generate_pseudo_labels(spaces[0], spaces[1:], p, camids=cams)
    at30 = generate_pseudo_labels(spaces[0], spaces[1:], p, k1_rule="fixed", lgmr_enabled=False, camids=cams)
    assert r.k1_choice["median_size"] == median_cluster_size(at30.labels_before_lgmr) == per_id
    assert r.k1_choice["eps_at_k1_max"] == at30.eps and r.k1_choice["k1_max"] == 30
    assert r.k1 == r.k1_choice["k1"] == k1_expected == k1_from_cluster_size(per_id, 1.5, 10, 30)
    given = generate_pseudo_labels(spaces[0], spaces[1:], p, k1=r.k1, camids=cams)  # a k1 override: no estimate
    assert given.k1_choice is None and given.k1 == r.k1 and "k1_size" not in given.timings
    assert r.eps == given.eps and r.eps_choice == given.eps_choice
    assert np.array_equal(r.labels, given.labels) and np.array_equal(r.labels_before_lgmr, given.labels_before_lgmr)
    assert np.array_equal(r.agreement, given.agreement)
    assert r.timings["k1_size"] > 0 and r.timings["total"] >= r.timings["k1_size"]
    # K1_PER_SIZE and K1_MIN reach the choice
    r2 = generate_pseudo_labels(spaces[0], spaces[1:], p, k1_per_size=2.0, k1_min=5, camids=cams)
    assert r2.k1 == min(30, 2 * per_id) and r2.k1_choice["per_size"] == 2.0 and r2.k1_choice["k1_min"] == 5
    # fixed (the default): the round runs at K1, nothing is estimated
    fixed = generate_pseudo_labels(spaces[0], spaces[1:], p, k1_rule="fixed", camids=cams)
    assert fixed.k1 == 30 and fixed.k1_choice is None


def test_size_rule_keeps_k1_when_the_first_clustering_finds_no_cluster():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 32)).astype(np.float32)  # no structure: at eps 0.05 everything is an outlier
    r = generate_pseudo_labels(x, [], ClusterParams(eps=0.05, k1=20, k1_rule="size", lgmr_enabled=False))
    assert r.k1_choice["median_size"] == 0.0 and r.k1 == 20


def test_quality_record_carries_k1_and_its_choice():
    from inclr_fastreid.engine.label_log import quality_record

    spaces, ids, cams = identities(ids=40, per_id=8, with_cams=True)
    r = generate_pseudo_labels(spaces[0], [], ClusterParams(k1_rule="size", lgmr_enabled=False, k1=30))
    rec = quality_record(0, r, ids, 1.0, 1.0)
    assert rec["k1"] == r.k1 and rec["k1_choice"] == r.k1_choice and rec["k1_choice"]["rule"] == "size"
    rec = quality_record(0, generate_pseudo_labels(spaces[0], [], lgmr_enabled=False, k1=20), ids, 1.0, 1.0)
    assert rec["k1"] == 20 and "k1_choice" not in rec
