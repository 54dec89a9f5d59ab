"""Two gloo processes on the CPU: the BN buffers every rank extracts and evaluates with are rank 0's,
and the wait for rank 0's clustering is not bounded by the default group's timeout
(engine/distributed.py sync_buffers, wait_group). The wiring inside a real 2-process adaptation run
is checked by test_distributed.py."""
import os
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from tests.helpers.tiny import free_port

DEFAULT_TIMEOUT_S = 2


def _init(rank: int, port: int) -> None:
    from fastreid.utils import comm

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=DEFAULT_TIMEOUT_S))
    comm._LOCAL_PROCESS_GROUP = dist.new_group([0, 1])


def _worker(rank: int, port: int, out: str) -> None:
    _init(rank, port)
    _check_buffers(rank, out)
    _check_wait(rank, out)
    dist.destroy_process_group()


def _check_buffers(rank: int, out: str) -> None:
    import inclr_fastreid  # noqa: F401
    from inclr_fastreid.engine.distributed import buffers_checksum, sync_buffers

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.BatchNorm1d(4 * 6 * 6))
    net.train()
    net(torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(rank)))  # each rank its own batch
    before = buffers_checksum(net)
    rank0 = [None, None]
    dist.all_gather_object(rank0, {k: v.clone() for k, v in net.state_dict().items()})
    sync_buffers(net)
    after = [None, None]
    dist.all_gather_object(after, buffers_checksum(net))
    torch.save({"before": before, "after": after,
                "equal_to_rank0": all(torch.equal(b, rank0[0][k]) for k, b in net.named_buffers())},
               os.path.join(out, f"buffers{rank}.pt"))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("two_ranks")
    mp.spawn(_worker, args=(free_port(), str(out)), nprocs=2, join=True)
    return out


def test_sync_buffers_gives_every_rank_rank0_statistics(two_ranks):
    tmp_path = two_ranks
    r0, r1 = (torch.load(tmp_path / f"buffers{r}.pt") for r in (0, 1))
    assert r0["before"] != r1["before"]  # different batches: different running statistics
    assert r0["after"] == r1["after"] and r0["after"][0] == r0["before"]  # everyone holds rank 0's now
    assert r0["equal_to_rank0"] and r1["equal_to_rank0"]


def _check_wait(rank: int, out: str) -> None:
    from inclr_fastreid.engine.distributed import on_main_then_broadcast, wait_group

    group = wait_group(60.0)  # every rank, same point

    def cluster():  # rank 0's clustering, longer than the default group's timeout
        time.sleep(2 * DEFAULT_TIMEOUT_S)
        return {"labels": torch.arange(5)}

    t0 = time.monotonic()
    got = on_main_then_broadcast(cluster, "clustering", group=group)
    waited = time.monotonic() - t0
    # the same wait on the default group times out: the test above would catch a broadcast there
    timed_out = False
    try:
        on_main_then_broadcast(cluster, "clustering")
    except RuntimeError:
        timed_out = True
    torch.save({"labels": got["labels"], "waited": waited, "timed_out": timed_out}, os.path.join(out, f"wait{rank}.pt"))


def test_ranks_wait_for_a_clustering_longer_than_the_default_timeout(two_ranks):
    r1 = torch.load(two_ranks / "wait1.pt")
    assert torch.equal(r1["labels"], torch.arange(5)) and r1["waited"] >= 2 * DEFAULT_TIMEOUT_S - 0.5
    assert r1["timed_out"]


def test_single_process_needs_no_group():
    from inclr_fastreid.engine.distributed import on_main_then_broadcast, sync_buffers, wait_group

    assert wait_group(1.0) is None
    net = nn.BatchNorm1d(3)
    sync_buffers(net)  # no-op
    assert on_main_then_broadcast(lambda: 7, "x", group=None) == 7
