#!/usr/bin/env python
"""Export one teacher of an INCLR checkpoint as a deployable FastReID model (and ONNX graph): the
``inclr-export`` command (inclr_fastreid/cli/export_model.py; ``--help`` there), runnable from a checkout.

    python tools/export_model.py --config-file configs/INCLR/duke2market.yml \
        --weights logs/INCLR/duke2market/model_final.pth --teacher t1 --output export/duke2market [--onnx]

A mistake in the command or files ends with one ``error: ...`` line and exit status 2
(``INCLR_DEBUG=1`` shows its traceback).
"""
from inclr_fastreid.cli.export_model import main

if __name__ == "__main__":
    main()
