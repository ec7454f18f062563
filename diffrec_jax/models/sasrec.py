r"""SASRec: causal self-attention over the history (Kang & McAuley 2018), and SASRec+.

A history ``[B, L]`` (left-padded with ``n_items``, see :mod:`diffrec_jax.protocol`) is
embedded and run through a causal Transformer encoder (:mod:`diffrec_jax.nn.transformer`):

.. math::
   x_j = \mathrm{Drop}(s \cdot E[h_j] + P[j]) \cdot m_j, \qquad
   F = \mathrm{Encoder}_{causal}(x), \qquad
   \mathrm{score}(i \mid h_{\le j}) = \langle F_j, E[i] \rangle,

with ``E`` the ``[n_items + 1, d]`` item table (its last row the padding item), ``P`` the
learned positional embeddings (``positions=True``), ``s = sqrt(d)`` if ``scale_emb`` else 1 and
``m_j`` the valid mask. Two layouts (``pre_ln``):

- pre-LN (SASRec): ``pre_ln=True`` blocks and a final LayerNorm on F (the original normalises
  the queries and the FFN input and adds a final LayerNorm).
- post-LN (the ADRec / DiffuRec code base): the embeddings are LayerNorm-ed after dropout, then
  ``pre_ln=False`` blocks.

Positions are counted from the right: a history of length ``L' <= max_len`` uses the last
``L'`` rows of ``P``, so the most recent item always gets the same positional embedding and a
history's scores do not depend on how much left padding it has.

Two losses over the next item at every position (``"sequence"`` examples: targets are the
history shifted left by one), averaged over the real positions of the batch (as the original's
``istarget`` mask and ADRec's cross entropy with ignored padding):

- ``loss="bce"`` (SASRec): :math:`-\log\sigma(\langle F_j, E[t_j]\rangle)
  - \log(1 - \sigma(\langle F_j, E[n_j]\rangle))` with one negative :math:`n_j` per position,
  drawn uniformly from the items not in the example's window (:func:`sample_negatives`).
- ``loss="ce"`` (SASRec+, the variant modern papers compare against): full-softmax cross
  entropy over all items, :math:`\mathrm{logsumexp}_i \langle F_j, E[i]\rangle
  - \langle F_j, E[t_j]\rangle`, computed at the real positions only
  (:func:`ce_token_mean`: the ``[positions, n_items]`` logits dominate a step and short
  histories are mostly padding).

Scores: ``F`` at the last position (the most recent item) times the item table, no dropout.

Registered as ``"sasrec"`` (the paper's configuration: BCE, d = 50, 2 blocks, 1 head, ReLU FFN
of width d, pre-LN, embeddings scaled by sqrt(d), dropout 0.2, Adam lr 1e-3 with beta2 = 0.98,
batch 128; max_len 50 here instead of the paper's 200) and ``"sasrec+"`` (cross entropy with
the ADRec paper's encoder and training settings: d = 128, 2 blocks, 4 heads, post-LN, GELU FFN
of width 4d, dropout 0.1, embedding dropout 0.3, batch 512, Adam lr 1e-3, weight decay 1e-5;
learned positions on, as SASRec: ADRec's stage-1 pretraining turns them off with
``positions=False`` and takes :func:`sasrec_item_table`). LayerNorm epsilon: 1e-8 for
"sasrec" (the original's), 1e-12 for "sasrec+" (BERT-style, as the DiffuRec code base;
ADRec's value not checked).

Differences from the originals, on purpose: the original pre-LN block attends with keys and
values from the *un-normalised* input and adds the residual to the normalised queries; here
the block is the standard pre-LN one. Negatives avoid the items of the example's window
(history and targets, the last ``max_len + 1`` items) rather than of the user's whole training
sequence (identical when the sequence fits the window). Validation is full ranking every
`eval_every` epochs with early stopping (the original evaluates sampled metrics every 20
epochs). ADRec's cosine learning-rate annealing is not applied (constant rate).
Initialisation: item and positional tables N(0, 1/d) (padding row 0), linear layers as
torch.nn.Linear.

References:
  Kang, McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018 (code:
  github.com/kang205/SASRec). Chen, Xu, Jiang, "Unlocking the Power of Diffusion Models in
  Sequential Recommendation: A Simple and Effective Approach", KDD 2025 (SASRec+ settings).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from diffrec_jax.errors import ConfigError
from diffrec_jax.nn import packing
from diffrec_jax.nn import transformer as tf
from diffrec_jax.nn.layers import dropout as drop
from diffrec_jax.nn.layers import torch_adam
from diffrec_jax.protocol import SeqBatch, StepInfo, Trainable

Params = dict[str, Any]

LOSSES = ("bce", "ce")
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "gelu": functools.partial(jax.nn.gelu, approximate=False),  # erf, as torch's default
    "gelu_tanh": jax.nn.gelu,
}
CE_CHUNK = 1024
"""Positions per chunk of :func:`ce_token_mean`."""
NEG_TRIES = 8
"""Candidates drawn per position by :func:`sample_negatives` (the first one outside the window
is the negative)."""


# -- parameters and forward pass ------------------------------------------------------------------


def init_sasrec(
    key: jax.Array,
    n_items: int,
    *,
    d: int,
    n_blocks: int,
    n_heads: int,
    ffn_mult: int,
    max_len: int,
    positions: bool,
    pre_ln: bool,
) -> Params:
    """SASRec parameters.

    Returns:
      ``{"item_emb": [n_items + 1, d], "blocks": [block, ...], "ln": LayerNorm}`` plus
      ``"pos_emb": [max_len, d]`` when `positions`. "ln" is the final LayerNorm (pre-LN) or the
      embedding LayerNorm (post-LN). Blocks as :func:`~diffrec_jax.nn.transformer.init_block`.
    """
    k_item, k_pos, k_blocks = jax.random.split(key, 3)
    params: Params = {
        "item_emb": tf.init_embedding(k_item, n_items, d),
        "blocks": [
            tf.init_block(k, d, n_heads, ffn_mult) for k in jax.random.split(k_blocks, n_blocks)
        ],
        "ln": tf.init_layer_norm(d),
    }
    if positions:
        params["pos_emb"] = jax.random.normal(k_pos, (max_len, d), jnp.float32) / math.sqrt(d)
    return params


def sasrec_item_table(params: Params) -> jax.Array:
    """The item embedding table of trained SASRec `params`: [n_items + 1, d], the last row the
    padding item (zero at initialisation). Scores use its first n_items rows; ADRec's stage 1
    pretrains SASRec without positions and starts from this table."""
    return params["item_emb"]


def hidden_states(
    params: Params,
    history: jax.Array,
    *,
    n_heads: int,
    pre_ln: bool,
    scale_emb: bool,
    activation: Callable[[jax.Array], jax.Array],
    eps: float,
    key: jax.Array | None = None,
    dropout: float = 0.0,
    emb_dropout: float = 0.0,
    segments: jax.Array | None = None,
    columns: jax.Array | None = None,
) -> jax.Array:
    """The encoder output F at every position.

    Args:
      params: from :func:`init_sasrec`.
      history: [B, L] int, left-padded with n_items (= rows of the item table - 1); L must not
        exceed the positional table's max_len when positions are on.
      key: dropout key; None for no dropout (scoring).
      segments, columns: for packed rows (:mod:`diffrec_jax.nn.packing`): [B, L] int
        segment of every token (attention stays within it) and its column in the unpacked
        window (for the positional embedding); None for ordinary rows.

    Returns:
      [B, L, d] float32, zero at padding positions.
    """
    table = params["item_emb"]
    n_items, d = table.shape[0] - 1, table.shape[1]
    valid = history != n_items
    mask = valid[..., None].astype(table.dtype)
    x = tf.embed(table, history)
    if scale_emb:
        x = x * math.sqrt(d)
    if "pos_emb" in params:
        max_len, length = params["pos_emb"].shape[0], history.shape[1]
        if length > max_len:
            raise ConfigError(f"history length {length} exceeds the model's max_len={max_len}")
        if columns is None:
            x = x + params["pos_emb"][max_len - length :]
        else:
            x = x + params["pos_emb"][max_len - length + columns]
    k_emb, k_enc = jax.random.split(key) if key is not None else (None, None)
    if k_emb is not None and emb_dropout > 0:
        x = drop(k_emb, x, emb_dropout)
    if not pre_ln:
        x = tf.layer_norm(params["ln"], x, eps)
    x = x * mask
    x = tf.encoder(
        params["blocks"],
        x,
        valid,
        n_heads,
        causal=True,
        pre_ln=pre_ln,
        key=k_enc,
        rate=dropout,
        activation=activation,
        eps=eps,
        segments=segments,
    )
    if pre_ln:
        x = tf.layer_norm(params["ln"], x, eps) * mask
    return x


# -- losses ---------------------------------------------------------------------------------------


def sample_negatives(
    key: jax.Array, history: jax.Array, targets: jax.Array, n_items: int, tries: int = NEG_TRIES
) -> jax.Array:
    """One negative item per position, uniform over the items outside the example's window.

    Draws `tries` candidates per position uniformly from [0, n_items) (never the padding index)
    with global shapes from `key`, and keeps the first one that is neither in `history` nor in
    `targets` of that example (the last candidate if all of them are).

    Args:
      key: typed key.
      history, targets: [B, L] int ("sequence" examples).
      n_items: number of items.

    Returns:
      [B, L] int32 items in [0, n_items).
    """
    b, n = history.shape
    cand = jax.random.randint(key, (b, n, tries), 0, n_items, jnp.int32)
    window = jnp.concatenate([history, targets], axis=1)  # [B, 2L]
    seen = (cand[..., None] == window[:, None, None, :]).any(-1)  # [B, L, tries]
    first = jnp.argmax(~seen, axis=-1)
    first = jnp.where(seen.all(-1), tries - 1, first)
    return jnp.take_along_axis(cand, first[..., None], axis=-1)[..., 0]


def example_weights(batch: SeqBatch) -> jax.Array:
    """[B] float32 weights of a training batch (ones when ``batch.weights`` is None)."""
    if batch.weights is None:
        return jnp.ones(batch.history.shape[0], jnp.float32)
    return batch.weights


def training_targets(batch: SeqBatch, model: str) -> jax.Array:
    """The targets of a training batch (``batch.targets``).

    Raises:
      ConfigError: `batch` has no targets (a scoring batch passed to `model`'s loss).
    """
    if batch.targets is None:
        raise ConfigError(f"the {model} loss needs a training batch; SeqBatch.targets is None")
    return batch.targets


def token_weights(weights: jax.Array, targets: jax.Array, pad: int) -> jax.Array:
    """[B, L] weight of every position: its example's weight (`weights` [B]) where the target
    is real, 0 elsewhere. `weights` [B, L] (already per position) are masked the same way."""
    w = weights if weights.ndim == 2 else weights[:, None]
    return w * (targets != pad)


def token_mean(values: jax.Array, targets: jax.Array, weights: jax.Array, pad: int) -> jax.Array:
    """Mean of per-position `values` ([B, L]) over the real positions (target != pad) of the
    real examples (weights [B] or [B, L], 0 for the padding rows of the last batch): a
    scalar."""
    w = token_weights(weights, targets, pad)
    return jnp.sum(w * values) / jnp.maximum(jnp.sum(w), 1.0)


def ce_per_position(h: jax.Array, table: jax.Array, targets: jax.Array) -> jax.Array:
    """Full-softmax cross entropy over the first n_items rows of `table` ([n_items + 1, d]) at
    every position: h [B, L, d], targets [B, L] -> [B, L] (garbage at padding targets)."""
    n_items = table.shape[0] - 1
    logits = h @ table[:n_items].T  # [B, L, n_items]
    safe = jnp.minimum(targets, n_items - 1)
    picked = jnp.take_along_axis(logits, safe[..., None], axis=-1)[..., 0]
    return jax.nn.logsumexp(logits, axis=-1) - picked


def ce_token_mean(
    h: jax.Array,
    table: jax.Array,
    targets: jax.Array,
    weights: jax.Array,
    chunk: int = CE_CHUNK,
) -> jax.Array:
    """``token_mean(ce_per_position(h, table, targets), targets, weights, pad)`` computed over
    the real positions only.

    Short histories are mostly padding (ADRec's Beauty: about 7 real positions of 50), and the
    ``[B, L, n_items]`` logits dominate a step. Here the positions are sorted real-first and
    processed in chunks of `chunk` by :func:`jax.lax.scan`; a chunk without a real position is
    skipped (:func:`jax.lax.cond`), and each chunk's logits are recomputed in the backward pass
    (:func:`jax.checkpoint`) so that memory stays at one chunk's ``[chunk, n_items]``.

    Args:
      h: [B, L, d] outputs.
      table: [n_items + 1, d] item table (the last row is the padding item, never a class).
      targets: [B, L] int, ``n_items`` where there is no target.
      weights: [B] example weights, or [B, L] per position (packed rows).
      chunk: positions per chunk.

    Returns:
      Scalar: the weighted mean cross entropy over the real positions.
    """
    b, n, d = h.shape
    pad = table.shape[0] - 1
    w = token_weights(weights, targets, pad).reshape(-1)
    size = b * n
    chunk = min(int(chunk), size)
    n_chunks = -(-size // chunk)
    order = jnp.argsort(w == 0, stable=True)  # real positions first
    order = jnp.concatenate([order, jnp.zeros(n_chunks * chunk - size, order.dtype)])
    w_sorted = jnp.where(jnp.arange(n_chunks * chunk) < size, w[order], 0.0)
    hs = h.reshape(size, d)[order].reshape(n_chunks, chunk, d)
    ts = targets.reshape(-1)[order].reshape(n_chunks, chunk)
    ws = w_sorted.reshape(n_chunks, chunk)
    items = table[:pad]

    @jax.checkpoint
    def chunk_sum(hc, tc, wc):
        logits = hc @ items.T  # [chunk, n_items]
        picked = jnp.take_along_axis(logits, jnp.minimum(tc, pad - 1)[:, None], axis=-1)[:, 0]
        return jnp.sum(wc * (jax.nn.logsumexp(logits, axis=-1) - picked))

    def body(total, xs):
        hc, tc, wc = xs
        value = jax.lax.cond(
            jnp.any(wc > 0), chunk_sum, lambda *_: jnp.zeros((), h.dtype), hc, tc, wc
        )
        return total + value, None

    total, _ = jax.lax.scan(body, jnp.zeros((), h.dtype), (hs, ts, ws))
    return total / jnp.maximum(jnp.sum(w), 1.0)


def bce_per_position(
    h: jax.Array, table: jax.Array, targets: jax.Array, negatives: jax.Array
) -> jax.Array:
    """-log sigmoid(<h, E[target]>) - log(1 - sigmoid(<h, E[negative]>)) at every position:
    h [B, L, d], targets and negatives [B, L] -> [B, L]."""
    pos = jnp.sum(h * tf.embed(table, targets), -1)
    neg = jnp.sum(h * tf.embed(table, negatives), -1)
    return jax.nn.softplus(-pos) + jax.nn.softplus(neg)


# -- the model ------------------------------------------------------------------------------------


def sasrec(
    loss: str = "bce",
    d: int = 50,
    n_blocks: int = 2,
    n_heads: int = 1,
    ffn_mult: int = 1,
    activation: str = "relu",
    pre_ln: bool = True,
    scale_emb: bool = True,
    positions: bool = True,
    dropout: float = 0.2,
    emb_dropout: float = 0.2,
    ln_eps: float = 1e-8,
    max_len: int = 50,
    lr: float = 1e-3,
    b2: float = 0.98,
    weight_decay: float = 0.0,
    pack_ratio: float = packing.DEFAULT_RATIO,
) -> Trainable:
    """SASRec as a :class:`~diffrec_jax.protocol.Trainable` (maths in the module docstring).

    Args:
      loss: "bce" (one sampled negative per position) or "ce" (full softmax).
      d: embedding and model width.
      n_blocks, n_heads: Transformer blocks and attention heads (d divisible by n_heads).
      ffn_mult: feed-forward width as a multiple of d.
      activation: FFN activation, "relu", "gelu" (erf) or "gelu_tanh".
      pre_ln: pre-LN blocks and a final LayerNorm (True) or LayerNorm-ed embeddings and post-LN
        blocks (False).
      scale_emb: multiply item embeddings by sqrt(d).
      positions: add learned positional embeddings.
      dropout: dropout inside the blocks (attention probabilities, residual branches, FFN).
      emb_dropout: dropout on the input embeddings.
      ln_eps: LayerNorm epsilon.
      max_len: history length L (size of the positional table).
      lr, b2: Adam learning rate and second-moment decay.
      weight_decay: L2 penalty added to the gradient before Adam (torch.optim.Adam's
        weight_decay), on every parameter.
      pack_ratio: train on packed rows (:mod:`diffrec_jax.nn.packing`): the real tokens
        of a batch of B examples in ``ceil(pack_ratio * B)`` rows, a batch that does not fit
        unpacked; the same loss up to dropout masks, faster on short sequences. 0: off.

    Returns:
      ``Trainable(init, loss, score, optimizer)`` over :class:`SeqBatch` ("sequence" examples);
      params as :func:`init_sasrec`, model state ``()``; aux ``{"positions": mean number of real
      positions per example, "packed": 1 if the batch ran packed}``.

    Raises:
      ConfigError: an invalid hyperparameter (the message names it).
    """
    _validate(locals())
    act = ACTIVATIONS[activation]
    forward = functools.partial(
        hidden_states,
        n_heads=n_heads,
        pre_ln=pre_ln,
        scale_emb=scale_emb,
        activation=act,
        eps=ln_eps,
    )

    def init(key: jax.Array, n_items: int) -> tuple[Params, tuple]:
        params = init_sasrec(
            key,
            n_items,
            d=d,
            n_blocks=n_blocks,
            n_heads=n_heads,
            ffn_mult=ffn_mult,
            max_len=max_len,
            positions=positions,
            pre_ln=pre_ln,
        )
        return params, ()

    def loss_fn(params: Params, state: tuple, batch: SeqBatch, key: jax.Array, info: StepInfo):
        table = params["item_emb"]
        pad = table.shape[0] - 1
        k_drop, k_neg = jax.random.split(key)
        b, length = batch.history.shape
        weights = example_weights(batch)
        batch_targets = training_targets(batch, "SASRec")
        w_token = token_weights(weights, batch_targets, pad)
        if loss == "bce":  # drawn in the batch layout: the same negatives packed or not
            negatives = sample_negatives(k_neg, batch.history, batch_targets, pad)
        n_rows = packing.rows(b, pack_ratio)
        plan = packing.plan(batch.history != pad, n_rows) if n_rows else None

        def loss_of(layout: packing.Packing) -> jax.Array:
            targets = packing.gather(batch_targets, layout, pad)
            w = packing.gather(w_token, layout, 0.0)
            h = forward(
                params,
                packing.gather(batch.history, layout, pad),
                key=k_drop,
                dropout=dropout,
                emb_dropout=emb_dropout,
                segments=layout.segment,
                columns=layout.column,
            )
            if loss == "ce":
                return ce_token_mean(h, table, targets, w)
            per_position = bce_per_position(h, table, targets, packing.gather(negatives, layout, 0))
            return token_mean(per_position, targets, w, pad)

        value = packing.packed_or_unpacked(plan, loss_of, b, length)
        aux = {
            "positions": jnp.sum(w_token) / jnp.maximum(jnp.sum(weights), 1.0),
            "packed": jnp.float32(0.0) if plan is None else plan.fits.astype(jnp.float32),
        }
        return value, (state, aux)

    def score(params: Params, batch: SeqBatch) -> jax.Array:
        table = params["item_emb"]
        pad = table.shape[0] - 1
        b, length = batch.history.shape
        n_rows = packing.score_rows(b, pack_ratio)
        plan = packing.plan(batch.history != pad, n_rows) if n_rows else None

        def last(layout: packing.Packing) -> jax.Array:
            h = forward(
                params,
                packing.gather(batch.history, layout, pad),
                segments=layout.segment,
                columns=layout.column,
            )
            return packing.take(h, layout.slot[:, -1], 0.0)  # [B, d]

        return packing.packed_or_unpacked(plan, last, b, length) @ table[:pad].T

    def optimizer() -> optax.GradientTransformation:
        return torch_adam(lr, weight_decay, b2=b2)

    return Trainable(init, loss_fn, score, optimizer)


def _validate(h: Mapping[str, Any]) -> None:
    if h["loss"] not in LOSSES:
        raise ConfigError(f"SASRec loss={h['loss']!r}; expected one of {LOSSES}")
    if h["activation"] not in ACTIVATIONS:
        raise ConfigError(
            f"SASRec activation={h['activation']!r}; expected one of {sorted(ACTIVATIONS)}"
        )
    for name in ("d", "n_blocks", "n_heads", "ffn_mult", "max_len"):
        v = h[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"SASRec {name}={v!r}; expected a positive int")
    if h["d"] % h["n_heads"]:
        raise ConfigError(f"SASRec d={h['d']} is not divisible by n_heads={h['n_heads']}")
    for name in ("dropout", "emb_dropout"):
        if not 0 <= h[name] < 1:
            raise ConfigError(f"SASRec {name}={h[name]!r}; expected 0 <= {name} < 1")
    for name in ("pre_ln", "scale_emb", "positions"):
        if not isinstance(h[name], bool):
            raise ConfigError(f"SASRec {name}={h[name]!r}; expected True or False")
    if not h["lr"] > 0 or not h["ln_eps"] > 0 or not 0 < h["b2"] < 1:
        raise ConfigError(
            f"SASRec needs lr > 0, ln_eps > 0 and 0 < b2 < 1; got lr={h['lr']}, "
            f"ln_eps={h['ln_eps']}, b2={h['b2']}"
        )
    if not h["weight_decay"] >= 0:
        raise ConfigError(f"SASRec weight_decay={h['weight_decay']}; expected >= 0")
    if not 0 <= h["pack_ratio"] <= 1:
        raise ConfigError(f"SASRec pack_ratio={h['pack_ratio']!r}; expected 0 <= pack_ratio <= 1")


# -- registered models: defaults (the registry entries are in diffrec_jax.models) ----------

MODEL_DEFAULTS: dict[str, Any] = {
    name: p.default for name, p in inspect.signature(sasrec).parameters.items()
}
"""Every argument of :func:`sasrec` and its default."""

SASREC_DEFAULTS: dict[str, Any] = {
    **MODEL_DEFAULTS,
    "batch_size": 128,
    "max_epochs": 200,
    "eval_every": 5,
    "patience": 5,
    "select_metric": "NDCG@20",
}
"""Hyperparameters of ``"sasrec"``: the paper's (BCE, d 50, 2 blocks, 1 head, dropout 0.2,
lr 1e-3, batch 128; max_len 50 instead of 200); the original trains 200 epochs without early
stopping, here validation every 5 epochs and a stop after 5 evaluations without improvement."""

SASREC_PLUS_DEFAULTS: dict[str, Any] = {
    **SASREC_DEFAULTS,
    "loss": "ce",
    "d": 128,
    "n_heads": 4,
    "ffn_mult": 4,
    "activation": "gelu",
    "pre_ln": False,
    "scale_emb": False,
    "dropout": 0.1,
    "emb_dropout": 0.3,
    "ln_eps": 1e-12,
    "b2": 0.999,
    "weight_decay": 1e-5,
    "batch_size": 512,
    "max_epochs": 500,
    "patience": 4,
}
"""Hyperparameters of ``"sasrec+"``: full-softmax cross entropy with ADRec's encoder (d 128,
2 blocks, 4 heads, post-LN, GELU FFN 4d, dropout 0.1, embedding dropout 0.3 then LayerNorm)
and training settings (batch 512, Adam lr 1e-3, weight decay 1e-5, up to 500 epochs,
validation every 5, stop after 4 evaluations without improvement)."""
