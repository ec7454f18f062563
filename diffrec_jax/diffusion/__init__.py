"""Diffusion core: noise schedules and Gaussian diffusion as pure functions.

- :mod:`diffrec_jax.diffusion.schedules`: beta schedules (DiffRec's and DiffuRec's).
- :mod:`diffrec_jax.diffusion.gaussian`: the precomputed arrays, forward noising, posterior,
  training loss, loss-aware timestep sampling and the reverse process (shared by every diffusion
  model: :func:`posterior_step`, :func:`reverse_scan`, :func:`reverse_keys`, :func:`normal`;
  DiffRec's :func:`p_sample` on them).
"""

from __future__ import annotations

from diffrec_jax.diffusion import schedules
from diffrec_jax.diffusion.gaussian import (
    GaussianDiffusion,
    LossHistory,
    MeanVariance,
    diffusion_arrays,
    history_full,
    importance_probs,
    init_history,
    loss_weight,
    make_diffusion,
    normal,
    p_mean_variance,
    p_sample,
    per_example_loss,
    posterior_step,
    predict_x0,
    predict_x0_from_eps,
    q_posterior_mean_variance,
    q_sample,
    reverse_keys,
    reverse_scan,
    reverse_timesteps,
    sample_timesteps,
    snr,
    step_key,
    update_history,
)
from diffrec_jax.diffusion.schedules import get_schedule

__all__ = [
    "GaussianDiffusion",
    "LossHistory",
    "MeanVariance",
    "diffusion_arrays",
    "get_schedule",
    "history_full",
    "importance_probs",
    "init_history",
    "loss_weight",
    "make_diffusion",
    "normal",
    "p_mean_variance",
    "p_sample",
    "per_example_loss",
    "posterior_step",
    "predict_x0",
    "predict_x0_from_eps",
    "q_posterior_mean_variance",
    "q_sample",
    "reverse_keys",
    "reverse_scan",
    "reverse_timesteps",
    "sample_timesteps",
    "schedules",
    "snr",
    "step_key",
    "update_history",
]
