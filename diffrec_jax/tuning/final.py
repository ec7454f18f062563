"""After the search: refit the chosen configuration and evaluate it on test, once.

Two protocols (``refit``):

- ``"train"``: fit on train exactly as the chosen trial was (same hyperparameters, same key
  ``diffrec_jax.seeds.key(seed, "fit")``; gradient-trained models early-stop on valid again),
  then one evaluation pass over valid and test (train rows in; test excludes train and valid
  items).
- ``"train+valid"``: fit on the union of train and valid, then evaluate test with train+valid
  rows as input and train+valid items excluded. This is a new
  ``Split(train+valid, empty valid, test)`` handed to the ordinary :class:`Evaluator`.
  There is no validation data left to stop on, so a gradient-trained model trains for the
  number of epochs at which its chosen trial scored best (``max_epochs = best_epoch``, no
  early stopping), passed as an override of the training config that its registry entry's
  plan builds (so it reaches every gradient-trained model, BPR-MF and LightGCN included).

Sequential models (a leave-one-out :class:`~diffrec_jax.data.sequences.SequenceSplit`) support
``"train"`` only: refit on the training sequences (early stopping on the valid items again),
then the valid and test items are evaluated once with the
:class:`~diffrec_jax.evaluation.SequenceEvaluator` (histories ``seq[:-2]`` and
``seq[:-1]``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from diffrec_jax import models as model_zoo
from diffrec_jax import seeds
from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.data.sequences import SequenceSplit
from diffrec_jax.data.split import Split
from diffrec_jax.errors import ConfigError, DataError
from diffrec_jax.experiment import fit, model_inputs, without_history
from diffrec_jax.protocol import FitData
from diffrec_jax.results import to_jsonable
from diffrec_jax.tuning import space as spaces
from diffrec_jax.tuning.study import StudyConfig, empty_like

REFITS = ("train", "train+valid")


def check_refit(refit: str) -> str:
    if refit not in REFITS:
        raise ConfigError(f"refit={refit!r}; expected one of {REFITS}")
    return refit


def train_plus_valid(split: Split) -> InteractionMatrix:
    """The union of `split.train` and `split.valid`, keeping values (and timestamps when both
    have them), with train's ids.

    Raises:
      DataError: train and valid share an interaction (a split partitions its entries).
    """
    parts = [split.train, split.valid]
    users, items, values = (
        np.concatenate(a) for a in zip(*(m.to_arrays() for m in parts), strict=True)
    )
    stamps = [m.timestamps for m in parts if m.timestamps is not None]
    timestamps = np.concatenate(stamps) if len(stamps) == len(parts) else None
    try:
        return InteractionMatrix.from_arrays(
            users,
            items,
            shape=split.train.shape,
            values=values,
            timestamps=timestamps,
            user_ids=split.train.user_ids,
            item_ids=split.train.item_ids,
            source="train+valid",
        )
    except DataError as e:
        raise DataError(f"cannot merge train and valid for the refit: {e}") from None


def refit_and_test(
    split: Split | SequenceSplit,
    config: StudyConfig,
    study: Mapping[str, Any],
    *,
    refit: str = "train",
    side: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Refits the study's chosen trial and evaluates it on `split.test` exactly once.

    Args:
      split: the full split (the only place test enters the tuning pipeline); a
        ``SequenceSplit`` for a sequential model.
      config: the study's configuration.
      study: the record :func:`~diffrec_jax.tuning.study.run_study` returned.
      refit: "train" or "train+valid" (see the module docstring).
      side: the dataset's side data (``Dataset.extras``), as in the study.

    Returns:
      {"refit", "index", "params", "hparams", "fit_seconds", "eval_seconds", "training",
      "valid" (None for train+valid), "test"} with metric summaries as dicts.

    Raises:
      ConfigError: no trial of the study finished with a value, or train+valid asked for a
        sequential model.
    """
    check_refit(refit)
    best = study.get("best")
    if best is None:
        errors = [t["error"] for t in study.get("trials", ()) if t.get("error")]
        first = f" (first error: {errors[0]})" if errors else ""
        raise ConfigError(
            f"no trial of {config.model} finished with a {config.select_metric} value{first}; "
            "see the errors in its study file"
        )
    params = spaces.decode_params(config.space, best["params"], f"best trial of {config.model}")
    spec = model_zoo.get(config.model)
    hparams = spec.hparams(**config.fixed, **params)
    overrides = config.selection()
    options: dict[str, Any] = {"ks": config.ks, "convention": config.convention}

    if isinstance(split, SequenceSplit):
        if refit != "train":
            raise ConfigError(
                f"refit={refit!r} for the sequential model {config.model!r}; only 'train' is "
                "supported (the valid item is the early-stopping signal)"
            )
        inputs = model_inputs(spec, hparams, split, side=side, **options)
        parts: tuple[str, ...] = ("valid", "test")
    elif refit == "train":
        inputs = model_inputs(spec, hparams, split, side=side, **options)
        parts = ("valid", "test")
    else:
        merged = train_plus_valid(split)
        final_split = Split(
            merged,
            empty_like(merged),
            split.test,
            name=split.name,
            history=(*split.history, "refit: train and valid merged into train"),
        )
        inputs = model_inputs(spec, hparams, final_split, side=side, **options)
        # A Split gives FitData (model_inputs refuses it for a sequential model).
        assert isinstance(inputs.data, FitData)
        # No validation data left: train for the epochs at which the chosen trial was best.
        inputs = inputs._replace(data=inputs.data._replace(valid=None))
        parts = ("test",)
        if not spec.closed_form:
            epochs = best["training"]["best_epoch"] or best["training"]["epochs"]
            overrides = {**overrides, "max_epochs": int(epochs), "patience": None}

    fitted = fit(spec, hparams, inputs.data, seeds.key(config.seed, "fit"), overrides=overrides)
    t0 = time.perf_counter()
    results = inputs.evaluator.evaluate(spec.build(**hparams).score, fitted.params, parts=parts)
    eval_seconds = time.perf_counter() - t0
    return to_jsonable(
        {
            "refit": refit,
            "index": best["index"],
            "params": best["params"],
            "hparams": dict(hparams),
            "fit_seconds": fitted.seconds,
            "eval_seconds": eval_seconds,
            "training": without_history(fitted.training),
            "valid": results["valid"].summary if "valid" in results else None,
            "test": results["test"].summary,
        }
    )
