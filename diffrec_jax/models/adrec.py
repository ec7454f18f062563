r"""ADRec: auto-regressive diffusion with token-level independent noise (Chen et al., KDD 2025).

Architecture (d = 128, 4 heads, post-LN blocks with a GELU FFN of width 4d, LayerNorm eps
1e-12 as the original's TF-style LayerNorm):

- History: item embedding -> dropout 0.3 -> LayerNorm; no positional embedding. A causal
  2-block Transformer (dropout 0.1, causal + padding mask) gives ``rep`` [B, L, d].
- Denoiser: ``h = rep + lambda (x_t + temb(t))`` with lambda = 0.001 and
  ``temb = Linear(4d, d)(SiLU(Linear(d, 4d)(sinusoidal(t * 1000 / T))))``; a second causal
  2-block Transformer maps h to the prediction of x0 at every position.

Training ("sequence" examples, one per user: history ``seq[:-1][-L:]``, targets shifted by one):
every real target token gets its own timestep t ~ U{0..T-1} and noise,
``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` with x0 the (raw) target embedding (the shared
:func:`diffrec_jax.diffusion.gaussian.q_sample` with [B, L] timesteps); padding keeps x0 and
t = 0. Two losses on the denoised output ``o``:

- ``ce``: full-softmax cross entropy of ``o @ E[:n_items]^T`` at every real position, averaged
  over the real tokens of the batch (as the original's ``CrossEntropyLoss(ignore_index=0)``;
  computed by :func:`diffrec_jax.models.sasrec.ce_token_mean` on the real positions only, in
  chunks);
- ``mse``: per sequence, ``sum_l m_l / sum_l m_l * mean_d (o - x0)^2``, averaged over sequences
  (the original's per-sequence mask weighting).

They are combined as the original's PCGrad optimiser wrapper does for the two objectives
``[ce, loss_scale * mse]``: every parameter is shared by both, so with ``pcgrad=False`` the
update direction is the mean of the two gradients, and with ``pcgrad=True`` each gradient is
first projected off the other when they conflict (Yu et al. 2020; :func:`pcgrad_combine`). The
shared training loop differentiates one scalar, so :func:`adrec_trainable`'s loss returns
``0.5 (ce + loss_scale mse)`` whose gradient is that mean, or (PCGrad) a surrogate
``sum(stop_gradient(g) * params) - stop_gradient(...) + loss`` whose value is the loss and whose
gradient is the combined gradient ``g`` (both task gradients come from one forward pass and two
VJPs). Frozen parameters (stage 2) get no gradient and do not enter the projection, as
``requires_grad=False`` tensors in the original.

Inference: the last position starts from N(0, I) and runs T ancestral steps in one
``jax.lax.scan`` (:func:`diffrec_jax.diffusion.gaussian.reverse_scan`):
``x_{t-1} = c1_t x0_hat + c2_t x_t + [t > 0] exp(0.5 v_t) z`` with
``v = log([post_var_1, beta_1, ..., beta_{T-1}])``
(:func:`~diffrec_jax.diffusion.gaussian.posterior_step` with the "large" variance); the earlier
positions are fed their clean targets (the next history item) at t = 0. The noise of a user comes
from its key ``diffrec_jax.seeds.sampling_keys(sampling_seed, users)`` (scores do not depend on
batch composition): the start from its first half, step t's from ``fold_in(second half, t)``
(:func:`~diffrec_jax.diffusion.gaussian.reverse_keys`). Score = final vector
``@ E[:n_items]^T``. Two samplers give the same scores: ``"full"`` re-runs the denoiser over all
L positions at every step (as the original); ``"cached"`` (default) uses that attention is causal
and the prefix is constant: the keys/values of the L - 1 prefix positions of every denoiser
block are computed once, and each step runs only the last token through the blocks
(``transformer.block(..., kv=...)``).

Three training stages (:func:`fit_stages`): (1) pretrain a SASRec without positional embeddings
(:func:`diffrec_jax.models.sasrec.sasrec` with ``positions=False``: 2 causal post-LN blocks, CE
at every position, :func:`pretrain_trainable`); (2) copy its item
table, freeze it (no gradient, ``optax.set_to_zero``), train the rest for ``freeze_epochs``
epochs; (3) unfreeze and train everything with early stopping. Each stage runs the shared loop
(:func:`diffrec_jax.train.train`) with Adam (lr 1e-3, L2 weight decay 1e-5 added to the gradient
as torch's ``Adam(weight_decay=)``) and a cosine learning-rate decay over the stage's steps.
The registry entry ``"adrec"`` (kind "staged") fits with :func:`fit_with_record`, scores with
:func:`score_from_hparams` and validates with :func:`check_hparams`.

Differences from the original code (github.com/Nemo-1024/ADRec):

- The original runs stages 2 and 3 as one run (one Adam state; one per-epoch
  ``CosineAnnealingLR(T_max=500)``; the embedding is unfrozen at the start of epoch 6); here
  they are two runs of the shared loop, each with a fresh Adam state and its own per-step cosine
  decay, and validation (every ``eval_every`` epochs, ``patience`` evaluations) starts in
  stage 3. Model selection uses one metric (``select_metric``), the original any improving one.
- Attention masks padding keys (as the reference description); the original masks padding
  *queries* only, so its real tokens also attend to left-padding positions.
- Softmaxes are over the ``n_items`` real items; the original's also include its padding row.
- Stage 1: the original's pretraining SASRec (``--model pretrain``) has learned positions and
  applies LayerNorm before the embedding dropout; here (the reference description) no
  positions, and ``sasrec.py``'s post-LN layout (dropout, then LayerNorm), its initialisation
  (item table N(0, 1/d), torch.nn.Linear layers; the original N(0, 0.1) everywhere) and its
  LayerNorm on the embeddings with eps 1e-12 (torch's default 1e-5 in the original).
- Initialisation of ADRec's own layers: Transformer weights Xavier-normal, biases as
  torch.nn.Linear (as the original); without pretraining the item table is N(0, 0.1) with a
  zero padding row (the last row here, row 0 in the original).

References:
  Chen, Xu, Jiang, "Unlocking the Power of Diffusion Models in Sequential Recommendation: A
  Simple and Effective Approach", KDD 2025 (arXiv 2505.19544).
  Yu, Kumar, Gupta, Levine, Hausman, Finn, "Gradient Surgery for Multi-Task Learning",
  NeurIPS 2020.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffrec_jax import seeds
from diffrec_jax.diffusion import gaussian
from diffrec_jax.diffusion.schedules import SCHEDULES, get_schedule
from diffrec_jax.errors import ConfigError
from diffrec_jax.models import sasrec as sasrec_model
from diffrec_jax.nn import layers, packing
from diffrec_jax.nn import transformer as tfm
from diffrec_jax.protocol import SeqBatch, SeqFitData, StepInfo, Trainable
from diffrec_jax.train import seq_plan, seq_train_config, steps_per_epoch, train, training_record

Params = dict[str, Any]

LN_EPS = 1e-12
"""LayerNorm epsilon of ADRec's blocks and history norm (the original's TF-style LayerNorm)."""
SAMPLERS = ("cached", "full")


class ADRecConfig(NamedTuple):
    """Static architecture, loss and sampling settings (hashable).

    Attributes:
      d: embedding / model width.
      n_heads: attention heads.
      encoder_blocks: blocks of the causal history encoder.
      denoiser_blocks: blocks of the causal denoiser.
      emb_dropout: dropout on the history item embeddings (training only).
      dropout: dropout inside the Transformer blocks (training only).
      lam: lambda, the weight of ``x_t + temb`` added to the history representation.
      steps: T diffusion steps.
      schedule: beta schedule name (:func:`diffrec_jax.diffusion.schedules.get_schedule`).
      loss_scale: weight of the mse objective.
      pcgrad: combine the two objectives' gradients with PCGrad (else their mean).
      sampler: "cached" or "full" (see the module docstring).
      sampling_seed: seed of the inference noise (``diffrec_jax.seeds.sampling_keys``: one
        key per user).
      pack_ratio: train on packed rows (:mod:`diffrec_jax.nn.packing`; the same losses up
        to dropout masks): the real tokens of B examples in ``ceil(pack_ratio * B)`` rows, a
        batch that does not fit unpacked. 0: off.
    """

    d: int = 128
    n_heads: int = 4
    encoder_blocks: int = 2
    denoiser_blocks: int = 2
    emb_dropout: float = 0.3
    dropout: float = 0.1
    lam: float = 0.001
    steps: int = 32
    schedule: str = "trunc_lin"
    loss_scale: float = 1.0
    pcgrad: bool = False
    sampler: str = "cached"
    sampling_seed: int = 0
    pack_ratio: float = packing.DEFAULT_RATIO


def check_config(cfg: ADRecConfig) -> ADRecConfig:
    """Validates `cfg`; raises ConfigError naming the bad field."""
    for name in ("d", "n_heads", "encoder_blocks", "denoiser_blocks", "steps"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ConfigError(f"ADRec {name}={v!r}; expected a positive int")
    if cfg.d % cfg.n_heads:
        raise ConfigError(f"ADRec d={cfg.d} is not divisible by n_heads={cfg.n_heads}")
    if cfg.d % 2:
        raise ConfigError(f"ADRec d={cfg.d}; the sinusoidal time embedding needs an even d")
    for name in ("emb_dropout", "dropout"):
        v = getattr(cfg, name)
        if not 0 <= v < 1:
            raise ConfigError(f"ADRec {name}={v!r}; expected 0 <= {name} < 1")
    if not math.isfinite(cfg.lam) or not math.isfinite(cfg.loss_scale):
        raise ConfigError(f"ADRec lam={cfg.lam!r}, loss_scale={cfg.loss_scale!r}: not finite")
    if cfg.schedule not in SCHEDULES or cfg.schedule in ("linear", "linear-var"):
        raise ConfigError(
            f"ADRec schedule={cfg.schedule!r}; expected one of the unscaled schedules "
            f"{[s for s in SCHEDULES if s not in ('linear', 'linear-var')]}"
        )
    if not isinstance(cfg.pcgrad, bool | np.bool_):
        raise ConfigError(f"ADRec pcgrad={cfg.pcgrad!r}; expected True or False")
    if cfg.sampler not in SAMPLERS:
        raise ConfigError(f"ADRec sampler={cfg.sampler!r}; expected one of {SAMPLERS}")
    seeds.check_seed(cfg.sampling_seed, "ADRec sampling_seed")
    if not 0 <= cfg.pack_ratio <= 1:
        raise ConfigError(f"ADRec pack_ratio={cfg.pack_ratio!r}; expected 0 <= pack_ratio <= 1")
    return cfg


# -- diffusion arrays -----------------------------------------------------------------------------


def make_diffusion(cfg: ADRecConfig) -> gaussian.GaussianDiffusion:
    """The diffusion of `cfg` (schedule `cfg.schedule` with `cfg.steps` steps, predicting x0)."""
    return gaussian.make_diffusion(get_schedule(cfg.schedule, cfg.steps), "x0")


# -- parameters -----------------------------------------------------------------------------------


def _xavier_blocks(key: jax.Array, n: int, d: int, n_heads: int) -> list[Params]:
    """`n` post-LN blocks: Xavier-normal weights (ADRec's init_weights), torch-default biases."""
    blocks = []
    for k in jax.random.split(key, n):
        k_init, k_w = jax.random.split(k)
        p = tfm.init_block(k_init, d, n_heads)
        linears = [p["attn"][c] for c in "qkvo"] + [p["ffn1"], p["ffn2"]]
        for lin, kk in zip(linears, jax.random.split(k_w, len(linears)), strict=True):
            d_in, d_out = lin["w"].shape
            lin["w"] = math.sqrt(2.0 / (d_in + d_out)) * jax.random.normal(kk, (d_in, d_out))
        blocks.append(p)
    return blocks


def init_params(
    key: jax.Array, n_items: int, cfg: ADRecConfig, item_table: jax.Array | None = None
) -> Params:
    """ADRec parameters.

    Returns ``{"item_emb": [n_items + 1, d] (last row padding), "hist_norm": LayerNorm,
    "encoder": [block] * encoder_blocks, "time_embed": [Linear(d, 4d), Linear(4d, d)],
    "denoiser": [block] * denoiser_blocks}``; `item_table` (e.g. the pretrained one) replaces
    the random N(0, 0.1) table (copied).
    """
    k_emb, k_enc, k_t1, k_t2, k_den = jax.random.split(key, 5)
    d = cfg.d
    if item_table is None:
        table = tfm.init_embedding(k_emb, n_items, d, std=0.1)
    else:
        table = jnp.array(item_table, jnp.float32)  # a copy: the loop donates its state
        if table.shape != (n_items + 1, d):
            raise ConfigError(
                f"ADRec item_table has shape {table.shape}; expected {(n_items + 1, d)}"
            )
    return {
        "item_emb": table,
        "hist_norm": tfm.init_layer_norm(d),
        "encoder": _xavier_blocks(k_enc, cfg.encoder_blocks, d, cfg.n_heads),
        "time_embed": [tfm.init_linear(k_t1, d, 4 * d), tfm.init_linear(k_t2, 4 * d, d)],
        "denoiser": _xavier_blocks(k_den, cfg.denoiser_blocks, d, cfg.n_heads),
    }


# -- forward pieces -------------------------------------------------------------------------------


def encode_history(
    params: Params,
    history: jax.Array,
    cfg: ADRecConfig,
    key: jax.Array | None = None,
    segments: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """History representation: embedding -> dropout -> LayerNorm -> causal encoder.

    Args:
      history: [B, L] int32 left-padded with n_items (or packed rows).
      key: dropout key (None: no dropout).
      segments: [B, L] int segment of every token of packed rows, or None.

    Returns:
      rep [B, L, d] (zero at padding), valid [B, L] bool.
    """
    table = params["item_emb"]
    valid = history != table.shape[0] - 1
    k_emb, k_enc = jax.random.split(key) if key is not None else (None, None)
    h = tfm.embed(table, history)
    if k_emb is not None and cfg.emb_dropout > 0:
        h = layers.dropout(k_emb, h, cfg.emb_dropout)
    h = tfm.layer_norm(params["hist_norm"], h, LN_EPS)
    return _causal_stack(params["encoder"], h, valid, cfg, k_enc, segments), valid


def _causal_stack(blocks, h, valid, cfg: ADRecConfig, key, segments) -> jax.Array:
    """ADRec's causal post-LN Transformer stack (encoder or denoiser) over `h` [B, L, d]."""
    return tfm.encoder(
        blocks,
        h,
        valid,
        cfg.n_heads,
        causal=True,
        pre_ln=False,
        key=key,
        rate=cfg.dropout,
        eps=LN_EPS,
        segments=segments,
    )


def time_embedding(params: Params, t: jax.Array, cfg: ADRecConfig) -> jax.Array:
    """``Linear(4d, d)(SiLU(Linear(d, 4d)(sinusoidal(t * 1000 / T, d))))``: [...] -> [..., d]."""
    t = jnp.asarray(t)
    scaled = t.reshape(-1).astype(jnp.float32) * (1000.0 / cfg.steps)
    emb = layers.timestep_embedding(scaled, cfg.d)
    lin1, lin2 = params["time_embed"]
    emb = tfm.linear(lin2, jax.nn.silu(tfm.linear(lin1, emb)))
    return emb.reshape(*t.shape, cfg.d)


def denoiser_input(
    params: Params, rep: jax.Array, x_t: jax.Array, t: jax.Array, cfg: ADRecConfig
) -> jax.Array:
    """``rep + lam * (x_t + temb(t))``; rep, x_t [B, L, d], t [B, L] -> [B, L, d]."""
    return rep + cfg.lam * (x_t + time_embedding(params, t, cfg))


def denoise(
    params: Params,
    rep: jax.Array,
    x_t: jax.Array,
    t: jax.Array,
    valid: jax.Array,
    cfg: ADRecConfig,
    key: jax.Array | None = None,
    segments: jax.Array | None = None,
) -> jax.Array:
    """The x0 prediction at every position: [B, L, d] (zero at padding).

    Args:
      rep: [B, L, d] history representation (:func:`encode_history`).
      x_t: [B, L, d] noised targets.
      t: [B, L] int timesteps.
      valid: [B, L] bool.
      key: dropout key (None: no dropout).
      segments: [B, L] int segment of every token of packed rows, or None.
    """
    h = denoiser_input(params, rep, x_t, t, cfg)
    return _causal_stack(params["denoiser"], h, valid, cfg, key, segments)


def diffusion_draws(
    key: jax.Array, valid: jax.Array, d: int, steps: int
) -> tuple[jax.Array, jax.Array]:
    """Token-level independent timesteps and noise for a batch.

    Args:
      key: typed key.
      valid: [B, L] bool, real target tokens.
      d: embedding width.
      steps: T.

    Returns:
      t: [B, L] int32, an independent U{0..T-1} draw for every real token, 0 at padding.
      noise: [B, L, d] float32 standard normal.
    """
    k_t, k_n = jax.random.split(key)
    t = jax.random.randint(k_t, valid.shape, 0, steps, jnp.int32)
    t = jnp.where(valid, t, 0)
    noise = jax.random.normal(k_n, (*valid.shape, d), jnp.float32)
    return t, noise


# -- losses ---------------------------------------------------------------------------------------


def token_mean(values: jax.Array, valid: jax.Array, weights: jax.Array) -> jax.Array:
    """Mean of per-token `values` [B, L] over the real tokens of the real rows: a scalar."""
    w = weights[:, None] * valid.astype(values.dtype)
    return jnp.sum(w * values) / jnp.maximum(jnp.sum(w), 1.0)


def sequence_mse(
    out: jax.Array,
    x0: jax.Array,
    valid: jax.Array,
    segments: jax.Array | None = None,
    n_sequences: int | None = None,
) -> jax.Array:
    """Per sequence ``sum_l m_l / sum(m) * mean_d (out - x0)^2``.

    Args:
      out, x0: [R, L, d].
      valid: [R, L] bool mask m.
      segments: [R, L] int sequence of every token (packed rows; -1 at empty slots), or None
        when row r is sequence r.
      n_sequences: number of sequences (needed with `segments`).

    Returns:
      [R] without `segments`, else [n_sequences].
    """
    m = valid.astype(out.dtype)
    se = m * jnp.mean(jnp.square(out - x0), axis=-1)
    if segments is None:
        return jnp.sum(se, axis=-1) / jnp.maximum(jnp.sum(m, axis=-1), 1.0)
    seg = segments.reshape(-1)
    total = jax.ops.segment_sum(se.reshape(-1), seg, n_sequences)
    count = jax.ops.segment_sum(m.reshape(-1), seg, n_sequences)
    return total / jnp.maximum(count, 1.0)


def _row_weights(batch: SeqBatch) -> jax.Array:
    if batch.weights is None:
        return jnp.ones(batch.history.shape[0], jnp.float32)
    return batch.weights


def loss_terms(
    params: Params,
    batch: SeqBatch,
    key: jax.Array,
    cfg: ADRecConfig,
    diff: gaussian.GaussianDiffusion,
    *,
    freeze_embedding: bool = False,
) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """The two objectives of a "sequence" batch: (ce, mse, aux).

    `key` is split into (draws, dropout): ``t, noise = diffusion_draws(draws, targets !=
    n_items, d, T)`` (in the batch layout: the same draws whether the batch runs packed or
    not, ``cfg.pack_ratio``). Real target tokens are noised by ``gaussian.q_sample(diff, x0,
    t, noise)`` with their own timesteps ([B, L]); padding keeps x0. With `freeze_embedding`
    the item table gets no gradient.

    Returns:
      ce: token-mean cross entropy (scalar).
      mse: example-weighted mean of :func:`sequence_mse` (scalar, without `loss_scale`).
      aux: {"t_mean": mean timestep of the real tokens, "packed": 1 if the batch ran packed}.
    """
    if batch.targets is None or batch.targets.shape != batch.history.shape:
        raise ConfigError("ADRec trains on 'sequence' examples: targets must be [B, L]")
    if freeze_embedding:
        params = {**params, "item_emb": jax.lax.stop_gradient(params["item_emb"])}
    table = params["item_emb"]
    pad = table.shape[0] - 1
    k_draw, k_drop = jax.random.split(key)
    k_hist, k_den = jax.random.split(k_drop)
    w = _row_weights(batch)
    b, length = batch.history.shape
    all_targets = batch.targets
    assert all_targets is not None, "training batches carry their targets"
    tvalid = all_targets != pad
    t, noise = diffusion_draws(k_draw, tvalid, cfg.d, cfg.steps)
    w_token = sasrec_model.token_weights(w, batch.targets, pad)
    n_rows = packing.rows(b, cfg.pack_ratio)
    plan = packing.plan(batch.history != pad, n_rows) if n_rows else None

    def terms(layout: packing.Packing) -> tuple[jax.Array, jax.Array]:
        targets = packing.gather(all_targets, layout, pad)
        t_l = packing.gather(t, layout, 0)
        tv = targets != pad
        rep, valid = encode_history(
            params, packing.gather(batch.history, layout, pad), cfg, k_hist, layout.segment
        )
        x0 = tfm.embed(table, targets)
        x_t = gaussian.q_sample(diff, x0, t_l, packing.gather(noise, layout, 0.0))
        x_t = jnp.where(tv[..., None], x_t, x0)  # padding keeps x0
        out = denoise(params, rep, x_t, t_l, valid, cfg, k_den, layout.segment)
        ce = sasrec_model.ce_token_mean(out, table, targets, packing.gather(w_token, layout, 0.0))
        per_sequence = sequence_mse(out, x0, tv, layout.segment, b)
        return ce, jnp.sum(w * per_sequence) / jnp.maximum(jnp.sum(w), 1.0)

    ce, mse = packing.packed_or_unpacked(plan, terms, b, length)
    t_mean = token_mean(t.astype(jnp.float32), tvalid, w)
    packed = jnp.float32(0.0) if plan is None else plan.fits.astype(jnp.float32)
    return ce, mse, {"t_mean": t_mean, "packed": packed}


def _tree_vdot(a, b) -> jax.Array:
    out = jnp.zeros((), jnp.float32)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        out = out + jnp.vdot(x, y)
    return out


def pcgrad_combine(g1, g2):
    """PCGrad (Yu et al. 2020) of two gradients (pytrees), mean-reduced.

    If ``g1 . g2 < 0`` (dot product over all leaves), each is projected onto the normal plane
    of the other *original* gradient, ``g1' = g1 - (g1 . g2) / |g2|^2 g2`` and symmetrically;
    otherwise both are kept. Returns ``(g1' + g2') / 2``. With two objectives the original's
    random task order does not matter (a projected gradient never conflicts with its own
    original). Every parameter is shared by both objectives, so the mean applies everywhere.
    """
    dot = _tree_vdot(g1, g2)
    n1 = _tree_vdot(g1, g1)
    n2 = _tree_vdot(g2, g2)
    conflict = dot < 0
    c1 = jnp.where(conflict, dot / jnp.where(conflict, n2, 1.0), 0.0)
    c2 = jnp.where(conflict, dot / jnp.where(conflict, n1, 1.0), 0.0)
    return jax.tree.map(lambda a, b: 0.5 * ((a - c1 * b) + (b - c2 * a)), g1, g2)


def combined_loss(
    params: Params,
    batch: SeqBatch,
    key: jax.Array,
    cfg: ADRecConfig,
    diff: gaussian.GaussianDiffusion,
    *,
    freeze_embedding: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The scalar the training loop differentiates, and the diagnostics.

    Its value is ``0.5 (ce + loss_scale mse)``. Its gradient with respect to `params` is the
    mean of the gradients of ``ce`` and ``loss_scale * mse`` (``cfg.pcgrad`` False), or their
    :func:`pcgrad_combine` (True), computed with one forward pass and two VJPs at
    ``stop_gradient(params)`` and returned through the surrogate
    ``s = sum(g * params)``: ``value = s - stop_gradient(s) + loss`` (exactly the loss in value).
    """
    if not cfg.pcgrad:
        ce, mse, aux = loss_terms(params, batch, key, cfg, diff, freeze_embedding=freeze_embedding)
        value = 0.5 * (ce + cfg.loss_scale * mse)
        aux = {**aux, "ce": jax.lax.stop_gradient(ce), "mse": jax.lax.stop_gradient(mse)}
        return value, aux

    def objectives(p):
        ce, mse, aux = loss_terms(p, batch, key, cfg, diff, freeze_embedding=freeze_embedding)
        return (ce, cfg.loss_scale * mse), (ce, mse, aux)

    fixed = jax.lax.stop_gradient(params)
    _, vjp_fn, (ce, mse, aux) = jax.vjp(objectives, fixed, has_aux=True)
    one, zero = jnp.ones((), jnp.float32), jnp.zeros((), jnp.float32)
    (g_ce,) = vjp_fn((one, zero))
    (g_mse,) = vjp_fn((zero, one))
    g = pcgrad_combine(g_ce, g_mse)
    surrogate = _tree_vdot(jax.lax.stop_gradient(g), params)
    value = 0.5 * (ce + cfg.loss_scale * mse)
    value = surrogate - jax.lax.stop_gradient(surrogate) + value
    conflict = (_tree_vdot(g_ce, g_mse) < 0).astype(jnp.float32)
    return value, {**aux, "ce": ce, "mse": mse, "conflict": conflict}


# -- inference ------------------------------------------------------------------------------------


def _reverse(
    diff: gaussian.GaussianDiffusion,
    x0_fn: Callable[[jax.Array, jax.Array], jax.Array],
    keys: jax.Array,
    d: int,
) -> jax.Array:
    """T ancestral steps from N(0, I) as one scan: [B, d]; x0_fn(x_t [B, d], t scalar) ->
    x0_hat [B, d]; `keys` [B] per-row keys (:func:`gaussian.reverse_keys` draws)."""
    start_keys, step_keys = gaussian.reverse_keys(keys)

    def step(x, t, k):
        z = gaussian.normal(k, x.shape, x.dtype)
        return gaussian.posterior_step(diff, x0_fn(x, t), x, t, z, variance="large")

    x_start = gaussian.normal(start_keys, (keys.shape[0], d))
    return gaussian.reverse_scan(step, x_start, np.arange(diff.steps - 1, -1, -1), step_keys)


def sample_last(
    params: Params,
    batch: SeqBatch,
    cfg: ADRecConfig,
    diff: gaussian.GaussianDiffusion,
    sampler: str,
) -> jax.Array:
    """The denoised vector at the last position after T reverse steps: [B, d].

    Row b's noise comes from ``seeds.sampling_keys(cfg.sampling_seed, batch.users)[b]``.

    Args:
      diff: the diffusion (:func:`make_diffusion`).
      sampler: "full" (re-run the denoiser over all L positions every step) or "cached" (the
        prefix keys/values of every denoiser block once, then one token per step).
    """
    table = params["item_emb"]
    pad = table.shape[0] - 1
    history = batch.history
    b, n = history.shape
    valid = history != pad
    keys = seeds.sampling_keys(cfg.sampling_seed, batch.users)

    if sampler == "full":
        rep, _ = encode_history(params, history, cfg)
        # Earlier positions: their clean targets (the next history item) at t = 0.
        x_prefix = tfm.embed(table, history[:, 1:])
        t_prefix = jnp.zeros((b, n - 1), jnp.int32)

        def x0_full(x, i):
            x_all = jnp.concatenate([x_prefix, x[:, None]], axis=1)
            t_all = jnp.concatenate([t_prefix, jnp.full((b, 1), i, jnp.int32)], axis=1)
            return denoise(params, rep, x_all, t_all, valid, cfg)[:, -1]

        return _reverse(diff, x0_full, keys, cfg.d)

    if sampler != "cached":
        raise ConfigError(f"ADRec sampler={sampler!r}; expected one of {SAMPLERS}")
    # The prefix never changes and attention is causal: run the prefix once, keep every
    # block's keys and values of the L - 1 prefix positions. The history encoder and the prefix
    # run on packed rows when the batch fits (cfg.pack_ratio; the same numbers).
    n_rows = packing.score_rows(b, cfg.pack_ratio)
    plan = packing.plan(valid, n_rows) if n_rows else None
    # position j < L - 1 is fed its clean target, the next history item; position L - 1 runs
    # along (causal: nothing before it depends on it) and its keys and values are dropped.
    nxt = jnp.concatenate([history[:, 1:], jnp.full((b, 1), pad, history.dtype)], axis=1)

    def prefix(layout: packing.Packing):
        rep_p, valid_p = encode_history(
            params, packing.gather(history, layout, pad), cfg, segments=layout.segment
        )
        x_p = tfm.embed(table, packing.gather(nxt, layout, pad))
        h = denoiser_input(params, rep_p, x_p, jnp.zeros(valid_p.shape, jnp.int32), cfg)
        mask_p = tfm.attention_mask(valid_p, causal=True, segments=layout.segment)
        m_p = valid_p[..., None].astype(h.dtype)
        slots = layout.slot[:, :-1]
        cache = []
        for p in params["denoiser"]:
            k, v = tfm.project_kv(p["attn"], h, cfg.n_heads)  # [R, H, L, c]
            k, v = (packing.take(a.transpose(0, 2, 1, 3), slots, 0.0) for a in (k, v))
            cache.append((k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)))  # [B, H, L-1, c]
            h = tfm.block(p, h, mask_p, cfg.n_heads, eps=LN_EPS) * m_p
        return packing.take(rep_p, layout.slot[:, -1:], 0.0), cache  # [B, 1, d]

    rep_last, cache = packing.packed_or_unpacked(plan, prefix, b, n)
    key_mask = valid[:, None, None, :]  # the last query sees every valid key (causal: all)
    m_last = valid[:, -1:, None].astype(rep_last.dtype)

    def x0_cached(x, i):
        t = jnp.full((b, 1), i, jnp.int32)
        y = denoiser_input(params, rep_last, x[:, None], t, cfg)
        for p, (k_c, v_c) in zip(params["denoiser"], cache, strict=True):
            k_n, v_n = tfm.project_kv(p["attn"], y, cfg.n_heads)
            kv = (jnp.concatenate([k_c, k_n], axis=2), jnp.concatenate([v_c, v_n], axis=2))
            y = tfm.block(p, y, key_mask, cfg.n_heads, eps=LN_EPS, kv=kv) * m_last
        return y[:, 0]

    return _reverse(diff, x0_cached, keys, cfg.d)


@functools.lru_cache(maxsize=64)
def make_score(cfg: ADRecConfig, sampler: str | None = None):
    """``score(params, SeqBatch) -> [B, n_items]``: the sampled vector @ the real item rows.

    Cached per (cfg, sampler): every stage and the recommender share one function object, so
    evaluators reuse its compiled program.
    """
    sampler = cfg.sampler if sampler is None else sampler
    if sampler not in SAMPLERS:
        raise ConfigError(f"ADRec sampler={sampler!r}; expected one of {SAMPLERS}")
    diff = make_diffusion(cfg)

    def score(params: Params, batch: SeqBatch) -> jax.Array:
        table = params["item_emb"]
        x = sample_last(params, batch, cfg, diff, sampler)
        return x @ table[: table.shape[0] - 1].T

    return score


# -- optimiser ------------------------------------------------------------------------------------


def make_optimizer(
    lr: float, weight_decay: float, decay_steps: int, *, frozen: tuple[str, ...] = ()
) -> optax.GradientTransformation:
    """Adam with torch-style L2 weight decay and cosine decay of the learning rate.

    ``add_decayed_weights(weight_decay) -> scale_by_adam -> -cosine(lr, decay_steps)``; the
    top-level parameter groups named in `frozen` get zero updates (``optax.set_to_zero``).
    """
    schedule = optax.cosine_decay_schedule(lr, max(int(decay_steps), 1))
    tx = optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_adam(),
        optax.scale_by_learning_rate(schedule),
    )
    if not frozen:
        return tx

    def labels(params):
        return {
            k: jax.tree.map(lambda _, k=k: "frozen" if k in frozen else "train", v)
            for k, v in params.items()
        }

    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


# -- the trainable --------------------------------------------------------------------------------


def adrec_trainable(
    cfg: ADRecConfig,
    *,
    lr: float = 1e-3,
    weight_decay: float = 1e-5,
    decay_steps: int = 1,
    freeze_embedding: bool = False,
    item_table: jax.Array | None = None,
    init_params_from: Params | None = None,
) -> Trainable:
    """ADRec as a :class:`~diffrec_jax.protocol.Trainable` for one training stage.

    Args:
      cfg: architecture and loss settings.
      lr, weight_decay, decay_steps: optimiser (:func:`make_optimizer`).
      freeze_embedding: stage 2: the item table gets no gradient and no update.
      item_table: [n_items + 1, d] table to start from (the pretrained one), or None.
      init_params_from: full parameters to start from (stage 3 continues stage 2), or None.

    Returns:
      ``Trainable``; model state ``()``; the loss (:func:`combined_loss`) reports aux "ce",
      "mse", "t_mean" (and "conflict" with PCGrad).
    """
    cfg = check_config(cfg)
    diff = make_diffusion(cfg)

    def init(key: jax.Array, n_items: int) -> tuple[Params, tuple]:
        if init_params_from is not None:
            n = init_params_from["item_emb"].shape[0] - 1
            if n != n_items:
                raise ConfigError(f"ADRec initial params have {n} items; the data {n_items}")
            return jax.tree.map(jnp.array, init_params_from), ()
        return init_params(key, n_items, cfg, item_table), ()

    def loss(params: Params, state: tuple, batch: SeqBatch, key: jax.Array, info: StepInfo):
        value, aux = combined_loss(params, batch, key, cfg, diff, freeze_embedding=freeze_embedding)
        return value, (state, aux)

    def optimizer() -> optax.GradientTransformation:
        frozen = ("item_emb",) if freeze_embedding else ()
        return make_optimizer(lr, weight_decay, decay_steps, frozen=frozen)

    return Trainable(init, loss, make_score(cfg), optimizer)


# -- stage 1: SASRec without positional embeddings ------------------------------------------------


def pretrain_trainable(
    cfg: ADRecConfig,
    *,
    max_len: int = 50,
    lr: float = 1e-3,
    weight_decay: float = 1e-5,
    decay_steps: int = 1,
) -> Trainable:
    """Stage 1: :func:`diffrec_jax.models.sasrec.sasrec` without positional embeddings, with
    ADRec's encoder layout (post-LN, GELU, LayerNorm eps 1e-12, `cfg`'s width, heads, blocks and
    dropouts), full-softmax CE at every position, and ADRec's optimiser (:func:`make_optimizer`:
    cosine decay over `decay_steps`). Its item table (``sasrec.sasrec_item_table``) starts
    ADRec."""
    cfg = check_config(cfg)
    model = sasrec_model.sasrec(
        loss="ce",
        d=cfg.d,
        n_blocks=cfg.encoder_blocks,
        n_heads=cfg.n_heads,
        ffn_mult=4,
        activation="gelu_tanh",
        pre_ln=False,
        scale_emb=False,
        positions=False,
        dropout=cfg.dropout,
        emb_dropout=cfg.emb_dropout,
        ln_eps=LN_EPS,
        max_len=max_len,
        lr=lr,
        weight_decay=weight_decay,
        pack_ratio=cfg.pack_ratio,
    )
    return model._replace(optimizer=lambda: make_optimizer(lr, weight_decay, decay_steps))


# -- the registry entry ---------------------------------------------------------------------------

ARCH_DEFAULTS: dict[str, Any] = dict(ADRecConfig()._asdict())
"""The fields of :class:`ADRecConfig` (architecture, loss and sampling) and their defaults."""

TRAIN_DEFAULTS: dict[str, Any] = {
    "max_len": 50,
    "lr": 1e-3,
    "weight_decay": 1e-5,
    "batch_size": 512,
    "pretrain_epochs": 500,
    "freeze_epochs": 5,
    "max_epochs": 500,
    "eval_every": 5,
    "patience": 4,
    "select_metric": "NDCG@20",
}
"""Training hyperparameters (the original's config.yaml): epochs of each stage (0 skips the
stage), validation every `eval_every` epochs with `patience` in stages 1 and 3."""

RECOMMENDER_DEFAULTS: dict[str, Any] = {**ARCH_DEFAULTS, **TRAIN_DEFAULTS}
"""Every hyperparameter of the registry entry ``"adrec"`` and its default."""


class StageResults(NamedTuple):
    """What :func:`fit_stages` returns.

    Attributes:
      pretrain, frozen, full: the ``TrainResult`` of stages 1, 2, 3 (None when skipped).
      params: the final parameters (stage 3's best on validation, else the last stage's).
    """

    pretrain: Any
    frozen: Any
    full: Any
    params: Params


def _values(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """:data:`RECOMMENDER_DEFAULTS` updated by `hparams`, validated (unknown names too)."""
    unknown = sorted(set(hparams) - set(RECOMMENDER_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"model 'adrec' has no hyperparameter(s) {unknown}; expected some of "
            f"{sorted(RECOMMENDER_DEFAULTS)}"
        )
    values = {**RECOMMENDER_DEFAULTS, **hparams}
    check_hparams(values)
    return values


def check_hparams(values: Mapping[str, Any]) -> None:
    """Validates a full set of ADRec hyperparameters (the registry entry's ``check``).

    Raises:
      ConfigError: an invalid value (epochs, optimiser, :func:`check_config`, the training
        loop's settings).
    """
    for name in ("pretrain_epochs", "freeze_epochs", "max_epochs"):
        v = values[name]
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
            raise ConfigError(f"ADRec {name}={v!r}; expected an int >= 0")
    if not values["lr"] > 0 or not values["weight_decay"] >= 0:
        raise ConfigError(
            f"ADRec lr={values['lr']!r}, weight_decay={values['weight_decay']!r}; expected "
            "lr > 0 and weight_decay >= 0"
        )
    v = values["max_len"]
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
        raise ConfigError(f"ADRec max_len={v!r}; expected a positive int")
    config_from_hparams(values)
    _base_config(values)


def config_from_hparams(values: Mapping[str, Any]) -> ADRecConfig:
    """The validated :class:`ADRecConfig` of a set of hyperparameters."""
    return check_config(ADRecConfig(**{k: values[k] for k in ARCH_DEFAULTS}))


def _base_config(values: Mapping[str, Any]):
    """The training loop's config shared by the stages (each sets its own epochs)."""
    return seq_train_config({**values, "max_epochs": 1})


def score_from_hparams(hparams: Mapping[str, Any]):
    """The registry entry's score function (:func:`make_score`): the sampler of
    ``hparams["sampler"]`` with noise seeded by ``hparams["sampling_seed"]``."""
    return make_score(config_from_hparams(_values(hparams)))


def fit_stages(
    hparams: Mapping[str, Any],
    data: SeqFitData,
    key: jax.Array,
    overrides: Mapping[str, Any] | None = None,
) -> StageResults:
    """Runs ADRec's three training stages through the shared loop.

    The stages share the training examples ("sequence" examples of ``max_len``) and the
    validation evaluator of :func:`diffrec_jax.train.seq_plan`; each stage's ``TrainConfig``
    is :func:`diffrec_jax.train.seq_train_config` of the hyperparameters with the stage's
    epochs, then ``.replace(**overrides)``; its cosine decay spans that config's epochs.

    Args:
      hparams: any of :data:`RECOMMENDER_DEFAULTS` (the others take their defaults).
      data: the training sequences and valid targets.
      key: seeds everything (split into one key per stage).
      overrides: fields of every stage's TrainConfig to replace (a study's selection metric,
        cutoffs and convention).

    Returns:
      :class:`StageResults`.
    """
    values = _values(hparams)
    cfg = config_from_hparams(values)
    overrides = dict(overrides or {})
    max_len = int(values["max_len"])
    opt = {"lr": values["lr"], "weight_decay": values["weight_decay"]}
    config = _base_config(values).replace(**overrides)
    # The stages share the examples and the validation (stage 3's Trainable stands in).
    plan = seq_plan(adrec_trainable(cfg, **opt), config, data, max_len=max_len, examples="sequence")
    assert plan.source is not None and plan.evaluator is not None  # seq_plan sets both
    source, evaluator = plan.source, plan.evaluator(config)
    k1, k2, k3 = jax.random.split(key, 3)

    def stage_config(epochs: int):
        stage = config.replace(**{"max_epochs": epochs, **overrides})
        n_steps = steps_per_epoch(source.n_examples, stage.batch_size, stage.last_batch)
        return stage, stage.max_epochs * n_steps

    pre = frozen = full = None
    table = params = None
    if values["pretrain_epochs"] > 0:
        stage, decay = stage_config(values["pretrain_epochs"])
        model = pretrain_trainable(cfg, max_len=max_len, decay_steps=decay, **opt)
        pre = train(model, data, stage, key=k1, source=source, evaluator=evaluator)
        table = sasrec_model.sasrec_item_table(pre.params)
    if values["freeze_epochs"] > 0:
        stage, decay = stage_config(values["freeze_epochs"])
        model = adrec_trainable(
            cfg, decay_steps=decay, freeze_embedding=True, item_table=table, **opt
        )
        # No validation while the table is frozen (the original's first evaluation comes
        # after the unfreezing): the stage's last parameters go on.
        frozen = train(model, data, stage, key=k2, source=source, evaluator=None)
        params = frozen.params
    if values["max_epochs"] > 0:
        stage, decay = stage_config(values["max_epochs"])
        model = adrec_trainable(
            cfg, decay_steps=decay, item_table=table, init_params_from=params, **opt
        )
        full = train(model, data, stage, key=k3, source=source, evaluator=evaluator)
        params = full.params
    if params is None:  # no ADRec stage ran: untrained parameters (on the pretrained table)
        params = init_params(k3, source.n_items, cfg, table)
    return StageResults(pre, frozen, full, params)


def stages_record(stages: StageResults) -> dict[str, Any]:
    """The JSON-able training record of ADRec's stages (what :func:`fit_with_record` returns).

    The stage that gave the parameters (3, else 2) supplies ``best_epoch`` (counted within
    that stage), ``stopped_early`` and ``best_valid``; ``epochs``, ``seconds_per_epoch`` and
    ``history`` (each entry with its ``stage``) cover every stage run; ``stages`` maps
    "pretrain", "frozen", "full" to each stage's own record without history (None if skipped).
    """
    runs = {"pretrain": stages.pretrain, "frozen": stages.frozen, "full": stages.full}
    records = {name: None if r is None else training_record(r) for name, r in runs.items()}
    history = [
        {**entry, "stage": name}
        for name, record in records.items()
        if record is not None
        for entry in record["history"]
    ]
    final = records["full"] or records["frozen"]
    return {
        "best_epoch": final["best_epoch"] if final else None,
        "epochs": len(history),
        "stopped_early": final["stopped_early"] if final else False,
        "best_valid": final["best_valid"] if final else None,
        "seconds_per_epoch": float(np.mean([h["seconds"] for h in history])) if history else None,
        "history": history,
        "stages": {
            name: None if record is None else {k: v for k, v in record.items() if k != "history"}
            for name, record in records.items()
        },
    }


def fit_with_record(
    hparams: Mapping[str, Any],
    data: SeqFitData,
    key: jax.Array,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[Params, dict[str, Any]]:
    """The registry entry's staged fit: ``(params, record)`` of :func:`fit_stages` (its final
    parameters) and :func:`stages_record`; `overrides` replace fields of every stage's
    TrainConfig."""
    stages = fit_stages(hparams, data, key, overrides)
    return stages.params, stages_record(stages)
