"""The baselines' search spaces: well formed, matching the registry, usable at their corners."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffrec_jax import models
from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.models.search_spaces import SEARCH_SPACES
from diffrec_jax.protocol import FitData, UserBatch
from diffrec_jax.tuning.space import check_space

BASELINES = [
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
]


def test_every_baseline_has_a_space_over_its_hyperparameters():
    assert set(BASELINES) <= set(SEARCH_SPACES)
    for name, space in SEARCH_SPACES.items():
        defaults = models.get(name).defaults
        assert set(space) <= set(defaults), (name, sorted(set(space) - set(defaults)))
        check_space(space, where=name)


@pytest.mark.parametrize("name", BASELINES)
def test_registry_defaults_are_the_factory_defaults(name):
    spec = models.get(name)
    signature = inspect.signature(spec.make).parameters
    assert {k: p.default for k, p in signature.items()} == dict(spec.defaults)


def _corner(space, which, int_cap):
    out = {}
    for name, spec in space.items():
        if spec[0] == "categorical":
            out[name] = spec[1][0 if which == "lo" else -1]
        else:
            value = spec[1] if which == "lo" else spec[2]
            if spec[0].startswith("int"):
                value = min(int(value), int_cap)
            elif which == "hi":
                value = float(np.nextafter(value, -np.inf))  # float ranges exclude hi
            out[name] = value
    return out


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    dense = (rng.random((14, 10)) < 0.4).astype(np.float32)
    dense[5] = 0.0  # a user without items
    dense[:, 8] = 0.0  # an item without users
    users, items = np.nonzero(dense)
    return dense, InteractionMatrix.from_arrays(users, items, shape=dense.shape)


@pytest.mark.parametrize("which", ["lo", "hi"])
@pytest.mark.parametrize("name", BASELINES)
def test_corners_of_the_space_fit_and_score(tiny, name, which):
    dense, m = tiny
    hparams = _corner(SEARCH_SPACES[name], which, int_cap=6)
    if name == "slim":
        hparams["max_iter"] = 20
    model = models.get(name).build(**hparams)
    params = model.fit(FitData(m), jax.random.key(0))
    batch = UserBatch(jnp.arange(14, dtype=jnp.int32), jnp.asarray(dense))
    scores = np.asarray(jax.jit(model.score)(params, batch))
    assert scores.shape == dense.shape
    assert np.isfinite(scores).all(), (name, hparams)


@pytest.mark.parametrize("which", ["lo", "hi"])
@pytest.mark.parametrize("name", ["sasrec", "sasrec+", "gru4rec", "adrec", "diffurec", "dreamrec"])
def test_corners_of_the_sequential_spaces_build(name, which):
    spec = models.get(name)
    model = spec.build(**_corner(SEARCH_SPACES[name], which, int_cap=6))
    assert spec.input == "sequences" and model.name == name
