"""The fitting API that experiment, tuning and audit share.

One model, one dataset, one seed::

    spec = models.get("diffrec")
    hparams = spec.hparams(steps=10)
    inputs = model_inputs(spec, hparams, split, side=dataset.extras)
    fitted = fit(spec, hparams, inputs.data, seeds.key(seed, "fit"),
                 overrides=selection(select_metric="Recall@20", ks=(10, 20)))
    results = inputs.evaluator.evaluate(spec.build(**hparams).score, fitted.params)

:func:`model_inputs` gives what the model is fit on and the evaluator of its scores (after the
entry's data transform, with its side data); :func:`fit` fits it and returns the scoring
parameters with the time and the training record; :func:`selection` names the early-stopping
overrides (selection metric, cutoffs, convention) that ``run``, ``tune`` and ``audit`` all pass,
so that one seed gives one fit from each of them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax

from diffrec_jax.data.sequences import SequenceSplit
from diffrec_jax.data.split import Split
from diffrec_jax.errors import ConfigError
from diffrec_jax.evaluation import Evaluator, SequenceEvaluator
from diffrec_jax.models import ModelSpec
from diffrec_jax.protocol import FitData, Params, SeqFitData
from diffrec_jax.train import sharding


class ModelInputs(NamedTuple):
    """What a model is fit on and how its scores are evaluated.

    Attributes:
      data: :class:`~diffrec_jax.protocol.FitData` (row models: train, valid, side data) or
        :class:`~diffrec_jax.protocol.SeqFitData` (sequential models).
      evaluator: an :class:`~diffrec_jax.evaluation.Evaluator` of the (prepared) split, or a
        :class:`~diffrec_jax.evaluation.SequenceEvaluator`.
    """

    data: FitData | SeqFitData
    evaluator: Evaluator | SequenceEvaluator


class Fitted(NamedTuple):
    """A finished fit.

    Attributes:
      params: the scoring parameters (this process's copy), ready.
      seconds: wall time of the fit.
      training: the training record (``diffrec_jax.train.training_record``; ADRec's adds
        ``stages``), or None for a closed-form model.
    """

    params: Params
    seconds: float
    training: dict[str, Any] | None


def selection(select_metric: str, ks: Sequence[int], convention: str) -> dict[str, Any]:
    """The training-config overrides that make early stopping select as the experiment does."""
    return {"select_metric": select_metric, "ks": tuple(ks), "convention": convention}


def model_inputs(
    spec: ModelSpec,
    hparams: Mapping[str, Any],
    split: Split | SequenceSplit | SeqFitData,
    *,
    side: Mapping[str, Any] | None = None,
    ks: Sequence[int] = (10, 20),
    convention: str = "recbole",
    exclude_history: bool = False,
) -> ModelInputs:
    """The data `spec`'s model (with `hparams`) is fit on, and its evaluator.

    Args:
      spec: the registry entry.
      hparams: the model's hyperparameters (all of them).
      split: a row :class:`~diffrec_jax.data.split.Split` (row models; its test part may be
        empty, as in tuning), or for sequential models a leave-one-out
        :class:`~diffrec_jax.data.sequences.SequenceSplit` (valid and test) or a
        :class:`~diffrec_jax.protocol.SeqFitData` (valid only).
      side: the dataset's side data (``Dataset.extras``); the entries the model names in
        ``spec.side_data`` go into the fit data.
      ks, convention: of the evaluator.
      exclude_history: sequential models: never recommend a history item.

    Raises:
      ConfigError: data of the wrong kind for the model.
    """
    side = {name: (side or {}).get(name) for name in spec.side_data}
    if spec.input == "sequences":
        max_len = int(hparams["max_len"])
        options = {"ks": ks, "convention": convention, "exclude_history": exclude_history}
        if isinstance(split, SequenceSplit):
            seq_data = SeqFitData.from_split(split)._replace(side=side)
            return ModelInputs(seq_data, SequenceEvaluator.from_split(split, max_len, **options))
        if isinstance(split, SeqFitData):
            seq_data = split._replace(side=side)
            evaluator = SequenceEvaluator.from_fit_data(seq_data, max_len, **options)
            return ModelInputs(seq_data, evaluator)
        raise ConfigError(
            f"model {spec.name!r} is sequential; the data has no sequences (expected a "
            "'sequences:<file>' or 'synthetic-sequences' dataset)"
        )
    if not isinstance(split, Split):
        raise ConfigError(f"model {spec.name!r} takes interaction rows; got {type(split).__name__}")
    if spec.prepare is not None:
        split = spec.prepare(split, hparams)
    data = FitData(split.train, split.valid, side)
    return ModelInputs(data, Evaluator(split, ks=ks, convention=convention))


def fit(
    spec: ModelSpec,
    hparams: Mapping[str, Any],
    data: FitData | SeqFitData,
    key: jax.Array,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> Fitted:
    """Fits `spec`'s model with `hparams` on `data` with `key` (see
    :meth:`~diffrec_jax.models.ModelSpec.fit_with_record`), timed, parameters ready."""
    start = time.perf_counter()
    params, training = spec.fit_with_record(hparams, data, key, overrides)
    # Over several processes the params span all of them: evaluate this process's copy.
    params = jax.block_until_ready(sharding.addressable(params))
    return Fitted(params, time.perf_counter() - start, training)


def without_history(training: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A training record without its per-epoch history (as study files keep it)."""
    return None if training is None else {k: v for k, v in training.items() if k != "history"}
