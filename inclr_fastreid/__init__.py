"""inclr-fastreid: INCLR (local/global mutual pseudo-label refinement + inaccuracy-guided
optimisation) for clustering-based UDA person re-ID, as a FastReID add-on.

Importing this package makes FastReID 1.4.0 work on today's stack (``compat``) and fills
FastReID's registries: ``PartPoolHead`` (REID_HEADS_REGISTRY), ``INCLR`` (META_ARCH_REGISTRY),
the synthetic domains and ``MSMT17UDA`` (DATASET_REGISTRY).
"""
from .compat import apply_host_compat as _apply_host_compat

_apply_host_compat()

from .config import add_inclr_config, setup_cfg  # noqa: E402
from . import modeling  # noqa: E402,F401  (registers PartPoolHead, INCLR)
from .data import msmt17_uda, synthetic  # noqa: E402,F401  (registers MSMT17UDA, SynthA/B/C)

__version__ = "0.1.0"
__all__ = ["add_inclr_config", "setup_cfg", "__version__"]
