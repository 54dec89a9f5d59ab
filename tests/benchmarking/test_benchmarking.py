"""inclr_fastreid.benchmarking: the synthetic clustered features and the memory readings the benchmark
scripts share (its eps-rule comparison is tested in tests/pseudo_labels/test_eps_rule.py)."""
import math
import mmap

import numpy as np
import pytest

from inclr_fastreid.benchmarking.features import synthetic_camids, synthetic_features, synthetic_identities
from inclr_fastreid.benchmarking.memory import reset_peak_rss, status_mib


def _mean_cos(x, mask):
    sims = x @ x.T
    np.fill_diagonal(mask, False)
    return float(sims[mask].mean())


def test_synthetic_features_are_seeded_unit_rows_with_the_identities_and_cameras_they_name():
    n, dim = 1700, 64  # 100 identities
    a = synthetic_features(n, dim, 0, seed=3)
    assert a.shape == (n, dim) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(a, synthetic_features(n, dim, 0, seed=3))
    assert not np.array_equal(a, synthetic_features(n, dim, 0, seed=4))
    part = synthetic_features(n, dim, 1, seed=3)
    assert not np.allclose(part, a)  # a part space: own centres and noise
    ids, cams = synthetic_identities(n, 3), synthetic_camids(n, 3)
    assert ids.shape == cams.shape == (n,) and ids.max() < n // 17 and set(np.unique(cams)) <= set(range(6))
    same_id = ids[:, None] == ids[None, :]
    same_cam = cams[:, None] == cams[None, :]
    for x in (a, part):  # every space: rows of one identity closer than others, one camera's offset shared
        assert _mean_cos(x, same_id.copy()) > _mean_cos(x, ~same_id) + 0.05
        assert _mean_cos(x, ~same_id & same_cam) > _mean_cos(x, ~same_id & ~same_cam) + 0.005


def _touch_fresh_pages(size: int) -> mmap.mmap:
    """``size`` bytes of new anonymous memory, every page written: RSS grows by ``size`` (malloc could hand
    back pages the process already holds)."""
    buf = mmap.mmap(-1, size)
    np.frombuffer(buf, dtype=np.uint8)[:] = 1
    return buf


def test_status_mib_reads_proc_and_reset_peak_rss_lowers_the_high_water_mark():
    rss = status_mib("VmRSS")
    assert 0 < rss < math.inf and math.isnan(status_mib("NoSuchField"))
    _touch_fresh_pages(64 * 2 ** 20).close()  # a peak above today's RSS
    if not reset_peak_rss():
        pytest.skip("this kernel refuses /proc/self/clear_refs")
    after_reset = status_mib("VmHWM")
    assert after_reset <= status_mib("VmRSS") + 1.0  # the mark starts again at the current RSS
    buf = _touch_fresh_pages(64 * 2 ** 20)
    assert status_mib("VmHWM") >= after_reset + 60 and status_mib("VmRSS") >= after_reset + 60
    buf.close()


def test_eps_rule_benchmark_times_a_round_with_the_cameras_auto_needs(capsys):
    """``benchmarks/benchmark_eps_rule.py --overhead``: one row per size, fixed and auto timed on the synthetic
    features with their cameras (the default AUTO_COVERAGE multi_camera refuses to score without them)."""
    from inclr_fastreid.pseudo_labels.eps_rule import DEFAULT_EPS_GRID

    from tests.helpers.scripts import load_script

    load_script("benchmarks/benchmark_eps_rule.py").time_rounds([300], 32, repeats=1)
    row = [c.strip() for c in capsys.readouterr().out.splitlines()[-1].strip("|").split("|")]
    assert len(row) == 8 and row[:2] == ["300", "32"] and row[5].endswith("%")
    assert float(row[6]) in [round(e, 2) for e in DEFAULT_EPS_GRID] and float(row[7]) > 0  # eps auto; nnz per row
