"""INCLR's config keys (docs/design.md §5), added to a FastReID CfgNode.

Defaults are the paper's numbers; every ablation switch of Table III is a key here.
"""
from __future__ import annotations

from fastreid.config import CfgNode as CN

from .checks import (check_label_smooth, check_lgmr_has_parts, check_mixing_weights, check_test_feature,
                     check_test_model)
from .errors import ConfigError  # (defined with the other user errors; imported from here too)


def add_inclr_config(cfg: CN) -> CN:
    """Add the ``INCLR.*`` keys and ``MODEL.HEADS.NUM_PARTS`` to ``cfg`` (in place) and return it."""
    _C = cfg
    # PartPoolHead (docs/design.md §4.1)
    _C.MODEL.HEADS.NUM_PARTS = 3

    _C.INCLR = CN()
    # Eq. 9: d = d_g + KAPPA * sum_p d_p
    _C.INCLR.KAPPA = 0.2
    # joint | global | part1 | part2 | part3 (Table II)
    _C.INCLR.TEST_FEATURE = "joint"
    # t1 | t2 | mean: which mean teacher answers at inference
    _C.INCLR.TEST_MODEL = "t1"
    # alpha_t = min(1 - 1/(t+1), EMA_MOMENTUM)
    _C.INCLR.EMA_MOMENTUM = 0.999
    # Second source-pretrained checkpoint, for student 2 and teacher 2 (MODEL.WEIGHTS fills student 1
    # and teacher 1): MMT pretrains two source models with different seeds (scripts/pretrain.sh,
    # --init-1 / --init-2). "" = MODEL.WEIGHTS for both, with a warning (the students start identical).
    _C.INCLR.WEIGHTS2 = ""
    # Iterations per adaptation epoch (MMT's fixed 400: the target set's size changes with K)
    _C.INCLR.ITERS_PER_EPOCH = 400
    # Classifier rows per network at the start of an adaptation run; a round that finds more clusters grows
    # them (engine/rows.py). 0 = INCLR.CLUSTER.NUM_CLUSTERS under k-means (its K never exceeds it: trains as
    # MMT's one row per target image would, without the N rows on disk), else grown at the first round
    _C.INCLR.CLASSIFIER_ROWS = 0
    # Round checkpoints (model_XXXX.pth) kept on disk: the newest ones; model_best and model_final are always
    # kept. 0 = keep every one (FastReID's own behaviour)
    _C.INCLR.KEEP_CHECKPOINTS = 2
    # Seed of the run: network initialisation, samplers and augmentation (reseeded per epoch, so
    # a resume replays the same batches). -1 = draw one at start and keep it in the checkpoint.
    _C.INCLR.SEED = -1
    # Check every target training image once at start and leave out unreadable ones (with a count)
    _C.INCLR.SKIP_BAD_IMAGES = False
    # Set by the trainer: number of target training images (credibility buffer length)
    _C.INCLR.NUM_SAMPLES = 0

    # Mutual mean teaching (MMT) terms
    _C.INCLR.MMT = CN()
    _C.INCLR.MMT.SOFT_CE = 0.5
    _C.INCLR.MMT.SOFT_TRI = 0.8
    # Margin of the hard (batch-hard softmax) triplet; 0 = MMT's softmax-triplet without margin
    _C.INCLR.MMT.TRI_MARGIN = 0.0
    # Label smoothing epsilon of the plain hard CE (MMT's CrossEntropyLabelSmooth, 0.1), also of the
    # parts' CE during LGMR's AALS warm-up (PPLR's CrossEntropyLabelSmooth, same 0.1); not applied on
    # top of LGMR's refined global target or agreement-aware part loss (PPLR applies none there)
    _C.INCLR.MMT.LABEL_SMOOTH = 0.1
    # P x K batches take an identity's other K-1 images from other cameras where it has any (MMT's
    # RandomMultipleGallerySampler); False draws them camera-blind (for the per-change ablation)
    _C.INCLR.MMT.CAMERA_SAMPLER = True
    # The two students' losses summed (MMT's MMTTrainer); False averages them (for the ablation)
    _C.INCLR.MMT.SUM_STUDENTS = True

    # Source pretraining (FastReID's Baseline run, INCLR.CLUSTER.ENABLED False)
    _C.INCLR.PRETRAIN = CN()
    # Forward one batch of the target training set (train mode, no loss, no gradient) after every
    # source forward, so the BN running statistics describe the target (MMT's PreTrainer)
    _C.INCLR.PRETRAIN.TARGET_BN = False
    # Target datasets (DATASET_REGISTRY names) whose train split feeds TARGET_BN; labels unused
    _C.INCLR.PRETRAIN.TARGET_DATASETS = ()

    # Clustering (docs/design.md §4.3)
    _C.INCLR.CLUSTER = CN()
    # Adapt to DATASETS.NAMES without labels: cluster every PERIOD epochs and train on pseudo labels
    _C.INCLR.CLUSTER.ENABLED = False
    # Clusterer (pseudo_labels/clustering.py CLUSTERERS): dbscan = DBSCAN on k-reciprocal Jaccard (SpCL)
    _C.INCLR.CLUSTER.METHOD = "dbscan"
    _C.INCLR.CLUSTER.EPS = 0.6
    _C.INCLR.CLUSTER.MIN_SAMPLES = 4
    _C.INCLR.CLUSTER.K1 = 30
    _C.INCLR.CLUSTER.K2 = 6
    _C.INCLR.CLUSTER.PERIOD = 1
    # Jaccard distances above this are not stored (must be >= EPS)
    _C.INCLR.CLUSTER.MAX_DISTANCE = 0.9
    # Standardise features per camera before the kNN search (beyond the paper; off by default). The pair
    # for EPS_RULE auto: it removes the camera look that makes the views agree on camera-split fragments
    # (docs/design.md §4.3.1)
    _C.INCLR.CLUSTER.CAMERA_NORM = False
    # Images per batch when extracting features for clustering
    _C.INCLR.CLUSTER.BATCH_SIZE = 128
    # Seconds the other ranks wait for rank 0's clustering (a gloo group of their own, so NCCL's watchdog
    # and the default group's timeout do not end a long round); a failure on rank 0 ends them at once
    _C.INCLR.CLUSTER.WAIT_TIMEOUT = 7200
    # kmeans (METHOD kmeans, MMT / P2LR): K in the global and every part space; 0 = unset (kmeans
    # refuses it). The paper's K per target (§IV-B): Market 500, Duke 700, MSMT17 1500
    _C.INCLR.CLUSTER.NUM_CLUSTERS = 0
    # dbscan eps: fixed = EPS; mmt = MMT-DBSCAN (examples/mmt_train_dbscan.py): at the first clustering
    # the mean of the smallest RHO of the pairwise Jaccard distances, then kept for the run (checkpointed)
    # auto = chosen without labels at every clustering (docs/design.md §4.3.1): the eps of EPS_GRID at which
    # the global and part spaces' DBSCAN clusterings agree most (ARI) times AUTO_COVERAGE; without part
    # spaces, the k-distance knee
    _C.INCLR.CLUSTER.EPS_RULE = "fixed"
    _C.INCLR.CLUSTER.RHO = 1.6e-3
    # EPS_RULE auto: the eps values tried (each <= MAX_DISTANCE), and whether the first round's choice is
    # kept for the run (checkpointed) instead of being re-chosen every round
    _C.INCLR.CLUSTER.EPS_GRID = [0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8]
    _C.INCLR.CLUSTER.EPS_FREEZE = False
    # EPS_RULE auto: the agreement is weighted by the share of images in clusters that span >= 2 cameras
    # (multi_camera; the images that give a cross-camera positive), or of images not outliers (clustered: for
    # camera ids that do not mark a change of look); docs/design.md §4.3.1
    _C.INCLR.CLUSTER.AUTO_COVERAGE = "multi_camera"
    # dbscan k1: fixed = K1; size = at the first clustering, k1 = clip(round(K1_PER_SIZE x the median cluster
    # size of a clustering at K1), K1_MIN, K1), then kept for the run (checkpointed): a neighbourhood on the
    # scale of an identity's images, without labels (pseudo_labels/k1_rule.py, docs/design.md §4.3.2)
    _C.INCLR.CLUSTER.K1_RULE = "fixed"
    _C.INCLR.CLUSTER.K1_PER_SIZE = 1.5
    _C.INCLR.CLUSTER.K1_MIN = 10

    # LGMR: local/global mutual refinement (docs/design.md §4.4)
    _C.INCLR.LGMR = CN()
    _C.INCLR.LGMR.ENABLED = True
    _C.INCLR.LGMR.K = 20
    # Cross-agreement mode (pseudo_labels/agreement.py AGREEMENTS): neighbour = the kNN-set overlap
    # alone, as PPLR's compute_cross_agreement (examples/train_pplr.py); mean = its mean with the
    # cluster overlap (an option)
    _C.INCLR.LGMR.AGREEMENT = "neighbour"
    _C.INCLR.LGMR.BETA = 0.5
    # Samples whose global cluster no part supports (max_p C_p(i) < this) sit out the epoch.
    # 0 keeps every clustered sample: PPLR drops no sample for its agreement (examples/train_pplr.py)
    _C.INCLR.LGMR.MIN_AGREEMENT = 0.0
    # Parts train with label-smoothed CE (INCLR.MMT.LABEL_SMOOTH) in epochs 0..AALS_EPOCH-1 and with
    # the agreement-aware loss (AALS) from then on; the global branch uses the refined target from
    # the start (PPLR pplr/trainers.py, --aals-epoch 5 in examples/train_pplr.py). 0 = AALS throughout
    _C.INCLR.LGMR.AALS_EPOCH = 5

    # IGMO: inaccuracy-guided mutual optimisation (docs/design.md §4.5)
    _C.INCLR.IGMO = CN()
    _C.INCLR.IGMO.ENABLED = True
    _C.INCLR.IGMO.TEMP = 20.0
    _C.INCLR.IGMO.LAMBDA_KL = 0.5
    # True: credibility w = exp(-I) is a constant weight on -log p(y|x); the paper (Eq. 7) does not say
    # whether w is detached (ours; the ablation behind the default: docs/studies.md, "§4.5").
    # False: UNRN's reading (UDAsbs/trainers.py update_variance): gradients flow through w, the loss adds mean(I).
    _C.INCLR.IGMO.DETACH_WEIGHT = True
    return cfg


def _all_keys(node: CN, prefix: str = "") -> list:
    keys = []
    for k, v in node.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, CN):
            keys.extend(_all_keys(v, full + "."))
    return keys


#: keys of earlier versions -> (what became of them, what to do): named in the error instead of a close-match guess
_RETIRED_KEYS = {
    "INCLR.MAX_CLASSES": ("renamed", "use INCLR.CLASSIFIER_ROWS (the rows to start with; they grow with the clusters)"),
    "INCLR.CLUSTER.AUTO_SELECT": ("removed", "its one_se pick drifted finer over a run and trained worse "
                                             "(docs/studies.md); EPS_RULE auto takes the eps of the best score, as max "
                                             "did: delete the key"),
    "INCLR.CLUSTER.AUTO_PAIRS": ("removed", "cross_camera was scored on labels only and never adopted "
                                            "(docs/studies.md); EPS_RULE auto counts all image pairs, as all did: "
                                            "delete the key"),
}


def _explain_key_error(err: Exception, cfg: CN, source: str) -> ConfigError:
    import difflib
    import re

    m = re.search(r"Non-existent (?:config )?key: ([\w.]+)", str(err))
    if not m:
        text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        return ConfigError(f"{source}: {text}")
    key = m.group(1)
    if key in _RETIRED_KEYS:
        what, hint = _RETIRED_KEYS[key]
        return ConfigError(f"Config key {key!r} in {source} was {what}: {hint}.")
    close = difflib.get_close_matches(key, _all_keys(cfg), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"Unknown config key {key!r} in {source}.{hint}")


def validate_inclr_config(cfg: CN) -> None:
    """Cross-key checks that yacs cannot express; raises ConfigError naming the keys.

    Each check is the one its module applies when it is built (``checks.py``; no second copy here),
    run early so a typo fails before data loading and feature extraction."""
    from .pseudo_labels.params import cluster_params_from_cfg

    c = cfg.INCLR
    try:
        cluster_params_from_cfg(cfg)
        check_test_feature(c.TEST_FEATURE, cfg.MODEL.HEADS.NUM_PARTS)
        check_test_model(c.TEST_MODEL)
        check_mixing_weights(c.MMT.SOFT_CE, c.MMT.SOFT_TRI)
        check_label_smooth(c.MMT.LABEL_SMOOTH)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _check_global_only(cfg)
    if c.PRETRAIN.TARGET_BN:
        if not c.PRETRAIN.TARGET_DATASETS:
            raise ConfigError("INCLR.PRETRAIN.TARGET_BN needs INCLR.PRETRAIN.TARGET_DATASETS, e.g. (\"Market1501\",).")
        if c.CLUSTER.ENABLED:
            raise ConfigError("INCLR.PRETRAIN.TARGET_BN is for source pretraining; adaptation runs "
                              "(INCLR.CLUSTER.ENABLED True) already train on the target: turn it off.")
        if cfg.TEST.PRECISE_BN.ENABLED:
            raise ConfigError("TEST.PRECISE_BN recomputes the BN statistics on the source training set, undoing "
                              "INCLR.PRETRAIN.TARGET_BN: enable one of the two.")
    for key in ("CLASSIFIER_ROWS", "KEEP_CHECKPOINTS"):
        if int(c[key]) < 0:
            raise ConfigError(f"INCLR.{key}={c[key]}: must be >= 0 (0 = {'automatic' if key == 'CLASSIFIER_ROWS' else 'keep all'}).")


def _check_global_only(cfg: CN) -> None:
    """MODEL.HEADS.NUM_PARTS 0 (the global branch alone, MMT's own network) in a run that adapts: the
    options that need part views are errors, not silently skipped (docs/design.md §4.2.5)."""
    if cfg.MODEL.HEADS.NUM_PARTS != 0 or not (cfg.INCLR.CLUSTER.ENABLED or cfg.MODEL.META_ARCHITECTURE == "INCLR"):
        return
    check_lgmr_has_parts(cfg.INCLR.LGMR.ENABLED, 0)
    if cfg.INCLR.CLUSTER.EPS_RULE == "auto":
        raise ConfigError("INCLR.CLUSTER.EPS_RULE auto scores the agreement of the global and part clusterings, but "
                          "MODEL.HEADS.NUM_PARTS is 0: set INCLR.CLUSTER.EPS_RULE fixed (with INCLR.CLUSTER.EPS) "
                          "or mmt, or MODEL.HEADS.NUM_PARTS >= 1.")


def _check_registered(registry, key: str, names) -> None:
    import difflib

    known = sorted(registry._obj_map)
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else f" Known: {', '.join(known)}."
            raise ConfigError(f"{key}: {name!r} is not registered.{hint}")


def validate_registry_names(cfg: CN) -> None:
    """Names in the config that FastReID looks up in a registry must be registered (a typo there
    would otherwise surface as a KeyError deep inside the model or dataset build)."""
    from fastreid.data.datasets import DATASET_REGISTRY
    from fastreid.modeling.backbones import BACKBONE_REGISTRY
    from fastreid.modeling.heads import REID_HEADS_REGISTRY
    from fastreid.modeling.meta_arch import META_ARCH_REGISTRY

    _check_registered(META_ARCH_REGISTRY, "MODEL.META_ARCHITECTURE", [cfg.MODEL.META_ARCHITECTURE])
    _check_registered(BACKBONE_REGISTRY, "MODEL.BACKBONE.NAME", [cfg.MODEL.BACKBONE.NAME])
    _check_registered(REID_HEADS_REGISTRY, "MODEL.HEADS.NAME", [cfg.MODEL.HEADS.NAME])
    _check_registered(DATASET_REGISTRY, "DATASETS.NAMES", list(cfg.DATASETS.NAMES))
    _check_registered(DATASET_REGISTRY, "DATASETS.TESTS", list(cfg.DATASETS.TESTS))


def setup_cfg(config_file: str, opts: list | None = None, freeze: bool = True) -> CN:
    """FastReID's default config + the INCLR keys, merged with ``config_file`` and ``opts``.

    Errors name the file or key (with close matches for typos). ``MODEL.DEVICE cuda`` falls back
    to the CPU with a warning when no GPU is present, so one config serves both.
    """
    import logging
    import os

    import torch
    import yaml
    from fastreid.config import get_cfg

    cfg = add_inclr_config(get_cfg())
    if config_file:
        if not os.path.isfile(config_file):
            raise ConfigError(f"Config file {config_file!r} not found (cwd: {os.getcwd()}).")
        try:
            cfg.merge_from_file(config_file)
        except (KeyError, ValueError, AssertionError) as e:  # unknown key, wrong type
            raise _explain_key_error(e, cfg, f"config file {config_file!r} (or its _BASE_)") from None
        except (OSError, yaml.YAMLError) as e:  # a _BASE_ that is not there, a file that is not YAML
            raise ConfigError(f"Cannot read config file {config_file!r} (or its _BASE_): "
                              f"{' '.join(str(e).split())}") from None
    if opts:
        if len(opts) % 2:
            raise ConfigError(f"Overrides must come as KEY VALUE pairs; got an odd list: {opts}")
        try:
            cfg.merge_from_list(list(opts))
        except (KeyError, ValueError, AssertionError) as e:  # unknown key, wrong type, bad literal
            raise _explain_key_error(e, cfg, "command-line overrides") from None
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        amp = bool(cfg.SOLVER.AMP.ENABLED)
        logging.getLogger(__name__).warning("MODEL.DEVICE=%s but no GPU is visible: using the CPU%s.", cfg.MODEL.DEVICE,
                                            ", in float32 (SOLVER.AMP.ENABLED off; set MODEL.DEVICE cpu to keep "
                                            "bfloat16 autocast on the CPU)" if amp else "")
        cfg.MODEL.DEVICE = "cpu"
        cfg.SOLVER.AMP.ENABLED = False
    validate_inclr_config(cfg)
    validate_registry_names(cfg)
    if freeze:
        cfg.freeze()
    return cfg
