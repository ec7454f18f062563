"""Sequential models on Amazon Beauty: one training step and the inference of 512 users.

For SASRec+, DiffuRec and ADRec (registry defaults, batch 512, history length 50, d = 128):

1. one update step of the shared training loop (``make_train_step``, jitted, on a real batch
   of Beauty training examples): seconds per step after compilation, its FLOPs as counted by
   XLA on the compiled computation, hence its FLOP rate. SASRec+ and ADRec train on packed rows
   by default (``pack_ratio``, :mod:`diffrec_jax.nn.packing`): their FLOPs are counted on
   the same step compiled unpacked (``pack_ratio=0``, the work of the reference code, which
   XLA's count of the packed/unpacked ``cond`` does not separate), so their rate is an
   *effective* rate and may exceed the matmul rate; the unpacked step is timed too (their
   scoring packs as well, except ADRec's full sampler: its FLOPs are XLA's count of the
   ``cond``, the unpacked branch);
2. the inference of 512 users (``model.score`` jitted on the test histories of 512 users: for
   the diffusion models the whole reverse process, for ADRec with and without the prefix
   key/value cache): seconds and FLOPs;
3. the rate of a float32 matmul ([512 * 50, 128] @ [128, n_items], the shape of the full-softmax
   scoring) timed in the same run, the FLOP floor the others are compared with.

Reference figures of the authors' PyTorch code measured on this machine (Beauty, batch 512,
L = 50, d = 128): training step SASRec 3.1 s, ADRec 9.1 s, DiffuRec 4.4 s; inference of 512
users SASRec 0.83 s, ADRec 17.3 s, DiffuRec 31.9 s. Targets: ADRec step <= 0.4x, ADRec inference
<= 0.1x, SASRec+ step <= 0.6x of those. Timings are the best of the repeats (the machine may be
shared).

Run: python benchmarks/bench_sequential.py [--data ../shared/data/adrec-beauty/sequences.txt]
     [--models sasrec+,diffurec,adrec] [--repeats 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from bench_diffrec import best_time, matmul_rate, peak_mb

from diffrec_jax import models
from diffrec_jax.data.datasets import load_dataset
from diffrec_jax.models import adrec
from diffrec_jax.protocol import SeqBatch, SeqFitData, exported, training_examples
from diffrec_jax.train import TrainState
from diffrec_jax.train.loop import make_train_step, strong_types

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "adrec-beauty"
REFERENCE = {  # seconds, the authors' code on this machine
    "sasrec+": {"step": 3.1, "infer": 0.83},
    "adrec": {"step": 9.1, "infer": 17.3},
    "diffurec": {"step": 4.4, "infer": 31.9},
}
TARGETS = {"sasrec+": {"step": 0.6}, "adrec": {"step": 0.4, "infer": 0.1}}
BATCH, MAX_LEN = 512, 50


def flops(compiled) -> float:
    """FLOPs XLA counts in a compiled computation (0 when the backend does not say)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", 0.0))


def trainable_of(model, split):
    """The model's Trainable and its training examples on `split`; for ADRec (three training
    runs) the joint stage-3 Trainable."""
    spec = models.get(model.name)
    plan = spec.train_plan(model.hparams, SeqFitData(split.train, None))
    if plan is not None:
        return plan.trainable, plan.source
    if model.name == "adrec":
        values = model.hparams
        cfg = adrec.config_from_hparams(values)
        trainable = adrec.adrec_trainable(cfg, lr=values["lr"], weight_decay=values["weight_decay"])
        return trainable, training_examples(split.train, MAX_LEN, spec.examples)
    raise ValueError(f"{model.name}: no Trainable to benchmark")


def bench_step(model, split, repeats: int, time_it: bool = True) -> tuple[float, float]:
    """(seconds, FLOPs) of one update step on a batch of training examples (seconds NaN when
    not `time_it`)."""
    trainable, source = trainable_of(model, split)
    rng = np.random.default_rng(0)
    idx = rng.choice(source.n_examples, BATCH, replace=source.n_examples < BATCH)
    batch = jax.tree.map(jnp.asarray, source.batch(idx, np.ones(BATCH, np.float32)))
    tx = trainable.optimizer()
    params, model_state = trainable.init(jax.random.key(0), split.n_items)
    state = strong_types(TrainState(params, tx.init(params), model_state, jnp.int32(0)))
    step = jax.jit(make_train_step(trainable, tx))
    args = (state, batch, jax.random.key(1), jnp.int32(0))
    compiled = step.lower(*args).compile()
    if not time_it:
        return float("nan"), flops(compiled)
    jax.block_until_ready(compiled(*args))
    seconds = best_time(lambda: jax.block_until_ready(compiled(*args)), repeats)
    return seconds, flops(compiled)


def bench_inference(model, split, params, repeats: int) -> tuple[float, float]:
    """(seconds, FLOPs) of scoring the test histories of 512 users."""
    hist = jnp.asarray(split.histories("test", MAX_LEN)[:BATCH])
    batch = SeqBatch(jnp.arange(BATCH, dtype=jnp.int32), hist)
    score = jax.jit(model.score)
    compiled = score.lower(params, batch).compile()
    jax.block_until_ready(compiled(params, batch))
    seconds = best_time(lambda: jax.block_until_ready(compiled(params, batch)), repeats)
    return seconds, flops(compiled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA / "sequences.txt"), help="sequence file")
    parser.add_argument("--models", default="sasrec+,diffurec,adrec")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not Path(args.data).exists():
        print(f"skipped: {args.data} not found")
        return
    split = load_dataset(f"sequences:{args.data}").extras["sequences"]
    print(
        f"{split.name}: {split.n_users} users, {split.n_items} items; batch {BATCH}, "
        f"L {MAX_LEN}; devices {jax.devices()}"
    )
    rate = matmul_rate(BATCH * MAX_LEN, 128, split.n_items, args.repeats)
    print(
        f"float32 matmul [{BATCH * MAX_LEN}, 128] @ [128, {split.n_items}]: "
        f"{rate / 1e9:.1f} GFLOP/s"
    )
    for name in args.models.split(","):
        variants = [("", {})]
        if name == "adrec":
            variants = [
                (" (cached)", {"sampler": "cached"}),
                (" (full)", {"sampler": "full"}),
            ]
        for label, overrides in variants:
            model = models.get(name).build(max_len=MAX_LEN, batch_size=BATCH, **overrides)
            step_s, step_flops = bench_step(model, split, args.repeats)
            packed = model.hparams.get("pack_ratio", 0) > 0
            if packed:
                unpacked = models.get(name).build(
                    max_len=MAX_LEN, batch_size=BATCH, **overrides, pack_ratio=0.0
                )
                first = label == variants[0][0]  # the step does not depend on the sampler
                unpacked_s, step_flops = bench_step(unpacked, split, args.repeats, first)
            trainable, _ = trainable_of(model, split)
            params, _ = trainable.init(jax.random.key(0), split.n_items)
            params = exported(trainable, params)  # what the model's score takes
            infer_s, infer_flops = bench_inference(model, split, params, args.repeats)
            ref = REFERENCE.get(name, {})
            line = (
                f"{name}{label}: train step {step_s:.3f} s ({step_flops / 1e9:.1f} GFLOP, "
                f"{step_flops / step_s / rate:.0%} of matmul rate"
            )
            if packed:
                line = line.replace("GFLOP,", "GFLOP unpacked-equivalent, effective")
                line += f"; packed rows, pack_ratio {model.hparams['pack_ratio']}"
                if first:
                    line += f"; unpacked {unpacked_s:.3f} s"
            if "step" in ref:
                line += f"; {step_s / ref['step']:.2f}x of reference {ref['step']} s"
            packed_scoring = packed and overrides.get("sampler") != "full"
            line += (
                f"); inference 512 users {infer_s:.3f} s ({infer_flops / 1e9:.1f} GFLOP"
                + (" unpacked-equivalent, effective " if packed_scoring else ", ")
                + f"{infer_flops / infer_s / rate:.0%} of matmul rate"
            )
            if "infer" in ref:
                line += f"; {infer_s / ref['infer']:.3f}x of reference {ref['infer']} s"
            target = TARGETS.get(name, {})
            if target:
                line += "); targets " + ", ".join(f"{k} <= {v}x" for k, v in target.items())
            else:
                line += ")"
            print(line, flush=True)
    print(f"peak memory {peak_mb():.0f} MB")


if __name__ == "__main__":
    main()
