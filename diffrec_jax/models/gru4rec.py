r"""GRU4Rec: a recurrent network over the history, trained with full-softmax cross entropy.

Hidasi, Karatzoglou, Baltrunas, Tikk (ICLR 2016) in the form the sequential-recommendation
literature uses as a baseline (RecBole's GRU4Rec): item embeddings -> embedding dropout -> a
stack of GRU layers -> a linear map to the embedding width -> scores against the (tied) item
table:

.. math::
   x_j = \mathrm{Drop}(E[h_j]), \qquad s_j = \mathrm{GRU}(s_{j-1}, x_j), \qquad
   \mathrm{score}(i \mid h_{\le j}) = \langle W s_j + b, E[i] \rangle.

The GRU cell is torch.nn.GRU's:

.. math::
   r = \sigma(W_{ir} x + b_{ir} + W_{hr} s + b_{hr}), \quad
   z = \sigma(W_{iz} x + b_{iz} + W_{hz} s + b_{hz}), \\
   n = \tanh(W_{in} x + b_{in} + r \odot (W_{hn} s + b_{hn})), \quad
   s' = (1 - z) \odot n + z \odot s,

run with :func:`jax.lax.scan` over the positions, starting from ``s = 0``. Histories are
left-padded (:mod:`diffrec_jax.protocol`); at a padding position the state is carried
unchanged, so the state at the first real item is the GRU's initial one and a history's scores
do not depend on its left padding.

Training uses "sequence" examples and the cross entropy over all items at every real position
(equivalent to RecBole's one-prefix-per-example training, in one pass), averaged over the real
positions of the batch. Scores: the output at the last position (the most recent item).

Defaults (:data:`GRU4REC_DEFAULTS`): d = 64 embedding, hidden = 64, 1 GRU layer, embedding
dropout 0.3 (RecBole's dropout_prob), Adam lr 1e-3, batch 256, max_len 50, up to 200 epochs
with validation every 5 and a stop after 4 evaluations without improvement. Initialisation: the
item table N(0, 1/d) (padding row 0), GRU and linear weights as torch (U(+-1/sqrt(fan))).

References:
  Hidasi, Karatzoglou, Baltrunas, Tikk, "Session-based Recommendations with Recurrent Neural
  Networks", ICLR 2016. Zhao et al., "RecBole", CIKM 2021 (GRU4Rec baseline settings).
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from diffrec_jax.errors import ConfigError
from diffrec_jax.models.sasrec import ce_token_mean, example_weights, training_targets
from diffrec_jax.nn import transformer as tf
from diffrec_jax.nn.layers import dropout as drop
from diffrec_jax.nn.layers import torch_adam
from diffrec_jax.protocol import SeqBatch, StepInfo, Trainable

Params = dict[str, Any]


def init_gru_layer(key: jax.Array, d_in: int, hidden: int) -> Params:
    """One GRU layer, torch's layout transposed and initialisation U(-1/sqrt(hidden), ..).

    Returns:
      ``{"wi": [d_in, 3 hidden], "bi": [3 hidden], "wh": [hidden, 3 hidden],
      "bh": [3 hidden]}``, gates in the order (r, z, n).
    """
    bound = 1.0 / math.sqrt(hidden)
    shapes = {"wi": (d_in, 3 * hidden), "bi": (3 * hidden,), "wh": (hidden, 3 * hidden)}
    shapes["bh"] = (3 * hidden,)
    keys = jax.random.split(key, len(shapes))
    return {
        name: jax.random.uniform(k, shape, jnp.float32, -bound, bound)
        for k, (name, shape) in zip(keys, shapes.items(), strict=True)
    }


def gru_layer(p: Params, x: jax.Array, valid: jax.Array) -> jax.Array:
    """Runs one GRU layer over the positions of `x`.

    Args:
      p: from :func:`init_gru_layer`.
      x: [B, L, d_in] inputs.
      valid: [B, L] bool; at False positions the state is carried unchanged.

    Returns:
      [B, L, hidden] the state after every position (the carried state at padding).
    """
    hidden = p["wh"].shape[0]
    gi = x @ p["wi"] + p["bi"]  # [B, L, 3h], all input projections at once

    def step(s, inputs):
        g, v = inputs
        gh = s @ p["wh"] + p["bh"]
        r = jax.nn.sigmoid(g[:, :hidden] + gh[:, :hidden])
        z = jax.nn.sigmoid(g[:, hidden : 2 * hidden] + gh[:, hidden : 2 * hidden])
        n = jnp.tanh(g[:, 2 * hidden :] + r * gh[:, 2 * hidden :])
        new = (1.0 - z) * n + z * s
        s = jnp.where(v[:, None], new, s)
        return s, s

    s0 = jnp.zeros((x.shape[0], hidden), x.dtype)
    _, out = jax.lax.scan(step, s0, (gi.swapaxes(0, 1), valid.swapaxes(0, 1)))
    return out.swapaxes(0, 1)


def init_gru4rec(key: jax.Array, n_items: int, *, d: int, hidden: int, n_layers: int) -> Params:
    """GRU4Rec parameters.

    Returns:
      ``{"item_emb": [n_items + 1, d], "gru": [layer, ...], "out": {"w": [hidden, d],
      "b": [d]}}``.
    """
    k_item, k_gru, k_out = jax.random.split(key, 3)
    sizes = [d] + [hidden] * n_layers
    return {
        "item_emb": tf.init_embedding(k_item, n_items, d),
        "gru": [
            init_gru_layer(k, a, hidden)
            for k, a in zip(jax.random.split(k_gru, n_layers), sizes[:-1], strict=True)
        ],
        "out": tf.init_linear(k_out, hidden, d),
    }


def outputs(
    params: Params,
    history: jax.Array,
    *,
    key: jax.Array | None = None,
    emb_dropout: float = 0.0,
    dropout: float = 0.0,
) -> jax.Array:
    """The output vector ``W s_j + b`` at every position: [B, L] int -> [B, L, d] (zero at
    padding positions). `key` None: no dropout (scoring)."""
    table = params["item_emb"]
    valid = history != table.shape[0] - 1
    x = tf.embed(table, history)
    keys = jax.random.split(key, len(params["gru"]) + 1) if key is not None else None
    if keys is not None and emb_dropout > 0:
        x = drop(keys[0], x, emb_dropout)
    for i, layer in enumerate(params["gru"]):
        if i > 0 and keys is not None and dropout > 0:
            x = drop(keys[i], x, dropout)
        x = gru_layer(layer, x, valid)
    return tf.linear(params["out"], x) * valid[..., None]


def gru4rec(
    d: int = 64,
    hidden: int = 64,
    n_layers: int = 1,
    emb_dropout: float = 0.3,
    dropout: float = 0.0,
    max_len: int = 50,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
) -> Trainable:
    """GRU4Rec as a :class:`~diffrec_jax.protocol.Trainable` (maths in the module docstring).

    Args:
      d: embedding width (also the output width scored against the item table).
      hidden: GRU state size.
      n_layers: stacked GRU layers.
      emb_dropout: dropout on the input embeddings.
      dropout: dropout between GRU layers (torch.nn.GRU's `dropout`; unused with one layer).
      max_len: history length L of the training examples and of evaluation (the GRU itself
        takes any length).
      lr: Adam learning rate.
      weight_decay: L2 penalty added to the gradient before Adam (torch's weight_decay).

    Returns:
      ``Trainable(init, loss, score, optimizer)`` over :class:`SeqBatch` ("sequence" examples);
      params as :func:`init_gru4rec`, model state ``()``.

    Raises:
      ConfigError: an invalid hyperparameter (the message names it).
    """
    for name, v in (("d", d), ("hidden", hidden), ("n_layers", n_layers), ("max_len", max_len)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"GRU4Rec {name}={v!r}; expected a positive int")
    for name, rate in (("emb_dropout", emb_dropout), ("dropout", dropout)):
        if not 0 <= rate < 1:
            raise ConfigError(f"GRU4Rec {name}={rate!r}; expected 0 <= {name} < 1")
    if not lr > 0 or not weight_decay >= 0:
        raise ConfigError(f"GRU4Rec needs lr > 0 and weight_decay >= 0; got {lr=}, {weight_decay=}")

    def init(key: jax.Array, n_items: int) -> tuple[Params, tuple]:
        return init_gru4rec(key, n_items, d=d, hidden=hidden, n_layers=n_layers), ()

    def loss(params: Params, state: tuple, batch: SeqBatch, key: jax.Array, info: StepInfo):
        table = params["item_emb"]
        h = outputs(params, batch.history, key=key, emb_dropout=emb_dropout, dropout=dropout)
        targets = training_targets(batch, "GRU4Rec")
        return ce_token_mean(h, table, targets, example_weights(batch)), (state, {})

    def score(params: Params, batch: SeqBatch) -> jax.Array:
        table = params["item_emb"]
        return outputs(params, batch.history)[:, -1] @ table[: table.shape[0] - 1].T

    def optimizer() -> optax.GradientTransformation:
        return torch_adam(lr, weight_decay)

    return Trainable(init, loss, score, optimizer)


MODEL_DEFAULTS: dict[str, Any] = {
    name: p.default for name, p in inspect.signature(gru4rec).parameters.items()
}
"""Every argument of :func:`gru4rec` and its default."""

GRU4REC_DEFAULTS: dict[str, Any] = {
    **MODEL_DEFAULTS,
    "batch_size": 256,
    "max_epochs": 200,
    "eval_every": 5,
    "patience": 4,
    "select_metric": "NDCG@20",
}
"""Every hyperparameter of ``"gru4rec"`` and its default (see the module docstring)."""
