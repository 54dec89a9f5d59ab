"""Label-quality metrics (inclr_fastreid/pseudo_labels/quality.py) against brute-force pair loops."""
import itertools

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from inclr_fastreid.pseudo_labels.quality import (credibility_auroc, label_quality, outliers_as_singletons,
                                                  pairwise_prf, pseudo_label_correct)


def brute_prf(pred, true):
    tp = pp = tt = 0
    for i, j in itertools.combinations(range(len(pred)), 2):
        same_pred = pred[i] >= 0 and pred[i] == pred[j]  # an outlier pairs with nobody
        same_true = true[i] == true[j]
        pp += same_pred
        tt += same_true
        tp += same_pred and same_true
    p = tp / pp if pp else 0.0
    r = tp / tt if tt else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


@pytest.mark.parametrize("seed", range(5))
def test_pairwise_prf_matches_pair_loop(seed):
    rng = np.random.default_rng(seed)
    n = 60
    true = rng.integers(0, 8, n) * 7 - 3  # arbitrary ids, some negative
    pred = np.where(rng.random(n) < 0.2, -1, rng.integers(0, 10, n))
    assert pairwise_prf(pred, true) == pytest.approx(brute_prf(pred, true))


def test_pairwise_prf_by_hand():
    # pred clusters {0,1,2}, {3,4}; true {0,1}, {2,3,4}: pred pairs 3+1, true pairs 1+3, tp = 1 + 1
    assert pairwise_prf([0, 0, 0, 1, 1], [5, 5, 6, 6, 6]) == pytest.approx((0.5, 0.5, 0.5))
    assert pairwise_prf([-1, -1, -1], [1, 1, 1]) == (0.0, 0.0, 0.0)  # outliers are singletons
    assert pairwise_prf([0, 0, 1], [1, 2, 3]) == (0.0, 0.0, 0.0)  # no true pairs: recall 0


def test_label_quality_keys_and_values():
    rng = np.random.default_rng(11)
    true = rng.integers(0, 10, 120)
    pred = np.where(rng.random(120) < 0.25, -1, (true + (rng.random(120) < 0.1)) % 10)
    q = label_quality(pred, true)
    assert set(q) == {"num_clusters", "num_outliers", "outlier_ratio", "pairwise_precision",
                      "pairwise_recall", "pairwise_fscore", "nmi", "ari"}
    assert q["num_clusters"] == len(set(pred[pred >= 0].tolist()))
    assert q["num_outliers"] == int((pred == -1).sum())
    assert q["outlier_ratio"] == pytest.approx(q["num_outliers"] / 120)
    p, r, f = brute_prf(pred, true)
    assert (q["pairwise_precision"], q["pairwise_recall"], q["pairwise_fscore"]) == pytest.approx((p, r, f))
    # NMI/ARI over all samples, each outlier its own cluster
    single = pred.copy()
    single[pred == -1] = 1000 + np.arange((pred == -1).sum())
    assert q["ari"] == pytest.approx(adjusted_rand_score(true, single))
    assert q["nmi"] == pytest.approx(normalized_mutual_info_score(true, single))
    assert label_quality(true, true)["ari"] == pytest.approx(1.0)


def test_outliers_as_singletons():
    out = outliers_as_singletons([2, -1, 0, -1])
    assert out.tolist()[0::2] == [2, 0] and len(set(out.tolist())) == 4 and (out >= 0).all()


def brute_correct(pred, true):
    out = []
    for i in range(len(pred)):
        if pred[i] < 0:
            out.append(False)
            continue
        members = [true[j] for j in range(len(pred)) if pred[j] == pred[i]]
        ids, counts = np.unique(members, return_counts=True)
        out.append(true[i] == ids[np.argmax(counts)])  # ties -> smallest id
    return np.array(out)


@pytest.mark.parametrize("seed", range(4))
def test_pseudo_label_correct_matches_loop(seed):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 6, 70) * 3
    pred = np.where(rng.random(70) < 0.15, -1, rng.integers(0, 9, 70))
    assert np.array_equal(pseudo_label_correct(pred, true), brute_correct(pred, true))


def test_pseudo_label_correct_by_hand():
    # cluster 0: true 1,1,2 -> majority 1; cluster 1: tie 4 vs 3 -> 3; outlier -> False
    got = pseudo_label_correct([0, 0, 0, 1, 1, -1], [1, 1, 2, 4, 3, 1])
    assert got.tolist() == [True, True, False, False, True, False]


def brute_auroc(score, pos):
    s_pos, s_neg = score[pos], score[~pos]
    wins = sum((a > b) + 0.5 * (a == b) for a in s_pos for b in s_neg)
    return wins / (len(s_pos) * len(s_neg))


def test_credibility_auroc():
    rng = np.random.default_rng(12)
    correct = rng.random(50) < 0.6
    cred = np.round(rng.random(50) + 0.5 * correct, 1)  # ties included
    assert credibility_auroc(cred, correct) == pytest.approx(brute_auroc(cred, correct))
    assert credibility_auroc([0.1, 0.9], [False, True]) == 1.0
    assert credibility_auroc([0.3, 0.2], [True, True]) is None
    assert credibility_auroc([0.3, 0.2], [False, False]) is None
    with pytest.raises(ValueError, match="same length"):
        credibility_auroc([0.1, 0.2], [True])


def test_bad_label_input():
    with pytest.raises(ValueError, match="same length"):
        pairwise_prf([0, 1], [0])
    with pytest.raises(ValueError, match="integers"):
        label_quality(np.array([0.5, 1.0]), np.array([0, 1]))
