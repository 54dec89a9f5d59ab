"""The names a clustering round's config keys may take, each bound to what implements it (docs/design.md §4.3-4.4):
``INCLR.CLUSTER.METHOD`` (clusterers), ``INCLR.LGMR.AGREEMENT`` (cross-agreement modes) and
``INCLR.CLUSTER.EPS_RULE`` / ``K1_RULE`` (the scale rules, :mod:`.scale`).

The modules that define the entries fill these maps when ``inclr_fastreid.pseudo_labels`` is imported. This
module imports nothing of the package, so :class:`~.params.ClusterParams` checks a name here while the
implementations import ClusterParams: every import points one way.
"""
from __future__ import annotations

from typing import Any, Callable, Dict

__all__ = ["Registry", "CLUSTERERS", "AGREEMENTS", "EPS_RULES", "K1_RULES"]


class Registry(Dict[str, Any]):
    """Name -> implementation for one config key; a name that is not here is refused naming the key."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator: bind ``name`` (a value of the key) to the decorated object, returned unchanged."""
        def add(entry: Any) -> Any:
            self[name] = entry
            return entry

        return add

    def check(self, name: str) -> None:
        """ValueError naming the key and the registered names unless ``name`` is one of them."""
        if name not in self:
            raise ValueError(f"{self.key} {name!r}: use one of {sorted(self)}.")


#: INCLR.CLUSTER.METHOD -> f(space, params) -> (N,) labels (clustering.py)
CLUSTERERS = Registry("INCLR.CLUSTER.METHOD")
#: INCLR.LGMR.AGREEMENT -> f(global_knn, part_knn, global_labels, part_labels) -> (N,) in [0, 1] (agreement.py)
AGREEMENTS = Registry("INCLR.LGMR.AGREEMENT")
#: INCLR.CLUSTER.EPS_RULE -> the rule choosing DBSCAN's eps (eps_rule.py)
EPS_RULES = Registry("INCLR.CLUSTER.EPS_RULE")
#: INCLR.CLUSTER.K1_RULE -> the rule choosing the Jaccard distance's k1 (k1_rule.py)
K1_RULES = Registry("INCLR.CLUSTER.K1_RULE")
