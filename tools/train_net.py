#!/usr/bin/env python
"""FastReID's usual entry point, with the INCLR add-on's config keys and trainer: the ``inclr-train``
command (inclr_fastreid/cli/train_net.py; ``--help`` there), runnable from a checkout.

    python tools/train_net.py --config-file configs/Pretrain/duke2market.yml [INCLR.SEED 2 OUTPUT_DIR <dir>]
    python tools/train_net.py --config-file configs/INCLR/duke2market.yml MODEL.WEIGHTS <source 1> INCLR.WEIGHTS2 <source 2>
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS <model> INCLR.TEST_FEATURE part1

A mistake in the command, config, data or files ends with one ``error: ...`` line on stderr and exit
status 2 (``INCLR_DEBUG=1`` shows its traceback); any other failure shows its traceback.
"""
from inclr_fastreid.cli.train_net import main

if __name__ == "__main__":
    main()
