import logging
import os
import sys

import pytest

# the repository root: the checkout's inclr_fastreid, and tests.helpers for the test modules
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import inclr_fastreid  # noqa: E402,F401  (compat before any fastreid.data import)


#: modules whose tests run whole programs: tools/train_net.py in this process or another, two processes
#: under torch.distributed, a built wheel. `make test-fast` (pytest -m "not e2e") leaves them out.
E2E_MODULES = {"test_adaptation", "test_distributed", "test_distributed_sync", "test_reliability",
               "test_user_errors", "test_package", "test_pretraining", "test_run_demo", "test_export",
               "test_degenerate_clustering", "test_msmt17_uda"}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.module is not None and item.module.__name__.rsplit(".", 1)[-1] in E2E_MODULES:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def fastreid_warnings(caplog):
    """Warnings logged under 'fastreid.*' (the trainer, the hook), which does not propagate to the
    root logger that caplog listens on."""
    log = logging.getLogger("fastreid")
    log.addHandler(caplog.handler)
    caplog.set_level(logging.WARNING, logger="fastreid")
    yield caplog
    log.removeHandler(caplog.handler)
