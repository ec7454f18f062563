r"""k-means clustering (Lloyd's algorithm), deterministic and seeded, in numpy float64.

L-DiffRec (Wang et al., SIGIR 2023) groups items by k-means on their pretrained embeddings with
the ``kmeans_pytorch`` package (``kmeans(X, num_clusters, distance="euclidean")``). That
package:

- initialises the centres with ``np.random.choice(n, k, replace=False)`` from numpy's global
  generator (the L-DiffRec script seeds it with ``np.random.seed(1)`` and draws nothing else
  before the clustering, so the original always uses the first draw of seed 1);
- then repeats: assign every point to its nearest centre (squared euclidean distance, first
  index on ties), move each centre to the mean of its points, stop when
  :math:`(\sum_j \lVert c_j - c_j^{prev} \rVert)^2 < tol` with ``tol = 1e-4``; it returns the
  assignment of the last iteration (made before the last centre update) and the new centres.

:func:`kmeans` with ``init="random"`` does exactly that, the initial indices coming from
``np.random.RandomState(seed).choice(n, k, replace=False)`` (an explicit legacy generator, so
``seed=1`` gives the original's initial centres without touching numpy's global state).
``init="k-means++"`` offers the D² seeding of Arthur & Vassilvitskii (2007) from
``np.random.default_rng(seed)`` instead.

Differences from ``kmeans_pytorch``: distances and means are computed in float64 (the original
works in float32, so a point within float32 rounding of two centres may be assigned
differently); a centre left without points keeps its position (the package's version 0.1/0.2
turns it into NaN, later versions move it to a random point); the loop stops after `max_iter`
iterations (the original has no bound; :class:`KMeansResult` says whether it converged).

References:
  Lloyd, "Least squares quantization in PCM", IEEE Trans. Inf. Theory 1982.
  Arthur & Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from diffrec_jax.errors import ConfigError, DataError

INITS = ("random", "k-means++")
TOL = 1e-4  # kmeans_pytorch's default
MAX_ITER = 1000
_CHUNK_ELEMENTS = 1 << 24  # points x centres x dims per distance chunk


class KMeansResult(NamedTuple):
    """What :func:`kmeans` returns.

    Attributes:
      labels: [n] int64 cluster of every point (the last iteration's assignment).
      centers: [k, d] float64 centres after the last update.
      n_iter: number of assignment/update iterations run.
      converged: whether the centre shift fell below the tolerance (else `max_iter` was hit).
    """

    labels: np.ndarray
    centers: np.ndarray
    n_iter: int
    converged: bool


def check_points(x, n_clusters: int) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"k-means needs a non-empty [n, d] array of points, got shape {x.shape}")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        row = int(np.argwhere(~np.isfinite(x))[0, 0])
        raise DataError("k-means points must be finite", row=row)
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int | np.integer):
        raise ConfigError(f"n_clusters must be an int, got {n_clusters!r}")
    if not 1 <= n_clusters <= x.shape[0]:
        raise ConfigError(f"n_clusters={n_clusters} must be in [1, n points = {x.shape[0]}]")
    return x


def squared_distances(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """[n, k] squared euclidean distances ``sum((x_i - c_j)^2)``, in float64.

    Computed from the differences (not the expanded ``|x|^2 - 2 x.c + |c|^2``), in chunks of
    points so memory stays bounded.
    """
    x = np.asarray(x, np.float64)
    centers = np.asarray(centers, np.float64)
    n, d = x.shape
    rows = max(1, _CHUNK_ELEMENTS // max(1, centers.shape[0] * d))
    out = np.empty((n, centers.shape[0]), np.float64)
    for start in range(0, n, rows):
        diff = x[start : start + rows, None, :] - centers[None, :, :]
        out[start : start + rows] = np.sum(diff * diff, axis=-1)
    return out


def random_init_indices(n: int, n_clusters: int, seed: int) -> np.ndarray:
    """kmeans_pytorch's initial centres: ``np.random.seed(seed); np.random.choice(n, k, False)``.

    Drawn from an explicit ``np.random.RandomState(seed)``, which gives the same indices as the
    global generator after ``np.random.seed(seed)`` (the original's L-DiffRec uses seed 1).

    Returns:
      [k] int64 distinct point indices.
    """
    return np.random.RandomState(seed).choice(n, n_clusters, replace=False).astype(np.int64)


def kmeans_plus_plus_indices(x: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """k-means++ seeding: the first centre uniformly, each next one with probability ∝ D².

    D is the distance to the nearest centre chosen so far; when every remaining point lies on a
    centre (D = 0 everywhere) the next centre is drawn uniformly among the points not chosen.

    Returns:
      [k] int64 distinct point indices, from ``np.random.default_rng(seed)``.
    """
    x = check_points(x, n_clusters)
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    chosen = [int(rng.integers(n))]
    d2 = squared_distances(x, x[chosen[-1]][None])[:, 0]
    for _ in range(1, n_clusters):
        d2[chosen] = 0.0
        total = d2.sum()
        if total > 0:
            nxt = int(rng.choice(n, p=d2 / total))
        else:
            rest = np.setdiff1d(np.arange(n), chosen)
            nxt = int(rng.choice(rest))
        chosen.append(nxt)
        d2 = np.minimum(d2, squared_distances(x, x[nxt][None])[:, 0])
    return np.asarray(chosen, np.int64)


def lloyd(
    x: np.ndarray, centers: np.ndarray, *, tol: float = TOL, max_iter: int = MAX_ITER
) -> KMeansResult:
    """Lloyd's iterations from `centers` with kmeans_pytorch's stopping rule (see module doc).

    Args:
      x: [n, d] points.
      centers: [k, d] initial centres.
      tol: stop when the squared sum of the centres' euclidean shifts is below it.
      max_iter: upper bound on the iterations.
    """
    x = np.asarray(x, np.float64)
    centers = np.array(centers, np.float64, copy=True)
    k = centers.shape[0]
    labels = np.zeros(x.shape[0], np.int64)
    for it in range(1, max_iter + 1):
        labels = np.argmin(squared_distances(x, centers), axis=1)
        previous = centers.copy()
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros_like(centers)
        np.add.at(sums, labels, x)
        filled = counts > 0
        centers[filled] = sums[filled] / counts[filled, None]  # empty clusters keep their centre
        shift = np.sum(np.sqrt(np.sum((centers - previous) ** 2, axis=1)))
        if shift**2 < tol:
            return KMeansResult(labels, centers, it, True)
    return KMeansResult(labels, centers, max_iter, False)


def kmeans(
    x,
    n_clusters: int,
    *,
    init: str = "random",
    seed: int = 1,
    tol: float = TOL,
    max_iter: int = MAX_ITER,
) -> KMeansResult:
    """Clusters the rows of `x` into `n_clusters` groups; deterministic given `seed`.

    Args:
      x: [n, d] points (any float dtype; computed in float64).
      n_clusters: k, 1 <= k <= n.
      init: "random" (kmeans_pytorch's, :func:`random_init_indices`; with ``seed=1`` the
        original L-DiffRec's centres) or "k-means++" (:func:`kmeans_plus_plus_indices`).
      seed: seeds the initialisation.
      tol: the stopping tolerance (kmeans_pytorch's 1e-4).
      max_iter: upper bound on the iterations.

    Returns:
      A :class:`KMeansResult`; cluster j is the one initialised at the j-th initial centre.

    Raises:
      DataError: `x` not a finite non-empty 2-D array.
      ConfigError: invalid n_clusters, init, seed, tol or max_iter.
    """
    x = check_points(x, n_clusters)
    if init not in INITS:
        raise ConfigError(f"unknown k-means {init=}; expected one of {list(INITS)}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"k-means seed must be an int >= 0, got {seed!r}")
    if not tol >= 0:
        raise ConfigError(f"k-means tol must be >= 0, got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int | np.integer) or max_iter < 1:
        raise ConfigError(f"k-means max_iter must be an int >= 1, got {max_iter!r}")
    if init == "random":
        indices = random_init_indices(x.shape[0], n_clusters, int(seed))
    else:
        indices = kmeans_plus_plus_indices(x, n_clusters, int(seed))
    return lloyd(x, x[indices], tol=tol, max_iter=int(max_iter))
