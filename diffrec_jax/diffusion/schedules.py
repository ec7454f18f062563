r"""Noise (beta) schedules of the diffusion recommenders, as float64 numpy arrays.

Every schedule is a pure function that validates its arguments once and returns the betas
:math:`\beta_t`, ``[T]`` float64, of a discrete diffusion with :math:`T` steps (index
:math:`t = 0 .. T-1`). Every returned beta lies in the open interval (0, 1); anything else raises
:class:`~diffrec_jax.errors.ConfigError` naming the offending value.

DiffRec (Wang et al., SIGIR 2023) schedules, scaled by ``noise_scale`` :math:`s`:

- :func:`linear`: :math:`\beta = \mathrm{linspace}(s\,n_{min}, s\,n_{max}, T)`.
- :func:`linear_var` (``"linear-var"``, every released DiffRec config): the same linspace is
  :math:`v_t = 1 - \bar\alpha_t`; :math:`\beta_0 = v_0`,
  :math:`\beta_t = \min(1 - (1 - v_t)/(1 - v_{t-1}), 0.999)`. Requires :math:`s\,n_{max} < 1`
  (the original silently caps the meaningless betas of :math:`1 - \bar\alpha \ge 1` at 0.999).
- :func:`cosine`: :math:`\beta_t = \min(1 - \bar\alpha((t+1)/T)/\bar\alpha(t/T), 0.999)` with
  :math:`\bar\alpha(u) = \cos^2(\frac{u + 0.008}{1.008}\frac{\pi}{2})` (scale ignored).
- :func:`binomial`: :math:`\beta_t = 1/(T - t + 1)` (scale ignored).

DiffuRec / ADRec schedules (``get_named_beta_schedule`` of the Diffusion-LM / DiffuRec code):

- :func:`trunc_lin`: linspace from :math:`\frac{1000}{T}10^{-4} + 0.01` to
  :math:`\frac{1000}{T}0.02 + 0.01` (end replaced by :math:`\frac{1000}{T}10^{-3} + 0.01` when
  above 1).
- :func:`sqrt`: the :func:`cosine` discretisation of :math:`\bar\alpha(u) = 1 - \sqrt{u + 10^{-4}}`.
- :func:`trunc_cos`: :math:`\beta_0 = \min(1 - \bar\alpha(0), 0.999)`, then
  :math:`\beta_{i+1} = \min(1 - \bar\alpha(\frac{i+1}{T})/\bar\alpha(\frac{i}{T}), 0.999)` for
  :math:`i = 0 .. T-2`, with :math:`\bar\alpha(u) = \cos^2(\frac{u + 0.1}{1.1}\frac{\pi}{2})`.

DreamRec schedules (its ``exp_beta_schedule`` and ``cosine_beta_schedule``; its ``linear`` and
``sqrt`` are :func:`linear` with scale 1 and :func:`sqrt`):

- :func:`exp`: :math:`\beta_i = 1 - \exp(-\frac{b_{min}}{T} - x_i\frac{b_{max} - b_{min}}{2T^2})`
  with :math:`x = \mathrm{linspace}(1, 2T + 1, T)`, :math:`b_{min} = 0.1, b_{max} = 10`.
- :func:`cosine` with ``min_beta=1e-4, max_beta=0.9999`` (DreamRec clips to [1e-4, 0.9999]).

:func:`get_schedule` dispatches on the names the original code of DiffRec, DiffuRec and ADRec
uses and applies DiffRec's ``beta_fixed`` (:math:`\beta_0 := 10^{-5}`, before the range check,
as the original does).

References:
  Wang et al., "Diffusion Recommender Model", SIGIR 2023.
  Li et al., "DiffuRec: A Diffusion Model for Sequential Recommendation", TOIS 2023.
  Nichol & Dhariwal, "Improved Denoising Diffusion Probabilistic Models", ICML 2021 (cosine).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from diffrec_jax.errors import ConfigError

MAX_BETA = 0.999
# DiffRec's beta_fixed: "the variance of the first step is fixed to a small constant".
FIXED_BETA_0 = 1e-5


def _check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise ConfigError(f"diffusion needs an integer number of steps >= 1, got {steps=}")
    return int(steps)


def _check_noise(noise_scale: float, noise_min: float, noise_max: float) -> None:
    if not noise_scale >= 0:  # also rejects NaN
        raise ConfigError(f"noise_scale must be >= 0, got {noise_scale=}")
    if not noise_min <= noise_max:
        raise ConfigError(f"noise_min must be <= noise_max, got {noise_min=}, {noise_max=}")


def check_betas(betas: np.ndarray, name: str = "betas") -> np.ndarray:
    """Returns `betas` as [T] float64 after checking every value lies in (0, 1).

    Raises:
      ConfigError: not one-dimensional, empty, or a value outside (0, 1) (the message gives the
        first offending index and value).
    """
    betas = np.asarray(betas, np.float64)
    if betas.ndim != 1 or betas.size == 0:
        raise ConfigError(f"{name} must be a non-empty 1-D array, got shape {betas.shape}")
    bad = ~((betas > 0) & (betas < 1))  # NaN counts as bad
    if bad.any():
        i = int(np.argmax(bad))
        raise ConfigError(
            f"{name} out of range: beta[{i}]={float(betas[i])!r} is not in (0, 1) "
            f"({int(bad.sum())} of {betas.size} values bad); check noise_scale/noise_min/noise_max"
        )
    return betas


def _betas_for_alpha_bar(
    steps: int, alpha_bar: Callable[[float], float], max_beta: float = MAX_BETA
) -> np.ndarray:
    u = np.arange(steps + 1, dtype=np.float64) / steps
    abar = np.array([alpha_bar(float(x)) for x in u], np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.minimum(1.0 - abar[1:] / abar[:-1], max_beta)


def _cosine_alpha_bar(u: float) -> float:
    return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2


def _sqrt_alpha_bar(u: float) -> float:
    return 1.0 - math.sqrt(u + 0.0001)


def _trunc_cos_alpha_bar(u: float) -> float:
    return math.cos((u + 0.1) / 1.1 * math.pi / 2) ** 2


# Raw schedules: no range check (get_schedule checks after beta_fixed, like the original).


def _linear(steps, noise_scale, noise_min, noise_max):
    steps = _check_steps(steps)
    _check_noise(noise_scale, noise_min, noise_max)
    return np.linspace(noise_scale * noise_min, noise_scale * noise_max, steps, dtype=np.float64)


def _linear_var(steps, noise_scale, noise_min, noise_max, max_beta=MAX_BETA):
    variance = _linear(steps, noise_scale, noise_min, noise_max)
    if not noise_scale * noise_max < 1:
        # 1 - alpha_bar >= 1 is meaningless; the original silently caps the betas at 0.999.
        raise ConfigError(
            f"linear-var needs noise_scale * noise_max < 1 (it is 1 - alpha_bar), "
            f"got {noise_scale=}, {noise_max=}"
        )
    alpha_bar = 1.0 - variance
    with np.errstate(divide="ignore", invalid="ignore"):
        rest = np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], max_beta)
    return np.concatenate([1.0 - alpha_bar[:1], rest])  # 1 - (1 - v_0), as the original


def _cosine(steps, max_beta=MAX_BETA, min_beta=0.0):
    return np.maximum(
        _betas_for_alpha_bar(_check_steps(steps), _cosine_alpha_bar, max_beta), min_beta
    )


def _binomial(steps):
    steps = _check_steps(steps)
    return 1.0 / (steps - np.arange(steps, dtype=np.float64) + 1.0)


def _exp(steps, beta_min=0.1, beta_max=10.0):
    steps = _check_steps(steps)
    x = np.linspace(1, 2 * steps + 1, steps, dtype=np.float64)
    return 1.0 - np.exp(-beta_min / steps - x * 0.5 * (beta_max - beta_min) / steps**2)


def _trunc_lin(steps):
    steps = _check_steps(steps)
    scale = 1000 / steps
    beta_start = scale * 0.0001 + 0.01
    beta_end = scale * 0.02 + 0.01
    if beta_end > 1:
        beta_end = scale * 0.001 + 0.01
    return np.linspace(beta_start, beta_end, steps, dtype=np.float64)


def _sqrt(steps, max_beta=MAX_BETA):
    return _betas_for_alpha_bar(_check_steps(steps), _sqrt_alpha_bar, max_beta)


def _trunc_cos(steps, max_beta=MAX_BETA):
    steps = _check_steps(steps)
    first = min(1.0 - _trunc_cos_alpha_bar(0.0), max_beta)
    rest = _betas_for_alpha_bar(steps, _trunc_cos_alpha_bar, max_beta)[: steps - 1]
    return np.concatenate([[first], rest])


# Public schedules.


def linear(steps: int, noise_scale: float, noise_min: float, noise_max: float) -> np.ndarray:
    """DiffRec ``linear``: linspace(scale * noise_min, scale * noise_max, steps), [T] float64."""
    return check_betas(_linear(steps, noise_scale, noise_min, noise_max), "linear betas")


def linear_var(
    steps: int, noise_scale: float, noise_min: float, noise_max: float, max_beta: float = MAX_BETA
) -> np.ndarray:
    """DiffRec ``linear-var``: 1 - alpha_bar is linear; betas derived and capped, [T] float64."""
    return check_betas(
        _linear_var(steps, noise_scale, noise_min, noise_max, max_beta), "linear-var betas"
    )


def cosine(steps: int, max_beta: float = MAX_BETA, min_beta: float = 0.0) -> np.ndarray:
    """Cosine schedule (Nichol & Dhariwal), [T] float64, clipped to [min_beta, max_beta]
    (DiffRec: [0, 0.999]; DreamRec: [1e-4, 0.9999])."""
    return check_betas(_cosine(steps, max_beta, min_beta), "cosine betas")


def binomial(steps: int) -> np.ndarray:
    """Binomial schedule beta_t = 1 / (T - t + 1) (Sohl-Dickstein et al. 2015), [T] float64."""
    return check_betas(_binomial(steps), "binomial betas")


def exp(steps: int, beta_min: float = 0.1, beta_max: float = 10.0) -> np.ndarray:
    """DreamRec ``exp``: 1 - exp(-beta_min/T - x (beta_max - beta_min) / (2 T^2)) with
    x = linspace(1, 2T + 1, T), [T] float64."""
    return check_betas(_exp(steps, beta_min, beta_max), "exp betas")


def trunc_lin(steps: int) -> np.ndarray:
    """DiffuRec/ADRec ``trunc_lin``: linear betas shifted by 0.01, [T] float64."""
    return check_betas(_trunc_lin(steps), "trunc_lin betas")


def sqrt(steps: int, max_beta: float = MAX_BETA) -> np.ndarray:
    """Diffusion-LM ``sqrt``: alpha_bar(u) = 1 - sqrt(u + 1e-4), [T] float64."""
    return check_betas(_sqrt(steps, max_beta), "sqrt betas")


def trunc_cos(steps: int, max_beta: float = MAX_BETA) -> np.ndarray:
    """DiffuRec ``trunc_cos``: left-shifted cosine with offset 0.1, [T] float64."""
    return check_betas(_trunc_cos(steps, max_beta), "trunc_cos betas")


_SCALED = {"linear": _linear, "linear-var": _linear_var}
_UNSCALED = {
    "cosine": _cosine,
    "binomial": _binomial,
    "trunc_lin": _trunc_lin,
    "sqrt": _sqrt,
    "trunc_cos": _trunc_cos,
}
SCHEDULES = tuple(sorted([*_SCALED, *_UNSCALED]))


def get_schedule(
    name: str,
    steps: int,
    *,
    noise_scale: float | None = None,
    noise_min: float | None = None,
    noise_max: float | None = None,
    beta_fixed: bool = False,
) -> np.ndarray:
    """Betas of schedule `name` as the original code builds them, [T] float64.

    Args:
      name: one of :data:`SCHEDULES` ("linear", "linear-var" (or "linear_var"), "cosine",
        "binomial", "trunc_lin", "sqrt", "trunc_cos").
      steps: T >= 1.
      noise_scale, noise_min, noise_max: required by "linear" and "linear-var", ignored by the
        others (as in the original).
      beta_fixed: DiffRec's option: overwrite beta_0 with 1e-5 (before the range check).

    Raises:
      ConfigError: unknown name, missing or invalid noise arguments, steps < 1, or a beta
        outside (0, 1).
    """
    key = "linear-var" if name == "linear_var" else name
    if key in _SCALED:
        missing = [
            n
            for n, v in (
                ("noise_scale", noise_scale),
                ("noise_min", noise_min),
                ("noise_max", noise_max),
            )
            if v is None
        ]
        if missing:
            raise ConfigError(f"noise schedule {name!r} needs {missing}")
        betas = _SCALED[key](steps, noise_scale, noise_min, noise_max)
    elif key in _UNSCALED:
        betas = _UNSCALED[key](steps)
    else:
        raise ConfigError(f"unknown noise schedule {name!r}; expected one of {list(SCHEDULES)}")
    if beta_fixed:
        betas = betas.copy()
        betas[0] = FIXED_BETA_0
    return check_betas(betas, f"{name} betas")
