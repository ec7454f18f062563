r"""LightGCN: linear propagation of ID embeddings on the user-item graph (He et al. 2020).

With R the binary train matrix (its nonzero entries) and the bipartite adjacency
:math:`A = \begin{pmatrix} 0 & R \\ R^T & 0 \end{pmatrix}` over the n_users + n_items nodes,
the normalised adjacency is :math:`\hat A = D^{-1/2} A D^{-1/2}` (D the node degrees; a node
without edges gets an empty row). From the ego embeddings :math:`E^{(0)}` (users then items),
K layers propagate :math:`E^{(k+1)} = \hat A E^{(k)}` and the final embeddings are the mean
:math:`\frac{1}{K+1} \sum_{k=0}^{K} E^{(k)}`; scores are the inner products of final user and
item embeddings.

Training is BPR on sampled triples as :mod:`diffrec_jax.models.bprmf` (same sampler, one
propagation per step), scored with the final embeddings, with the L2 term on the triple's ego
embeddings (the authors' ``bpr_loss``: decay / 2 times the squared norms of the ego embeddings
divided by the number of triples). Initialisation N(0, 0.1^2), Adam: the authors' PyTorch code.

The adjacency is built on the host (scipy) from the train matrix, so the Trainable is built at
fit time (:func:`lightgcn` takes the graph). It enters the training step as the model state, an
argument rather than a compile-time constant. The registry entry's :func:`plan` builds it from
the data; the shared loop validates on embeddings propagated once per evaluation (the
Trainable's ``export``), and the fit returns the final embeddings ``{"users", "items"}`` of the
best epoch: scoring is then one matrix product per batch, with no propagation.

References:
  He, Deng, Wang, Li, Zhang, Wang, "LightGCN: Simplifying and Powering Graph Convolution
  Network for Recommendation", SIGIR 2020 (code: github.com/kuandeng/LightGCN,
  github.com/gusye1234/LightGCN-PyTorch).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.sparse as sp
from jax.experimental import sparse as jsparse

from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.errors import ConfigError
from diffrec_jax.models.bprmf import (
    bpr_per_row,
    check_pairwise_hparams,
    embedding_score,
    init_embeddings,
    l2_per_row,
    sample_triples,
    valid_rows,
)
from diffrec_jax.protocol import (
    FitData,
    StepInfo,
    Trainable,
    UserBatch,
    mean_over_rows,
)
from diffrec_jax.train import TrainPlan, row_train_config

Params = dict[str, jax.Array]
Graph = Mapping[str, Any]
"""The normalised adjacency in COO form: ``{"indices": [nnz, 2] int32 (row, column),
"values": [nnz] float32}``, rows sorted, numpy or JAX arrays, and for small graphs also its
user-item block dense, ``"r_hat": [n_users, n_items] float32`` (see :func:`graph_arrays`)."""

DENSE_LIMIT = 1 << 25
"""Largest n_users * n_items (128 MB of float32) for which :func:`graph_arrays` adds the dense
user-item block: on CPU its two matrix products per layer are about 3x faster than the sparse
product (ML-1M: 5,949 x 2,810, 0.09 s vs 0.27 s per layer at d 64; the backward 1.4x)."""


def normalized_adjacency(train: InteractionMatrix | sp.sparray) -> sp.csr_array:
    r"""The normalised bipartite adjacency :math:`D^{-1/2} A D^{-1/2}` of the train matrix.

    Args:
      train: [n_users, n_items] train interactions; every nonzero entry is an edge of weight 1.

    Returns:
      [n_users + n_items, n_users + n_items] float32 csr with sorted indices; users first.
    """
    r = sp.csr_array(train.csr if isinstance(train, InteractionMatrix) else train)
    r = sp.csr_array((r != 0).astype(np.float64))
    a = sp.block_array([[None, r], [r.T, None]], format="csr")
    degree = np.asarray(a.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(degree)
    np.power(degree, -0.5, out=inv_sqrt, where=degree > 0)
    scale = sp.diags_array(inv_sqrt)
    out = sp.csr_array(scale @ a @ scale)
    out.sort_indices()
    return out.astype(np.float32)


def graph_arrays(
    train: InteractionMatrix | sp.sparray, dense_limit: int = DENSE_LIMIT
) -> dict[str, np.ndarray]:
    """:func:`normalized_adjacency` as the numpy arrays of a :data:`Graph`; with "r_hat" when
    ``n_users * n_items <= dense_limit``."""
    csr = normalized_adjacency(train)
    adj = csr.tocoo()
    out = {
        "indices": np.stack([adj.row, adj.col], axis=1).astype(np.int32),
        "values": np.asarray(adj.data, np.float32),
    }
    n_users, n_items = train.shape
    if n_users * n_items <= dense_limit:
        out["r_hat"] = csr[:n_users, n_users:].toarray().astype(np.float32)
    return out


def propagate(params: Params, graph: Graph, n_layers: int) -> Params:
    """Final embeddings: the mean of the ego embeddings and `n_layers` propagations.

    Args:
      params: ``{"users": [n_users, d], "items": [n_items, d]}`` ego embeddings.
      graph: the normalised adjacency over the n_users + n_items nodes (:data:`Graph`).
      n_layers: K (static).

    Returns:
      ``{"users": [n_users, d], "items": [n_items, d]}`` float32.
    """
    n_users = params["users"].shape[0]
    if "r_hat" in graph:  # A = [[0, R], [R^T, 0]]: two dense products per layer
        r = jnp.asarray(graph["r_hat"])
        u, i = params["users"], params["items"]
        total_u, total_i = u, i
        for _ in range(n_layers):
            u, i = r @ i, r.T @ u
            total_u, total_i = total_u + u, total_i + i
        return {"users": total_u / (n_layers + 1), "items": total_i / (n_layers + 1)}
    e = jnp.concatenate([params["users"], params["items"]], axis=0)
    n = e.shape[0]
    adj = jsparse.BCOO(
        (jnp.asarray(graph["values"]), jnp.asarray(graph["indices"])),
        shape=(n, n),
        indices_sorted=True,
        unique_indices=True,
    )
    total = e
    for _ in range(n_layers):
        e = adj @ e
        total = total + e
    final = total / (n_layers + 1)
    return {"users": final[:n_users], "items": final[n_users:]}


propagate_jit = jax.jit(propagate, static_argnames="n_layers")
""":func:`propagate`, compiled (the graph is an argument, not a constant)."""


def lightgcn(
    graph: Graph,
    n_users: int,
    *,
    factors: int = 64,
    n_layers: int = 3,
    lr: float = 1e-3,
    reg: float = 1e-4,
    samples_per_user: int = 16,
) -> Trainable:
    """LightGCN as a :class:`~diffrec_jax.protocol.Trainable` on a given graph.

    Args:
      graph: the normalised adjacency (:func:`graph_arrays` of the train matrix), numpy.
      n_users: users of the train matrix (the first n_users nodes of `graph`).
      factors: embedding size.
      n_layers: K propagation layers (0 is matrix factorisation).
      lr: Adam learning rate.
      reg: L2 weight on the triples' ego embeddings (the authors' ``decay``).
      samples_per_user: BPR triples per user of a batch
        (:func:`~diffrec_jax.models.bprmf.sample_triples`).

    Returns:
      ``Trainable(init, loss, score, optimizer)``; params the ego embeddings
      ``{"users": [n_users, factors], "items": [n_items, factors]}``; model state the graph as
      JAX arrays (returned unchanged by the loss); aux "bpr" and "l2" as BPR-MF. `export`
      propagates the ego embeddings once (:func:`propagate`, after training and before every
      validation) and `score` is :func:`~diffrec_jax.models.bprmf.embedding_score` of the
      propagated embeddings.

    Raises:
      ConfigError: an invalid hyperparameter.
    """
    check_pairwise_hparams(
        "LightGCN", factors=factors, lr=lr, reg=reg, samples_per_user=samples_per_user
    )
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 0:
        raise ConfigError(f"LightGCN needs an int n_layers >= 0, got {n_layers=}")
    if isinstance(n_users, bool) or not isinstance(n_users, int) or n_users < 1:
        raise ConfigError(f"LightGCN needs an int n_users >= 1, got {n_users=}")
    # Scoring propagates with the whole graph (the dense user-item block when it has one, as
    # graph_arrays builds small graphs); the training state holds the sparse arrays.
    device_graph = {k: jnp.asarray(v) for k, v in graph.items()}
    graph = {k: np.asarray(graph[k]) for k in ("indices", "values")}
    reg = float(reg)

    def init(key: jax.Array, n_items: int) -> tuple[Params, Graph]:
        n_nodes = n_users + n_items
        if graph["indices"].size and int(graph["indices"].max()) >= n_nodes:
            raise ConfigError(
                f"LightGCN graph has node indices up to {int(graph['indices'].max())}, "
                f"expected fewer than n_users + n_items = {n_nodes}"
            )
        # Fresh device arrays: the training loop donates its state.
        return init_embeddings(key, n_users, n_items, factors), {
            k: jnp.array(v) for k, v in graph.items()
        }

    def loss(params: Params, state: Graph, batch: UserBatch, key: jax.Array, info: StepInfo):
        del info
        triples = sample_triples(key, batch.rows, samples_per_user)
        final = propagate(params, state, n_layers)
        bpr = bpr_per_row(
            final["users"][batch.users],
            final["items"][triples.positives],
            final["items"][triples.negatives],
        )
        l2 = l2_per_row(
            params["users"][batch.users],
            params["items"][triples.positives],
            params["items"][triples.negatives],
        )
        batch = valid_rows(batch, triples)
        aux = {
            "bpr": mean_over_rows(jax.lax.stop_gradient(bpr), batch),
            "l2": mean_over_rows(jax.lax.stop_gradient(l2), batch),
        }
        return mean_over_rows(bpr + reg * l2, batch), (state, aux)

    def export(params: Params) -> Params:
        return propagate_jit(params, device_graph, n_layers)

    def optimizer() -> optax.GradientTransformation:
        return optax.adam(lr)

    return Trainable(init, loss, embedding_score, optimizer, export)


DEFAULTS: dict[str, Any] = {
    name: p.default
    for name, p in inspect.signature(lightgcn).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
}
"""Every hyperparameter of :func:`lightgcn` (graph and n_users come from the data)."""

TRAIN_DEFAULTS: dict[str, Any] = {
    # 128 users x 16 samples = 2048 triples per step, the authors' bpr_batch_size.
    "batch_size": 128,
    "max_epochs": 1000,
    "eval_every": 10,
    "patience": 5,
}
"""LightGCN's training hyperparameters, as recommender hparams."""

RECOMMENDER_DEFAULTS: dict[str, Any] = {**DEFAULTS, **TRAIN_DEFAULTS}
"""Every hyperparameter of the ``"lightgcn"`` registry entry and its default."""


def check_hparams(values: Mapping[str, Any]) -> None:
    """Validates LightGCN's hyperparameters (raises ConfigError) without data."""
    empty = {"indices": np.zeros((0, 2), np.int32), "values": np.zeros(0, np.float32)}
    lightgcn(empty, 1, **{k: values[k] for k in DEFAULTS})


def plan(values: Mapping[str, Any], data: FitData) -> TrainPlan:
    """The training plan of ``"lightgcn"``: :func:`lightgcn` on the graph of ``data.train``,
    the shared loop's configuration from :data:`TRAIN_DEFAULTS`' hyperparameters."""
    trainable = lightgcn(
        graph_arrays(data.train), int(data.train.n_users), **{k: values[k] for k in DEFAULTS}
    )
    return TrainPlan(trainable, row_train_config(values))
