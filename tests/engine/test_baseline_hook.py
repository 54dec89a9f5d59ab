"""FastReID's stock ``Baseline`` + the PseudoLabelHook (docs/design.md §1 item 4, §9): after a clustering
the classifier rows 0..K-1 of every branch are the L2-normalised cluster centroids of the features
the hook clustered (recomputed here by hand from the images), training logits have exactly K live
columns (rows >= K get no gradient: they never enter the softmax), and evaluation output is the
untouched full feature. The hook is driven through its ``before_epoch`` with a stand-in trainer, on
a real Baseline and the 18 images of the ``items`` fixture (tests/conftest.py)."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastreid.data.data_utils import read_image
from fastreid.data.transforms import build_transforms
from fastreid.modeling import build_model
from fastreid.utils.events import EventStorage

from inclr_fastreid.config import setup_cfg
from inclr_fastreid.engine.pseudo_label_hook import PseudoLabelHook
from inclr_fastreid.engine.state import PseudoLabelState

from tests.helpers.hook import FakeTrainer
from tests.helpers.tiny import ROOT, SMALL_NET, TINY, TINY_CLUSTER

ROWS = 18  # one classifier row per target image, as the trainer pre-allocates
HEADS = {  # config, with the head it brings
    "EmbeddingHead": ("configs/UDA/duke2market_baseline.yml", []),
    "PartPoolHead": ("configs/Pretrain/duke.yml", ["INCLR.CLUSTER.ENABLED", "True"]),
}


def _clustered(items, head):
    """A Baseline with ``head`` after the hook's epoch-0 clustering, and the hook."""
    config, extra = HEADS[head]
    cfg = setup_cfg(os.path.join(ROOT, config), TINY + SMALL_NET + TINY_CLUSTER + extra + [
        "MODEL.HEADS.NUM_CLASSES", str(ROWS), "MODEL.WEIGHTS", "", "OUTPUT_DIR", "", "INCLR.SEED", "3"])
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()  # as the trainer holds it
    hook = PseudoLabelHook(cfg, items, PseudoLabelState())
    hook.trainer = FakeTrainer()
    hook.trainer.model = model
    hook.before_train()
    hook.before_epoch()
    return cfg, model, hook


def _normalised_images(cfg, items):
    tf = build_transforms(cfg, is_train=False)
    x = torch.stack([tf(read_image(it.path)) for it in items])
    mean = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(1, -1, 1, 1)
    std = torch.tensor(cfg.MODEL.PIXEL_STD).view(1, -1, 1, 1)
    return (x - mean) / std


def _by_hand_branch_features(model, head, x):
    """Eval-mode, L2-normalised features per branch, from the head's own layers."""
    heads = model.heads
    fmap = model.backbone(x)
    if head == "EmbeddingHead":
        return {"global": F.normalize(heads.bottleneck(heads.pool_layer(fmap))[..., 0, 0], dim=1)}
    return heads.eval_features(fmap)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_rows_are_centroids_and_only_k_columns_live_in_training(items, head):
    cfg, model, hook = _clustered(items, head)
    k = hook.state.num_classes
    labels = hook.state.labels.numpy()
    assert k >= 2 and hook.state.history[-1]["action"] == "trained"
    if head == "PartPoolHead":  # INCLR.LGMR.ENABLED (default) + part branches: LGMR's cross-agreement ran
        assert hook.state.agreement.shape == (len(items), 3) and not torch.all(hook.state.agreement == 1)
    else:
        assert hook.state.agreement is None
    assert model.training, "the hook must give the model back in training mode"

    # Rows 0..K-1 of every classifier = normalised mean of the cluster's normalised features.
    x = _normalised_images(cfg, items)
    model.eval()
    with torch.no_grad():
        feats = _by_hand_branch_features(model, head, x)
    model.train()
    weights = {"global": model.heads.weight}
    weights.update({f"part{p + 1}": w for p, w in enumerate(getattr(model.heads, "part_weights", []))})
    assert set(weights) == set(feats) and len(feats) == (1 if head == "EmbeddingHead" else 4)
    for branch, f in feats.items():
        want = torch.stack([F.normalize(f[labels == c].sum(0), dim=0) for c in range(k)])
        assert torch.allclose(weights[branch][:k], want, atol=1e-5), branch

    # Training: K logit columns, equal to the first K of the full product; dead rows get no gradient.
    batch = next(hook.trainer._trainer._data_loader_iter)
    assert set(batch["targets"].tolist()) <= set(range(k))
    assert np.array_equal(labels[batch["index"].numpy()], batch["targets"].numpy())
    images = (batch["images"] - torch.tensor(cfg.MODEL.PIXEL_MEAN).view(1, -1, 1, 1)) / torch.tensor(
        cfg.MODEL.PIXEL_STD).view(1, -1, 1, 1)
    with torch.no_grad():
        fmap = model.backbone(images)
        out = model.heads(fmap, batch["targets"])
    for key in ("cls_outputs", "pred_class_logits"):
        assert out[key].shape == (len(images), k), key
    for logits in out.get("part_cls_outputs", []) + out.get("part_pred_class_logits", []):
        assert logits.shape == (len(images), k)
    if head == "EmbeddingHead":  # Linear classifier, no margin: logits = s * neck . W^T
        with torch.no_grad():
            neck = model.heads.bottleneck(model.heads.pool_layer(fmap))[..., 0, 0]
            full = F.linear(neck, model.heads.weight) * model.heads.cls_layer.s
        assert full.shape[1] == ROWS
        assert torch.allclose(out["pred_class_logits"], full[:, :k], atol=1e-5)
    model.zero_grad()
    with EventStorage(0):
        # FastReID's own Baseline.losses on the K columns (preprocess_image normalises in place: a copy)
        losses = model({**batch, "images": batch["images"].clone()})
    assert set(losses) >= {"loss_cls"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    grad = model.heads.weight.grad
    assert grad[:k].abs().sum() > 0 and grad[k:].abs().sum() == 0

    # Evaluation: the full feature, untouched by the training-time column cut.
    model.eval()
    with torch.no_grad():
        got = model({"images": batch["images"].clone()})
        f = _by_hand_branch_features(model, head, images)
    if head == "EmbeddingHead":
        want = model.heads.bottleneck(model.heads.pool_layer(model.backbone(images)))[..., 0, 0]
    else:
        s = cfg.INCLR.KAPPA ** 0.5
        want = torch.cat([f["global"]] + [s * f[f"part{p}"] for p in (1, 2, 3)], 1)
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5)
    hook.after_train()
