"""Distributed adaptation on the CPU: ``tools/train_net.py --num-gpus 2`` runs two
processes on gloo; rank 0 clusters and broadcasts, and every rank must train on the same pseudo
labels with the same per-rank batch size (docs/design.md §6). The hook all-gathers a CRC-32 of the
labels each epoch and logs it per rank (log.txt, log.txt.rank1): the test reads both views.
"""
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from inclr_fastreid.io import safe_torch_load
from inclr_fastreid.engine.distributed import labels_checksum

from tests.helpers.layouts import make_market1501

from tests.helpers.tiny import ROOT, SMALL_NET, TINY_CLUSTER, TRAIN_NET, free_port
from tests.helpers.tiny import TINY as _TINY

CFG = os.path.join(ROOT, "configs", "INCLR", "duke2market.yml")
TINY = _TINY + SMALL_NET + TINY_CLUSTER
TIMEOUT = 400


def test_labels_checksum_sees_every_label_and_agreement_value():
    labels = np.array([0, 0, 1, -1, 2], dtype=np.int64)
    agreement = np.full((5, 3), 0.5, dtype=np.float32)
    base = labels_checksum(labels, agreement)
    assert base == labels_checksum(labels.astype(np.int32), agreement.astype(np.float64))  # dtype-independent
    changed = labels.copy()
    changed[3] = 0
    assert labels_checksum(changed, agreement) != base
    nudged = agreement.copy()
    nudged[4, 2] = 0.5000001
    assert labels_checksum(labels, nudged) != base
    assert labels_checksum(labels) != base


def test_two_cpu_processes_train_on_identical_pseudo_labels(tmp_path):
    data = tmp_path / "data"
    make_market1501(str(data), num_train=6, num_test=4, seed=2)
    out = tmp_path / "out"
    env = dict(os.environ, FASTREID_DATASETS=str(data), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, TRAIN_NET, "--num-gpus", "2", "--dist-url", f"tcp://127.0.0.1:{free_port()}",
           "--config-file", CFG, *TINY, "MODEL.WEIGHTS", "", "INCLR.SEED", "5", "SOLVER.MAX_EPOCH", "2",
           "INCLR.ITERS_PER_EPOCH", "2", "TEST.EVAL_PERIOD", "100", "OUTPUT_DIR", str(out)]
    # Own session: on a hang, the launcher *and* both ranks it spawned are killed.
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"2-process run did not finish in {TIMEOUT} s (hang?):\n{log[-4000:]}")
    assert proc.returncode == 0, log[-4000:]
    assert "World size: 2" in (out / "log.txt").read_text()

    views = {}
    for rank, name in ((0, "log.txt"), (1, "log.txt.rank1")):
        text = (out / name).read_text()
        found = re.findall(rf"Epoch (\d+), rank {rank}/2: training on pseudo labels crc32=([0-9a-f]{{8}}), "
                           r"(\d+) images per rank batch", text)
        views[rank] = {int(e): (crc, int(b)) for e, crc, b in found}
    assert sorted(views[0]) == sorted(views[1]) == [0, 1]
    assert views[0] == views[1]  # same labels, same per-rank batch size
    assert all(b == 4 for _, b in views[0].values())  # 8 images per global batch over 2 ranks
    rank0 = (out / "log.txt").read_text()
    for epoch, (crc, _) in views[0].items():
        assert f"Epoch {epoch}: pseudo labels identical on all 2 ranks (crc32={crc})" in rank0

    # Every rank extracted (each round) and evaluated (at the end) with rank 0's BN buffers (sync_buffers).
    buffers = {}
    for rank, name in ((0, "log.txt"), (1, "log.txt.rank1")):
        text = (out / name).read_text()
        buffers[rank] = re.findall(rf"(Epoch \d+: extraction|Evaluation), rank {rank}/2: buffers crc32=([0-9a-f]{{8}})", text)
    assert [w for w, _ in buffers[0]] == ["Epoch 0: extraction", "Epoch 1: extraction", "Evaluation"]
    assert buffers[0] == buffers[1]
    # The classifiers grew from one row at the first clustering, under DDP, on both ranks alike.
    assert "growing every classifier" in rank0

    # The checksum is of what was trained on: the labels in the final checkpoint (last clustering).
    state = safe_torch_load(str(out / "model_final.pth"))["pseudo_labels"]
    assert f"{labels_checksum(state['labels'].numpy(), state['agreement'].numpy()):08x}" == views[0][1][0]
    assert (out / "final_results.json").is_file()
