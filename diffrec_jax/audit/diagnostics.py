r"""Conceptual-mismatch diagnostics of a trained diffusion recommender (DiffRec family).

A diffusion model here is any registered model whose registry entry declares
``diffusion="gaussian"`` (DiffRec's Gaussian diffusion scored through the hyperparameters
:data:`DIFFUSION_HPARAMS`: DiffRec, T-DiffRec, L-DiffRec, LT-DiffRec, and any model a user
registers with that declaration). For its chosen configuration the audit reports:

- the effective noise level :math:`\sqrt{1 - \bar\alpha_T}` of the forward process after all T
  steps (the standard deviation of the noise relative to a unit signal; 0.0059 for the
  released ML-1M DiffRec), and the noise actually added before inference,
  :math:`\sqrt{1 - \bar\alpha_{k}}` after k = ``sampling_steps`` steps (0 when k = 0);
- test metrics of the same trained parameters with the reverse process varied through the
  model's own scoring options (:func:`variants`):

  * ``configured``: as tuned;
  * ``single_call``: one denoiser call on the clean row (``reverse="corrected"``,
    ``sampling_steps=0``): if it matches ``configured``, the T-step "generation" adds nothing;
  * ``sampling_noise``: the configured process with noise added at every reverse step;
  * ``steps_k``: k forward noising steps then k reverse steps (``reverse="corrected"``,
    ``sampling_steps=k``) for k = fractions of T (fewer and more steps than configured);

- the overlap of the top-K lists between sampling seeds (:func:`jaccard`, averaged over users
  and seed pairs) for every stochastic variant: 1 means the "generative" sampling always
  recommends the same items. The Jaccard against ``configured`` is reported for every variant.

Everything here is about scoring: the parameters are trained once (the audit's first seed) and
only the scoring hyperparameters change, so no variant retrains.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from diffrec_jax.diffusion import gaussian, schedules
from diffrec_jax.errors import ConfigError
from diffrec_jax.models import ModelSpec

DIFFUSION_HPARAMS = (
    "steps",
    "noise_schedule",
    "noise_scale",
    "noise_min",
    "noise_max",
    "sampling_steps",
    "sampling_noise",
    "reverse",
    "sampling_seed",
)
SCORING_HPARAMS = ("sampling_steps", "sampling_noise", "reverse", "sampling_seed")
DEFAULT_STEP_FRACTIONS = (0.25, 0.5, 1.0)


def is_diffusion(spec: ModelSpec) -> bool:
    """Whether the diagnostics here apply to the registered model `spec` (its entry declares
    ``diffusion="gaussian"``; its hyperparameters must then include :data:`DIFFUSION_HPARAMS`).

    Raises:
      ConfigError: the entry declares the family but lacks one of its hyperparameters.
    """
    if spec.diffusion != "gaussian":
        return False
    missing = [name for name in DIFFUSION_HPARAMS if name not in spec.defaults]
    if missing:
        raise ConfigError(
            f"model {spec.name!r} declares diffusion='gaussian' but has no hyperparameter(s) "
            f"{missing}; the diagnostics vary them"
        )
    return True


def alphas_cumprod(hparams: Mapping[str, Any]) -> np.ndarray:
    """[T] float64 :math:`\\bar\\alpha_t` of the configuration's schedule."""
    betas = schedules.get_schedule(
        hparams["noise_schedule"],
        int(hparams["steps"]),
        noise_scale=hparams["noise_scale"],
        noise_min=hparams["noise_min"],
        noise_max=hparams["noise_max"],
        beta_fixed=bool(hparams.get("beta_fixed", False)),
    )
    return np.cumprod(1.0 - np.asarray(betas, np.float64))


def noise_level(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The noise of the configuration.

    Returns:
      {"steps" T, "alpha_bar_T", "noise_T" = sqrt(1 - alpha_bar_T), "signal_T" =
      sqrt(alpha_bar_T), "snr_T" = alpha_bar_T / (1 - alpha_bar_T), "sampling_steps" k,
      "noise_at_inference" = sqrt(1 - alpha_bar_k) (0 for k = 0), "denoiser_calls" per user}.
    """
    abar = alphas_cumprod(hparams)
    k = int(hparams["sampling_steps"])
    calls = gaussian.reverse_timesteps(int(hparams["steps"]), k, hparams["reverse"]).size
    return {
        "steps": int(abar.size),
        "alpha_bar_T": float(abar[-1]),
        "noise_T": float(math.sqrt(1.0 - abar[-1])),
        "signal_T": float(math.sqrt(abar[-1])),
        "snr_T": float(abar[-1] / (1.0 - abar[-1])),
        "sampling_steps": k,
        "noise_at_inference": 0.0 if k == 0 else float(math.sqrt(1.0 - abar[k - 1])),
        "denoiser_calls": int(calls),
    }


def _scoring(hparams: Mapping[str, Any], overrides: Mapping[str, Any]) -> tuple:
    merged = {**hparams, **overrides}
    return tuple(merged[k] for k in SCORING_HPARAMS if k != "sampling_seed")


def variants(
    hparams: Mapping[str, Any], step_fractions: Sequence[float] = DEFAULT_STEP_FRACTIONS
) -> list[dict[str, Any]]:
    """The scoring variants of a configuration (see the module docstring).

    Args:
      hparams: the chosen hyperparameters (with the diffusion ones).
      step_fractions: k = max(1, round(fraction x T)) for the ``steps_k`` variants.

    Returns:
      [{"name", "label", "overrides" (scoring hparams changed), "stochastic",
      "denoiser_calls", "noise_at_inference"}], ``configured`` first; variants scoring
      exactly like an earlier one are left out.

    Raises:
      ConfigError: a fraction outside (0, 1].
    """
    steps = int(hparams["steps"])
    for f in step_fractions:
        if not 0 < f <= 1:
            raise ConfigError(f"diagnostic step fraction {f!r}; expected a value in (0, 1]")
    candidates: list[tuple[str, str, dict[str, Any]]] = [
        ("configured", "as configured", {}),
        (
            "single_call",
            "single denoiser call",
            {"reverse": "corrected", "sampling_steps": 0, "sampling_noise": False},
        ),
        ("sampling_noise", "sampling noise on", {"sampling_noise": True}),
    ]
    for k in sorted({max(1, round(f * steps)) for f in step_fractions}):
        candidates.append(
            (
                f"steps_{k}",
                f"{k} noising + {k} reverse steps",
                {"reverse": "corrected", "sampling_steps": k, "sampling_noise": False},
            )
        )
    out, seen = [], set()
    for name, label, overrides in candidates:
        key = _scoring(hparams, overrides)
        if key in seen:
            continue
        seen.add(key)
        merged = {**hparams, **overrides}
        level = noise_level(merged)
        out.append(
            {
                "name": name,
                "label": label,
                "overrides": overrides,
                "stochastic": bool(merged["sampling_noise"]) or int(merged["sampling_steps"]) > 0,
                "denoiser_calls": level["denoiser_calls"],
                "noise_at_inference": level["noise_at_inference"],
            }
        )
    return out


def jaccard(top_a: np.ndarray, top_b: np.ndarray, k: int) -> np.ndarray:
    """Per-user Jaccard overlap of the top-`k` sets of two recommendation lists.

    Args:
      top_a, top_b: [n_users, >= k] int item ids, best first; -1 marks an empty position.
      k: the cutoff.

    Returns:
      [n_users] float64 |A & B| / |A | B| of the valid items among the first k; NaN for users
      with no valid item in either list.
    """
    a, b = np.asarray(top_a)[:, :k], np.asarray(top_b)[:, :k]
    if a.shape != b.shape:
        raise ConfigError(f"top-k lists of different shapes {a.shape} and {b.shape}")
    out = np.full(a.shape[0], np.nan)
    for u in range(a.shape[0]):
        sa = {int(i) for i in a[u] if i >= 0}
        sb = {int(i) for i in b[u] if i >= 0}
        union = len(sa | sb)
        if union:
            out[u] = len(sa & sb) / union
    return out


def mean_jaccard(tops: Sequence[np.ndarray], k: int) -> float | None:
    """Mean over user and over every pair of lists in `tops` of :func:`jaccard` (None for
    fewer than two lists or no user with a list)."""
    if len(tops) < 2:
        return None
    values = [np.nanmean(jaccard(a, b, k)) for a, b in itertools.combinations(tops, 2)]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else None


__all__ = [
    "DEFAULT_STEP_FRACTIONS",
    "DIFFUSION_HPARAMS",
    "SCORING_HPARAMS",
    "alphas_cumprod",
    "is_diffusion",
    "jaccard",
    "mean_jaccard",
    "noise_level",
    "variants",
]
