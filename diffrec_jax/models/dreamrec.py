r"""DreamRec: guided diffusion that generates the next item's embedding (Yang et al., NeurIPS 2023).

One training example is a prefix of a training sequence (its last ``max_len = 10`` items) and the
item after it ("prefix" examples of :mod:`diffrec_jax.protocol`). With ``E`` the item
table (``[n_items + 1, d]``, last row the padding item, as the original's ``item_num``):

- Guidance :math:`h` (:func:`guidance`, the original ``Tenc.cacu_h``): the history is laid out
  right-padded as the original (items at positions 0..n-1, oldest first); ``s = Drop(E[items] +
  P) * mask`` with learned positional embeddings ``P`` ([max_len, d]);
  ``q = LN_1(s)``; one causal single-head attention with queries from ``q`` and keys/values
  from ``s`` (padding keys masked, logits scaled by :math:`1/\sqrt d`, dropout on the
  probabilities, no output projection) plus the residual ``q``;
  ``u = LN_2(\cdot)``; FFN ``LN_ff(u + Drop(W_2 \mathrm{ReLU}(W_1 u)))`` (width d);
  then ``LN_3(\cdot * mask)`` and :math:`h` = the output at the last item (position n-1).
  In training, :math:`h` is replaced by a learned null embedding :math:`\varnothing` with
  probability ``p_uncond`` (0.1) per example: classifier-free guidance.
- Denoiser :math:`f(x_t, h, t)` = ``Linear(3d -> d)(concat(x_t, h, temb(t)))`` (``mlp1``, the
  released configurations; ``mlp2`` is Linear(3d -> 2d), GELU, Linear(2d -> d)), with
  ``temb(t) = Linear(2d -> d)(GELU(Linear(d -> 2d)(sinusoidal(t))))``, the sinusoidal embedding
  being DreamRec's ``[sin(t f), cos(t f)]`` with :math:`f_k = e^{-k \ln(10^4)/(d/2 - 1)}`.
  It predicts :math:`x_0`.
- Loss: :math:`t \sim U\{0..T-1\}`, :math:`x_t = \sqrt{\bar\alpha_t} x_0 +
  \sqrt{1-\bar\alpha_t}\epsilon` with :math:`x_0 = E[\mathrm{target}]`, and
  :math:`\mathrm{mean}_d (x_0 - f(x_t, h, t))^2` averaged over the batch (MSE only; gradients
  reach ``E`` through both the target and the history).
- Sampling (:func:`sample_x0`, one :func:`jax.lax.scan` of T steps, the shared
  :func:`~diffrec_jax.diffusion.gaussian.reverse_scan`): :math:`x \sim \mathcal N(0, I)`; for
  t = T-1 .. 0: :math:`\hat x_0 = (1 + w) f(x, h, t) - w f(x, \varnothing, t)`,
  :math:`x \leftarrow c^{(1)}_t \hat x_0 + c^{(2)}_t x + [t > 0] \sqrt{\tilde\beta_t} z`
  (:func:`~diffrec_jax.diffusion.gaussian.posterior_step` with the posterior variance).
  The final :math:`x` (the "oracle" item embedding) is scored against every item embedding by
  dot product. The noise of a user comes from its key
  ``diffrec_jax.seeds.sampling_keys(sampling_seed, users)`` (the start from its first half,
  step t's from ``fold_in(second half, t)``: :func:`~diffrec_jax.diffusion.gaussian.reverse_keys`),
  so a user's scores do not depend on the rest of the batch.

Schedules (:func:`betas`, DreamRec's names for schedules of
:mod:`diffrec_jax.diffusion.schedules`): ``"exp"`` (the default, YooChoose),
``"linear"`` (linspace(beta_start, beta_end, T), Zhihu), ``"cosine"`` (Nichol & Dhariwal,
clipped to [1e-4, 0.9999], KuaiRec) and ``"sqrt"``. Defaults are the released YooChoose command
(T = 500, lr 1e-3, exp schedule, w = 2, AdamW with weight decay 0, d = 64, batch 256,
dropout 0.1, p = 0.1); KuaiRec used T = 2000.

Differences from the released code: histories are left-padded in this library and converted
to the original's right-padded layout inside :func:`guidance` (same result); the query mask of
the attention, which only touches padding positions, is left out (it cannot change h); scores
have no padding column (the original ranks its padding item too); batches are the shuffled
epochs of the training loop (the original draws every batch independently with
``DataFrame.sample``); the schedule is computed in float64 (the original in float32); and
training stops early on validation (the original trains a fixed 1000 epochs and reports
validation and test every 10).

References:
  Yang, Wu, Wang, Wang, Yuan, He, "Generate What You Prefer: Reshaping Sequential
  Recommendation via Guided Diffusion", NeurIPS 2023 (code: github.com/YangZhengyi98/DreamRec).
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

SCHEDULES = ("exp", "linear", "cosine", "sqrt")
DIFFUSERS = ("mlp1", "mlp2")
ATTN_MASK_VALUE = -(2.0**32) + 1  # the original's padding logit


# --- Schedules ----------------------------------------------------------------------------


def betas(name: str, steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """DreamRec's beta schedules, [T] float64 (from :mod:`diffrec_jax.diffusion.schedules`).

    - "exp": :func:`~diffrec_jax.diffusion.schedules.exp`,
      ``1 - exp(-0.1/T - x (10 - 0.1) / (2 T^2))`` with x = linspace(1, 2T + 1, T).
    - "linear": linspace(beta_start, beta_end, T) (``schedules.linear`` with scale 1).
    - "cosine": abar(u) = cos^2((u + 0.008)/1.008 pi/2) on T + 1 points,
      beta = clip(1 - abar[1:]/abar[:-1], 1e-4, 0.9999) (``schedules.cosine``).
    - "sqrt": beta_t = min(1 - abar((t+1)/T)/abar(t/T), 0.999), abar(u) = 1 - sqrt(u + 1e-4)
      (``schedules.sqrt``).

    Raises:
      ConfigError: unknown name, steps < 1, beta_start > beta_end, or a beta outside (0, 1).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"DreamRec steps={steps!r}; expected a positive int")
    if name == "exp":
        return schedules.exp(steps)
    if name == "linear":
        return schedules.linear(steps, 1.0, beta_start, beta_end)
    if name == "cosine":
        return schedules.cosine(steps, max_beta=0.9999, min_beta=0.0001)
    if name == "sqrt":
        return schedules.sqrt(steps)
    raise ConfigError(f"DreamRec schedule={name!r}; expected one of {SCHEDULES}")


# --- Parameters ---------------------------------------------------------------------------


def init_params(
    key: jax.Array, n_items: int, d: int, max_len: int, diffuser: str = "mlp1"
) -> Params:
    """DreamRec parameters, initialised as the released code.

    Returns:
      ``{"item_emb": [n_items + 1, d], "null": [d], "pos": [max_len, d]`` (all N(0, 1)),
      ``"ln1", "ln2", "ln3", "ln_ff"`` (LayerNorms), ``"attn": {"q","k","v"}`` (d -> d),
      ``"ffn1", "ffn2"`` (d -> d), ``"time": {"l1": d -> 2d, "l2": 2d -> d}``,
      ``"diffuser": [linear, ...]`` (``[3d -> d]`` for mlp1, ``[3d -> 2d, 2d -> d]`` for
      mlp2)}``; linear layers with torch's default initialisation.
    """
    ks = jax.random.split(key, 12)
    sizes = [3 * d, d] if diffuser == "mlp1" else [3 * d, 2 * d, d]
    dkeys = jax.random.split(ks[11], len(sizes) - 1)
    return {
        "item_emb": jax.random.normal(ks[0], (n_items + 1, d), jnp.float32),
        "null": jax.random.normal(ks[1], (d,), jnp.float32),
        "pos": jax.random.normal(ks[2], (max_len, d), jnp.float32),
        "ln1": tfm.init_layer_norm(d),
        "ln2": tfm.init_layer_norm(d),
        "ln3": tfm.init_layer_norm(d),
        "ln_ff": tfm.init_layer_norm(d),
        "attn": {
            "q": tfm.init_linear(ks[3], d, d),
            "k": tfm.init_linear(ks[4], d, d),
            "v": tfm.init_linear(ks[5], d, d),
        },
        "ffn1": tfm.init_linear(ks[6], d, d),
        "ffn2": tfm.init_linear(ks[7], d, d),
        "time": {"l1": tfm.init_linear(ks[8], d, 2 * d), "l2": tfm.init_linear(ks[9], 2 * d, d)},
        "diffuser": [
            tfm.init_linear(k, a, b) for k, a, b in zip(dkeys, sizes[:-1], sizes[1:], strict=True)
        ],
    }


# --- Forward pieces -----------------------------------------------------------------------


def right_pad(history: jax.Array, pad: int) -> tuple[jax.Array, jax.Array]:
    """Left-padded [B, L] histories -> (right-padded [B, L], lengths [B] int32)."""
    n_pos = history.shape[1]
    lengths = jnp.sum(history != pad, axis=1).astype(jnp.int32)
    src = (n_pos - lengths)[:, None] + jnp.arange(n_pos)[None, :]
    moved = jnp.take_along_axis(history, jnp.minimum(src, n_pos - 1), axis=1)
    return jnp.where(jnp.arange(n_pos)[None, :] < lengths[:, None], moved, pad), lengths


def guidance(
    params: Params, history: jax.Array, *, key: jax.Array | None = None, rate: float = 0.0
) -> jax.Array:
    """The guidance h of every history (module docstring), before the null replacement: [B, d].

    Args:
      params: from :func:`init_params`.
      history: [B, L] left-padded histories (pad = n_items), L = max_len.
      key: dropout key (None: no dropout); `rate` the dropout rate.
    """
    table = params["item_emb"]
    pad = table.shape[0] - 1
    d = table.shape[1]
    states, lengths = right_pad(history, pad)
    n_pos = states.shape[1]
    if params["pos"].shape[0] != n_pos:
        raise ConfigError(
            f"DreamRec history length {n_pos} differs from its positional table "
            f"({params['pos'].shape[0]}); build it with the same max_len"
        )
    keys = jax.random.split(key, 3) if key is not None else (None,) * 3
    valid = states != pad
    mask = valid[..., None].astype(jnp.float32)
    s = tfm.embed(table, states) + params["pos"][None]
    if keys[0] is not None and rate > 0:
        s = layers.dropout(keys[0], s, rate)
    s = s * mask
    q_in = tfm.layer_norm(params["ln1"], s)
    q = tfm.linear(params["attn"]["q"], q_in)
    k = tfm.linear(params["attn"]["k"], s)
    v = tfm.linear(params["attn"]["v"], s)
    logits = jnp.einsum("bqc,bkc->bqk", q, k) / math.sqrt(d)
    allowed = valid[:, None, :] & jnp.tril(jnp.ones((n_pos, n_pos), bool))[None]
    probs = jax.nn.softmax(jnp.where(allowed, logits, ATTN_MASK_VALUE), axis=-1)
    if keys[1] is not None and rate > 0:
        probs = layers.dropout(keys[1], probs, rate)
    a = jnp.einsum("bqk,bkc->bqc", probs, v) + q_in
    u = tfm.layer_norm(params["ln2"], a)
    f = tfm.linear(params["ffn2"], jax.nn.relu(tfm.linear(params["ffn1"], u)))
    if keys[2] is not None and rate > 0:
        f = layers.dropout(keys[2], f, rate)
    out = tfm.layer_norm(params["ln3"], tfm.layer_norm(params["ln_ff"], f + u) * mask)
    last = jnp.maximum(lengths - 1, 0)
    return jnp.take_along_axis(out, last[:, None, None], axis=1)[:, 0]


def sinusoidal(t: jax.Array, dim: int) -> jax.Array:
    """DreamRec's SinusoidalPositionEmbeddings: [B] -> [B, dim] = [sin(t f), cos(t f)],
    f_k = exp(-k ln(10000) / (dim/2 - 1)), k < dim/2 (dim even, >= 4)."""
    half = dim // 2
    freqs = jnp.exp(jnp.arange(half, dtype=jnp.float32) * -(math.log(10000.0) / (half - 1)))
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


def denoise(params: Params, x: jax.Array, h: jax.Array, t: jax.Array) -> jax.Array:
    """f(x_t, h, t): the x0 prediction, [B, d] (x_t, h [B, d]; t [B] int)."""
    d = x.shape[-1]
    temb = tfm.linear(
        params["time"]["l2"],
        jax.nn.gelu(tfm.linear(params["time"]["l1"], sinusoidal(t, d)), approximate=False),
    )
    z = jnp.concatenate([x, h, temb], axis=-1)
    layers_ = params["diffuser"]
    for i, p in enumerate(layers_):
        z = tfm.linear(p, z)
        if i < len(layers_) - 1:
            z = jax.nn.gelu(z, approximate=False)
    return z


def guided_x0(params: Params, x: jax.Array, h: jax.Array, t: jax.Array, w: float) -> jax.Array:
    """Classifier-free guidance: (1 + w) f(x, h, t) - w f(x, null, t); [B, d]."""
    null = jnp.broadcast_to(params["null"], h.shape)
    return (1.0 + w) * denoise(params, x, h, t) - w * denoise(params, x, null, t)


def sample_x0(
    params: Params, h: jax.Array, keys: jax.Array, *, diff: gaussian.GaussianDiffusion, w: float
) -> jax.Array:
    """The guided reverse process (module docstring) as one :func:`jax.lax.scan`: [B, d].

    Args:
      params: from :func:`init_params`.
      h: [B, d] guidance (:func:`guidance`, no dropout, no null replacement).
      keys: [B] per-row keys (``diffrec_jax.seeds.sampling_keys``); with
        ``start, steps = gaussian.reverse_keys(keys)`` the start is ``gaussian.normal(start,
        (B, d))`` and step t's noise ``gaussian.normal(gaussian.step_key(steps, t), (B, d))``.
      diff: the diffusion arrays.
      w: guidance strength.
    """
    b, d = h.shape
    start_keys, step_keys = gaussian.reverse_keys(keys)

    def step(x, t, k):
        x0 = guided_x0(params, x, h, jnp.full((b,), t, jnp.int32), w)
        return gaussian.posterior_step(diff, x0, x, t, gaussian.normal(k, x.shape, x.dtype))

    x = gaussian.normal(start_keys, (b, d))
    return gaussian.reverse_scan(step, x, np.arange(diff.steps - 1, -1, -1), step_keys)


def training_draws(
    key: jax.Array, batch: int, d: int, steps: int, p_uncond: float
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The random draws of one training step, for the whole batch.

    ``k_t, k_noise, k_null, k_drop = jax.random.split(key, 4)``.

    Returns:
      t [B] int32 uniform in [0, T); eps [B, d] standard normal; keep [B] bool (False with
      probability `p_uncond`: h replaced by the null embedding); the dropout key.
    """
    k_t, k_noise, k_null, k_drop = jax.random.split(key, 4)
    t = jax.random.randint(k_t, (batch,), 0, steps, dtype=jnp.int32)
    eps = jax.random.normal(k_noise, (batch, d), jnp.float32)
    keep = jax.random.uniform(k_null, (batch,)) >= p_uncond
    return t, eps, keep, k_drop


# --- The Trainable ------------------------------------------------------------------------


def _validate(values: Mapping[str, Any]) -> None:
    for name in ("d", "steps", "max_len"):
        v = values[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"DreamRec {name}={v!r}; expected a positive int")
    if values["d"] < 4 or values["d"] % 2:
        raise ConfigError(f"DreamRec d={values['d']}; expected an even int >= 4")
    if not 0 <= values["dropout"] < 1:
        raise ConfigError(f"DreamRec dropout={values['dropout']!r}; expected 0 <= dropout < 1")
    if not 0 <= values["p_uncond"] < 1:
        raise ConfigError(f"DreamRec p_uncond={values['p_uncond']!r}; expected [0, 1)")
    if not values["w"] >= 0:
        raise ConfigError(f"DreamRec w={values['w']!r}; expected >= 0")
    if not values["lr"] > 0:
        raise ConfigError(f"DreamRec lr={values['lr']!r}; expected > 0")
    if not values["weight_decay"] >= 0:
        raise ConfigError(f"DreamRec weight_decay={values['weight_decay']!r}; expected >= 0")
    if values["diffuser"] not in DIFFUSERS:
        raise ConfigError(f"DreamRec diffuser={values['diffuser']!r}; expected one of {DIFFUSERS}")
    seeds.check_seed(values["sampling_seed"], "DreamRec sampling_seed")


def dreamrec(
    d: int = 64,
    steps: int = 500,
    schedule: str = "exp",
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    w: float = 2.0,
    p_uncond: float = 0.1,
    dropout: float = 0.1,
    diffuser: str = "mlp1",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    max_len: int = 10,
    sampling_seed: int = 0,
) -> Trainable:
    """DreamRec as a :class:`~diffrec_jax.protocol.Trainable` (maths in the module docstring).

    Defaults are the released YooChoose command.

    Args:
      d: embedding width (``hidden_factor``).
      steps: T; schedule, beta_start, beta_end: see :func:`betas`.
      w: guidance strength of the sampler.
      p_uncond: probability of replacing h by the null embedding in training.
      dropout: embedding, attention and FFN dropout of the guidance encoder.
      diffuser: "mlp1" (Linear(3d -> d)) or "mlp2".
      lr: AdamW learning rate; weight_decay: AdamW's decoupled weight decay (original: 0).
      max_len: history length (size of the positional table).
      sampling_seed: seed of the sampling noise (``diffrec_jax.seeds.sampling_keys``: one key
        per user).

    Returns:
      ``Trainable(init, loss, score, optimizer)``, params as :func:`init_params`, model state
      ``()``. The loss's draws are :func:`training_draws`; aux holds "mse" (batch mean).
    """
    values = dict(locals())
    _validate(values)
    diff = gaussian.make_diffusion(betas(schedule, steps, beta_start, beta_end), "x0")

    def init(key: jax.Array, n_items: int) -> tuple[Params, tuple]:
        return init_params(key, n_items, d, max_len, diffuser), ()

    def loss(params: Params, state: tuple, batch: SeqBatch, key: jax.Array, info: StepInfo):
        table = params["item_emb"]
        pad = table.shape[0] - 1
        b = batch.history.shape[0]
        assert batch.targets is not None, "training batches carry their targets"
        target = batch.targets[:, 0]
        t, eps, keep, k_drop = training_draws(key, b, d, steps, p_uncond)
        h = guidance(params, batch.history, key=k_drop, rate=dropout)
        h = jnp.where(keep[:, None], h, params["null"][None, :])
        x0 = jnp.take(table, target, axis=0)
        x_t = gaussian.q_sample(diff, x0, t, eps)
        mse = jnp.mean((x0 - denoise(params, x_t, h, t)) ** 2, axis=-1)
        wts = jnp.ones((b,), jnp.float32) if batch.weights is None else batch.weights
        wts = wts * (target != pad)
        value = jnp.sum(wts * mse) / jnp.maximum(jnp.sum(wts), 1.0)
        return value, (state, {"mse": jax.lax.stop_gradient(value)})

    def score(params: Params, batch: SeqBatch) -> jax.Array:
        table = params["item_emb"]
        n_items = table.shape[0] - 1
        h = guidance(params, batch.history)
        keys = seeds.sampling_keys(sampling_seed, batch.users)
        x = sample_x0(params, h, keys, diff=diff, w=w)
        return x @ table[:n_items].T

    def optimizer() -> optax.GradientTransformation:
        return optax.adamw(lr, eps=1e-8, weight_decay=weight_decay)

    return Trainable(init, loss, score, optimizer)


DEFAULTS: dict[str, Any] = {
    name: p.default for name, p in inspect.signature(dreamrec).parameters.items()
}
"""Every argument of :func:`dreamrec` and its default."""

TRAIN_DEFAULTS: dict[str, Any] = {
    "batch_size": 256,
    "max_epochs": 1000,
    # The original reports validation every 10 epochs for 1000 epochs; we stop after 5
    # evaluations without improvement.
    "eval_every": 10,
    "patience": 5,
    "select_metric": "NDCG@20",
}
"""DreamRec's training-loop hyperparameters."""

RECOMMENDER_DEFAULTS: dict[str, Any] = {**DEFAULTS, **TRAIN_DEFAULTS}
"""Every hyperparameter of the registry entry ``"dreamrec"`` (its Trainable is :func:`dreamrec`,
on "prefix" examples; validation metrics at 5, 10, 20) and its default."""
