"""inclr-fastreid: INCLR (local/global mutual pseudo-label refinement + inaccuracy-guided
optimisation) for clustering-based UDA person re-ID, as a FastReID add-on.

Importing this package makes FastReID 1.4.0 work on today's stack (``compat``) and fills
FastReID's registries with the add-on's head, meta-architecture, datasets and hooks.
"""
from .compat import apply_host_compat as _apply_host_compat

_apply_host_compat()

from .config import add_inclr_config  # noqa: E402

__version__ = "0.1.0"
__all__ = ["add_inclr_config", "__version__"]
