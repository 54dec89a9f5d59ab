"""Meta-architectures registered into FastReID's META_ARCH_REGISTRY on import: ``INCLR`` (``inclr.py``),
built on the four mean-teacher networks (``mean_teachers.py``) and one student's losses (``mutual_losses.py``)."""
from .inclr import INCLR
from .mean_teachers import MeanTeacherNetworks, ReIDNet
from .mutual_losses import StudentLosses

__all__ = ["INCLR", "MeanTeacherNetworks", "ReIDNet", "StudentLosses"]
