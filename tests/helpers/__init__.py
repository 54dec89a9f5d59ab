"""What the test modules share, imported as ``tests.helpers.<module>`` (the root conftest puts the repository
root on sys.path): tiny train_net runs, dataset layouts, the pseudo-label hook on a fake trainer, synthetic
features, tiny model configs, and the scripts of tools/ loaded as modules."""
import os

#: the repository root (the checkout the tests run from)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
