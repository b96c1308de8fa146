"""benchmarks/loo_axes.py (the leave-one-out diagnosis of docs/results.md): its power
allocation against a hand computation, and its transmitter variants on real class-MAP
decisions of a synthetic two-class world."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest


def bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "loo_axes.py"
    spec = importlib.util.spec_from_file_location("loo_axes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_water_filling_equals_a_hand_computation():
    wf = bench().water_filling
    # p_i = sqrt(lambda_i / nu) - 1 with lambda = (4, 1), noise 1: total 4 -> nu = 1/4,
    # p = (3, 1); total 1 -> nu = 1, p = (1, 0): the weak axis gets nothing
    np.testing.assert_allclose(wf([4.0, 1.0], 1.0, 4.0), [3.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(wf([4.0, 1.0], 1.0, 1.0), [1.0, 0.0], atol=1e-6)


def test_variants_decide_classes_of_a_synthetic_world():
    """Two classes apart along the pool's first axis: every variant's class-MAP decision is
    right without noise; repetition sends the first k/2 axes twice; water-filling at -10 dB
    leaves the weakest axes without power."""
    b = bench()
    rng = np.random.default_rng(0)
    scales = np.array([3.0, 2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.02])
    pool = rng.normal(size=(400, 8)) * scales
    pool_axes = b.principal_axes(pool)

    def world(n):
        lab = np.repeat([0, 1], n)
        return rng.normal(size=(2 * n, 8)) * scales * 0.3 + np.where(lab[:, None] == 0, -3.0,
                                                                      3.0) * np.eye(8)[0], lab
    kb, kb_lab = world(20)
    sent, sent_lab = world(10)
    for variant in b.VARIANTS:
        assert b.accuracy(variant, 4, pool_axes, kb, kb_lab, sent, sent_lab, None, 0,
                          2.0) == 1.0, variant
    _, rep = b.encoder("pool rep", 4, pool_axes, None, 0.0)
    np.testing.assert_allclose(rep[:2], rep[2:])
    _, wf = b.encoder("pool wf", 4, pool_axes, None, -10.0)
    assert np.all(wf[-1] == 0) and np.any(wf[0] != 0)
    with pytest.raises(ValueError, match="16 principal axes"):
        b.encoder("pool e=1", 16, pool_axes, None, 0.0)   # more values than axes


def test_within_axes_ignore_what_tells_the_data_sets_apart():
    """Two pool data sets far apart along x, each varying along y only: the plain first axis
    is x (the offset between them), the within-data-set first axis is y, with the variance of
    y within the groups; the mean is the overall one."""
    b = bench()
    y = np.array([-1.0, 1.0, -1.0, 1.0])
    feats = np.stack([np.array([-10.0, -10.0, 10.0, 10.0]), y], axis=1)
    groups = ["a", "a", "b", "b"]
    assert abs(b.principal_axes(feats)[1][0][0]) == pytest.approx(1.0)
    mean, axes, lam = b.within_axes(feats, groups)
    np.testing.assert_allclose(mean, [0.0, 0.0])
    np.testing.assert_allclose(np.abs(axes[0]), [0.0, 1.0], atol=1e-12)
    assert lam[0] == pytest.approx(4.0 / 3.0) and lam[1] == pytest.approx(0.0, abs=1e-12)
