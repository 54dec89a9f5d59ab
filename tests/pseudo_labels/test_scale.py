"""The clustering scale kept for the run (inclr_fastreid/pseudo_labels/scale.py FrozenScale, checkpointed in
engine/state.py PseudoLabelState), driven through the PseudoLabelHook on a fake trainer (tests.helpers.hook)."""
import logging
from dataclasses import replace

import pytest
import torch

from inclr_fastreid.pseudo_labels import ClusterParams
from inclr_fastreid.pseudo_labels.registries import EPS_RULES, K1_RULES
from inclr_fastreid.pseudo_labels.scale import scale_rules

from tests.helpers.hook import make_hook, overrides_passed_to_clustering, payload

EPS_CHOICE = {"eps": 0.35, "criterion": "cross_space_agreement", "grid": [0.3, 0.35], "scores": [0.5, 0.9],
              "select": "max"}
K1_CHOICE = {"rule": "size", "k1_max": 30, "median_size": 6.0, "k1": 9}
LATER = {"eps": 0.55, "k1": 14}  # what a later round chooses


@pytest.mark.parametrize("over, lines", [
    ({"INCLR.CLUSTER.EPS_RULE": "mmt"},
     ["Epoch 0: INCLR.CLUSTER.EPS_RULE mmt: eps = 0.4321, kept for the run (rho 0.0016)."]),
    ({"INCLR.CLUSTER.EPS_RULE": "auto", "INCLR.CLUSTER.EPS_FREEZE": True},
     ["Epoch 0: INCLR.CLUSTER.EPS_RULE auto: eps = 0.4321, kept for the run (EPS_FREEZE)."]),
    ({"INCLR.CLUSTER.EPS_RULE": "auto", "INCLR.CLUSTER.K1_RULE": "size"},
     ["Epoch 0: INCLR.CLUSTER.K1_RULE size: k1 = 9 (median cluster size 6.0 at K1 30), kept for the run."]),
    ({"INCLR.CLUSTER.EPS_RULE": "mmt", "INCLR.CLUSTER.K1_RULE": "size"},
     ["Epoch 0: INCLR.CLUSTER.EPS_RULE mmt: eps = 0.4321, kept for the run (rho 0.0016).",
      "Epoch 0: INCLR.CLUSTER.K1_RULE size: k1 = 9 (median cluster size 6.0 at K1 30), kept for the run."]),
    ({"INCLR.CLUSTER.EPS_RULE": "auto"}, []),
])
def test_hook_says_once_what_it_keeps_for_the_run(items, caplog, over, lines):
    """The first round's eps (EPS_RULE mmt, auto with EPS_FREEZE) and k1 (K1_RULE size) are logged when kept, eps
    first, naming the rule and what it came from; a later round keeps and logs nothing."""
    hook = make_hook(items, **{"INCLR.CLUSTER.METHOD": "dbscan", **over})
    labels = [i % 3 for i in range(len(items))]
    first = payload(labels)
    first["record"]["k1_choice"] = {"rule": "size", "k1_max": 30, "median_size": 6.0, "k1": 9}
    log = logging.getLogger("fastreid")
    log.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="fastreid")
    try:
        hook._apply(0, dict(first, eps=0.4321, k1=9))
        hook._apply(1, dict(payload(labels, epoch=1), eps=0.55, k1=14))
    finally:
        log.removeHandler(caplog.handler)
    said = list(dict.fromkeys(r.getMessage() for r in caplog.records if "kept for the run" in r.getMessage()))
    assert said == lines
    assert hook.state.scale.overrides() == {**({"eps": 0.4321} if "eps =" in " ".join(lines) else {}),
                                            **({"k1": 9} if "k1 =" in " ".join(lines) else {})}


def test_each_scale_rule_says_whether_its_first_choice_is_kept_and_a_given_value_is_fixed():
    """mmt and K1_RULE size keep their first choice for the run, auto only with EPS_FREEZE, fixed has nothing to
    keep; a value the caller gives (a kept one) takes the fixed rule; k-means has no eps rule."""
    p = ClusterParams()
    assert sorted(EPS_RULES) == ["auto", "fixed", "mmt"] and sorted(K1_RULES) == ["fixed", "size"]
    assert [EPS_RULES[n].kept(p) for n in ("fixed", "mmt", "auto")] == [False, True, False]
    assert EPS_RULES["auto"].kept(replace(p, eps_freeze=True)) and not EPS_RULES["mmt"].fixed
    assert [K1_RULES[n].kept(p) for n in ("fixed", "size")] == [False, True]
    assert EPS_RULES["fixed"].fixed and K1_RULES["fixed"].fixed and not K1_RULES["size"].fixed
    rules = scale_rules(ClusterParams(eps_rule="mmt", k1_rule="size"))
    assert (rules["eps"], rules["k1"]) == (EPS_RULES["mmt"], K1_RULES["size"]) and list(rules) == ["k1", "eps"]
    given = scale_rules(ClusterParams(eps_rule="mmt", k1_rule="size"), given={"eps": 0.4, "k1": 12})
    assert (given["eps"], given["k1"]) == (EPS_RULES["fixed"], K1_RULES["fixed"])
    assert list(scale_rules(ClusterParams(method="kmeans", num_clusters=5))) == ["k1"]


# the rule's keys, the scale, the first round's value and the record of its choice, what the rule keeps (None: nothing)
@pytest.mark.parametrize("rule, scale, first, choice, kept", [
    pytest.param({"INCLR.CLUSTER.EPS_RULE": "mmt"}, "eps", 0.4321, None, 0.4321, id="eps_mmt"),
    pytest.param({}, "eps", 0.6, None, None, id="eps_fixed"),
    pytest.param({"INCLR.CLUSTER.EPS_RULE": "auto", "INCLR.CLUSTER.EPS_FREEZE": True}, "eps", 0.35, EPS_CHOICE, 0.35,
                 id="eps_auto_freeze"),
    pytest.param({"INCLR.CLUSTER.EPS_RULE": "auto", "INCLR.CLUSTER.EPS_FREEZE": False}, "eps", 0.35, EPS_CHOICE, None,
                 id="eps_auto"),
    pytest.param({"INCLR.CLUSTER.K1_RULE": "size"}, "k1", 9, K1_CHOICE, 9, id="k1_size"),
    pytest.param({"INCLR.CLUSTER.K1_RULE": "fixed"}, "k1", 30, K1_CHOICE, None, id="k1_fixed"),
])
def test_the_first_rounds_value_is_kept_across_a_resume(items, monkeypatch, tmp_path, rule, scale, first, choice, kept):
    """EPS_RULE mmt, auto with EPS_FREEZE and K1_RULE size: the first round's value goes into PseudoLabelState
    (checkpointed) and is the override of every later round, also after a resume; a later round does not replace
    it. The other rules keep nothing. A checkpoint written before the rule existed has no entry: nothing kept."""
    over = {"INCLR.CLUSTER.METHOD": "dbscan", **rule}
    hook = make_hook(items, **over)
    labels = [i % 3 for i in range(len(items))]
    round0 = payload(labels)
    if choice is not None:
        round0["record"][f"{scale}_choice"] = choice
    hook._apply(0, dict(round0, **{scale: first}))
    assert getattr(hook.state.scale, scale) == kept
    hook._apply(1, dict(payload(labels, epoch=1), **{scale: LATER[scale]}))
    assert getattr(hook.state.scale, scale) == kept
    assert overrides_passed_to_clustering(hook, items, monkeypatch).get(scale) == kept
    torch.save(hook.state.state_dict(), tmp_path / "state.pth")  # checkpoint round trip, then a fresh hook
    resumed = make_hook(items, **over)
    resumed.state.load_state_dict(torch.load(tmp_path / "state.pth", weights_only=True))
    assert getattr(resumed.state.scale, scale) == kept
    if choice is not None:
        assert resumed.state.history[0][f"{scale}_choice"] == choice
    assert overrides_passed_to_clustering(resumed, items, monkeypatch).get(scale) == kept
    old = hook.state.state_dict()
    del old[scale]  # a checkpoint written before EPS_RULE / K1_RULE existed
    resumed.state.load_state_dict(old)
    assert getattr(resumed.state.scale, scale) is None
