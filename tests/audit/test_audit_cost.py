"""FLOPs from XLA (matmul = 2mnk, scans unrolled), training/scoring probes, energy arithmetic."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffrec_jax import models
from diffrec_jax.audit import cost
from diffrec_jax.data.datasets import load_dataset
from diffrec_jax.errors import ConfigError
from diffrec_jax.protocol import FitData

TINY = {"dims": (16,), "emb_size": 4, "steps": 4, "noise_scale": 0.1, "noise_min": 0.01,
        "noise_max": 0.1, "batch_size": 64, "max_epochs": 1}  # fmt: skip


@pytest.mark.parametrize("m, n, k", [(32, 64, 16), (7, 5, 3)])
def test_matmul_flops_are_2mnk(m, n, k):
    out = cost.flops(lambda a, b: a @ b, jnp.ones((m, n)), jnp.ones((n, k)))
    assert out["flops"] == 2 * m * n * k == out["flops_as_compiled"]
    assert out["loops_counted_once"] == 0 and out["note"] is None
    assert out["memory_bytes"] >= 4 * (m * n + n * k + m * k)
    shapes = (jax.ShapeDtypeStruct((m, n), jnp.float32), jax.ShapeDtypeStruct((n, k), jnp.float32))
    assert cost.flops(lambda a, b: a @ b, *shapes)["flops"] == 2 * m * n * k  # nothing computed


def test_scans_are_unrolled_nested_too():
    b = jnp.ones((16, 16))

    def inner(x, _):
        return x @ b, None

    def outer(x, _):
        return jax.lax.scan(inner, x, None, length=3)[0], None

    def f(x):
        return jax.lax.scan(jax.jit(outer), x, None, length=4)[0]

    one = 2 * 8 * 16 * 16
    out = cost.flops(f, jnp.ones((8, 16)))
    assert out["flops"] == 12 * one  # XLA alone counts a loop body once
    assert out["flops_as_compiled"] < 2 * one
    lowered = cost.flops(f, jnp.ones((8, 16)), compiled=False)
    assert lowered["flops"] == 12 * one and lowered["memory_bytes"] is None


def test_while_loops_are_reported():
    def f(x):
        return jax.lax.while_loop(lambda c: c[1] < 3, lambda c: (c[0] @ c[0], c[1] + 1), (x, 0))[0]

    out = cost.flops(f, jnp.ones((4, 4)))
    assert out["loops_counted_once"] == 1 and "counted once" in out["note"]


def test_energy_and_co2_arithmetic():
    assert cost.energy_kwh(36.0, 100.0) == pytest.approx(0.001)  # 3,600 J
    assert cost.co2_grams(0.001, 500.0) == pytest.approx(0.5)
    a = cost.Assumptions(power_watts=250.0, grid_g_per_kwh=400.0)
    fp = cost.footprint(3600.0, a)
    assert fp == {"seconds": 3600.0, "kwh": pytest.approx(0.25), "co2_g": pytest.approx(100.0)}
    assert cost.footprint(None, a)["kwh"] is None
    assert "250 W" in a.text() and "400 g CO2e/kWh" in a.text()
    with pytest.raises(ConfigError, match="power_watts"):
        cost.Assumptions(power_watts=-1.0)


def test_probes_of_a_trained_and_a_closed_form_model():
    split = load_dataset("synthetic-small").split
    data = FitData(split.train, split.valid)
    spec = models.get("diffrec")
    diffrec = spec.build(**TINY)
    step = cost.train_step_cost(spec, diffrec.hparams, data)
    n = split.n_items
    # The denoiser alone: forward (n + 4) x 16 + 16 x n per row; backward about twice that.
    forward = 2 * 64 * ((n + 4) * 16 + 16 * n)
    assert 3 * forward <= step["flops"] < 6 * forward
    assert step["batch_size"] == 64 and step["steps_per_epoch"] == -(-split.n_users // 64)
    assert step["memory_bytes"] > 0
    trainable = spec.train_plan(diffrec.hparams, data).trainable
    params = jax.eval_shape(lambda k: trainable.init(k, n)[0], jax.random.key(0))
    score = cost.score_cost(diffrec, params, n, 32)
    assert score["flops"] >= 4 * 2 * 32 * ((n + 4) * 16 + 16 * n)  # 4 reverse steps, unrolled
    assert score["flops_as_compiled"] < score["flops"]
    assert score["flops_per_1000_users"] == pytest.approx(score["flops"] * 1000 / 32)

    ease = models.get("ease").build(lam=10.0)
    ease_spec = models.get("ease")
    assert cost.train_step_cost(ease_spec, ease.hparams, data) is None  # closed form: the host
    weights = {"weights": jnp.zeros((n, n), jnp.float32)}
    assert cost.score_cost(ease, weights, n, 10)["flops"] == 2 * 10 * n * n


def test_memory_figures():
    assert cost.peak_rss_bytes() > 10 * 2**20
    snap = cost.memory_snapshot()
    assert set(snap) == {"process_peak_rss_bytes", "device_peak_bytes"}
    assert snap["device_peak_bytes"] is None or snap["device_peak_bytes"] >= 0


def test_summarize_cost():
    a = cost.Assumptions(100.0, 500.0)
    probe = {
        "train_step": {"flops": 10.0, "steps_per_epoch": 3, "note": None, "memory_bytes": 5},
        "score": {"flops_per_1000_users": 7.0, "note": "x", "memory_bytes": 6},
        "inference": {"per_1000_users": 0.5},
        "memory": {"process_peak_rss_bytes": 8, "device_peak_bytes": None},
    }
    row = cost.summarize_cost(
        tuning_seconds=36.0, fit_seconds=[1.0, 3.0], probe=probe, epochs=[4, 6], assumptions=a
    )
    assert row["fit_seconds"] == 2.0 and row["train_epoch_flops"] == 30.0
    assert row["train_total_flops"] == 150.0  # 10 x 3 steps x 5 epochs (mean)
    assert row["energy"]["total"]["kwh"] == pytest.approx(100.0 * 40.0 / 3.6e6)
    assert row["energy"]["tuning"]["co2_g"] == pytest.approx(100.0 * 36.0 / 3.6e6 * 500.0)
    assert row["flops_notes"] == ["x"]
    empty = cost.summarize_cost(
        tuning_seconds=None, fit_seconds=[0.5], probe=None, epochs=None, assumptions=a
    )
    assert empty["train_step_flops"] is None and np.isclose(empty["fit_seconds"], 0.5)
