import logging
import os
import sys
from pathlib import Path

import pytest

# the repository root: the checkout's inclr_fastreid, and tests.helpers for the test modules
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import inclr_fastreid  # noqa: E402,F401  (compat before any fastreid.data import)

#: the tests that run whole programs (tools/train_net.py in this process or another, two processes under
#: torch.distributed, a built wheel), all of them and nothing else: marked e2e, which `make test-fast` leaves out.
E2E = Path(__file__).resolve().parent / "e2e"


def pytest_collection_modifyitems(items):
    for item in items:
        if E2E in item.path.resolve().parents:
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


@pytest.fixture(scope="session")
def items(tmp_path_factory):
    """18 target images (6 identities x 3 cameras) as the PseudoLabelHook reads them (tests.helpers.hook); read-only,
    so one set serves the session (the hook copies the list, TargetItem is a NamedTuple)."""
    from tests.helpers.hook import target_items

    return target_items(str(tmp_path_factory.mktemp("degenerate")))
