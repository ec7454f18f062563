"""The audit pipeline: tune, re-run with seeds, test, cost, diagnose, report.

:func:`run_audit` runs, for an :class:`~diffrec_jax.audit.config.AuditConfig`:

1. tuning: every model (the target and every baseline) is tuned on validation with the same
   budget, search method and seed (:func:`diffrec_jax.tuning.run_study`; test is not an input);
2. re-runs: the chosen configuration of every model is trained with every seed of
   ``config.seeds`` on train (early stopping on valid) and evaluated on valid and test; the
   per-user test values of ``config.metrics`` are kept (``runs/<model>/seed<s>.per_user.npy``,
   [n_metrics, n_users] float64, rows in the order of the record's ``per_user_metrics``). The
   first seed's run also measures the cost probes (FLOPs, memory, inference time) and, for
   diffusion models, saves its parameters for the diagnostics;
3. statistics: mean +- std over seeds; the target against the best baseline (highest mean test
   ``select_metric``), paired per user on the per-user means over seeds, Wilcoxon and t-test
   with the configured correction; the reproducibility verdict of every reported number;
4. cost: tuning time, training time, inference time per 1,000 users, FLOPs, memory, energy and
   CO2 under the stated assumptions (:mod:`~diffrec_jax.audit.cost`);
5. diagnostics of every diffusion model (:mod:`~diffrec_jax.audit.diagnostics`);
6. the report folder (:mod:`~diffrec_jax.audit.report`).

Output directory::

    studies/<split>__<model>__<method>__seed<s>.json    tuning studies (resumed by run_study)
    runs/<model>/seed<s>.json (+ .per_user.npy, .params.npz)      one unit per seed run
    diagnostics/<model>/<variant>__s<sampling seed>.json (+ .top_items.npy)
    report-<audit name>/report.md, *.png, results.json

Every unit is saved atomically when it finishes and skipped when the audit runs again with the
same inputs (:mod:`~diffrec_jax.audit.store`); an interrupted audit resumes where it stopped.
Steps 3, 4 and 6 are recomputed from the saved units on every run (seconds), so changing the
energy assumptions or the correction only needs a rerun.

Sequential models (``input == "sequences"``, all audited models of one kind) are tuned on
``SeqFitData`` (train sequences and valid items), re-run through
:func:`diffrec_jax.experiment.model_inputs` (``SeqFitData`` and a ``SequenceEvaluator``:
leave-one-out, history items not excluded) and compared per user on the test items. Their cost
probe has no scoring-FLOPs entry (it needs a row batch) and times inference on the test pass;
the diffusion diagnostics (models whose registry entry declares ``diffusion="gaussian"``) are
those of the DiffRec family and are skipped for them.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from diffrec_jax import models as model_zoo
from diffrec_jax import seeds
from diffrec_jax.audit import cost as costs
from diffrec_jax.audit import diagnostics as diag
from diffrec_jax.audit import report as reports
from diffrec_jax.audit import stats, store
from diffrec_jax.audit.config import AuditConfig
from diffrec_jax.data.datasets import load_dataset
from diffrec_jax.data.sequences import SequenceSplit
from diffrec_jax.errors import ConfigError, DataError, DiffrecError
from diffrec_jax.experiment import (
    ModelInputs,
    dataset_record,
    fit,
    model_inputs,
    summarize,
    without_history,
)
from diffrec_jax.protocol import FitData, SeqFitData, exported
from diffrec_jax.results import ensure_writable_dir, environment, to_jsonable
from diffrec_jax.tuning import space as spaces
from diffrec_jax.tuning.runner import TuneConfig, study_configs
from diffrec_jax.tuning.study import SEEDING, StudyConfig, fingerprint, load_study, run_study

STEPS = 6


class _Say:
    """Progress lines prefixed with the elapsed time."""

    def __init__(self, progress: Callable[[str], None]):
        self.progress = progress
        self.start = time.perf_counter()

    def __call__(self, line: str) -> None:
        elapsed = datetime.timedelta(seconds=round(time.perf_counter() - self.start))
        self.progress(f"[audit {elapsed}] {line}")


def _safe(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text)


def _sha(value: Any) -> str:
    arr = np.ascontiguousarray(np.asarray(value))
    h = hashlib.sha256(str((arr.shape, arr.dtype.str)).encode())
    h.update(arr.tobytes())
    return h.hexdigest()[:16]


def side_data(name: str, extras: Mapping[str, Any]) -> dict[str, Any]:
    """The dataset extras model `name`'s registry entry asks for (``ModelSpec.side_data``,
    e.g. L-DiffRec's ``item_emb``)."""
    return {k: extras[k] for k in model_zoo.get(name).side_data if k in extras}


@dataclasses.dataclass
class _Context:
    """What every step needs: the configuration, the data, the output paths."""

    config: AuditConfig
    out: Path
    split: Any
    fit_data: FitData
    extras: Mapping[str, Any]
    data_id: dict[str, Any]
    data_fingerprint: str
    say: _Say

    def side(self, name: str) -> dict[str, Any]:
        return side_data(name, self.extras)

    def sequences(self, name: str) -> SequenceSplit:
        """The leave-one-out split of the dataset's sequences, for the sequential model `name`.

        Raises:
          ConfigError: the dataset has no sequences.
        """
        sequences = self.extras.get("sequences")
        if sequences is None:
            raise ConfigError(
                f"model {name!r} is sequential; the dataset has no sequences (expected a "
                "'sequences:<file>' or 'synthetic-sequences' dataset)"
            )
        return sequences

    def search_data(self, name: str) -> FitData | SeqFitData:
        """What model `name`'s study sees: train and valid rows, or train sequences and valid
        items for a sequential model."""
        if model_zoo.get(name).input == "sequences":
            return SeqFitData.from_split(self.sequences(name))
        return self.fit_data

    def study_dataset(self, name: str) -> dict[str, Any]:
        """The dataset id of model `name`'s study: that of ``experiments/tune.py`` (so its
        studies can be reused), plus fingerprints of the side data the model takes."""
        side = self.side(name)
        if not side:
            return dict(self.data_id)
        return {**self.data_id, "side": {k: _sha(v) for k, v in sorted(side.items())}}

    def run_path(self, model: str, seed: int) -> Path:
        return self.out / "runs" / model / f"seed{seed}.json"


def study_path(out: Path, split_name: str, config: StudyConfig) -> Path:
    """The study file of `config` under `out` (the naming of :mod:`diffrec_jax.tuning`)."""
    return (
        out
        / "studies"
        / f"{_safe(split_name)}__{config.model}__{config.method}__seed{config.seed}.json"
    )


def audit_studies(config: AuditConfig) -> list[StudyConfig]:
    """One study per audited model: same budget, method, seed and metric for all."""
    return study_configs(
        TuneConfig(
            models=config.models,
            budget=config.budget,
            method=config.method,
            seed=config.tuning_seed,
            select_metric=config.select_metric,
            ks=tuple(config.ks),
            convention=config.convention,
            spaces=config.spaces,
            fixed=config.fixed_with_cap(),
        )
    )


# -- step 1 ---------------------------------------------------------------------------------------


def _tune(ctx: _Context, studies: Sequence[StudyConfig]) -> dict[str, dict[str, Any]]:
    out = {}
    for i, sc in enumerate(studies):
        path = study_path(ctx.out, ctx.split.name, sc)
        path.parent.mkdir(parents=True, exist_ok=True)
        head = f"step 1/{STEPS} tuning {sc.model} ({i + 1}/{len(studies)})"
        done = 0
        if path.exists():
            settings = sc.settings(ctx.study_dataset(sc.model), ctx.search_data(sc.model))
            done = len(load_study(path, settings)["trials"])
        if done >= sc.n_trials:
            ctx.say(f"{head}: {sc.n_trials} trials already done, skipped")
        else:
            ctx.say(
                f"{head}: {sc.n_trials} {sc.method} trials on valid {sc.select_metric}"
                + (f" ({done} done before)" if done else "")
            )
        study = run_study(
            ctx.search_data(sc.model),
            sc,
            dataset=ctx.study_dataset(sc.model),
            path=path,
            progress=lambda line: ctx.say("  " + line),
            side=ctx.side(sc.model),
        )
        if study["best"] is None:
            ctx.say(f"  {sc.model}: no trial finished with a value; left out of the audit")
        out[sc.model] = study
    return out


# -- step 2 ---------------------------------------------------------------------------------------


def _run_key(ctx: _Context, sc: StudyConfig, best: Mapping[str, Any], seed: int, first: bool):
    return {
        "model": sc.model,
        "seed": seed,
        "trial": best["index"],
        "params": best["params"],
        "fixed": to_jsonable(sc.fixed),
        "data": ctx.data_fingerprint,
        "side": ctx.study_dataset(sc.model).get("side"),
        "ks": list(ctx.config.ks),
        "convention": ctx.config.convention,
        "metrics": list(ctx.config.metrics),
        "first": first,
        "seeding": SEEDING,
    }


def chosen_hparams(sc: StudyConfig, best: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """The hyperparameters of the study's chosen trial, optionally with overrides."""
    params = spaces.decode_params(sc.space, best["params"], f"chosen trial of {sc.model}")
    return model_zoo.get(sc.model).hparams(**{**sc.fixed, **params, **overrides})


def chosen_inputs(ctx: _Context, sc: StudyConfig, hparams: Mapping[str, Any]) -> ModelInputs:
    """What the chosen configuration is fit on (train, valid, side data) and its evaluator."""
    spec = model_zoo.get(sc.model)
    data = ctx.sequences(sc.model) if spec.input == "sequences" else ctx.split
    return model_inputs(spec, hparams, data, side=ctx.extras, ks=sc.ks, convention=sc.convention)


def _probe(spec, hparams, inputs: ModelInputs, fitted, n_items: int) -> dict[str, Any]:
    """Cost measurements of a fitted model (first seed only)."""
    model = spec.build(**hparams)
    model_eval = inputs.evaluator
    out: dict[str, Any] = {"memory": costs.memory_snapshot()}
    try:
        out["train_step"] = costs.train_step_cost(spec, hparams, inputs.data)
    except Exception as e:
        out["train_step"] = None
        out["train_step_error"] = f"{type(e).__name__}: {e}"
    if spec.input == "rows":
        users = int(model_eval.users_to_score(("valid", "test")).size)
        try:
            out["score"] = costs.score_cost(
                model, fitted, n_items, min(model_eval.batch_size, max(users, 1))
            )
        except Exception as e:
            out["score"] = None
            out["score_error"] = f"{type(e).__name__}: {e}"
    parts = ("valid", "test") if spec.input == "rows" else ("test",)  # sequences: one pass
    out["inference"] = costs.inference_seconds_per_1000(model_eval, model.score, fitted, parts)
    return out


def _saved_unit(path: Path, key: Mapping[str, Any]) -> dict[str, Any]:
    """The unit just saved at `path` with `key`, read back.

    Raises:
      DataError: it cannot be read back (the file system lost or changed it).
    """
    unit = store.load_unit(path, key)
    if unit is None:
        raise DataError(f"the audit unit just saved at {path} cannot be read back")
    return unit


def run_seed(
    ctx: _Context,
    sc: StudyConfig,
    best: Mapping[str, Any],
    seed: int,
    *,
    first: bool,
    keep_params: bool,
) -> dict[str, Any]:
    """Trains the chosen configuration with `seed`, evaluates valid and test, saves the unit.

    Returns:
      The unit record (see :mod:`diffrec_jax.audit.store`).
    """
    config = ctx.config
    spec = model_zoo.get(sc.model)
    hparams = chosen_hparams(sc, best)
    inputs = chosen_inputs(ctx, sc, hparams)
    run = fit(spec, hparams, inputs.data, seeds.key(seed, "fit"), overrides=sc.selection())
    fitted, fit_seconds, training = run.params, run.seconds, run.training
    t0 = time.perf_counter()
    results = inputs.evaluator.evaluate(
        spec.build(**hparams).score, fitted, parts=("valid", "test")
    )
    eval_seconds = time.perf_counter() - t0
    test = results["test"]
    record = {
        "model": sc.model,
        "seed": seed,
        "trial": best["index"],
        "params": best["params"],
        "hparams": dict(hparams),
        "fit_seconds": fit_seconds,
        "eval_seconds": eval_seconds,
        "training": without_history(training),
        "valid": results["valid"].summary,
        "test": test.summary,
        "n_test_users": test.n_users_evaluated,
        "per_user_metrics": list(config.metrics),
        "probe": None,
        "finished_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if first:
        record["probe"] = _probe(spec, hparams, inputs, fitted, ctx.split.n_items)
    per_user = np.stack([np.asarray(test.per_user[m], np.float64) for m in config.metrics])
    path = ctx.run_path(sc.model, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if keep_params:
        store.save_params(store.params_path(path), fitted)
    store.save_unit(
        path,
        _run_key(ctx, sc, best, seed, first),
        to_jsonable(record),
        {"per_user": per_user},
    )
    return _saved_unit(path, _run_key(ctx, sc, best, seed, first))


def _reruns(
    ctx: _Context, studies: Sequence[StudyConfig], tuned: Mapping[str, Mapping[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    config = ctx.config
    for sc in studies:
        best = tuned[sc.model]["best"]
        if best is None:
            continue
        keep = diag.is_diffusion(model_zoo.get(sc.model))
        runs[sc.model] = []
        for j, seed in enumerate(config.seeds):
            head = (
                f"step 2/{STEPS} {sc.model} seed {seed} ({j + 1}/{len(config.seeds)}, "
                f"trial {best['index'] + 1})"
            )
            path = ctx.run_path(sc.model, seed)
            key = _run_key(ctx, sc, best, seed, j == 0)
            record = store.load_unit(path, key)
            if record is not None and (not keep or j or store.params_path(path).is_file()):
                ctx.say(f"{head}: done before, skipped")
            else:
                ctx.say(f"{head}: training")
                try:
                    record = run_seed(
                        ctx, sc, best, seed, first=j == 0, keep_params=keep and j == 0
                    )
                except DiffrecError as e:
                    ctx.say(f"{head}: failed ({type(e).__name__}: {e}); seed left out")
                    continue
                sel = config.select_metric
                ctx.say(
                    f"{head}: fit {record['fit_seconds']:.1f}s, valid {sel} "
                    f"{record['valid'][sel]:.4f}, test {sel} {record['test'][sel]:.4f}"
                )
            runs[sc.model].append(record)
        if not runs[sc.model]:
            del runs[sc.model]
    return runs


# -- step 3 ---------------------------------------------------------------------------------------


def per_user_means(ctx: _Context, model: str, records: Sequence[Mapping[str, Any]]):
    """{metric: [n_users] mean over the seed runs of the per-user test values}."""
    arrays = [store.load_array(ctx.run_path(model, r["seed"]), "per_user") for r in records]
    mean = np.mean(np.stack(arrays), axis=0)
    names = records[0]["per_user_metrics"]
    return {m: mean[i] for i, m in enumerate(names)}


def _statistics(ctx: _Context, runs: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    config = ctx.config
    sel = config.select_metric
    summary = {e["model"]: e for e in summarize([r for v in runs.values() for r in v])}
    baselines = [m for m in config.baselines if m in summary]
    best = max(baselines, key=lambda m: summary[m]["test"][sel]["mean"]) if baselines else None
    out: dict[str, Any] = {"summary": summary, "best_baseline": best, "comparison": None}
    if config.target in runs and best is not None:
        ctx.say(f"step 3/{STEPS} statistics: {config.target} vs {best} (best baseline on {sel})")
        out["comparison"] = stats.compare(
            per_user_means(ctx, config.target, runs[config.target]),
            per_user_means(ctx, best, runs[best]),
            config.metrics,
            correction=config.correction,
            alpha=config.alpha,
        )
        out["comparison"].update(a=config.target, b=best, seeds=list(config.seeds))
    out["verdicts"] = {}
    if config.target in runs:
        for metric, value in config.reported.items():
            values = [r["test"][metric] for r in runs[config.target]]
            out["verdicts"][metric] = stats.verdict(value, values, stable_cv=config.stable_cv)
    return out


# -- step 4 ---------------------------------------------------------------------------------------


def _costs(ctx, tuned, runs, assumptions: costs.Assumptions) -> dict[str, Any]:
    ctx.say(f"step 4/{STEPS} cost (assumptions: {assumptions.text()})")
    out = {}
    for model, records in runs.items():
        epochs = [r["training"]["epochs"] for r in records if r.get("training")]
        out[model] = costs.summarize_cost(
            tuning_seconds=tuned[model].get("tuning_seconds"),
            fit_seconds=[r["fit_seconds"] for r in records],
            probe=records[0].get("probe"),
            epochs=epochs or None,
            assumptions=assumptions,
        )
    return out


# -- step 5 ---------------------------------------------------------------------------------------


def _params_template(spec, hparams: Mapping[str, Any], data: Any, n_items: int):
    """The shapes of the scoring parameters a fit of `spec` returns (to read them back)."""
    plan = spec.train_plan(hparams, data)
    trainable = plan.trainable

    def init(key):
        return exported(trainable, trainable.init(key, n_items)[0])

    return jax.eval_shape(init, jax.random.key(0))


def _diagnostics(
    ctx: _Context, studies: Sequence[StudyConfig], tuned, runs
) -> dict[str, dict[str, Any]]:
    config = ctx.config
    out = {}
    k = max(config.ks)
    for sc in studies:
        spec = model_zoo.get(sc.model)
        if sc.model not in runs or not diag.is_diffusion(spec):
            continue
        first = runs[sc.model][0]
        if first["seed"] != config.seeds[0]:
            ctx.say(f"step 5/{STEPS} {sc.model}: its first seed's run failed; no diagnostics")
            continue
        best = tuned[sc.model]["best"]
        hparams = first["hparams"]
        inputs = chosen_inputs(ctx, sc, chosen_hparams(sc, best))
        run_path = ctx.run_path(sc.model, first["seed"])
        template = _params_template(spec, chosen_hparams(sc, best), inputs.data, ctx.split.n_items)
        params = store.load_params(store.params_path(run_path), template)
        level = diag.noise_level(hparams)
        ctx.say(
            f"step 5/{STEPS} diagnostics of {sc.model}: noise after T={level['steps']} steps "
            f"sqrt(1 - alpha_bar_T) = {level['noise_T']:.4g}; "
            f"{level['denoiser_calls']} denoiser calls per user"
        )
        entries = []
        for v in diag.variants(hparams, config.diag_step_fractions):
            sampling_seeds = range(config.diag_sampling_seeds) if v["stochastic"] else [None]
            units: list[tuple[Path, dict[str, Any]]] = []
            for s in sampling_seeds:
                overrides = dict(v["overrides"])
                if s is not None:
                    overrides["sampling_seed"] = s
                tag = f"{v['name']}__s{'-' if s is None else s}"
                path = ctx.out / "diagnostics" / sc.model / f"{tag}.json"
                key = {  # redone when the run whose parameters it uses was redone
                    "run": first["key"],
                    "run_finished": first["finished_utc"],
                    "overrides": overrides,
                    "ks": list(config.ks),
                }
                unit = store.load_unit(path, key)
                head = f"  {sc.model} {v['label']}" + ("" if s is None else f", sampling seed {s}")
                if unit is not None:
                    ctx.say(f"{head}: done before, skipped")
                else:
                    model = spec.build(**chosen_hparams(sc, best, **overrides))
                    model_eval = chosen_inputs(ctx, sc, model.hparams).evaluator
                    t0 = time.perf_counter()
                    res = model_eval.evaluate(model.score, params, parts=("test",))["test"]
                    seconds = time.perf_counter() - t0
                    record = {"summary": res.summary, "seconds": seconds, "score": None}
                    if not units:  # the variant's cost, once
                        users = int(model_eval.users_to_score(("test",)).size)
                        try:
                            record["score"] = costs.score_cost(
                                model,
                                params,
                                ctx.split.n_items,
                                min(model_eval.batch_size, max(users, 1)),
                                compiled=False,  # the count only: no compilation
                            )
                        except Exception as e:
                            record["score_error"] = f"{type(e).__name__}: {e}"
                    store.save_unit(path, key, to_jsonable(record), {"top_items": res.top_items})
                    unit = _saved_unit(path, key)
                    sel = config.select_metric
                    ctx.say(f"{head}: test {sel} {res.summary[sel]:.4f} ({seconds:.1f}s)")
                units.append((path, unit))
            entries.append((v, units))
        out[sc.model] = _summarize_diagnostics(config, hparams, level, entries, k)
    return out


def _summarize_diagnostics(config, hparams, level, entries, k: int) -> dict[str, Any]:
    tops = {v["name"]: [store.load_array(p, "top_items") for p, _ in units] for v, units in entries}
    configured = tops["configured"][0]
    rows = []
    for v, units in entries:
        metrics = {}
        for m in config.metrics:
            values = [u["summary"][m] for _, u in units]
            mean, std = stats.mean_std(values)
            metrics[m] = {"mean": mean, "std": std}
        score = units[0][1].get("score") or {}
        rows.append(
            {
                **v,
                "sampling_seeds": len(units),
                "metrics": metrics,
                "jaccard_between_seeds": diag.mean_jaccard(tops[v["name"]], k)
                if v["stochastic"]
                else None,
                "jaccard_vs_configured": float(
                    np.nanmean(diag.jaccard(tops[v["name"]][0], configured, k))
                ),
                "score_flops_per_1000_users": score.get("flops_per_1000_users"),
                "seconds": float(np.mean([u["seconds"] for _, u in units])),
            }
        )
    return {"noise": level, "k": k, "variants": rows, "hparams": hparams}


# -- the pipeline ---------------------------------------------------------------------------------


def run_audit(
    config: AuditConfig,
    *,
    progress: Callable[[str], None] = print,
    command: str | None = None,
) -> tuple[dict[str, Any], Path]:
    """Runs (or resumes) the audit and writes its report folder.

    Args:
      config: the audit.
      progress: called with one line per step and per finished unit.
      command: the command line that ran the audit (printed in the report).

    Returns:
      (results, path of the report folder ``report-<name>``). The results are also written
      there, to ``results.json``. Audits of several models on one dataset may share an output
      directory: models with the same study settings reuse each other's studies and runs.
    """
    config = config.check()
    say = _Say(progress)
    out = ensure_writable_dir(config.output_dir)
    studies = audit_studies(config)
    assumptions = costs.Assumptions(config.power_watts, config.grid_g_per_kwh)

    t0 = time.perf_counter()
    dataset = load_dataset(config.dataset, seed=config.data_seed, **dict(config.dataset_options))
    split = dataset.split
    fit_data = FitData(split.train, split.valid)
    data_id = {
        "spec": config.dataset,
        "options": dict(config.dataset_options),
        "data_seed": config.data_seed,
    }
    data_fp = f"{fingerprint(fit_data)}-{fingerprint(FitData(split.test, None))}"
    ctx = _Context(
        config=config,
        out=out,
        split=split,
        fit_data=fit_data,
        extras=dataset.extras,
        data_id=data_id,
        data_fingerprint=data_fp,
        say=say,
    )
    say(
        f"audit {config.name!r}: {config.target} vs {', '.join(config.baselines)} on "
        f"{split.name} ({split.n_users} users, {split.n_items} items; loaded in "
        f"{time.perf_counter() - t0:.1f}s); budget {config.budget} {config.method} trials per "
        f"model, {len(config.seeds)} seeds; output {out}"
    )

    tuned = _tune(ctx, studies)
    runs = _reruns(ctx, studies, tuned)
    if not runs:
        raise ConfigError("no model has a finished run; see the study files for the errors")
    statistics = _statistics(ctx, runs)
    cost = _costs(ctx, tuned, runs, assumptions)
    diagnostics = _diagnostics(ctx, studies, tuned, runs)

    results = {
        "format": "diffrec_jax.audit/1",
        "config": to_jsonable(dataclasses.asdict(config)),
        "command": command,
        "dataset": dataset_record(config.dataset, dataset),
        "evaluation": {
            "ks": list(config.ks),
            "convention": config.convention,
            "select_metric": config.select_metric,
            "protocol": "tuning: fit on train, select on valid (test is not an input); "
            "re-runs: the chosen configuration trained on train with each seed (early "
            "stopping on valid), "
            + (
                "test: leave-one-out, history seq[:-1] in, the last item the target, history "
                "items not excluded; full ranking"
                if model_zoo.get(config.target).input == "sequences"
                else "test: train rows in, train+valid masked; full ranking"
            ),
        },
        "tuning": {
            sc.model: {
                "study_file": str(study_path(out, split.name, sc)),
                "space": tuned[sc.model]["settings"]["space"],
                "fixed": tuned[sc.model]["settings"]["fixed"],
                "n_trials": len(tuned[sc.model]["trials"][: sc.n_trials]),
                "n_failed": sum(
                    t["state"] == "failed" for t in tuned[sc.model]["trials"][: sc.n_trials]
                ),
                "tuning_seconds": tuned[sc.model]["tuning_seconds"],
                "best": tuned[sc.model]["best"],
                "first_error": next(
                    (t["error"] for t in tuned[sc.model]["trials"] if t.get("error")), None
                ),
                "reruns": len(runs.get(sc.model, [])),
            }
            for sc in studies
        },
        "runs": {
            m: [{k: v for k, v in r.items() if k not in ("format", "key")} for r in recs]
            for m, recs in runs.items()
        },
        "statistics": statistics,
        "cost": cost,
        "assumptions": {**dataclasses.asdict(assumptions), "text": assumptions.text()},
        "diagnostics": diagnostics,
        "environment": environment(),
    }
    results = to_jsonable(results)
    say(f"step 6/{STEPS} report")
    report_dir = reports.write_report(results, out / f"report-{_safe(config.name)}")
    say(f"report written to {report_dir / 'report.md'}")
    return results, report_dir


__all__ = ["STEPS", "audit_studies", "run_audit", "run_seed", "side_data", "study_path"]
