"""The label-quality log of an adaptation run (docs/design.md §4.6): one record per clustering
round, to FastReID's EventStorage (tensorboard) and OUTPUT_DIR/pseudo_labels.jsonl."""
from __future__ import annotations

import json
import logging
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from ..io import atomic_savez, atomic_write_text
from ..pseudo_labels.generate import PseudoLabels
from ..pseudo_labels.quality import camera_pair_recall, credibility_auroc, label_quality, pseudo_label_correct

logger = logging.getLogger("fastreid." + __name__)

__all__ = ["quality_record", "last_credibility_auroc", "write_log"]

_METRICS = ("pairwise_precision", "pairwise_recall", "pairwise_fscore", "nmi", "ari")


def quality_record(epoch: int, result: PseudoLabels, true_ids: Optional[np.ndarray], cluster_s: float,
                   extract_s: float, camids: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """K, outliers, timings and (with true identities) label quality before and after LGMR; with
    ``camids`` too, the recall of the identities' same- and cross-camera pairs (after LGMR)."""
    labels = np.asarray(result.labels)
    before = np.asarray(result.labels_before_lgmr)
    record: Dict[str, Any] = {
        "epoch": epoch, "num_samples": int(len(labels)), "num_clusters": int(result.num_classes),
        "num_outliers": int((labels < 0).sum()), "extract_seconds": round(extract_s, 3),
        "cluster_seconds": round(cluster_s, 3),
        "num_clusters_before_lgmr": int(before.max() + 1) if (before >= 0).any() else 0,
        "num_outliers_before_lgmr": int((before < 0).sum()),
    }
    for tag, pred in (("before_lgmr", before), ("after_lgmr", labels)):
        q = label_quality(pred, true_ids) if true_ids is not None else None
        for key in _METRICS:
            record[f"{key}_{tag}"] = None if q is None else float(q[key])
    if true_ids is not None and camids is not None:
        record["same_camera_recall"], record["cross_camera_recall"] = camera_pair_recall(labels, true_ids, camids)
    record["eps"] = None if result.eps is None else round(float(result.eps), 6)  # DBSCAN's eps (EPS_RULE mmt: computed)
    if result.eps_choice is not None:  # EPS_RULE auto chose eps this round: its grid, scores and criterion
        record["eps_choice"] = result.eps_choice
    record["k1"] = result.k1  # the Jaccard distance's k1 (None: not dbscan)
    if result.k1_choice is not None:  # K1_RULE size chose k1 this round: the median cluster size it came from
        record["k1_choice"] = result.k1_choice
    return record


def last_credibility_auroc(credibility: Optional[torch.Tensor], labels: Optional[torch.Tensor],
                           true_ids: Optional[np.ndarray], dump_path: str = "") -> Optional[float]:
    """AUROC of the last epoch's credibility w_i for telling correct from wrong pseudo labels; the
    scores and correctness of the samples seen go to ``dump_path`` (.npz) when given."""
    if true_ids is None or credibility is None or labels is None:
        return None
    labels_np = labels.numpy()
    cred = credibility.detach().cpu().numpy()
    seen = (labels_np >= 0) & np.isfinite(cred)
    if seen.sum() < 2:
        return None
    correct = pseudo_label_correct(labels_np, true_ids)
    if dump_path:
        atomic_savez(dump_path, credibility=cred[seen], correct=correct[seen])
    auc = credibility_auroc(cred[seen], correct[seen])
    return None if auc is None else float(auc)


def write_log(storage: Any, history: List[Dict[str, Any]], jsonl_path: str, main_process: bool) -> None:
    """The newest record of ``history`` as tensorboard scalars and a log line; the whole history
    rewritten to ``jsonl_path`` and renamed into place (a kill never leaves a truncated file)."""
    record = history[-1]
    scalars = {f"pseudo/{k}": float(v) for k, v in record.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch"}
    if scalars:
        storage.put_scalars(**scalars, smoothing_hint=False)
    if not main_process:
        return
    logger.info("Pseudo labels, epoch %d: %s", record["epoch"],
                ", ".join(f"{k}={v}" for k, v in record.items() if k != "epoch"))
    if jsonl_path:
        atomic_write_text(jsonl_path, "".join(json.dumps(r) + "\n" for r in history))
