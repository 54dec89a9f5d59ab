"""What ``tools/train_net.py`` runs in each process: build the config, then train or evaluate."""
from __future__ import annotations

import argparse
import logging
from typing import Any, Dict

from fastreid.config import CfgNode
from fastreid.engine import default_setup

from ..config import setup_cfg
from .trainer import INCLRTrainer

logger = logging.getLogger("fastreid." + __name__)


def setup(args: argparse.Namespace) -> CfgNode:
    """Config from file + overrides (with the add-on's keys), frozen, then FastReID's default setup."""
    cfg = setup_cfg(args.config_file, args.opts)
    default_setup(cfg, args)
    return cfg


def main(args: argparse.Namespace) -> Dict[str, Any]:
    cfg = setup(args)
    if args.eval_only:
        model = INCLRTrainer.build_model_for_eval(cfg)
        return INCLRTrainer.test(cfg, model)
    trainer = INCLRTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()
