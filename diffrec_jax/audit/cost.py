r"""What a model costs: FLOPs from the compiled XLA computation, time, memory, energy and CO2.

FLOPs. ``jax.jit(f).lower(*args).compile().cost_analysis()["flops"]`` is XLA's count for the
compiled computation. XLA counts the body of a loop ONCE, whatever its trip count (measured:
a ``lax.scan`` of 10 matmuls reports the FLOPs of one), which would undercount DiffRec's
reverse process by a factor T. :func:`flops` therefore compiles a copy of `f` in which every
``lax.scan`` is fully unrolled (the jaxpr is re-evaluated with ``unroll = length``, nested
calls inlined) and reports that count; the count of `f` as compiled is kept as
``flops_as_compiled``. A ``while_loop`` with a data-dependent trip count cannot be unrolled:
its body is still counted once, and ``loops_counted_once`` says how many such loops remain
(the loops XLA emits for random-bit generation are counted apart: integer hashing, negligible
FLOPs).

- training: one update step of the shared training loop (forward, backward and optimiser) on
  one batch of the model's batch size; per epoch = step x steps per epoch; total = per epoch x
  epochs trained (validation passes during training are not included). Closed-form models fit
  on the host with numpy/scipy: no XLA computation, no count (their fit time is measured).
- scoring: the model's score function on one evaluation batch, reported per 1,000 users.

Time. Training time is the wall time of a fit (mean over the seeds); inference time per 1,000
users is one evaluation pass after compilation (each user scored once, then ranked and measured
for valid and test: the pass the audit's re-runs make), divided by the number of users scored
and multiplied by 1,000.

Memory. ``memory_analysis()`` of the compiled train step and score batch (arguments + outputs +
temporaries - aliased bytes): what XLA allocates for one step. The process's peak resident
memory (``resource.getrusage``'s ``ru_maxrss``) is a high-water mark of the whole process,
including the runtime, the data and every model run before; device peaks
(``Device.memory_stats()["peak_bytes_in_use"]``) are added when the backend reports them (GPUs
and TPUs; CPU does not).

Energy and CO2 are estimates from two assumptions printed next to the figures: the average
power draw of the machine while computing (``power_watts``) and the carbon intensity of the
grid (``grid_g_per_kwh``): energy [kWh] = power [W] x seconds / 3.6e6, CO2 [g] = energy [kWh]
x intensity [g/kWh]. The defaults, 65 W (a desktop CPU's TDP) and 475 g CO2e/kWh (the IEA's
world average of electricity generation, 2019), are placeholders to replace with the
machine's and the region's.
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np

from diffrec_jax.errors import ConfigError
from diffrec_jax.models import ModelSpec
from diffrec_jax.protocol import Recommender, UserBatch
from diffrec_jax.train.loop import (
    DenseRows,
    TrainState,
    make_train_step,
    steps_per_epoch,
    strong_types,
)

DEFAULT_POWER_WATTS = 65.0
DEFAULT_GRID_G_PER_KWH = 475.0
_CALLS = ("jit", "pjit", "closed_call", "core_call")


@dataclasses.dataclass(frozen=True)
class Assumptions:
    """The assumptions behind the energy and CO2 estimates (printed with them).

    Attributes:
      power_watts: average power draw while computing, W.
      grid_g_per_kwh: carbon intensity of the electricity, g CO2e per kWh.
    """

    power_watts: float = DEFAULT_POWER_WATTS
    grid_g_per_kwh: float = DEFAULT_GRID_G_PER_KWH

    def __post_init__(self):
        for name in ("power_watts", "grid_g_per_kwh"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ConfigError(f"--{name}={value!r}; expected a number >= 0")

    def text(self) -> str:
        """One line stating the assumptions."""
        return (
            f"energy = {self.power_watts:g} W x time; CO2 = energy x "
            f"{self.grid_g_per_kwh:g} g CO2e/kWh (assumptions, set with --power_watts and "
            "--grid_intensity)"
        )


def energy_kwh(seconds: float, power_watts: float) -> float:
    """Energy of `seconds` at `power_watts`: W x s / 3.6e6, in kWh."""
    return float(power_watts) * float(seconds) / 3.6e6


def co2_grams(kwh: float, grid_g_per_kwh: float) -> float:
    """CO2e of `kwh` at `grid_g_per_kwh`, in grams."""
    return float(kwh) * float(grid_g_per_kwh)


def footprint(seconds: float | None, assumptions: Assumptions) -> dict[str, float | None]:
    """{"seconds", "kwh", "co2_g"} of `seconds` of computing (None stays None)."""
    if seconds is None:
        return {"seconds": None, "kwh": None, "co2_g": None}
    kwh = energy_kwh(seconds, assumptions.power_watts)
    return {
        "seconds": float(seconds),
        "kwh": kwh,
        "co2_g": co2_grams(kwh, assumptions.grid_g_per_kwh),
    }


# -- FLOPs ----------------------------------------------------------------------------------------


def _cost_flops(compiled) -> float:
    """The "flops" entry of a compiled computation's cost analysis (a dict, or a list of one
    dict in older jax)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    if not cost:
        return float("nan")  # no analysis on this backend
    return float(cost.get("flops", 0.0))  # XLA leaves the entry out when there is none


def _eval_unrolled(jaxpr: jex.Jaxpr, consts: Sequence[Any], *args: Any) -> list[Any]:
    """Evaluates `jaxpr` with every scan fully unrolled and nested calls inlined."""
    env: dict[Any, Any] = {}

    def read(v):
        return v.val if isinstance(v, jex.Literal) else env[v]

    for v, x in zip(jaxpr.constvars, consts, strict=True):
        env[v] = x
    for v, x in zip(jaxpr.invars, args, strict=True):
        env[v] = x
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        params = dict(eqn.params)
        name = eqn.primitive.name
        inner = params.get("jaxpr", params.get("call_jaxpr")) if name in _CALLS else None
        if inner is not None:  # a nested call: inline it
            if hasattr(inner, "consts"):
                outs = _eval_unrolled(inner.jaxpr, inner.consts, *invals)
            else:
                outs = _eval_unrolled(inner, (), *invals)
            _write(env, eqn.outvars, outs)
            continue
        if name == "scan":
            params["unroll"] = max(int(params["length"]), 1)
            if _has_scan(params["jaxpr"].jaxpr):
                params["jaxpr"] = _unrolled_closed(params["jaxpr"])
        bind_params = eqn.primitive.get_bind_params(params)
        with eqn.ctx.manager:
            outs = eqn.primitive.bind(*invals, **bind_params)
        _write(env, eqn.outvars, outs if eqn.primitive.multiple_results else [outs])
    return [read(v) for v in jaxpr.outvars]


def _write(env, outvars, outs) -> None:
    for v, x in zip(outvars, outs, strict=True):
        if not isinstance(v, jex.DropVar):
            env[v] = x


def _has_scan(jaxpr) -> bool:
    """Whether `jaxpr` or a jaxpr nested in its equations' parameters holds a scan."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan":
            return True
        for value in eqn.params.values():
            inner = getattr(value, "jaxpr", value)
            if isinstance(inner, jex.Jaxpr) and _has_scan(inner):
                return True
    return False


def _unrolled_closed(closed):
    """A ClosedJaxpr computing `closed` with its scans unrolled (for nested scans)."""
    avals = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in closed.in_avals]
    return jax.make_jaxpr(lambda *xs: _eval_unrolled(closed.jaxpr, closed.consts, *xs))(*avals)


# Loops XLA emits for random-bit generation (threefry rounds) and binary search: integer work
# with negligible FLOPs, told apart by the op names in their metadata.
_MINOR_LOOPS = (
    "threefry",
    "random_bits",
    "_uniform",
    "_normal",
    "_randint",
    "_bernoulli",
    "_gamma",
    "searchsorted",
)


def _while_loops(computation) -> tuple[int, int]:
    """(while loops, of which RNG / binary-search loops) in a compiled or lowered computation."""
    try:
        text = computation.as_text()
    except Exception:
        return 0, 0
    loops = [line for line in text.splitlines() if " while(" in line or "stablehlo.while" in line]
    minor = sum(1 for line in loops if any(name in line for name in _MINOR_LOOPS))
    return len(loops), minor


def _memory_bytes(compiled) -> int | None:
    try:
        m = compiled.memory_analysis()
    except Exception:
        return None
    if m is None:
        return None
    return int(
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )


def flops(fn: Callable[..., Any], *args: Any, compiled: bool = True) -> dict[str, Any]:
    """FLOPs and memory of ``fn(*args)`` from XLA's analyses of the compiled computation.

    Args:
      fn: a jit-able function.
      *args: its arguments (arrays or ``jax.ShapeDtypeStruct`` pytrees; nothing is computed).
      compiled: analyse the compiled computations (the default). False analyses the lowered,
        not yet optimised HLO instead (no compilation: much faster for large unrolled
        functions; the counts agree up to what XLA's optimisations remove) and gives no
        memory figure.

    Returns:
      {"flops": count with every scan unrolled, "flops_as_compiled": XLA's count of `fn` as
      compiled (loop bodies once), "loops_counted_once": while loops left after unrolling
      (besides "rng_loops_counted_once", the random-bit generation and binary-search loops
      XLA emits, integer work of negligible FLOPs), "note": None or why "flops" may
      undercount, "memory_bytes": arguments + outputs +
      temporaries - aliased bytes of `fn` as compiled (None when the backend has no memory
      analysis)}.
    """

    def analysed(lowered):
        return lowered.compile() if compiled else lowered

    computation = analysed(jax.jit(fn).lower(*args))
    as_compiled = _cost_flops(computation)
    count, (loops, minor), note = as_compiled, _while_loops(computation), None
    try:
        closed = jax.make_jaxpr(fn)(*args)
        if _has_scan(closed.jaxpr):  # otherwise XLA's count is already complete
            leaves = jax.tree.leaves(args)
            unrolled = analysed(
                jax.jit(lambda *xs: _eval_unrolled(closed.jaxpr, closed.consts, *xs)).lower(*leaves)
            )
            count, (loops, minor) = _cost_flops(unrolled), _while_loops(unrolled)
    except Exception as e:
        note = f"loops not unrolled ({type(e).__name__}: {e}); loop bodies counted once"
    if loops > minor and note is None:
        note = f"{loops - minor} while loop(s) with unknown trip count: bodies counted once"
    return {
        "flops": count,
        "flops_as_compiled": as_compiled,
        "loops_counted_once": loops - minor,
        "rng_loops_counted_once": minor,
        "note": note,
        "memory_bytes": _memory_bytes(computation) if compiled else None,
    }


def compiled_memory_bytes(fn: Callable[..., Any], *args: Any) -> int | None:
    """Bytes XLA allocates for one call of the compiled ``fn(*args)`` (arguments + outputs +
    temporaries - aliased), or None when the backend gives no memory analysis."""
    return _memory_bytes(jax.jit(fn).lower(*args).compile())


# -- training step and scoring pass ---------------------------------------------------------------


def _shapes(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), tree)


def train_step_cost(
    spec: ModelSpec, hparams: Mapping[str, Any], data: Any
) -> dict[str, Any] | None:
    """FLOPs and XLA memory of one training step of `spec`'s model on `data`, or None.

    Args:
      spec: the registry entry.
      hparams: the model's hyperparameters.
      data: what its fit takes (:class:`FitData`, or ``SeqFitData`` for sequential models).

    Returns:
      {"flops", "flops_as_compiled", "loops_counted_once", "note", "memory_bytes",
      "batch_size", "steps_per_epoch"}, or None when the model is not trained by one run of
      the shared loop (closed form, or staged).
    """
    plan = spec.train_plan(hparams, data)
    if plan is None:
        return None
    trainable, config = plan.trainable, plan.config
    source = plan.source or DenseRows(data.train)
    b = int(config.batch_size)
    n = int(source.n_examples)
    batch = source.batch((np.arange(b) % max(n, 1)).astype(np.int32), np.ones(b, np.float32))
    tx = trainable.optimizer()

    def init(key):
        params, model_state = trainable.init(key, int(source.n_items))
        return strong_types(
            TrainState(params, tx.init(params), model_state, jnp.zeros((), jnp.int32))
        )

    state = jax.eval_shape(init, jax.random.key(0))
    step = make_train_step(trainable, tx)
    args = (state, _shapes(batch), jax.random.key(0), np.int32(0))
    out = flops(step, *args)
    out["batch_size"] = b
    out["steps_per_epoch"] = steps_per_epoch(n, b, config.last_batch)
    return out


def score_cost(
    model: Recommender, params: Any, n_items: int, batch_users: int, *, compiled: bool = True
) -> dict[str, Any]:
    """FLOPs and XLA memory of `model.score` on one batch of `batch_users` users (`compiled`:
    see :func:`flops`).

    Returns:
      {"flops" (for the batch), "flops_per_1000_users", "flops_as_compiled",
      "loops_counted_once", "note", "memory_bytes", "batch_users"}.
    """
    b = max(int(batch_users), 1)
    batch = UserBatch(
        jax.ShapeDtypeStruct((b,), jnp.int32), jax.ShapeDtypeStruct((b, int(n_items)), jnp.float32)
    )
    args = (_shapes(params), batch)
    out = flops(model.score, *args, compiled=compiled)
    out["flops_per_1000_users"] = out["flops"] * 1000.0 / b
    out["batch_users"] = b
    return out


def inference_seconds_per_1000(
    evaluator: Any, score_fn: Callable, params: Any, parts: Sequence[str] = ("valid", "test")
) -> dict[str, Any]:
    """Time of one evaluation pass per 1,000 users, the computation already compiled.

    Call it after an evaluation with the same `parts` (which compiled the step): the pass
    scores every user with truth in `parts` once and ranks them for each part.

    Returns:
      {"seconds" (the timed pass), "users" (scored), "per_1000_users", "parts"}.
    """
    t0 = time.perf_counter()
    evaluator.evaluate(score_fn, params, parts=tuple(parts))
    seconds = time.perf_counter() - t0
    users = int(evaluator.users_to_score(tuple(parts)).size)
    return {
        "seconds": seconds,
        "users": users,
        "per_1000_users": seconds / users * 1000.0 if users else None,
        "parts": list(parts),
    }


# -- memory ---------------------------------------------------------------------------------------


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (``ru_maxrss``: KiB on Linux, bytes on
    macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def device_peak_bytes() -> int | None:
    """Sum over local devices of ``memory_stats()["peak_bytes_in_use"]``, or None when the
    backend reports no memory statistics (CPU)."""
    total, seen = 0, False
    for d in jax.local_devices():
        try:
            stats = d.memory_stats()
        except Exception:
            stats = None
        if stats and "peak_bytes_in_use" in stats:
            total += int(stats["peak_bytes_in_use"])
            seen = True
    return total if seen else None


def memory_snapshot() -> dict[str, int | None]:
    """{"process_peak_rss_bytes", "device_peak_bytes"} now."""
    return {"process_peak_rss_bytes": peak_rss_bytes(), "device_peak_bytes": device_peak_bytes()}


def summarize_cost(
    *,
    tuning_seconds: float | None,
    fit_seconds: list[float],
    probe: Mapping[str, Any] | None,
    epochs: list[int] | None,
    assumptions: Assumptions,
) -> dict[str, Any]:
    """The cost row of one model from its measurements.

    Args:
      tuning_seconds: the study's total (propose + fit + validate over all trials).
      fit_seconds: training time of every seed's fit.
      probe: the measurements of the first seed's run ("train_step", "score", "inference",
        "memory"), or None.
      epochs: epochs trained per seed (gradient-trained models), or None.
      assumptions: power and grid intensity.

    Returns:
      A dict with tuning/training/inference times, FLOPs, memory, energy and CO2 figures.
    """
    probe = probe or {}
    train_step = probe.get("train_step")
    score = probe.get("score") or {}
    fit_mean = float(np.mean(fit_seconds)) if fit_seconds else None
    total_seconds = (tuning_seconds or 0.0) + float(np.sum(fit_seconds)) if fit_seconds else None
    train_flops = None
    if train_step and epochs:
        train_flops = float(train_step["flops"] * train_step["steps_per_epoch"] * np.mean(epochs))
    return {
        "tuning_seconds": tuning_seconds,
        "fit_seconds": fit_mean,
        "fit_seconds_all": list(fit_seconds),
        "inference_seconds_per_1000_users": (probe.get("inference") or {}).get("per_1000_users"),
        "train_step_flops": None if not train_step else train_step["flops"],
        "train_epoch_flops": None
        if not train_step
        else train_step["flops"] * train_step["steps_per_epoch"],
        "train_total_flops": train_flops,
        "score_flops_per_1000_users": score.get("flops_per_1000_users"),
        "flops_notes": [n for n in ((train_step or {}).get("note"), score.get("note")) if n],
        "train_step_memory_bytes": None if not train_step else train_step.get("memory_bytes"),
        "score_memory_bytes": score.get("memory_bytes"),
        "process_peak_rss_bytes": (probe.get("memory") or {}).get("process_peak_rss_bytes"),
        "device_peak_bytes": (probe.get("memory") or {}).get("device_peak_bytes"),
        "energy": {
            "tuning": footprint(tuning_seconds, assumptions),
            "training": footprint(fit_mean, assumptions),
            "total": footprint(total_seconds, assumptions),
        },
        "assumptions": dataclasses.asdict(assumptions),
    }


__all__ = [
    "DEFAULT_GRID_G_PER_KWH",
    "DEFAULT_POWER_WATTS",
    "Assumptions",
    "co2_grams",
    "compiled_memory_bytes",
    "device_peak_bytes",
    "energy_kwh",
    "flops",
    "footprint",
    "inference_seconds_per_1000",
    "memory_snapshot",
    "peak_rss_bytes",
    "score_cost",
    "summarize_cost",
    "train_step_cost",
]
