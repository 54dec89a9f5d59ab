"""What ``tools/train_net.py`` runs: :func:`launch_main` starts FastReID's ``launch`` (one process per
GPU with ``--num-gpus N``), each process runs :func:`main` (build the config, then train or
evaluate). User errors (:class:`inclr_fastreid.errors.UserError`) end the command with one
``error:`` line on stderr and exit status 2, in one process or many; bugs keep their traceback."""
from __future__ import annotations

import argparse
import json
import logging
import numbers
import os
from typing import Any, Dict

from fastreid.config import CfgNode
from fastreid.engine import default_setup
from fastreid.utils import comm

from ..errors import run_guarded
from ..io import atomic_write_text
from ..config import setup_cfg
from .trainer import INCLRTrainer

logger = logging.getLogger("fastreid." + __name__)


def setup(args: argparse.Namespace) -> CfgNode:
    """Config from file + overrides (with the add-on's keys), frozen, then FastReID's default setup."""
    cfg = setup_cfg(args.config_file, args.opts)
    default_setup(cfg, args)
    return cfg


def write_results(cfg: CfgNode, results: Dict[str, Any], name: str) -> None:
    """Final metrics as JSON in OUTPUT_DIR (atomic), for scripts that collect tables."""
    if not comm.is_main_process() or not cfg.OUTPUT_DIR or not results:
        return
    flat = {k: (float(v) if isinstance(v, numbers.Number) else v) for k, v in results.items()
            if not isinstance(v, dict)}
    nested = {k: {kk: float(vv) for kk, vv in v.items() if isinstance(vv, numbers.Number)}
              for k, v in results.items() if isinstance(v, dict)}
    payload = {"test_feature": cfg.INCLR.TEST_FEATURE, "test_model": cfg.INCLR.TEST_MODEL,
               "datasets": list(cfg.DATASETS.TESTS), **flat, **nested}
    atomic_write_text(os.path.join(cfg.OUTPUT_DIR, name), json.dumps(payload, indent=2))


def main(args: argparse.Namespace) -> Dict[str, Any]:
    cfg = setup(args)
    if args.eval_only:
        model = INCLRTrainer.build_model_for_eval(cfg)
        results = INCLRTrainer.test(cfg, model)
        write_results(cfg, results, f"eval_{cfg.INCLR.TEST_FEATURE}.json")
        return results
    trainer = INCLRTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    results = trainer.train()
    write_results(cfg, results, "final_results.json")
    return results


def worker_main(args: argparse.Namespace) -> Dict[str, Any]:
    """:func:`main` in one process of a launch: a user error ends this process with status 2 after
    printing its message (once per launch, whichever rank reports first)."""
    return run_guarded(main, args)


def launch_main(args: argparse.Namespace) -> None:
    """The command: FastReID's ``launch`` of :func:`worker_main`, guarded, so a user error exits
    with status 2 and one ``error:`` line whether it happened here or in a worker process."""
    from fastreid.engine import launch

    run_guarded(launch, worker_main, args.num_gpus, num_machines=args.num_machines,
                machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))
