"""Value checks of INCLR's config keys, one copy each (docs/design.md §5).

``config.validate_inclr_config`` runs them as soon as a config is read (a typo fails before data
loading and feature extraction), and the module that takes the value runs the same function when
it is built (PartPoolHead, the INCLR meta-architecture, the MMT losses). This module imports
nothing but ``errors``, so ``config`` and ``modeling`` both import it and not each other.

Checks raise ``ValueError`` for a value out of range (``validate_inclr_config`` re-raises it as a
:class:`~inclr_fastreid.errors.ConfigError`) and ``ConfigError`` for a combination of keys.
"""
from __future__ import annotations

from typing import List

from .errors import ConfigError

__all__ = ["TEST_MODELS", "branch_names", "allowed_test_features", "check_test_feature", "check_test_model", "check_aals_epoch",
           "check_mixing_weights", "check_lgmr_has_parts", "check_label_smooth"]

#: INCLR.TEST_MODEL: the teacher that answers at inference (the mean runs both and averages their features)
TEST_MODELS = ("t1", "t2", "mean")


def branch_names(num_parts: int) -> List[str]:
    """Names of PartPoolHead's branches in order: ``["global", "part1", ..., "partP"]`` (also the values of
    INCLR.TEST_FEATURE that pick one branch)."""
    return ["global"] + [f"part{p + 1}" for p in range(num_parts)]


def allowed_test_features(num_parts: int) -> List[str]:
    """Values of INCLR.TEST_FEATURE with ``num_parts`` stripes: the joint feature (Eq. 9) or one branch."""
    return ["joint"] + branch_names(num_parts)


def check_test_feature(test_feature: str, num_parts: int) -> None:
    """INCLR.TEST_FEATURE is one of :func:`allowed_test_features` (MODEL.HEADS.NUM_PARTS stripes)."""
    allowed = allowed_test_features(num_parts)
    if test_feature not in allowed:
        raise ConfigError(f"INCLR.TEST_FEATURE={test_feature!r}: expected one of {allowed}")


def check_test_model(test_model: str) -> None:
    """INCLR.TEST_MODEL names the teacher that answers at inference."""
    if test_model not in TEST_MODELS:
        raise ValueError(f"INCLR.TEST_MODEL={test_model!r}: expected t1, t2 or mean")


def check_aals_epoch(aals_epoch: int) -> None:
    """INCLR.LGMR.AALS_EPOCH: the first epoch whose part loss is AALS, an integer >= 0."""
    if isinstance(aals_epoch, bool) or int(aals_epoch) != aals_epoch or aals_epoch < 0:
        raise ValueError(f"INCLR.LGMR.AALS_EPOCH must be an integer >= 0, got {aals_epoch!r}")


def check_mixing_weights(soft_ce: float, soft_tri: float) -> None:
    """INCLR.MMT.SOFT_CE / SOFT_TRI mix hard and soft terms: weights in [0, 1]."""
    for key, w in (("INCLR.MMT.SOFT_CE", soft_ce), ("INCLR.MMT.SOFT_TRI", soft_tri)):
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"{key} must be in [0, 1], got {w}")


def check_lgmr_has_parts(lgmr_enabled: bool, num_parts: int) -> None:
    """LGMR refines global and part labels against each other (paper Eq. 1-2): it needs part branches."""
    if lgmr_enabled and num_parts == 0:
        raise ConfigError("INCLR.LGMR.ENABLED True needs part branches, but MODEL.HEADS.NUM_PARTS is 0: set "
                          "INCLR.LGMR.ENABLED False (global-only MMT) or MODEL.HEADS.NUM_PARTS >= 1.")


def check_label_smooth(epsilon: float) -> None:
    """The label-smoothing epsilon (INCLR.MMT.LABEL_SMOOTH) lies in [0, 1)."""
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"label smoothing epsilon (INCLR.MMT.LABEL_SMOOTH) must be in [0, 1), got {epsilon}")
