#!/usr/bin/env python
"""FastReID's usual entry point, with the INCLR add-on's config keys and trainer.

    python tools/train_net.py --config-file configs/Pretrain/duke2market.yml [INCLR.SEED 2 OUTPUT_DIR <dir>]
    python tools/train_net.py --config-file configs/INCLR/duke2market.yml MODEL.WEIGHTS <source 1> INCLR.WEIGHTS2 <source 2>
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS <model> INCLR.TEST_FEATURE part1

A mistake in the command, config, data or files ends with one ``error: ...`` line on stderr and exit
status 2 (``INCLR_DEBUG=1`` shows its traceback); any other failure shows its traceback.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import inclr_fastreid  # noqa: E402,F401  (host compat + registries)
from fastreid.engine import default_argument_parser  # noqa: E402

from inclr_fastreid.engine.launcher import launch_main  # noqa: E402


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch_main(args)
