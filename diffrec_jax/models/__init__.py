"""Layer 6, the zoo: every model's registry entry, and the one way to build and fit it.

A registry entry (:class:`ModelSpec`) declares once everything a caller needs to know about a
model: its kind (closed form, trained by the shared loop, or trained in stages), its input
(interaction rows or sequences), the side data its fit needs, its defaults and search space, and
how to build its :class:`~diffrec_jax.protocol.Trainable` from the data. Nobody branches on a
model's name or guesses its kind from its hyperparameters::

    from diffrec_jax import models
    spec = models.get("diffrec")
    model = spec.build(steps=10)               # a Recommender(name, hparams, fit, score)
    params, record = spec.fit_with_record(model.hparams, FitData(train, valid), key)

Register your own model (defined anywhere) with :func:`register`; it then runs through
``run``, ``tune`` and ``audit`` like the built-in ones.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax

from diffrec_jax.data.split import Split
from diffrec_jax.errors import ConfigError
from diffrec_jax.models import (
    adrec,
    bprmf,
    diffrec,
    diffurec,
    dreamrec,
    gru4rec,
    ldiffrec,
    lightgcn,
    multvae,
    sasrec,
    tdiffrec,
)
from diffrec_jax.models.ease import ease
from diffrec_jax.models.gfcf import gfcf
from diffrec_jax.models.graph import p3alpha, rp3beta
from diffrec_jax.models.ials import ials
from diffrec_jax.models.knn import KNN_DEFAULTS, itemknn, userknn
from diffrec_jax.models.search_spaces import SEARCH_SPACES
from diffrec_jax.models.slim import slim
from diffrec_jax.models.svd import puresvd
from diffrec_jax.models.toppop import toppop
from diffrec_jax.protocol import (
    FitData,
    Params,
    Recommender,
    SeqFitData,
    Trainable,
)
from diffrec_jax.train import (
    ROW_TRAIN_HPARAMS,
    SEQ_TRAIN_HPARAMS,
    TrainPlan,
    fit_plan,
    row_train_config,
    seq_plan,
    seq_train_config,
)

KINDS = ("closed_form", "trained", "staged")
"""closed_form: ``fit`` computes the parameters directly; trained: one run of the shared training
loop on the entry's :class:`~diffrec_jax.train.TrainPlan`; staged: several runs (ADRec)."""

INPUTS = ("rows", "sequences")
"""rows: :class:`~diffrec_jax.protocol.FitData` and ``UserBatch``; sequences:
:class:`~diffrec_jax.protocol.SeqFitData` and ``SeqBatch`` (hyperparameters hold ``max_len``)."""

DIFFUSION_FAMILIES = ("gaussian",)
"""Diffusion families the audit's diagnostics know: "gaussian" is DiffRec's Gaussian diffusion
on user rows (or latents), scored with the hyperparameters steps, noise_schedule, noise_scale,
noise_min, noise_max, sampling_steps, sampling_noise, reverse and sampling_seed."""

ScoreFn = Callable[[Params, Any], jax.Array]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registry entry: what a model is and how to build and fit it.

    Attributes:
      name: registry name.
      defaults: default value of every hyperparameter (also their types for flag parsing).
      description: one line for listings.
      kind: one of :data:`KINDS`.
      input: one of :data:`INPUTS`.
      space: the default search space of tuning (format of :mod:`diffrec_jax.tuning.space`),
        or None when the model has none (tuning then needs one given).
      side_data: names of the side data `fit` needs in ``data.side`` (e.g. ``("item_emb",)``),
        filled by the experiment from the dataset's extras.
      make: closed form: ``make(**hparams) -> Recommender``.
      trainable: trained, when the Trainable does not depend on the data: a factory called
        with the hyperparameters it takes as keyword arguments (the others are the training
        ones: :data:`~diffrec_jax.train.ROW_TRAIN_HPARAMS` or
        :data:`~diffrec_jax.train.SEQ_TRAIN_HPARAMS`).
      plan: trained, when the Trainable depends on the data: ``plan(hparams, data) ->
        TrainPlan`` (BPR-MF and LightGCN size their tables by the users, L-DiffRec clusters
        the side data's item embeddings).
      score: trained with `plan`, and staged: ``score(hparams) -> score function`` of the
        scoring parameters that fit returns.
      fit_stages: staged: ``fit_stages(hparams, data, key, overrides) -> (params, record)``,
        where `overrides` replace fields of every stage's TrainConfig.
      check: ``check(hparams)`` raising ConfigError on an invalid value, called by
        :meth:`build` (a `trainable` factory is called instead).
      examples: sequences: the training examples, "sequence" or "prefix"
        (:mod:`diffrec_jax.protocol.sequences`).
      prepare: ``prepare(split, hparams) -> split``, a data transform the model is defined with
        (T-DiffRec's time weights); whoever fits and evaluates the model applies it first. It
        must keep the shape and pattern of every matrix.
      epoch_hparams: the hyperparameters that count epochs (capped by scaled-down audits).
      diffusion: the family of diffusion diagnostics that applies (:data:`DIFFUSION_FAMILIES`),
        or None.
    """

    name: str
    defaults: Mapping[str, Any]
    description: str = ""
    kind: str = "closed_form"
    input: str = "rows"
    space: Mapping[str, Any] | None = None
    side_data: tuple[str, ...] = ()
    make: Callable[..., Recommender] | None = None
    trainable: Callable[..., Trainable] | None = None
    plan: Callable[[Mapping[str, Any], Any], TrainPlan] | None = None
    score: Callable[[Mapping[str, Any]], ScoreFn] | None = None
    fit_stages: Callable[..., tuple[Params, dict[str, Any]]] | None = None
    check: Callable[[Mapping[str, Any]], None] | None = None
    examples: str = "sequence"
    prepare: Callable[[Split, Mapping[str, Any]], Split] | None = None
    epoch_hparams: tuple[str, ...] | None = None
    diffusion: str | None = None

    def __post_init__(self) -> None:
        where = f"model spec {self.name!r}"
        if self.kind not in KINDS:
            raise ConfigError(f"{where}: kind={self.kind!r}; expected one of {KINDS}")
        if self.input not in INPUTS:
            raise ConfigError(f"{where}: input={self.input!r}; expected one of {INPUTS}")
        needs = {
            "closed_form": ("make",),
            "trained": ("trainable",) if self.plan is None else ("plan", "score"),
            "staged": ("fit_stages", "score"),
        }[self.kind]
        missing = [f for f in needs if getattr(self, f) is None]
        if missing:
            raise ConfigError(f"{where}: kind {self.kind!r} needs {missing}")
        if self.trainable is not None and self.plan is not None:
            raise ConfigError(f"{where}: give trainable or plan, not both")
        train_names = SEQ_TRAIN_HPARAMS if self.input == "sequences" else ROW_TRAIN_HPARAMS
        if self.kind == "trained":
            absent = [n for n in train_names if n not in self.defaults]
            if absent:
                raise ConfigError(f"{where}: defaults lack the training hyperparameters {absent}")
        if self.input == "sequences" and "max_len" not in self.defaults:
            raise ConfigError(f"{where}: a sequential model's defaults must hold max_len")
        if self.diffusion is not None and self.diffusion not in DIFFUSION_FAMILIES:
            raise ConfigError(
                f"{where}: diffusion={self.diffusion!r}; expected None or one of "
                f"{DIFFUSION_FAMILIES}"
            )
        if self.epoch_hparams is None:
            epochs = ("max_epochs",) if self.kind != "closed_form" else ()
            object.__setattr__(self, "epoch_hparams", epochs)
        object.__setattr__(self, "side_data", tuple(self.side_data))
        object.__setattr__(self, "defaults", dict(self.defaults))

    @property
    def closed_form(self) -> bool:
        """Whether `fit` computes the parameters directly (the same hyperparameters and data
        always give the same fit, whatever the key)."""
        return self.kind == "closed_form"

    def hparams(self, **overrides: Any) -> dict[str, Any]:
        """The defaults updated by `overrides`, validated (unknown names raise ConfigError)."""
        unknown = sorted(set(overrides) - set(self.defaults))
        if unknown:
            raise ConfigError(
                f"model {self.name!r} has no hyperparameter(s) {unknown}; "
                f"expected some of {sorted(self.defaults)}"
            )
        values = {**self.defaults, **overrides}
        if self.kind == "trained":  # the training hyperparameters, as the loop will read them
            (seq_train_config if self.input == "sequences" else row_train_config)(values)
        if self.check is not None:
            self.check(values)
        return values

    def build(self, **overrides: Any) -> Recommender:
        """The :class:`~diffrec_jax.protocol.Recommender` with the defaults updated by
        `overrides`; its ``fit`` is :meth:`fit_with_record`'s params."""
        values = self.hparams(**overrides)
        if self.kind == "closed_form":
            assert self.make is not None
            return self.make(**values)
        if self.trainable is not None:
            score = self._trainable(values).score  # also validates the hyperparameters
        else:
            assert self.score is not None
            score = self.score(values)

        def fit(data: Any, key: jax.Array) -> Params:
            return self.fit_with_record(values, data, key)[0]

        return Recommender(self.name, values, fit, score)

    def train_plan(self, hparams: Mapping[str, Any], data: Any) -> TrainPlan | None:
        """The :class:`~diffrec_jax.train.TrainPlan` of a trained model on `data`, else None."""
        if self.kind != "trained":
            return None
        self.check_data(data)
        if self.plan is not None:
            return self.plan(hparams, data)
        trainable = self._trainable(hparams)
        if self.input == "sequences":
            return seq_plan(
                trainable,
                seq_train_config(hparams),
                data,
                max_len=int(hparams["max_len"]),
                examples=self.examples,
            )
        return TrainPlan(trainable, row_train_config(hparams))

    def fit_with_record(
        self,
        hparams: Mapping[str, Any],
        data: Any,
        key: jax.Array,
        overrides: Mapping[str, Any] | None = None,
    ) -> tuple[Params, dict[str, Any] | None]:
        """Fits the model with `hparams` (all of them, e.g. ``Recommender.hparams``) on `data`.

        Args:
          hparams: the hyperparameters.
          data: :class:`~diffrec_jax.protocol.FitData` or ``SeqFitData`` (per `input`), with
            the side data the entry names.
          key: the fit's typed key (``diffrec_jax.seeds.key(seed, "fit")``).
          overrides: fields of the training loop's ``TrainConfig`` to replace (the selection
            metric, cutoffs and convention of a study, a refit's epoch count); ignored by
            closed-form models.

        Returns:
          (scoring params, training record or None for a closed-form model).
        """
        if self.kind == "closed_form":
            self.check_data(data)
            assert self.make is not None
            return self.make(**hparams).fit(data, key), None
        if self.kind == "staged":
            self.check_data(data)
            assert self.fit_stages is not None
            return self.fit_stages(hparams, data, key, dict(overrides or {}))
        plan = self.train_plan(hparams, data)
        assert plan is not None
        return fit_plan(plan, data, key, overrides)

    def check_data(self, data: Any) -> None:
        """Raises ConfigError unless `data` is of the entry's input and holds its side data."""
        expected = SeqFitData if self.input == "sequences" else FitData
        if not isinstance(data, expected):
            raise ConfigError(
                f"model {self.name!r} takes {expected.__name__}; got {type(data).__name__}"
            )
        missing = [name for name in self.side_data if data.side.get(name) is None]
        if missing:
            raise ConfigError(
                f"model {self.name!r} needs side data {missing} (e.g. a dataset with "
                "item_emb.npy); the data has none"
            )

    def _trainable(self, hparams: Mapping[str, Any]) -> Trainable:
        assert self.trainable is not None
        accepted = inspect.signature(self.trainable).parameters
        return self.trainable(**{k: v for k, v in hparams.items() if k in accepted})


REGISTRY: dict[str, ModelSpec] = {}
"""Every registered model by name (use :func:`get` and :func:`register`)."""


def register(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Adds `spec` to the zoo; it then runs through run, tune and audit like a built-in model.

    Raises:
      ConfigError: a model of that name is registered and `replace` is False.
    """
    if not isinstance(spec, ModelSpec):
        raise ConfigError(f"register() takes a ModelSpec, got {type(spec).__name__}")
    if spec.name in REGISTRY and not replace:
        raise ConfigError(
            f"model {spec.name!r} is already registered; pass replace=True to replace it"
        )
    REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Removes a registered model (for tests and notebooks that register their own)."""
    REGISTRY.pop(name, None)


def available() -> list[str]:
    """Names of every registered model."""
    return sorted(REGISTRY)


def get(name: str) -> ModelSpec:
    """The registry entry of model `name`.

    Raises:
      ConfigError: unknown name (the message lists the available models).
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; expected one of {available()}") from None


def _time_weighted(split: Split, hparams: Mapping[str, Any]) -> Split:
    return tdiffrec.time_weighted_split(
        split, hparams["w_min"], hparams["w_max"], order=hparams["time_order"]
    )


def _closed(name: str, make: Callable[..., Recommender], defaults, description: str) -> ModelSpec:
    return ModelSpec(name, defaults, description, make=make, space=SEARCH_SPACES[name])


for _spec in (
    _closed("toppop", toppop, {}, "most popular items in train"),
    _closed("ease", ease, {"lam": 500.0}, "EASE closed-form item-item model"),
    _closed(
        "itemknn",
        itemknn,
        KNN_DEFAULTS,
        "ItemKNN: top-k item-item similarity (cosine, asymmetric, jaccard, dice, tversky)",
    ),
    _closed(
        "userknn", userknn, KNN_DEFAULTS, "UserKNN: weighted sum of the top-k most similar users"
    ),
    _closed(
        "p3alpha",
        p3alpha,
        {"topk": 100, "alpha": 1.0, "normalize": False},
        "P3alpha: item-user-item random-walk probabilities raised to alpha",
    ),
    _closed(
        "rp3beta",
        rp3beta,
        {"topk": 100, "alpha": 1.0, "beta": 0.6, "normalize": True},
        "RP3beta: P3alpha divided by target popularity^beta",
    ),
    _closed(
        "slim",
        slim,
        {"topk": 100, "alpha": 1e-2, "l1_ratio": 1e-2, "max_iter": 100, "tol": 1e-4},
        "SLIM ElasticNet: non-negative sparse item-item regression (coordinate descent)",
    ),
    _closed("puresvd", puresvd, {"factors": 50}, "PureSVD: projection on the top singular vectors"),
    _closed(
        "ials",
        ials,
        {
            "factors": 64,
            "reg": 1e-2,
            "alpha": 10.0,
            "iterations": 15,
            "confidence": "linear",
            "epsilon": 1.0,
            "solver": "cholesky",
            "cg_steps": 3,
            "init_scale": 0.01,
        },
        "iALS: implicit-feedback matrix factorisation by alternating least squares",
    ),
    _closed(
        "gfcf",
        gfcf,
        {"alpha": 0.3, "cutoff": 256},
        "GF-CF: linear plus ideal low-pass graph filters on the item-item graph",
    ),
    ModelSpec(
        "diffrec",
        diffrec.RECOMMENDER_DEFAULTS,
        "DiffRec: Gaussian diffusion on user rows, MLP denoiser",
        kind="trained",
        trainable=diffrec.diffrec,
        space=SEARCH_SPACES["diffrec"],
        diffusion="gaussian",
    ),
    ModelSpec(
        "tdiffrec",
        tdiffrec.RECOMMENDER_DEFAULTS,
        "T-DiffRec: DiffRec on time-weighted train rows",
        kind="trained",
        trainable=diffrec.diffrec,
        check=tdiffrec.check_time_hparams,
        prepare=_time_weighted,
        space=SEARCH_SPACES["tdiffrec"],
        diffusion="gaussian",
    ),
    ModelSpec(
        "ldiffrec",
        ldiffrec.RECOMMENDER_DEFAULTS,
        "L-DiffRec: DiffRec in the latent space of k-means item-group VAEs (needs item_emb)",
        kind="trained",
        plan=ldiffrec.plan,
        score=ldiffrec.score_from_hparams,
        check=ldiffrec.check_hparams,
        side_data=("item_emb",),
        space=SEARCH_SPACES["ldiffrec"],
        diffusion="gaussian",
    ),
    ModelSpec(
        "ltdiffrec",
        ldiffrec.LT_RECOMMENDER_DEFAULTS,
        "LT-DiffRec: L-DiffRec on time-weighted train rows (needs item_emb)",
        kind="trained",
        plan=ldiffrec.plan,
        score=ldiffrec.score_from_hparams,
        check=ldiffrec.check_lt_hparams,
        prepare=_time_weighted,
        side_data=("item_emb",),
        space=SEARCH_SPACES["ltdiffrec"],
        diffusion="gaussian",
    ),
    ModelSpec(
        "multvae",
        multvae.RECOMMENDER_DEFAULTS,
        "Mult-VAE: variational autoencoder with a multinomial likelihood",
        kind="trained",
        trainable=multvae.multvae,
        space=SEARCH_SPACES["multvae"],
    ),
    ModelSpec(
        "bprmf",
        bprmf.RECOMMENDER_DEFAULTS,
        "BPR-MF: matrix factorisation trained with the BPR pairwise loss",
        kind="trained",
        plan=bprmf.plan,
        score=lambda hparams: bprmf.embedding_score,
        check=bprmf.check_hparams,
        space=SEARCH_SPACES["bprmf"],
    ),
    ModelSpec(
        "lightgcn",
        lightgcn.RECOMMENDER_DEFAULTS,
        "LightGCN: BPR-trained embeddings propagated on the user-item graph",
        kind="trained",
        plan=lightgcn.plan,
        score=lambda hparams: bprmf.embedding_score,
        check=lightgcn.check_hparams,
        space=SEARCH_SPACES["lightgcn"],
    ),
    ModelSpec(
        "sasrec",
        sasrec.SASREC_DEFAULTS,
        "SASRec: causal self-attention, BCE with one sampled negative (the paper's settings)",
        kind="trained",
        input="sequences",
        trainable=sasrec.sasrec,
        space=SEARCH_SPACES["sasrec"],
    ),
    ModelSpec(
        "sasrec+",
        sasrec.SASREC_PLUS_DEFAULTS,
        "SASRec+: SASRec with full-softmax cross entropy (ADRec's comparison settings)",
        kind="trained",
        input="sequences",
        trainable=sasrec.sasrec,
        space=SEARCH_SPACES["sasrec+"],
    ),
    ModelSpec(
        "gru4rec",
        gru4rec.GRU4REC_DEFAULTS,
        "GRU4Rec: GRU over the history, full-softmax cross entropy at every position",
        kind="trained",
        input="sequences",
        trainable=gru4rec.gru4rec,
        space=SEARCH_SPACES["gru4rec"],
    ),
    ModelSpec(
        "diffurec",
        diffurec.RECOMMENDER_DEFAULTS,
        "DiffuRec: diffusion on the target item embedding, Transformer approximator (sequential)",
        kind="trained",
        input="sequences",
        trainable=diffurec.diffurec,
        examples="prefix",
        space=SEARCH_SPACES["diffurec"],
    ),
    ModelSpec(
        "dreamrec",
        dreamrec.RECOMMENDER_DEFAULTS,
        "DreamRec: guided diffusion generating the next item embedding (sequential)",
        kind="trained",
        input="sequences",
        trainable=dreamrec.dreamrec,
        examples="prefix",
        space=SEARCH_SPACES["dreamrec"],
    ),
    ModelSpec(
        "adrec",
        adrec.RECOMMENDER_DEFAULTS,
        "ADRec: causal Transformer + token-level diffusion, 3 training stages (sequential)",
        kind="staged",
        input="sequences",
        fit_stages=adrec.fit_with_record,
        score=adrec.score_from_hparams,
        check=adrec.check_hparams,
        epoch_hparams=("pretrain_epochs", "freeze_epochs", "max_epochs"),
        space=SEARCH_SPACES["adrec"],
    ),
):
    register(_spec)

__all__ = [
    "DIFFUSION_FAMILIES",
    "INPUTS",
    "KINDS",
    "REGISTRY",
    "ModelSpec",
    "ScoreFn",
    "available",
    "ease",
    "get",
    "gfcf",
    "ials",
    "itemknn",
    "p3alpha",
    "puresvd",
    "register",
    "rp3beta",
    "slim",
    "toppop",
    "unregister",
    "userknn",
]
