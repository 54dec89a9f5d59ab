"""Meta-architectures registered into FastReID's META_ARCH_REGISTRY on import."""
from .inclr import INCLR, ReIDNet

__all__ = ["INCLR", "ReIDNet"]
