"""Gaussian diffusion against a numpy float64 transcription of the original DiffRec code."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffrec_jax.diffusion import gaussian as gd
from diffrec_jax.diffusion import schedules
from diffrec_jax.errors import ConfigError

# --- numpy float64 transcription of DiffRec's GaussianDiffusion ---


class RefDiffusion:
    def __init__(self, betas, mean_type):
        self.mean_type = mean_type
        self.betas = b = np.asarray(betas, np.float64)
        alphas = 1.0 - b
        self.abar = np.cumprod(alphas)
        self.abar_prev = np.concatenate([[1.0], self.abar[:-1]])
        self.sqrt_abar = np.sqrt(self.abar)
        self.sqrt_1m_abar = np.sqrt(1.0 - self.abar)
        self.sqrt_recip = np.sqrt(1.0 / self.abar)
        self.sqrt_recipm1 = np.sqrt(1.0 / self.abar - 1)
        self.post_var = b * (1.0 - self.abar_prev) / (1.0 - self.abar)
        self.post_log_var = np.log(np.concatenate([self.post_var[1:2], self.post_var[1:]]))
        self.coef1 = b * np.sqrt(self.abar_prev) / (1.0 - self.abar)
        self.coef2 = (1.0 - self.abar_prev) * np.sqrt(alphas) / (1.0 - self.abar)
        # improved-DDPM's FIXED_LARGE (DiffuRec, ADRec): np.append(posterior_variance[1], betas[1:])
        self.large_log_var = np.log(np.append(self.post_var[1], b[1:]))

    def q_sample(self, x0, t, noise):
        return self.sqrt_abar[t][:, None] * x0 + self.sqrt_1m_abar[t][:, None] * noise

    def posterior(self, x0, xt, t):
        mean = self.coef1[t][:, None] * x0 + self.coef2[t][:, None] * xt
        return mean, self.post_var[t][:, None], self.post_log_var[t][:, None]

    def pred_x0(self, xt, t, out):
        if self.mean_type == "x0":
            return out
        return self.sqrt_recip[t][:, None] * xt - self.sqrt_recipm1[t][:, None] * out

    def p_mean_variance(self, out, xt, t):
        x0_hat = self.pred_x0(xt, t, out)
        mean, _, _ = self.posterior(x0_hat, xt, t)
        return mean, self.post_var[t][:, None], self.post_log_var[t][:, None], x0_hat

    def snr(self, t):
        return self.abar[t] / (1 - self.abar[t])

    def training_loss_terms(self, x0, xt, t, noise, out):
        """terms["loss"] before the division by pt (reweight=True)."""
        target = x0 if self.mean_type == "x0" else noise
        mse = np.mean((target - out) ** 2, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.mean_type == "x0":
                weight = np.where(t == 0, 1.0, self.snr(t - 1) - self.snr(t))
                loss = mse
            else:
                weight = (1 - self.abar[t]) / ((1 - self.abar_prev[t]) ** 2 * (1 - self.betas[t]))
                weight = np.where(t == 0, 1.0, weight)
                likelihood = np.mean((x0 - self.pred_x0(xt, t, out)) ** 2 / 2.0, axis=1)
                loss = np.where(t == 0, likelihood, mse)
        return weight * loss


def ref_importance_probs(lt_history, uniform_prob=0.001):
    lt_sqrt = np.sqrt(np.mean(lt_history.astype(np.float64) ** 2, axis=-1))
    pt_all = lt_sqrt / np.sum(lt_sqrt)
    pt_all *= 1 - uniform_prob
    pt_all += uniform_prob / len(pt_all)
    return pt_all


def ref_update_history(lt_history, lt_count, ts, losses):
    """The original per-example loop."""
    hist, count = lt_history.copy(), lt_count.copy()
    n = hist.shape[1]
    for t, loss in zip(ts, losses, strict=True):
        if count[t] == n:
            old = hist.copy()
            hist[t, :-1] = old[t, 1:]
            hist[t, -1] = loss
        else:
            hist[t, count[t]] = loss
            count[t] += 1
    return hist, count


def ref_p_sample(ref, model, x_start, steps_from, sampling_noise, start_noise, step_noise, reverse):
    """The original p_sample (faithful) or its k-step variant, with given noise draws."""
    x = (
        x_start
        if steps_from == 0
        else ref.q_sample(x_start, np.full(len(x_start), steps_from - 1), start_noise)
    )
    n = len(ref.betas) if reverse == "faithful" else max(steps_from, 1)
    for i in range(n)[::-1]:
        t = np.full(len(x), i)
        mean, _, log_var, _ = ref.p_mean_variance(model(x, t), x, t)
        if sampling_noise:
            x = mean + float(i != 0) * np.exp(0.5 * log_var) * step_noise[i]
        else:
            x = mean
    return x


def _betas(name="linear-var", steps=8, **kw):
    kw = kw or dict(noise_scale=1.0, noise_min=0.01, noise_max=0.4)
    return schedules.get_schedule(name, steps, beta_fixed=True, **kw)


BETAS = {
    "released": schedules.get_schedule(
        "linear-var", 40, noise_scale=0.005, noise_min=0.005, noise_max=0.01, beta_fixed=True
    ),
    "strong": _betas(),
    "cosine": schedules.get_schedule("cosine", 12),
}


# --- derived arrays ---


@pytest.mark.parametrize("mean_type", ["x0", "eps"])
@pytest.mark.parametrize("which", sorted(BETAS))
def test_derived_arrays(which, mean_type):
    betas = BETAS[which]
    diff = gd.make_diffusion(betas, mean_type)
    ref = RefDiffusion(betas, mean_type)
    assert diff.mean_type == mean_type and diff.steps == len(betas)
    pairs = {
        "betas": ref.betas,
        "alphas_cumprod": ref.abar,
        "alphas_cumprod_prev": ref.abar_prev,
        "sqrt_alphas_cumprod": ref.sqrt_abar,
        "sqrt_one_minus_alphas_cumprod": ref.sqrt_1m_abar,
        "sqrt_recip_alphas_cumprod": ref.sqrt_recip,
        "sqrt_recipm1_alphas_cumprod": ref.sqrt_recipm1,
        "posterior_variance": ref.post_var,
        "posterior_log_variance_clipped": ref.post_log_var,
        "posterior_mean_coef1": ref.coef1,
        "posterior_mean_coef2": ref.coef2,
        "large_log_variance": ref.large_log_var,
        "snr": ref.snr(np.arange(len(betas))),
    }
    for name, want in pairs.items():
        got = getattr(diff, name)
        assert got.dtype == jnp.float32 and got.shape == (len(betas),), name
        # float64 values rounded once to float32.
        np.testing.assert_array_equal(np.asarray(got), want.astype(np.float32), err_msg=name)
    # t = 0: the posterior mean is x0 itself, the log variance is index 1's.
    assert diff.posterior_mean_coef1[0] == 1.0 and diff.posterior_mean_coef2[0] == 0.0
    assert diff.posterior_log_variance_clipped[0] == diff.posterior_log_variance_clipped[1]


def test_diffusion_is_a_pytree_with_static_mean_type():
    diff = gd.make_diffusion(BETAS["strong"], "eps")
    leaves, treedef = jax.tree_util.tree_flatten(diff)
    assert len(leaves) == 14 and all(leaf.dtype == jnp.float32 for leaf in leaves)
    assert jax.tree_util.tree_unflatten(treedef, leaves).mean_type == "eps"

    @jax.jit
    def f(d, x0, t, noise):
        return gd.q_sample(d, x0, t, noise)

    x = jnp.ones((2, 3))
    f(diff, x, jnp.array([0, 1]), x)  # mean_type is static: tracing succeeds


# --- forward process and posterior ---


def _random_batch(rng, steps, b=9, n=7, with_zero=True):
    t = rng.integers(0, steps, b)
    if with_zero:
        t[0] = 0
        t[1] = steps - 1
    x0 = rng.random((b, n))
    noise = rng.standard_normal((b, n))
    out = rng.standard_normal((b, n))
    return t, x0, noise, out


@pytest.mark.parametrize("which", sorted(BETAS))
def test_q_sample_and_posterior(which):
    rng = np.random.default_rng(1)
    ref = RefDiffusion(BETAS[which], "x0")
    diff = gd.make_diffusion(BETAS[which])
    t, x0, noise, _ = _random_batch(rng, diff.steps)
    xt = jax.jit(gd.q_sample)(
        diff, jnp.asarray(x0, jnp.float32), jnp.asarray(t), jnp.asarray(noise, jnp.float32)
    )
    np.testing.assert_allclose(xt, ref.q_sample(x0, t, noise), rtol=1e-6, atol=1e-6)
    xt = ref.q_sample(x0, t, noise)
    mean, var, log_var = jax.jit(gd.q_posterior_mean_variance)(
        diff, jnp.asarray(x0, jnp.float32), jnp.asarray(xt, jnp.float32), jnp.asarray(t)
    )
    r_mean, r_var, r_log_var = ref.posterior(x0, xt, t)
    np.testing.assert_allclose(mean, r_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, np.broadcast_to(r_var, x0.shape), rtol=1e-6)
    np.testing.assert_allclose(log_var, np.broadcast_to(r_log_var, x0.shape), rtol=1e-6)


@pytest.mark.parametrize("mean_type", ["x0", "eps"])
def test_p_mean_variance(mean_type):
    rng = np.random.default_rng(2)
    betas = BETAS["strong"]
    ref = RefDiffusion(betas, mean_type)
    diff = gd.make_diffusion(betas, mean_type)
    t, x0, noise, out = _random_batch(rng, diff.steps)
    xt = ref.q_sample(x0, t, noise)
    got = jax.jit(gd.p_mean_variance)(
        diff, jnp.asarray(out, jnp.float32), jnp.asarray(xt, jnp.float32), jnp.asarray(t)
    )
    want = ref.p_mean_variance(out, xt, t)
    for g, w, name in zip(got, want, ("mean", "variance", "log_variance", "pred_x0"), strict=True):
        np.testing.assert_allclose(
            g, np.broadcast_to(w, x0.shape), rtol=1e-5, atol=1e-5, err_msg=name
        )
    # Explicit mean_type override gives the other parameterisation.
    other = "eps" if mean_type == "x0" else "x0"
    got_other = gd.p_mean_variance(
        diff, jnp.asarray(out, jnp.float32), jnp.asarray(xt, jnp.float32), jnp.asarray(t), other
    )
    np.testing.assert_allclose(
        got_other.pred_x0, RefDiffusion(betas, other).pred_x0(xt, t, out), rtol=1e-5, atol=1e-5
    )


def ref_posterior_step(ref, pred_x0, xt, t, z, variance):
    """numpy float64: c1_t x0_hat + c2_t x_t + [t > 0] exp(log_var_t / 2) z, element by element
    (t of x's leading shape)."""
    log_var = ref.post_log_var if variance == "posterior" else ref.large_log_var
    out = np.empty_like(xt)
    for idx in np.ndindex(*t.shape):
        i = int(t[idx])
        out[idx] = ref.coef1[i] * pred_x0[idx] + ref.coef2[i] * xt[idx]
        if z is not None and i > 0:
            out[idx] += np.exp(0.5 * log_var[i]) * z[idx]
    return out


@pytest.mark.parametrize("variance", ["posterior", "large"])
@pytest.mark.parametrize("t_shape", ["per_example", "per_token", "scalar", "broadcast"])
def test_timesteps_of_any_leading_shape(t_shape, variance):
    """q_sample and posterior_step with t [B], [B, L] (ADRec's per-token timesteps), a scalar,
    or [B, 1] broadcast over L, against numpy float64 element by element."""
    rng = np.random.default_rng(11)
    betas = BETAS["strong"]
    ref = RefDiffusion(betas, "x0")
    diff = gd.make_diffusion(betas)
    b, n_tok, d = 4, 5, 3
    x0, noise, pred, z = (rng.standard_normal((b, n_tok, d)) for _ in range(4))
    t = {
        "per_example": np.array([0, 7, 3, 5]),
        "per_token": rng.integers(0, diff.steps, (b, n_tok)),
        "scalar": np.array(5),
        "broadcast": np.array([[0], [7], [3], [5]]),
    }[t_shape]
    if t_shape == "per_token":
        t[0, 0] = 0  # the step without noise, among noisy ones
    # the timestep of every [b, l] position
    t_full = np.broadcast_to(t.reshape(t.shape + (1,) * (2 - t.ndim)), (b, n_tok))
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    xt = jax.jit(gd.q_sample)(diff, f32(x0), jnp.asarray(t), f32(noise))
    want = ref.sqrt_abar[t_full][..., None] * x0 + ref.sqrt_1m_abar[t_full][..., None] * noise
    np.testing.assert_allclose(xt, want, rtol=1e-5, atol=1e-6)
    step = jax.jit(gd.posterior_step, static_argnames="variance")
    for zz in (None, z):
        z32 = None if zz is None else f32(zz)
        got = step(diff, f32(pred), f32(want), jnp.asarray(t), z32, variance=variance)
        np.testing.assert_allclose(
            got, ref_posterior_step(ref, pred, want, t_full, zz, variance), rtol=1e-5, atol=1e-5
        )
    # p_mean_variance (and the posterior under it) take the same shapes.
    mv = gd.p_mean_variance(diff, f32(pred), f32(want), jnp.asarray(t))
    np.testing.assert_allclose(
        mv.mean, ref_posterior_step(ref, pred, want, t_full, None, variance), rtol=1e-5, atol=1e-5
    )
    want_log_var = np.broadcast_to(ref.post_log_var[t_full][..., None], x0.shape)
    np.testing.assert_allclose(mv.log_variance, want_log_var, rtol=1e-6)


def test_posterior_step_at_zero_is_x0_hat_and_checks_variance():
    diff = gd.make_diffusion(BETAS["strong"])
    x, x0_hat, z = (jnp.full((2, 3), v, jnp.float32) for v in (5.0, -1.0, 7.0))
    for variance in gd.VARIANCES:
        got = gd.posterior_step(diff, x0_hat, x, jnp.int32(0), z, variance=variance)
        np.testing.assert_array_equal(got, x0_hat)
    with pytest.raises(ConfigError, match="variance"):
        gd.posterior_step(diff, x0_hat, x, jnp.int32(1), z, variance="small")
    # T = 1: the large variance's index 0 is beta_0 (no index 1 to take)
    one = gd.make_diffusion(np.array([0.3]))
    np.testing.assert_allclose(one.large_log_variance, np.log([0.3]), rtol=1e-6)


@pytest.mark.parametrize("which", ["strong", "cosine"])
def test_q_sample_moments_by_sampling(which):
    diff = gd.make_diffusion(BETAS[which])
    ref = RefDiffusion(BETAS[which], "x0")
    n, ts = 50_000, np.array([0, 3, diff.steps // 2, diff.steps - 1])
    x0_row = np.array([0.0, 1.0, 0.5])
    t = np.repeat(ts, n)
    x0 = np.broadcast_to(x0_row, (len(t), 3))
    noise = jax.random.normal(jax.random.key(0), x0.shape, jnp.float32)
    xt = np.asarray(
        jax.jit(gd.q_sample)(diff, jnp.asarray(x0, jnp.float32), jnp.asarray(t), noise), np.float64
    ).reshape(len(ts), n, 3)
    for i, ti in enumerate(ts):
        mean_want = ref.sqrt_abar[ti] * x0_row
        var_want = 1 - ref.abar[ti]
        se_mean = np.sqrt(var_want / n)
        se_var = var_want * np.sqrt(2.0 / (n - 1))
        assert np.all(np.abs(xt[i].mean(0) - mean_want) < 5 * se_mean), (ti, xt[i].mean(0))
        assert np.all(np.abs(xt[i].var(0, ddof=1) - var_want) < 5 * se_var), (ti, xt[i].var(0))


# --- training loss ---


@pytest.mark.parametrize("which", ["released", "strong"])
@pytest.mark.parametrize("mean_type", ["x0", "eps"])
def test_per_example_loss_and_weights(mean_type, which):
    rng = np.random.default_rng(3)
    betas = BETAS[which]
    ref = RefDiffusion(betas, mean_type)
    diff = gd.make_diffusion(betas, mean_type)
    t, x0, noise, out = _random_batch(rng, diff.steps, b=16)
    t[2] = 1
    xt = ref.q_sample(x0, t, noise)
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    got = jax.jit(gd.per_example_loss)(diff, f32(out), f32(x0), f32(xt), jnp.asarray(t), f32(noise))
    np.testing.assert_allclose(got, ref.training_loss_terms(x0, xt, t, noise, out), rtol=2e-5)
    # Weights: x0 w_t = SNR(t-1) - SNR(t), w_0 = 1.
    all_t = np.arange(diff.steps)
    with np.errstate(divide="ignore"):
        if mean_type == "x0":
            want_w = np.where(all_t == 0, 1.0, ref.snr(all_t - 1) - ref.snr(all_t))
        else:
            want_w = np.where(
                all_t == 0, 1.0, (1 - ref.abar) / ((1 - ref.abar_prev) ** 2 * (1 - ref.betas))
            )
    np.testing.assert_allclose(gd.loss_weight(diff, jnp.asarray(all_t)), want_w, rtol=1e-6)
    np.testing.assert_allclose(gd.snr(diff, jnp.asarray(all_t)), ref.snr(all_t), rtol=1e-6)
    # reweight=False: plain mse of the target.
    target = x0 if mean_type == "x0" else noise
    plain = gd.per_example_loss(
        diff, f32(out), f32(x0), f32(xt), jnp.asarray(t), f32(noise), reweight=False
    )
    np.testing.assert_allclose(plain, np.mean((target - out) ** 2, axis=1), rtol=1e-5)


# --- loss-aware timestep sampling ---


def _full_history(rng, steps, length=10):
    losses = rng.exponential(1.0, (steps, length)) * rng.uniform(0.1, 10.0, (steps, 1))
    return gd.LossHistory(jnp.asarray(losses, jnp.float32), jnp.full((steps,), length, jnp.int32))


def test_importance_probs():
    rng = np.random.default_rng(4)
    hist = _full_history(rng, 13)
    p = gd.importance_probs(hist)
    np.testing.assert_allclose(p, ref_importance_probs(np.asarray(hist.losses)), rtol=1e-6)
    np.testing.assert_allclose(float(jnp.sum(p)), 1.0, rtol=1e-6)
    # All-zero history: uniform instead of NaN.
    np.testing.assert_allclose(gd.importance_probs(gd.init_history(5)), np.full(5, 0.2), rtol=1e-6)


def test_sample_timesteps_uniform_until_full_then_importance():
    rng = np.random.default_rng(5)
    steps, b = 6, 60_000
    full = _full_history(rng, steps)
    almost = full._replace(counts=full.counts.at[2].set(9))
    sample = chex.assert_max_traces(n=1)(
        lambda key, h: gd.sample_timesteps(key, h, b, "importance")
    )
    sample = jax.jit(sample)
    key = jax.random.key(0)
    # Not every count is 10: uniform, pt = 1.
    t, pt = sample(key, almost)
    assert t.dtype == jnp.int32 and t.shape == (b,)
    np.testing.assert_array_equal(pt, np.ones(b, np.float32))
    freq = np.bincount(np.asarray(t), minlength=steps) / b
    se = np.sqrt((1 / steps) * (1 - 1 / steps) / b)
    assert np.all(np.abs(freq - 1 / steps) < 5 * se), freq
    # Full: t ~ p, pt = p_t T (same compiled function: the switch is inside jit).
    t, pt = sample(key, full)
    p = ref_importance_probs(np.asarray(full.losses))
    freq = np.bincount(np.asarray(t), minlength=steps) / b
    se = np.sqrt(p * (1 - p) / b)
    assert np.all(np.abs(freq - p) < 5 * se), (freq, p)
    np.testing.assert_allclose(pt, p[np.asarray(t)] * steps, rtol=1e-5)
    # "uniform" ignores the history.
    t_u, pt_u = gd.sample_timesteps(key, full, 1000, "uniform")
    np.testing.assert_array_equal(pt_u, np.ones(1000))
    assert set(np.asarray(t_u).tolist()) == set(range(steps))


@pytest.mark.parametrize("seed", range(2))
def test_update_history_matches_original_loop(seed):
    rng = np.random.default_rng(seed)
    steps, length = 7, 4
    hist = np.zeros((steps, length), np.float32)
    count = np.zeros(steps, np.int64)
    state = gd.init_history(steps, length)
    update = jax.jit(gd.update_history)
    for _ in range(6):
        # Few distinct timesteps: many repeats within a batch, some more than `length` times.
        t = rng.choice(rng.choice(steps, 3, replace=False), b := 20)
        losses = rng.random(b).astype(np.float32)
        hist, count = ref_update_history(hist, count, t, losses)
        state = update(state, jnp.asarray(t, jnp.int32), jnp.asarray(losses))
        np.testing.assert_array_equal(state.losses, hist)
        np.testing.assert_array_equal(state.counts, count)
    assert state.counts.dtype == jnp.int32


def test_update_history_many_repeats_of_one_timestep():
    steps, length = 3, 10
    t = np.array([1] * 25 + [0] * 3 + [1] * 2)
    losses = np.arange(1, 31, dtype=np.float32)
    start_hist = np.zeros((steps, length), np.float32)
    start_hist[1, :4] = [-1, -2, -3, -4]
    start = gd.LossHistory(jnp.asarray(start_hist), jnp.array([0, 4, 0], jnp.int32))
    got = gd.update_history(start, jnp.asarray(t), jnp.asarray(losses))
    want_h, want_c = ref_update_history(start_hist, np.array([0, 4, 0]), t, losses)
    np.testing.assert_array_equal(got.losses, want_h)
    np.testing.assert_array_equal(got.counts, want_c)
    # Row 1 holds its last 10 losses, oldest first: 17..25 then 29, 30.
    np.testing.assert_array_equal(got.losses[1], [18, 19, 20, 21, 22, 23, 24, 25, 29, 30])


@pytest.mark.parametrize("seed", range(2))
def test_update_history_mask_skips_padded_rows(seed):
    """Masked rows change nothing: same as the original loop over the real rows alone."""
    rng = np.random.default_rng(10 + seed)
    steps, length = 6, 4
    hist = np.zeros((steps, length), np.float32)
    count = np.zeros(steps, np.int64)
    state = gd.init_history(steps, length)
    update = jax.jit(gd.update_history)
    for _ in range(6):
        t = rng.choice(rng.choice(steps, 3, replace=False), b := 24)
        losses = rng.random(b).astype(np.float32)
        real = rng.random(b) < 0.6
        padded_losses = np.where(real, losses, np.nan).astype(np.float32)  # must not leak
        hist, count = ref_update_history(hist, count, t[real], losses[real])
        for mask in (real, real.astype(np.float32)):  # bool or 0/1 weights
            got = update(state, jnp.asarray(t, jnp.int32), jnp.asarray(padded_losses), mask)
            np.testing.assert_array_equal(got.losses, hist)
            np.testing.assert_array_equal(got.counts, count)
        state = got
    # An all-ones mask is the unmasked update; an all-zeros mask changes nothing.
    t = jnp.asarray(rng.integers(0, steps, 10), jnp.int32)
    losses = jnp.asarray(rng.random(10), jnp.float32)
    chex.assert_trees_all_equal(
        gd.update_history(state, t, losses, jnp.ones(10)), gd.update_history(state, t, losses)
    )
    chex.assert_trees_all_equal(gd.update_history(state, t, losses, jnp.zeros(10)), state)


def test_update_history_vmap():
    rng = np.random.default_rng(6)
    t = rng.integers(0, 5, (3, 12))
    losses = rng.random((3, 12)).astype(np.float32)
    hist = jax.tree.map(lambda a: jnp.stack([a] * 3), gd.init_history(5, 3))
    got = jax.vmap(gd.update_history)(hist, jnp.asarray(t), jnp.asarray(losses))
    for i in range(3):
        h, c = ref_update_history(
            np.zeros((5, 3), np.float32), np.zeros(5, np.int64), t[i], losses[i]
        )
        np.testing.assert_array_equal(got.losses[i], h)
        np.testing.assert_array_equal(got.counts[i], c)


# --- reverse process ---


class Denoiser:
    """A small fixed nonlinear denoiser, in numpy float64 and in JAX float32."""

    def __init__(self, n, seed=7):
        rng = np.random.default_rng(seed)
        self.w = rng.standard_normal((n, n)) / np.sqrt(n)
        self.c = rng.standard_normal(n) * 0.1

    def numpy(self, x, t):
        return np.tanh(x @ self.w + t[:, None] * self.c)

    def jax(self, x, t):
        return jnp.tanh(
            x @ jnp.asarray(self.w, jnp.float32)
            + t[:, None].astype(jnp.float32) * jnp.asarray(self.c, jnp.float32)
        )


def _noises(key, shape, steps):
    """The noise p_sample documents: split, start from the first key, step t from fold_in."""
    start_key, step_key = jax.random.split(key)
    start = np.asarray(jax.random.normal(start_key, shape), np.float64)
    step = [
        np.asarray(jax.random.normal(jax.random.fold_in(step_key, t), shape), np.float64)
        for t in range(steps)
    ]
    return start, step


@pytest.mark.parametrize(
    ("mean_type", "reverse", "steps_from", "sampling_noise"),
    [
        ("x0", "faithful", 0, False),  # the released configuration
        ("x0", "faithful", 1, False),
        ("x0", "faithful", 3, True),
        ("eps", "faithful", 0, False),
        ("eps", "faithful", 8, True),
        ("x0", "corrected", 0, False),
        ("x0", "corrected", 3, True),
        ("x0", "corrected", 8, True),
        ("eps", "corrected", 1, True),
        ("eps", "corrected", 8, False),
    ],
)
def test_p_sample_matches_loop(mean_type, reverse, steps_from, sampling_noise):
    betas = BETAS["strong"]  # T = 8
    ref = RefDiffusion(betas, mean_type)
    diff = gd.make_diffusion(betas, mean_type)
    rng = np.random.default_rng(8)
    x_start = (rng.random((5, 6)) < 0.4).astype(np.float64)
    model = Denoiser(6)
    key = jax.random.key(3)
    start_noise, step_noise = _noises(key, x_start.shape, diff.steps)
    want = ref_p_sample(
        ref, model.numpy, x_start, steps_from, sampling_noise, start_noise, step_noise, reverse
    )
    fn = jax.jit(
        lambda x, k: gd.p_sample(
            diff,
            model.jax,
            x,
            k,
            steps_from=steps_from,
            sampling_noise=sampling_noise,
            reverse=reverse,
        )
    )
    got = fn(jnp.asarray(x_start, jnp.float32), key)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_p_sample_counts_denoiser_calls_and_returns_x0_hat():
    diff = gd.make_diffusion(BETAS["strong"])
    calls = []

    def counting(x, t):
        calls.append(t)  # traced once per scan body
        return jnp.tanh(x) * 0.5

    x = jnp.ones((2, 3))
    jax.make_jaxpr(lambda x: gd.p_sample(diff, counting, x, steps_from=0))(x)
    assert len(calls) == 1  # one scan body, whatever T
    # The visited timesteps.
    np.testing.assert_array_equal(gd.reverse_timesteps(8, 3, "faithful"), np.arange(8)[::-1])
    np.testing.assert_array_equal(gd.reverse_timesteps(8, 3, "corrected"), [2, 1, 0])
    np.testing.assert_array_equal(gd.reverse_timesteps(8, 0, "corrected"), [0])
    # Corrected with k = 0: exactly one denoiser call at t = 0 on the input: the result is the
    # denoiser's output (c1_0 = 1, c2_0 = 0).
    rng = np.random.default_rng(9)
    xs = jnp.asarray(rng.random((4, 3)), jnp.float32)
    got = gd.p_sample(diff, lambda x, t: jnp.tanh(x) * 0.5 + t[:, None], xs, reverse="corrected")
    np.testing.assert_allclose(got, jnp.tanh(xs) * 0.5, rtol=1e-6)


def test_p_sample_per_row_keys_do_not_depend_on_batch():
    diff = gd.make_diffusion(BETAS["strong"])
    model = Denoiser(6)
    rng = np.random.default_rng(10)
    x = jnp.asarray(rng.random((5, 6)), jnp.float32)
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(0), jnp.arange(5))
    fn = jax.jit(
        lambda x, k: gd.p_sample(
            diff, model.jax, x, k, steps_from=4, sampling_noise=True, reverse="corrected"
        )
    )
    full = fn(x, keys)
    np.testing.assert_allclose(fn(x[3:4], keys[3:4]), full[3:4], rtol=1e-6)
    # Row i with [B] keys equals the single-key call on that row.
    single = gd.p_sample(
        diff, model.jax, x[2:3], keys[2], steps_from=4, sampling_noise=True, reverse="corrected"
    )
    np.testing.assert_allclose(single, full[2:3], rtol=1e-6)
    # Determinism and key sensitivity.
    np.testing.assert_array_equal(fn(x, keys), full)
    assert not np.allclose(fn(x, jax.random.split(jax.random.key(1), 5)), full)


def test_p_sample_vmap():
    diff = gd.make_diffusion(BETAS["cosine"])
    model = Denoiser(4)
    rng = np.random.default_rng(11)
    xs = jnp.asarray(rng.random((3, 2, 4)), jnp.float32)
    keys = jax.random.split(jax.random.key(0), 3)
    fn = lambda x, k: gd.p_sample(diff, model.jax, x, k, steps_from=2, sampling_noise=True)
    got = jax.jit(jax.vmap(fn))(xs, keys)
    one = jax.jit(fn)
    for i in range(3):
        np.testing.assert_allclose(got[i], one(xs[i], keys[i]), rtol=1e-5, atol=1e-6)


def test_reverse_keys_normal_and_step_key_are_row_wise():
    """With [B] keys every helper acts on each row's key alone (what makes a user's draws
    independent of the batch); with one key they are the plain jax.random calls."""
    keys = jax.random.split(jax.random.key(4), 3)
    start, steps = gd.reverse_keys(keys)
    for b in range(3):
        s_b, t_b = jax.random.split(keys[b])
        np.testing.assert_array_equal(jax.random.key_data(start[b]), jax.random.key_data(s_b))
        np.testing.assert_array_equal(jax.random.key_data(steps[b]), jax.random.key_data(t_b))
        np.testing.assert_array_equal(
            jax.random.key_data(gd.step_key(steps, 5)[b]),
            jax.random.key_data(jax.random.fold_in(t_b, 5)),
        )
        np.testing.assert_array_equal(
            gd.normal(start, (3, 2, 4))[b], jax.random.normal(s_b, (2, 4))
        )
    one = jax.random.key(9)
    np.testing.assert_array_equal(gd.normal(one, (2, 3)), jax.random.normal(one, (2, 3)))
    a, b = gd.reverse_keys(one)
    np.testing.assert_array_equal(
        jax.random.key_data(jnp.stack([a, b])), jax.random.key_data(jax.random.split(one))
    )


@pytest.mark.parametrize("variance", ["posterior", "large"])
@pytest.mark.parametrize("timesteps", [[7, 6, 5, 4, 3, 2, 1, 0], [3, 1, 0]])
def test_reverse_scan_matches_numpy_loop(variance, timesteps):
    """reverse_scan + posterior_step (what DiffuRec, DreamRec and ADRec run) against a numpy
    float64 ancestral loop fed the documented draws: start from the first half of each row's
    key, step t from fold_in(second half, t)."""
    betas = BETAS["strong"]  # T = 8
    ref = RefDiffusion(betas, "x0")
    diff = gd.make_diffusion(betas)
    model = Denoiser(6)
    keys = jax.random.split(jax.random.key(2), 5)

    @jax.jit
    def run(keys):
        start_keys, step_keys = gd.reverse_keys(keys)

        def step(x, t, k):
            x0_hat = model.jax(x, jnp.full(x.shape[:1], t))
            return gd.posterior_step(diff, x0_hat, x, t, gd.normal(k, x.shape), variance=variance)

        x_start = gd.normal(start_keys, (5, 6))
        return gd.reverse_scan(step, x_start, np.asarray(timesteps), step_keys)

    got = run(keys)
    x = np.stack([np.asarray(jax.random.normal(jax.random.split(k)[0], (6,))) for k in keys])
    x = x.astype(np.float64)
    log_var = ref.post_log_var if variance == "posterior" else ref.large_log_var
    for t in timesteps:
        z = np.stack(
            [
                np.asarray(jax.random.normal(jax.random.fold_in(jax.random.split(k)[1], t), (6,)))
                for k in keys
            ]
        )
        x0_hat = model.numpy(x, np.full(5, t))
        x = ref.coef1[t] * x0_hat + ref.coef2[t] * x + (t > 0) * np.exp(0.5 * log_var[t]) * z
    np.testing.assert_allclose(got, x, rtol=1e-4, atol=1e-5)
    # one scan; without keys the step gets None and the result is the mean path
    jaxpr = str(jax.make_jaxpr(run)(keys))
    assert jaxpr.count("scan[") == 1
    seen = []

    def mean_step(x, t, k):
        seen.append(k)
        return gd.posterior_step(diff, model.jax(x, jnp.full(x.shape[:1], t)), x, t)

    gd.reverse_scan(mean_step, jnp.zeros((5, 6)), np.asarray(timesteps))
    assert seen == [None]


def test_errors():
    diff = gd.make_diffusion(BETAS["strong"])
    x = jnp.ones((2, 3))
    ident = lambda x, t: x
    with pytest.raises(ConfigError, match="steps_from=9"):
        gd.p_sample(diff, ident, x, jax.random.key(0), steps_from=9)
    with pytest.raises(ConfigError, match="steps_from=-1"):
        gd.p_sample(diff, ident, x, jax.random.key(0), steps_from=-1)
    with pytest.raises(ConfigError, match="reverse='backwards'"):
        gd.p_sample(diff, ident, x, reverse="backwards")
    with pytest.raises(ConfigError, match="needs a key"):
        gd.p_sample(diff, ident, x, steps_from=2)
    with pytest.raises(ConfigError, match="needs a key"):
        gd.p_sample(diff, ident, x, sampling_noise=True)
    with pytest.raises(ConfigError, match="mean_type='v'"):
        gd.make_diffusion(BETAS["strong"], "v")
    with pytest.raises(ConfigError, match="out of range"):
        gd.make_diffusion(np.array([0.1, 1.0]))
    with pytest.raises(ConfigError, match="method='lossaware'"):
        gd.sample_timesteps(jax.random.key(0), gd.init_history(3), 4, "lossaware")
    with pytest.raises(ConfigError, match="steps=0"):
        gd.init_history(0)
