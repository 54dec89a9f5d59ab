"""INCLR's modelling pieces; importing this package registers ``PartPoolHead`` (REID_HEADS_REGISTRY)
and ``INCLR`` (META_ARCH_REGISTRY) in FastReID's registries (idempotently)."""
from . import heads, losses, meta_arch
from .heads import PartPoolHead
from .meta_arch import INCLR

__all__ = ["heads", "losses", "meta_arch", "PartPoolHead", "INCLR"]
