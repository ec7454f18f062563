"""Search spaces and the samplers that draw from them.

A search space maps hyperparameter names to one of::

    ("int", lo, hi)            uniform integer in [lo, hi]
    ("int_log", lo, hi)        log-uniform integer in [lo, hi], lo >= 1
    ("float", lo, hi)          uniform float in [lo, hi)
    ("float_log", lo, hi)      log-uniform float in [lo, hi), lo > 0
    ("categorical", [c, ...])  one of the choices (numbers, strings, bools, lists)

Two samplers propose configurations, both deterministic given the seed:

- :class:`RandomSampler`: one ``np.random.default_rng(seed)`` stream, one draw per
  hyperparameter per trial in sorted-name order, so trial ``i`` is the ``i``-th proposal of the
  stream whatever happened before (a resumed study skips the finished trials' draws).
- :func:`propose_tpe`: optuna's TPE over the finished trials. The proposal for trial ``i`` is a
  pure function of (space, seed, i, finished trials): a fresh in-memory optuna study gets the
  finished trials back (``optuna.trial.create_trial`` + ``study.add_trial``) and a TPE sampler
  seeded from ``(seed, i)`` asks once. An interrupted study therefore resumes with exactly the
  proposals of an uninterrupted one. optuna is an optional dependency (the ``tuning`` extra).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from diffrec_jax.errors import ConfigError
from diffrec_jax.results import to_jsonable

KINDS = ("int", "int_log", "float", "float_log", "categorical")
METHODS = ("random", "tpe")

Space = Mapping[str, tuple]


def check_space(space: Mapping[str, Any], where: str = "space") -> dict[str, tuple]:
    """Validates `space` and returns it normalised, sorted by name.

    Ranges become ``(kind, lo, hi)`` with int bounds for integer kinds and float bounds for
    float kinds; categorical choices become ``("categorical", (c, ...))``.

    Raises:
      ConfigError: an unknown kind, bounds out of order, a non-positive log bound, an empty or
        repeated choice list (`where` and the name are in the message).
    """
    out: dict[str, tuple] = {}
    for name in sorted(space):
        entry = space[name]
        what = f"{where}[{name!r}]={entry!r}"
        if not isinstance(entry, (tuple, list)) or not entry or entry[0] not in KINDS:
            raise ConfigError(f"{what}; expected (kind, ...) with kind one of {KINDS}")
        kind = entry[0]
        if kind == "categorical":
            if len(entry) != 2 or not isinstance(entry[1], (tuple, list)) or not entry[1]:
                raise ConfigError(f"{what}; expected ('categorical', [choice, ...]), non-empty")
            choices = tuple(tuple(c) if isinstance(c, list) else c for c in entry[1])
            keys = [_key(c) for c in choices]
            if len(set(keys)) != len(keys):
                raise ConfigError(f"{what}; expected distinct choices")
            out[name] = (kind, choices)
            continue
        if len(entry) != 3:
            raise ConfigError(f"{what}; expected ({kind!r}, lo, hi)")
        _, lo, hi = entry
        integer = kind.startswith("int")
        try:
            if isinstance(lo, bool) or isinstance(hi, bool):
                raise TypeError
            if integer:
                if float(lo) != int(lo) or float(hi) != int(hi):
                    raise TypeError
                lo, hi = int(lo), int(hi)
            else:
                lo, hi = float(lo), float(hi)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{what}; expected {'integer' if integer else 'numeric'} bounds"
            ) from None
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi or (not integer and lo == hi):
            raise ConfigError(f"{what}; expected finite bounds with lo < hi (lo <= hi for ints)")
        if kind.endswith("_log") and lo <= 0:
            raise ConfigError(f"{what}; expected lo > 0 for a log scale")
        out[name] = (kind, lo, hi)
    return out


def space_to_json(space: Space) -> dict[str, list]:
    """The JSON form of a (checked) space, as saved in study files."""
    return to_jsonable(check_space(space))


def _key(value: Any) -> str:
    """A canonical text form of a value as stored in JSON (tuples and lists are equal)."""
    import json

    return json.dumps(to_jsonable(value), sort_keys=True)


def decode_params(space: Space, saved: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Native values of `saved` (params read back from JSON) for the (checked) `space`.

    Categorical values are mapped back to the choice objects (tuples, not lists).

    Raises:
      ConfigError: names differ from the space's, or a value is not in it.
    """
    if set(saved) != set(space):
        raise ConfigError(
            f"{where}: params {sorted(saved)} differ from the space's {sorted(space)}"
        )
    out = {}
    for name, spec in space.items():
        value = saved[name]
        kind = spec[0]
        if kind == "categorical":
            matches = [c for c in spec[1] if _key(c) == _key(value)]
            if not matches:
                raise ConfigError(f"{where}: {name}={value!r} is not one of {list(spec[1])}")
            out[name] = matches[0]
        elif kind.startswith("int"):
            out[name] = int(value)
        else:
            out[name] = float(value)
    return out


# -- random search --------------------------------------------------------------------------------


def draw(space: Space, rng: np.random.Generator) -> dict[str, Any]:
    """One configuration of the (checked) `space`: exactly one draw of `rng` per name, in order.

    Python ints/floats (never numpy scalars), categorical choices as given.
    """
    out = {}
    for name, spec in space.items():
        kind = spec[0]
        if kind == "categorical":
            out[name] = spec[1][int(rng.integers(len(spec[1])))]
        elif kind == "int":
            out[name] = int(rng.integers(spec[1], spec[2] + 1))
        elif kind == "int_log":
            lo, hi = spec[1], spec[2]
            value = math.exp(rng.uniform(math.log(lo), math.log(hi + 1)))
            out[name] = min(int(math.floor(value)), hi)
        elif kind == "float":
            out[name] = float(rng.uniform(spec[1], spec[2]))
        else:  # float_log
            out[name] = float(math.exp(rng.uniform(math.log(spec[1]), math.log(spec[2]))))
    return out


class RandomSampler:
    """Random search: ``propose()`` returns the next configuration of one seeded stream.

    Args:
      space: the search space (checked here).
      seed: seeds ``np.random.default_rng(seed)``.
    """

    def __init__(self, space: Space, seed: int):
        self.space = check_space(space)
        self._rng = np.random.default_rng(seed)

    def propose(self) -> dict[str, Any]:
        """The next configuration."""
        return draw(self.space, self._rng)


# -- TPE (optuna) ---------------------------------------------------------------------------------


def require_optuna():
    """Imports optuna, or raises ConfigError saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError(
            "method 'tpe' needs optuna, which is not installed; install the extra "
            "(pip install 'diffrec_jax[tuning]') or use method 'random'"
        ) from None
    return optuna


def optuna_distributions(space: Space) -> dict[str, Any]:
    """optuna distributions of the (checked) `space`; categorical ones range over choice indices
    (optuna's choices must be scalars; the index keeps lists such as ``dims`` possible)."""
    optuna = require_optuna()
    dist = optuna.distributions
    out = {}
    for name, spec in space.items():
        kind = spec[0]
        if kind == "categorical":
            out[name] = dist.CategoricalDistribution(tuple(range(len(spec[1]))))
        elif kind.startswith("int"):
            out[name] = dist.IntDistribution(spec[1], spec[2], log=kind == "int_log")
        else:
            out[name] = dist.FloatDistribution(spec[1], spec[2], log=kind == "float_log")
    return out


def _to_optuna(space: Space, params: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for name, spec in space.items():
        if spec[0] == "categorical":
            out[name] = [_key(c) for c in spec[1]].index(_key(params[name]))
        else:
            out[name] = params[name]
    return out


def _from_optuna(space: Space, params: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for name, spec in space.items():
        value = params[name]
        if spec[0] == "categorical":
            out[name] = spec[1][int(value)]
        elif spec[0].startswith("int"):
            out[name] = int(value)
        else:
            out[name] = float(value)
    return out


def trial_seed(seed: int, index: int) -> int:
    """The 32-bit seed of the TPE sampler proposing trial `index` of a study seeded `seed`."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


@contextlib.contextmanager
def _quiet_optuna(optuna):
    old = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(old)


def propose_tpe(
    space: Space,
    finished: Sequence[tuple[Mapping[str, Any], float | None]],
    *,
    seed: int,
    index: int,
    n_startup_trials: int = 10,
) -> dict[str, Any]:
    """TPE's proposal for trial `index`, maximising the values of the `finished` trials.

    Args:
      space: the (checked) search space.
      finished: (params, value) of every finished trial in order; value None marks a failed
        trial (added as FAIL: TPE avoids nothing on its account but counts it).
      seed: the study seed; the sampler is seeded with :func:`trial_seed` (seed, index).
      index: the trial being proposed.
      n_startup_trials: TPE proposes at random until this many trials are complete.

    Returns:
      The configuration, in native values (as :func:`draw` returns them).
    """
    optuna = require_optuna()
    if not space:
        return {}
    dists = optuna_distributions(space)
    with _quiet_optuna(optuna):
        sampler = optuna.samplers.TPESampler(
            seed=trial_seed(seed, index),
            n_startup_trials=n_startup_trials,
            multivariate=True,
        )
        study = optuna.create_study(direction="maximize", sampler=sampler)
        states = optuna.trial.TrialState
        for params, value in finished:
            study.add_trial(
                optuna.trial.create_trial(
                    params=_to_optuna(space, params),
                    distributions=dists,
                    value=value,
                    state=states.FAIL if value is None else states.COMPLETE,
                )
            )
        trial = study.ask(fixed_distributions=dists)
        return _from_optuna(space, trial.params)
