"""The clustering scale kept for the run (inclr_fastreid/pseudo_labels/scale.py FrozenScale, checkpointed in
engine/state.py PseudoLabelState), driven through the PseudoLabelHook on a fake trainer (tests.helpers.hook)."""
import pytest
import torch

from tests.helpers.hook import make_hook, overrides_passed_to_clustering, payload

EPS_CHOICE = {"eps": 0.35, "criterion": "cross_space_agreement", "grid": [0.3, 0.35], "scores": [0.5, 0.9],
              "select": "max"}
K1_CHOICE = {"rule": "size", "k1_max": 30, "median_size": 6.0, "k1": 9}
LATER = {"eps": 0.55, "k1": 14}  # what a later round chooses


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
