"""Classifier rows that follow the clusters (engine/rows.py) and a bounded checkpoint folder
(engine/checkpoint.py RoundCheckpointer)."""
import os

import pytest
import torch
from torch import nn

from inclr_fastreid.config import setup_cfg
from inclr_fastreid.engine.checkpoint import RoundCheckpointer, prune_round_checkpoints
from inclr_fastreid.engine.rows import initial_classifier_rows, swap_optimizer_params
from inclr_fastreid.errors import ConfigError
from inclr_fastreid.io import safe_torch_load
from inclr_fastreid.modeling.pseudo_classes import rows_for_clusters

from tests.helpers.layouts import make_market1501
from tests.helpers.tiny import ROOT, SMALL_NET, TINY, TINY_CLUSTER

CONFIGS = os.path.join(ROOT, "configs", "INCLR")


@pytest.mark.parametrize("name, rows", [("duke2market.yml", 500), ("market2duke.yml", 700),
                                        ("duke2msmt.yml", 1500), ("duke2market_dbscan.yml", 1)])
def test_runs_start_with_kmeans_k_rows_or_one_row_under_dbscan(name, rows):
    assert initial_classifier_rows(setup_cfg(os.path.join(CONFIGS, name))) == rows
    cfg = setup_cfg(os.path.join(CONFIGS, name), ["INCLR.CLASSIFIER_ROWS", "77"])
    assert initial_classifier_rows(cfg) == 77


def test_old_and_negative_row_keys_are_named_errors():
    with pytest.raises(ConfigError, match="INCLR.MAX_CLASSES.*renamed.*INCLR.CLASSIFIER_ROWS"):
        setup_cfg(os.path.join(CONFIGS, "duke2market.yml"), ["INCLR.MAX_CLASSES", "10"])
    with pytest.raises(ConfigError, match="INCLR.KEEP_CHECKPOINTS=-1"):
        setup_cfg(os.path.join(CONFIGS, "duke2market.yml"), ["INCLR.KEEP_CHECKPOINTS", "-1"])


def _adam_steps(param, opt, grads):
    for g in grads:
        opt.zero_grad()
        param.grad = g.clone()
        opt.step()


def test_growing_rows_mid_run_equals_having_had_zero_rows_from_the_start():
    """Adam with L2 decay on a 4-row classifier grown to 6 rows after 3 steps ends bit-identical to
    a 6-row classifier whose last two rows were zero (and got zero gradient) all along: the kept rows'
    moments and step count are carried over, the new rows' start at zero."""
    gen = torch.Generator().manual_seed(0)
    init = torch.randn(4, 5, generator=gen)
    grads = [torch.randn(6, 5, generator=gen) for _ in range(5)]
    for g in grads[:3]:
        g[4:] = 0  # the rows do not exist yet
    opts = dict(lr=0.1, weight_decay=5e-4)

    small = nn.Parameter(init.clone())
    opt = torch.optim.Adam([small], **opts)
    _adam_steps(small, opt, [g[:4] for g in grads[:3]])
    grown = nn.Parameter(torch.cat([small.detach(), torch.zeros(2, 5)]))
    swap_optimizer_params(opt, {small: grown})
    assert opt.param_groups[0]["params"][0] is grown and small not in opt.state
    _adam_steps(grown, opt, grads[3:])

    big = nn.Parameter(torch.cat([init.clone(), torch.zeros(2, 5)]))
    ref = torch.optim.Adam([big], **opts)
    _adam_steps(big, ref, grads)
    assert torch.equal(grown.detach(), big.detach())
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(opt.state[grown][key], ref.state[big][key]), key


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    import fastreid.data.build as fr_build

    from inclr_fastreid.engine.trainer import INCLRTrainer

    root = tmp_path_factory.mktemp("rows_data")
    make_market1501(str(root), num_train=6, num_test=2, seed=3)
    saved, saved_env = fr_build._root, os.environ.get("FASTREID_DATASETS")
    fr_build._root = os.environ["FASTREID_DATASETS"] = str(root)
    try:
        cfg = setup_cfg(os.path.join(CONFIGS, "duke2market.yml"),
                        TINY + SMALL_NET + TINY_CLUSTER + ["MODEL.WEIGHTS", "", "INCLR.SEED", "3",
                                                           "OUTPUT_DIR", str(root / "out")])
        yield INCLRTrainer(cfg)
    finally:
        fr_build._root = saved
        if saved_env is None:
            os.environ.pop("FASTREID_DATASETS", None)
        else:
            os.environ["FASTREID_DATASETS"] = saved_env


def test_trainer_grows_all_four_networks_and_the_optimiser_follows(trainer):
    model = trainer.unwrapped_model
    assert model.classifier_rows() == 1  # dbscan: grown at the first round
    trainer.ensure_classifier_rows(5)
    rows = rows_for_clusters(5)
    assert model.classifier_rows() == rows == model.igmo_centroids.shape[0]
    for net in model.network_names:
        heads = getattr(model, net).heads
        assert [w.shape[0] for w in heads.classifier_weights()] == [rows] * 4
    # The optimiser holds exactly the students' trainable parameters, the grown ones included.
    held = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert held == {id(p) for p in model.parameters() if p.requires_grad}

    k = 5
    cents = {n: nn.functional.normalize(torch.randn(k, model.feat_dim), dim=1)
             for n in ("global", "part1", "part2", "part3")}
    model.set_pseudo_classes(k, cents)
    before = model.student1.heads.weight.detach().clone()
    trainer.ensure_classifier_rows(rows)  # K within the rows: nothing changes
    assert model.classifier_rows() == rows and torch.equal(model.student1.heads.weight, before)
    trainer.ensure_classifier_rows(rows + 3)  # K rises past the rows of the first growth
    assert model.classifier_rows() == rows_for_clusters(rows + 3)
    assert torch.equal(model.student1.heads.weight[:rows], before)
    assert not model.student1.heads.weight[rows:].any() and torch.equal(model.igmo_centroids[:k], cents["global"])
    model.update_teachers(0.5)  # teachers and students still pair up shape for shape


def test_round_checkpoints_are_pruned_to_the_newest_and_best_holds_the_network_only(tmp_path):
    from fastreid.utils.checkpoint import Checkpointer

    net = nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    hook = RoundCheckpointer(Checkpointer(net, str(tmp_path), optimizer=opt), period=1, keep=2)
    hook.max_epoch = 5
    for epoch, metric in enumerate([0.1, 0.3, 0.2, 0.25, 0.4]):
        hook.step(epoch, metric=metric)
    names = sorted(os.listdir(tmp_path))
    assert names == ["last_checkpoint", "model_0002.pth", "model_0003.pth", "model_best.pth", "model_final.pth"]
    assert (tmp_path / "last_checkpoint").read_text().strip() == "model_final.pth"
    best = safe_torch_load(str(tmp_path / "model_best.pth"))
    assert best["metric"] == 0.4 and best["epoch"] == 4 and set(best) == {"model", "epoch", "metric"}
    assert "optimizer" in safe_torch_load(str(tmp_path / "model_0003.pth"))

    for name in ("model_0007.pth", "model_0010.pth", "model_0100.pth"):
        (tmp_path / name).write_bytes(b"x")
    assert prune_round_checkpoints(str(tmp_path), 0) == []  # 0 keeps every one
    assert prune_round_checkpoints(str(tmp_path), 1) == ["model_0002.pth", "model_0003.pth", "model_0007.pth",
                                                         "model_0010.pth"]
    assert sorted(p.name for p in tmp_path.glob("model_*.pth")) == ["model_0100.pth", "model_best.pth",
                                                                  "model_final.pth"]
