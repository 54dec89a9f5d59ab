"""INCLR's losses (inclr_fastreid/modeling/losses) against slow, obvious references written here
(loops over samples, math on Python floats), and which inputs receive gradients."""
import math

import pytest
import torch

import inclr_fastreid  # noqa: F401  (host compat)
from inclr_fastreid.modeling.losses import (
    credibility,
    igmo_probabilities,
    inaccuracy,
    label_smoothed_cross_entropy,
    lgmr_global_ce,
    lgmr_part_loss,
    soft_cross_entropy,
    soft_softmax_triplet,
    softmax_triplet,
    uncertainty_weighted_kl_loss,
)


def _softmax(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    s = sum(e)
    return [v / s for v in e]


def _dist(a, b):
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


def _f32_distance_tol(ref, *feature_sets):
    """Absolute tolerance for a triplet-type loss that ``pairwise_euclidean`` computes in float32 against a
    float64 loop reference, from float32's error bound rather than a fixed rel=1e-5 (the |a|^2 + |b|^2 - 2 a.b
    form cancels digits, by an amount that depends on the BLAS kernel).

    Per pair: d^2 is three sums of D products and two adds, each rounding error <= (D + 3) eps (|a|^2 + |b|^2);
    d = sqrt(d^2) moves by at most that / d; rounding the float64 inputs to float32 moves d by <= eps (|a| + |b|).
    The losses are softmaxes of +-d: each anchor's term moves by at most (2 + max d) times the largest error of
    its distances (the 2 for the student's two distances, max d for a teacher's target weights). Plus a few eps
    relative for exp/log."""
    eps = torch.finfo(torch.float32).eps
    worst, dmax = 0.0, 0.0
    for feats in feature_sets:
        x = torch.as_tensor(feats, dtype=torch.float64)
        n = x.norm(dim=1)
        d = torch.cdist(x, x)
        off = ~torch.eye(len(x), dtype=torch.bool)
        err = ((x.shape[1] + 3) * eps * (n[:, None] ** 2 + n[None, :] ** 2) / d.clamp(min=1e-6)
               + eps * (n[:, None] + n[None, :]))
        worst, dmax = max(worst, err[off].max().item()), max(dmax, d[off].max().item())
    return (2 + dmax) * worst + 16 * eps * abs(ref)


def _hardest(feats, labels, i):
    """(hardest positive index, hardest negative index or None) by looping."""
    best_p, best_n = None, None
    for j in range(len(feats)):
        d = _dist(feats[i], feats[j])
        if labels[j] == labels[i]:
            if best_p is None or d > best_p[0]:
                best_p = (d, j)
        elif best_n is None or d < best_n[0]:
            best_n = (d, j)
    return best_p[1], (best_n[1] if best_n else None)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def test_soft_cross_entropy_value_and_gradients(gen):
    logits = torch.randn(4, 5, generator=gen, dtype=torch.float64).requires_grad_()
    target = torch.randn(4, 5, generator=gen, dtype=torch.float64).requires_grad_()
    ref = 0.0
    for i in range(4):
        q = _softmax(target[i].tolist())
        p = _softmax(logits[i].tolist())
        ref += -sum(qc * math.log(pc) for qc, pc in zip(q, p))
    ref /= 4
    loss = soft_cross_entropy(logits, target)
    assert loss.item() == pytest.approx(ref, rel=1e-5)
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert target.grad is None  # the teacher's prediction is a fixed target


def test_label_smoothed_cross_entropy_hand_computed():
    """MMT's CrossEntropyLabelSmooth: target (1 - eps) onehot + eps / K over the K live classes."""
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], requires_grad=True)
    labels = torch.tensor([0, 1])
    eps = 0.1
    ref = 0.0
    for row, y in zip(logits.tolist(), labels.tolist()):
        log_p = [math.log(v) for v in _softmax(row)]
        q = [(1 - eps) * (c == y) + eps / 3 for c in range(3)]
        ref += -sum(qc * lp for qc, lp in zip(q, log_p))
    ref /= 2
    # by hand: -log p = (0.16985, 2.16985, 3.16985) for row 1 (y = 0), (2.65201, 2.65201, 0.15201) for row 2 (y = 1)
    assert ref == pytest.approx((0.9 * 0.16985 + 0.1 / 3 * (0.16985 + 2.16985 + 3.16985)
                                 + 0.9 * 2.65201 + 0.1 / 3 * (2.65201 + 2.65201 + 0.15201)) / 2, abs=1e-4)
    loss = label_smoothed_cross_entropy(logits, labels, eps)
    assert loss.item() == pytest.approx(ref, rel=1e-6)
    assert label_smoothed_cross_entropy(logits, labels, 0.0).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-6)
    assert loss.item() == pytest.approx(  # the same as torch's own label smoothing
        torch.nn.functional.cross_entropy(logits, labels, label_smoothing=eps).item(), rel=1e-6)
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="LABEL_SMOOTH"):
        label_smoothed_cross_entropy(logits, labels, 1.0)


def _ref_softmax_triplet(feats, labels, margin):
    per = []
    for i in range(len(feats)):
        p, n = _hardest(feats, labels, i)
        if n is None:
            continue
        dp, dn = _dist(feats[i], feats[p]), _dist(feats[i], feats[n])
        prob_p = math.exp(-dp) / (math.exp(-dp) + math.exp(-dn))
        per.append(-(1 - margin) * math.log(prob_p) - margin * math.log(1 - prob_p))
    return sum(per) / len(per)


@pytest.mark.parametrize("margin", [0.0, 0.3])
def test_softmax_triplet_matches_loop_reference(gen, margin):
    feats = torch.randn(7, 4, generator=gen, dtype=torch.float64)
    labels = [0, 0, 1, 1, 1, 2, 3]  # ids 2 and 3 have only themselves as positive
    f = feats.clone().requires_grad_()
    loss = softmax_triplet(f, torch.tensor(labels), margin=margin)
    ref = _ref_softmax_triplet(feats.tolist(), labels, margin)
    assert loss.item() == pytest.approx(ref, rel=0, abs=_f32_distance_tol(ref, feats))
    loss.backward()
    assert f.grad is not None and torch.isfinite(f.grad).all()


def test_softmax_triplet_hand_computed():
    # 1-D features: anchor 0 at 0, positive at 1, negative at 3 -> d_ap = 1, d_an = 3
    f = torch.tensor([[0.0], [1.0], [3.0], [4.5]])
    labels = torch.tensor([0, 0, 1, 1])
    # anchor0: p=1 (d1), n=2 (d3); anchor1: p=0 (d1), n=2 (d2); anchor2: p=3 (d1.5), n=1 (d2);
    # anchor3: p=2 (d1.5), n=1 (d3.5)
    pairs = [(1, 3), (1, 2), (1.5, 2), (1.5, 3.5)]
    ref = sum(math.log(1 + math.exp(dp - dn)) for dp, dn in pairs) / 4
    assert softmax_triplet(f, labels).item() == pytest.approx(ref, rel=0, abs=_f32_distance_tol(ref, f))


def test_softmax_triplet_single_identity_batch_is_zero_with_graph():
    f = torch.randn(4, 3).requires_grad_()
    loss = softmax_triplet(f, torch.zeros(4, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(f.grad, torch.zeros_like(f))


def test_soft_softmax_triplet_matches_loop_and_detaches_teacher(gen):
    feats = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    teacher = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    labels = [0, 0, 0, 1, 1, 2]
    ref = 0.0
    for i in range(6):
        p, n = _hardest(feats.tolist(), labels, i)  # pairs chosen on the student
        ds = (_dist(feats[i].tolist(), feats[p].tolist()), _dist(feats[i].tolist(), feats[n].tolist()))
        dt = (_dist(teacher[i].tolist(), teacher[p].tolist()), _dist(teacher[i].tolist(), teacher[n].tolist()))
        q = _softmax([-dt[0], -dt[1]])
        s = _softmax([-ds[0], -ds[1]])
        ref += -(q[0] * math.log(s[0]) + q[1] * math.log(s[1]))
    ref /= 6
    f = feats.clone().requires_grad_()
    t = teacher.clone().requires_grad_()
    loss = soft_softmax_triplet(f, torch.tensor(labels), t)
    assert loss.item() == pytest.approx(ref, rel=0, abs=_f32_distance_tol(ref, feats, teacher))
    loss.backward()
    assert f.grad is not None and f.grad.abs().sum() > 0
    assert t.grad is None


def test_soft_softmax_triplet_equals_hard_when_teacher_is_student(gen):
    # with the student as its own teacher the target is its own distribution: the soft loss is the
    # entropy of [P(p), P(n)], which is >= 0 and below the hard loss -log P(p) only when P(p) < 1
    f = torch.randn(6, 3, generator=gen)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    soft = soft_softmax_triplet(f, labels, f)
    assert 0.0 <= soft.item() <= math.log(2) + 1e-6


def _ref_lgmr_target(labels, part_logits, agreement, k, beta):
    out = []
    for i, y in enumerate(labels):
        w = _softmax(agreement[i])
        row = [beta * (1.0 if c == y else 0.0) for c in range(k)]
        for p, z in enumerate(part_logits):
            q = _softmax(z[i])
            for c in range(k):
                row[c] += (1 - beta) * w[p] * q[c]
        out.append(row)
    return out


def test_lgmr_global_ce_matches_loop_and_detaches_parts(gen):
    b, k, parts = 5, 4, 3
    g = torch.randn(b, k, generator=gen, dtype=torch.float64).requires_grad_()
    zs = [torch.randn(b, k, generator=gen, dtype=torch.float64).requires_grad_() for _ in range(parts)]
    agreement = torch.rand(b, parts, generator=gen, dtype=torch.float64)
    labels = [0, 3, 1, 1, 2]
    target = _ref_lgmr_target(labels, [z.tolist() for z in zs], agreement.tolist(), k, 0.5)
    ref = 0.0
    for i in range(b):
        logp = [math.log(v) for v in _softmax(g[i].tolist())]
        ref += -sum(t * lp for t, lp in zip(target[i], logp))
    ref /= b
    loss = lgmr_global_ce(g, torch.tensor(labels), zs, agreement, beta=0.5)
    assert loss.item() == pytest.approx(ref, rel=1e-5)
    loss.backward()
    assert g.grad is not None
    assert all(z.grad is None for z in zs)  # part predictions are a teacher signal


def test_lgmr_global_ce_beta_one_is_plain_cross_entropy(gen):
    g = torch.randn(6, 5, generator=gen)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    zs = [torch.randn(6, 5, generator=gen) for _ in range(2)]
    loss = lgmr_global_ce(g, labels, zs, torch.rand(6, 2, generator=gen), beta=1.0)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(g, labels).item(), rel=1e-6)


def test_lgmr_part_loss_matches_loop(gen):
    b, k = 5, 4
    z = torch.randn(b, k, generator=gen, dtype=torch.float64).requires_grad_()
    c = torch.tensor([1.0, 0.0, 0.25, 0.5, 0.9], dtype=torch.float64).requires_grad_()
    labels = [0, 3, 1, 1, 2]
    ref = 0.0
    for i in range(b):
        q = _softmax(z[i].tolist())
        ce = -math.log(q[labels[i]])
        kl = sum((1 / k) * math.log((1 / k) / qc) for qc in q)  # KL(uniform || q)
        ref += c[i].item() * ce + (1 - c[i].item()) * kl
    ref /= b
    loss = lgmr_part_loss(z, torch.tensor(labels), c)
    assert loss.item() == pytest.approx(ref, rel=1e-5)
    loss.backward()
    assert z.grad is not None and c.grad is None


def test_lgmr_rejects_bad_labels_and_shapes(gen):
    g = torch.randn(3, 4, generator=gen)
    with pytest.raises(ValueError, match="outliers"):
        lgmr_part_loss(g, torch.tensor([0, -1, 2]), torch.ones(3))
    with pytest.raises(ValueError, match="B x P"):
        lgmr_global_ce(g, torch.tensor([0, 1, 2]), [g, g], torch.ones(3, 3))


def _ref_probs(feats, cents, temp):
    out = []
    for f in feats:
        nf = math.sqrt(sum(v * v for v in f))
        sims = []
        for c in cents:
            nc = math.sqrt(sum(v * v for v in c))
            sims.append(temp * sum(a * b for a, b in zip(f, c)) / (nf * nc))
        out.append(_softmax(sims))
    return out


def test_igmo_probabilities_and_inaccuracy_match_loops(gen):
    feats = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    teach = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    cents = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    p = igmo_probabilities(feats, cents, temp=20.0)
    ref_p = _ref_probs(feats.tolist(), cents.tolist(), 20.0)
    assert torch.allclose(p, torch.tensor(ref_p, dtype=p.dtype), atol=1e-6)
    pt = igmo_probabilities(teach, cents, temp=20.0)
    inacc = inaccuracy(pt, p)
    for i in range(4):
        ref = sum(a * math.log(a / b) for a, b in zip(pt[i].tolist(), p[i].tolist()) if a > 0)
        assert inacc[i].item() == pytest.approx(ref, rel=1e-4, abs=1e-6)
    assert torch.allclose(credibility(inacc), torch.exp(-inacc))
    assert torch.allclose(inaccuracy(p, p), torch.zeros(4, dtype=p.dtype), atol=1e-9)


def _ref_uwkl(student, teacher, cents, labels, temp, detach_weight):
    """Eq. 4-7 written with explicit per-sample sums; differentiable w.r.t. ``student``."""
    terms, inaccs = [], []
    cn = cents / cents.norm(dim=1, keepdim=True)
    for i in range(student.shape[0]):
        s = student[i] / student[i].norm()
        t = teacher[i] / teacher[i].norm()
        logits_s = torch.stack([temp * (s * cn[c]).sum() for c in range(cn.shape[0])])
        logits_t = torch.stack([temp * (t * cn[c]).sum() for c in range(cn.shape[0])])
        log_p = logits_s - torch.logsumexp(logits_s, 0)
        p_t = torch.softmax(logits_t, 0)
        inacc = sum(p_t[c] * (torch.log(p_t[c]) - log_p[c]) for c in range(cn.shape[0]))
        w = torch.exp(-inacc)
        if detach_weight:
            w = w.detach()
        terms.append(-w * log_p[labels[i]])
        inaccs.append(inacc)
    loss = torch.stack(terms).mean()
    if not detach_weight:
        loss = loss + torch.stack(inaccs).mean()
    return loss


@pytest.mark.parametrize("detach_weight", [True, False])
def test_uncertainty_weighted_kl_loss_value_and_gradients(gen, detach_weight):
    student = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    teacher = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    cents = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    labels = [0, 2, 1, 1, 0]

    s_ref = student.clone().requires_grad_()
    ref = _ref_uwkl(s_ref, teacher, cents, labels, 20.0, detach_weight)
    ref.backward()

    s = student.clone().requires_grad_()
    t = teacher.clone().requires_grad_()
    c = cents.clone().requires_grad_()
    loss, w, inacc = uncertainty_weighted_kl_loss(s, t, c, torch.tensor(labels), 20.0, detach_weight)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    loss.backward()
    assert torch.allclose(s.grad, s_ref.grad, atol=1e-8)
    assert t.grad is None and c.grad is None  # teacher branch and centroids are references
    assert not w.requires_grad and not inacc.requires_grad
    assert torch.allclose(w, torch.exp(-inacc))


def test_uncertainty_weighted_kl_loss_weight_gradient_only_when_not_detached(gen):
    student = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    teacher = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    cents = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0, 2, 1, 1, 0])
    grads = {}
    for flag in (True, False):
        s = student.clone().requires_grad_()
        loss, _, inacc = uncertainty_weighted_kl_loss(s, teacher, cents, labels, 20.0, flag)
        if not flag:  # the non-detached loss differs by exactly mean(I) in value ...
            assert loss.item() == pytest.approx(grads["loss"] + inacc.mean().item(), rel=1e-9)
        loss.backward()
        grads[flag] = s.grad
        grads["loss"] = loss.item()
    assert not torch.allclose(grads[True], grads[False])  # ... and gradients flow through w


def test_uncertainty_weighted_kl_loss_rejects_labels_beyond_centroids(gen):
    with pytest.raises(ValueError, match="number of centroids"):
        uncertainty_weighted_kl_loss(torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 2]))
