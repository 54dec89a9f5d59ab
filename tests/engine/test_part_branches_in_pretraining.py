"""Part branches that no loss reaches are not optimised (docs/design.md §4.2.4).

FastReID's stock Baseline with PartPoolHead (source pretraining, configs/UDA) trains on the global
branch only. FastReID's contiguous-buffer Adam gave the part branches zero gradients, so weight
decay alone shrank them every step; the trainer now leaves them out of the optimizer. INCLR's
students keep every parameter trainable.
"""
import os

import pytest
import torch

import inclr_fastreid  # noqa: F401  (host compat)
import inclr_fastreid.modeling  # noqa: F401  (registers INCLR, PartPoolHead)
from fastreid.config import get_cfg
from fastreid.utils.events import EventStorage
from inclr_fastreid import add_inclr_config
from inclr_fastreid.engine.trainer import INCLRTrainer

from tests.helpers.tiny import ROOT

BASE_PRETRAIN = os.path.join(ROOT, "configs", "Pretrain", "Base-Pretrain.yml")


def _cfg(meta="Baseline", embedding_dim=0):
    """configs/Pretrain/Base-Pretrain.yml (Adam, weight decay on norms too) on OSNet x0.25, 64x32, CPU."""
    cfg = get_cfg()
    add_inclr_config(cfg)
    cfg.merge_from_file(BASE_PRETRAIN)
    cfg.MODEL.META_ARCHITECTURE = meta
    cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.DEPTH, cfg.MODEL.BACKBONE.FEAT_DIM = "build_osnet_backbone", "x0_25", 128
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NUM_CLASSES = 4
    cfg.MODEL.HEADS.EMBEDDING_DIM = embedding_dim
    cfg.MODEL.DEVICE = "cpu"
    cfg.INPUT.SIZE_TRAIN = cfg.INPUT.SIZE_TEST = [64, 32]
    cfg.INCLR.NUM_SAMPLES = 8
    return cfg


def _snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _part_buffers(heads):
    return {n: b.detach().clone() for n, b in heads.part_bottlenecks.named_buffers() if "running" in n}


def _optimised(param_wrapper):
    return {id(p) for group in param_wrapper._parameters for p in group["params"]}


@pytest.mark.parametrize("embedding_dim", [0, 16], ids=["bnneck", "embedding_conv"])
def test_stock_baseline_trains_its_global_branch_and_leaves_the_part_branches_alone(embedding_dim):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core box
    try:
        torch.manual_seed(0)
        cfg = _cfg(embedding_dim=embedding_dim)
        model = INCLRTrainer.build_model(cfg)
        optimizer, param_wrapper = INCLRTrainer.build_optimizer(cfg, model)  # as INCLRTrainer.__init__
        heads = model.heads
        parts = list(heads.part_bottlenecks.parameters()) + list(heads.part_weights)
        assert len(parts) >= 2 * heads.num_parts
        assert not any(id(p) in _optimised(param_wrapper) for p in parts)

        part_params = {"necks": _snapshot(heads.part_bottlenecks), "weights": _snapshot(heads.part_weights)}
        global_params = {"neck": _snapshot(heads.bottleneck), "weight": heads.weight.detach().clone()}
        backbone = _snapshot(model.backbone)
        stats = _part_buffers(heads)

        g = torch.Generator().manual_seed(1)
        model.train()
        with EventStorage(0):  # Baseline.losses logs its accuracy there
            for _ in range(3):  # SimpleTrainer.run_step, minus the data loader
                batch = {"images": torch.rand(8, 3, 64, 32, generator=g) * 255,
                         "targets": torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])}
                losses = sum(model(batch).values())
                optimizer.zero_grad()
                losses.backward()
                optimizer.step()
                param_wrapper.assert_buffer_is_valid()

        for kind, before in part_params.items():
            after = _snapshot(heads.part_bottlenecks if kind == "necks" else heads.part_weights)
            for name, value in before.items():
                assert torch.equal(after[name], value), f"part {kind} {name} moved"
        assert any(not torch.equal(p, global_params["neck"][n]) for n, p in heads.bottleneck.named_parameters())
        assert not torch.equal(heads.weight, global_params["weight"])
        assert any(not torch.equal(p, backbone[n]) for n, p in model.backbone.named_parameters())
        moved = [n for n, b in heads.part_bottlenecks.named_buffers() if n in stats and not torch.equal(b, stats[n])]
        # every part's BN running statistics still follow the batches (train mode)
        assert {n.split(".")[0] for n in moved} == {str(p) for p in range(heads.num_parts)}, moved
    finally:
        torch.set_num_threads(threads)


def test_inclr_students_keep_every_part_branch_trainable():
    torch.manual_seed(0)
    cfg = _cfg(meta="INCLR")
    model = INCLRTrainer.build_model(cfg)
    _, param_wrapper = INCLRTrainer.build_optimizer(cfg, model)
    optimised = _optimised(param_wrapper)
    for name in ("student1", "student2"):
        heads = getattr(model, name).heads
        parts = list(heads.part_bottlenecks.named_parameters()) + list(heads.part_weights.named_parameters())
        trainable = [(n, p) for n, p in parts if not n.endswith(".bias")]  # BNNeck biases: frozen by FastReID
        assert trainable
        for n, p in trainable:
            assert p.requires_grad and id(p) in optimised, f"{name}.heads {n}"
