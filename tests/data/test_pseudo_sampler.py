"""PseudoIdentityBatchSampler (inclr_fastreid/data/pseudo_dataset.py: the P x K loader of an adaptation epoch),
checked against its contract: P pseudo identities x K images per batch, never an outlier, the same batches for
the same seed (a resumed run replays them), and under DDP disjoint per-rank slices that together are the
single-process batch (docs/design.md §4.2, §6). With camera ids, the K-1 positives come from other cameras
than the anchor's where the identity has any (MMT's RandomMultipleGallerySampler)."""
import itertools
from collections import Counter

import numpy as np
import pytest

from inclr_fastreid.data.pseudo_dataset import PseudoIdentityBatchSampler

# ------------------------------------------------------------------------------- camera-blind (labels only)
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


# ------------------------------------------------------------------------------- with camera ids
CAM_K = 4  # images per identity of the camera layout


def _layout():
    """labels / camids of a crafted target set (index = position in the lists).

    id 0: 6 images in cameras 0,0,0,1,1,2  (several cameras, enough images)
    id 1: 5 images, all in camera 3          (one camera)
    id 2: 1 image                             (a single image)
    id 3: 3 images in camera 0, 1 in camera 1 (one other-camera image for a camera-0 anchor)
    id 4: 1 image in camera 0, 3 in camera 2  (exactly K-1 other-camera images for the camera-0 anchor)
    id 5: 2 images in camera 1, 2 in camera 2
    -1:   3 outliers
    """
    rows = ([(0, c) for c in (0, 0, 0, 1, 1, 2)] + [(1, 3)] * 5 + [(2, 0)] + [(3, 0)] * 3 + [(3, 1)]
            + [(4, 0)] + [(4, 2)] * 3 + [(5, 1)] * 2 + [(5, 2)] * 2 + [(-1, 0)] * 3)
    labels, cams = map(np.array, zip(*rows))
    order = np.random.default_rng(0).permutation(len(rows))  # identities scattered over the index
    return labels[order], cams[order]


def _groups(batch):
    assert len(batch) % CAM_K == 0
    return [batch[i:i + CAM_K] for i in range(0, len(batch), CAM_K)]


def test_batches_are_p_by_k_of_one_label_each_and_never_outliers():
    labels, cams = _layout()
    sampler = PseudoIdentityBatchSampler(labels, 3 * CAM_K, CAM_K, seed=1, camids=cams)
    for batch in _take(sampler, 40):
        groups = _groups(batch)
        assert len(groups) == 3
        ids = [labels[g[0]] for g in groups]
        assert len(set(ids)) == 3 and min(ids) >= 0  # P distinct identities, no outlier
        for g in groups:
            assert (labels[g] == labels[g[0]]).all()


def test_positives_come_from_other_cameras_when_the_identity_has_any():
    labels, cams = _layout()
    sampler = PseudoIdentityBatchSampler(labels, 2 * CAM_K, CAM_K, seed=3, camids=cams)
    seen_anchor_cams = {}
    for batch in _take(sampler, 300):
        for g in _groups(batch):
            anchor, positives = g[0], g[1:]
            pid = labels[anchor]
            members = np.flatnonzero(labels == pid)
            other_cam = members[cams[members] != cams[anchor]]
            seen_anchor_cams.setdefault(pid, set()).add(cams[anchor])
            if len(other_cam):
                assert all(cams[p] != cams[anchor] for p in positives), (pid, g)  # all from other cameras
                assert set(positives) <= set(other_cam)  # fewer than K-1: repeated, as MMT, never topped up
                if len(other_cam) >= CAM_K - 1:  # enough: K distinct images (MMT needs >= K for that)
                    assert len(set(positives)) == CAM_K - 1, (pid, g)
            elif len(members) > 1:  # one camera: the identity's other images, without the anchor
                assert anchor not in positives and set(positives) <= set(members)
                if len(members) - 1 >= CAM_K - 1:
                    assert len(set(positives)) == CAM_K - 1
            else:  # a single image: repeated to keep P×K
                assert g == [anchor] * CAM_K
    # every anchor camera of the multi-camera identities was drawn (the anchor is random)
    assert seen_anchor_cams[0] == {0, 1, 2} and seen_anchor_cams[3] == {0, 1} and seen_anchor_cams[4] == {0, 2}


def test_identity_with_one_other_camera_image_and_k_minus_1_other_camera_images():
    labels, cams = _layout()
    sampler = PseudoIdentityBatchSampler(labels, 6 * CAM_K, CAM_K, seed=5, camids=cams)
    lone = int(np.flatnonzero((labels == 3) & (cams == 1))[0])
    single_cam0_of_4 = int(np.flatnonzero((labels == 4) & (cams == 0))[0])
    hits = {"id3_cam0": 0, "id4_cam0": 0}
    for batch in _take(sampler, 60):
        for g in _groups(batch):
            if labels[g[0]] == 3 and cams[g[0]] == 0:
                assert g[1:] == [lone] * (CAM_K - 1)  # its only other-camera image, three times
                hits["id3_cam0"] += 1
            if g[0] == single_cam0_of_4:
                assert sorted(g[1:]) == sorted(np.flatnonzero((labels == 4) & (cams == 2)).tolist())
                hits["id4_cam0"] += 1
    assert all(hits.values()), hits


def test_without_camera_ids_every_image_counts_as_one_camera():
    labels, _ = _layout()
    sampler = PseudoIdentityBatchSampler(labels, 2 * CAM_K, CAM_K, seed=2)
    for batch in _take(sampler, 50):
        for g in _groups(batch):
            members = np.flatnonzero(labels == labels[g[0]])
            if len(members) >= CAM_K:
                assert len(set(g)) == CAM_K  # K distinct images of the identity
            elif len(members) > 1:
                assert g[0] not in g[1:]


def test_camera_ids_must_match_the_labels():
    labels, cams = _layout()
    with pytest.raises(ValueError, match="camera ids"):
        PseudoIdentityBatchSampler(labels, 2 * CAM_K, CAM_K, seed=0, camids=cams[:-1])


def test_the_adaptation_loader_samples_by_camera():
    """engine.loader (what the pseudo-label hook installs) hands the target cameras to the sampler:
    for identity 0 (cameras 0,0,0,1,1,2) a camera-0 anchor never gets a camera-0 positive."""
    from fastreid.data.transforms import build_transforms

    from inclr_fastreid.config import setup_cfg
    from inclr_fastreid.engine.loader import build_pseudo_label_loader, close_loader

    labels, cams = _layout()
    cfg = setup_cfg("", ["SOLVER.IMS_PER_BATCH", str(2 * CAM_K), "DATALOADER.NUM_INSTANCE", str(CAM_K),
                         "DATALOADER.NUM_WORKERS", "0", "MODEL.DEVICE", "cpu"])
    loader = build_pseudo_label_loader(cfg, [f"img{i}.png" for i in range(len(labels))], cams, labels, None,
                                       build_transforms(cfg, is_train=True), 2, seed=5, epoch=0)
    try:
        checked = 0
        for batch in _take(loader.batch_sampler, 200):
            for g in _groups(batch):
                if labels[g[0]] == 0 and cams[g[0]] == 0:
                    assert all(cams[i] != 0 for i in g[1:]), [int(cams[i]) for i in g]
                    checked += 1
        assert checked > 0
    finally:
        close_loader(loader)


def test_camera_sampler_switch_off_draws_positives_camera_blind():
    """INCLR.MMT.CAMERA_SAMPLER False (the per-change ablation): the loader's sampler gets no cameras,
    so a camera-0 anchor of identity 0 sometimes has a camera-0 positive (never with the switch on)."""
    from fastreid.data.transforms import build_transforms

    from inclr_fastreid.config import setup_cfg
    from inclr_fastreid.engine.loader import build_pseudo_label_loader, close_loader

    labels, cams = _layout()
    same_camera = {}
    for on in (True, False):
        cfg = setup_cfg("", ["SOLVER.IMS_PER_BATCH", str(2 * CAM_K), "DATALOADER.NUM_INSTANCE", str(CAM_K),
                             "DATALOADER.NUM_WORKERS", "0", "MODEL.DEVICE", "cpu", "INCLR.MMT.CAMERA_SAMPLER", str(on)])
        loader = build_pseudo_label_loader(cfg, [f"img{i}.png" for i in range(len(labels))], cams, labels, None,
                                           build_transforms(cfg, is_train=True), 2, seed=5, epoch=0)
        try:
            same_camera[on] = sum(any(cams[i] == 0 for i in g[1:])
                                  for batch in _take(loader.batch_sampler, 200) for g in _groups(batch)
                                  if labels[g[0]] == 0 and cams[g[0]] == 0)
        finally:
            close_loader(loader)
    assert same_camera[True] == 0 and same_camera[False] > 0


# ------------------------------------------------------------------------------- both samplers: seeds and ranks
def _sampler_data(layout, labels_seed):
    """labels, the sampler's camera keyword and K of a layout: camera-blind (SIZES, K) or with cameras (CAM_K)."""
    if layout == "labels_only":
        return _labels(labels_seed), {}, K
    labels, cams = _layout()
    return labels, {"camids": cams}, CAM_K


@pytest.mark.parametrize("layout, labels_seed, p, seed, n", [("labels_only", 2, 4, 11, 40), ("cameras", 0, 2, 7, 30)],
                         ids=["labels_only", "cameras"])
def test_same_seed_same_batches_other_seed_differs(layout, labels_seed, p, seed, n):
    labels, cams, k = _sampler_data(layout, labels_seed)
    a = PseudoIdentityBatchSampler(labels, p * k, k, seed=seed, **cams)
    b = PseudoIdentityBatchSampler(labels.copy(), p * k, k, seed=seed, **cams)
    first = _take(a, n)
    assert first == _take(b, n)
    assert first == _take(a, n)  # iterating again (a resumed epoch) replays the same batches
    assert first != _take(PseudoIdentityBatchSampler(labels, p * k, k, seed=seed + 1, **cams), n)


@pytest.mark.parametrize("layout, labels_seed, p, seed, n, world", [
    ("labels_only", 3, 4, 7, 30, 2), ("labels_only", 3, 4, 7, 30, 4),
    ("cameras", 0, 6, 4, 20, 2), ("cameras", 0, 6, 4, 20, 3)],  # cameras: all six identities per global batch
    ids=["labels_only-2ranks", "labels_only-4ranks", "cameras-2ranks", "cameras-3ranks"])
def test_rank_slices_are_disjoint_and_make_the_single_process_batch(layout, labels_seed, p, seed, n, world):
    labels, cams, k = _sampler_data(layout, labels_seed)
    single = _take(PseudoIdentityBatchSampler(labels, p * k, k, seed=seed, **cams), n)
    ranks = [_take(PseudoIdentityBatchSampler(labels, p * k, k, seed=seed, rank=r, world_size=world, **cams), n)
             for r in range(world)]
    for step, whole in enumerate(single):
        slices = [ranks[r][step] for r in range(world)]
        assert all(len(s) == p * k // world for s in slices)  # equal per-rank batches
        ids = [set(int(labels[i]) for i in s) for s in slices]
        assert all(len(x) == p // world for x in ids)
        assert all(not (x & y) for x, y in itertools.combinations(ids, 2)), "two ranks share an identity"
        assert [i for s in slices for i in s] == whole  # rank order = the single-process batch
