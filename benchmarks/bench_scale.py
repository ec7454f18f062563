"""DiffRec at Amazon-book scale: peak memory and time per step with sparse storage.

An Amazon-book-shaped dataset (108,822 users x 94,949 items, about 3.1M interactions, the
DiffRec clean version's size) is generated with :func:`diffrec_jax.data.synthetic.synthetic_log`
and split by the data layer. DiffRec with the released Amazon-book configuration (dims [1000],
T = 5, batch 400; 190M parameters) is trained by the shared loop for ``--steps`` update steps:
the train matrix stays sparse (CSR) and only each batch's rows are densified. Then one
evaluation (valid and test in one pass, :class:`~diffrec_jax.evaluation.Evaluator` with its
default user batch, T = 5 denoiser calls per user) runs over all users, or over the first
``--eval_users`` users with held-out items (the per-batch memory is the same; the full time is
extrapolated).

Reported: the peak resident memory of the process after every phase
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``; JAX's ``Device.memory_stats()`` too when the
backend has it, CPU has not), seconds per update step (median interval between consecutive
batches once the step is compiled; the loop keeps at most ``MAX_STEPS_IN_FLIGHT`` steps in
flight, so this is the device's pace) and the evaluation time. The original code densifies the
whole train matrix (41 GB here) and cannot run this on a 24 GB machine.

Run (heavy: nice it on a shared machine):

  nice python benchmarks/bench_scale.py [--steps 200] [--eval_users N] [--batch_size 400]

Measured (2-core CPU machine shared with about 10 other busy processes, so times are several
times the idle ones; ``nice -n 10 python benchmarks/bench_scale.py --steps 30
--eval_users 2000``): 108,822 x 93,172 items (1,777 of the 94,949 generated items drew no
interaction), 3.11M interactions; data generation 1425 s; 186.4M parameters; 38.9 s per step
(the compiled step: 2.2 GiB arguments, aliased outputs, 1.39 GiB temporaries); evaluation 148
ms per user (about 4.5 h for all 108,822 users at that pace); peak resident memory 5.42 GiB.
At the machine's idle 90 GFLOP/s the step (3.7e11 FLOP) would take about 4 s and the full
evaluation (1.9e9 FLOP per user: 5 denoiser calls) about 40 min.
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import numpy as np
import scipy.sparse as sp

from diffrec_jax.data.datasets import load_dataset
from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.data.split import Split
from diffrec_jax.evaluation import Evaluator
from diffrec_jax.models.diffrec import diffrec
from diffrec_jax.protocol import FitData, UserBatch
from diffrec_jax.train import TrainConfig, train
from diffrec_jax.train.loop import MAX_STEPS_IN_FLIGHT

AMAZON_BOOK = dict(n_users=108_822, n_items=94_949, mean_length=28.5)
# The released Amazon-book clean configuration (reference: diffrec-family.md).
HPARAMS = dict(
    lr=5e-5, dims=(1000,), emb_size=10, steps=5, noise_scale=1e-4, noise_min=5e-4, noise_max=5e-3
)
GIB = 2**30


def peak_gib() -> float:
    """Peak resident memory of this process so far, GiB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def device_memory() -> str:
    stats = jax.devices()[0].memory_stats()
    if not stats:
        return f"jax memory_stats: not available on {jax.default_backend()}"
    peak = stats.get("peak_bytes_in_use", stats.get("bytes_in_use", 0))
    return f"jax memory_stats: peak {peak / GIB:.2f} GiB in use on {jax.devices()[0]}"


def report(phase: str, seconds: float) -> None:
    print(f"[{phase}] {seconds:.1f} s; peak RSS so far {peak_gib():.2f} GiB", flush=True)


class StepRows:
    """A :class:`~diffrec_jax.train.BatchSource`: `n_examples` users of a fixed random order
    (repeated if needed), densified batch by batch; records when each batch is built."""

    def __init__(self, matrix: InteractionMatrix, n_examples: int, seed: int):
        self.matrix = matrix
        self.n_examples, self.n_items = n_examples, matrix.shape[1]
        self._order = np.random.default_rng(seed).permutation(matrix.shape[0])
        self.times: list[float] = []

    def batch(self, indices: np.ndarray, weights: np.ndarray) -> UserBatch:
        self.times.append(time.perf_counter())
        users = self._order[indices % len(self._order)].astype(np.int32)
        return UserBatch(users, self.matrix.dense_rows(users), weights)


def first_users(split: Split, n: int) -> Split:
    """`split` with valid and test truth kept for the first `n` users that have any."""
    counts = np.diff(split.valid.csr.indptr) + np.diff(split.test.csr.indptr)
    keep = np.zeros(split.n_users, bool)
    keep[np.flatnonzero(counts > 0)[:n]] = True

    def masked(m: InteractionMatrix) -> InteractionMatrix:
        csr = m.csr
        rows = np.repeat(keep, np.diff(csr.indptr))
        indptr = np.concatenate([[0], np.cumsum(np.where(keep, np.diff(csr.indptr), 0))])
        kept = (csr.data[rows], csr.indices[rows], indptr)
        return InteractionMatrix(sp.csr_array(kept, shape=csr.shape))

    return Split(split.train, masked(split.valid), masked(split.test), split.name, split.history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="update steps to train")
    parser.add_argument("--batch_size", type=int, default=400)
    parser.add_argument(
        "--eval_users", type=int, default=None, help="evaluate only this many users (default all)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()}; MAX_STEPS_IN_FLIGHT={MAX_STEPS_IN_FLIGHT}")

    t0 = time.perf_counter()
    dataset = load_dataset("synthetic", seed=args.seed, name="amazon-book-shaped", **AMAZON_BOOK)
    split = dataset.split
    nnz = split.train.nnz + split.valid.nnz + split.test.nnz
    print(
        f"data: {split.n_users} users x {split.n_items} items, {nnz} interactions "
        f"(train {split.train.nnz}, valid {split.valid.nnz}, test {split.test.nnz}); dense "
        f"train matrix would take {split.n_users * split.n_items * 4 / GIB:.1f} GiB"
    )
    report("data", time.perf_counter() - t0)

    model = diffrec(**HPARAMS)
    shapes = jax.eval_shape(lambda key: model.init(key, split.n_items), jax.random.key(0))[0]
    n_params = sum(x.size for x in jax.tree.leaves(shapes))
    print(
        f"DiffRec {HPARAMS}: {n_params / 1e6:.1f}M parameters ({n_params * 4 / GIB:.2f} GiB; "
        f"params + AdamW moments + best copy {4 * n_params * 4 / GIB:.2f} GiB)"
    )
    config = TrainConfig(
        batch_size=args.batch_size, max_epochs=1, patience=None, seed=args.seed, log_every=1
    )
    source = StepRows(split.train, args.steps * args.batch_size, seed=args.seed)
    t0 = time.perf_counter()
    result = train(model, FitData(split.train), config, source=source)
    params = jax.block_until_ready(result.params)
    train_seconds = time.perf_counter() - t0
    intervals = np.diff(source.times)
    steady = intervals[min(3, len(intervals) - 1) :] if len(intervals) else intervals
    print(
        f"train: {args.steps} steps of {args.batch_size} users in {train_seconds:.1f} s "
        f"(first step incl. compilation {intervals[0] if len(intervals) else float('nan'):.1f} s"
        f"); {np.median(steady):.2f} s/step (median, steps 4+; min {steady.min():.2f}, max "
        f"{steady.max():.2f}); loss {result.history[-1].loss:.4g}"
    )
    report("train", train_seconds)
    print(device_memory())

    eval_split = split if args.eval_users is None else first_users(split, args.eval_users)
    evaluator = Evaluator(eval_split, ks=(10, 20))
    n_eval, n_all = evaluator.users_to_score().size, Evaluator(split).users_to_score().size
    print(
        f"evaluation: {n_eval} of {n_all} users with held-out items, batches of "
        f"{evaluator.batch_size} ({evaluator.batch_size * split.n_items / 1e6:.1f}M scores each)"
    )
    t0 = time.perf_counter()
    Evaluator(first_users(split, 1), ks=(10, 20)).evaluate(model.score, params)  # compiles
    print(f"evaluation: compiled and ran one batch in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    results = evaluator.evaluate(model.score, params)
    eval_seconds = time.perf_counter() - t0
    full = eval_seconds * n_all / max(n_eval, 1)
    print(
        f"evaluation: {eval_seconds:.1f} s for {n_eval} users ({eval_seconds / n_eval * 1e3:.2f} "
        f"ms/user; all {n_all} users: ~{full / 60:.1f} min); test Recall@20 "
        f"{results['test'].summary['Recall@20']:.4f}"
    )
    report("evaluation", eval_seconds)
    print(device_memory())
    print(f"peak resident memory: {peak_gib():.2f} GiB (target < 6 GiB)")


if __name__ == "__main__":
    main()
