"""Noise levels against numpy, reverse-process variants, Jaccard overlap; units and configs."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import jax
import numpy as np
import pytest

from diffrec_jax import models
from diffrec_jax.audit import AuditConfig, diagnostics, load_config, scaled, store
from diffrec_jax.errors import ConfigError, DataError

CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "configs"


def test_noise_level_of_the_released_ml1m_diffrec_against_numpy():
    hp = dict(models.get("diffrec").defaults)  # the released ML-1M configuration
    # linear-var: 1 - abar = linspace(s * min, s * max, T), beta_0 fixed to 1e-5
    v = np.linspace(0.005 * 0.005, 0.005 * 0.01, 40)
    betas = np.concatenate([[v[0]], 1 - (1 - v[1:]) / (1 - v[:-1])])
    betas[0] = 1e-5
    abar = np.cumprod(1 - betas)
    level = diagnostics.noise_level(hp)
    assert level["noise_T"] == pytest.approx(math.sqrt(1 - abar[-1]), rel=1e-12)
    assert level["noise_T"] == pytest.approx(0.0059, abs=5e-5)  # the reference figure
    assert level["denoiser_calls"] == 40 and level["noise_at_inference"] == 0.0
    noisy = diagnostics.noise_level({**hp, "sampling_steps": 10, "reverse": "corrected"})
    assert noisy["noise_at_inference"] == pytest.approx(math.sqrt(1 - abar[9]), rel=1e-12)
    assert noisy["denoiser_calls"] == 10


def test_variants():
    hp = dict(models.get("diffrec").defaults)
    names = [v["name"] for v in diagnostics.variants(hp, (0.25, 0.5, 1.0))]
    assert names == [
        "configured",
        "single_call",
        "sampling_noise",
        "steps_10",
        "steps_20",
        "steps_40",
    ]
    by_name = {v["name"]: v for v in diagnostics.variants(hp)}
    assert not by_name["configured"]["stochastic"] and not by_name["single_call"]["stochastic"]
    assert by_name["single_call"]["denoiser_calls"] == 1
    assert by_name["sampling_noise"]["stochastic"] and by_name["steps_10"]["stochastic"]
    # A configuration that already is one of the variants does not get it twice.
    corrected = {**hp, "reverse": "corrected", "sampling_steps": 0}
    names = [v["name"] for v in diagnostics.variants(corrected, (1.0,))]
    assert names == ["configured", "sampling_noise", "steps_40"]
    with pytest.raises(ConfigError, match="fraction"):
        diagnostics.variants(hp, (0.0,))
    assert diagnostics.is_diffusion(models.get("ldiffrec"))
    assert not diagnostics.is_diffusion(models.get("multvae"))


def test_jaccard():
    a = np.array([[1, 2, 3, -1], [4, 5, 6, 7], [-1, -1, -1, -1]])
    b = np.array([[3, 2, 9, -1], [4, 5, 6, 7], [-1, -1, -1, -1]])
    out = diagnostics.jaccard(a, b, 3)
    np.testing.assert_allclose(out[:2], [2 / 4, 1.0])  # {1,2,3} vs {3,2,9}
    assert np.isnan(out[2])
    assert diagnostics.jaccard(a, b, 4)[1] == 1.0
    assert diagnostics.mean_jaccard([a, b], 3) == pytest.approx(0.75)
    assert diagnostics.mean_jaccard([a, a, b], 3) == pytest.approx((1.0 + 0.75 + 0.75) / 3)
    assert diagnostics.mean_jaccard([a], 3) is None


def test_units_resume_only_with_the_same_key(tmp_path):
    path = tmp_path / "runs" / "m" / "seed1.json"
    per_user = np.arange(6, dtype=np.float64).reshape(2, 3)
    store.save_unit(path, {"seed": 1}, {"value": 0.5}, {"per_user": per_user})
    record = store.load_unit(path, {"seed": 1})
    assert record["value"] == 0.5 and record["arrays"] == {"per_user": "seed1.per_user.npy"}
    np.testing.assert_array_equal(store.load_array(path, "per_user"), per_user)
    assert store.load_unit(path, {"seed": 2}) is None  # other inputs: redo
    store.array_path(path, "per_user").unlink()
    assert store.load_unit(path, {"seed": 1}) is None  # incomplete: redo
    assert store.load_unit(tmp_path / "missing.json", {}) is None
    with pytest.raises(DataError, match="per_user"):
        store.load_array(path, "per_user")
    # parameters round-trip in the structure of a template
    params = {"mlp": [{"w": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)}]}
    store.save_params(tmp_path / "p.npz", params)
    template = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    back = store.load_params(tmp_path / "p.npz", template)
    np.testing.assert_array_equal(back["mlp"][0]["w"], params["mlp"][0]["w"])
    with pytest.raises(DataError, match="arrays"):
        store.load_params(tmp_path / "p.npz", {"a": 0})
    assert json.loads(path.read_text())["format"] == store.UNIT_FORMAT


def test_configs(tmp_path):
    config = load_config(CONFIGS / "audit_tiny.py")
    assert config.models == ("diffrec", "toppop", "ease")
    smoke = scaled(config, smoke=True, output_dir=str(tmp_path))
    assert (smoke.budget, smoke.seeds, smoke.max_epochs) == (2, (1, 2), 2)
    assert smoke.output_dir == str(tmp_path)
    assert scaled(config, smoke=True, budget=3, seeds=4).seeds == (1, 2, 3, 4)
    fixed = scaled(config, fixed={"ease": {"lam": 5.0}, "diffrec": {"batch_size": 7}}).fixed
    assert fixed["ease"] == {"lam": 5.0}
    assert fixed["diffrec"] == {**config.fixed["diffrec"], "batch_size": 7}
    assert config.fixed.get("ease") is None  # the config itself is not changed
    with pytest.raises(ConfigError, match="not audited"):
        scaled(config, fixed={"slim": {"alpha": 1.0}})
    capped = dataclasses.replace(config, max_epochs=2).fixed_with_cap()
    assert capped["diffrec"]["max_epochs"] == 2 and capped["diffrec"]["eval_every"] == 1
    assert "toppop" not in capped
    for path in ("audit_diffrec_ml1m.py", "audit_ldiffrec_ml1m.py"):
        ml1m = load_config(CONFIGS / path)
        assert len(ml1m.baselines) == 11 and set(ml1m.reported) == set(ml1m.metrics)
    for bad, match in (
        ({"baselines": ()}, "baselines"),
        ({"baselines": ("diffrec",)}, "repeat"),
        ({"seeds": ()}, "seeds"),
        ({"metrics": ("Recall@50",)}, "Recall@50"),
        ({"reported": {"AUC": 0.5}}, "AUC"),
        ({"correction": "sidak"}, "correction"),
        ({"spaces": {"slim": {}}}, "slim"),
        ({"max_epochs": 0}, "max_epochs"),
    ):
        with pytest.raises(ConfigError, match=match):
            dataclasses.replace(config, **bad).check()
    with pytest.raises(ConfigError, match="get_config"):
        load_config(CONFIGS / "diffrec_tiny.py")  # a RunConfig, not an AuditConfig
    assert isinstance(AuditConfig().check(), AuditConfig)
