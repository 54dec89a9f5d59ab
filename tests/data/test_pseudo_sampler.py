"""PseudoIdentityBatchSampler (the P x K loader of an adaptation epoch), checked against its
contract: P pseudo identities x K images per batch, never an outlier, the same batches for the same
seed (a resumed run replays them), and under DDP disjoint per-rank slices that together are the
single-process batch (docs/design.md §4.2, §6)."""
import itertools
from collections import Counter

import numpy as np
import pytest

from inclr_fastreid.data.pseudo_dataset import PseudoIdentityBatchSampler

# 10 pseudo identities of sizes 1..7 (some smaller than K = 3), plus outliers (-1), shuffled.
SIZES = [5, 1, 7, 3, 2, 4, 6, 3, 2, 5]
K = 3


def _labels(seed=0, outliers=6):
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(SIZES)] + [np.full(outliers, -1)])
    return np.random.default_rng(seed).permutation(labels)


def _take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_batches_are_p_identities_times_k_images():
    labels = _labels()
    sampler = PseudoIdentityBatchSampler(labels, batch_size=4 * K, num_instances=K, seed=3)
    assert sampler.ids_per_batch == 4
    for batch in _take(sampler, 60):
        assert len(batch) == 4 * K
        assert all(labels[i] >= 0 for i in batch), "an outlier was drawn"
        counts = Counter(int(labels[i]) for i in batch)
        assert len(counts) == 4 and set(counts.values()) == {K}  # P identities, K images each
        for c in counts:
            picked = [i for i in batch if labels[i] == c]
            if SIZES[c] >= K:  # enough members: K different images
                assert len(set(picked)) == K
            else:  # fewer members than K: drawn with replacement, all members of that cluster
                assert set(picked) <= set(np.flatnonzero(labels == c).tolist())


def test_each_identity_once_per_pass():
    """Identities are drawn from a permutation: within a pass of n_ids // P batches none repeats."""
    labels = _labels(1)
    sampler = PseudoIdentityBatchSampler(labels, batch_size=4 * K, num_instances=K, seed=5)
    per_pass = len(SIZES) // 4
    batches = _take(sampler, 5 * per_pass)
    for p in range(5):
        seen = [int(labels[i]) for b in batches[p * per_pass:(p + 1) * per_pass] for i in b]
        ids = [set(labels[i] for i in b) for b in batches[p * per_pass:(p + 1) * per_pass]]
        assert len(set(seen)) == 4 * per_pass and all(not (a & b) for a, b in itertools.combinations(ids, 2))


def test_same_seed_same_batches_other_seed_differs():
    labels = _labels(2)
    a = PseudoIdentityBatchSampler(labels, 4 * K, K, seed=11)
    b = PseudoIdentityBatchSampler(labels.copy(), 4 * K, K, seed=11)
    first = _take(a, 40)
    assert first == _take(b, 40)
    assert first == _take(a, 40)  # iterating again (a resumed epoch) replays the same batches
    assert first != _take(PseudoIdentityBatchSampler(labels, 4 * K, K, seed=12), 40)


@pytest.mark.parametrize("world", [2, 4])
def test_rank_slices_are_disjoint_and_make_the_single_process_batch(world):
    labels = _labels(3)
    single = _take(PseudoIdentityBatchSampler(labels, 4 * K, K, seed=7), 30)
    ranks = [_take(PseudoIdentityBatchSampler(labels, 4 * K, K, seed=7, rank=r, world_size=world), 30)
             for r in range(world)]
    for step, whole in enumerate(single):
        slices = [ranks[r][step] for r in range(world)]
        assert all(len(s) == 4 * K // world for s in slices)  # equal per-rank batches
        ids = [set(int(labels[i]) for i in s) for s in slices]
        assert all(len(x) == 4 // world for x in ids)
        assert all(not (x & y) for x, y in itertools.combinations(ids, 2)), "two ranks share an identity"
        assert [i for s in slices for i in s] == whole  # rank order = the single-process batch


def test_identities_per_batch_rounded_down_to_a_multiple_of_the_world_size():
    labels = _labels(4)
    for rank in range(2):  # 5 ids wanted per batch, 2 ranks: 4 (2 per rank), equal sizes on both
        s = PseudoIdentityBatchSampler(labels, 5 * K, K, seed=1, rank=rank, world_size=2)
        assert s.ids_per_batch == 4
        assert all(len(b) == 2 * K for b in _take(s, 10))


def test_fewer_clusters_than_identities_per_batch():
    labels = np.array([0, 0, 1, 1, 1, -1, -1])
    s = PseudoIdentityBatchSampler(labels, 4 * K, K, seed=0)
    assert s.ids_per_batch == 2
    for batch in _take(s, 10):
        assert sorted(Counter(int(labels[i]) for i in batch).items()) == [(0, K), (1, K)]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"IMS_PER_BATCH \(10\).*NUM_INSTANCE \(3\)"):
        PseudoIdentityBatchSampler(_labels(), 10, 3, seed=0)
    with pytest.raises(ValueError, match="outlier"):
        PseudoIdentityBatchSampler(np.full(5, -1), 6, 3, seed=0)
    with pytest.raises(ValueError, match="3 ranks"):
        PseudoIdentityBatchSampler(np.array([0, 0, 1, 1]), 6, 3, seed=0, world_size=3)
