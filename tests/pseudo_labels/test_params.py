"""Every INCLR.CLUSTER / INCLR.LGMR key reaches its ClusterParams field (inclr_fastreid/pseudo_labels/params.py
cluster_params_from_cfg), its default is the config's, and a bad value stops setup_cfg with an error that names the
key (inclr_fastreid/config.py). One row per key."""
import pytest

from inclr_fastreid.config import ConfigError, setup_cfg
from inclr_fastreid.pseudo_labels import cluster_params_from_cfg

C, L = "INCLR.CLUSTER.", "INCLR.LGMR."
GRID = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)  # EPS_GRID's default

# key, a value, the ClusterParams field it reaches and what that holds then, the field's default, other keys the
# value needs, other fields the value sets, and bad settings of the key: (overrides, the error text, a regex).
KEYS = [
    (C + "METHOD", "kmeans", "method", "kmeans", "dbscan", [C + "NUM_CLUSTERS", "500"], {"num_clusters": 500}, []),
    (C + "NUM_CLUSTERS", "500", "num_clusters", 500, 0, [C + "METHOD", "kmeans"], {},
     [([C + "METHOD", "kmeans"], "INCLR.CLUSTER.NUM_CLUSTERS")]),  # k-means without a K
    (C + "EPS", "0.45", "eps", 0.45, 0.6, [], {}, []),
    (C + "MIN_SAMPLES", "3", "min_samples", 3, 4, [], {}, []),
    (C + "K1", "21", "k1", 21, 30, [], {"k_search": 21}, []),  # max(K1, LGMR.K + 1): the kNN search serves both
    (C + "K2", "5", "k2", 5, 6, [], {}, []),
    (C + "MAX_DISTANCE", "0.8", "max_distance", 0.8, 0.9, [], {}, []),
    (C + "CAMERA_NORM", "True", "camera_norm", True, False, [], {}, []),
    (L + "ENABLED", "False", "lgmr_enabled", False, True, [], {}, []),
    (L + "K", "15", "lgmr_k", 15, 20, [], {}, []),
    (L + "MIN_AGREEMENT", "0.2", "min_agreement", 0.2, 0.0, [], {}, []),
    (L + "AGREEMENT", "mean", "agreement", "mean", "neighbour", [], {}, []),
    (C + "EPS_RULE", "mmt", "eps_rule", "mmt", "fixed", [], {},
     [([C + "EPS_RULE", "auto-ish"], "INCLR.CLUSTER.EPS_RULE")]),
    (C + "RHO", "0.002", "rho", 0.002, 1.6e-3, [C + "EPS_RULE", "mmt"], {"eps_rule": "mmt"},
     [([C + "RHO", "0.0"], "INCLR.CLUSTER.RHO")]),
    (C + "EPS_GRID", "[0.3, 0.5]", "eps_grid", (0.3, 0.5), GRID, [C + "EPS_RULE", "auto"], {"eps_rule": "auto"},
     [([C + "EPS_RULE", "auto", C + "EPS_GRID", "[0.5, 0.95]"], "INCLR.CLUSTER.EPS_GRID.*MAX_DISTANCE"),
      ([C + "EPS_RULE", "auto", C + "EPS_GRID", "[]"], "INCLR.CLUSTER.EPS_GRID")]),
    (C + "EPS_FREEZE", "True", "eps_freeze", True, False, [C + "EPS_RULE", "auto"], {"eps_rule": "auto"}, []),
    (C + "AUTO_COVERAGE", "clustered", "auto_coverage", "clustered", "multi_camera", [], {},
     [([C + "AUTO_COVERAGE", "cameras"], "AUTO_COVERAGE 'cameras': use one of"),
      ([C + "AUTO_COVERAGE", "none"], "AUTO_COVERAGE 'none': removed .*docs/studies.md.*use one of")]),
    (C + "K1_RULE", "size", "k1_rule", "size", "fixed", [], {},
     [([C + "K1_RULE", "sized"], "INCLR.CLUSTER.K1_RULE 'sized'"),
      ([C + "K1_RULE", "size", C + "METHOD", "kmeans", C + "NUM_CLUSTERS", "10"], "K1_RULE size.*METHOD 'kmeans'")]),
    (C + "K1_PER_SIZE", "2.0", "k1_per_size", 2.0, 1.5, [C + "K1_RULE", "size"], {"k1_rule": "size"},
     [([C + "K1_RULE", "size", C + "K1_PER_SIZE", "0"], "INCLR.CLUSTER.K1_PER_SIZE")]),
    (C + "K1_MIN", "12", "k1_min", 12, 10, [C + "K1_RULE", "size"], {},
     [([C + "K1_RULE", "size", C + "K1_MIN", "40"], "INCLR.CLUSTER.K1_MIN=40.*K1=30")]),  # above K1
]


@pytest.mark.parametrize("key, value, field, held, default, needs, also, bad", KEYS, ids=[row[0] for row in KEYS])
def test_cluster_key_reaches_its_params_field_and_a_bad_value_names_the_key(key, value, field, held, default, needs,
                                                                           also, bad):
    assert getattr(cluster_params_from_cfg(setup_cfg("", [])), field) == default  # unchanged unless a config says so
    cfg = setup_cfg("", [key, value, *needs])
    p = cluster_params_from_cfg(cfg)
    assert getattr(p, field) == held
    for other, expected in also.items():
        assert getattr(p, other) == expected, other
    if not needs:  # a keyword argument replaces what the key set (the default stands alone: no other key needed)
        assert getattr(cluster_params_from_cfg(cfg, **{field: default}), field) == default
    for overrides, message in bad:
        with pytest.raises(ConfigError, match=message):
            setup_cfg("", overrides)
