"""PseudoLabelHook: before every ``INCLR.CLUSTER.PERIOD``-th epoch, extract teacher features of the
whole target set, cluster (DBSCAN on k-reciprocal Jaccard distance), refine with LGMR, hand the
centroids to the model (classifier rows + IGMO's dynamic classifier), log label quality, and swap
the train loader (DESIGN.md §4.3–4.6, §6, §9).

Works with the INCLR meta-architecture and with FastReID's stock ``Baseline`` (global features, one
network): adding this hook to a Baseline gives a plain clustering-UDA baseline.

Degenerate clusterings, by rule (each logged as a warning):
- fewer than 2 clusters (all outliers, or one cluster): reuse the last labels if there are any,
  otherwise skip this epoch's adaptation (the model is left unchanged);
- fewer clusters than identities per batch: batches hold all K clusters (smaller batches);
- more clusters than pre-allocated classifier rows: stop, naming ``INCLR.MAX_CLASSES``.

Reliability: each epoch's randomness is a function of ``PseudoLabelState.seed`` (checkpointed), and
the previous loader (its prefetch thread and workers) is shut down before reseeding, so a resumed
run replays the batches of an uninterrupted one. Under torch.distributed a failure while extracting
or clustering fails every rank (no rank is left waiting in a collective), and every epoch the ranks
all-gather a CRC-32 of the labels they train on and stop if they differ (logged per rank).
"""
from __future__ import annotations

import json
import logging
import os
import random
import time
import zlib
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from fastreid.config import CfgNode
from fastreid.data.build import fast_batch_collator
from fastreid.data.common import CommDataset
from fastreid.data.data_utils import DataLoaderX
from fastreid.data.samplers import InferenceSampler
from fastreid.data.transforms import build_transforms
from fastreid.engine.train_loop import HookBase
from fastreid.evaluation.evaluator import inference_context
from fastreid.utils import comm

from ..errors import TooManyClustersError, UserError
from ..io import atomic_write_text
from ..data.pseudo_dataset import NoPseudoLabelsLoader, PseudoIdentityBatchSampler, PseudoLabelDataset
from ..data.target import TargetItem
from ..pseudo_labels import generate_pseudo_labels
from ..pseudo_labels.quality import credibility_auroc, label_quality, pseudo_label_correct

logger = logging.getLogger("fastreid." + __name__)

try:  # progress bars are a nicety, never a requirement
    from tqdm import tqdm
except ImportError:  # pragma: no cover
    tqdm = None


class PeerUserError(UserError, RuntimeError):
    """Another rank stopped on a user error (its message is included): this rank stops with it."""


class PseudoLabelState:
    """What an adaptation run must remember between epochs and across a resume (checkpointed)."""

    def __init__(self) -> None:
        self.labels: Optional[torch.Tensor] = None  # (N,) int64, -1 = outlier
        self.agreement: Optional[torch.Tensor] = None  # (N, P) float32
        self.num_classes = 0
        self.cluster_epoch = -1
        self.skip_epoch = False
        self.seed = -1
        self.history: List[Dict[str, Any]] = []

    def state_dict(self) -> Dict[str, Any]:
        return {
            "labels": self.labels, "agreement": self.agreement, "num_classes": self.num_classes,
            "cluster_epoch": self.cluster_epoch, "skip_epoch": self.skip_epoch, "seed": self.seed,
            "history": json.dumps(self.history),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.labels, self.agreement = state["labels"], state["agreement"]
        self.num_classes, self.cluster_epoch = int(state["num_classes"]), int(state["cluster_epoch"])
        self.skip_epoch, self.seed = bool(state["skip_epoch"]), int(state["seed"])
        self.history = json.loads(state["history"])


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


class PseudoLabelHook(HookBase):
    """Cluster the target set and swap the train loader before each clustering epoch."""

    def __init__(self, cfg: CfgNode, items: Sequence[TargetItem], state: PseudoLabelState):
        self.cfg = cfg
        self.items = list(items)
        self.state = state
        self.true_ids = self._true_ids(self.items)
        self.camids = np.array([it.camid for it in self.items], dtype=np.int64)
        self.train_transform = build_transforms(cfg, is_train=True)
        self.test_transform = build_transforms(cfg, is_train=False)
        self.jsonl_path = os.path.join(cfg.OUTPUT_DIR, "pseudo_labels.jsonl") if cfg.OUTPUT_DIR else None

    @staticmethod
    def _true_ids(items: Sequence[TargetItem]) -> Optional[np.ndarray]:
        if any(it.true_pid is None for it in items):
            return None
        _, inv = np.unique(np.array([it.true_pid for it in items]), return_inverse=True)
        return inv.astype(np.int64)

    # ------------------------------------------------------------------------------------------
    def before_train(self) -> None:
        if self.state.seed < 0:
            seed = int(self.cfg.INCLR.SEED)
            if seed < 0:
                seed = int(torch.randint(0, 2 ** 31 - 1, (1,)).item())
            self.state.seed = _broadcast_object(seed)

    def before_epoch(self) -> None:
        epoch = self.trainer.epoch
        # The last epoch's loader still prefetches in a background thread, drawing augmentation
        # randomness from the global RNGs: stop it *before* reseeding, or a resumed run (which has
        # no such thread) would see other random streams than an uninterrupted one.
        close_loader(self.trainer._trainer.data_loader)
        seed_everything(self.state.seed + 1000 * epoch)
        period = max(1, int(self.cfg.INCLR.CLUSTER.PERIOD))
        if epoch % period == 0 or self.state.labels is None:
            self._cluster(epoch)
        self._install_loader(epoch)

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def extract_features(self, model: torch.nn.Module) -> Dict[str, torch.Tensor]:
        """L2-normalised features of every target image per branch ("global", "part1", ...).

        Each rank extracts its shard; rank 0 receives all (others get an empty dict). A failure on
        one rank (e.g. an unreadable image) fails every rank, instead of leaving them in the gather.
        """
        if comm.get_world_size() == 1:
            return self._extract_shard(_unwrap(model))
        error: Optional[BaseException] = None
        try:
            local = self._extract_shard(_unwrap(model))
        except Exception as e:
            error, local = e, {}
        errors = comm.all_gather(None if error is None else
                                 (isinstance(error, UserError), f"rank {comm.get_rank()}: {type(error).__name__}: {error}"))
        if any(errors):
            if error is not None:
                raise error
            failed = [e for e in errors if e]
            # The same kind on every rank: a user error there (an unreadable image) is one here too.
            kind = PeerUserError if all(user for user, _ in failed) else RuntimeError
            raise kind("Feature extraction failed on another rank: " + "; ".join(msg for _, msg in failed))
        gathered = comm.gather(local, dst=0)
        if not comm.is_main_process():
            return {}
        keys = next(g.keys() for g in gathered if g)
        return {k: torch.cat([g[k] for g in gathered if g]) for k in keys}

    def _extract_shard(self, model: torch.nn.Module) -> Dict[str, torch.Tensor]:
        dataset = CommDataset([(it.path, 0, 0) for it in self.items], self.test_transform, relabel=False)
        per_rank = max(1, int(self.cfg.INCLR.CLUSTER.BATCH_SIZE) // comm.get_world_size())
        sampler = InferenceSampler(len(dataset))
        loader = DataLoaderX(comm.get_local_rank(), dataset=dataset, num_workers=self.cfg.DATALOADER.NUM_WORKERS,
                             batch_sampler=torch.utils.data.BatchSampler(sampler, per_rank, False),
                             collate_fn=fast_batch_collator, pin_memory=False)
        chunks: Dict[str, List[torch.Tensor]] = {}
        show = comm.is_main_process() and tqdm is not None
        bar = tqdm(total=len(loader), desc="features", unit="batch", leave=False) if show else None
        try:
            with inference_context(model):
                for batch in loader:
                    feats = self._branch_features(model, batch)
                    for k, v in feats.items():
                        chunks.setdefault(k, []).append(F.normalize(v.float(), dim=1).cpu())
                    if bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            close_loader(loader)
        return {k: torch.cat(v) for k, v in chunks.items()}

    def _branch_features(self, model: torch.nn.Module, batch: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        if hasattr(model, "cluster_features"):
            return model.cluster_features(batch)
        batch = dict(batch)
        batch["images"] = batch["images"].clone()  # Baseline.preprocess_image normalises in place
        heads = getattr(model, "heads", None)
        if heads is not None and hasattr(heads, "branch_features"):
            images = model.preprocess_image(batch)
            return heads.branch_features(model.backbone(images))
        return {"global": model(batch)}

    # ------------------------------------------------------------------------------------------
    def _cluster(self, epoch: int) -> None:
        t0 = time.perf_counter()
        feats = self.extract_features(self.trainer.model)
        payload: Optional[Dict[str, Any]] = None
        failure: Optional[BaseException] = None
        if comm.is_main_process():
            try:
                payload = self._cluster_payload(epoch, feats, t0)
            except Exception as e:  # other ranks wait in the broadcast: tell them, then fail together
                failure = e
                payload = {"error": f"{type(e).__name__}: {e}", "user_error": isinstance(e, UserError)}
        payload = _broadcast_object(payload)
        if "error" in payload:
            if failure is not None:
                raise failure
            kind = PeerUserError if payload.get("user_error") else RuntimeError
            raise kind(f"Epoch {epoch}: clustering failed on rank 0 ({payload['error']}); see its log.")
        self._apply(epoch, payload)

    def _cluster_payload(self, epoch: int, feats: Dict[str, torch.Tensor], t0: float) -> Dict[str, Any]:
        """Rank 0: cluster the gathered features, refine with LGMR; what every rank needs to apply."""
        c = self.cfg.INCLR
        t1 = time.perf_counter()
        parts = sorted(k for k in feats if k.startswith("part"))
        use_parts = bool(c.LGMR.ENABLED) and len(parts) > 0
        result = generate_pseudo_labels(
            feats["global"].numpy(), [feats[p].numpy() for p in parts] if use_parts else [],
            eps=c.CLUSTER.EPS, min_samples=c.CLUSTER.MIN_SAMPLES, k1=c.CLUSTER.K1, k2=c.CLUSTER.K2,
            max_distance=c.CLUSTER.MAX_DISTANCE, lgmr_enabled=use_parts, lgmr_k=c.LGMR.K,
            min_agreement=c.LGMR.MIN_AGREEMENT, camids=self.camids, camera_norm=c.CLUSTER.CAMERA_NORM,
        )
        record = self._quality_record(epoch, result, time.perf_counter() - t1, t1 - t0)
        centroids = {"global": torch.as_tensor(result.centroids["global"])}
        for p in parts:
            if p in result.centroids:
                centroids[p] = torch.as_tensor(result.centroids[p])
            else:  # LGMR off: part centroids from the shared global labels
                centroids[p] = _centroids(feats[p], result.labels, result.num_classes)
        agreement = result.agreement if use_parts else np.ones((len(self.items), len(parts)), np.float32)
        return {"labels": torch.as_tensor(result.labels, dtype=torch.int64),
                "agreement": torch.as_tensor(agreement, dtype=torch.float32) if parts else None,
                "num_classes": int(result.num_classes), "centroids": centroids, "record": record}

    def _apply(self, epoch: int, payload: Dict[str, Any]) -> None:
        k = payload["num_classes"]
        record = payload["record"]
        rows = int(self.cfg.MODEL.HEADS.NUM_CLASSES)
        if k > rows:
            raise TooManyClustersError(
                f"Clustering found {k} clusters but only {rows} classifier rows are pre-allocated: "
                f"raise INCLR.MAX_CLASSES to at least {k} (0 = one row per target image)."
            )
        if k < 2:
            if self.state.labels is not None and self.state.num_classes >= 2:
                logger.warning("Epoch %d: clustering gave %d cluster(s); reusing the labels of epoch %d. "
                               "Check INCLR.CLUSTER.EPS / the source model's features.", epoch, k,
                               self.state.cluster_epoch)
                record["action"] = "reused_last_labels"
                self.state.skip_epoch = False
            else:
                logger.warning("Epoch %d: clustering gave %d cluster(s) and there are no earlier labels: "
                               "skipping this epoch's adaptation. Raise INCLR.CLUSTER.EPS or lower "
                               "INCLR.CLUSTER.MIN_SAMPLES if this persists.", epoch, k)
                record["action"] = "skipped_epoch"
                self.state.skip_epoch = True
            self._log(record)
            return
        record["action"] = "trained"
        self.state.skip_epoch = False
        self.state.labels, self.state.agreement = payload["labels"], payload["agreement"]
        self.state.num_classes, self.state.cluster_epoch = k, epoch
        self._write_classifiers(payload["centroids"], k)
        self._log(record)

    def _write_classifiers(self, centroids: Dict[str, torch.Tensor], k: int) -> None:
        model = _unwrap(self.trainer.model)
        if hasattr(model, "set_pseudo_classes"):
            model.set_pseudo_classes(k, centroids)
            return
        set_live_classifier_rows(model, centroids, k)

    # ------------------------------------------------------------------------------------------
    def _quality_record(self, epoch: int, result: Any, cluster_s: float, extract_s: float) -> Dict[str, Any]:
        labels = np.asarray(result.labels)
        record: Dict[str, Any] = {
            "epoch": epoch, "num_samples": int(len(labels)), "num_clusters": int(result.num_classes),
            "num_outliers": int((labels < 0).sum()), "extract_seconds": round(extract_s, 3),
            "cluster_seconds": round(cluster_s, 3),
        }
        before = np.asarray(result.labels_before_lgmr)
        record["num_clusters_before_lgmr"] = int(before.max() + 1) if (before >= 0).any() else 0
        truth = self.true_ids
        for tag, pred in (("before_lgmr", before), ("after_lgmr", labels)):
            q = label_quality(pred, truth) if truth is not None else None
            for key in ("pairwise_precision", "pairwise_recall", "pairwise_fscore", "nmi", "ari"):
                record[f"{key}_{tag}"] = None if q is None else float(q[key])
        record["credibility_auroc"] = self._credibility_auroc()
        return record

    def _credibility_auroc(self) -> Optional[float]:
        """AUROC of last epoch's credibility w_i for telling correct from wrong pseudo labels (§4.6)."""
        model = _unwrap(self.trainer.model)
        cred = getattr(model, "credibility", None)
        if self.true_ids is None or cred is None or self.state.labels is None:
            return None
        labels = self.state.labels.numpy()
        cred = cred.detach().cpu().numpy()
        seen = (labels >= 0) & np.isfinite(cred)
        if seen.sum() < 2:
            return None
        correct = pseudo_label_correct(labels, self.true_ids)
        if self.cfg.OUTPUT_DIR and comm.is_main_process():
            path = os.path.join(self.cfg.OUTPUT_DIR, f"credibility_epoch{self.trainer.epoch:03d}.npz")
            tmp = path[:-len(".npz")] + ".tmp.npz"  # written whole, then renamed (a kill never truncates)
            np.savez_compressed(tmp, credibility=cred[seen], correct=correct[seen])
            os.replace(tmp, path)
        auc = credibility_auroc(cred[seen], correct[seen])
        return None if auc is None else float(auc)

    def _log(self, record: Dict[str, Any]) -> None:
        self.state.history.append(record)
        scalars = {f"pseudo/{k}": float(v) for k, v in record.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch"}
        if scalars:
            self.trainer.storage.put_scalars(**scalars, smoothing_hint=False)
        if comm.is_main_process():
            logger.info("Pseudo labels, epoch %d: %s", record["epoch"],
                        ", ".join(f"{k}={v}" for k, v in record.items() if k != "epoch"))
            if self.jsonl_path:
                # Rewritten whole and renamed: a kill mid-write never leaves a truncated file.
                text = "".join(json.dumps(r) + "\n" for r in self.state.history)
                atomic_write_text(self.jsonl_path, text)

    # ------------------------------------------------------------------------------------------
    def _install_loader(self, epoch: int) -> None:
        """Shut the old prefetching loader down, then train on a fresh P×K loader of pseudo ids."""
        trainer = self.trainer
        close_loader(trainer._trainer.data_loader)
        trainer._trainer._data_loader_iter = None  # never a batch of the old loader again
        trainer.skip_steps = self.state.skip_epoch
        if self.state.labels is None:
            trainer._trainer.data_loader = NoPseudoLabelsLoader(
                "This epoch has no pseudo labels to train on (see the warning above).")
            trainer._trainer._data_loader_iter = iter(trainer._trainer.data_loader)
            return
        labels = self.state.labels.numpy()
        agreement = None if self.state.agreement is None else self.state.agreement.numpy()
        model = _unwrap(trainer.model)
        dataset = PseudoLabelDataset([it.path for it in self.items], self.camids, labels, agreement,
                                     self.train_transform, two_views=hasattr(model, "teacher1"))
        total, inst = int(self.cfg.SOLVER.IMS_PER_BATCH), int(self.cfg.DATALOADER.NUM_INSTANCE)
        sampler = PseudoIdentityBatchSampler(labels, total, inst, seed=self.state.seed + 1000 * epoch + 1,
                                             rank=comm.get_rank(), world_size=comm.get_world_size())
        if sampler.ids_per_batch < total // inst:
            logger.warning("Epoch %d: only %d pseudo identities; batches hold %d x %d images instead of %d.",
                           epoch, self.state.num_classes, sampler.ids_per_batch, inst, total)
        check_ranks_agree(epoch, labels, agreement, sampler.ids_per_batch // sampler.world_size * inst)
        loader = DataLoaderX(comm.get_local_rank(), dataset=dataset, batch_sampler=sampler,
                             num_workers=self.cfg.DATALOADER.NUM_WORKERS, collate_fn=fast_batch_collator,
                             pin_memory=torch.cuda.is_available())
        trainer._trainer.data_loader = loader
        trainer._trainer._data_loader_iter = iter(loader)

    def after_train(self) -> None:
        close_loader(self.trainer._trainer.data_loader)


def labels_checksum(labels: np.ndarray, agreement: Optional[np.ndarray] = None) -> int:
    """CRC-32 of the pseudo labels (int64) and cross-agreement (float32) bytes: equal on every rank
    iff all ranks train on the same labels."""
    crc = zlib.crc32(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    if agreement is not None:
        crc = zlib.crc32(np.ascontiguousarray(agreement, dtype=np.float32).tobytes(), crc)
    return crc


def check_ranks_agree(epoch: int, labels: np.ndarray, agreement: Optional[np.ndarray], rank_batch: int) -> None:
    """Log what this rank trains on this epoch (label checksum, per-rank batch size) and, under
    torch.distributed, all-gather both and raise if any rank differs (DESIGN.md §6: all ranks train
    on identical pseudo labels; the credibility all-gather needs equal batch sizes)."""
    crc = labels_checksum(labels, agreement)
    rank, world = comm.get_rank(), comm.get_world_size()
    logger.info("Epoch %d, rank %d/%d: training on pseudo labels crc32=%08x, %d images per rank batch",
                epoch, rank, world, crc, rank_batch)
    if world == 1:
        return
    views = comm.all_gather((crc, rank_batch))
    if len(set(views)) > 1:
        raise RuntimeError(
            f"Epoch {epoch}: ranks disagree on the pseudo labels or the batch size "
            f"(crc32, images per batch by rank: {[(f'{c:08x}', b) for c, b in views]}). "
            "Every rank must apply rank 0's broadcast clustering; this is a bug, please report it."
        )
    if comm.is_main_process():
        logger.info("Epoch %d: pseudo labels identical on all %d ranks (crc32=%08x)", epoch, world, crc)


def close_loader(loader: Any) -> None:
    """Stop a train loader for good: FastReID's DataLoaderX prefetch thread and, with
    ``num_workers > 0``, the worker processes under it (otherwise they live until garbage collection).

    Idempotent; a no-op for loaders without these parts.
    """
    if loader is None:
        return
    if hasattr(loader, "shutdown"):
        loader.shutdown()
    inner = getattr(getattr(loader, "iter", None), "generator", None)  # DataLoaderX -> torch iterator
    if inner is not None and hasattr(inner, "_shutdown_workers"):
        inner._shutdown_workers()
    if hasattr(loader, "batch"):
        loader.batch = None  # the preloaded batch


def _centroids(feats: torch.Tensor, labels: np.ndarray, k: int) -> torch.Tensor:
    """L2-normalised mean feature of each cluster 0..k-1 (outliers ignored)."""
    lab = torch.as_tensor(labels)
    keep = lab >= 0
    sums = torch.zeros(k, feats.shape[1], dtype=torch.float32).index_add_(0, lab[keep], feats[keep].float())
    return F.normalize(sums, dim=1)


def set_live_classifier_rows(model: torch.nn.Module, centroids: Dict[str, torch.Tensor], k: int) -> None:
    """For FastReID's stock heads: copy centroids into rows 0..k-1 and mask rows ≥ k out of the logits.

    The mask is a forward hook on ``model.heads`` that cuts ``cls_outputs``/``pred_class_logits`` to
    k columns in training, so dead rows never enter the softmax (DESIGN.md §9), without resizing
    parameters (which would break FastReID's contiguous optimizer and DDP).
    """
    heads = model.heads
    weight = getattr(heads, "weight", None)
    if weight is None:
        raise TypeError(f"{type(heads).__name__} has no classifier 'weight': cannot seed pseudo classes.")
    with torch.no_grad():
        weight[:k].copy_(centroids["global"].to(weight.device, weight.dtype))
        for p in range(1, 1 + len(getattr(heads, "part_weights", []))):
            heads.part_weights[p - 1][:k].copy_(centroids[f"part{p}"].to(weight.device, weight.dtype))
    heads._inclr_live_classes = k
    if not getattr(heads, "_inclr_mask_hooked", False):
        heads.register_forward_hook(_mask_dead_rows)
        heads._inclr_mask_hooked = True


def _mask_dead_rows(module: torch.nn.Module, inputs: Any, output: Any) -> Any:
    k = getattr(module, "_inclr_live_classes", None)
    if not module.training or k is None or not isinstance(output, dict):
        return output
    out = dict(output)
    for key in ("cls_outputs", "pred_class_logits"):
        if key in out and torch.is_tensor(out[key]):
            out[key] = out[key][:, :k]
    for key in ("part_cls_outputs", "part_pred_class_logits"):
        if key in out:
            out[key] = [t[:, :k] for t in out[key]]
    return out


def _broadcast_object(obj: Any) -> Any:
    """Rank 0's object on every rank (identity on a single process)."""
    if comm.get_world_size() == 1:
        return obj
    holder = [obj if comm.is_main_process() else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
