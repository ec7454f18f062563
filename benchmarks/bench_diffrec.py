"""DiffRec on the ML-1M clean split: training speed, evaluation time, peak memory, FLOP rate.

One run, the released ML-1M configuration (dims [200, 600], T = 40, batch 400):

1. training: seconds per epoch of the shared training loop (``diffrec_jax.train.train``: host
   densification of each batch, the jitted update step), after the compiling first epoch;
2. the update step alone: its FLOPs as counted by XLA on the compiled computation
   (``jax.jit(step).lower(...).compile().cost_analysis()["flops"]``), its time per call on a
   device-resident batch, hence its achieved FLOP rate, against the rate of a float32 matmul of
   the size of the step's largest one ([400, 2820] @ [2820, 600]) timed in the same run;
3. evaluation: one validation + test round of :class:`~diffrec_jax.evaluation.Evaluator` (the
   reverse process, T = 40 denoiser calls per user, runs once per round for both parts);
4. peak resident memory of the process (``resource.getrusage(RUSAGE_SELF).ru_maxrss``).

Reference figures of the original PyTorch code (from the reproducibility study's logs): 2 s per
epoch at about 65 GFLOP/s, 39 s per validation + test evaluation, 686 MB peak memory. Timings
report the best of the repeats (the machine may be shared).

``--unrolled_threefry`` registers, for this process only, an unrolled lowering of JAX's threefry
hash on CPU (JAX lowers it as a rolled 5-iteration loop there, to save compile time). The random
bits are identical (checked here); the dropout mask and the noise of the update step get
cheaper. This is a measurement aid for a decision, not something the library does.

Run: python benchmarks/bench_diffrec.py [--epochs 4] [--repeats 10] [--unrolled_threefry]
Skips (with a message) when ``<repo>/../shared/data/diffrec-ml-1m_clean`` is absent.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from diffrec_jax import models
from diffrec_jax.data.datasets import load_dataset
from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.evaluation import Evaluator
from diffrec_jax.protocol import FitData, UserBatch, exported
from diffrec_jax.train import TrainState, train
from diffrec_jax.train.loop import epoch_batches, make_train_step, strong_types

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "diffrec-ml-1m_clean"
REFERENCE = {"epoch_s": 2.0, "gflops": 65.0, "eval_s": 39.0, "peak_mb": 686.0}


def best_time(fn, repeats: int, clock=time.perf_counter) -> float:
    """Minimum time (wall by default) of `repeats` calls of `fn` (which must block until done)."""
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return min(times)


def peak_mb() -> float:
    """Peak resident memory of this process so far, MB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rotl(v, d: int):
    return jax.lax.shift_left(v, np.uint32(d)) | jax.lax.shift_right_logical(v, np.uint32(32 - d))


def _threefry2x32_unrolled(key1, key2, x1, x2):
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011), unrolled: JAX's hash, bit for bit."""
    rotations = ((13, 15, 26, 6), (17, 29, 16, 24))
    ks = (key1, key2, key1 ^ key2 ^ np.uint32(0x1BD11BDA))
    x = [x1 + ks[0], x2 + ks[1]]
    for i in range(5):
        for r in rotations[i % 2]:
            x[0] = x[0] + x[1]
            x[1] = _rotl(x[1], r) ^ x[0]
        x[0] = x[0] + ks[(i + 1) % 3]
        x[1] = x[1] + ks[(i + 2) % 3] + np.uint32(i + 1)
    return tuple(x)


def use_unrolled_threefry(check) -> float:
    """Lowers jax.random's threefry hash unrolled on CPU in this process.

    Raises if the random bits change; returns the largest absolute difference between the
    leaves of ``check()`` (e.g. an update step's outputs) computed before and after (the floats
    derived from the bits may differ in the last place where XLA fuses them differently).
    """
    from jax.extend.random import threefry2x32_p
    from jax.interpreters import mlir

    key = jax.random.key(123)
    bits = jax.random.bits(key, (1001,))
    before = jax.tree.map(np.asarray, check())
    lowering = mlir.lower_fun(_threefry2x32_unrolled, multiple_results=True)
    mlir.register_lowering(threefry2x32_p, lowering, platform="cpu")
    jax.clear_caches()
    if not bool(jnp.all(jax.random.bits(key, (1001,)) == bits)):
        raise RuntimeError("the unrolled threefry lowering changed the random bits")
    after = jax.tree.map(np.asarray, check())
    diffs = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b), initial=0.0)), before, after)
    return max(jax.tree.leaves(diffs))


def one_update_step(n_items: int = 2810, batch_size: int = 400):
    """Outputs of one DiffRec update step on a fixed random batch (for the threefry check)."""
    rows = np.random.default_rng(0).random((batch_size, n_items)) < 0.025
    train = InteractionMatrix(sp.csr_array(rows.astype(np.float32)))
    spec = models.get("diffrec")
    trainable = spec.train_plan(spec.hparams(), FitData(train)).trainable
    tx = trainable.optimizer()
    params, model_state = trainable.init(jax.random.key(0), n_items)
    state = strong_types(TrainState(params, tx.init(params), model_state, jnp.int32(0)))
    batch = UserBatch(jnp.arange(batch_size), jnp.asarray(rows, jnp.float32), jnp.ones(batch_size))
    step = jax.jit(make_train_step(trainable, tx))
    return step(state, batch, jax.random.key(1), jnp.int32(0))


def matmul_rate(
    m: int, k: int, n: int, repeats: int, inner: int = 10, clock=time.perf_counter
) -> float:
    """Achieved FLOP/s of a jitted float32 [m, k] @ [k, n] (best of `repeats` x `inner` calls)."""
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((m, k)), jnp.float32)
    b = jnp.asarray(rng.standard_normal((k, n)), jnp.float32)
    mm = jax.jit(lambda a, b: a @ b)
    mm(a, b).block_until_ready()

    def run():
        out = None
        for _ in range(inner):
            out = mm(a, b)
        out.block_until_ready()

    return 2.0 * m * k * n * inner / best_time(run, repeats, clock)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA), help="DiffRec ML-1M clean folder")
    parser.add_argument("--epochs", type=int, default=4, help="timed epochs after the first")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--unrolled_threefry", action="store_true", help="unrolled threefry lowering on CPU"
    )
    args = parser.parse_args()

    data = Path(args.data)
    if not data.is_dir():
        print(f"skipped: {data} not found (the DiffRec ML-1M clean split is needed)")
        return
    rng_note = "rolled (JAX's CPU default)"
    if args.unrolled_threefry:
        diff = use_unrolled_threefry(one_update_step)
        rng_note = f"unrolled (one update step vs rolled: max |diff| {diff:.1e})"
    jnp.ones(1).block_until_ready()
    memory = {"runtime and imports": peak_mb()}
    split = load_dataset(f"diffrec:{data}").split
    memory["+ data"] = peak_mb()
    spec = models.get("diffrec")
    model = spec.build()
    plan = spec.train_plan(model.hparams, FitData(split.train))
    trainable, config = plan.trainable, plan.config
    n_users, n_items = split.train.shape
    print(
        f"DiffRec ML-1M clean: {n_users} users x {n_items} items, {split.train.nnz} train "
        f"interactions; dims {model.hparams['dims']}, T {model.hparams['steps']}, batch "
        f"{config.batch_size}; jax {jax.__version__} on {jax.devices()[0].platform} "
        f"({jax.device_count()} device(s)); threefry lowering {rng_note}"
    )

    # 1. Training epochs through the shared loop (no validation).
    run_config = config.replace(max_epochs=1 + args.epochs, log_every=10**6)
    result = train(trainable, FitData(split.train), run_config, key=jax.random.key(0))
    epoch_s = float(np.min([r.seconds for r in result.history[1:]]))
    first_s = result.history[0].seconds
    steps = -(-n_users // config.batch_size)
    memory["+ training"] = peak_mb()

    # 2. The compiled update step alone, and the densification it is fed with.
    tx = trainable.optimizer()
    params, model_state = trainable.init(jax.random.key(1), n_items)
    state = strong_types(TrainState(params, tx.init(params), model_state, jnp.int32(0)))
    users, weights = epoch_batches(n_users, config.batch_size, epoch=1, seed_words=(0,))
    rows = split.train.dense_rows(users[0])
    batch = jax.device_put(UserBatch(jnp.asarray(users[0]), jnp.asarray(rows), weights[0]))
    step_key, epoch = jax.random.key(2), jnp.int32(0)
    step = jax.jit(make_train_step(trainable, tx), donate_argnums=0)
    compiled = step.lower(state, batch, step_key, epoch).compile()
    flops = float(compiled.cost_analysis()["flops"])
    holder = [state]

    def run_steps(n=steps):
        for _ in range(n):
            holder[0], (loss, _) = compiled(holder[0], batch, step_key, epoch)
        loss.block_until_ready()

    run_steps(2)
    step_s = best_time(run_steps, args.repeats) / steps
    step_rate = flops / step_s
    step_cpu_s = best_time(run_steps, args.repeats, time.process_time) / steps
    densify_s = best_time(lambda: split.train.dense_rows(users[1]), args.repeats)
    mm_rate = matmul_rate(config.batch_size, n_items + 10, 600, args.repeats)
    mm_cpu_rate = matmul_rate(
        config.batch_size, n_items + 10, 600, args.repeats, clock=time.process_time
    )

    # 3. One validation + test evaluation round (compiled by a first call).
    evaluator = Evaluator(split)
    params = exported(trainable, result.params)  # the scoring params (DiffRec's as trained)
    evaluator.evaluate(model.score, params)
    eval_s = best_time(lambda: evaluator.evaluate(model.score, params), 2)
    eval_cpu_s = best_time(lambda: evaluator.evaluate(model.score, params), 1, time.process_time)
    scores = evaluator.evaluate(model.score, params)["test"].summary
    memory["+ evaluation"] = peak_mb()
    peak = peak_mb()

    ref = REFERENCE
    print(
        f"training: {epoch_s:.3f} s/epoch ({steps} steps; first epoch with compilation "
        f"{first_s:.2f} s); reference {ref['epoch_s']:.1f} s/epoch -> ratio "
        f"{epoch_s / ref['epoch_s']:.2f}x"
    )
    print(
        f"update step: {flops / 1e9:.2f} GFLOP (XLA cost analysis), {step_s * 1e3:.1f} ms/step "
        f"= {step_rate / 1e9:.1f} GFLOP/s; loop overhead per step (densify, transfer, "
        f"dispatch) {(epoch_s / steps - step_s) * 1e3:.1f} ms (densify alone "
        f"{densify_s * 1e3:.1f} ms)"
    )
    print(
        f"matmul floor: float32 [{config.batch_size}, {n_items + 10}] @ [{n_items + 10}, 600] "
        f"{mm_rate / 1e9:.1f} GFLOP/s; update step at {step_rate / mm_rate:.0%} of it "
        f"(target >= 80%); vs reference {ref['gflops']:.0f} GFLOP/s -> ratio "
        f"{step_rate / 1e9 / ref['gflops']:.2f}x"
    )
    print(
        f"  per CPU-second (all threads; robust to a shared machine): update step "
        f"{flops / step_cpu_s / 1e9:.1f}, matmul {mm_cpu_rate / 1e9:.1f} GFLOP/cpu-s -> "
        f"{flops / step_cpu_s / mm_cpu_rate:.0%}"
    )
    print(
        f"evaluation (valid + test, {evaluator.batches()} batches of {evaluator.batch_size}): "
        f"{eval_s:.2f} s; reference {ref['eval_s']:.0f} s -> ratio {eval_s / ref['eval_s']:.2f}x "
        f"(target <= 0.5x); {eval_cpu_s:.1f} CPU-s; test Recall@20 after {1 + args.epochs} "
        f"epochs {scores['Recall@20']:.4f}"
    )
    steps_text = ", ".join(f"{name} {mb:.0f}" for name, mb in memory.items())
    print(
        f"peak memory (maxrss): {peak:.0f} MB; reference {ref['peak_mb']:.0f} MB -> ratio "
        f"{peak / ref['peak_mb']:.2f}x (peak after: {steps_text} MB)"
    )


if __name__ == "__main__":
    main()
