"""A hyperparameter study: a budget of trials on (train, valid), persisted after every trial.

:func:`run_study` only ever receives :class:`~diffrec_jax.protocol.FitData` (train and
valid), or for sequential models :class:`~diffrec_jax.protocol.SeqFitData` (the training
sequences and every user's validation item): the test split is not among its inputs. Every
trial builds the model with the proposed hyperparameters (plus the fixed ones), fits it on
train (gradient-trained models early-stop on the validation metric through the shared training
loop) and evaluates it on valid. The study
file is rewritten atomically after every finished trial; running the same study again resumes
it: finished trials are read back, never redone, and the sampler continues exactly where the
uninterrupted study would be (see :mod:`diffrec_jax.tuning.space`).

Study file (JSON)::

    format        "diffrec_jax.study/1"
    settings      what must match to resume: model, dataset (id and fingerprint of train+valid),
                  space, method, seed, select_metric, ks, convention, fixed, tpe_startup,
                  seeding (how the seed becomes the fit key: "diffrec_jax.seeds/1")
    budget        the latest requested number of trials
    trials        one entry per finished trial, in order: index, state ("complete", "failed",
                  "duplicate"), params (searched), hparams (all), value (the selection metric),
                  valid (all validation metrics), propose/fit/eval seconds, training record of
                  gradient-trained models, error, duplicate_of, finished_utc
    best          the chosen trial among the first `budget` (index, params, hparams, value,
                  valid, training), or null
    complete      whether `budget` trials are finished
    tuning_seconds  sum of the trials' propose + fit + eval seconds
    sessions      one entry per call that ran trials (start time, trials run, seconds,
                  environment)
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from diffrec_jax import models as model_zoo
from diffrec_jax import seeds
from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.data.split import Split
from diffrec_jax.errors import ConfigError, DataError, DiffrecError
from diffrec_jax.experiment import fit, model_inputs, selection, without_history
from diffrec_jax.metrics import metric_names
from diffrec_jax.models import ModelSpec
from diffrec_jax.protocol import FitData, SeqFitData
from diffrec_jax.results import environment, to_jsonable, write_json_atomic
from diffrec_jax.seeds import check_seed
from diffrec_jax.tuning import space as spaces

STUDY_FORMAT = "diffrec_jax.study/1"
SETTINGS = (
    "model",
    "dataset",
    "space",
    "method",
    "seed",
    "select_metric",
    "ks",
    "convention",
    "fixed",
    "tpe_startup",
    "seeding",
)
SEEDING = "diffrec_jax.seeds/1"
"""Every trial is fit with ``diffrec_jax.seeds.key(seed, "fit")``; studies run with another
key derivation (none recorded) are not resumed."""


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """One model's hyperparameter search.

    Attributes:
      model: registry name.
      space: the search space (see :mod:`diffrec_jax.tuning.space`); an empty space runs one
        trial with the defaults (and `fixed`).
      budget: number of trials (a positive int); a resumed study may raise or keep it.
      method: "random" or "tpe" (optuna's TPE; needs the ``tuning`` extra).
      seed: seeds the sampler, and every trial's fit: each trial is fit with the key
        ``diffrec_jax.seeds.key(seed, "fit")``, as ``run --seeds=seed`` fits the same
        hyperparameters (so a chosen trial is reproduced by a run).
      select_metric: validation metric maximised (also the early-stopping metric of
        gradient-trained models).
      ks, convention: of the validation (and final test) evaluation.
      fixed: hyperparameters held at a value (not searched), e.g. ``{"max_epochs": 200}``.
      tpe_startup: TPE proposes at random until this many trials are complete.
    """

    model: str
    space: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    budget: int = 20
    method: str = "random"
    seed: int = 0
    select_metric: str = "Recall@20"
    ks: tuple[int, ...] = (10, 20)
    convention: str = "recbole"
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tpe_startup: int = 10

    def __post_init__(self):
        spec = model_zoo.get(self.model)
        object.__setattr__(self, "ks", tuple(self.ks))
        object.__setattr__(self, "space", spaces.check_space(self.space, f"{self.model} space"))
        object.__setattr__(self, "fixed", dict(self.fixed))
        for what, names in (("space", self.space), ("fixed", self.fixed)):
            unknown = sorted(set(names) - set(spec.defaults))
            if unknown:
                raise ConfigError(
                    f"{self.model} {what}: no hyperparameter(s) {unknown}; expected some of "
                    f"{sorted(spec.defaults)}"
                )
        both = sorted(set(self.space) & set(self.fixed))
        if both:
            raise ConfigError(f"{self.model}: {both} both searched and fixed; expected one")
        if self.method not in spaces.METHODS:
            raise ConfigError(f"method={self.method!r}; expected one of {spaces.METHODS}")
        for name in ("budget", "tpe_startup"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r}; expected a positive integer")
        check_seed(self.seed, "seed")
        names = metric_names(self.ks)
        if self.select_metric not in names:
            raise ConfigError(f"select_metric={self.select_metric!r}; expected one of {names}")
        if self.method == "tpe":
            spaces.require_optuna()

    def selection(self) -> dict[str, Any]:
        """The early-stopping overrides of every trial's training (the study's metric)."""
        return selection(self.select_metric, self.ks, self.convention)

    @property
    def n_trials(self) -> int:
        """Trials to run: `budget`, or 1 when nothing is searched."""
        return self.budget if self.space else 1

    def settings(self, dataset: Any, data: FitData | SeqFitData) -> dict[str, Any]:
        """The JSON settings a saved study must match (dataset: id, for the record, and the
        data fingerprint, which is what is compared)."""
        return to_jsonable(
            {
                "model": self.model,
                "dataset": {"id": dataset, "fingerprint": fingerprint(data)},
                "space": self.space,
                "method": self.method,
                "seed": self.seed,
                "select_metric": self.select_metric,
                "ks": self.ks,
                "convention": self.convention,
                "fixed": self.fixed,
                "tpe_startup": self.tpe_startup if self.method == "tpe" else None,
                "seeding": SEEDING,
            }
        )


def fingerprint(data: FitData | SeqFitData) -> str:
    """A short sha256 of the train and valid matrices (shape, pattern, values, timestamps), or
    of the training sequences and validation items."""
    h = hashlib.sha256()
    if isinstance(data, SeqFitData):
        h.update(np.asarray([data.train.n_users, data.train.n_items], np.int64).tobytes())
        h.update(np.asarray(data.train.offsets, np.int64).tobytes())
        h.update(np.asarray(data.train.items, np.int64).tobytes())
        h.update(
            b"none" if data.valid_targets is None else np.asarray(data.valid_targets).tobytes()
        )
        return h.hexdigest()[:16]
    for m in (data.train, data.valid):
        if m is None:
            h.update(b"none")
            continue
        h.update(np.asarray(m.shape, np.int64).tobytes())
        h.update(np.asarray(m.csr.indptr, np.int64).tobytes())
        h.update(np.asarray(m.csr.indices, np.int64).tobytes())
        h.update(np.asarray(m.csr.data, np.float32).tobytes())
        if m.timestamps is not None:
            h.update(np.asarray(m.timestamps, np.float64).tobytes())
    return h.hexdigest()[:16]


def empty_like(m: InteractionMatrix) -> InteractionMatrix:
    """A matrix of `m`'s shape and ids without entries."""
    return InteractionMatrix(sp.csr_array(m.shape, dtype=np.float32), None, m.user_ids, m.item_ids)


# -- the study file -------------------------------------------------------------------------------


def load_study(path: str | Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Reads a saved study and checks that it was run with `settings`.

    Raises:
      DataError: the file is not a study file.
      ConfigError: a setting differs (the field and both values are named).
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read the study file: {e}", path=path) from None
    if not isinstance(record, dict) or record.get("format") != STUDY_FORMAT:
        raise DataError(f"not a study file (expected format {STUDY_FORMAT!r})", path=path)
    saved = record.get("settings", {})
    for name in SETTINGS:
        mine, theirs = settings[name], saved.get(name)
        if name == "dataset" and isinstance(theirs, dict):
            # The data decides, not how it was named: a checkout moved elsewhere (an absolute
            # path in the id) resumes its studies; other data under the same id does not.
            mine, theirs = mine.get("fingerprint"), theirs.get("fingerprint")
        if theirs != mine:
            raise ConfigError(
                f"study file {path} was run with {name}={json.dumps(saved.get(name))}, "
                f"this study has {name}={json.dumps(settings[name])}; use another output "
                "directory or the saved settings"
            )
    if not isinstance(record.get("trials"), list):
        raise DataError("study file has no trial list", path=path)
    return record


def best_trial(trials: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The trial with the highest finite value (the earliest on ties); None if none has one.

    A NaN or infinite value (no user to evaluate, or an edited study file) is never chosen.
    """
    best = None
    for t in trials:
        value = t["value"]
        if value is None or not math.isfinite(value):
            continue
        if best is None or value > best["value"]:
            best = t
    return best


def _summarize(record: dict[str, Any], n_trials: int) -> None:
    trials = record["trials"][:n_trials]
    best = best_trial(trials)
    record["best"] = (
        None
        if best is None
        else {k: best[k] for k in ("index", "params", "hparams", "value", "valid", "training")}
    )
    record["complete"] = len(record["trials"]) >= n_trials
    record["tuning_seconds"] = float(sum(t["seconds"] for t in trials))


# -- the search -----------------------------------------------------------------------------------


def run_study(
    data: FitData | SeqFitData,
    config: StudyConfig,
    *,
    dataset: Any = "data",
    path: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    on_trial: Callable[[Mapping[str, Any]], None] | None = None,
    side: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Runs (or resumes) the study of `config` on train and valid.

    Args:
      data: train, and valid (required, non-empty); ``SeqFitData`` (train sequences and valid
        items) for a sequential model (registry entry ``input == "sequences"``), validated by a
        :class:`~diffrec_jax.evaluation.SequenceEvaluator` (histories of the model's
        ``max_len``). Test is not an input.
      config: the study.
      dataset: a JSON-able id of the data (e.g. the dataset spec and options), recorded and
        checked on resume together with a fingerprint of `data`.
      path: the study file: read if it exists (settings must match), rewritten atomically after
        every trial. None keeps the study in memory.
      progress: called with one line per finished trial.
      on_trial: called with each finished trial's record after it is saved.
      side: dataset side data passed to every build (``Dataset.extras`` entries the model
        takes by name, e.g. L-DiffRec's ``item_emb``); neither searched nor saved, so include
        a fingerprint of it in `dataset` for the resume check.

    Returns:
      The study record (as saved; see the module docstring).

    Raises:
      ConfigError: no validation data, data of the wrong kind for the model, or a saved study
        with other settings.
    """
    spec = model_zoo.get(config.model)
    sequential = spec.input == "sequences"
    if sequential != isinstance(data, SeqFitData):
        raise ConfigError(
            f"model {config.model!r} takes {'sequences' if sequential else 'interaction rows'}; "
            f"run_study got {type(data).__name__}"
        )
    if isinstance(data, SeqFitData):  # i.e. sequential (checked above)
        if data.valid_targets is None or len(data.valid_targets) == 0:
            raise ConfigError("tuning needs validation items; SeqFitData.valid_targets is empty")
    elif data.valid is None or data.valid.nnz == 0:
        raise ConfigError("tuning needs validation interactions; the valid matrix is empty")
    settings = config.settings(dataset, data)
    path = None if path is None else Path(path)
    if path is not None and path.exists():
        record = load_study(path, settings)
    else:
        record = {"format": STUDY_FORMAT, "settings": settings, "budget": config.budget}
        record.update(complete=False, best=None, tuning_seconds=0.0, trials=[], sessions=[])
    record["budget"] = config.budget
    trials: list[dict[str, Any]] = record["trials"]
    n_trials = config.n_trials

    search_split: Split | SeqFitData
    if isinstance(data, SeqFitData):
        search_split = data  # the evaluator depends on the trial's max_len
    else:  # search data: train and valid, with an empty test part
        assert data.valid is not None  # checked above: tuning needs validation interactions
        search_split = Split(data.train, data.valid, empty_like(data.train), name="search")

    sampler = spaces.RandomSampler(config.space, config.seed)
    if config.method == "random":  # replay the finished trials' draws
        for t in trials[:n_trials]:
            proposed = to_jsonable(sampler.propose())
            if proposed != t["params"]:
                raise ConfigError(
                    f"study file {path}: trial {t['index']} has params {t['params']}, but "
                    f"seed {config.seed} proposes {proposed}; use another output directory"
                )

    start = time.perf_counter()
    if len(trials) < n_trials:
        session: dict[str, Any] = {
            "started_utc": _now(),
            "trials_before": len(trials),
            "trials_run": 0,
            "seconds": 0.0,
            "environment": environment(),
        }
        record["sessions"].append(session)
    while len(trials) < n_trials:
        index = len(trials)
        t0 = time.perf_counter()
        if config.method == "random":
            params = sampler.propose()
        else:
            finished = [
                (spaces.decode_params(config.space, t["params"], f"trial {t['index']}"), t["value"])
                for t in trials
            ]
            params = spaces.propose_tpe(
                config.space,
                finished,
                seed=config.seed,
                index=index,
                n_startup_trials=config.tpe_startup,
            )
        propose_seconds = time.perf_counter() - t0
        trial = _run_trial(index, params, spec, config, search_split, trials, side)
        trial["propose_seconds"] = propose_seconds
        trial["seconds"] = propose_seconds + (trial["fit_seconds"] or 0) + trial["eval_seconds"]
        trials.append(to_jsonable(trial))
        session["trials_run"] += 1
        session["seconds"] = time.perf_counter() - start
        _summarize(record, n_trials)
        if path is not None:
            write_json_atomic(path, record)
        if progress is not None:
            progress(_progress_line(trials[-1], n_trials, config))
        if on_trial is not None:
            on_trial(trials[-1])
    _summarize(record, n_trials)
    if path is not None:
        write_json_atomic(path, record)
    return record


def _run_trial(
    index: int,
    params: Mapping[str, Any],
    spec: ModelSpec,
    config: StudyConfig,
    search_split: Split | SeqFitData,
    trials: Sequence[Mapping[str, Any]],
    side: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Fits and validates one configuration; a DiffrecError makes the trial "failed"."""
    trial: dict[str, Any] = {
        "index": index,
        "state": "complete",
        "params": dict(params),
        "hparams": {**spec.defaults, **config.fixed, **params},
        "value": None,
        "valid": None,
        "fit_seconds": None,
        "eval_seconds": 0.0,
        "training": None,
        "error": None,
        "duplicate_of": None,
    }
    try:
        hparams = spec.hparams(**config.fixed, **params)
        trial["hparams"] = dict(hparams)
        same = [t for t in trials if t["params"] == to_jsonable(params) and t["valid"]]
        if spec.closed_form and same:  # the same params give the same fit
            trial.update(state="duplicate", duplicate_of=same[0]["index"], valid=same[0]["valid"])
        else:
            inputs = model_inputs(
                spec, hparams, search_split, side=side, ks=config.ks, convention=config.convention
            )
            key = seeds.key(config.seed, "fit")
            fitted = fit(spec, hparams, inputs.data, key, overrides=config.selection())
            trial["fit_seconds"] = fitted.seconds
            trial["training"] = without_history(fitted.training)
            score = spec.build(**hparams).score
            t0 = time.perf_counter()
            result = inputs.evaluator.evaluate(score, fitted.params, parts=("valid",))["valid"]
            trial["eval_seconds"] = time.perf_counter() - t0
            trial["valid"] = to_jsonable(result.summary)
            del fitted
        trial["value"] = trial["valid"][config.select_metric]
    except DiffrecError as e:
        trial.update(state="failed", error=f"{type(e).__name__}: {e}", valid=None, value=None)
    trial["finished_utc"] = _now()
    return trial


def _progress_line(trial: Mapping[str, Any], n_trials: int, config: StudyConfig) -> str:
    params = ",".join(f"{k}={_short(v)}" for k, v in trial["params"].items()) or "-"
    head = f"{config.model} trial {trial['index'] + 1}/{n_trials} {params}: "
    if trial["state"] == "failed":
        return head + f"failed ({trial['error']})"
    if trial["value"] is None:
        return head + f"no valid {config.select_metric} (no user to evaluate)"
    if trial["duplicate_of"] is not None:
        note = f"duplicate of trial {trial['duplicate_of'] + 1}"
    else:
        note = f"fit {trial['fit_seconds']:.1f}s"
    return head + f"valid {config.select_metric} {trial['value']:.4f} ({note})"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
