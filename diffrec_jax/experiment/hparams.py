"""Hyperparameter values from flags (``--hp=name=v1,v2``) and the grids they form."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from diffrec_jax import models as model_zoo
from diffrec_jax.errors import ConfigError

_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


def split_top_level(text: str) -> list[str]:
    """Splits on commas that are not inside brackets: "1,[2,3]" -> ["1", "[2,3]"]."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[("
        depth -= ch in "])"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]


def parse_value(text: str, default: Any, where: str) -> Any:
    """Parses one flag value to the type of `default` (bool is strict: true/false/1/0/yes/no)."""
    try:
        if isinstance(default, bool):
            low = text.lower()
            if low not in _TRUE | _FALSE:
                raise ValueError("expected true/false")
            return low in _TRUE
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, (tuple, list)):
            value = json.loads(text.replace("(", "[").replace(")", "]"))
            if not isinstance(value, list):
                raise ValueError("expected a list such as [200,600]")
            return tuple(value)
        return text
    except ValueError as e:
        raise ConfigError(
            f"{where}: cannot read {text!r} as {type(default).__name__} ({e})"
        ) from None


def parse_hparams(flags: Sequence[str], models: Sequence[str]) -> dict[str, dict[str, list]]:
    """Parses ``--hp`` flags into per-model value grids.

    Each flag is ``name=v1,v2,...`` (applies to every listed model that has `name`) or
    ``model.name=v1,...``. List-valued hyperparameters use brackets: ``dims=[200,600]``.
    Several values of one hyperparameter go in one flag (``lam=1,5000``, a grid): a second
    flag setting the same hyperparameter of a model (``--hp=lam=1 --hp=lam=5000``, or
    ``lam=1`` and ``ease.lam=2``) is refused rather than silently replacing the first.

    Raises:
      ConfigError: malformed flag, unknown model or hyperparameter, unparsable value, or a
        hyperparameter of a model given by two flags (both are named).
    """
    out: dict[str, dict[str, list]] = {m: {} for m in models}
    given: dict[tuple[str, str], str] = {}
    for flag in flags:
        m = re.fullmatch(r"\s*(?:([\w+-]+)\.)?(\w+)\s*=(.*)", flag)
        if not m or not m.group(3).strip():
            raise ConfigError(
                f"--hp={flag!r}: expected name=value[,value...] or model.name=value[,value...]"
            )
        target, name, text = m.groups()
        for mod in flag_targets(f"--hp={flag!r}", target, name, models):
            check_once(given, mod, name, f"--hp={flag!r}")
            defaults = model_zoo.get(mod).defaults
            out[mod][name] = [
                parse_value(v, defaults[name], f"--hp={flag!r}") for v in split_top_level(text)
            ]
    return out


def check_once(given: dict[tuple[str, str], str], model: str, name: str, where: str) -> None:
    """Records that flag `where` sets `model`'s hyperparameter `name` in `given`; ConfigError
    naming both flags when an earlier flag already set it."""
    earlier = given.get((model, name))
    if earlier is None:
        given[model, name] = where
        return
    raise ConfigError(
        f"{where}: hyperparameter {name!r} of model {model!r} is already set by {earlier}; "
        "expected each hyperparameter once (several values go in one flag: name=v1,v2)"
    )


def flag_targets(where: str, target: str | None, name: str, models: Sequence[str]) -> list[str]:
    """The models a ``[model.]name=...`` flag applies to: `target`, or every one of `models`
    that has a hyperparameter `name`.

    Raises:
      ConfigError: naming `where` (the flag): `target` not among `models`, no model with
        `name`, or `target` without it.
    """
    if target is not None and target not in models:
        raise ConfigError(f"{where}: model {target!r} is not one of the models {list(models)}")
    targets = [target] if target else [t for t in models if name in model_zoo.get(t).defaults]
    if not targets:
        raise ConfigError(f"{where}: no model in {list(models)} has a hyperparameter {name!r}")
    for t in targets:
        defaults = model_zoo.get(t).defaults
        if name not in defaults:
            raise ConfigError(
                f"{where}: model {t!r} has no hyperparameter {name!r}; "
                f"expected one of {sorted(defaults)}"
            )
    return targets


def check_grid(model: str, values: Mapping[str, Any]) -> dict[str, list[Any]]:
    """`values` (``{name: [v1, v2, ...]}`` of a configuration file) checked against the model's
    defaults: every entry a non-empty list of values of the default's type (an int for a float
    is accepted; a list or tuple for a sequence).

    Raises:
      ConfigError: naming ``hparams[model][name]``, the value and the expected type.
    """
    defaults = model_zoo.get(model).defaults
    if not isinstance(values, Mapping):
        raise ConfigError(
            f"hparams[{model!r}]={values!r}; expected a mapping {{name: [values...]}}"
        )
    out = {}
    for name, options in values.items():
        where = f"hparams[{model!r}][{name!r}]"
        if name not in defaults:
            raise ConfigError(
                f"{where}: model {model!r} has no hyperparameter {name!r}; expected one of "
                f"{sorted(defaults)}"
            )
        if isinstance(options, str | bytes) or not isinstance(options, Sequence) or not options:
            raise ConfigError(
                f"{where}={options!r}; expected a non-empty list of values, "
                f"e.g. [{defaults[name]!r}]"
            )
        for value in options:
            _check_type(where, value, defaults[name])
        out[name] = list(options)
    return out


def _check_type(where: str, value: Any, default: Any) -> None:
    if default is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool | np.bool_)
    elif isinstance(default, int):
        ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
            value, bool
        )
    elif isinstance(default, tuple | list):
        ok = isinstance(value, tuple | list)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(
            f"{where} holds {value!r} ({type(value).__name__}); expected a "
            f"{type(default).__name__} like the default {default!r}"
        )


def check_distinct(values: Sequence[Any], flag: str, what: str) -> None:
    """ConfigError naming `flag` and the first of `values` (models, seeds, cutoffs) listed
    twice."""
    repeated = [v for k, v in enumerate(values) if v in values[:k]]
    if repeated:
        raise ConfigError(
            f"{flag}={','.join(map(str, values))} lists {what} {repeated[0]!r} more than once; "
            f"expected each {what} once"
        )


def grid(values: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Cartesian product of hyperparameter values, in a stable order."""
    names = sorted(values)
    return [
        dict(zip(names, combo, strict=True))
        for combo in itertools.product(*(values[n] for n in names))
    ]


def format_hparams(hparams: Mapping[str, Any]) -> str:
    """``name=value,...`` of `hparams` (``-`` for none), for progress lines and errors."""
    return ",".join(f"{k}={v}" for k, v in hparams.items()) or "-"
