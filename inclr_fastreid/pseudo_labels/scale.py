"""The clustering scale of a round (docs/design.md §4.3, §4.3.1-4.3.2): DBSCAN's eps and the Jaccard distance's k1,
each chosen by a rule named in the config (``INCLR.CLUSTER.EPS_RULE``: :mod:`.eps_rule`; ``K1_RULE``:
:mod:`.k1_rule`). One interface for both: a rule chooses the round's value and what the log records of the choice,
and says whether the first round's choice is kept for the rest of the run. What is kept lives in one
:class:`FrozenScale`, which the hook checkpoints and passes back to every later round.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from .params import ClusterParams
from .registries import EPS_RULES, K1_RULES

__all__ = ["SCALES", "ScaleChoice", "ScaleRule", "FrozenScale", "scale_rules"]

#: the scales of a round, in the order it chooses them (k1 sets the distances eps is chosen on), and their types
SCALES = {"k1": int, "eps": float}


@dataclass
class ScaleChoice:
    """A rule's value for this round, and the record of how it was chosen (the label log's ``eps_choice`` /
    ``k1_choice``); None when nothing was chosen (the configured or a given value)."""

    value: Any
    record: Optional[Dict[str, Any]] = None


class ScaleRule:
    """One way to choose one scale: ``name`` is its config value, ``scale`` the ClusterParams field it sets."""

    name = ""
    scale = ""
    fixed = False  # True: the value is the configured one (or one the caller gives), nothing is chosen or timed

    def check(self, p: ClusterParams) -> None:
        """Refuse settings this rule cannot run with (ValueError naming the keys); nothing by default."""

    def kept(self, p: ClusterParams) -> bool:
        """Whether the first round's choice is kept for the run (by default re-chosen every round)."""
        return False

    def kept_message(self, value: Any, p: ClusterParams, record: Mapping[str, Any]) -> str:
        """The log line saying that ``value`` is kept for the run; ``record`` is the round's label-log record."""
        return f"{self.scale} = {value}, kept for the run ({self.name})."


def scale_rules(p: ClusterParams, given: Any = ()) -> Dict[str, ScaleRule]:
    """The rule of each scale for ``p``, in the order a round chooses them: "k1" (``K1_RULE``) and, for DBSCAN
    only, "eps" (``EPS_RULE``). A scale named in ``given`` (a value the caller passes, e.g. one kept for the
    run) takes the ``fixed`` rule: the value as given."""
    rules = {"k1": K1_RULES["fixed" if "k1" in given else p.k1_rule]}
    if p.method == "dbscan":
        rules["eps"] = EPS_RULES["fixed" if "eps" in given else p.eps_rule]
    return rules


@dataclass
class FrozenScale:
    """The scale kept for the run: each value set at the first round whose rule keeps its choice (EPS_RULE mmt,
    auto with EPS_FREEZE; K1_RULE size) and passed back as that round's override ever after; None = not kept
    (not yet, or not by this rule). Checkpointed as ``eps`` and ``k1`` (PseudoLabelState)."""

    eps: Optional[float] = None
    k1: Optional[int] = None

    def overrides(self) -> Dict[str, Any]:
        """The kept values, as keyword arguments of ``generate_pseudo_labels``."""
        return {scale: getattr(self, scale) for scale in SCALES if getattr(self, scale) is not None}

    def keep(self, rules: Mapping[str, ScaleRule], values: Mapping[str, Any], p: ClusterParams,
             record: Mapping[str, Any]) -> List[str]:
        """Keep each of the round's ``values`` (scale -> value; None: the round has none) whose rule keeps its
        choice and which is not kept yet; returns a log line per value kept (eps first, as the hook always said)."""
        said = []
        for scale in ("eps", "k1"):
            rule, value = rules.get(scale), values.get(scale)
            if rule is not None and rule.kept(p) and getattr(self, scale) is None and value is not None:
                setattr(self, scale, SCALES[scale](value))
                said.append(rule.kept_message(getattr(self, scale), p, record))
        return said

    def state_dict(self) -> Dict[str, Any]:
        return {scale: getattr(self, scale) for scale in SCALES}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """A checkpoint written before a scale's rule existed has no entry for it: not kept."""
        for scale, kind in SCALES.items():
            value = state.get(scale)
            setattr(self, scale, None if value is None else kind(value))
