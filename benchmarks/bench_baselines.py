"""Times fit and full evaluation of every non-neural baseline on the DiffRec ML-1M split.

Every model is built with its registry defaults, fit on train (valid available for models that
use it), and evaluated once on valid + test with :class:`diffrec_jax.evaluation.Evaluator`
(RecBole convention, train rows as input, the DiffRec protocol). The evaluation is timed twice:
the first call includes the jit compilation of the model's score function, the second does not.

If the optional `implicit` package is installed, its ``AlternatingLeastSquares`` runs on the
same data with the same factors, regularisation, iterations and confidence ``C = 1 + alpha R``
(implicit takes the confidence matrix itself, so its own alpha is 1), with its exact
(``use_cg=False``) and conjugate-gradient solvers, against ours (``solver="cholesky"`` / ``"cg"``,
the jit-compiled :func:`diffrec_jax.models.ials.half_step` on prebuilt blocks, compiled
beforehand). Per-iteration times are the median iteration of a run, best of a few interleaved
runs (the machine may be shared); implicit's BLAS is limited to one thread as it recommends, its
own threads use all cores. Both test Recall@20 are printed.

Run: python benchmarks/bench_baselines.py [--data ../shared/data/diffrec-ml-1m_clean]
     [--models ease,itemknn,...] [--no-implicit]
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import jax
import numpy as np
import scipy.sparse as sp

from diffrec_jax import models
from diffrec_jax.data.loaders import load_diffrec_split
from diffrec_jax.evaluation import Evaluator
from diffrec_jax.models.ials import confidence_values, half_step, make_blocks
from diffrec_jax.protocol import FitData

BASELINES = (
    "toppop",
    "ease",
    "itemknn",
    "userknn",
    "p3alpha",
    "rp3beta",
    "slim",
    "puresvd",
    "ials",
    "gfcf",
)
DEFAULT_DATA = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "diffrec-ml-1m_clean"
)


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args, **kwargs))
    return out, time.perf_counter() - start


def bench_models(split, evaluator, names) -> None:
    print(
        f"{'model':<9} {'fit s':>7} {'eval s':>7} {'warm s':>7} {'valid R@20':>10} "
        f"{'test R@20':>10} {'test N@20':>10}"
    )
    for name in names:
        model = models.get(name).build()
        params, fit_s = _timed(model.fit, FitData(split.train, split.valid), jax.random.key(0))
        result, eval_s = _timed(evaluator.evaluate, model.score, params)
        _, warm_s = _timed(evaluator.evaluate, model.score, params)
        v, t = result["valid"].summary, result["test"].summary
        print(
            f"{name:<9} {fit_s:7.2f} {eval_s:7.2f} {warm_s:7.2f} {v['Recall@20']:10.4f} "
            f"{t['Recall@20']:10.4f} {t['NDCG@20']:10.4f}",
            flush=True,
        )


def bench_ials_vs_implicit(split, evaluator, iterations: int, repeats: int) -> None:
    try:
        import implicit
        from implicit.cpu.als import AlternatingLeastSquares
    except ImportError:
        print("implicit is not installed: skipping the iALS comparison")
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    hp = models.get("ials").defaults
    factors, reg, alpha = hp["factors"], hp["reg"], hp["alpha"]
    m = split.train.csr
    conf = confidence_values(m.data, alpha=alpha).astype(np.float32)
    # implicit wants a writable scipy csr_matrix of confidences.
    c = sp.csr_matrix((conf, m.indices.copy(), m.indptr.copy()), shape=m.shape)
    ct = sp.csr_array(c.T.tocsr())
    user_blocks = make_blocks(m, conf, factors)
    item_blocks = make_blocks(ct, ct.data, factors)
    score = models.get("ials").build().score
    print(
        f"\niALS vs implicit {implicit.__version__}: factors {factors}, reg {reg}, alpha {alpha} "
        f"(C = 1 + alpha R), {iterations} iterations; seconds per iteration = best over "
        f"{repeats} interleaved runs of the median iteration"
    )
    print(
        f"{'solver':<9} {'ours s/it':>9} {'theirs s/it':>11} {'ratio':>6} "
        f"{'ours R@20':>9} {'theirs R@20':>11}"
    )
    limit = threadpool_limits(1, "blas") if threadpool_limits else contextlib.nullcontext()
    for solver, use_cg in (("cholesky", False), ("cg", True)):

        def ours_run(solver=solver):
            y = hp["init_scale"] * jax.random.normal(
                jax.random.key(0), (m.shape[1], factors), jax.numpy.float32
            )
            x = jax.numpy.zeros((m.shape[0], factors), jax.numpy.float32)
            times = []
            for _ in range(iterations):
                start = time.perf_counter()
                x = half_step(x, y, user_blocks, reg, solver=solver)
                y = jax.block_until_ready(half_step(y, x, item_blocks, reg, solver=solver))
                times.append(time.perf_counter() - start)
            return (x, y), float(np.median(times))

        def theirs_run(use_cg=use_cg):
            model = AlternatingLeastSquares(
                factors=factors,
                regularization=reg,
                alpha=1.0,
                iterations=iterations,
                use_cg=use_cg,
                random_state=0,
            )
            times = []
            with limit:
                model.fit(c, show_progress=False, callback=lambda it, el, loss: times.append(el))
            return model, float(np.median(times))

        ours_run()  # compile
        ours_best = theirs_best = np.inf
        for _ in range(repeats):
            (x, y), t_ours = ours_run()
            theirs, t_theirs = theirs_run()
            ours_best, theirs_best = min(ours_best, t_ours), min(theirs_best, t_theirs)
        ours = evaluator.evaluate(score, {"user_factors": x, "item_factors": y}, parts=("test",))
        params = {
            "user_factors": jax.numpy.asarray(theirs.user_factors),
            "item_factors": jax.numpy.asarray(theirs.item_factors),
        }
        their_result = evaluator.evaluate(score, params, parts=("test",))
        print(
            f"{solver:<9} {ours_best:9.3f} {theirs_best:11.3f} {ours_best / theirs_best:6.2f} "
            f"{ours['test'].summary['Recall@20']:9.4f} "
            f"{their_result['test'].summary['Recall@20']:11.4f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="DiffRec release folder.")
    parser.add_argument("--models", default=",".join(BASELINES), help="Comma-separated names.")
    parser.add_argument("--no-implicit", action="store_true", help="Skip the implicit run.")
    parser.add_argument("--iterations", type=int, default=15, help="iALS iterations compared.")
    parser.add_argument("--repeats", type=int, default=3, help="Interleaved iALS timing runs.")
    args = parser.parse_args()
    split = load_diffrec_split(args.data)
    print(
        f"{split.name}: {split.n_users} users x {split.n_items} items, train {split.train.nnz}, "
        f"valid {split.valid.nnz}, test {split.test.nnz}; jax {jax.__version__} on "
        f"{jax.devices()[0].platform}"
    )
    evaluator = Evaluator(split, ks=(20,))
    names = [n for n in args.models.split(",") if n]
    bench_models(split, evaluator, names)
    if not args.no_implicit and "ials" in names:
        bench_ials_vs_implicit(split, evaluator, args.iterations, args.repeats)


if __name__ == "__main__":
    main()
