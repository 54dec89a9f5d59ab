"""Features of every target image for clustering (docs/design.md §4.3 step 1), usable without a
trainer or hook: ``extract_features(model, items, cfg)``. Under ``SOLVER.AMP.ENABLED`` the networks
run under autocast (as in training), the features are kept in float32, and a feature that
overflowed half precision is an error naming the images, never clustered."""
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
from ..errors import UserError
from ..modeling.interface import PseudoLabelModel, as_pseudo_label_model
from .distributed import fail_together, unwrap
from .loader import close_loader

try:  # progress bars are a nicety, never a requirement
    from tqdm import tqdm
except ImportError:  # pragma: no cover
    tqdm = None

__all__ = ["extract_features", "NonFiniteFeatureError", "autocast_for"]


class NonFiniteFeatureError(UserError):
    """A teacher feature came out NaN or infinite (e.g. a float16 overflow under autocast)."""


def autocast_for(device: torch.device, enabled: bool) -> torch.autocast:
    """Autocast as the AMP trainer runs it: float16 on CUDA, bfloat16 on the CPU; off when not ``enabled``."""
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=bool(enabled))


@torch.no_grad()
def extract_features(model: nn.Module, items: Sequence[TargetItem], cfg: CfgNode) -> Dict[str, torch.Tensor]:
    """L2-normalised features of every image per branch ("global", "part1", ...), float32 on the
    device the model runs on (the clustering searches there).

    ``model``: INCLR (mean of the two teachers), a FastReID Baseline, or any PseudoLabelModel; DDP
    is unwrapped. Each rank extracts its shard and rank 0 receives all (other ranks get an empty
    dict; the shards travel through host memory); a failure on one rank (e.g. an unreadable image, a
    non-finite feature) fails every rank.
    """
    net = unwrap(model)
    wrapped = as_pseudo_label_model(net)
    device = _model_device(net)
    if comm.get_world_size() == 1:
        return _extract_shard(net, wrapped, items, cfg, device)
    local = fail_together(lambda: _extract_shard(net, wrapped, items, cfg, torch.device("cpu")), "Feature extraction")
    gathered = comm.gather(local, dst=0)
    if not comm.is_main_process():
        return {}
    keys = next(g.keys() for g in gathered if g)
    return {k: torch.cat([g[k] for g in gathered if g]).to(device) for k in keys}


def _model_device(net: nn.Module) -> torch.device:
    first = next(net.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _extract_shard(net: nn.Module, model: PseudoLabelModel, items: Sequence[TargetItem], cfg: CfgNode,
                   out_device: torch.device) -> Dict[str, torch.Tensor]:
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
        amp = autocast_for(_model_device(net), cfg.SOLVER.AMP.ENABLED)
        with inference_context(net):
            for batch in loader:
                with amp:
                    feats = model.branch_features(batch)
                for k, v in feats.items():
                    v = v.float()
                    _check_finite(v, k, batch, bool(cfg.SOLVER.AMP.ENABLED))
                    if k not in out:
                        out[k] = torch.empty(len(sampler), v.shape[1], dtype=torch.float32, device=out_device)
                    out[k][row:row + len(v)] = F.normalize(v, dim=1).to(out_device)
                row += len(next(iter(feats.values())))
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        close_loader(loader)
    return out


def _check_finite(feats: torch.Tensor, branch: str, batch: Dict[str, object], amp: bool) -> None:
    """Refuse a batch whose ``branch`` features hold NaN/inf, naming its images."""
    bad = ~torch.isfinite(feats).all(dim=1)
    if not bool(bad.any()):
        return
    paths = [p for p, b in zip(batch.get("img_paths", []), bad.tolist()) if b]
    hint = ("float16 overflowed under SOLVER.AMP.ENABLED True: set SOLVER.AMP.ENABLED False, or check the model"
            if amp else "check the model and these images")
    raise NonFiniteFeatureError(f"Non-finite {branch} features for {int(bad.sum())} image(s) "
                                f"({', '.join(map(str, paths[:3]))}{' ...' if len(paths) > 3 else ''}); they were not "
                                f"clustered. {hint}.")
