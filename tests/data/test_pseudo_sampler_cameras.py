"""PseudoIdentityBatchSampler (inclr_fastreid/data/pseudo_dataset.py): P×K batches over pseudo
identities whose K−1 positives come from other cameras than the anchor's where the identity has
any (MMT's RandomMultipleGallerySampler), seeded, rank-sliced."""
import itertools

import numpy as np
import pytest

from inclr_fastreid.data.pseudo_dataset import PseudoIdentityBatchSampler

K = 4  # images per identity


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


def _batches(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def _groups(batch):
    assert len(batch) % K == 0
    return [batch[i:i + K] for i in range(0, len(batch), K)]


def test_batches_are_p_by_k_of_one_label_each_and_never_outliers():
    labels, cams = _layout()
    sampler = PseudoIdentityBatchSampler(labels, 3 * K, K, seed=1, camids=cams)
    for batch in _batches(sampler, 40):
        groups = _groups(batch)
        assert len(groups) == 3
        ids = [labels[g[0]] for g in groups]
        assert len(set(ids)) == 3 and min(ids) >= 0  # P distinct identities, no outlier
        for g in groups:
            assert (labels[g] == labels[g[0]]).all()


def test_positives_come_from_other_cameras_when_the_identity_has_any():
    labels, cams = _layout()
    sampler = PseudoIdentityBatchSampler(labels, 2 * K, K, seed=3, camids=cams)
    seen_anchor_cams = {}
    for batch in _batches(sampler, 300):
        for g in _groups(batch):
            anchor, positives = g[0], g[1:]
            pid = labels[anchor]
            members = np.flatnonzero(labels == pid)
            other_cam = members[cams[members] != cams[anchor]]
            seen_anchor_cams.setdefault(pid, set()).add(cams[anchor])
            if len(other_cam):
                assert all(cams[p] != cams[anchor] for p in positives), (pid, g)  # all from other cameras
                assert set(positives) <= set(other_cam)  # fewer than K-1: repeated, as MMT, never topped up
                if len(other_cam) >= K - 1:  # enough: K distinct images (MMT needs >= K for that)
                    assert len(set(positives)) == K - 1, (pid, g)
            elif len(members) > 1:  # one camera: the identity's other images, without the anchor
                assert anchor not in positives and set(positives) <= set(members)
                if len(members) - 1 >= K - 1:
                    assert len(set(positives)) == K - 1
            else:  # a single image: repeated to keep P×K
                assert g == [anchor] * K
    # every anchor camera of the multi-camera identities was drawn (the anchor is random)
    assert seen_anchor_cams[0] == {0, 1, 2} and seen_anchor_cams[3] == {0, 1} and seen_anchor_cams[4] == {0, 2}


def test_identity_with_one_other_camera_image_and_k_minus_1_other_camera_images():
    labels, cams = _layout()
    sampler = PseudoIdentityBatchSampler(labels, 6 * K, K, seed=5, camids=cams)
    lone = int(np.flatnonzero((labels == 3) & (cams == 1))[0])
    single_cam0_of_4 = int(np.flatnonzero((labels == 4) & (cams == 0))[0])
    hits = {"id3_cam0": 0, "id4_cam0": 0}
    for batch in _batches(sampler, 60):
        for g in _groups(batch):
            if labels[g[0]] == 3 and cams[g[0]] == 0:
                assert g[1:] == [lone] * (K - 1)  # its only other-camera image, three times
                hits["id3_cam0"] += 1
            if g[0] == single_cam0_of_4:
                assert sorted(g[1:]) == sorted(np.flatnonzero((labels == 4) & (cams == 2)).tolist())
                hits["id4_cam0"] += 1
    assert all(hits.values()), hits


def test_without_camera_ids_every_image_counts_as_one_camera():
    labels, _ = _layout()
    sampler = PseudoIdentityBatchSampler(labels, 2 * K, K, seed=2)
    for batch in _batches(sampler, 50):
        for g in _groups(batch):
            members = np.flatnonzero(labels == labels[g[0]])
            if len(members) >= K:
                assert len(set(g)) == K  # K distinct images of the identity
            elif len(members) > 1:
                assert g[0] not in g[1:]


def test_same_seed_same_batches_other_seed_other_batches():
    labels, cams = _layout()
    a = _batches(PseudoIdentityBatchSampler(labels, 2 * K, K, seed=7, camids=cams), 30)
    b = _batches(PseudoIdentityBatchSampler(labels, 2 * K, K, seed=7, camids=cams), 30)
    c = _batches(PseudoIdentityBatchSampler(labels, 2 * K, K, seed=8, camids=cams), 30)
    assert a == b and a != c


@pytest.mark.parametrize("world", [2, 3])
def test_rank_slices_are_disjoint_and_together_make_the_single_process_batch(world):
    labels, cams = _layout()
    p = 6  # all six identities per global batch, divisible by 2 and 3
    single = _batches(PseudoIdentityBatchSampler(labels, p * K, K, seed=4, camids=cams), 20)
    ranks = [_batches(PseudoIdentityBatchSampler(labels, p * K, K, seed=4, camids=cams, rank=r, world_size=world), 20)
             for r in range(world)]
    for step, whole in enumerate(single):
        parts = [ranks[r][step] for r in range(world)]
        assert all(len(x) == p // world * K for x in parts)
        assert sum(parts, []) == whole
        ids = [set(labels[x]) for x in parts]
        assert all(not (ids[i] & ids[j]) for i in range(world) for j in range(i + 1, world))


def test_camera_ids_must_match_the_labels():
    labels, cams = _layout()
    with pytest.raises(ValueError, match="camera ids"):
        PseudoIdentityBatchSampler(labels, 2 * K, K, seed=0, camids=cams[:-1])


def test_the_adaptation_loader_samples_by_camera():
    """engine.loader (what the pseudo-label hook installs) hands the target cameras to the sampler:
    for identity 0 (cameras 0,0,0,1,1,2) a camera-0 anchor never gets a camera-0 positive."""
    from fastreid.data.transforms import build_transforms

    from inclr_fastreid.config import setup_cfg
    from inclr_fastreid.engine.loader import build_pseudo_label_loader, close_loader

    labels, cams = _layout()
    cfg = setup_cfg("", ["SOLVER.IMS_PER_BATCH", str(2 * K), "DATALOADER.NUM_INSTANCE", str(K),
                         "DATALOADER.NUM_WORKERS", "0", "MODEL.DEVICE", "cpu"])
    loader = build_pseudo_label_loader(cfg, [f"img{i}.png" for i in range(len(labels))], cams, labels, None,
                                       build_transforms(cfg, is_train=True), 2, seed=5, epoch=0)
    try:
        checked = 0
        for batch in _batches(loader.batch_sampler, 200):
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
        cfg = setup_cfg("", ["SOLVER.IMS_PER_BATCH", str(2 * K), "DATALOADER.NUM_INSTANCE", str(K),
                             "DATALOADER.NUM_WORKERS", "0", "MODEL.DEVICE", "cpu", "INCLR.MMT.CAMERA_SAMPLER", str(on)])
        loader = build_pseudo_label_loader(cfg, [f"img{i}.png" for i in range(len(labels))], cams, labels, None,
                                           build_transforms(cfg, is_train=True), 2, seed=5, epoch=0)
        try:
            same_camera[on] = sum(any(cams[i] == 0 for i in g[1:])
                                  for batch in _batches(loader.batch_sampler, 200) for g in _groups(batch)
                                  if labels[g[0]] == 0 and cams[g[0]] == 0)
        finally:
            close_loader(loader)
    assert same_camera[True] == 0 and same_camera[False] > 0
