"""Paired tests against scipy/numpy, Holm and Bonferroni by hand, reproducibility verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from diffrec_jax.audit import stats
from diffrec_jax.errors import ConfigError


def _pairs(seed: int, n: int = 200):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 1, n)
    b = a + rng.normal(0.03, 0.1, n)
    a[rng.choice(n, 10, replace=False)] = np.nan  # users without truth
    b[rng.choice(n, 5, replace=False)] = np.nan
    return a, b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tests_match_scipy_on_the_paired_finite_users(seed):
    a, b = _pairs(seed)
    keep = np.isfinite(a) & np.isfinite(b)
    x, y = a[keep], b[keep]
    w = stats.wilcoxon(a, b)
    ref = scipy.stats.wilcoxon(x, y)
    assert w["p"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert w["statistic"] == pytest.approx(ref.statistic)
    assert w["n"] == int(np.count_nonzero(x - y))
    t = stats.ttest(a, b)
    d = x - y
    t_ref = d.mean() / (d.std(ddof=1) / math.sqrt(d.size))  # the paired t statistic, numpy
    p_ref = 2 * scipy.stats.t.sf(abs(t_ref), d.size - 1)
    assert t["statistic"] == pytest.approx(t_ref, rel=1e-10)
    assert t["p"] == pytest.approx(p_ref, rel=1e-8)
    assert t["n"] == d.size


def test_degenerate_differences():
    a = np.array([0.25, 0.5, np.nan, 1.0])  # + 0.5 is exact
    assert stats.wilcoxon(a, a) == {"statistic": 0.0, "p": 1.0, "n": 0}
    assert stats.ttest(a, a)["p"] == 1.0
    shifted = stats.ttest(a + 0.5, a)  # a constant non-zero difference
    assert shifted["p"] == 0.0 and shifted["statistic"] == math.inf
    with pytest.raises(ConfigError, match="one shape"):
        stats.wilcoxon(a, a[:3])


def test_holm_and_bonferroni_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> 0.06 (monotone)
    np.testing.assert_allclose(stats.holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(stats.bonferroni(p), [0.04, 0.16, 0.12, 0.02])
    np.testing.assert_allclose(stats.holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1
    out = stats.holm([0.01, np.nan, 0.04])  # NaN is not a hypothesis: m = 2
    np.testing.assert_allclose(out, [0.02, np.nan, 0.04])
    np.testing.assert_allclose(stats.correct([0.01, 0.02], "bonferroni"), [0.02, 0.04])
    with pytest.raises(ConfigError, match="holm"):
        stats.correct([0.1], "sidak")


def _holm_loop(p):
    """Holm's step-down procedure written as a loop (the textbook definition)."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    m, out, running = len(p), [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def test_holm_matches_the_textbook_loop_on_random_p_values():
    rng = np.random.default_rng(3)
    for _ in range(20):
        p = list(rng.uniform(0, 0.2, rng.integers(1, 12)))
        np.testing.assert_allclose(stats.holm(p), _holm_loop(p), rtol=1e-15)


def test_compare_corrects_per_test_over_the_metrics():
    a, b = _pairs(4)
    c, d = _pairs(5)
    out = stats.compare({"R": a, "N": c}, {"R": b, "N": d}, ["R", "N"], correction="holm")
    for test in stats.TESTS:
        raw = [out["metrics"][m][test]["p"] for m in ("R", "N")]
        adjusted = [out["metrics"][m][test]["p_adjusted"] for m in ("R", "N")]
        np.testing.assert_allclose(adjusted, stats.holm(raw))
        for m in ("R", "N"):
            assert out["metrics"][m][test]["significant"] == (
                out["metrics"][m][test]["p_adjusted"] < 0.05
            )
    r = out["metrics"]["R"]
    keep = np.isfinite(a) & np.isfinite(b)
    assert r["users"] == keep.sum()
    assert r["mean_a"] == pytest.approx(a[keep].mean())
    assert r["diff"] == pytest.approx(a[keep].mean() - b[keep].mean())
    assert r["a_better"] + r["b_better"] <= r["users"]
    with pytest.raises(ConfigError, match="per-user"):
        stats.compare({"R": a}, {"R": b}, ["N"])


def test_verdicts():
    runs = [0.10, 0.12, 0.11]  # mean 0.11, std 0.01
    v = stats.verdict(0.118, runs)
    assert v["mean"] == pytest.approx(0.11) and v["std"] == pytest.approx(0.01)
    assert v["reproduced"] is True and v["z"] == pytest.approx(0.8)
    assert v["cv"] == pytest.approx(0.01 / 0.11) and v["stable"] is False  # 9% > 5%
    assert stats.verdict(0.118, runs, stable_cv=0.1)["stable"] is True
    high = stats.verdict(0.13, runs)
    assert high["reproduced"] is False and "above" in high["text"]
    assert "below" in stats.verdict(0.05, runs)["text"]
    assert stats.verdict(0.11, [0.11, 0.11])["reproduced"] is True  # std 0: equality
    assert stats.verdict(0.1101, [0.11, 0.11])["reproduced"] is False
    one = stats.verdict(0.11, [0.11])
    assert one["reproduced"] is None and one["stable"] is None and ">= 2" in one["text"]
    with pytest.raises(ConfigError, match="positive"):
        stats.verdict(0.1, runs, stable_cv=0)
