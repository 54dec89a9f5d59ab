"""PartPoolHead (inclr_fastreid/modeling/heads/part_pool_head.py): stripe rule, pooled features,
Eq. 9 joint distance, eval feature selection, and one optimiser step under FastReID's stock
``Baseline`` with its stock losses."""
import importlib.util
import math

import pytest
import torch
import torch.nn.functional as F

import inclr_fastreid  # noqa: F401  (host compat)
import inclr_fastreid.modeling  # noqa: F401  (registers PartPoolHead)
from fastreid.config import get_cfg
from fastreid.modeling import build_model
from fastreid.modeling.heads import REID_HEADS_REGISTRY
from fastreid.utils.events import EventStorage
from fastreid.utils.registry import Registry
from inclr_fastreid import add_inclr_config
from inclr_fastreid.registry import register_once
from inclr_fastreid.modeling.heads import PartPoolHead, join_eval_features, stripe_bounds


def _head_cfg(num_classes=8, with_inclr=True, **heads):
    cfg = get_cfg()
    if with_inclr:
        add_inclr_config(cfg)
    else:
        cfg.MODEL.HEADS.NUM_PARTS = 3  # a user who added only NUM_PARTS
    cfg.MODEL.HEADS.NAME = "PartPoolHead"
    cfg.MODEL.HEADS.WITH_BNNECK = True
    cfg.MODEL.HEADS.NUM_CLASSES = num_classes
    cfg.MODEL.BACKBONE.DEPTH = "18x"
    cfg.MODEL.BACKBONE.FEAT_DIM = 512
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.DEVICE = "cpu"
    for k, v in heads.items():
        cfg.MODEL.HEADS[k] = v
    return cfg


def _small_head(feat_dim=6, num_classes=5, num_parts=3, **kw):
    args = dict(
        feat_dim=feat_dim, embedding_dim=0, num_classes=num_classes, num_parts=num_parts, neck_feat="before",
        pool_type="GlobalAvgPool", cls_type="Linear", scale=1, margin=0.0, with_bnneck=True, norm_type="BN",
    )
    args.update(kw)
    return PartPoolHead(**args)


# ---------------------------------------------------------------- stripe rule
def _reference_sizes(h, p):
    """Independent formulation: each stripe takes ceil(remaining rows / remaining stripes)."""
    sizes, left = [], h
    for i in range(p):
        s = -(-left // (p - i))
        sizes.append(s)
        left -= s
    return sizes


@pytest.mark.parametrize("h,p", [(8, 3), (4, 3), (3, 3), (16, 3), (7, 3), (24, 6), (5, 2), (9, 1)])
def test_stripe_bounds_rule(h, p):
    bounds = stripe_bounds(h, p)
    assert len(bounds) == p
    assert bounds[0][0] == 0 and bounds[-1][1] == h
    assert all(bounds[i][1] == bounds[i + 1][0] for i in range(p - 1))  # contiguous, no overlap
    assert [e - s for s, e in bounds] == _reference_sizes(h, p)


def test_stripe_bounds_examples_and_errors():
    assert stripe_bounds(8, 3) == [(0, 3), (3, 6), (6, 8)]
    assert stripe_bounds(4, 3) == [(0, 2), (2, 3), (3, 4)]
    with pytest.raises(ValueError, match="fewer than MODEL.HEADS.NUM_PARTS"):
        stripe_bounds(2, 3)


def test_part_features_are_stripe_means():
    torch.manual_seed(0)
    head = _small_head().train()
    fmap = torch.randn(4, 6, 8, 2)
    out = head(fmap, torch.tensor([0, 1, 2, 3]))
    rows = [[0, 1, 2], [3, 4, 5], [6, 7]]
    for p, rs in enumerate(rows):
        manual = torch.stack([fmap[:, :, r, :] for r in rs], dim=2).mean(dim=(2, 3))
        assert torch.allclose(out["part_pools"][p], manual, atol=1e-6)
    assert torch.allclose(out["global_pool"], fmap.mean(dim=(2, 3)), atol=1e-6)
    # NECK_FEAT=before: 'features' are the pooled features; after: the BNNeck outputs
    assert torch.equal(out["features"], out["global_pool"])
    head.neck_feat = "after"
    out = head(fmap, torch.tensor([0, 1, 2, 3]))
    assert torch.equal(out["features"], out["global_neck"])
    assert all(torch.equal(a, b) for a, b in zip(out["part_features"], out["part_necks"]))


# ---------------------------------------------------------------- Eq. 9
def test_joint_squared_distance_is_eq9():
    g = torch.Generator().manual_seed(1)
    kappa = 0.2
    feats_a = {n: F.normalize(torch.randn(3, 5, generator=g), dim=1) for n in ("global", "part1", "part2", "part3")}
    feats_b = {n: F.normalize(torch.randn(3, 5, generator=g), dim=1) for n in ("global", "part1", "part2", "part3")}
    ja, jb = join_eval_features(feats_a, "joint", kappa), join_eval_features(feats_b, "joint", kappa)
    for i in range(3):
        def d(name):
            return sum((x - y) ** 2 for x, y in zip(feats_a[name][i].tolist(), feats_b[name][i].tolist()))

        eq9 = d("global") + kappa * (d("part1") + d("part2") + d("part3"))
        assert ((ja[i] - jb[i]) ** 2).sum().item() == pytest.approx(eq9, rel=1e-5)
        assert ja[i].norm().item() == pytest.approx(math.sqrt(1 + 3 * kappa), rel=1e-5)


def test_eval_output_follows_test_feature():
    torch.manual_seed(0)
    head = _small_head(kappa=0.5)
    head.train()
    head(torch.randn(8, 6, 8, 2), torch.zeros(8, dtype=torch.long))  # move BN running stats
    head.eval()
    fmap = torch.randn(3, 6, 8, 2)
    feats = head.eval_features(fmap)
    assert list(feats) == ["global", "part1", "part2", "part3"]
    assert all(torch.allclose(f.norm(dim=1), torch.ones(3)) for f in feats.values())
    joint = head(fmap)
    s = math.sqrt(0.5)
    assert torch.allclose(joint, torch.cat([feats["global"], s * feats["part1"], s * feats["part2"], s * feats["part3"]], 1))
    for name in ("global", "part2"):
        head.test_feature = name
        assert torch.equal(head(fmap), feats[name])
    with pytest.raises(ValueError, match="TEST_FEATURE"):
        _small_head(test_feature="part4")


@pytest.mark.parametrize("num_parts", [0, 1, 3, 6])
def test_test_feature_choices_are_joint_and_the_heads_branches(num_parts):
    """checks.py (imported by config.py, so not importing modeling) spells the branch names itself:
    they must be the head's, and eval_features must answer every choice."""
    from inclr_fastreid.checks import allowed_test_features, check_test_feature
    from inclr_fastreid.modeling.heads import branch_names

    assert allowed_test_features(num_parts) == ["joint"] + branch_names(num_parts)
    for name in allowed_test_features(num_parts):
        check_test_feature(name, num_parts)
    with pytest.raises(ValueError, match="TEST_FEATURE"):
        check_test_feature(f"part{num_parts + 1}", num_parts)
    if num_parts:
        head = _small_head(num_parts=num_parts).eval()
        assert list(head.eval_features(torch.randn(2, 6, 8, 2))) == allowed_test_features(num_parts)[1:]


def test_from_config_reads_inclr_keys_or_defaults():
    cfg = _head_cfg()
    cfg.INCLR.TEST_FEATURE = "part1"
    cfg.INCLR.KAPPA = 0.7
    head = REID_HEADS_REGISTRY.get("PartPoolHead")(cfg)
    assert (head.test_feature, head.kappa, head.num_parts) == ("part1", 0.7, 3)
    head = PartPoolHead(_head_cfg(with_inclr=False, NUM_PARTS=2))
    assert (head.test_feature, head.kappa, head.num_parts) == ("joint", 0.2, 2)
    assert len(head.part_weights) == 2 and head.weight.shape == (8, 512)
    bias = head.bottleneck[0].bias
    assert not bias.requires_grad  # BNNeck bias frozen


def test_cos_softmax_margin_applied_to_target_logit_only():
    torch.manual_seed(0)
    head = _small_head(cls_type="CosSoftmax", scale=10.0, margin=0.3).train()
    out = head(torch.randn(4, 6, 8, 2), torch.tensor([0, 1, 2, 3]))
    for cls, pred in [(out["cls_outputs"], out["pred_class_logits"])] + list(
        zip(out["part_cls_outputs"], out["part_pred_class_logits"])
    ):
        diff = pred - cls
        expected = torch.zeros_like(diff)
        expected[torch.arange(4), torch.tensor([0, 1, 2, 3])] = 3.0  # s * m
        assert torch.allclose(diff, expected, atol=1e-5)


def test_num_live_classes_slices_classifier_rows():
    torch.manual_seed(0)
    head = _small_head(num_classes=7).train()
    fmap = torch.randn(4, 6, 8, 2)
    out = head(fmap, torch.tensor([0, 1, 2, 0]), num_live_classes=3)
    assert out["cls_outputs"].shape == (4, 3) and all(z.shape == (4, 3) for z in out["part_cls_outputs"])
    full = head(fmap, torch.tensor([0, 1, 2, 0]))
    assert torch.allclose(full["pred_class_logits"][:, :3], out["pred_class_logits"], atol=1e-6)


# ---------------------------------------------------------------- stock Baseline
def test_stock_baseline_trains_one_step_with_part_pool_head():
    torch.manual_seed(0)
    cfg = _head_cfg(num_classes=8)
    cfg.MODEL.LOSSES.NAME = ("CrossEntropyLoss", "TripletLoss")
    model = build_model(cfg)
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = {"images": torch.rand(8, 3, 64, 32) * 255, "targets": torch.arange(2).repeat_interleave(4)}
    with EventStorage(0):
        losses = model(batch)
    assert set(losses) == {"loss_cls", "loss_triplet"}
    assert all(torch.isfinite(v) for v in losses.values())
    opt.zero_grad()
    sum(losses.values()).backward()
    opt.step()
    after = model.state_dict()
    assert not torch.equal(before["heads.weight"], after["heads.weight"])
    assert not torch.equal(before["backbone.conv1.weight"], after["backbone.conv1.weight"])
    model.eval()
    with torch.no_grad():
        feats = model({"images": torch.rand(2, 3, 64, 32) * 255})
    assert feats.shape == (2, 4 * 512)


# ---------------------------------------------------------------- registration
def test_registration_survives_second_import_under_another_name():
    path = inclr_fastreid.modeling.heads.part_pool_head.__file__
    spec = importlib.util.spec_from_file_location("inclr_fastreid.modeling.heads.part_pool_head_again", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # re-registers 'PartPoolHead': must not assert
    assert REID_HEADS_REGISTRY.get("PartPoolHead") is PartPoolHead


def test_register_once_refuses_a_different_class_with_the_same_name():
    reg = Registry("TEST")

    @register_once(reg)
    class Thing:  # noqa: D401
        pass

    register_once(reg)(Thing)  # same class again: fine
    other = type("Thing", (), {})
    with pytest.raises(KeyError, match="already registered"):
        register_once(reg)(other)
