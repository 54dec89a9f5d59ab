"""Features of every target image for clustering (docs/design.md §4.3 step 1), usable without a
trainer or hook: ``extract_features(model, items, cfg)``."""
from __future__ import annotations

from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from fastreid.config import CfgNode
from fastreid.data.build import fast_batch_collator
from fastreid.data.common import CommDataset
from fastreid.data.data_utils import DataLoaderX
from fastreid.data.samplers import InferenceSampler
from fastreid.data.transforms import build_transforms
from fastreid.evaluation.evaluator import inference_context
from fastreid.utils import comm
from torch import nn

from ..data.target import TargetItem
from ..modeling.interface import PseudoLabelModel, as_pseudo_label_model
from .distributed import fail_together, unwrap
from .loader import close_loader

try:  # progress bars are a nicety, never a requirement
    from tqdm import tqdm
except ImportError:  # pragma: no cover
    tqdm = None

__all__ = ["extract_features"]


@torch.no_grad()
def extract_features(model: nn.Module, items: Sequence[TargetItem], cfg: CfgNode) -> Dict[str, torch.Tensor]:
    """L2-normalised features of every image per branch ("global", "part1", ...), float32 on the CPU.

    ``model``: INCLR (mean of the two teachers), a FastReID Baseline, or any PseudoLabelModel; DDP
    is unwrapped. Each rank extracts its shard and rank 0 receives all (other ranks get an empty
    dict); a failure on one rank (e.g. an unreadable image) fails every rank.
    """
    net = unwrap(model)
    wrapped = as_pseudo_label_model(net)
    if comm.get_world_size() == 1:
        return _extract_shard(net, wrapped, items, cfg)
    local = fail_together(lambda: _extract_shard(net, wrapped, items, cfg), "Feature extraction")
    gathered = comm.gather(local, dst=0)
    if not comm.is_main_process():
        return {}
    keys = next(g.keys() for g in gathered if g)
    return {k: torch.cat([g[k] for g in gathered if g]) for k in keys}


def _extract_shard(net: nn.Module, model: PseudoLabelModel, items: Sequence[TargetItem],
                   cfg: CfgNode) -> Dict[str, torch.Tensor]:
    dataset = CommDataset([(it.path, 0, 0) for it in items], build_transforms(cfg, is_train=False), relabel=False)
    per_rank = max(1, int(cfg.INCLR.CLUSTER.BATCH_SIZE) // comm.get_world_size())
    sampler = InferenceSampler(len(dataset))
    loader = DataLoaderX(comm.get_local_rank(), dataset=dataset, num_workers=cfg.DATALOADER.NUM_WORKERS,
                         batch_sampler=torch.utils.data.BatchSampler(sampler, per_rank, False),
                         collate_fn=fast_batch_collator, pin_memory=False)
    # One (n, D) buffer per branch, filled batch by batch: a list of chunks joined by torch.cat
    # held every feature twice at the end (+N x D x 4 bytes per branch of peak host memory).
    out: Dict[str, torch.Tensor] = {}
    row = 0
    show = comm.is_main_process() and tqdm is not None
    bar = tqdm(total=len(loader), desc="features", unit="batch", leave=False) if show else None
    try:
        with inference_context(net):
            for batch in loader:
                feats = model.branch_features(batch)
                for k, v in feats.items():
                    if k not in out:
                        out[k] = torch.empty(len(sampler), v.shape[1], dtype=torch.float32)
                    out[k][row:row + len(v)] = F.normalize(v.float(), dim=1)
                row += len(next(iter(feats.values())))
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        close_loader(loader)
    return out
