"""INCLR meta-architecture and EMA (inclr_fastreid/modeling/meta_arch/: inclr.py, mean_teachers.py,
mutual_losses.py; modeling/ema.py, engine/ema_hook.py) on a tiny CPU model: ResNet-18, 64x32 input,
batch 8 = 2 pseudo ids x 4."""
import copy
import math
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import inclr_fastreid  # noqa: F401  (host compat)
import inclr_fastreid.modeling  # noqa: F401  (registers INCLR, PartPoolHead)
from fastreid.modeling import build_model
from fastreid.solver.build import get_default_optimizer_params
from fastreid.utils.checkpoint import Checkpointer
from inclr_fastreid.engine.ema_hook import EMAHook
from inclr_fastreid.modeling.ema import ema_alpha, ema_update
from inclr_fastreid.modeling.interface import MeanTeacherModel

from tests.helpers.hook import FakeTrainer, close
from tests.helpers.models import NUM_SAMPLES, OSNET_DIM, RESNET_DIM, inclr_batch, tiny_model_cfg

ROWS, K, P = 12, 3, 3
N, D = NUM_SAMPLES, RESNET_DIM
BRANCHES = ("global", "part1", "part2", "part3")


@pytest.fixture(scope="module")
def base_model():
    torch.manual_seed(0)
    return build_model(tiny_model_cfg())


@pytest.fixture
def model(base_model):
    m = copy.deepcopy(base_model)
    m.train()
    return m


def _centroids(k=K, seed=0, d=D):
    g = torch.Generator().manual_seed(seed)
    return {b: F.normalize(torch.randn(k, d, generator=g), dim=1) for b in BRANCHES}


# ---------------------------------------------------------------- EMA
def test_ema_alpha_schedule():
    assert ema_alpha(1, 0.999) == 0.5
    assert ema_alpha(3, 0.999) == 0.75
    assert ema_alpha(0, 0.999) == 0.0
    assert ema_alpha(10**6, 0.999) == 0.999
    with pytest.raises(ValueError, match="EMA_MOMENTUM"):
        ema_alpha(1, 1.0)


class _Pair(nn.Module, MeanTeacherModel):
    """Four tiny networks behind the engine's mean-teacher interface."""

    def __init__(self):
        super().__init__()
        for name in ("student1", "student2", "teacher1", "teacher2"):
            self.add_module(name, nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)))

    def update_teachers(self, alpha):
        ema_update(self.teacher1, self.student1, alpha)
        ema_update(self.teacher2, self.student2, alpha)

    def branch_features(self, batched_inputs):
        raise NotImplementedError

    def set_pseudo_classes(self, num_classes, centroids):
        raise NotImplementedError

    def load_pretrained(self, path1, path2=""):
        raise NotImplementedError


def test_ema_hook_matches_closed_form_and_unwraps_ddp():
    torch.manual_seed(0)
    pair = _Pair()
    t0 = {k: v.clone() for k, v in pair.teacher1.state_dict().items()}
    s1 = {k: v.clone() for k, v in pair.student1.state_dict().items()}
    pair.teacher1[1].running_mean.fill_(7.0)  # buffers are not averaged
    wrapped = nn.DataParallel(pair)  # the hook unwraps DataParallel / DDP
    hook = EMAHook(momentum=0.6)
    hook.trainer = types.SimpleNamespace(model=wrapped, iter=0, skip_steps=False)
    n = 5
    for it in range(n):  # constant student: teacher = A*theta0 + (1-A)*theta_s, A = prod alpha_t
        hook.trainer.iter = it
        hook.after_step()
    a = math.prod(min(1 - 1 / (t + 2), 0.6) for t in range(n))  # t = iter + 1
    assert a == pytest.approx(0.5 * 0.6**4)  # alpha_1 = 1/2, then min(2/3, 3/4, ...; 0.6)
    for name, p in pair.teacher1.named_parameters():
        assert torch.allclose(p, a * t0[name] + (1 - a) * s1[name], atol=1e-6)
    assert torch.equal(pair.teacher1[1].running_mean, torch.full((2,), 7.0))


def test_ema_update_varying_student_closed_form():
    torch.manual_seed(0)
    teacher, student = nn.Linear(2, 2), nn.Linear(2, 2)
    expected = teacher.weight.detach().clone()
    for t, alpha in enumerate([0.0, 0.5, 0.9]):
        with torch.no_grad():
            student.weight.add_(t + 1.0)
        expected = alpha * expected + (1 - alpha) * student.weight.detach()
        ema_update(teacher, student, alpha)
    assert torch.allclose(teacher.weight, expected)


# ---------------------------------------------------------------- training forward
def test_forward_backward_losses_gradients_and_frozen_teachers(model):
    model.set_pseudo_classes(K, _centroids())
    batch = inclr_batch()
    images_before = batch["images"].clone()
    params = get_default_optimizer_params(model, base_lr=0.01, weight_decay=0.0)
    optimised = {id(p) for g in params for p in g["params"]}
    teacher_params = [p for n in ("teacher1", "teacher2") for p in getattr(model, n).parameters()]
    assert not any(id(p) in optimised for p in teacher_params)  # FastReID's optimizer skips teachers
    opt = torch.optim.SGD(params, lr=0.01)
    teachers_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("teacher")}
    students_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("student")}

    losses = model(batch)
    assert set(losses) == {"loss_ce", "loss_soft_ce", "loss_tri", "loss_soft_tri", "loss_kl"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    opt.zero_grad()
    sum(losses.values()).backward()
    assert torch.equal(batch["images"], images_before)  # input not normalised in place
    for s in ("student1", "student2"):
        net = getattr(model, s)
        for p in (net.backbone.conv1.weight, net.heads.weight, net.heads.part_weights[2]):
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
        assert net.heads.weight.grad[K:].abs().sum() == 0  # rows >= K are not used
    assert all(p.grad is None for p in teacher_params)
    opt.step()
    after = model.state_dict()
    for k, v in teachers_before.items():
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(after[k], v), k  # the step leaves teachers alone
    assert not torch.equal(after["student1.backbone.conv1.weight"], students_before["student1.backbone.conv1.weight"])
    assert not torch.equal(after["student2.heads.weight"], students_before["student2.heads.weight"])
    # credibility recorded at the batch's dataset indices, in (0, 1], NaN elsewhere
    cred = model.credibility
    seen = batch["index"]
    assert torch.all((cred[seen] > 0) & (cred[seen] <= 1))
    mask = torch.ones(N, dtype=torch.bool)
    mask[seen] = False
    assert torch.isnan(cred[mask]).all()


def test_set_pseudo_classes_rows_and_only_live_rows_matter(model):
    cents = _centroids()
    model.set_pseudo_classes(K, cents)
    for net in ("student1", "student2", "teacher1", "teacher2"):
        heads = getattr(model, net).heads
        assert torch.equal(heads.weight[:K], cents["global"])
        for p in range(P):
            assert torch.equal(heads.part_weights[p][:K], cents[f"part{p + 1}"])
    assert torch.equal(model.igmo_centroids[:K], cents["global"])
    assert model.igmo_centroids[K:].abs().sum() == 0
    assert int(model.num_live_classes) == K

    batch = inclr_batch(1)
    with torch.no_grad():
        ref = model(batch)
        for net in ("student1", "student2", "teacher1", "teacher2"):
            heads = getattr(model, net).heads
            heads.weight[K:].normal_()
            for w in heads.part_weights:
                w[K:].normal_()
        model.igmo_centroids[K:].normal_()
        again = model(batch)
    for name in ref:
        assert torch.allclose(ref[name], again[name], rtol=1e-5, atol=1e-6), name

    with pytest.raises(ValueError, match="MODEL.HEADS.NUM_CLASSES"):
        model.set_pseudo_classes(ROWS + 1, _centroids(ROWS + 1))
    with pytest.raises(KeyError, match="part3"):
        model.set_pseudo_classes(K, {b: c for b, c in cents.items() if b != "part3"})


def test_training_input_errors(model):
    with pytest.raises(RuntimeError, match="set_pseudo_classes"):
        model(inclr_batch())
    model.set_pseudo_classes(K, _centroids())
    bad = inclr_batch()
    bad["targets"] = torch.tensor([0, 0, 0, 0, 3, 3, 3, 3])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        model(bad)
    from inclr_fastreid.checks import check_aals_epoch

    for bad_epoch in (-1, 1.5, True):
        with pytest.raises(ValueError, match="INCLR.LGMR.AALS_EPOCH"):
            check_aals_epoch(bad_epoch)
    with pytest.raises(ValueError, match="epoch"):
        model.start_epoch(-1)


def test_ablation_switches_mmt_baseline(base_model):
    cfg = tiny_model_cfg(LGMR__ENABLED=False, IGMO__ENABLED=False)
    model = build_model(cfg)
    model.load_state_dict(base_model.state_dict())
    model.train()
    model.set_pseudo_classes(K, _centroids())
    batch = inclr_batch()
    del batch["agreement"], batch["images2"]
    with torch.no_grad():
        losses = model(batch)
    assert set(losses) == {"loss_ce", "loss_soft_ce", "loss_tri", "loss_soft_tri"}
    # without LGMR the hard CE is label-smoothed CE (epsilon 0.1, MMT) on the shared pseudo labels,
    # mean over parts, for S1 and S2 (same view here, different weights), weighted by 1 - SOFT_CE,
    # summed over the two students (MMT)
    with torch.no_grad():
        images = (batch["images"] - model.pixel_mean) / model.pixel_std
        ce = []
        for s in (model.student1, model.student2):
            out = s(images, batch["targets"], K)
            parts = sum(F.cross_entropy(z, batch["targets"], label_smoothing=0.1) for z in out["part_cls_outputs"]) / P
            ce.append(F.cross_entropy(out["cls_outputs"], batch["targets"], label_smoothing=0.1) + parts)
    assert losses["loss_ce"].item() == pytest.approx(0.5 * (ce[0] + ce[1]).item(), rel=1e-4)
    assert torch.isfinite(model.credibility[batch["index"]]).all()  # still measured


def _hand_losses(model, batch, cents, *, soft_ce, soft_tri, lambda_kl, eps, lgmr, aals=True, beta=0.5, temp=20.0):
    """Every loss term of both students rebuilt from the four networks' own outputs with the pure
    loss functions (docs/design.md §4.2): S1 and T1 see view 1, S2 and T2 view 2; each student's soft
    terms use the *other* pair's teacher, its IGMO term its *own* teacher; the students' terms are
    summed (MMT). LGMR (§4.4, PPLR's PPLRTrainer): the global CE against the refined target always,
    the parts' CE label-smoothed with ``eps`` in the warm-up (``aals`` False), agreement-aware after."""
    from inclr_fastreid.modeling.losses import (
        lgmr_global_ce, lgmr_part_loss, soft_cross_entropy, soft_softmax_triplet, softmax_triplet,
        uncertainty_weighted_kl_loss)

    y, agr = batch["targets"], batch["agreement"]
    with torch.no_grad():
        x1 = (batch["images"] - model.pixel_mean) / model.pixel_std
        x2 = (batch["images2"] - model.pixel_mean) / model.pixel_std
        s1, s2 = model.student1(x1, y, K), model.student2(x2, y, K)
        t1, t2 = model.teacher1(x1, y, K), model.teacher2(x2, y, K)

    def ls(z):  # MMT's / PPLR's label-smoothed CE, written out: -(1-eps) log p_y - eps mean_c log p_c
        logp = F.log_softmax(z, 1)
        return (-(1 - eps) * logp.gather(1, y[:, None]).squeeze(1) - eps * logp.mean(1)).mean()

    def one(s, own_t, other_t):
        if lgmr:
            ce_g = lgmr_global_ce(s["cls_outputs"], y, s["part_pred_class_logits"], agr, beta)
            if aals:
                ce_p = sum(lgmr_part_loss(s["part_cls_outputs"][j], y, agr[:, j]) for j in range(P)) / P
            else:
                ce_p = sum(ls(z) for z in s["part_cls_outputs"]) / P
        else:
            ce_g = ls(s["cls_outputs"])
            ce_p = sum(ls(z) for z in s["part_cls_outputs"]) / P
        soft_g = soft_cross_entropy(s["pred_class_logits"], other_t["pred_class_logits"])
        soft_p = sum(soft_cross_entropy(z, zt) for z, zt in
                     zip(s["part_pred_class_logits"], other_t["part_pred_class_logits"])) / P
        kl, _, _ = uncertainty_weighted_kl_loss(s["global_neck"], own_t["global_neck"], cents["global"], y, temp, True)
        return {
            "loss_ce": (1 - soft_ce) * (ce_g + ce_p),
            "loss_soft_ce": soft_ce * (soft_g + soft_p),
            "loss_tri": (1 - soft_tri) * softmax_triplet(s["global_pool"], y),
            "loss_soft_tri": soft_tri * soft_softmax_triplet(s["global_pool"], y, other_t["global_pool"]),
            "loss_kl": lambda_kl * kl,
        }

    a, b = one(s1, t1, t2), one(s2, t2, t1)
    return {name: a[name] + b[name] for name in a}


@pytest.mark.parametrize("lgmr,eps", [(True, 0.15), (False, 0.2)], ids=["lgmr_on", "lgmr_off_smoothed"])
def test_every_loss_term_of_both_students_rebuilt_by_hand(base_model, lgmr, eps):
    """Catches a swapped own/other teacher, a swapped view and a swapped weight: all four networks
    differ, the views differ, and no two weights are equal or complementary. With LGMR on and
    AALS_EPOCH 2, epochs 0 and 1 train the parts with label-smoothed CE and epoch 2 with AALS."""
    soft_ce, soft_tri, lambda_kl = 0.3, 0.8, 0.7
    model = build_model(tiny_model_cfg(MMT__SOFT_CE=soft_ce, MMT__SOFT_TRI=soft_tri, MMT__LABEL_SMOOTH=eps,
                                       IGMO__LAMBDA_KL=lambda_kl, LGMR__ENABLED=lgmr, LGMR__AALS_EPOCH=2))
    model.load_state_dict(base_model.state_dict())
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # teachers differ from their students too
        for t in (model.teacher1, model.teacher2):
            for prm in t.parameters():
                prm.add_(0.05 * torch.randn(prm.shape, generator=g))
    model.train()
    cents = _centroids()
    model.set_pseudo_classes(K, cents)
    batch = inclr_batch(3)
    ce = {}
    for epoch in (0, 1, 2):
        model.start_epoch(epoch)
        with torch.no_grad():
            got = model(batch)
        want = _hand_losses(model, batch, cents, soft_ce=soft_ce, soft_tri=soft_tri, lambda_kl=lambda_kl, eps=eps,
                            lgmr=lgmr, aals=epoch >= 2)
        assert set(got) == set(want)
        for name in want:
            assert got[name].item() == pytest.approx(want[name].item(), abs=1e-5), (epoch, name)
        ce[epoch] = got["loss_ce"].item()
    if lgmr:  # the switch is visible: AALS differs from the warm-up's smoothed CE by far more than 1e-5
        other = _hand_losses(model, batch, cents, soft_ce=soft_ce, soft_tri=soft_tri, lambda_kl=lambda_kl,
                             eps=eps, lgmr=lgmr, aals=True)["loss_ce"].item()
        assert ce[0] == ce[1] and abs(ce[2] - ce[0]) > 1e-3 and abs(other - ce[0]) > 1e-3
    else:  # LGMR off: the epoch changes nothing
        assert ce[0] == ce[1] == ce[2]


# ---------------------------------------------------------------- features, checkpoints, weights
def test_branch_features_and_eval_outputs(model):
    images = inclr_batch()["images"][:3]
    cf = model.branch_features({"images": images})
    assert model.training and model.teacher1.training  # modes restored
    model.eval()
    with torch.no_grad():
        x = (images - model.pixel_mean) / model.pixel_std
        f1, f2 = model.teacher1.eval_features(x), model.teacher2.eval_features(x)
        for b in BRANCHES:
            assert torch.allclose(cf[b], F.normalize(f1[b] + f2[b], dim=1), atol=1e-6)
        out = model({"images": images})
        assert torch.allclose(out, torch.cat([f1["global"]] + [math.sqrt(0.2) * f1[f"part{p}"] for p in (1, 2, 3)], 1), atol=1e-6)
        model.test_model, model.test_feature = "t2", "part2"
        assert torch.allclose(model(images), f2["part2"], atol=1e-6)
        model.test_model, model.test_feature = "mean", "global"
        assert torch.allclose(model(images), cf["global"], atol=1e-6)


def test_checkpoint_round_trip(model, tmp_path):
    model.set_pseudo_classes(K, _centroids())
    model.start_epoch(7)  # the epoch (AALS warm-up) is checkpointed: a resume is exact
    with torch.no_grad():
        model(inclr_batch())  # fills credibility, moves BN statistics
    model.update_teachers(0.5)
    with torch.no_grad():
        model.student2.backbone.conv1.weight.add_(1.0)  # students and teachers now all differ
    Checkpointer(model, str(tmp_path)).save("model_0001")

    torch.manual_seed(123)
    fresh = build_model(tiny_model_cfg())
    assert not torch.equal(fresh.student1.heads.weight, model.student1.heads.weight)
    Checkpointer(fresh, str(tmp_path)).load(str(tmp_path / "model_0001.pth"))
    want, got = model.state_dict(), fresh.state_dict()
    assert set(want) == set(got)
    for k in want:
        assert torch.equal(want[k], got[k]) or (want[k].is_floating_point() and torch.allclose(want[k], got[k], equal_nan=True) and torch.equal(torch.isnan(want[k]), torch.isnan(got[k]))), k
    assert int(fresh.num_live_classes) == K and int(fresh.current_epoch) == 7
    assert torch.isfinite(fresh.credibility).sum() == 8
    assert torch.equal(fresh.igmo_centroids, model.igmo_centroids)


def _save_baseline(path, seed, **heads):
    torch.manual_seed(seed)
    cfg = tiny_model_cfg(meta="Baseline", num_classes=5)
    for k, v in heads.items():
        cfg.MODEL.HEADS[k] = v
    baseline = build_model(cfg)
    torch.save({"model": baseline.state_dict(), "iteration": 3}, path)
    return baseline.state_dict()


def test_load_pretrained_fills_students_and_teachers(model, tmp_path):
    sd1 = _save_baseline(tmp_path / "a.pth", 1)
    sd2 = _save_baseline(tmp_path / "b.pth", 2)
    rows_before = model.student1.heads.weight.detach().clone()
    model.load_pretrained(str(tmp_path / "a.pth"), str(tmp_path / "b.pth"))
    for net, sd in (("student1", sd1), ("teacher1", sd1), ("student2", sd2), ("teacher2", sd2)):
        state = getattr(model, net).state_dict()
        for k, v in sd.items():
            if k == "heads.weight" or k.startswith("heads.part_weights"):
                continue
            assert torch.equal(state[k], v), (net, k)
    assert torch.equal(model.student1.heads.weight, rows_before)  # source classifier skipped
    assert not any(p.requires_grad for p in model.teacher1.parameters())

    model.load_pretrained(str(tmp_path / "a.pth"))  # one checkpoint for both pairs
    assert torch.equal(model.student2.backbone.conv1.weight, sd1["backbone.conv1.weight"])


def test_cluster_quality_sees_both_source_models_as_the_trainer_loads_them(tmp_path):
    """tools/cluster_quality.py measures the first clustering of a run: teacher 2 from INCLR.WEIGHTS2."""
    from tests.helpers.scripts import load_script

    sd1 = _save_baseline(tmp_path / "a.pth", 1)
    sd2 = _save_baseline(tmp_path / "b.pth", 2)
    cluster_quality = load_script("tools/cluster_quality.py")
    cfg = tiny_model_cfg()
    cfg.MODEL.WEIGHTS, cfg.INCLR.WEIGHTS2 = str(tmp_path / "a.pth"), str(tmp_path / "b.pth")
    model = cluster_quality.build_feature_model(cfg)
    assert torch.equal(model.teacher1.backbone.conv1.weight, sd1["backbone.conv1.weight"])
    assert torch.equal(model.teacher2.backbone.conv1.weight, sd2["backbone.conv1.weight"])
    # --whole-run: a run's own checkpoint (every network, teachers moved away from the students) loaded whole
    with torch.no_grad():
        model.teacher2.backbone.conv1.weight.mul_(0.5)
    torch.save({"model": model.state_dict()}, tmp_path / "run.pth")
    cfg.MODEL.WEIGHTS, cfg.INCLR.WEIGHTS2 = str(tmp_path / "run.pth"), ""
    whole = cluster_quality.build_feature_model(cfg, whole_run=True)
    assert torch.equal(whole.teacher2.backbone.conv1.weight, 0.5 * sd2["backbone.conv1.weight"])
    assert torch.equal(whole.student2.backbone.conv1.weight, sd2["backbone.conv1.weight"])


def test_load_pretrained_names_mismatched_keys(model, tmp_path):
    _save_baseline(tmp_path / "two_parts.pth", 1, NUM_PARTS=2)
    with pytest.raises(ValueError, match=r"missing: heads\.part_bottlenecks\.2"):
        model.load_pretrained(str(tmp_path / "two_parts.pth"))
    sd = _save_baseline(tmp_path / "ok.pth", 1)
    sd["heads.extra_thing"] = torch.zeros(1)
    sd["backbone.conv1.weight"] = torch.zeros(3, 3)
    torch.save({"model": sd}, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as err:
        model.load_pretrained(str(tmp_path / "bad.pth"))
    assert "unexpected: heads.extra_thing" in str(err.value)
    assert "wrong shape: backbone.conv1.weight" in str(err.value)


def test_fastreid_per_name_optimizer_rules_reach_each_student(model):
    """SOLVER.HEADS_LR_FACTOR and MODEL.FREEZE_LAYERS name 'heads' / 'backbone' as in a Baseline; in
    INCLR those live under student1./student2. and FastReID's rules alone would miss them."""
    from inclr_fastreid.engine.trainer import INCLRTrainer, NetworkScopedNames

    cfg = tiny_model_cfg()
    cfg.SOLVER.OPT, cfg.SOLVER.BASE_LR, cfg.SOLVER.HEADS_LR_FACTOR = "Adam", 0.01, 2.0
    cfg.MODEL.FREEZE_LAYERS, cfg.SOLVER.FREEZE_ITERS = ["backbone"], 5

    def numel(prefix):
        return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefix) and p.requires_grad)

    heads = numel("student1.heads.") + numel("student2.heads.")
    backbones = numel("student1.backbone.") + numel("student2.backbone.")
    assert heads > 0 and backbones > 0 and numel("teacher") == 0

    # Without the scoping FastReID's rules find nothing to act on.
    plain = get_default_optimizer_params(model, base_lr=0.01, heads_lr_factor=2.0, freeze_layers=["backbone"])
    assert all(g["lr"] == 0.01 and g["freeze_status"] == "normal" for g in plain)

    optimizer, _ = INCLRTrainer.build_optimizer(cfg, model)
    by_kind = {}
    for g in optimizer.param_groups:
        key = (g["lr"], g["freeze_status"])
        by_kind[key] = by_kind.get(key, 0) + sum(p.numel() for p in g["params"])
    assert by_kind.get((0.02, "normal"), 0) == heads
    assert by_kind.get((0.01, "freeze"), 0) == backbones
    assert sum(by_kind.values()) == heads + backbones

    # A single-network model (FastReID's Baseline) is passed through unchanged.
    assert NetworkScopedNames(build_model(tiny_model_cfg(meta="Baseline"))).networks == set()


# ---------------------------------------------------------------- the engine's model interface
def test_models_are_seen_through_the_declared_interface(model):
    """INCLR declares the interface itself; FastReID's Baseline is adapted (PartPoolHead: all
    branches, rows written and masked by the one pseudo-class mechanism); anything else is refused."""
    from inclr_fastreid.modeling.interface import BaselineAdapter, as_pseudo_label_model

    assert as_pseudo_label_model(model) is model and model.num_views == 2
    torch.manual_seed(0)
    baseline = build_model(tiny_model_cfg(meta="Baseline"))
    seen = as_pseudo_label_model(baseline)
    assert isinstance(seen, BaselineAdapter) and seen.num_views == 1 and seen.credibility_values() is None
    assert seen.start_epoch(3) is None  # the default: no epoch-dependent loss
    baseline.eval()
    images = torch.rand(3, 3, 64, 32) * 255
    batch = {"images": images.clone()}
    with torch.no_grad():
        feats = seen.branch_features(batch)
        ref = baseline.heads.eval_features(baseline.backbone((images - baseline.pixel_mean) / baseline.pixel_std))
    assert torch.equal(batch["images"], images)  # the caller's batch is not normalised in place
    assert list(feats) == list(BRANCHES) and all(torch.allclose(feats[b], ref[b], atol=1e-6) for b in BRANCHES)
    cents = _centroids()
    seen.set_pseudo_classes(K, cents)
    for w, b in zip(baseline.heads.classifier_weights(), BRANCHES):
        assert torch.equal(w[:K], cents[b])
    baseline.train()
    out = baseline.heads(baseline.backbone(torch.randn(4, 3, 64, 32)), torch.zeros(4, dtype=torch.long))
    assert out["cls_outputs"].shape[1] == K and all(z.shape[1] == K for z in out["part_cls_outputs"])
    with pytest.raises(TypeError, match="PseudoLabelModel"):
        as_pseudo_label_model(nn.Linear(2, 2))

# ---------------------------------------------------------------- wiring
SMALL_D = OSNET_DIM


@pytest.fixture(scope="module")
def small_base():
    torch.manual_seed(0)
    return build_model(tiny_model_cfg(osnet=True))


@pytest.fixture
def small_model(small_base):
    m = copy.deepcopy(small_base)
    m.train()
    return m


def _perturb_teachers(model, seed=1):
    """Teachers that differ from their students (and from each other): each weight scaled by 1 + 0.3 N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in ("teacher1", "teacher2"):
            for p in getattr(model, name).parameters():
                p.mul_(1 + 0.3 * torch.randn(p.shape, generator=g))


def _by_hand_soft_ce(logits, target_logits):
    return -(F.softmax(target_logits, 1) * F.log_softmax(logits, 1)).sum(1).mean()


def _by_hand_igmo(student_neck, teacher_neck, centroids, targets, temp=20.0):
    """(L_KL, w): Eq. 4-7 written out, w_i = exp(-KL(p_teacher_i || p_student_i))."""
    c = F.normalize(centroids, dim=1)
    log_p = F.log_softmax(temp * F.normalize(student_neck, dim=1) @ c.t(), 1)
    log_pt = F.log_softmax(temp * F.normalize(teacher_neck, dim=1) @ c.t(), 1)
    w = torch.exp(-(log_pt.exp() * (log_pt - log_p)).sum(1))
    return (w * -log_p[torch.arange(len(targets)), targets]).mean(), w


def test_each_student_learns_from_the_right_teacher_and_view(small_model):
    """MMT's soft CE / soft triplet of S1 use T2 (and of S2 use T1); IGMO of each student uses its own
    teacher; view 1 feeds S1 and T1, view 2 feeds S2 and T2 (docs/design.md §4.2, §4.5). The mutual terms
    and the recorded credibility are rebuilt by hand from the four networks' outputs; the wrong
    pairings give values far outside the tolerance (checked), so a swap cannot pass."""
    from inclr_fastreid.modeling.losses import soft_softmax_triplet

    model = small_model
    _perturb_teachers(model)
    cents = _centroids(d=SMALL_D)
    model.set_pseudo_classes(K, cents)
    batch = inclr_batch(3)
    y = batch["targets"]
    with torch.no_grad():
        losses = model(batch)
        mean = torch.tensor(tiny_model_cfg(osnet=True).MODEL.PIXEL_MEAN).view(1, -1, 1, 1)
        std = torch.tensor(tiny_model_cfg(osnet=True).MODEL.PIXEL_STD).view(1, -1, 1, 1)
        views = {1: (batch["images"] - mean) / std, 2: (batch["images2"] - mean) / std}
        out = {(net, v): getattr(model, net)(views[v], y, K)
               for net in ("student1", "student2", "teacher1", "teacher2") for v in (1, 2)}

    def mutual(s1, s2, soft_t1, soft_t2, kl_t1, kl_t2):
        """The three mutual terms (summed over the students, as MMT) and the credibility (averaged)."""
        terms = {"loss_soft_ce": 0.0, "loss_soft_tri": 0.0, "loss_kl": 0.0}
        ws = []
        for s, soft_t, kl_t in ((s1, soft_t1, kl_t1), (s2, soft_t2, kl_t2)):
            parts = sum(_by_hand_soft_ce(z, zt) for z, zt in zip(s["part_pred_class_logits"],
                                                                  soft_t["part_pred_class_logits"])) / P
            terms["loss_soft_ce"] += 0.5 * (_by_hand_soft_ce(s["pred_class_logits"], soft_t["pred_class_logits"]) + parts)
            terms["loss_soft_tri"] += 0.8 * soft_softmax_triplet(s["global_pool"], y, soft_t["global_pool"])
            kl, w = _by_hand_igmo(s["global_neck"], kl_t["global_neck"], cents["global"], y)
            terms["loss_kl"] += 0.5 * kl
            ws.append(w)
        return terms, (ws[0] + ws[1]) / 2

    s1, s2 = out["student1", 1], out["student2", 2]
    t1, t2 = out["teacher1", 1], out["teacher2", 2]
    right, cred = mutual(s1, s2, soft_t1=t2, soft_t2=t1, kl_t1=t1, kl_t2=t2)
    for name, value in right.items():
        assert losses[name].item() == pytest.approx(value.item(), rel=1e-5, abs=1e-7), name
    assert torch.allclose(model.credibility[batch["index"]], cred, rtol=1e-5, atol=1e-7)

    # The test tells the pairings apart: each wrong wiring moves its terms by far more than 1e-5.
    wrong = {
        "soft terms from the own teacher": mutual(s1, s2, soft_t1=t1, soft_t2=t2, kl_t1=t1, kl_t2=t2),
        "IGMO from the other teacher": mutual(s1, s2, soft_t1=t2, soft_t2=t1, kl_t1=t2, kl_t2=t1),
        "teachers see the other view": mutual(s1, s2, soft_t1=out["teacher2", 1], soft_t2=out["teacher1", 2],
                                              kl_t1=out["teacher1", 2], kl_t2=out["teacher2", 1]),
        "students see the other view": mutual(out["student1", 2], out["student2", 1], soft_t1=t2, soft_t2=t1,
                                              kl_t1=t1, kl_t2=t2),
    }
    for what, (terms, w) in wrong.items():
        moved = max(abs(terms[n].item() - right[n].item()) / abs(right[n].item()) for n in right)
        moved = max(moved, ((w - cred).abs() / cred).max().item())
        assert moved > 1e-3, what


def test_from_config_test_feature_model_and_kappa_reach_inference(small_model):
    """INCLR.TEST_FEATURE / TEST_MODEL / KAPPA from the config select what ``inference`` returns:
    the chosen teacher's (or both teachers' re-normalised mean) branch features, joined by hand."""
    model = small_model
    _perturb_teachers(model)
    state = model.state_dict()
    images = inclr_batch(4)["images"][:5]
    cfg = tiny_model_cfg(osnet=True)
    x = (images - torch.tensor(cfg.MODEL.PIXEL_MEAN).view(1, -1, 1, 1)) / torch.tensor(cfg.MODEL.PIXEL_STD).view(1, -1, 1, 1)
    model.eval()
    with torch.no_grad():
        feats = {"t1": model.teacher1.eval_features(x), "t2": model.teacher2.eval_features(x)}
        feats["mean"] = {b: F.normalize(feats["t1"][b] + feats["t2"][b], dim=1) for b in BRANCHES}
        student = model.student1.eval_features(x)["global"]

    def by_hand(feature, which, kappa):
        f = feats[which]
        if feature == "joint":
            return torch.cat([f["global"]] + [math.sqrt(kappa) * f[f"part{p}"] for p in (1, 2, 3)], 1)
        return f[feature]

    settings = [("joint", "t1", 0.2), ("joint", "t2", 0.5), ("joint", "mean", 0.05), ("global", "t2", 0.2),
                ("part1", "mean", 0.2), ("part3", "t1", 0.2), ("global", "t1", 0.2)]
    expected = [by_hand(*s) for s in settings]
    for i, j in ((0, 1), (0, 2), (1, 2), (3, 6)):  # settings really give different features
        assert not torch.allclose(expected[i], expected[j], atol=1e-3)
    assert not torch.allclose(expected[6], student, atol=1e-3)  # a teacher, not the student
    for (feature, which, kappa), want in zip(settings, expected):
        built = build_model(tiny_model_cfg(osnet=True, TEST_FEATURE=feature, TEST_MODEL=which, KAPPA=kappa))
        built.load_state_dict(state)
        built.eval()
        with torch.no_grad():
            got = built({"images": images})
        assert got.shape == want.shape and torch.allclose(got, want, atol=1e-6), (feature, which, kappa)


def test_the_pseudo_label_hook_tells_inclr_the_epoch(items):
    """The hook's before_epoch starts every epoch on the model through the declared interface
    (PseudoLabelModel.start_epoch, through DataParallel), clustering or not: INCLR's current_epoch
    follows trainer.epoch, so the AALS warm-up of docs/design.md §4.4 ends at the right epoch."""
    import os

    from inclr_fastreid.config import setup_cfg
    from inclr_fastreid.engine.pseudo_label_hook import PseudoLabelHook
    from inclr_fastreid.engine.state import PseudoLabelState
    from tests.helpers.tiny import ROOT, SMALL_NET, TINY, TINY_CLUSTER

    cfg = setup_cfg(os.path.join(ROOT, "configs", "INCLR", "duke2market.yml"), TINY + SMALL_NET + TINY_CLUSTER + [
        "MODEL.HEADS.NUM_CLASSES", str(len(items)), "MODEL.WEIGHTS", "", "OUTPUT_DIR", "", "INCLR.SEED", "3",
        "INCLR.CLUSTER.PERIOD", "2", "INCLR.NUM_SAMPLES", str(len(items))])
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    hook = PseudoLabelHook(cfg, items, PseudoLabelState())
    hook.trainer = FakeTrainer()
    hook.trainer.model = nn.DataParallel(model)
    hook.before_train()
    try:
        for epoch, clusters in ((2, True), (3, False)):  # 2: clusters (PERIOD 2); 3: keeps the labels
            hook.trainer.epoch = epoch
            rounds = len(hook.state.history)
            hook.before_epoch()
            assert (len(hook.state.history) > rounds) == clusters
            assert int(model.current_epoch) == epoch
    finally:
        close(hook)


def test_students_summed_as_mmt_or_averaged_by_the_switch(base_model):
    """INCLR.MMT.SUM_STUDENTS (one of run_demo's per-change ablations): True gives the sum of the two
    students' terms (MMT's MMTTrainer, rebuilt by hand), False exactly half of it."""
    summed = build_model(tiny_model_cfg())
    averaged = build_model(tiny_model_cfg(MMT__SUM_STUDENTS=False))
    assert (summed.sum_students, averaged.sum_students) == (True, False)
    cents = _centroids()
    batch = inclr_batch(4)
    got = {}
    for name, m in (("sum", summed), ("mean", averaged)):
        m.load_state_dict(base_model.state_dict())
        m.train()
        m.set_pseudo_classes(K, cents)
        with torch.no_grad():
            got[name] = m(batch)
    want = _hand_losses(summed, batch, cents, soft_ce=0.5, soft_tri=0.8, lambda_kl=0.5, eps=0.1, lgmr=True,
                        aals=False)
    for term in want:
        assert got["sum"][term].item() == pytest.approx(want[term].item(), abs=1e-5), term
        assert got["mean"][term].item() == pytest.approx(0.5 * want[term].item(), abs=1e-5), term
