"""Override lists for tiny CPU runs of tools/train_net.py in tests (shared by the end-to-end tests)."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(ROOT, "tools", "train_net.py")
TINY = ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.DEPTH", "18x", "MODEL.BACKBONE.FEAT_DIM", "512",
        "MODEL.BACKBONE.PRETRAIN", "False", "INPUT.SIZE_TRAIN", "[64,32]", "INPUT.SIZE_TEST", "[64,32]",
        "INPUT.PADDING.SIZE", "2", "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "8",
        "DATALOADER.NUM_INSTANCE", "2", "TEST.IMS_PER_BATCH", "16", "CUDNN_BENCHMARK", "False"]
# DBSCAN with a fixed eps: the task configs' own k-means K (500-1500) exceeds a tiny set's images.
TINY_CLUSTER = ["INCLR.CLUSTER.METHOD", "dbscan", "INCLR.CLUSTER.EPS_RULE", "fixed", "INCLR.CLUSTER.EPS", "0.8", "INCLR.CLUSTER.MAX_DISTANCE", "0.9", "INCLR.CLUSTER.MIN_SAMPLES", "2",
                "INCLR.CLUSTER.K1", "6", "INCLR.CLUSTER.K2", "2", "INCLR.LGMR.K", "4"]
# OSNet x0.25 instead of TINY's ResNet-18: 5.8 MB checkpoints instead of 360 MB (4 networks + Adam).
SMALL_NET = ["MODEL.BACKBONE.NAME", "build_osnet_backbone", "MODEL.BACKBONE.DEPTH", "x0_25",
             "MODEL.BACKBONE.FEAT_DIM", "128"]
