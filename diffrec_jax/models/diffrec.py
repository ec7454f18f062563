r"""DiffRec: Gaussian diffusion on user interaction rows with an MLP denoiser (Wang et al. 2023).

The denoiser predicts :math:`\hat x_0` (or the noise) from a noised row :math:`x_t` and the
timestep. Its layout, for ``dims = (d_1, ..., d_m)``, is

.. math::
   (n_{items} + e) \to d_m \to \dots \to d_1 \to \dots \to d_m \to n_{items},

e.g. ``dims=(200, 600)``: (n_items + emb) -> 600 -> 200 -> 600 -> n_items, and ``dims=(1000,)``:
(n_items + emb) -> 1000 -> n_items; tanh after every layer but the last. The time embedding is
the sinusoidal [cos, sin] embedding followed by one Linear(emb, emb) without activation,
concatenated to the (optionally L2-normalised, then dropped-out) input row. Weights are
N(0, sqrt(2 / (fan_in + fan_out))), biases N(0, 0.001).

Training (see :mod:`diffrec_jax.diffusion.gaussian`): t from the loss-aware importance sampler
(the loss history is the model state), x_t = q_sample(x0, t), loss = mean over the batch of
w_t * mse / pt. Rows padding the last batch of an epoch (``UserBatch.weights`` 0) count neither
in the loss nor in the loss history. Scoring runs the reverse process from the user's train row.

:func:`diffrec` gives the :class:`~diffrec_jax.protocol.Trainable`; the registry entry
``"diffrec"`` (:mod:`diffrec_jax.models`) trains it with the shared loop, with the training
hyperparameters of :data:`TRAIN_DEFAULTS` (batch size, epochs, validation cadence, patience).

Differences from the original code: `reweight=False` works (unweighted mse; the original
crashes), `noise_scale=0` (the original's "no diffusion" mode) is rejected, and
``reverse="corrected"`` offers k reverse steps for k forward steps (the original, the default
``"faithful"``, always runs all T). Boolean options are real booleans (the original's
``type=bool`` flags were always True when given on the command line).

References:
  Wang, Xu, Feng, Lin, He, Chua, "Diffusion Recommender Model", SIGIR 2023.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from diffrec_jax import seeds
from diffrec_jax.diffusion import gaussian, schedules
from diffrec_jax.errors import ConfigError
from diffrec_jax.nn import layers
from diffrec_jax.protocol import (
    StepInfo,
    Trainable,
    UserBatch,
    mean_over_rows,
    row_weights,
)

Params = dict[str, Any]


def denoiser_sizes(n_items: int, dims: Sequence[int], emb_size: int) -> list[int]:
    """Layer sizes of DiffRec's MLP: [n_items + emb, *reversed(dims), *dims[1:], n_items]."""
    dims = [int(d) for d in dims]
    return [n_items + emb_size, *dims[::-1], *dims[1:], n_items]


def init_denoiser(
    key: jax.Array, n_items: int, dims: Sequence[int] = (200, 600), emb_size: int = 10
) -> Params:
    """DiffRec denoiser parameters.

    Returns:
      ``{"time": dense [emb, emb], "mlp": [dense, ...]}`` float32, sizes from
      :func:`denoiser_sizes`.
    """
    key_time, key_mlp = jax.random.split(key)
    return {
        "time": layers.init_dense(key_time, emb_size, emb_size),
        "mlp": layers.init_mlp(key_mlp, denoiser_sizes(n_items, dims, emb_size)),
    }


def denoise(
    params: Params,
    x_t: jax.Array,
    t: jax.Array,
    key: jax.Array | None = None,
    *,
    train: bool = False,
    norm: bool = False,
    dropout: float = 0.5,
) -> jax.Array:
    """The DiffRec MLP: [B, n_items] noised rows and [B] timesteps -> [B, n_items].

    Args:
      params: from :func:`init_denoiser`.
      x_t: [B, n_items] float32.
      t: [B] int timesteps.
      key: typed key for dropout; needed only when `train` and `dropout` > 0.
      train: apply dropout (static).
      norm: L2-normalise each row first (static).
      dropout: dropout rate on the input row (static).
    """
    emb_size = params["time"]["w"].shape[0]
    time_emb = layers.dense(params["time"], layers.timestep_embedding(t, emb_size))
    x = layers.l2_normalize(x_t) if norm else x_t
    if train and dropout > 0:
        if key is None:
            raise ConfigError("denoise(train=True) with dropout > 0 needs a key")
        x = layers.dropout(key, x, dropout)
    # The first layer on concat([x, time_emb]), as two products: the same function, but the
    # gradient then never forms d(loss)/d(concat) ([B, n_items + emb], 1/6 of the step's
    # FLOPs), of which only the time embedding's columns are needed.
    first, rest = params["mlp"][0], params["mlp"][1:]
    n = x.shape[-1]
    h = x @ first["w"][:n] + time_emb.astype(x.dtype) @ first["w"][n:] + first["b"]
    return layers.mlp(rest, jnp.tanh(h))  # dims is non-empty: the first layer is hidden


def _validate(
    *,
    lr,
    weight_decay,
    dims,
    emb_size,
    dropout,
    steps,
    mean_type,
    noise_scale,
    sampling_steps,
    reverse,
) -> tuple[int, ...]:
    if not lr > 0:
        raise ConfigError(f"DiffRec needs lr > 0, got {lr=}")
    if not weight_decay >= 0:
        raise ConfigError(f"DiffRec needs weight_decay >= 0, got {weight_decay=}")
    if (
        isinstance(dims, str | bytes)
        or not isinstance(dims, Sequence)
        or not dims
        or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims)
    ):
        raise ConfigError(
            f"DiffRec dims must be a non-empty sequence of positive ints (the hidden layer "
            f"sizes, e.g. dims=[200,600]), got {dims=}"
        )
    if isinstance(emb_size, bool) or not isinstance(emb_size, int) or emb_size < 1:
        raise ConfigError(f"DiffRec needs an int emb_size >= 1, got {emb_size=}")
    if not 0 <= dropout < 1:
        raise ConfigError(f"DiffRec needs 0 <= dropout < 1, got {dropout=}")
    if mean_type not in gaussian.MEAN_TYPES:
        raise ConfigError(f"unknown {mean_type=}; expected one of {list(gaussian.MEAN_TYPES)}")
    if not noise_scale > 0:
        raise ConfigError(
            f"DiffRec needs noise_scale > 0 (the original's noise_scale=0 "
            f"no-diffusion mode is not supported), got {noise_scale=}"
        )
    try:
        gaussian.reverse_timesteps(steps, sampling_steps, reverse)  # checks all three
    except ConfigError as e:
        if "steps_from" not in str(e):
            raise
        raise ConfigError(
            f"DiffRec needs 0 <= sampling_steps <= steps, got {sampling_steps=}, {steps=} ({e})"
        ) from None
    return tuple(dims)


def diffrec(
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    dims: Sequence[int] = (200, 600),
    emb_size: int = 10,
    norm: bool = False,
    dropout: float = 0.5,
    steps: int = 40,
    noise_schedule: str = "linear-var",
    noise_scale: float = 0.005,
    noise_min: float = 0.005,
    noise_max: float = 0.01,
    beta_fixed: bool = True,
    mean_type: str = "x0",
    reweight: bool = True,
    sampling_steps: int = 0,
    sampling_noise: bool = False,
    reverse: str = "faithful",
    sampling_seed: int = 0,
) -> Trainable:
    """DiffRec as a :class:`~diffrec_jax.protocol.Trainable`.

    Defaults are the released ML-1M clean configuration (batch size 400 is the loop's business).

    Args:
      lr, weight_decay: AdamW (``optax.adamw(lr, weight_decay=weight_decay)``; the original
        passes its weight decay, 0 by default, explicitly to torch's AdamW).
      dims, emb_size, norm, dropout: the denoiser (:func:`denoise`).
      steps, noise_schedule, noise_scale, noise_min, noise_max, beta_fixed: the diffusion
        (:func:`diffrec_jax.diffusion.schedules.get_schedule`).
      mean_type: "x0" or "eps".
      reweight: DiffRec's per-timestep loss weights.
      sampling_steps: k, forward steps applied to the train row before the reverse process.
      sampling_noise: add noise in the reverse steps.
      reverse: "faithful" (T reverse steps, the original) or "corrected" (k steps).
      sampling_seed: seed of the inference noise, used only when sampling_steps > 0 or
        sampling_noise; the noise of a user is derived from (seed, user index) so scores do not
        depend on batching.

    Returns:
      ``Trainable(init, loss, score, optimizer)``; params as :func:`init_denoiser`, model state
      the :class:`~diffrec_jax.diffusion.gaussian.LossHistory`.

    Raises:
      ConfigError: an invalid hyperparameter (the message names it).
    """
    dims = _validate(
        lr=lr,
        weight_decay=weight_decay,
        dims=dims,
        emb_size=emb_size,
        dropout=dropout,
        steps=steps,
        mean_type=mean_type,
        noise_scale=noise_scale,
        sampling_steps=sampling_steps,
        reverse=reverse,
    )
    betas = schedules.get_schedule(
        noise_schedule,
        steps,
        noise_scale=noise_scale,
        noise_min=noise_min,
        noise_max=noise_max,
        beta_fixed=beta_fixed,
    )
    diff = gaussian.make_diffusion(betas, mean_type)
    norm, reweight, sampling_noise = bool(norm), bool(reweight), bool(sampling_noise)
    dropout = float(dropout)

    def init(key: jax.Array, n_items: int) -> tuple[Params, gaussian.LossHistory]:
        return init_denoiser(key, n_items, dims, emb_size), gaussian.init_history(steps)

    def loss(
        params: Params,
        history: gaussian.LossHistory,
        batch: UserBatch,
        key: jax.Array,
        info: StepInfo | None = None,
    ):
        del info  # no annealing
        x0 = batch.rows
        key_t, key_noise, key_drop = jax.random.split(key, 3)
        t, pt = gaussian.sample_timesteps(key_t, history, x0.shape[0], "importance")
        noise = jax.random.normal(key_noise, x0.shape, x0.dtype)
        x_t = gaussian.q_sample(diff, x0, t, noise)
        out = denoise(params, x_t, t, key_drop, train=True, norm=norm, dropout=dropout)
        per_example = gaussian.per_example_loss(diff, out, x0, x_t, t, noise, reweight=reweight)
        # Rows padding the last batch (weight 0) neither count in the loss nor enter the history.
        new_history = gaussian.update_history(history, t, per_example, row_weights(batch))
        aux = {
            "weighted_mse": mean_over_rows(jax.lax.stop_gradient(per_example), batch),
            "importance_sampling": gaussian.history_full(history).astype(jnp.float32),
        }
        return mean_over_rows(per_example / pt, batch), (new_history, aux)

    def score(params: Params, batch: UserBatch) -> jax.Array:
        def denoise_fn(x, t):
            return denoise(params, x, t, train=False, norm=norm, dropout=dropout)

        key = None
        if sampling_steps > 0 or sampling_noise:
            key = seeds.sampling_keys(sampling_seed, batch.users)
        return gaussian.p_sample(
            diff,
            denoise_fn,
            batch.rows,
            key,
            steps_from=sampling_steps,
            sampling_noise=sampling_noise,
            reverse=reverse,
        )

    def optimizer() -> optax.GradientTransformation:
        return optax.adamw(lr, weight_decay=weight_decay)

    return Trainable(init, loss, score, optimizer)


DEFAULTS: dict[str, Any] = {
    name: p.default for name, p in inspect.signature(diffrec).parameters.items()
}


# -- as a registered model ----------------------------------------------------------------------

TRAIN_DEFAULTS: dict[str, Any] = {
    "batch_size": 400,
    "max_epochs": 1000,
    "eval_every": 5,
    # The original stops at the start of epoch best + 20: the evaluations at best + 5, + 10 and
    # + 15 did not improve, so 3 evaluations (its 4 extra epochs are never evaluated).
    "patience": 3,
}
"""DiffRec's training hyperparameters (the original's main.py), as recommender hparams."""

RECOMMENDER_DEFAULTS: dict[str, Any] = {**DEFAULTS, **TRAIN_DEFAULTS}
"""Every hyperparameter of the ``"diffrec"`` registry entry and its default (the ML-1M release)."""
