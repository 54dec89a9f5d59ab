"""Override lists for tiny CPU runs of tools/train_net.py in tests (shared by the end-to-end tests),
the one in-process runner of its ``main``, and a free port for ``--dist-url``."""
import logging
import os
import socket

from tests.helpers import ROOT

TRAIN_NET = os.path.join(ROOT, "tools", "train_net.py")
TINY = ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.DEPTH", "18x", "MODEL.BACKBONE.FEAT_DIM", "512",
        "MODEL.BACKBONE.PRETRAIN", "False", "INPUT.SIZE_TRAIN", "[64,32]", "INPUT.SIZE_TEST", "[64,32]",
        "INPUT.PADDING.SIZE", "2", "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "8",
        "DATALOADER.NUM_INSTANCE", "2", "TEST.IMS_PER_BATCH", "16", "CUDNN_BENCHMARK", "False",
        "SOLVER.AMP.ENABLED", "False"]  # the real configs train with AMP on GPUs; CPU test runs in float32
# DBSCAN with a fixed eps and k1: the task configs' own k-means K (500-1500) exceeds a tiny set's images, and
# the synthetic config's K1_RULE size would need K1 >= K1_MIN 10.
TINY_CLUSTER = ["INCLR.CLUSTER.METHOD", "dbscan", "INCLR.CLUSTER.EPS_RULE", "fixed", "INCLR.CLUSTER.EPS", "0.8", "INCLR.CLUSTER.MAX_DISTANCE", "0.9", "INCLR.CLUSTER.MIN_SAMPLES", "2",
                "INCLR.CLUSTER.K1", "6", "INCLR.CLUSTER.K1_RULE", "fixed", "INCLR.CLUSTER.K2", "2", "INCLR.LGMR.K", "4"]
# OSNet x0.25 instead of TINY's ResNet-18: 5.8 MB checkpoints instead of 360 MB (4 networks + Adam).
SMALL_NET = ["MODEL.BACKBONE.NAME", "build_osnet_backbone", "MODEL.BACKBONE.DEPTH", "x0_25",
             "MODEL.BACKBONE.FEAT_DIM", "128"]
ADAPT_CFG = os.path.join(ROOT, "configs", "INCLR", "duke2market.yml")
# the source pretraining of the same pair: Duke source, Market batches for target BN (MMT)
PRETRAIN_CFG = os.path.join(ROOT, "configs", "Pretrain", "duke2market.yml")
# An adaptation from randomly initialised students (INCLR.SEED fixes them, so no pretraining step is needed):
# 3 epochs x 2 iterations, a checkpoint every epoch, no evaluation before the end (tests/e2e/test_reliability.py).
RELIABILITY_RUN = TINY + SMALL_NET + TINY_CLUSTER + [
    "MODEL.WEIGHTS", "", "INCLR.SEED", "7", "SOLVER.MAX_EPOCH", "3", "INCLR.ITERS_PER_EPOCH", "2",
    "SOLVER.CHECKPOINT_PERIOD", "1", "TEST.EVAL_PERIOD", "100"]


def run_main_in_process(argv, data, threads):
    """tools/train_net.py's ``main`` in this process (single process, as ``launch`` runs it), with
    FASTREID_DATASETS = ``data`` and ``threads`` intra-op threads; the host's global state (datasets
    root, logger handlers, thread count) is restored afterwards. Returns what ``main`` returns."""
    import fastreid.data.build as fr_build
    import torch
    from fastreid.engine import default_argument_parser

    from inclr_fastreid.engine.launcher import main

    args = default_argument_parser().parse_args(argv)
    saved_root, saved_env = fr_build._root, os.environ.get("FASTREID_DATASETS")
    fr_build._root = os.environ["FASTREID_DATASETS"] = str(data)  # FastReID reads it once at import
    fr_logger = logging.getLogger("fastreid")
    saved_handlers, saved_threads = list(fr_logger.handlers), torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return main(args)
    finally:
        torch.set_num_threads(saved_threads)
        fr_build._root = saved_root
        if saved_env is None:
            os.environ.pop("FASTREID_DATASETS", None)
        else:
            os.environ["FASTREID_DATASETS"] = saved_env
        for h in fr_logger.handlers[len(saved_handlers):]:  # default_setup adds a file handler per run
            fr_logger.removeHandler(h)


def train_in_process(out, data, *opts, resume=False, config=ADAPT_CFG, threads=1):
    """A RELIABILITY_RUN of ``config`` + ``opts`` into ``out`` through ``main`` in this process, on ``threads``
    intra-op threads (one: the same arithmetic in every run that is compared)."""
    argv = ["--config-file", config, *(["--resume"] if resume else []), *RELIABILITY_RUN, *opts, "OUTPUT_DIR", str(out)]
    return run_main_in_process(argv, data, threads)


def free_port() -> int:
    """A TCP port on 127.0.0.1 free now, for ``--dist-url tcp://127.0.0.1:<port>``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
