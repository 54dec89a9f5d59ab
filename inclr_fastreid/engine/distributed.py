"""Multi-process plumbing of an adaptation run (docs/design.md §6): unwrapping DDP, seeding,
rank 0's objects on every rank (over a group whose timeout fits a long clustering), one set of BN
statistics on every rank, failing all ranks together, and the per-epoch label agreement check."""
from __future__ import annotations

import logging
import random
import zlib
from datetime import timedelta
from typing import Any, Callable, Dict, Optional, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from fastreid.utils import comm
from torch import nn

from ..errors import PeerUserError, UserError

logger = logging.getLogger("fastreid." + __name__)

T = TypeVar("T")
__all__ = ["unwrap", "seed_everything", "broadcast_object", "fail_together", "on_main_then_broadcast",
           "labels_checksum", "check_ranks_agree", "wait_group", "sync_buffers", "buffers_checksum"]

_WAIT_GROUPS: Dict[float, Any] = {}


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel / DataParallel (the model itself otherwise)."""
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return model.module
    return model


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def broadcast_object(obj: Any, group: Any = None) -> Any:
    """Rank 0's object on every rank (identity on a single process); ``group``: default group if None."""
    if comm.get_world_size() == 1:
        return obj
    holder = [obj if comm.is_main_process() else None]
    dist.broadcast_object_list(holder, src=0, group=group)
    return holder[0]


def wait_group(timeout_s: float) -> Any:
    """A gloo group of all ranks whose collectives time out after ``timeout_s`` seconds (one per
    timeout, made on first use: every rank must call this at the same point). The other ranks wait
    in it while rank 0 clusters, which may take longer than the default group's timeout (NCCL's
    watchdog would end the run). None on a single process."""
    if comm.get_world_size() == 1:
        return None
    key = float(timeout_s)
    if key not in _WAIT_GROUPS:
        _WAIT_GROUPS[key] = dist.new_group(backend="gloo", timeout=timedelta(seconds=key))
    return _WAIT_GROUPS[key]


@torch.no_grad()
def sync_buffers(model: nn.Module, what: str = "") -> None:
    """Every buffer of ``model`` (BN running statistics above all) becomes rank 0's on every rank;
    with ``what``, each rank logs the checksum of what it now holds.

    DDP runs with ``broadcast_buffers=False``, so each rank's teachers update their BN statistics on
    their own batches; extraction and evaluation must see one network (as MMT's DataParallel, whose
    buffers are those of the replica on the first GPU). No-op on a single process."""
    if comm.get_world_size() == 1:
        return
    for buf in model.buffers():
        dist.broadcast(buf, src=0)
    if what:
        logger.info("%s, rank %d/%d: buffers crc32=%08x", what, comm.get_rank(), comm.get_world_size(),
                    buffers_checksum(model))


def buffers_checksum(model: nn.Module) -> int:
    """CRC-32 of the bytes of every buffer of ``model`` in registration order (equal on two ranks iff
    their buffers are)."""
    crc = 0
    for buf in model.buffers():
        crc = zlib.crc32(buf.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes(), crc)
    return crc


def fail_together(fn: Callable[[], T], what: str) -> Optional[T]:
    """Run ``fn`` on every rank; if it raises on any rank, raise on all of them (the rank that failed
    re-raises its own error), instead of leaving the others waiting in the next collective."""
    if comm.get_world_size() == 1:
        return fn()
    error: Optional[BaseException] = None
    result: Optional[T] = None
    try:
        result = fn()
    except Exception as e:  # noqa: BLE001 - re-raised below, on every rank
        error = e
    errors = comm.all_gather(None if error is None else
                             (isinstance(error, UserError), f"rank {comm.get_rank()}: {type(error).__name__}: {error}"))
    if any(errors):
        if error is not None:
            raise error
        failed = [e for e in errors if e]
        # The same kind on every rank: a user error there (an unreadable image) is one here too.
        kind = PeerUserError if all(user for user, _ in failed) else RuntimeError
        raise kind(f"{what} failed on another rank: " + "; ".join(msg for _, msg in failed))
    return result


def on_main_then_broadcast(fn: Callable[[], T], what: str, group: Any = None) -> T:
    """``fn()`` on rank 0, its result on every rank (broadcast in ``group``, e.g. :func:`wait_group`).
    If it raises there, every rank raises: rank 0 its own error, the others a RuntimeError naming
    ``what`` (no rank waits forever)."""
    result: Any = None
    failure: Optional[BaseException] = None
    if comm.is_main_process():
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - other ranks wait in the broadcast: tell them, then fail together
            failure = e
            result = _Failed(f"{type(e).__name__}: {e}", isinstance(e, UserError))
    result = broadcast_object(result, group)
    if isinstance(result, _Failed):
        if failure is not None:
            raise failure
        kind = PeerUserError if result.user_error else RuntimeError
        raise kind(f"{what} failed on rank 0 ({result.message}); see its log.")
    return result


class _Failed:
    """What rank 0 broadcasts instead of a result when it failed."""

    def __init__(self, message: str, user_error: bool):
        self.message, self.user_error = message, user_error


def labels_checksum(labels: np.ndarray, agreement: Optional[np.ndarray] = None) -> int:
    """CRC-32 of the pseudo labels (int64) and cross-agreement (float32) bytes: equal on every rank
    iff all ranks train on the same labels."""
    crc = zlib.crc32(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    if agreement is not None:
        crc = zlib.crc32(np.ascontiguousarray(agreement, dtype=np.float32).tobytes(), crc)
    return crc


def check_ranks_agree(epoch: int, labels: np.ndarray, agreement: Optional[np.ndarray], rank_batch: int) -> None:
    """Log what this rank trains on this epoch (label checksum, per-rank batch size) and, under
    torch.distributed, all-gather both and raise if any rank differs (all ranks must train on
    identical pseudo labels; the credibility all-gather needs equal batch sizes)."""
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
