"""Search spaces, the random sampler and the TPE proposals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from diffrec_jax.errors import ConfigError
from diffrec_jax.results import to_jsonable
from diffrec_jax.tuning import space as spaces

SPACE = {
    "lam": ("float_log", 1.0, 1e7),
    "topk": ("int", 5, 1000),
    "shrink": ("int_log", 1, 100),
    "alpha": ("float", -1.0, 2.0),
    "dims": ("categorical", [[200, 600], [1000], "x"]),
}


def test_check_space_normalises_and_sorts():
    checked = spaces.check_space(SPACE)
    assert list(checked) == sorted(SPACE)
    assert checked["topk"] == ("int", 5, 1000) and isinstance(checked["topk"][1], int)
    assert checked["lam"] == ("float_log", 1.0, 1e7) and isinstance(checked["lam"][1], float)
    assert checked["dims"] == ("categorical", ((200, 600), (1000,), "x"))
    assert spaces.check_space({"k": ("int", 5.0, 5)}) == {"k": ("int", 5, 5)}


@pytest.mark.parametrize(
    "entry, match",
    [
        (("normal", 0, 1), "kind one of"),
        ("float", "kind one of"),
        (("float", 1.0), r"expected \('float', lo, hi\)"),
        (("float", 2.0, 1.0), "lo < hi"),
        (("float", 1.0, 1.0), "lo < hi"),
        (("float", 0.0, math.inf), "finite"),
        (("float_log", 0.0, 1.0), "lo > 0"),
        (("int_log", 0, 10), "lo > 0"),
        (("int", 1.5, 10), "integer bounds"),
        (("int", True, 10), "integer bounds"),
        (("float", "a", 1.0), "numeric bounds"),
        (("categorical", []), "non-empty"),
        (("categorical", [1, 1]), "distinct"),
        (("categorical", [[1, 2], (1, 2)]), "distinct"),
    ],
)
def test_check_space_rejects(entry, match):
    with pytest.raises(ConfigError, match=match):
        spaces.check_space({"p": entry}, "ease space")


def test_draw_types_bounds_and_one_draw_per_name():
    space = spaces.check_space(SPACE)
    rng = np.random.default_rng(0)
    draws = [spaces.draw(space, rng) for _ in range(2000)]
    for d in draws:
        assert list(d) == list(space)
        assert type(d["lam"]) is float and 1.0 <= d["lam"] < 1e7
        assert type(d["topk"]) is int and 5 <= d["topk"] <= 1000
        assert type(d["shrink"]) is int and 1 <= d["shrink"] <= 100
        assert type(d["alpha"]) is float and -1.0 <= d["alpha"] < 2.0
        assert d["dims"] in space["dims"][1]
    # One generator call per name, in sorted-name order.
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    d = spaces.draw(spaces.check_space({"b": ("float", 0.0, 1.0), "a": ("int", 0, 9)}), rng_a)
    assert d == {"a": int(rng_b.integers(0, 10)), "b": float(rng_b.uniform(0.0, 1.0))}
    assert rng_a.random() == rng_b.random()


def test_log_scales_are_log_uniform():
    space = spaces.check_space({"lam": ("float_log", 1.0, 1e4), "k": ("int_log", 1, 999)})
    rng = np.random.default_rng(0)
    draws = [spaces.draw(space, rng) for _ in range(4000)]
    log_lam = np.log10([d["lam"] for d in draws])
    # Uniform on [0, 4] in log10: mean 2, a quarter of the mass per decade.
    assert abs(log_lam.mean() - 2.0) < 0.08
    counts = np.histogram(log_lam, bins=4, range=(0, 4))[0] / len(draws)
    np.testing.assert_allclose(counts, 0.25, atol=0.03)
    ks = np.array([d["k"] for d in draws])
    # log-uniform on [1, 1000): P(k < 10) = P(k >= 100) = 1/3 (k = floor of the draw).
    assert abs(np.mean(ks < 10) - 1 / 3) < 0.03 and abs(np.mean(ks >= 100) - 1 / 3) < 0.03


def test_random_sampler_is_deterministic():
    s1, s2, s3 = (spaces.RandomSampler(SPACE, seed) for seed in (3, 3, 4))
    one = [s1.propose() for _ in range(5)]
    assert one == [s2.propose() for _ in range(5)]
    assert one[0] == spaces.draw(spaces.check_space(SPACE), np.random.default_rng(3))
    assert one != [s3.propose() for _ in range(5)]
    assert len({json.dumps(to_jsonable(p), sort_keys=True) for p in one}) == 5


def test_decode_params_round_trips_json():
    space = spaces.check_space(SPACE)
    params = spaces.RandomSampler(space, 0).propose()
    saved = json.loads(json.dumps(to_jsonable(params)))
    assert isinstance(saved["dims"], (list, str))
    assert spaces.decode_params(space, saved, "trial 0") == params
    with pytest.raises(ConfigError, match="trial 0: params"):
        spaces.decode_params(space, {"lam": 1.0}, "trial 0")
    with pytest.raises(ConfigError, match="is not one of"):
        spaces.decode_params(space, {**saved, "dims": [7]}, "trial 0")


def _tpe_run(seed, n, objective, space):
    finished = []
    for i in range(n):
        p = spaces.propose_tpe(space, finished, seed=seed, index=i, n_startup_trials=4)
        finished.append((p, objective(p)))
    return finished


def test_tpe_is_deterministic_and_uses_history():
    pytest.importorskip("optuna")
    space = spaces.check_space(
        {"lam": ("float_log", 1.0, 1e4), "k": ("int", 1, 50), "d": ("categorical", [[1], [2, 3]])}
    )

    def objective(p):  # best near lam = 100, k = 10, d = (2, 3); some failures
        if p["k"] == 13:
            return None
        return -abs(math.log10(p["lam"]) - 2) - abs(p["k"] - 10) / 50 - (p["d"] == (1,))

    run = _tpe_run(0, 12, objective, space)
    assert run == _tpe_run(0, 12, objective, space)
    assert run != _tpe_run(1, 12, objective, space)
    for p, _ in run:
        assert 1.0 <= p["lam"] <= 1e4 and type(p["k"]) is int and p["d"] in ((1,), (2, 3))
    # A proposal depends only on (seed, index, finished): recomputing trial 8 from the first 8.
    again = spaces.propose_tpe(space, run[:8], seed=0, index=8, n_startup_trials=4)
    assert again == run[8][0]
    # ...and it does use the history: other values of the same trials change the proposal.
    flipped = [(p, None if v is None else -v) for p, v in run[:8]]
    assert spaces.propose_tpe(space, flipped, seed=0, index=8, n_startup_trials=4) != again


def test_tpe_without_optuna_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "optuna":
            raise ImportError("no optuna")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ConfigError, match=r"diffrec_jax\[tuning\]"):
        spaces.propose_tpe(spaces.check_space({"a": ("float", 0, 1)}), [], seed=0, index=0)
