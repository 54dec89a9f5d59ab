"""MODEL.HEADS.NUM_PARTS 0: the paper's Table III "Baseline", MMT as its reference code trains it (global
features only), built as the same INCLR meta-architecture with the global branch alone.

A tiny CPU model (OSNet x0.25, 64x32 input, batch 8 = 2 pseudo ids x 4): losses rebuilt by hand from the
four networks' own outputs, a backward pass, loading a source model pretrained with three parts, the
export loaded by stock FastReID, and the two configuration errors.
"""
import copy
import logging
import os

import pytest
import torch
import torch.nn.functional as F

import inclr_fastreid.modeling  # noqa: F401  (registers INCLR, PartPoolHead)
from fastreid.config import get_cfg
from fastreid.modeling import build_model
from fastreid.utils.checkpoint import Checkpointer
from inclr_fastreid import add_inclr_config
from inclr_fastreid.config import ConfigError, setup_cfg

from tests.helpers.models import NUM_SAMPLES, OSNET_DIM, inclr_batch, tiny_model_cfg
from tests.helpers.tiny import ROOT

ROWS, K = 12, 3
N, D = NUM_SAMPLES, OSNET_DIM
CFG = os.path.join(ROOT, "configs", "INCLR", "ablation", "synthetic_mmt_global.yml")


def _cfg(meta="INCLR", num_parts=0, num_classes=ROWS, lgmr=False):
    """The MMT row: global branch alone, no IGMO, LGMR off (needs part views), OSNet x0.25."""
    return tiny_model_cfg(meta, num_classes, osnet=True, num_parts=num_parts, LGMR__ENABLED=lgmr, IGMO__ENABLED=False)


@pytest.fixture(scope="module")
def base_model():
    torch.manual_seed(0)
    model = build_model(_cfg())
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # teachers differ from their students, so a swapped teacher shows
        for t in (model.teacher1, model.teacher2):
            for prm in t.parameters():
                prm.add_(0.05 * torch.randn(prm.shape, generator=g))
    return model


@pytest.fixture
def model(base_model):
    m = copy.deepcopy(base_model)
    m.train()
    return m


def _centroids(seed=0):
    return {"global": F.normalize(torch.randn(K, D, generator=torch.Generator().manual_seed(seed)), dim=1)}


def test_global_only_networks_have_no_part_branch(model):
    for name in ("student1", "student2", "teacher1", "teacher2"):
        heads = getattr(model, name).heads
        assert heads.num_parts == 0 and len(heads.part_bottlenecks) == 0 and len(heads.part_weights) == 0
    assert not [k for k in model.state_dict() if "part_" in k]
    model.set_pseudo_classes(K, _centroids())  # the centroids of the global space are all it takes
    for name in ("student1", "student2", "teacher1", "teacher2"):
        assert torch.equal(getattr(model, name).heads.weight[:K], _centroids()["global"])


def test_global_only_losses_are_mmts_global_terms_and_backward(model):
    """Shapes, every loss term rebuilt from the networks' outputs (MMT: label-smoothed CE, soft CE against
    the *other* teacher, softmax triplet and its soft form on the pooled feature, summed over the students),
    and a backward pass that reaches backbone and classifier rows 0..K-1 only."""
    from inclr_fastreid.modeling.losses import soft_cross_entropy, soft_softmax_triplet, softmax_triplet

    model.set_pseudo_classes(K, _centroids())
    batch = inclr_batch(parts=0)
    y = batch["targets"]
    losses = model(batch)
    assert set(losses) == {"loss_ce", "loss_soft_ce", "loss_tri", "loss_soft_tri"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())

    with torch.no_grad():
        x1 = (batch["images"] - model.pixel_mean) / model.pixel_std
        x2 = (batch["images2"] - model.pixel_mean) / model.pixel_std
        s1, s2 = model.student1(x1, y, K), model.student2(x2, y, K)
        t1, t2 = model.teacher1(x1, y, K), model.teacher2(x2, y, K)
    for out in (s1, s2, t1, t2):
        assert out["cls_outputs"].shape == out["pred_class_logits"].shape == (8, K)
        assert out["global_pool"].shape == (8, D) and out["global_neck"].shape == (8, D)
        assert out["part_cls_outputs"] == out["part_pred_class_logits"] == out["part_necks"] == []

    def one(s, other_t):
        return {
            "loss_ce": 0.5 * F.cross_entropy(s["cls_outputs"], y, label_smoothing=0.1),
            "loss_soft_ce": 0.5 * soft_cross_entropy(s["pred_class_logits"], other_t["pred_class_logits"]),
            "loss_tri": 0.2 * softmax_triplet(s["global_pool"], y),
            "loss_soft_tri": 0.8 * soft_softmax_triplet(s["global_pool"], y, other_t["global_pool"]),
        }

    a, b = one(s1, t2), one(s2, t1)
    for name in a:
        assert losses[name].item() == pytest.approx((a[name] + b[name]).item(), abs=1e-5), name

    sum(losses.values()).backward()
    for s in ("student1", "student2"):
        net = getattr(model, s)
        for p in (net.backbone.conv1.conv.weight, net.heads.weight):
            assert p.grad is not None and p.grad.abs().sum() > 0
        assert net.heads.weight.grad[K:].abs().sum() == 0
    assert all(p.grad is None for p in model.teacher1.parameters())


def test_joint_feature_is_the_global_feature(model):
    images = inclr_batch(parts=0)["images"][:3]
    model.eval()
    with torch.no_grad():
        x = (images - model.pixel_mean) / model.pixel_std
        f1 = model.teacher1.eval_features(x)
        assert set(f1) == {"global"} and f1["global"].shape == (3, D)
        joint = model({"images": images})
        model.test_feature = "global"
        assert torch.equal(model({"images": images}), joint)
    assert torch.allclose(joint, f1["global"], atol=1e-6)
    assert set(model.branch_features({"images": images})) == {"global"}  # clustering: the global space alone


def _save_source(path, seed, num_parts=3):
    torch.manual_seed(seed)
    baseline = build_model(_cfg(meta="Baseline", num_parts=num_parts, num_classes=5))
    torch.save({"model": baseline.state_dict(), "iteration": 3}, path)
    return baseline.state_dict()


class _Messages(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_a_source_model_with_three_parts_loads_without_its_part_branches(model, tmp_path):
    sd1, sd2 = _save_source(tmp_path / "a.pth", 1), _save_source(tmp_path / "b.pth", 2)
    assert any(k.startswith("heads.part_bottlenecks.2.") for k in sd1)  # the source has three part necks
    rows_before = model.student1.heads.weight.detach().clone()
    log, seen = logging.getLogger("fastreid"), _Messages()  # "fastreid.*": what the run's log.txt records
    level = log.level
    log.addHandler(seen)
    log.setLevel(logging.INFO)
    try:
        model.load_pretrained(str(tmp_path / "a.pth"), str(tmp_path / "b.pth"))
    finally:
        log.removeHandler(seen)
        log.setLevel(level)
    skipped = [m for m in seen.messages if "skipped the 3 part branches" in m]
    assert len(skipped) == 2 and "a.pth" in skipped[0] and "b.pth" in skipped[1]
    assert "MODEL.HEADS.NUM_PARTS 0" in skipped[0]
    for net, sd in (("student1", sd1), ("teacher1", sd1), ("student2", sd2), ("teacher2", sd2)):
        state = getattr(model, net).state_dict()
        assert set(state) == {k for k in sd if "part_" not in k}
        for k, v in state.items():
            if k != "heads.weight":
                assert torch.equal(v, sd[k]), (net, k)
    assert torch.equal(model.student1.heads.weight, rows_before)  # source classifier rows skipped, as always

    # Skipping the parts masks no other mismatch.
    bad = dict(sd1)
    bad["backbone.conv1.conv.weight"] = torch.zeros(3, 3)
    torch.save({"model": bad}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"wrong shape: backbone\.conv1\.conv\.weight"):
        model.load_pretrained(str(tmp_path / "bad.pth"))
    # A model with parts still needs them in its source model.
    _save_source(tmp_path / "global.pth", 3, num_parts=0)
    with_parts = build_model(_cfg(num_parts=3))
    with pytest.raises(ValueError, match=r"missing: heads\.part_bottlenecks\.0"):
        with_parts.load_pretrained(str(tmp_path / "global.pth"))


def test_export_of_a_global_only_run_loads_in_stock_fastreid(model, tmp_path):
    """The exported NUM_PARTS 0 teacher is a Baseline + PartPoolHead that gives INCLR's own inference, and its
    weights load strictly into FastReID's plain Baseline + EmbeddingHead (no add-on config keys), whose
    output is the same feature before L2 normalisation."""
    from inclr_fastreid.export import export_model, feature_description

    model.set_pseudo_classes(K, _centroids())
    with torch.no_grad():
        for m in model.teacher1.modules():  # BN statistics that are not the initial ones
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    Checkpointer(model, str(tmp_path)).save("model_final")
    opts = ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.NAME", "build_osnet_backbone", "MODEL.BACKBONE.DEPTH", "x0_25",
            "MODEL.BACKBONE.FEAT_DIM", str(D), "INPUT.SIZE_TEST", "[64,32]", "MODEL.HEADS.NUM_CLASSES", str(ROWS),
            "INCLR.NUM_SAMPLES", str(N), "OUTPUT_DIR", ""]
    cfg = setup_cfg(CFG, opts)
    res = export_model(cfg, str(tmp_path / "model_final.pth"), "t1", str(tmp_path / "out"))
    assert res["num_parts"] == 0 and res["feature_dim"] == D and res["live_classes"] == K
    assert "NUM_PARTS 0" in feature_description(res) and "EmbeddingHead" in feature_description(res)

    x = torch.rand(4, 3, 64, 32, generator=torch.Generator().manual_seed(7)) * 255
    model.eval()
    with torch.no_grad():
        expected = model({"images": x})

    exported = add_inclr_config(get_cfg())
    exported.merge_from_file(res["config"])
    ours = build_model(exported)
    Checkpointer(ours).load(exported.MODEL.WEIGHTS)
    with torch.no_grad():
        got = ours.eval()(x.clone())
    assert type(ours).__name__ == "Baseline" and (got - expected).abs().max().item() <= 1e-5

    stock = get_cfg()  # FastReID's own config: no INCLR keys, no PartPoolHead
    for key in ("NAME", "DEPTH", "FEAT_DIM", "LAST_STRIDE", "NORM", "WITH_IBN", "WITH_SE", "WITH_NL"):
        stock.MODEL.BACKBONE[key] = exported.MODEL.BACKBONE[key]
    stock.MODEL.BACKBONE.PRETRAIN = False
    for key in ("NORM", "WITH_BNNECK", "POOL_LAYER", "NECK_FEAT", "CLS_LAYER", "EMBEDDING_DIM", "NUM_CLASSES"):
        stock.MODEL.HEADS[key] = exported.MODEL.HEADS[key]
    stock.MODEL.HEADS.NAME = "EmbeddingHead"
    stock.MODEL.PIXEL_MEAN, stock.MODEL.PIXEL_STD = exported.MODEL.PIXEL_MEAN, exported.MODEL.PIXEL_STD
    stock.MODEL.DEVICE = "cpu"
    plain = build_model(stock)
    weights = torch.load(exported.MODEL.WEIGHTS, map_location="cpu", weights_only=True)["model"]
    plain.load_state_dict(weights, strict=True)  # every key and shape: nothing missing, nothing left over
    with torch.no_grad():
        raw = plain.eval()(x.clone())
    assert (F.normalize(raw, dim=1) - expected).abs().max().item() <= 1e-5
    assert (raw.norm(dim=1) - 1).abs().max().item() > 1e-2  # the stock head does not normalise: the test can tell


def test_options_that_need_part_views_are_one_line_config_errors():
    setup_cfg(CFG, [])  # the shipped config is consistent
    with pytest.raises(ConfigError) as err:
        setup_cfg(CFG, ["INCLR.LGMR.ENABLED", "True"])
    msg = str(err.value)
    assert "INCLR.LGMR.ENABLED" in msg and "MODEL.HEADS.NUM_PARTS" in msg and "\n" not in msg
    with pytest.raises(ConfigError) as err:
        setup_cfg(CFG, ["INCLR.CLUSTER.EPS_RULE", "auto"])
    msg = str(err.value)
    assert "INCLR.CLUSTER.EPS_RULE auto" in msg and "MODEL.HEADS.NUM_PARTS" in msg and "\n" not in msg
    # The model build refuses LGMR too (a config built without setup_cfg)
    with pytest.raises(ConfigError, match="INCLR.LGMR.ENABLED.*MODEL.HEADS.NUM_PARTS"):
        build_model(_cfg(lgmr=True))
    # With parts both are fine, and a source pretraining without parts (no clustering) needs neither switch.
    setup_cfg(CFG, ["MODEL.HEADS.NUM_PARTS", "3", "INCLR.LGMR.ENABLED", "True", "INCLR.CLUSTER.EPS_RULE", "auto"])
    setup_cfg(os.path.join(ROOT, "configs", "Pretrain", "synthetic.yml"), ["MODEL.HEADS.NUM_PARTS", "0"])
    with pytest.raises(ConfigError, match=">= 0"):
        build_model(_cfg(num_parts=-1))


def test_a_global_only_head_trains_under_fastreids_stock_baseline():
    """Source pretraining with NUM_PARTS 0 (no clustering, so neither LGMR nor EPS_RULE matters): FastReID's
    Baseline reads the global branch's outputs; the losses are finite and reach the backbone."""
    from fastreid.utils.events import EventStorage

    setup_cfg(os.path.join(ROOT, "configs", "Pretrain", "synthetic.yml"), ["MODEL.HEADS.NUM_PARTS", "0"])
    cfg = _cfg(meta="Baseline", num_classes=4)
    cfg.MODEL.LOSSES.NAME = ("CrossEntropyLoss", "TripletLoss")
    torch.manual_seed(0)
    baseline = build_model(cfg).train()
    batch = {"images": torch.rand(8, 3, 64, 32) * 255, "targets": torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])}
    with EventStorage(0):  # Baseline.losses logs its accuracy there
        losses = baseline(batch)
    assert set(losses) == {"loss_cls", "loss_triplet"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert baseline.backbone.conv1.conv.weight.grad.abs().sum() > 0 and baseline.heads.weight.grad.abs().sum() > 0
    with torch.no_grad():
        out = baseline.eval()(batch["images"])
    assert out.shape == (8, D) and torch.allclose(out.norm(dim=1), torch.ones(8), atol=1e-5)
