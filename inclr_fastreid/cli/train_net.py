"""FastReID's usual training entry point, with the INCLR add-on's config keys and trainer.

    inclr-train --config-file configs/Pretrain/duke2market.yml [INCLR.SEED 2 OUTPUT_DIR <dir>]
    inclr-train --config-file configs/INCLR/duke2market.yml MODEL.WEIGHTS <source 1> INCLR.WEIGHTS2 <source 2>
    inclr-train --config-file ... --eval-only MODEL.WEIGHTS <model> INCLR.TEST_FEATURE part1

--config-file takes a file, or when no such file exists, a config shipped with the package under the
same name (configs/INCLR/duke2market.yml; --list-configs lists them). A mistake in the command,
config, data or files ends with one ``error: ...`` line on stderr and exit status 2
(``INCLR_DEBUG=1`` shows its traceback); any other failure shows its traceback.
"""
from __future__ import annotations

import argparse
import os
from typing import List, Optional

from .. import __version__
from ..config import setup_cfg
from ..config_files import resolve_config_file, shipped_configs
from ..engine import launcher
from ..errors import run_guarded


def build_parser() -> argparse.ArgumentParser:
    """FastReID's ``default_argument_parser`` (same flags, so FastReID commands carry over) plus
    --list-configs and --print-config."""
    from fastreid.engine import default_argument_parser

    ap = default_argument_parser()
    ap.description = __doc__
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    ap.add_argument("--list-configs", action="store_true", help="print the shipped configs and exit")
    ap.add_argument("--print-config", action="store_true",
                    help="print which config file is used and the full config it builds (its _BASE_ chain "
                         "and the KEY VALUE overrides merged, keys checked), then exit without training")
    return ap


def print_config(config_file: str, opts: List[str]) -> None:
    """What --print-config shows: the add-on's location, the file read, then the merged config."""
    cfg = setup_cfg(config_file, opts)
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    print(f"inclr_fastreid {__version__} from {package_dir}")
    print(f"config file: {os.path.abspath(config_file)}")
    print(cfg.dump(), end="")


def main(argv: Optional[List[str]] = None) -> None:
    """The ``inclr-train`` command (and ``tools/train_net.py``)."""
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.list_configs:
        print("\n".join(shipped_configs()) or "no configs are shipped with this installation")
        return
    args.config_file = run_guarded(resolve_config_file, args.config_file)
    if args.print_config:
        run_guarded(print_config, args.config_file, args.opts)
        return
    print("Command Line Args:", args)
    launcher.launch_main(args)
