r"""Paired significance tests per user, multiple-comparison corrections, reproducibility verdicts.

Significance. Two models evaluated on the same users give paired per-user values (e.g. each
user's Recall@20; the audit first averages every user's value over the training seeds). Only
users with a finite value for both models enter (users without test items have NaN). Two tests
of H0 "no difference" (two-sided):

- Wilcoxon signed-rank (``scipy.stats.wilcoxon``, ``zero_method="wilcox"``: users with equal
  values are dropped, the usual choice; the normal approximation with continuity correction
  when there are many users, as scipy decides);
- paired t-test (``scipy.stats.ttest_rel``).

If every difference is zero there is nothing to test: p = 1 (scipy would return NaN or warn).

Corrections over a family of m p-values (:func:`correct`; NaN p-values stay NaN and do not
count in m):

- Holm (default; controls the family-wise error rate, uniformly more powerful than
  Bonferroni): with :math:`p_{(1)} \le \dots \le p_{(m)}`,
  :math:`\tilde p_{(i)} = \max_{j \le i} \min(1, (m - j + 1)\, p_{(j)})`;
- Bonferroni: :math:`\tilde p_i = \min(1, m\, p_i)`.

The audit's family is one test kind over the compared metrics (e.g. the Wilcoxon p-values of
Recall@10, Recall@20, NDCG@10 and NDCG@20): the two tests are two analyses of the same
hypotheses, not more hypotheses.

Reproducibility (:func:`verdict`), for a reported number :math:`r` and the re-runs' values
:math:`v_1..v_S` with mean :math:`\mu` and sample standard deviation :math:`\sigma` (ddof = 1):

- reproduced: :math:`|r - \mu| \le \sigma` (the criterion of Benigni, Ferrari Dacrema and
  Jannach, "Diffusion Recommender Models and the Illusion of Progress"); it needs S >= 2;
- stable: the coefficient of variation :math:`\sigma / \mu` is below a threshold, 0.05 by
  default (seeds move the metric by less than 5% of its value). The two go together: a model
  whose re-runs scatter widely "reproduces" almost any number within one standard deviation,
  so an unstable re-run makes a "reproduced" verdict weak.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.stats

from diffrec_jax.errors import ConfigError

CORRECTIONS = ("holm", "bonferroni")
TESTS = ("wilcoxon", "ttest")
DEFAULT_STABLE_CV = 0.05


def paired_values(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The entries of `a` and `b` ([n] each) where both are finite, as float64.

    Raises:
      ConfigError: the shapes differ.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ConfigError(
            f"paired values need two [n] arrays of one shape, got {a.shape}, {b.shape}"
        )
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def wilcoxon(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Two-sided Wilcoxon signed-rank test of the paired finite entries of `a` and `b` ([n]).

    Returns:
      {"statistic", "p", "n"}; n counts the users with a non-zero difference.
    """
    x, y = paired_values(a, b)
    d = x - y
    n = int(np.count_nonzero(d))
    if n == 0:
        return {"statistic": 0.0, "p": 1.0, "n": 0}
    res = scipy.stats.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")
    return {"statistic": float(res.statistic), "p": float(res.pvalue), "n": n}


def ttest(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Two-sided paired t-test of the paired finite entries of `a` and `b` ([n]).

    Returns:
      {"statistic", "p", "n"}; p = 1 when every difference is zero; p = 0 (statistic +-inf)
      when the differences are a non-zero constant.
    """
    x, y = paired_values(a, b)
    d = x - y
    n = int(d.size)
    if n < 2 or not np.any(d):
        return {"statistic": 0.0, "p": 1.0 if n else math.nan, "n": n}
    if np.all(d == d[0]):
        return {"statistic": math.copysign(math.inf, d[0]), "p": 0.0, "n": n}
    res = scipy.stats.ttest_rel(x, y)
    return {"statistic": float(res.statistic), "p": float(res.pvalue), "n": n}


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values (same order as `p`; NaN entries stay NaN and are not counted)."""
    values = np.asarray(p, np.float64)
    out = np.full(values.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(values))
    m = idx.size
    if m == 0:
        return out
    order = idx[np.argsort(values[idx], kind="stable")]
    scaled = (m - np.arange(m)) * values[order]
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out


def bonferroni(p: Sequence[float]) -> np.ndarray:
    """Bonferroni-adjusted p-values min(1, m p) (NaN entries stay NaN and are not counted)."""
    values = np.asarray(p, np.float64)
    m = int(np.isfinite(values).sum())
    return np.minimum(values * m, 1.0)


def correct(p: Sequence[float], method: str = "holm") -> np.ndarray:
    """Adjusted p-values of one family with `method` ("holm" or "bonferroni").

    Raises:
      ConfigError: an unknown method.
    """
    if method not in CORRECTIONS:
        raise ConfigError(f"correction={method!r}; expected one of {CORRECTIONS}")
    return holm(p) if method == "holm" else bonferroni(p)


def compare(
    a: Mapping[str, np.ndarray],
    b: Mapping[str, np.ndarray],
    metrics: Sequence[str],
    *,
    correction: str = "holm",
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Paired tests of model A against model B on every metric, corrected per test kind.

    Args:
      a, b: {metric: [n_users] per-user values} of the two models (NaN for users without
        truth), e.g. the per-user means over training seeds.
      metrics: the family of metrics compared (each must be in both).
      correction: "holm" or "bonferroni", applied over `metrics` separately for each test.
      alpha: significance level of the verdicts.

    Returns:
      {"correction", "alpha", "metrics": {metric: {"mean_a", "mean_b", "diff", "relative",
      "users", "a_better", "b_better", "wilcoxon": {statistic, p, n, p_adjusted,
      significant}, "ttest": {...}}}}. mean_a/mean_b are means over the paired users, diff =
      mean_a - mean_b, relative = diff / mean_b (None when mean_b is 0).
    """
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha={alpha!r}; expected a level in (0, 1)")
    correct([], correction)  # validates the name
    out: dict[str, Any] = {}
    for metric in metrics:
        if metric not in a or metric not in b:
            raise ConfigError(f"metric {metric!r} has no per-user values for both models")
        x, y = paired_values(a[metric], b[metric])
        mean_a = float(x.mean()) if x.size else math.nan
        mean_b = float(y.mean()) if y.size else math.nan
        out[metric] = {
            "mean_a": mean_a,
            "mean_b": mean_b,
            "diff": mean_a - mean_b,
            "relative": (mean_a - mean_b) / mean_b if mean_b else None,
            "users": int(x.size),
            "a_better": int(np.sum(x > y)),
            "b_better": int(np.sum(x < y)),
            "wilcoxon": wilcoxon(a[metric], b[metric]),
            "ttest": ttest(a[metric], b[metric]),
        }
    for test in TESTS:
        adjusted = correct([out[m][test]["p"] for m in metrics], correction)
        for metric, p_adj in zip(metrics, adjusted, strict=True):
            out[metric][test]["p_adjusted"] = float(p_adj)
            out[metric][test]["significant"] = bool(p_adj < alpha) if np.isfinite(p_adj) else None
    return {"correction": correction, "alpha": alpha, "metrics": out}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value) of `values`."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def verdict(
    reported: float, reruns: Sequence[float], *, stable_cv: float = DEFAULT_STABLE_CV
) -> dict[str, Any]:
    """The reproducibility verdict of one reported number against its re-runs.

    Args:
      reported: the number the paper reports.
      reruns: the re-runs' values (one per training seed).
      stable_cv: re-runs are stable when std / mean < this.

    Returns:
      {"reported", "mean", "std", "runs", "delta" (reported - mean), "z" (delta / std, None
      when std is 0), "reproduced" (|delta| <= std; None with fewer than 2 runs), "cv",
      "stable" (cv < stable_cv; None with fewer than 2 runs), "text"}.
    """
    if not stable_cv > 0:
        raise ConfigError(f"stable_cv={stable_cv!r}; expected a positive threshold")
    mean, std = mean_std(reruns)
    n = len(reruns)
    delta = float(reported) - mean
    enough = n >= 2
    reproduced = bool(abs(delta) <= std) if enough else None
    cv = std / abs(mean) if enough and mean else None
    stable = bool(cv < stable_cv) if cv is not None else None
    if not enough:
        text = "needs >= 2 re-runs"
    elif reproduced:
        text = "reproduced"
    else:
        text = f"not reproduced (reported {'above' if delta > 0 else 'below'} mean +- std)"
    return {
        "reported": float(reported),
        "mean": mean,
        "std": std,
        "runs": n,
        "delta": delta,
        "z": delta / std if enough and std > 0 else None,
        "reproduced": reproduced,
        "cv": cv,
        "stable": stable,
        "text": text,
    }


__all__ = [
    "CORRECTIONS",
    "DEFAULT_STABLE_CV",
    "TESTS",
    "bonferroni",
    "compare",
    "correct",
    "holm",
    "mean_std",
    "paired_values",
    "ttest",
    "verdict",
    "wilcoxon",
]
