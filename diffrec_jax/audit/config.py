"""What an audit runs: :class:`AuditConfig`, loaded from a Python file (configs as code).

An audit configuration file defines ``get_config() -> AuditConfig`` (see
``experiments/configs/audit_*.py``). :func:`scaled` applies the command line's budget, seeds
and epoch cap to it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from diffrec_jax import models as model_zoo
from diffrec_jax.audit.stats import CORRECTIONS
from diffrec_jax.errors import ConfigError
from diffrec_jax.experiment import configs
from diffrec_jax.metrics import metric_names
from diffrec_jax.seeds import check_seed
from diffrec_jax.tuning import space as spaces


@dataclasses.dataclass(frozen=True)
class AuditConfig:
    """One audit: a dataset, a diffusion model and its claim, the baselines, the budget.

    Attributes:
      name: the audit's name (report title and file names).
      dataset, dataset_options, data_seed: as in :class:`diffrec_jax.experiment.RunConfig`.
      target: the audited model (registry name; diffusion diagnostics run when it is a
        DiffRec-family model).
      baselines: the registry names it is compared with.
      reported: the target's published numbers, ``{"Recall@20": 0.1787, ...}`` (test metrics
        at this configuration's ks and convention); empty when there is no claim.
      reported_source: where the reported numbers come from (printed in the report).
      spaces: ``{model: {name: spec}}`` search-space entries replacing or adding to the model's
        default space (:data:`diffrec_jax.models.search_spaces.SEARCH_SPACES`); required for
        models without one (the diffusion models).
      fixed: ``{model: {name: value}}`` hyperparameters held fixed (removed from the space).
      budget: trials per model (the same for every model).
      method: "random" or "tpe" (the same for every model).
      tuning_seed: seed of every model's study (sampler and trial keys).
      seeds: training seeds of the re-runs of every model's chosen configuration.
      select_metric: validation metric the tuning maximises; also ranks the baselines.
      ks, convention: metric cutoffs and convention.
      metrics: test metrics of the tables, tests and plots (per-user values are kept for
        these).
      correction: "holm" or "bonferroni" over `metrics` (per test kind).
      alpha: significance level.
      stable_cv: re-runs are stable when std / mean is below this.
      max_epochs: caps max_epochs (and eval_every) of every gradient-trained model, or None.
      diag_step_fractions: fractions of T of the diagnostics' ``steps_k`` variants.
      diag_sampling_seeds: sampling seeds per stochastic diagnostic variant (Jaccard overlap).
      power_watts, grid_g_per_kwh: the energy and CO2 assumptions.
      output_dir: where everything is written (studies, runs, diagnostics, report).
    """

    name: str = "audit"
    dataset: str = "synthetic-small"
    dataset_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    data_seed: int = 0
    target: str = "diffrec"
    baselines: tuple[str, ...] = ("toppop", "ease")
    reported: Mapping[str, float] = dataclasses.field(default_factory=dict)
    reported_source: str = ""
    spaces: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    fixed: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    budget: int = 20
    method: str = "random"
    tuning_seed: int = 0
    seeds: tuple[int, ...] = (1, 2, 3, 4, 5)
    select_metric: str = "Recall@20"
    ks: tuple[int, ...] = (10, 20)
    convention: str = "recbole"
    metrics: tuple[str, ...] = ("Recall@10", "Recall@20", "NDCG@10", "NDCG@20")
    correction: str = "holm"
    alpha: float = 0.05
    stable_cv: float = 0.05
    max_epochs: int | None = None
    diag_step_fractions: tuple[float, ...] = (0.25, 0.5, 1.0)
    diag_sampling_seeds: int = 3
    power_watts: float = 65.0
    grid_g_per_kwh: float = 475.0
    output_dir: str = "results/audit"

    @property
    def models(self) -> tuple[str, ...]:
        """The target, then the baselines."""
        return (self.target, *self.baselines)

    def check(self) -> AuditConfig:
        """Validates the configuration (nothing is loaded); returns it.

        Raises:
          ConfigError: naming the field and what was expected.
        """
        if not self.baselines:
            raise ConfigError("baselines is empty; expected at least one baseline model")
        check_seed(self.data_seed, "data_seed")
        check_seed(self.tuning_seed, "tuning_seed")
        if not self.seeds:
            raise ConfigError("seeds is empty; expected at least one training seed")
        for seed in self.seeds:
            check_seed(seed, "seeds")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds={list(self.seeds)} repeat a seed; expected distinct ones")
        if len(set(self.models)) != len(self.models):
            raise ConfigError(f"models {list(self.models)} repeat a name; expected distinct ones")
        kinds = {n: model_zoo.get(n).input == "sequences" for n in self.models}
        if len(set(kinds.values())) > 1:
            seq = sorted(n for n, s in kinds.items() if s)
            raise ConfigError(
                f"models {seq} are sequential and {sorted(set(kinds) - set(seq))} are not; an "
                "audit compares models under one protocol (leave-one-out sequences or rows)"
            )
        unknown = sorted((set(self.spaces) | set(self.fixed)) - set(self.models))
        if unknown:
            raise ConfigError(f"spaces/fixed given for {unknown}, which are not audited")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds={self.seeds!r}; expected distinct seeds, at least one")
        for s in self.seeds:
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                raise ConfigError(f"seeds={self.seeds!r}; expected integers >= 0")
        if self.method not in spaces.METHODS:
            raise ConfigError(f"method={self.method!r}; expected one of {spaces.METHODS}")
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1:
            raise ConfigError(f"budget={self.budget!r}; expected a positive integer")
        names = metric_names(self.ks)
        for metric in (self.select_metric, *self.metrics, *self.reported):
            if metric not in names:
                raise ConfigError(f"metric {metric!r}; expected one of {names}")
        if not self.metrics:
            raise ConfigError("metrics is empty; expected at least one test metric")
        if self.correction not in CORRECTIONS:
            raise ConfigError(f"correction={self.correction!r}; expected one of {CORRECTIONS}")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha={self.alpha!r}; expected a level in (0, 1)")
        if not self.stable_cv > 0:
            raise ConfigError(f"stable_cv={self.stable_cv!r}; expected a positive threshold")
        if self.max_epochs is not None and (
            isinstance(self.max_epochs, bool)
            or not isinstance(self.max_epochs, int)
            or self.max_epochs < 1
        ):
            raise ConfigError(f"max_epochs={self.max_epochs!r}; expected a positive integer")
        if self.diag_sampling_seeds < 1:
            raise ConfigError(
                f"diag_sampling_seeds={self.diag_sampling_seeds!r}; expected at least 1"
            )
        for f in self.diag_step_fractions:
            if not 0 < f <= 1:
                raise ConfigError(f"diag_step_fractions has {f!r}; expected values in (0, 1]")
        return self

    def fixed_with_cap(self) -> dict[str, dict[str, Any]]:
        """`fixed`, plus every epoch-counting hyperparameter (``ModelSpec.epoch_hparams``:
        max_epochs, and e.g. ADRec's pretrain_epochs and freeze_epochs) = min(value, cap) and
        eval_every <= cap, for every gradient-trained model when `max_epochs` caps epochs."""
        out = {m: dict(self.fixed.get(m, {})) for m in self.models}
        if self.max_epochs is None:
            return {m: v for m, v in out.items() if v}
        for m in self.models:
            spec = model_zoo.get(m)
            defaults = spec.defaults
            if not spec.epoch_hparams:
                continue
            for name in spec.epoch_hparams:
                current = out[m].get(name, defaults[name])
                out[m][name] = min(int(current), self.max_epochs)
            if "eval_every" in defaults and "max_epochs" in out[m]:
                every = out[m].get("eval_every", defaults["eval_every"])
                out[m]["eval_every"] = min(int(every), out[m]["max_epochs"])
        return {m: v for m, v in out.items() if v}


def scaled(
    config: AuditConfig,
    *,
    budget: int | None = None,
    seeds: int | None = None,
    max_epochs: int | None = None,
    method: str | None = None,
    power_watts: float | None = None,
    grid_g_per_kwh: float | None = None,
    output_dir: str | None = None,
    smoke: bool = False,
    fixed: Mapping[str, Mapping[str, Any]] | None = None,
) -> AuditConfig:
    """`config` with the command line's overrides (None keeps the config's value).

    Args:
      budget: trials per model.
      seeds: number of training seeds S (the seeds become 1..S).
      max_epochs: cap on every gradient-trained model's epochs.
      method, power_watts, grid_g_per_kwh, output_dir: replace the config's.
      smoke: a minutes-long version: budget 2, 2 seeds, at most 2 epochs and 2 sampling
        seeds, unless given explicitly.
      fixed: ``{model: {name: value}}`` hyperparameters held fixed in addition to (and
        replacing) the config's, e.g. a larger batch for a slow baseline in a scaled-down audit.
    """
    changes: dict[str, Any] = {}
    if smoke:
        changes.update(budget=2, seeds=(1, 2), max_epochs=2, diag_sampling_seeds=2)
    if budget is not None:
        changes["budget"] = budget
    if seeds is not None:
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ConfigError(f"--seeds={seeds!r}; expected a positive number of seeds")
        changes["seeds"] = tuple(range(1, seeds + 1))
    if max_epochs is not None:
        changes["max_epochs"] = max_epochs
    if fixed:
        merged = {m: dict(v) for m, v in config.fixed.items()}
        for model, values in fixed.items():
            merged.setdefault(model, {}).update(values)
        changes["fixed"] = merged
    for name, value in (
        ("method", method),
        ("power_watts", power_watts),
        ("grid_g_per_kwh", grid_g_per_kwh),
        ("output_dir", output_dir),
    ):
        if value is not None:
            changes[name] = value
    return dataclasses.replace(config, **changes).check()


def load_config(path: str | Path) -> AuditConfig:
    """Loads an audit configuration: a Python file whose ``get_config()`` returns an
    AuditConfig (checked).

    Raises:
      ConfigError: the file is missing, fails, or returns something else.
    """
    return configs.load_config(path, AuditConfig).check()


__all__ = ["AuditConfig", "load_config", "scaled"]
