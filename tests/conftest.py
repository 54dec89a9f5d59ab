import logging
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (ROOT, HERE):
    if p not in sys.path:
        sys.path.insert(0, p)

import inclr_fastreid  # noqa: E402,F401  (compat before any fastreid.data import)


@pytest.fixture
def fastreid_warnings(caplog):
    """Warnings logged under 'fastreid.*' (the trainer, the hook), which does not propagate to the
    root logger that caplog listens on."""
    log = logging.getLogger("fastreid")
    log.addHandler(caplog.handler)
    caplog.set_level(logging.WARNING, logger="fastreid")
    yield caplog
    log.removeHandler(caplog.handler)
