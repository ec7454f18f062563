r"""DiffuRec: Gaussian diffusion on the target item embedding (Li et al., TOIS 2023).

One training example is a prefix of a training sequence and the item after it ("prefix"
examples of :mod:`diffrec_jax.protocol`). With ``E`` the item table (``[n_items + 1, d]``,
last row the padding item), ``H = LN(Drop_{0.3}(E[history]))`` ([B, L, d], no positional
embeddings) and the target embedding :math:`x_0 = E[\mathrm{target}]`:

.. math::
   t \sim U\{0..T-1\}, \quad x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon,
   \quad \lambda \sim \mathcal N(\lambda_0, \lambda_0^2) \text{ element-wise, } [B, L, d],

   \hat x_0 = f(H, x_t, t) = \mathrm{LN}\big(\mathrm{Drop}(\mathrm{Transformer}(
       H + \lambda \odot (x_t + \mathrm{temb}(t))))\big)[:, -1],

   \mathcal L = \mathrm{CE}(\hat x_0 E_{items}^\top, \mathrm{target}),

with ``temb(t) = Linear(4d -> d)(SiLU(Linear(d -> 4d)(sinusoidal(t * 1000 / T))))`` and
``x_t + temb(t)`` added to **every** position of the history (broadcast over L), as the released
code does. The Transformer is ``n_blocks`` pre-LN blocks (4 heads, tanh-GELU FFN of width 4d,
dropout on the attention probabilities, on both residual branches, inside the FFN and on every
block's output), non-causal. All LayerNorms use eps = 1e-12 (the original's TF-style LayerNorm).
Schedule: ``trunc_lin`` with T = 32. Timesteps are uniform: the original creates a loss-aware
sampler but never updates it, so it stays uniform, and its importance weights are not applied.

Inference (:func:`sample_x0`, one :func:`jax.lax.scan` of T steps, the shared
:func:`~diffrec_jax.diffusion.gaussian.reverse_scan`, each re-running the Transformer):
:math:`x_{T-1} \sim \mathcal N(0, I)`, then for t = T-1 .. 0

.. math::
   x \leftarrow c^{(1)}_t f(H, x, t) + c^{(2)}_t x + [t > 0]\,e^{\frac12 \log v_t}\,z,
   \qquad \log v = \log([\tilde\beta_1, \beta_1, \dots, \beta_{T-1}]),

(the released code's variance: the betas, and at index 0, where no noise is added, the
posterior variance of index 1: :func:`~diffrec_jax.diffusion.gaussian.posterior_step` with the
"large" variance). The result
(the approximator's :math:`\hat x_0` at t = 0) is scored against every item embedding by dot
product. Inference draws lambda too (the released code samples it in every forward pass,
training or not); ``lambda_at_inference="mean"`` uses the constant :math:`\lambda_0` instead.
The noise of a user comes from its key ``diffrec_jax.seeds.sampling_keys(sampling_seed, users)``
(the start from its first half, step t's draws from ``fold_in(second half, t)``:
:func:`~diffrec_jax.diffusion.gaussian.reverse_keys`, :func:`step_noise`), so a user's scores do
not depend on the rest of the batch and repeated calls agree.

Attention masking. The released code builds its mask from the *query* positions
(``mask[b, h, i, j] = valid[b, i]``): every real position attends to every position, the
left-padding ones included (their input is the LayerNorm of the learned padding embedding plus
``lambda * (x_t + temb)``), and padding queries get a uniform average. That is the default,
``pad_attention="original"``. ``pad_attention="masked"`` masks padding keys (the usual key
padding mask) and zeroes padding positions after every block, so the padding never matters.

Differences from the released code (besides the options above): the softmax of the loss runs
over the ``n_items`` real items (the original's score matrix also has a column for its padding
item 0); its StepLR schedule (lr x 0.1 every 100 epochs) is only available as
``lr_decay_steps`` counted in optimisation steps (0, the default, keeps lr constant), because
the optimiser does not know the number of steps per epoch; and model selection uses one
validation metric (the original keeps the model whenever any of its six metrics improves).

References:
  Li, Sun, Li, "DiffuRec: A Diffusion Model for Sequential Recommendation", ACM TOIS 2023
  (code: github.com/WHUIR/DiffuRec).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffrec_jax import seeds
from diffrec_jax.diffusion import gaussian, schedules
from diffrec_jax.errors import ConfigError
from diffrec_jax.nn import layers
from diffrec_jax.nn import transformer as tfm
from diffrec_jax.protocol import SeqBatch, StepInfo, Trainable

Params = dict[str, Any]

LN_EPS = 1e-12
"""The original's TF-style LayerNorm epsilon (every LayerNorm of DiffuRec)."""
PAD_ATTENTION = ("original", "masked")
LAMBDA_AT_INFERENCE = ("sample", "mean")


# --- Parameters ---------------------------------------------------------------------------


def _xavier_normal(key: jax.Array, d_in: int, d_out: int) -> jax.Array:
    std = math.sqrt(2.0 / (d_in + d_out))
    return std * jax.random.normal(key, (d_in, d_out), jnp.float32)


def init_params(
    key: jax.Array, n_items: int, d: int, n_blocks: int, n_heads: int, emb_std: float = 1.0
) -> Params:
    """DiffuRec parameters, initialised as the released code.

    Returns:
      ``{"item_emb": [n_items + 1, d] N(0, emb_std^2) (the padding row too: it is a learned
      embedding in the original), "ln_in", "time": {"l1": d -> 4d, "l2": 4d -> d},
      "blocks": [transformer block] * n_blocks, "ln_out"}``. Linear layers use torch's default
      initialisation except the attention output and FFN weights (Xavier normal).
    """
    k_emb, k_time1, k_time2, k_blocks = jax.random.split(key, 4)
    blocks = []
    for kb in jax.random.split(k_blocks, n_blocks):
        k_init, k_o, k_f1, k_f2 = jax.random.split(kb, 4)
        p = tfm.init_block(k_init, d, n_heads)
        p["attn"]["o"]["w"] = _xavier_normal(k_o, d, d)
        p["ffn1"]["w"] = _xavier_normal(k_f1, d, 4 * d)
        p["ffn2"]["w"] = _xavier_normal(k_f2, 4 * d, d)
        blocks.append(p)
    return {
        "item_emb": emb_std * jax.random.normal(k_emb, (n_items + 1, d), jnp.float32),
        "ln_in": tfm.init_layer_norm(d),
        "time": {
            "l1": tfm.init_linear(k_time1, d, 4 * d),
            "l2": tfm.init_linear(k_time2, 4 * d, d),
        },
        "blocks": blocks,
        "ln_out": tfm.init_layer_norm(d),
    }


# --- Forward pieces -----------------------------------------------------------------------


def embed_history(
    params: Params, history: jax.Array, *, key: jax.Array | None = None, rate: float = 0.0
) -> jax.Array:
    """``LN(Drop(E[history]))``: [B, L] -> [B, L, d] (no dropout when `key` is None)."""
    h = tfm.embed(params["item_emb"], history)
    if key is not None and rate > 0:
        h = layers.dropout(key, h, rate)
    return tfm.layer_norm(params["ln_in"], h, LN_EPS)


def time_embedding(params: Params, t: jax.Array, steps: int, rescale: bool = True) -> jax.Array:
    """[B] int timesteps -> [B, d]: Linear(SiLU(Linear(sinusoidal(t * 1000 / T)))).

    The sinusoidal embedding is [cos, sin] (:func:`~diffrec_jax.nn.layers.timestep_embedding`);
    `rescale` multiplies t by 1000 / T first (the original's ``rescale_timesteps=True``).
    """
    d = params["time"]["l2"]["w"].shape[-1]
    t_in = t.astype(jnp.float32) * (1000.0 / steps) if rescale else t
    emb = layers.timestep_embedding(t_in, d)
    return tfm.linear(params["time"]["l2"], jax.nn.silu(tfm.linear(params["time"]["l1"], emb)))


def pad_attention_mask(valid: jax.Array, pad_attention: str) -> jax.Array:
    """[B, L] bool -> [B, 1, L, L] bool attention mask (query i may attend to key j).

    "original": ``valid[b, i]`` for every j (the released code's query-row mask); "masked":
    ``valid[b, j]`` (key padding mask).
    """
    if pad_attention == "original":
        n = valid.shape[-1]
        return jnp.broadcast_to(valid[:, None, :, None], (valid.shape[0], 1, n, n))
    return tfm.attention_mask(valid, causal=False)


def approximator(
    params: Params,
    h: jax.Array,
    x_t: jax.Array,
    t: jax.Array,
    lam: jax.Array,
    valid: jax.Array,
    *,
    steps: int,
    n_heads: int,
    pad_attention: str = "original",
    rescale_timesteps: bool = True,
    key: jax.Array | None = None,
    rate: float = 0.0,
) -> jax.Array:
    """The x0 approximator f(H, x_t, t): [B, d].

    Args:
      params: from :func:`init_params`.
      h: [B, L, d] embedded history (:func:`embed_history`).
      x_t: [B, d] noisy target embedding.
      t: [B] int timesteps.
      lam: [B, L, d] (or broadcastable) lambda weights of ``x_t + temb(t)``.
      valid: [B, L] bool, ``history != n_items``.
      steps: T (for the timestep rescaling).
      n_heads: attention heads.
      pad_attention: "original" or "masked" (module docstring).
      rescale_timesteps: feed t * 1000 / T to the sinusoidal embedding.
      key: dropout key (None: no dropout); `rate` the dropout rate.
    """
    x = h + lam * (x_t + time_embedding(params, t, steps, rescale_timesteps))[:, None, :]
    mask = pad_attention_mask(valid, pad_attention)
    n = len(params["blocks"])
    keys = jax.random.split(key, 2 * n + 1) if key is not None else (None,) * (2 * n + 1)
    m = valid[..., None].astype(x.dtype)
    for i, p in enumerate(params["blocks"]):
        kv, q_mask = None, mask
        if i == n - 1:
            # Only the last position is read out: the last block runs its query, attention
            # output and FFN for that position alone, over the keys/values of all positions
            # (the same values as the full block's last row; LayerNorm is per position).
            kv = tfm.project_kv(p["attn"], tfm.layer_norm(p["ln1"], x, LN_EPS), n_heads)
            x, q_mask = x[:, -1:, :], mask[:, :, -1:, :]
        x = tfm.block(
            p, x, q_mask, n_heads, pre_ln=True, key=keys[2 * i], rate=rate, eps=LN_EPS, kv=kv
        )
        drop_key = keys[2 * i + 1]
        if drop_key is not None and rate > 0:
            x = layers.dropout(drop_key, x, rate)  # TransformerBlock's output dropout
        if pad_attention == "masked" and i < n - 1:
            x = x * m  # (the last position is always a real item)
    last = x[:, -1, :]
    if keys[-1] is not None and rate > 0:
        last = layers.dropout(keys[-1], last, rate)
    return tfm.layer_norm(params["ln_out"], last, LN_EPS)


def step_noise(keys: jax.Array, n: int, d: int) -> tuple[jax.Array, jax.Array]:
    """Standard normal draws of one reverse step for each row: (z [B, d], lambda noise
    [B, n, d]); row b uses ``split(keys[b])`` (first key z, second the lambda noise).

    `keys` are the step's [B] keys (``gaussian.step_key(step_keys, t)``, what
    :func:`~diffrec_jax.diffusion.gaussian.reverse_scan` hands the step).
    """

    def one(k):
        kz, kl = jax.random.split(k)
        return (
            jax.random.normal(kz, (d,), jnp.float32),
            jax.random.normal(kl, (n, d), jnp.float32),
        )

    return jax.vmap(one)(keys)


def sample_x0(
    params: Params,
    history: jax.Array,
    keys: jax.Array,
    *,
    diff: gaussian.GaussianDiffusion,
    n_items: int,
    n_heads: int,
    lambda_uncertainty: float,
    lambda_at_inference: str = "sample",
    pad_attention: str = "original",
    rescale_timesteps: bool = True,
) -> jax.Array:
    """The reverse process (module docstring) as one :func:`jax.lax.scan`: [B, d].

    Args:
      params: from :func:`init_params`.
      history: [B, L] left-padded histories.
      keys: [B] per-row keys (``diffrec_jax.seeds.sampling_keys``); with
        ``start, steps = gaussian.reverse_keys(keys)`` the start is
        ``gaussian.normal(start, (B, d))`` and step t's draws
        ``step_noise(gaussian.step_key(steps, t), L, d)``.
      diff: the diffusion arrays (its "large" reverse variance is used).
      n_items: the padding value.
      lambda_at_inference: "sample" (lambda = l0 + l0 * noise, as the original) or "mean"
        (lambda = l0).
    """
    steps = diff.steps
    valid = history != n_items
    h = embed_history(params, history)
    b, n, d = h.shape
    start_keys, step_keys = gaussian.reverse_keys(keys)

    def step(x, t, k):
        z, lam_noise = step_noise(k, n, d)
        if lambda_at_inference == "sample":
            lam = lambda_uncertainty + lambda_uncertainty * lam_noise
        else:
            lam = jnp.float32(lambda_uncertainty)
        tb = jnp.full((b,), t, jnp.int32)
        x0 = approximator(
            params,
            h,
            x,
            tb,
            lam,
            valid,
            steps=steps,
            n_heads=n_heads,
            pad_attention=pad_attention,
            rescale_timesteps=rescale_timesteps,
        )
        return gaussian.posterior_step(diff, x0, x, t, z, variance="large")

    x = gaussian.normal(start_keys, (b, d))
    return gaussian.reverse_scan(step, x, np.arange(steps - 1, -1, -1), step_keys)


def training_draws(
    key: jax.Array, batch: int, n: int, d: int, steps: int
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """The random draws of one training step, for the whole batch.

    ``k_t, k_noise, k_lam, k_emb, k_drop = jax.random.split(key, 5)``.

    Returns:
      t [B] int32 uniform in [0, T); eps [B, d] and lambda noise [B, L, d] standard normal;
      the embedding-dropout key; the Transformer-dropout key.
    """
    k_t, k_noise, k_lam, k_emb, k_drop = jax.random.split(key, 5)
    t = jax.random.randint(k_t, (batch,), 0, steps, dtype=jnp.int32)
    eps = jax.random.normal(k_noise, (batch, d), jnp.float32)
    lam_noise = jax.random.normal(k_lam, (batch, n, d), jnp.float32)
    return t, eps, lam_noise, k_emb, k_drop


# --- The Trainable ------------------------------------------------------------------------


def _validate(values: Mapping[str, Any]) -> None:
    for name in ("d", "n_blocks", "n_heads", "steps"):
        v = values[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"DiffuRec {name}={v!r}; expected a positive int")
    if values["steps"] < 2:
        raise ConfigError(f"DiffuRec steps={values['steps']}; expected at least 2")
    if values["d"] % values["n_heads"]:
        raise ConfigError(f"DiffuRec d={values['d']} is not divisible by n_heads")
    for name in ("dropout", "emb_dropout"):
        if not 0 <= values[name] < 1:
            raise ConfigError(f"DiffuRec {name}={values[name]!r}; expected 0 <= {name} < 1")
    for name in ("lr", "emb_std"):
        if not values[name] > 0:
            raise ConfigError(f"DiffuRec {name}={values[name]!r}; expected > 0")
    if not values["lambda_uncertainty"] >= 0:
        raise ConfigError(
            f"DiffuRec lambda_uncertainty={values['lambda_uncertainty']!r}; expected >= 0"
        )
    if not values["weight_decay"] >= 0:
        raise ConfigError(f"DiffuRec weight_decay={values['weight_decay']!r}; expected >= 0")
    lds = values["lr_decay_steps"]
    if isinstance(lds, bool) or not isinstance(lds, int) or lds < 0:
        raise ConfigError(f"DiffuRec lr_decay_steps={lds!r}; expected an int >= 0 (0: off)")
    if not 0 < values["lr_decay_rate"] <= 1:
        raise ConfigError(f"DiffuRec lr_decay_rate={values['lr_decay_rate']!r}; expected (0, 1]")
    if values["pad_attention"] not in PAD_ATTENTION:
        raise ConfigError(
            f"DiffuRec pad_attention={values['pad_attention']!r}; expected one of {PAD_ATTENTION}"
        )
    if values["lambda_at_inference"] not in LAMBDA_AT_INFERENCE:
        raise ConfigError(
            f"DiffuRec lambda_at_inference={values['lambda_at_inference']!r}; expected one of "
            f"{LAMBDA_AT_INFERENCE}"
        )
    seeds.check_seed(values["sampling_seed"], "DiffuRec sampling_seed")
    if values["schedule"] not in schedules.SCHEDULES or values["schedule"] in (
        "linear",
        "linear-var",
    ):
        raise ConfigError(
            f"DiffuRec schedule={values['schedule']!r}; expected one of trunc_lin, trunc_cos, "
            "sqrt, cosine, binomial"
        )


def diffurec(
    d: int = 128,
    n_blocks: int = 4,
    n_heads: int = 4,
    steps: int = 32,
    schedule: str = "trunc_lin",
    lambda_uncertainty: float = 0.001,
    dropout: float = 0.1,
    emb_dropout: float = 0.3,
    emb_std: float = 1.0,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    lr_decay_steps: int = 0,
    lr_decay_rate: float = 0.1,
    pad_attention: str = "original",
    lambda_at_inference: str = "sample",
    rescale_timesteps: bool = True,
    sampling_seed: int = 0,
) -> Trainable:
    """DiffuRec as a :class:`~diffrec_jax.protocol.Trainable` (maths in the module docstring).

    Defaults are the released code's (Amazon Beauty settings).

    Args:
      d: embedding and model width (``hidden_size``).
      n_blocks: Transformer blocks; n_heads: attention heads (fixed 4 in the original).
      steps: T; schedule: beta schedule name (see
        :func:`~diffrec_jax.diffusion.schedules.get_schedule`).
      lambda_uncertainty: lambda_0, mean and standard deviation of the element-wise lambda.
      dropout: Transformer / output dropout; emb_dropout: dropout of the item embeddings.
      emb_std: standard deviation of the item-embedding initialisation (torch's 1).
      lr: Adam learning rate; weight_decay: Adam's (coupled, L2) weight decay.
      lr_decay_steps: multiply lr by `lr_decay_rate` every this many optimisation steps
        (staircase; 0: constant lr). The original's StepLR is 100 epochs x 0.1.
      pad_attention: "original" or "masked" (module docstring).
      lambda_at_inference: "sample" (original) or "mean".
      rescale_timesteps: t * 1000 / T into the time embedding (original: True).
      sampling_seed: seed of the inference noise (``diffrec_jax.seeds.sampling_keys``: one key
        per user).

    Returns:
      ``Trainable(init, loss, score, optimizer)``, params as :func:`init_params`, model state
      ``()``. The loss's draws are :func:`training_draws`; aux holds "ce" (batch mean).
    """
    values = dict(locals())
    _validate(values)
    betas = schedules.get_schedule(schedule, steps)
    diff = gaussian.make_diffusion(betas, "x0")

    def init(key: jax.Array, n_items: int) -> tuple[Params, tuple]:
        return init_params(key, n_items, d, n_blocks, n_heads, emb_std), ()

    def loss(params: Params, state: tuple, batch: SeqBatch, key: jax.Array, info: StepInfo):
        table = params["item_emb"]
        n_items = table.shape[0] - 1
        history = batch.history
        b, n = history.shape
        assert batch.targets is not None, "training batches carry their targets"
        target = batch.targets[:, 0]
        t, eps, lam_noise, k_emb, k_drop = training_draws(key, b, n, d, steps)
        x0 = jnp.take(table, target, axis=0)
        x_t = gaussian.q_sample(diff, x0, t, eps)
        lam = lambda_uncertainty + lambda_uncertainty * lam_noise
        h = embed_history(params, history, key=k_emb, rate=emb_dropout)
        out = approximator(
            params,
            h,
            x_t,
            t,
            lam,
            history != n_items,
            steps=steps,
            n_heads=n_heads,
            pad_attention=pad_attention,
            rescale_timesteps=rescale_timesteps,
            key=k_drop,
            rate=dropout,
        )
        logits = out @ table[:n_items].T
        ce = (
            jax.nn.logsumexp(logits, axis=-1)
            - jnp.take_along_axis(logits, jnp.minimum(target, n_items - 1)[:, None], axis=-1)[:, 0]
        )
        w = jnp.ones((b,), jnp.float32) if batch.weights is None else batch.weights
        w = w * (target != n_items)
        value = jnp.sum(w * ce) / jnp.maximum(jnp.sum(w), 1.0)
        return value, (state, {"ce": jax.lax.stop_gradient(value)})

    def score(params: Params, batch: SeqBatch) -> jax.Array:
        table = params["item_emb"]
        n_items = table.shape[0] - 1
        x = sample_x0(
            params,
            batch.history,
            seeds.sampling_keys(sampling_seed, batch.users),
            diff=diff,
            n_items=n_items,
            n_heads=n_heads,
            lambda_uncertainty=lambda_uncertainty,
            lambda_at_inference=lambda_at_inference,
            pad_attention=pad_attention,
            rescale_timesteps=rescale_timesteps,
        )
        return x @ table[:n_items].T

    def optimizer() -> optax.GradientTransformation:
        rate = lr
        if lr_decay_steps > 0:
            rate = optax.exponential_decay(lr, lr_decay_steps, lr_decay_rate, staircase=True)
        return layers.torch_adam(rate, weight_decay)  # torch Adam's weight_decay

    return Trainable(init, loss, score, optimizer)


DEFAULTS: dict[str, Any] = {
    name: p.default for name, p in inspect.signature(diffurec).parameters.items()
}
"""Every argument of :func:`diffurec` and its default."""

TRAIN_DEFAULTS: dict[str, Any] = {
    "max_len": 50,
    "batch_size": 512,
    "max_epochs": 500,
    # The original evaluates every 20 epochs and stops after 5 evaluations without improvement.
    "eval_every": 20,
    "patience": 5,
    "select_metric": "NDCG@20",
}
"""DiffuRec's history length and training-loop hyperparameters (the released defaults)."""

RECOMMENDER_DEFAULTS: dict[str, Any] = {**DEFAULTS, **TRAIN_DEFAULTS}
"""Every hyperparameter of the registry entry ``"diffurec"`` (its Trainable is :func:`diffurec`,
on "prefix" examples; validation metrics at 5, 10, 20) and its default."""
