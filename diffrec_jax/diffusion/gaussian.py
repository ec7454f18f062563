r"""Gaussian diffusion on interaction vectors, as pure functions over precomputed arrays.

A :class:`GaussianDiffusion` holds the float32 arrays derived from the betas (computed in float64
and cast, as DiffRec does): with :math:`\bar\alpha_t = \prod_{k \le t}(1 - \beta_k)` and
:math:`\bar\alpha_{-1} = 1`,

.. math::
   q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\,x_0,\ (1 - \bar\alpha_t) I), \qquad
   q(x_{t-1} \mid x_t, x_0) = \mathcal N(c^{(1)}_t x_0 + c^{(2)}_t x_t,\ \tilde\beta_t I),

   c^{(1)}_t = \frac{\beta_t \sqrt{\bar\alpha_{t-1}}}{1 - \bar\alpha_t}, \quad
   c^{(2)}_t = \frac{(1 - \bar\alpha_{t-1})\sqrt{1 - \beta_t}}{1 - \bar\alpha_t}, \quad
   \tilde\beta_t = \frac{\beta_t (1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t}.

Timesteps are 0-based (t = 0 .. T-1): index t is the state after t + 1 forward steps, and the
reverse step at index t maps :math:`x_t` to the estimate of the state one level cleaner (at t = 0
that is the data itself: :math:`c^{(1)}_0 = 1, c^{(2)}_0 = 0`, so the posterior mean is the
model's :math:`\hat x_0`).

Every function of a timestep takes ``t`` of any integer shape that is a prefix of the state's
shape (``[]`` one timestep for all, ``[B]`` one per example, ``[B, L]`` one per token as ADRec's)
or broadcastable to one: ``arr[t]`` is reshaped to broadcast against ``x``.

The reverse process of every diffusion model of the library is built from three pieces:
:func:`posterior_step` (one ancestral step from the model's :math:`\hat x_0`, with the posterior
variance :math:`\tilde\beta_t` or the "large" one :math:`\beta_t` of DiffuRec and ADRec),
:func:`reverse_scan` (the steps as one :func:`jax.lax.scan`, with the noise key of each step) and
:func:`reverse_keys` / :func:`normal` (the noise: the start from the first half of a key, step t
from ``fold_in(second half, t)``, row-wise for per-user keys such as
:func:`diffrec_jax.seeds.sampling_keys`). :func:`p_sample` is DiffRec's reverse process on them.

The training loss, the loss-aware timestep sampler (with its loss history as an explicit
:class:`LossHistory` state) and DiffRec's reverse process follow the DiffRec code (Wang et al.,
SIGIR 2023); where the original has a quirk the docstring says so.

References:
  Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020.
  Nichol & Dhariwal, "Improved Denoising Diffusion Probabilistic Models", ICML 2021
  (loss-aware importance sampling of timesteps; the "fixed large" reverse variance).
  Wang et al., "Diffusion Recommender Model", SIGIR 2023.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from diffrec_jax.diffusion.schedules import check_betas
from diffrec_jax.errors import ConfigError

MEAN_TYPES = ("x0", "eps")
REVERSE_MODES = ("faithful", "corrected")
VARIANCES = ("posterior", "large")
SAMPLING_METHODS = ("uniform", "importance")
HISTORY_LEN = 10  # DiffRec's history_num_per_term
UNIFORM_PROB = 0.001  # DiffRec's uniform_prob mixed into the importance distribution

DenoiseFn = Callable[[jax.Array, jax.Array], jax.Array]  # (x_t [B, ...], t [B] int32) -> [B, ...]
StepFn = Callable[[jax.Array, jax.Array, "jax.Array | None"], jax.Array]  # (x, t [], key) -> x


@struct.dataclass
class GaussianDiffusion:
    """Precomputed diffusion arrays, each [T] float32 (computed in float64, then cast).

    Attributes:
      betas: beta_t.
      alphas_cumprod: abar_t.
      alphas_cumprod_prev: abar_{t-1}, with abar_{-1} = 1.
      sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod: q_sample coefficients.
      sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod: x0 from eps coefficients.
      posterior_variance: beta_t (1 - abar_{t-1}) / (1 - abar_t) (0 at t = 0).
      posterior_log_variance_clipped: its log, index 0 taking index 1's value (index 0's own
        when T = 1, where the original would fail).
      posterior_mean_coef1, posterior_mean_coef2: c1_t, c2_t above.
      large_log_variance: ``log([posterior_variance[1], beta_1, ..., beta_{T-1}])``, the
        "fixed large" reverse variance (Nichol & Dhariwal's FIXED_LARGE; DiffuRec's and ADRec's);
        index 0 takes index 1's posterior variance (beta_0 when T = 1) and is never used.
      snr: abar_t / (1 - abar_t).
      loss_weight: the per-timestep reweighting of :func:`per_example_loss` for `mean_type`
        (x0: SNR(t-1) - SNR(t), 1 at t = 0; eps: (1 - abar_t) / ((1 - abar_{t-1})^2 (1 - beta_t)),
        1 at t = 0).
      mean_type: "x0" or "eps" (static, not a pytree leaf).
    """

    betas: jax.Array
    alphas_cumprod: jax.Array
    alphas_cumprod_prev: jax.Array
    sqrt_alphas_cumprod: jax.Array
    sqrt_one_minus_alphas_cumprod: jax.Array
    sqrt_recip_alphas_cumprod: jax.Array
    sqrt_recipm1_alphas_cumprod: jax.Array
    posterior_variance: jax.Array
    posterior_log_variance_clipped: jax.Array
    posterior_mean_coef1: jax.Array
    posterior_mean_coef2: jax.Array
    large_log_variance: jax.Array
    snr: jax.Array
    loss_weight: jax.Array
    mean_type: str = struct.field(pytree_node=False, default="x0")

    @property
    def steps(self) -> int:
        """T, the number of diffusion steps."""
        return self.betas.shape[0]


def _check_mean_type(mean_type: str) -> str:
    if mean_type not in MEAN_TYPES:
        raise ConfigError(f"unknown {mean_type=}; expected one of {list(MEAN_TYPES)}")
    return mean_type


def diffusion_arrays(betas, mean_type: str = "x0") -> dict[str, np.ndarray]:
    """The derived arrays of :class:`GaussianDiffusion` in float64 (numpy), by name."""
    _check_mean_type(mean_type)
    betas = check_betas(betas)
    alphas = 1.0 - betas
    abar = np.cumprod(alphas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
    clip_src = post_var[1] if betas.size > 1 else post_var[0]
    with np.errstate(divide="ignore"):
        post_log_var = np.log(np.concatenate([[clip_src], post_var[1:]]))
    large_first = post_var[1] if betas.size > 1 else betas[0]
    large_log_var = np.log(np.concatenate([[large_first], betas[1:]]))
    snr = abar / (1.0 - abar)
    if mean_type == "x0":
        weight = np.concatenate([[1.0], snr[:-1] - snr[1:]])
    else:
        with np.errstate(divide="ignore"):
            weight = (1.0 - abar) / ((1.0 - abar_prev) ** 2 * (1.0 - betas))
        weight[0] = 1.0
    return {
        "betas": betas,
        "alphas_cumprod": abar,
        "alphas_cumprod_prev": abar_prev,
        "sqrt_alphas_cumprod": np.sqrt(abar),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - abar),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / abar),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / abar - 1.0),
        "posterior_variance": post_var,
        "posterior_log_variance_clipped": post_log_var,
        "posterior_mean_coef1": betas * np.sqrt(abar_prev) / (1.0 - abar),
        "posterior_mean_coef2": (1.0 - abar_prev) * np.sqrt(alphas) / (1.0 - abar),
        "large_log_variance": large_log_var,
        "snr": snr,
        "loss_weight": weight,
    }


def make_diffusion(betas, mean_type: str = "x0") -> GaussianDiffusion:
    """Builds the diffusion arrays from `betas` ([T] in (0, 1)).

    Args:
      betas: [T] betas, e.g. from :func:`diffrec_jax.diffusion.schedules.get_schedule`.
      mean_type: what the denoiser predicts: "x0" (DiffRec's START_X) or "eps".

    Raises:
      ConfigError: unknown mean type or betas outside (0, 1).
    """
    arrays = diffusion_arrays(betas, mean_type)
    return GaussianDiffusion(
        **{k: jnp.asarray(v, jnp.float32) for k, v in arrays.items()}, mean_type=mean_type
    )


def _extract(arr: jax.Array, t: jax.Array, ndim: int) -> jax.Array:
    """arr[t] reshaped to broadcast against an array of rank `ndim` whose leading dimensions
    are t's shape (or broadcast with it): [*t.shape, 1, ..., 1]."""
    t = jnp.asarray(t)
    vals = arr[t]
    return vals.reshape(vals.shape + (1,) * (ndim - t.ndim))


def q_sample(diff: GaussianDiffusion, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """Samples x_t ~ q(x_t | x0): sqrt(abar_t) x0 + sqrt(1 - abar_t) noise.

    Args:
      diff: the diffusion.
      x0: [B, ...] clean inputs.
      t: int timesteps whose shape is a prefix of x0's (broadcastable to it): [B] one per
        example, [B, L] one per token of [B, L, d] inputs, or a scalar.
      noise: standard normal, same shape as `x0`.
    """
    return (
        _extract(diff.sqrt_alphas_cumprod, t, x0.ndim) * x0
        + _extract(diff.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * noise
    )


def q_posterior_mean_variance(
    diff: GaussianDiffusion, x0: jax.Array, x_t: jax.Array, t: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Mean, variance and clipped log variance of q(x_{t-1} | x_t, x0); [B, ...] each.

    `t` as :func:`q_sample`'s: its shape a prefix of x_t's (or broadcastable to one).
    """
    mean = (
        _extract(diff.posterior_mean_coef1, t, x_t.ndim) * x0
        + _extract(diff.posterior_mean_coef2, t, x_t.ndim) * x_t
    )
    var = jnp.broadcast_to(_extract(diff.posterior_variance, t, x_t.ndim), x_t.shape)
    log_var = jnp.broadcast_to(
        _extract(diff.posterior_log_variance_clipped, t, x_t.ndim), x_t.shape
    )
    return mean, var, log_var


def predict_x0_from_eps(
    diff: GaussianDiffusion, x_t: jax.Array, t: jax.Array, eps: jax.Array
) -> jax.Array:
    """x0_hat = sqrt(1 / abar_t) x_t - sqrt(1 / abar_t - 1) eps."""
    return (
        _extract(diff.sqrt_recip_alphas_cumprod, t, x_t.ndim) * x_t
        - _extract(diff.sqrt_recipm1_alphas_cumprod, t, x_t.ndim) * eps
    )


class MeanVariance(NamedTuple):
    """The reverse-step distribution p(x_{t-1} | x_t); every field [B, ...] float32."""

    mean: jax.Array
    variance: jax.Array
    log_variance: jax.Array
    pred_x0: jax.Array


def p_mean_variance(
    diff: GaussianDiffusion,
    model_output: jax.Array,
    x_t: jax.Array,
    t: jax.Array,
    mean_type: str | None = None,
) -> MeanVariance:
    """p(x_{t-1} | x_t) from the denoiser's output; the variance is the fixed posterior one.

    Args:
      diff: the diffusion.
      model_output: [B, ...] the denoiser's prediction of x0 (mean type "x0") or of eps ("eps").
      x_t: [B, ...] the current state.
      t: int timesteps, [B] (or any shape :func:`q_sample` takes).
      mean_type: overrides ``diff.mean_type`` (static).
    """
    pred_x0 = predict_x0(diff, model_output, x_t, t, mean_type)
    mean, var, log_var = q_posterior_mean_variance(diff, pred_x0, x_t, t)
    return MeanVariance(mean, var, log_var, pred_x0)


def predict_x0(
    diff: GaussianDiffusion,
    model_output: jax.Array,
    x_t: jax.Array,
    t: jax.Array,
    mean_type: str | None = None,
) -> jax.Array:
    """The x0 estimate of the denoiser's output: itself (mean type "x0") or
    :func:`predict_x0_from_eps` ("eps"); `mean_type` overrides ``diff.mean_type`` (static)."""
    mean_type = _check_mean_type(diff.mean_type if mean_type is None else mean_type)
    if mean_type == "x0":
        return model_output
    return predict_x0_from_eps(diff, x_t, t, model_output)


def _check_variance(variance: str) -> str:
    if variance not in VARIANCES:
        raise ConfigError(f"unknown reverse {variance=}; expected one of {list(VARIANCES)}")
    return variance


def posterior_step(
    diff: GaussianDiffusion,
    pred_x0: jax.Array,
    x_t: jax.Array,
    t: jax.Array,
    noise: jax.Array | None = None,
    *,
    variance: str = "posterior",
) -> jax.Array:
    r"""One ancestral reverse step: :math:`x_{t-1} = c^{(1)}_t \hat x_0 + c^{(2)}_t x_t
    + [t > 0]\,e^{\frac12 \log v_t} z`.

    Without `noise` the result is the mean. At t = 0 it is :math:`\hat x_0` itself
    (:math:`c^{(1)}_0 = 1, c^{(2)}_0 = 0`, no noise).

    Args:
      diff: the diffusion.
      pred_x0: the model's x0 estimate, shape of `x_t` (:func:`predict_x0`).
      x_t: the current state, e.g. [B, ...] or [B, L, d].
      t: int timesteps of any shape :func:`q_sample` takes (a scalar: one for all rows).
      noise: standard normal z of x_t's shape, or None (the mean).
      variance: log v_t (static): "posterior", DiffRec's and DreamRec's
        ``posterior_log_variance_clipped`` (:math:`\tilde\beta_t`), or "large", DiffuRec's
        and ADRec's ``large_log_variance`` (:math:`\beta_t`).
    """
    mean = (
        _extract(diff.posterior_mean_coef1, t, x_t.ndim) * pred_x0
        + _extract(diff.posterior_mean_coef2, t, x_t.ndim) * x_t
    )
    if noise is None:
        return mean
    if _check_variance(variance) == "posterior":
        log_var = diff.posterior_log_variance_clipped
    else:
        log_var = diff.large_log_variance
    t = jnp.asarray(t)
    nonzero = (t != 0).astype(x_t.dtype).reshape(t.shape + (1,) * (x_t.ndim - t.ndim))
    return mean + nonzero * jnp.exp(0.5 * _extract(log_var, t, x_t.ndim)) * noise


def snr(diff: GaussianDiffusion, t: jax.Array) -> jax.Array:
    """Signal-to-noise ratio abar_t / (1 - abar_t) (from float64), same shape as `t`."""
    return diff.snr[t]


def loss_weight(diff: GaussianDiffusion, t: jax.Array) -> jax.Array:
    """DiffRec's per-timestep loss weight for ``diff.mean_type``, same shape as `t`.

    x0: SNR(t-1) - SNR(t), and 1 at t = 0. eps: (1 - abar_t) / ((1 - abar_{t-1})^2 (1 - beta_t)),
    and 1 at t = 0.
    """
    return diff.loss_weight[t]


def per_example_loss(
    diff: GaussianDiffusion,
    model_output: jax.Array,
    x0: jax.Array,
    x_t: jax.Array,
    t: jax.Array,
    noise: jax.Array,
    *,
    reweight: bool = True,
) -> jax.Array:
    """DiffRec's training loss of every example before importance weighting, [B].

    mse = mean over non-batch axes of (target - output)^2 with target x0 ("x0") or the noise
    ("eps"). With `reweight` the loss is ``loss_weight(t) * mse``, except that for "eps" at t = 0
    the term is mean((x0 - x0_hat)^2 / 2) (weight 1), as in the original. These values are what
    the loss history stores; the optimised loss is their mean divided by the sampler's pt.

    `reweight=False` gives the unweighted mse (the original crashes there: its loss is never
    assigned).

    Args:
      diff: the diffusion.
      model_output: [B, ...] the denoiser's output at (x_t, t).
      x0: [B, ...] clean inputs; x_t: [B, ...] = q_sample(diff, x0, t, noise).
      t: [B] int timesteps.
      noise: [B, ...] the noise used to make x_t.
      reweight: apply DiffRec's weighting.
    """
    target = x0 if diff.mean_type == "x0" else noise
    axes = tuple(range(1, x0.ndim))
    mse = jnp.mean((target - model_output) ** 2, axis=axes)
    if not reweight:
        return mse
    if diff.mean_type == "eps":
        pred_x0 = predict_x0_from_eps(diff, x_t, t, model_output)
        likelihood = jnp.mean((x0 - pred_x0) ** 2 / 2.0, axis=axes)
        mse = jnp.where(t == 0, likelihood, mse)
    return loss_weight(diff, t) * mse


# Loss-aware timestep sampling, with the loss history as explicit state.


class LossHistory(NamedTuple):
    """The last `H` weighted losses seen at each timestep (DiffRec's Lt_history, Lt_count).

    Attributes:
      losses: [T, H] float32; row t holds its `counts[t]` most recent losses, oldest first,
        left-aligned (unused slots are 0).
      counts: [T] int32 number of stored losses per timestep (at most H).
    """

    losses: jax.Array
    counts: jax.Array


def init_history(steps: int, length: int = HISTORY_LEN) -> LossHistory:
    """An empty loss history for `steps` timesteps keeping `length` losses each."""
    if steps < 1 or length < 1:
        raise ConfigError(f"loss history needs steps >= 1 and length >= 1, got {steps=}, {length=}")
    return LossHistory(jnp.zeros((steps, length), jnp.float32), jnp.zeros((steps,), jnp.int32))


def history_full(history: LossHistory) -> jax.Array:
    """[] bool: every timestep has its H losses (the importance sampler is active)."""
    return jnp.all(history.counts == history.losses.shape[1])


def importance_probs(history: LossHistory, uniform_prob: float = UNIFORM_PROB) -> jax.Array:
    """p_t proportional to sqrt(mean(L_t^2)), mixed as (1 - u) p + u / T; [T] float32.

    Uniform when every stored loss is 0 (the original would produce NaN).
    """
    steps = history.losses.shape[0]
    lt_sqrt = jnp.sqrt(jnp.mean(history.losses**2, axis=-1))
    total = jnp.sum(lt_sqrt)
    p = jnp.where(total > 0, lt_sqrt / jnp.where(total > 0, total, 1.0), 1.0 / steps)
    return p * (1.0 - uniform_prob) + uniform_prob / steps


def sample_timesteps(
    key: jax.Array,
    history: LossHistory,
    batch_size: int,
    method: str = "importance",
    uniform_prob: float = UNIFORM_PROB,
) -> tuple[jax.Array, jax.Array]:
    """Draws timesteps and their sampling probabilities relative to uniform.

    "uniform": t ~ U{0..T-1}, pt = 1. "importance" (DiffRec's only setting): uniform until every
    timestep has H stored losses, then t ~ :func:`importance_probs` and pt = p_t T. The switch is
    a ``jnp.where`` on the history, so this is jit-able with the history traced.

    Args:
      key: a typed PRNG key.
      history: the loss history.
      batch_size: B (static).
      method: "uniform" or "importance" (static).
      uniform_prob: the uniform mass mixed into the importance distribution.

    Returns:
      t: [B] int32 timesteps; pt: [B] float32, divide the loss by it.
    """
    if method not in SAMPLING_METHODS:
        raise ConfigError(
            f"unknown timestep sampling {method=}; expected one of {list(SAMPLING_METHODS)}"
        )
    steps = history.losses.shape[0]
    key_uniform, key_importance = jax.random.split(key)
    t_uniform = jax.random.randint(key_uniform, (batch_size,), 0, steps, dtype=jnp.int32)
    ones = jnp.ones((batch_size,), jnp.float32)
    if method == "uniform":
        return t_uniform, ones
    p = importance_probs(history, uniform_prob)
    t_importance = jax.random.choice(key_importance, steps, (batch_size,), p=p).astype(jnp.int32)
    full = history_full(history)
    t = jnp.where(full, t_importance, t_uniform)
    pt = jnp.where(full, p[t] * steps, ones)
    return t, pt


def update_history(
    history: LossHistory, t: jax.Array, losses: jax.Array, mask: jax.Array | None = None
) -> LossHistory:
    """Appends every example's loss to its timestep's history, in batch order.

    Same result as the original loop: for each example in turn, if its timestep already holds H
    losses drop the oldest and append, else write at position count and increment the count.
    Vectorised: row t ends as the last min(H, count_t + n_t) values of (its stored losses, then
    the n_t new ones in batch order).

    Args:
      history: the current history.
      t: [B] int timesteps.
      losses: [B] the per-example losses (gradients are stopped).
      mask: [B] bool or float, or None (every example counts). Examples where it is False / 0
        (the rows padding a batch) are skipped: the result is that of the loop over the other
        examples alone, whatever their losses (even NaN).

    Returns:
      The updated history.
    """
    steps, length = history.losses.shape
    losses = jax.lax.stop_gradient(losses).astype(history.losses.dtype)
    t = t.astype(jnp.int32)
    onehot = jax.nn.one_hot(t, steps, dtype=jnp.int32)  # [B, T]
    if mask is not None:
        keep = jnp.asarray(mask) != 0  # [B]
        onehot = onehot * keep[:, None].astype(onehot.dtype)
    n_new = onehot.sum(axis=0)  # [T]
    rank = jnp.take_along_axis(jnp.cumsum(onehot, axis=0), t[:, None], axis=1)[:, 0] - 1
    newest_first = n_new[t] - 1 - rank  # 0 for the last occurrence of t in the batch
    if mask is not None:
        newest_first = jnp.where(keep, newest_first, length)  # out of range: dropped below
    # Row t: its (up to) H latest new losses, newest at column 0.
    latest = jnp.zeros((steps, length), losses.dtype).at[t, newest_first].set(losses, mode="drop")
    old = history.counts[:, None]
    total = old + n_new[:, None]
    new_count = jnp.minimum(total, length)
    k = (total - new_count) + jnp.arange(length)[None, :]  # index into (old ++ new) [T, H]
    from_old = jnp.take_along_axis(history.losses, jnp.clip(k, 0, length - 1), axis=1)
    from_new = jnp.take_along_axis(
        latest, jnp.clip(n_new[:, None] - 1 - (k - old), 0, length - 1), axis=1
    )
    values = jnp.where(k < old, from_old, jnp.where(k < total, from_new, history.losses))
    return LossHistory(values, new_count[:, 0].astype(history.counts.dtype))


# Reverse process.


def normal(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """Standard normal of `shape`: from one typed key, or with [B] keys row b from key b (then
    ``shape[0]`` is B and each row is ``normal(keys[b], shape[1:])``)."""
    if key.ndim == 0:
        return jax.random.normal(key, shape, dtype)
    return jax.vmap(lambda k: jax.random.normal(k, shape[1:], dtype))(key)


def step_key(key: jax.Array, t: jax.Array) -> jax.Array:
    """The noise key of reverse step `t`: ``fold_in(key, t)`` (row-wise for [B] keys)."""
    if key.ndim == 0:
        return jax.random.fold_in(key, t)
    return jax.vmap(jax.random.fold_in, (0, None))(key, t)


def _split2(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    if key.ndim == 0:
        a, b = jax.random.split(key)
        return a, b
    pairs = jax.vmap(jax.random.split)(key)  # [B, 2]
    return pairs[:, 0], pairs[:, 1]


def reverse_keys(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(start key, step keys) of a reverse process: ``jax.random.split(key)`` (row-wise for
    [B] keys: two [B] arrays).

    The start noise (x_T, or DiffRec's partial noising) is drawn from the first, and step t's
    noise from ``step_key(second, t)`` (what :func:`reverse_scan` hands each step). With the
    per-user keys of :func:`diffrec_jax.seeds.sampling_keys` a user's draws do not depend on
    the rest of the batch.
    """
    return _split2(key)


def reverse_scan(
    step_fn: StepFn,
    x: jax.Array,
    timesteps: np.ndarray | jax.Array,
    keys: jax.Array | None = None,
) -> jax.Array:
    """The reverse process as one :func:`jax.lax.scan`: ``x = step_fn(x, t, key_t)`` for every
    t of `timesteps` in order.

    Args:
      step_fn: ``(x, t, key_t) -> x``, one reverse step; t is a scalar int32, key_t is
        ``step_key(keys, t)`` (a key, or [B] keys for [B] `keys`), None when `keys` is None.
        Typically the model's x0 estimate and :func:`posterior_step` with
        ``normal(key_t, x.shape)``.
      x: the start state, e.g. [B, d].
      timesteps: [n] int timesteps (e.g. :func:`reverse_timesteps`, T-1 .. 0).
      keys: the step keys (second half of :func:`reverse_keys`), or None (no noise).

    Returns:
      x after the last step.
    """

    def body(x, t):
        return step_fn(x, t, None if keys is None else step_key(keys, t)), None

    x, _ = jax.lax.scan(body, x, jnp.asarray(timesteps, jnp.int32))
    return x


def reverse_timesteps(steps: int, steps_from: int, reverse: str = "faithful") -> np.ndarray:
    """The timesteps the reverse process visits, in order (int32 numpy).

    faithful: T-1, ..., 0 whatever `steps_from` (the original). corrected: k-1, ..., 0 with
    k = max(steps_from, 1).
    """
    if reverse not in REVERSE_MODES:
        raise ConfigError(f"unknown {reverse=}; expected one of {list(REVERSE_MODES)}")
    if (
        isinstance(steps_from, bool)
        or not isinstance(steps_from, int | np.integer)
        or not (0 <= steps_from <= steps)
    ):
        raise ConfigError(f"steps_from must be an int in [0, T={steps}], got {steps_from=}")
    n = steps if reverse == "faithful" else max(int(steps_from), 1)
    return np.arange(n - 1, -1, -1, dtype=np.int32)


def p_sample(
    diff: GaussianDiffusion,
    denoise_fn: DenoiseFn,
    x_start: jax.Array,
    key: jax.Array | None = None,
    *,
    steps_from: int = 0,
    sampling_noise: bool = False,
    reverse: str = "faithful",
) -> jax.Array:
    """DiffRec inference: partially noise the input, then run the reverse process (one scan).

    Start: x = x_start if k = `steps_from` is 0, else q_sample(x_start, k - 1) (k forward steps).
    Then, for each t of :func:`reverse_timesteps`, x = posterior mean of p(x_{t-1} | x_t) given
    ``denoise_fn(x, t)`` (plus exp(log_var / 2) noise when `sampling_noise` and t > 0):

    - ``reverse="faithful"`` (the original code, and the paper's description): t = T-1, ..., 0,
      i.e. always T denoiser calls, although the start is only k steps noisy.
    - ``reverse="corrected"``: t = k-1, ..., 0, i.e. k reverse steps for k forward steps. For
      k = 0 the input itself is taken as the state at t = 0 (the original's start convention,
      without added noise) and one denoiser call at t = 0 is made. The alternative, zero steps,
      would return the input unchanged, which as recommendation scores ranks nothing.

    The result is x after the step at t = 0, the posterior mean there; since c1_0 = 1 and
    c2_0 = 0 it equals the denoiser's x0 estimate at t = 0 (what the original returns).

    Randomness (:func:`reverse_keys`): ``start_key, step_key = jax.random.split(key)``; the
    start noise is ``normal(start_key, shape)`` and the step-t noise
    ``normal(fold_in(step_key, t), shape)``. The steps are :func:`posterior_step` with the
    posterior variance, run by :func:`reverse_scan`.
    `key` may also be [B] keys (one per row, split/folded row-wise) so that a row's result does
    not depend on the rest of the batch. Unused (may be None) when k = 0 and not
    `sampling_noise`.

    Args:
      diff: the diffusion.
      denoise_fn: ``(x_t [B, ...], t [B] int32) -> [B, ...]`` model output (x0 or eps).
      x_start: [B, ...] inputs (the users' train rows).
      key: typed key, or [B] typed keys.
      steps_from: k in [0, T] (static).
      sampling_noise: add noise at every step but the last (static).
      reverse: "faithful" or "corrected" (static).

    Returns:
      [B, ...] the final estimate.
    """
    timesteps = reverse_timesteps(diff.steps, steps_from, reverse)
    needs_key = steps_from > 0 or sampling_noise
    if needs_key and key is None:
        raise ConfigError(f"p_sample needs a key when {steps_from=} > 0 or {sampling_noise=}")
    start_key = step_keys = None
    if key is not None and needs_key:
        start_key, step_keys = reverse_keys(key)
    batch = x_start.shape[:1]
    x = x_start
    if start_key is not None:  # steps_from > 0
        t0 = jnp.full(batch, steps_from - 1, jnp.int32)
        x = q_sample(diff, x_start, t0, normal(start_key, x_start.shape, x_start.dtype))

    def step(x, t, k):
        tb = jnp.full(batch, t, jnp.int32)
        pred_x0 = predict_x0(diff, denoise_fn(x, tb), x, tb)
        noise = None if k is None else normal(k, x.shape, x.dtype)
        return posterior_step(diff, pred_x0, x, tb, noise)

    return reverse_scan(step, x, timesteps, step_keys if sampling_noise else None)
