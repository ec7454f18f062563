"""Times a full valid + test evaluation on an ML-1M-sized synthetic problem.

Problem: 6,000 users x 2,810 items, about 68 train, 19 valid and 10 test items per user drawn
with a popularity skew; scores from a low-rank matmul model, ``(rows @ V) @ V.T`` with V
[n_items, 64] (cheap, so the figures are those of the evaluation, not of the model).

Compares :class:`diffrec_jax.evaluation.Evaluator` (one scoring pass, jit-compiled top-K) with a
plain numpy evaluation of the same protocol (full score matrix, exclusion by -inf, full
``np.argsort(kind="stable")`` per part, metrics from the hits matrix). Prints figures only.

Run: python benchmarks/bench_evaluate.py [--users 6000] [--items 2810] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.data.split import Split
from diffrec_jax.evaluation import Evaluator
from diffrec_jax.protocol import UserBatch

KS = (10, 20)


def make_split(n_users: int, n_items: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    users, items, parts = [], [], []
    lengths = np.clip(rng.poisson(97, n_users), 10, n_items)
    for u, n in enumerate(lengths):
        chosen = rng.choice(n_items, size=n, replace=False, p=popularity)
        part = np.zeros(n, np.int8)  # 0 train, 1 valid, 2 test: 70 / 20 / 10
        n_valid, n_test = round(0.2 * n), round(0.1 * n)
        part[n - n_valid - n_test : n - n_test] = 1
        part[n - n_test :] = 2
        users.append(np.full(n, u))
        items.append(chosen)
        parts.append(part)
    users, items, parts = map(np.concatenate, (users, items, parts))
    m = [
        InteractionMatrix.from_arrays(
            users[parts == p], items[parts == p], shape=(n_users, n_items)
        )
        for p in range(3)
    ]
    return Split(m[0], m[1], m[2], name="synthetic-ml1m")


def score_fn(params, batch: UserBatch) -> jax.Array:
    return (batch.rows @ params["v"]) @ params["v"].T


def numpy_evaluate(split: Split, v: np.ndarray) -> dict[str, dict[str, float]]:
    """The same protocol in plain numpy (RecBole definitions), for timing and a sanity check."""
    users = np.arange(split.n_users)
    rows = split.train.dense_rows(users)
    scores = (rows @ v) @ v.T
    train = rows != 0
    valid = split.valid.dense_rows(users) != 0
    test = split.test.dense_rows(users) != 0
    out = {}
    for part, truth, exclude in (("valid", valid, train), ("test", test, train | valid)):
        s = np.where(exclude, -np.inf, scores)
        top = np.argsort(-s, axis=1, kind="stable")[:, : max(KS)]
        hits = np.take_along_axis(truth, top, axis=1).astype(np.float64)
        t = truth.sum(axis=1).astype(np.float64)
        ev = t > 0
        res = {}
        for k in KS:
            h = hits[ev, :k]
            disc = 1.0 / np.log2(np.arange(2, k + 2))
            idcg = np.cumsum(disc)[np.minimum(t[ev], k).astype(int) - 1]
            n_hits = h.sum(axis=1)
            res[f"Recall@{k}"] = float(np.mean(n_hits / t[ev]))
            res[f"NDCG@{k}"] = float(np.mean((h @ disc) / idcg))
            res[f"Precision@{k}"] = float(np.mean(n_hits / k))
        out[part] = res
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=6000)
    parser.add_argument("--items", type=int, default=2810)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    split = make_split(args.users, args.items, args.seed)
    per_user = [m.nnz / split.n_users for m in (split.train, split.valid, split.test)]
    print(
        f"problem: {split.n_users} users x {split.n_items} items; per user train "
        f"{per_user[0]:.1f}, valid {per_user[1]:.1f}, test {per_user[2]:.1f}; jax "
        f"{jax.__version__} on {jax.devices()[0].platform}"
    )
    rng = np.random.default_rng(args.seed + 1)
    v = (rng.normal(size=(split.n_items, args.rank)) / np.sqrt(args.rank)).astype(np.float32)
    params = {"v": jnp.asarray(v)}

    evaluator = Evaluator(split, ks=KS)
    t0 = time.perf_counter()
    results = evaluator.evaluate(score_fn, params)
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        results = evaluator.evaluate(score_fn, params)
        times.append(time.perf_counter() - t0)
    warm = min(times)
    n_scored = evaluator.users_to_score().size

    times_np = []
    for _ in range(max(1, args.repeats - 1)):
        t0 = time.perf_counter()
        reference = numpy_evaluate(split, v)
        times_np.append(time.perf_counter() - t0)
    t_np = min(times_np)

    print(
        f"batch size {evaluator.batch_size}, {evaluator.batches()} batches, {n_scored} users scored"
    )
    print(
        f"Evaluator valid+test: first call (with compilation) {first:.3f} s, warm "
        f"{warm:.3f} s (best of {args.repeats}) = {n_scored / warm:,.0f} users/s"
    )
    print(
        f"numpy argsort evaluation valid+test: {t_np:.3f} s = {split.n_users / t_np:,.0f} users/s"
    )
    print(f"speed-up numpy / Evaluator (warm): {t_np / warm:.1f}x")
    for part in ("valid", "test"):
        s = results[part].summary
        diffs = max(abs(s[key] - value) for key, value in reference[part].items())
        print(
            f"{part}: Recall@20 {s['Recall@20']:.4f}, NDCG@20 {s['NDCG@20']:.4f}, "
            f"Coverage@20 {s['Coverage@20']:.4f}, Gini@20 {s['Gini@20']:.4f}; "
            f"max |diff| vs numpy {diffs:.2e}"
        )


if __name__ == "__main__":
    main()
