r"""T-DiffRec: DiffRec on time-aware interaction weights (Wang et al. 2023, section 3.4).

Each user's train interactions, in chronological order, get the values
:math:`\mathrm{linspace}(w_{min}, w_{max}, n_u)` instead of 1, so recent interactions weigh more
in the diffusion's :math:`x_0`; everything else is DiffRec. Masks and ground truth stay binary.

The reweighting is a pure data transform (:func:`time_weighted`), not part of the model: the
original feeds the weighted train rows both to training and, as the input rows, to validation
and test. The registry entry ``"tdiffrec"`` therefore declares it as its ``prepare``, which
the experiment applies to the split before fitting and evaluating.

Chronological order comes from the train matrix's timestamps (ties keep column order). The
DiffRec loader stores every train pair's row index in ``train_list.npy`` as its timestamp (the
release files are in chronological order per user, which is what the original uses). Without
timestamps the column (CSR) order may be used, but only when asked for with
``order="csr"``: it is an arbitrary order, not a time.

References:
  Wang, Xu, Feng, Lin, He, Chua, "Diffusion Recommender Model", SIGIR 2023.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.data.split import Split
from diffrec_jax.errors import ConfigError, DataError
from diffrec_jax.models import diffrec as diffrec_model

ORDERS = ("timestamps", "csr")

TIME_DEFAULTS: dict[str, Any] = {"w_min": 0.1, "w_max": 1.0, "time_order": "timestamps"}
"""T-DiffRec's own hyperparameters (w 0.1-1.0: the released Amazon-book configuration)."""

RECOMMENDER_DEFAULTS: dict[str, Any] = {**diffrec_model.RECOMMENDER_DEFAULTS, **TIME_DEFAULTS}
"""Every hyperparameter of the ``"tdiffrec"`` registry entry and its default."""


def _check_weights(w_min: float, w_max: float, order: str) -> tuple[float, float]:
    if order not in ORDERS:
        raise ConfigError(f"unknown time order {order!r}; expected one of {list(ORDERS)}")
    try:
        w_min, w_max = float(w_min), float(w_max)
    except (TypeError, ValueError):
        raise ConfigError(f"w_min and w_max must be numbers, got {w_min=!r}, {w_max=!r}") from None
    if not (math.isfinite(w_min) and math.isfinite(w_max) and 0 < w_min <= w_max):
        raise ConfigError(
            f"T-DiffRec needs finite weights 0 < w_min <= w_max, got {w_min=}, {w_max=}"
        )
    return w_min, w_max


def chronological_rank(train: InteractionMatrix, order: str = "timestamps") -> np.ndarray:
    """[nnz] int64 position of every stored entry (CSR order) in its user's chronology.

    Args:
      train: the matrix.
      order: "timestamps" (ties keep column order) or "csr" (column order, explicitly chosen
        when there are no timestamps).

    Raises:
      DataError: order "timestamps" on a matrix without timestamps.
      ConfigError: unknown order.
    """
    if order not in ORDERS:
        raise ConfigError(f"unknown time order {order!r}; expected one of {list(ORDERS)}")
    lengths = train.user_lengths()
    starts = train.csr.indptr[:-1].astype(np.int64)
    users = np.repeat(np.arange(train.n_users, dtype=np.int64), lengths)
    if order == "csr":
        return np.arange(train.nnz, dtype=np.int64) - np.repeat(starts, lengths)
    if train.timestamps is None:
        raise DataError(
            f"{train!r} has no timestamps: T-DiffRec needs each user's chronological order; "
            "use a dataset with timestamps, or order='csr' (time_order) to take the column "
            "order as time explicitly"
        )
    positions = np.arange(train.nnz, dtype=np.int64)
    chrono = np.lexsort((positions, np.asarray(train.timestamps), users))  # entries by time
    rank = np.empty(train.nnz, np.int64)
    rank[chrono] = positions - np.repeat(starts, lengths)
    return rank


def time_weighted(
    train: InteractionMatrix, w_min: float, w_max: float, *, order: str = "timestamps"
) -> InteractionMatrix:
    """The train matrix with T-DiffRec's values: linspace(w_min, w_max, n_u) in time order.

    A user's k-th interaction in time (k = 0 .. n_u - 1) gets
    ``np.linspace(w_min, w_max, n_u)[k]`` (computed in float64, stored float32; w_min when
    n_u = 1). The pattern, timestamps and ids are unchanged.

    Args:
      train: the train matrix (its values are ignored).
      w_min, w_max: the weights of the oldest and newest interaction, 0 < w_min <= w_max.
      order: how to order a user's interactions, see :func:`chronological_rank`.

    Raises:
      ConfigError: invalid weights or order.
      DataError: no timestamps with order "timestamps".
    """
    w_min, w_max = _check_weights(w_min, w_max, order)
    rank = chronological_rank(train, order)
    n = np.repeat(train.user_lengths(), train.user_lengths())
    step = (w_max - w_min) / np.maximum(n - 1, 1)
    values = w_min + rank * step  # as np.linspace: start + k * step, the last exactly w_max
    values = np.where((rank == n - 1) & (n > 1), w_max, values)
    return train.with_values(values)


def time_weighted_split(
    split: Split, w_min: float, w_max: float, *, order: str = "timestamps"
) -> Split:
    """`split` with :func:`time_weighted` train values (valid and test unchanged)."""
    train = time_weighted(split.train, w_min, w_max, order=order)
    step = f"T-DiffRec time weights: train values linspace({w_min}, {w_max}, n_u) in {order} order"
    return Split(train, split.valid, split.test, split.name, split.history + (step,))


def check_time_hparams(values: Mapping[str, Any]) -> None:
    """Validates the time-weight hyperparameters (w_min, w_max, time_order) of `values`.

    Raises:
      ConfigError: invalid weights or order.
    """
    _check_weights(values["w_min"], values["w_max"], values["time_order"])
