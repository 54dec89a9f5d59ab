#!/usr/bin/env python
"""FastReID's usual entry point, with the INCLR add-on's config keys and trainer.

    python tools/train_net.py --config-file configs/Pretrain/duke2market.yml [INCLR.SEED 2 OUTPUT_DIR <dir>]
    python tools/train_net.py --config-file configs/INCLR/duke2market.yml MODEL.WEIGHTS <source 1> INCLR.WEIGHTS2 <source 2>
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS <model> INCLR.TEST_FEATURE part1
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import inclr_fastreid  # noqa: E402,F401  (host compat + registries)
from fastreid.engine import default_argument_parser, launch  # noqa: E402

from inclr_fastreid.engine.launcher import main  # noqa: E402


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
