"""The synthetic domain-shift benchmark (inclr_fastreid/data/synthetic/: datasets.py, domains.py, cache.py,
render.py, person.py, canvas.py): determinism, Market-style layout, FastReID registry/loader integration,
the on-disk cache, and that identity lives in body regions (docs/design.md §7). Tiny sizes via kwargs;
every root is a tmp folder."""
import dataclasses
import hashlib
import os
import re
from collections import defaultdict

import numpy as np
import pytest

import inclr_fastreid  # noqa: F401  (host compat)
from fastreid.data.common import CommDataset
from fastreid.data.datasets import DATASET_REGISTRY
from inclr_fastreid.data.synthetic import cache, datasets as synthetic, render
from inclr_fastreid.data.synthetic.render import PART_LABELS, render_person

TINY = dict(num_train_ids=4, num_test_ids=3, num_distractor_ids=1, num_cams=4)
NAME_RE = re.compile(r"^(\d{4})_c(\d)s1_(\d{6})_00\.png$")


def tree_digest(path):
    """sha256 over (relative path, bytes) of every file under ``path``, in sorted order."""
    h = hashlib.sha256()
    for dirpath, dirnames, files in os.walk(path):
        dirnames.sort()
        for f in sorted(files):
            full = os.path.join(dirpath, f)
            h.update(os.path.relpath(full, path).encode())
            with open(full, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synth"))
    a = synthetic.SynthA(root=root, **TINY)
    b = synthetic.SynthB(root=root, **TINY)
    return root, a, b


def split_files(ds):
    return {s: sorted(os.listdir(os.path.join(ds.dataset_dir, s))) for s in synthetic.SPLITS}


def parse(names):
    out = []
    for n in names:
        m = NAME_RE.match(n)
        assert m, f"bad file name {n}"
        out.append((int(m.group(1)), int(m.group(2)), int(m.group(3))))
    return out


# --------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------
def test_same_seed_same_bytes_other_seed_differs(tmp_path, tiny_root):
    _, a, _ = tiny_root
    again = synthetic.SynthA(root=str(tmp_path / "r1"), **TINY)
    assert again.dataset_dir != a.dataset_dir
    assert tree_digest(again.dataset_dir) == tree_digest(a.dataset_dir)
    other = synthetic.SynthA(root=str(tmp_path / "r2"), seed=1, **TINY)
    assert os.path.basename(other.dataset_dir).startswith("SynthA_s1_v")
    assert tree_digest(other.dataset_dir) != tree_digest(a.dataset_dir)
    # same layout sizes can differ by seed, but pixels certainly do: compare one common file name
    common = set(os.listdir(os.path.join(a.dataset_dir, "query"))) & set(
        os.listdir(os.path.join(other.dataset_dir, "query")))
    for n in list(common)[:3]:
        with open(os.path.join(a.dataset_dir, "query", n), "rb") as f1, \
                open(os.path.join(other.dataset_dir, "query", n), "rb") as f2:
            assert f1.read() != f2.read()


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------
def test_market_layout(tiny_root):
    root, a, b = tiny_root
    for ds, block in ((a, 0), (b, 1)):
        assert ds.dataset_dir == os.path.join(root, "synthetic", os.path.basename(ds.dataset_dir))
        assert re.match(rf"^{ds.dataset_name}_s0_v{synthetic.FORMAT_VERSION}_[0-9a-f]{{8}}$",
                        os.path.basename(ds.dataset_dir))
        files = split_files(ds)
        assert set(os.listdir(ds.dataset_dir)) == set(synthetic.SPLITS) | {synthetic.DONE_FILE}
        train, query, gallery = (parse(files[s]) for s in synthetic.SPLITS)
        for pid, cam, _ in train + query + gallery:
            assert 1 <= cam <= TINY["num_cams"]
            assert block * synthetic.PID_BLOCK < pid < (block + 1) * synthetic.PID_BLOCK
        train_pids = {p for p, _, _ in train}
        q_pids, g_pids = {p for p, _, _ in query}, {p for p, _, _ in gallery}
        assert len(train_pids) == TINY["num_train_ids"]
        assert len(q_pids) == TINY["num_test_ids"]
        assert q_pids <= g_pids and len(g_pids - q_pids) == TINY["num_distractor_ids"]
        assert not train_pids & g_pids
        # one query per (identity, camera), 1-2 query cameras per identity
        q_keys = [(p, c) for p, c, _ in query]
        assert len(q_keys) == len(set(q_keys))
        per_id = defaultdict(set)
        for p, c in q_keys:
            per_id[p].add(c)
        assert all(1 <= len(cs) <= 2 for cs in per_id.values())
        # every query has a true match in the gallery from another camera (Market protocol)
        g_cams = defaultdict(set)
        for p, c, _ in gallery:
            g_cams[p].add(c)
        for p, c in q_keys:
            assert g_cams[p] - {c}, f"query {p} c{c} has no cross-camera gallery match"
        # sizes per identity: train within the default range, test identities over >= 3 cameras
        n_train = defaultdict(int)
        for p, _, _ in train:
            n_train[p] += 1
        lo, hi = synthetic.DEFAULT_TRAIN_IMAGES
        assert all(lo <= n <= hi for n in n_train.values())
        test_cams = defaultdict(set)
        for p, c, _ in query + gallery:
            test_cams[p].add(c)
        assert all(len(test_cams[p]) >= 3 for p in q_pids)


def test_no_distractors_gives_equal_query_gallery_ids(tmp_path):
    ds = synthetic.SynthA(root=str(tmp_path), num_train_ids=2, num_test_ids=3, num_distractor_ids=0,
                          num_cams=3, train_images=(2, 3))
    assert {p for _, p, _ in ds.query} == {p for _, p, _ in ds.gallery}


def test_domains_have_disjoint_identities(tiny_root):
    _, a, b = tiny_root
    ids = []
    for ds in (a, b):
        files = split_files(ds)
        ids.append({p for s in synthetic.SPLITS for p, _, _ in parse(files[s])})
    assert not ids[0] & ids[1]
    # and they look different: same pid offset inside each block gives different appearance
    p = synthetic.resolve_params(**TINY)
    ia = synthetic.domain_identity(synthetic.DOMAINS["SynthA"], p, 1)
    ib = synthetic.domain_identity(synthetic.DOMAINS["SynthB"], p, 1)
    assert ia != ib


# --------------------------------------------------------------------------------------------
# FastReID integration
# --------------------------------------------------------------------------------------------
def test_registered_and_readable_by_fastreid(tiny_root, caplog):
    root, a, _ = tiny_root
    for name in ("SynthA", "SynthB", "SynthC"):
        assert DATASET_REGISTRY.get(name) is getattr(synthetic, name)
    ds = DATASET_REGISTRY.get("SynthA")(root=root, **TINY)
    assert ds.dataset_dir == a.dataset_dir
    # train: pids / camids prefixed with the dataset name (as Market1501.process_dir does)
    for path, pid, camid in ds.train:
        m = NAME_RE.match(os.path.basename(path))
        assert pid == f"SynthA_{int(m.group(1))}" and camid == f"SynthA_{int(m.group(2)) - 1}"
        assert os.path.dirname(path).endswith("bounding_box_train")
    # test: plain ints, camid 0-based
    for items, folder in ((ds.query, "query"), (ds.gallery, "bounding_box_test")):
        for path, pid, camid in items:
            m = NAME_RE.match(os.path.basename(path))
            assert (pid, camid) == (int(m.group(1)), int(m.group(2)) - 1)
            assert os.path.basename(os.path.dirname(path)) == folder
    assert len(ds.train) == len(os.listdir(os.path.join(ds.dataset_dir, "bounding_box_train")))
    # FastReID's own dataset reads the images (PIL, RGB, 128x64)
    cd = CommDataset(ds.train, transform=None, relabel=True)
    item = cd[0]
    assert item["images"].size == (64, 128) and item["images"].mode == "RGB"
    assert cd.num_classes == TINY["num_train_ids"]
    caplog.set_level("INFO")
    ds.show_train()
    ds.show_test()
    assert "SynthA" in caplog.text
    # combineall (DATASETS.COMBINEALL) folds test identities into train under their own names
    comb = DATASET_REGISTRY.get("SynthA")(root=root, combineall=True, **TINY)
    assert len(comb.train) == len(ds.train) + len(ds.query) + len(ds.gallery)


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------
def test_cache_is_reused_without_rendering(tiny_root, monkeypatch):
    root, a, _ = tiny_root
    before = {f: os.stat(os.path.join(dp, f)).st_mtime_ns
              for dp, _, fs in os.walk(a.dataset_dir) for f in fs}

    def boom(*args, **kwargs):
        raise AssertionError("rendered again despite a valid cache")

    monkeypatch.setattr(cache, "render_domain", boom)  # ensure_domain calls it there
    again = synthetic.SynthA(root=root, **TINY)
    after = {f: os.stat(os.path.join(dp, f)).st_mtime_ns
             for dp, _, fs in os.walk(again.dataset_dir) for f in fs}
    assert before == after
    assert [x[0] for x in again.train] == [x[0] for x in a.train]


def test_incomplete_cache_is_reported(tmp_path):
    ds = synthetic.SynthB(root=str(tmp_path), num_train_ids=2, num_test_ids=2, num_distractor_ids=0,
                          num_cams=3)
    victim = os.path.join(ds.query_dir, sorted(os.listdir(ds.query_dir))[0])
    os.remove(victim)
    with pytest.raises(RuntimeError, match=re.escape(ds.dataset_dir)):
        synthetic.SynthB(root=str(tmp_path), num_train_ids=2, num_test_ids=2, num_distractor_ids=0,
                         num_cams=3)


def test_race_loser_discards_its_copy(tmp_path, monkeypatch):
    """Another process finishes while we render: our rename fails, we use theirs, no temp left."""
    real_render = synthetic.render_domain
    kw = dict(num_train_ids=2, num_test_ids=2, num_distractor_ids=0, num_cams=3)
    calls = []

    def render_while_other_finishes(spec, params, out_dir):
        calls.append(out_dir)
        counts = real_render(spec, params, out_dir)
        if len(calls) == 1:  # the "other process" renders and renames first
            synthetic.ensure_domain(str(tmp_path), spec, params)
        return counts

    monkeypatch.setattr(cache, "render_domain", render_while_other_finishes)
    ds = synthetic.SynthA(root=str(tmp_path), **kw)
    assert len(calls) == 2
    assert sorted(os.listdir(os.path.join(str(tmp_path), "synthetic"))) == [os.path.basename(ds.dataset_dir)]
    assert not any(os.path.exists(c) for c in calls if c != ds.dataset_dir)


def test_unwritable_root_names_the_path(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    bad_root = str(blocker / "datasets")
    with pytest.raises(RuntimeError, match=re.escape(os.path.join(bad_root, "synthetic"))):
        synthetic.SynthA(root=bad_root, num_train_ids=2, num_test_ids=2)


def test_sizes_from_env_and_bad_values(monkeypatch):
    monkeypatch.setenv("INCLR_SYNTH_SCALE", "0.05")
    monkeypatch.setenv("INCLR_SYNTH_SEED", "7")
    p = synthetic.resolve_params()
    assert (p.seed, p.num_train_ids, p.num_test_ids, p.num_distractor_ids) == (7, 6, 5, 0)
    assert synthetic.resolve_params(num_train_ids=9, seed=3).num_train_ids == 9
    monkeypatch.setenv("INCLR_SYNTH_SCALE", "tiny")
    with pytest.raises(ValueError, match="INCLR_SYNTH_SCALE"):
        synthetic.resolve_params()
    monkeypatch.delenv("INCLR_SYNTH_SCALE")
    with pytest.raises(ValueError, match="num_cams"):
        synthetic.resolve_params(num_cams=2)
    with pytest.raises(ValueError, match="scale"):
        synthetic.resolve_params(scale=0)
    monkeypatch.delenv("INCLR_SYNTH_SEED")
    default = synthetic.resolve_params()
    assert synthetic.cache_dir_name(synthetic.DOMAINS["SynthA"], default) == \
        f"SynthA_s0_v{synthetic.FORMAT_VERSION}"


# --------------------------------------------------------------------------------------------
# Identity lives in body regions
# --------------------------------------------------------------------------------------------
def _clean(idn, cam, seed, view="front"):
    return render_person(idn, cam, np.random.default_rng(seed), effects=False, view=view,
                         return_labels=True)


@pytest.fixture(scope="module")
def people():
    spec = synthetic.DOMAINS["SynthA"]
    p = synthetic.resolve_params(seed=0)
    cam = synthetic.domain_cameras(spec, dataclasses.replace(p, num_cams=3))[0]
    idns = [synthetic.domain_identity(spec, p, pid) for pid in range(1, 40)]
    return cam, idns


def test_clean_renders_of_one_identity_agree_on_the_body(people):
    cam, idns = people
    plain = next(i for i in idns if i.pattern == "plain")
    img1, lab1 = _clean(plain, cam, 1)
    img2, lab2 = _clean(plain, cam, 2)
    assert not np.array_equal(img1, img2)  # backgrounds differ
    upper = lab1 == PART_LABELS["upper"]
    assert upper.sum() > 300 and np.array_equal(upper, lab2 == PART_LABELS["upper"])
    m1, m2 = img1[upper].mean(0), img2[upper].mean(0)
    np.testing.assert_array_equal(m1, m2)
    # and it is the identity's upper colour (plain garment, no camera effects)
    np.testing.assert_allclose(m1, np.asarray(plain.upper) * 255, atol=0.51)
    other = next(i for i in idns if i.pattern == "plain" and i is not plain)
    img3, lab3 = _clean(other, cam, 1)
    m3 = img3[lab3 == PART_LABELS["upper"]].mean(0)
    assert np.abs(m3 - m1).max() > 10


def test_each_third_carries_its_own_parts(people):
    """Changing the hair changes only the top third; trousers/shoes only the lower two thirds."""
    cam, idns = people
    base = next(i for i in idns if i.hat is None and i.lower_style == "trousers" and i.hair_style != "buzz")
    img, lab = _clean(base, cam, 0)
    h = img.shape[0]
    top, mid, bot = slice(0, h // 3), slice(h // 3, 2 * h // 3), slice(2 * h // 3, h)
    assert (lab[top] == PART_LABELS["hair"]).any() and (lab[top] == PART_LABELS["skin"]).any()
    assert (lab[mid] == PART_LABELS["upper"]).any() and (lab[bot] == PART_LABELS["lower"]).any()
    assert (lab[bot] == PART_LABELS["shoes"]).any() and not (lab[top] == PART_LABELS["lower"]).any()

    hair2 = dataclasses.replace(base, hair=tuple(1.0 - c for c in base.hair))
    diff = np.any(_clean(hair2, cam, 0)[0] != img, axis=2)
    assert diff[top].sum() > 20 and diff[mid].sum() == 0 and diff[bot].sum() == 0

    legs2 = dataclasses.replace(base, lower=tuple(1.0 - c for c in base.lower),
                                shoes=tuple(1.0 - c for c in base.shoes))
    diff = np.any(_clean(legs2, cam, 0)[0] != img, axis=2)
    assert diff[top].sum() == 0 and diff[bot].sum() > 100


def test_viewpoint_hides_and_shows_parts(people):
    """Backpack: large from the back, straps only from the front; logo: front only."""
    cam, idns = people
    base = idns[0]
    bp = dataclasses.replace(base, bag="backpack", bag_color=(0.0, 0.0, 1.0), hat=None,
                             pattern="logo", upper2=(1.0, 0.0, 0.0), upper=(0.0, 1.0, 0.0))
    acc = {v: (_clean(bp, cam, 0, v)[1] == PART_LABELS["accessory"]).sum() for v in render.VIEWS}
    assert acc["back"] > 3 * acc["front"] > 0 and acc["side"] > 0
    red = {}
    for v in render.VIEWS:
        img, lab = _clean(bp, cam, 0, v)
        red[v] = ((lab == PART_LABELS["upper"]) & (img[..., 0] > 200) & (img[..., 1] < 50)).sum()
    assert red["front"] > 30 and red["back"] == 0 and red["side"] == 0


def test_camera_effects_disturb_but_keep_size(people):
    cam, idns = people
    img = render_person(idns[0], cam, np.random.default_rng(0))
    assert img.shape == (render.H, render.W, 3) and img.dtype == np.uint8
    img2 = render_person(idns[0], cam, np.random.default_rng(0))
    np.testing.assert_array_equal(img, img2)
    clean, _ = _clean(idns[0], cam, 0)
    assert not np.array_equal(img, clean)


def test_synthb10_is_a_seeded_subset_of_synthb_with_at_most_ten_per_identity(tiny_root):
    root, _, b = tiny_root
    low = DATASET_REGISTRY.get("SynthB10")(root=root, **TINY)
    assert low.dataset_dir == b.dataset_dir  # same rendering, no second copy
    full_by_path = {path: (pid, cam) for path, pid, cam in b.train}
    per_id = defaultdict(int)
    for path, pid, cam in low.train:
        assert pid.startswith("SynthB10_") and cam.startswith("SynthB10_")
        assert full_by_path[path] == (pid.replace("SynthB10_", "SynthB_"), cam.replace("SynthB10_", "SynthB_"))
        per_id[pid] += 1
    full_per_id = defaultdict(int)
    for _, pid, _ in b.train:
        full_per_id[pid] += 1
    assert len(per_id) == len(full_per_id)  # every identity kept
    assert all(per_id[p.replace("SynthB_", "SynthB10_")] == min(10, n) for p, n in full_per_id.items())
    assert [x[0] for x in low.query] == [x[0] for x in b.query] and [x[0] for x in low.gallery] == [x[0] for x in b.gallery]
    again = DATASET_REGISTRY.get("SynthB10")(root=root, **TINY)
    assert [x[0] for x in again.train] == [x[0] for x in low.train]  # the same subset every run
    assert [x[0] for x in low.train] == sorted(x[0] for x in low.train)


def test_cap_images_per_identity_keeps_order_and_caps():
    items = [(f"p{i}", i % 3, 0) for i in range(20)]
    out = synthetic.cap_images_per_identity(items, 4, seed=0)
    assert [x[0] for x in out] == [x[0] for x in items if x in out]
    assert [sum(1 for x in out if x[1] == p) for p in range(3)] == [4, 4, 4]
    assert synthetic.cap_images_per_identity(items, 100, seed=0) == items
