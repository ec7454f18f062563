"""Beta schedules against loop transcriptions of the original DiffRec / DiffuRec / DreamRec
code."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffrec_jax.diffusion import schedules
from diffrec_jax.errors import ConfigError

# --- Plain-Python transcriptions of the original code (float64) ---


def ref_betas_for_alpha_bar(steps, alpha_bar, max_beta=0.999):
    out = []
    for i in range(steps):
        t1, t2 = i / steps, (i + 1) / steps
        out.append(min(1 - alpha_bar(t2) / alpha_bar(t1), max_beta))
    return np.array(out)


def ref_betas_for_alpha_bar_left(steps, alpha_bar, max_beta=0.999):
    out = [min(1 - alpha_bar(0), max_beta)]
    for i in range(steps - 1):
        t1, t2 = i / steps, (i + 1) / steps
        out.append(min(1 - alpha_bar(t2) / alpha_bar(t1), max_beta))
    return np.array(out)


def ref_diffrec(name, steps, scale, nmin, nmax):
    if name in ("linear", "linear-var"):
        lin = np.linspace(scale * nmin, scale * nmax, steps, dtype=np.float64)
        if name == "linear":
            return lin
        alpha_bar = 1 - lin
        betas = [1 - alpha_bar[0]]
        for i in range(1, steps):
            betas.append(min(1 - alpha_bar[i] / alpha_bar[i - 1], 0.999))
        return np.array(betas)
    if name == "cosine":
        return ref_betas_for_alpha_bar(
            steps, lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        )
    if name == "binomial":
        return np.array([1 / (steps - t + 1) for t in range(steps)])
    raise AssertionError(name)


def ref_diffurec(name, steps):
    if name == "trunc_lin":
        scale = 1000 / steps
        start, end = scale * 0.0001 + 0.01, scale * 0.02 + 0.01
        if end > 1:
            end = scale * 0.001 + 0.01
        return np.linspace(start, end, steps, dtype=np.float64)
    if name == "sqrt":
        return ref_betas_for_alpha_bar(steps, lambda t: 1 - np.sqrt(t + 0.0001))
    if name == "trunc_cos":
        return ref_betas_for_alpha_bar_left(
            steps, lambda t: np.cos((t + 0.1) / 1.1 * np.pi / 2) ** 2
        )
    raise AssertionError(name)


def ref_dreamrec(name, steps):
    """DreamRec's exp_beta_schedule and cosine_beta_schedule (torch code, here in numpy)."""
    if name == "exp":
        beta_min, beta_max = 0.1, 10
        x = np.linspace(1, 2 * steps + 1, steps)
        return 1 - np.exp(-beta_min / steps - x * 0.5 * (beta_max - beta_min) / (steps * steps))
    if name == "cosine":
        x = np.linspace(0, steps, steps + 1)
        abar = np.cos(((x / steps) + 0.008) / (1 + 0.008) * np.pi * 0.5) ** 2
        abar = abar / abar[0]
        return np.clip(1 - (abar[1:] / abar[:-1]), 0.0001, 0.9999)
    raise AssertionError(name)


RELEASED = [  # (steps, scale, min, max) of the released DiffRec configs, plus random ones
    (40, 0.005, 0.005, 0.01),
    (5, 0.01, 0.001, 0.01),
    (5, 1e-4, 5e-4, 5e-3),
    (10, 5e-4, 1e-3, 5e-3),
]


def _random_configs(seed, n=6):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lo, hi = np.sort(rng.uniform(1e-4, 0.5, 2))
        out.append((int(rng.integers(2, 200)), float(rng.uniform(0.01, 1.0)), float(lo), float(hi)))
    return out


@pytest.mark.parametrize("cfg", RELEASED + _random_configs(0))
@pytest.mark.parametrize("name", ["linear", "linear-var"])
def test_scaled_schedules_match_original(name, cfg):
    steps, scale, nmin, nmax = cfg
    fn = schedules.linear if name == "linear" else schedules.linear_var
    got = fn(steps, scale, nmin, nmax)
    assert got.dtype == np.float64 and got.shape == (steps,)
    np.testing.assert_allclose(got, ref_diffrec(name, steps, scale, nmin, nmax), rtol=1e-13, atol=0)
    np.testing.assert_array_equal(
        schedules.get_schedule(name, steps, noise_scale=scale, noise_min=nmin, noise_max=nmax), got
    )


@pytest.mark.parametrize("steps", [1, 2, 5, 40, 1000])
@pytest.mark.parametrize("name", ["cosine", "binomial"])
def test_unscaled_diffrec_schedules_match_original(name, steps):
    got = schedules.get_schedule(name, steps, noise_scale=123.0)  # scale ignored
    np.testing.assert_allclose(got, ref_diffrec(name, steps, None, None, None), rtol=1e-13)
    assert got.shape == (steps,) and got.dtype == np.float64


@pytest.mark.parametrize("steps", [2, 5, 19, 20, 32, 100, 2000])
@pytest.mark.parametrize("name", ["trunc_lin", "sqrt", "trunc_cos"])
def test_sequential_schedules_match_diffurec(name, steps):
    got = getattr(schedules, name)(steps)
    np.testing.assert_allclose(got, ref_diffurec(name, steps), rtol=1e-13)
    np.testing.assert_array_equal(schedules.get_schedule(name, steps), got)


@pytest.mark.parametrize("steps", [1, 2, 5, 100, 500, 2000])
def test_dreamrec_schedules_match_original(steps):
    np.testing.assert_allclose(schedules.exp(steps), ref_dreamrec("exp", steps), rtol=1e-13)
    got = schedules.cosine(steps, max_beta=0.9999, min_beta=1e-4)
    np.testing.assert_allclose(got, ref_dreamrec("cosine", steps), rtol=1e-11)  # ~1 ulp of 1
    if steps == 2000:
        assert got.min() == 1e-4  # the lower clip is active for long schedules
    # DreamRec's linear and sqrt are the shared ones
    np.testing.assert_array_equal(
        schedules.linear(steps, 1.0, 1e-4, 0.02), np.linspace(1e-4, 0.02, steps)
    )


def test_trunc_lin_adrec_endpoints():
    # ADRec: T = 32 gives 0.013125 .. 0.635 (sequential.md); derived by hand from the formula.
    betas = schedules.trunc_lin(32)
    np.testing.assert_allclose([betas[0], betas[-1]], [0.013125, 0.635], rtol=1e-12)


def test_linear_var_alpha_bar_is_linear():
    # The defining property: 1 - abar_t is the linspace (before the cap and beta_fixed).
    betas = schedules.linear_var(40, 0.005, 0.005, 0.01)
    abar = np.cumprod(1 - betas)
    np.testing.assert_allclose(1 - abar, np.linspace(0.005 * 0.005, 0.005 * 0.01, 40), rtol=1e-9)


def test_linear_var_cap():
    # v jumping from 0.5 to 0.9999: 1 - (1e-4 / 0.5) = 0.9998 -> capped at 0.999.
    betas = schedules.linear_var(2, 1.0, 0.5, 0.9999)
    assert betas[1] == 0.999


def test_beta_fixed_overwrites_first_beta_then_checks():
    kw = dict(noise_scale=0.005, noise_min=0.005, noise_max=0.01)
    plain = schedules.get_schedule("linear-var", 40, **kw)
    fixed = schedules.get_schedule("linear-var", 40, beta_fixed=True, **kw)
    assert fixed[0] == 1e-5
    np.testing.assert_array_equal(fixed[1:], plain[1:])
    # noise_min = 0 gives beta_0 = 0 (rejected) but is accepted once beta_0 is fixed, as in the
    # original, which asserts the range after overwriting beta_0.
    with pytest.raises(ConfigError, match=r"beta\[0\]"):
        schedules.get_schedule("linear", 5, noise_scale=1.0, noise_min=0.0, noise_max=0.1)
    fixed0 = schedules.get_schedule(
        "linear", 5, noise_scale=1.0, noise_min=0.0, noise_max=0.1, beta_fixed=True
    )
    assert fixed0[0] == 1e-5
    for name in ("cosine", "binomial", "trunc_lin", "sqrt", "trunc_cos"):
        assert schedules.get_schedule(name, 10, beta_fixed=True)[0] == 1e-5


def test_linear_var_alias():
    kw = dict(noise_scale=0.1, noise_min=0.01, noise_max=0.2)
    np.testing.assert_array_equal(
        schedules.get_schedule("linear_var", 7, **kw), schedules.get_schedule("linear-var", 7, **kw)
    )


@pytest.mark.parametrize("steps", [0, -3, 2.5, True])
def test_bad_steps(steps):
    with pytest.raises(ConfigError, match="steps="):
        schedules.get_schedule("cosine", steps)
    with pytest.raises(ConfigError, match="steps="):
        schedules.linear(steps, 1.0, 0.1, 0.2)


def test_bad_noise_arguments():
    with pytest.raises(ConfigError, match="noise_min=0.2, noise_max=0.1"):
        schedules.linear_var(5, 1.0, 0.2, 0.1)
    with pytest.raises(ConfigError, match="noise_scale=-1"):
        schedules.linear(5, -1.0, 0.1, 0.2)
    with pytest.raises(ConfigError, match="noise_scale"):
        schedules.linear(5, float("nan"), 0.1, 0.2)
    with pytest.raises(ConfigError, match=r"needs \['noise_min'\]"):
        schedules.get_schedule("linear", 5, noise_scale=1.0, noise_max=0.2)
    with pytest.raises(ConfigError, match="unknown noise schedule 'quadratic'"):
        schedules.get_schedule("quadratic", 5)


def test_betas_out_of_range():
    # Equal noise_min and noise_max: linear-var betas after the first are 0.
    with pytest.raises(ConfigError, match=r"beta\[1\]=0\.0 is not in \(0, 1\)"):
        schedules.linear_var(5, 1.0, 0.1, 0.1)
    # Zero scale: every linear beta is 0.
    with pytest.raises(ConfigError, match="out of range"):
        schedules.linear(5, 0.0, 0.1, 0.2)
    # Beta >= 1.
    with pytest.raises(ConfigError, match="out of range"):
        schedules.linear(3, 10.0, 0.05, 0.1)
    # 1 - abar reaching 1 (the original caps the resulting betas at 0.999 without complaint).
    with pytest.raises(ConfigError, match="noise_scale \\* noise_max < 1"):
        schedules.linear_var(3, 1.0, 0.5, 1.0)
    with pytest.raises(ConfigError, match=r"beta\[1\]=nan"):
        schedules.check_betas(np.array([0.1, np.nan]))
    with pytest.raises(ConfigError, match="1-D"):
        schedules.check_betas(np.ones((2, 2)) * 0.1)
