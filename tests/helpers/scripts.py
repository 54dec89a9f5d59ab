"""A script of tools/, benchmarks/ or research/ as a module, loaded from its file (the scripts are no
package and put nothing on sys.path), so tests can call its functions."""
import importlib.util
import os
from types import ModuleType

from tests.helpers import ROOT


def load_script(path: str) -> ModuleType:
    """The module of the script at ``path``, relative to the repository root (``tools/cluster_quality.py``)."""
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
