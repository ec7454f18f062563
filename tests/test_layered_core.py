"""The defects the layered core fixed, one test each (each failed on the code at 6c99a9c).

- BPR-MF and LightGCN built their Trainable inside ``fit``, so callers took them for
  closed-form models: a study copied a repeated configuration's score, the study's selection
  metric never reached their early stopping (nor ADRec's), a train+valid refit ran the default
  ``max_epochs``, and the audit's cost probe branched on their names.
- A model's kind was guessed from its hyperparameter names (diffusion diagnostics, ADRec's
  epoch caps), and side data travelled as hyperparameters (k-means ran at build time).
- One seed gave three different fits in run, tune and audit; seeds aliased modulo 2**32.
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import numpy as np
import pytest

from diffrec_jax import models, seeds
from diffrec_jax.audit import AuditConfig, cost, diagnostics, run_audit
from diffrec_jax.data.datasets import load_dataset
from diffrec_jax.errors import ConfigError
from diffrec_jax.experiment import RunConfig, run
from diffrec_jax.models import ModelSpec, adrec, ldiffrec
from diffrec_jax.protocol import FitData, SeqFitData
from diffrec_jax.train import TrainPlan, row_train_config
from diffrec_jax.train import plan as train_plan
from diffrec_jax.tuning import StudyConfig, refit_and_test, run_study
from diffrec_jax.tuning.runner import tune_split

PAIRWISE = {"batch_size": 64, "max_epochs": 3, "eval_every": 1, "patience": None}
TINY_DIFFREC = {"lr": 1e-3, "dims": (16,), "emb_size": 4, "steps": 4, "noise_scale": 0.1,
                "noise_min": 0.01, "noise_max": 0.1, "batch_size": 64, "max_epochs": 2,
                "eval_every": 1}  # fmt: skip


@pytest.fixture(scope="module")
def split():
    return load_dataset("synthetic-small").split


@pytest.fixture(scope="module")
def data(split):
    return FitData(split.train, split.valid)


@pytest.fixture
def recorded_configs(monkeypatch):
    """The TrainConfig of every run of the shared loop (through a training plan or ADRec)."""
    configs = []

    def recording(real):
        def train(trainable, data, config, **kwargs):
            configs.append(config)
            return real(trainable, data, config, **kwargs)

        return train

    monkeypatch.setattr(train_plan, "train", recording(train_plan.train))
    monkeypatch.setattr(adrec, "train", recording(adrec.train))
    return configs


@pytest.mark.parametrize("name", ["bprmf", "lightgcn"])
def test_study_retrains_a_repeated_configuration_of_a_data_dependent_model(name, data):
    config = StudyConfig(
        name, {"factors": ("categorical", (8,))}, budget=2, fixed=dict(PAIRWISE, max_epochs=1)
    )
    study = run_study(data, config)
    assert [t["state"] for t in study["trials"]] == ["complete", "complete"]
    assert all(t["fit_seconds"] is not None for t in study["trials"])
    assert all(t["training"]["epochs"] == 1 for t in study["trials"])


def test_study_still_copies_a_repeated_closed_form_configuration(data):
    config = StudyConfig("ease", {"lam": ("categorical", (10.0,))}, budget=2)
    assert [t["state"] for t in run_study(data, config)["trials"]] == ["complete", "duplicate"]


@pytest.mark.parametrize("name", ["bprmf", "lightgcn"])
def test_the_study_metric_reaches_early_stopping(name, data, recorded_configs):
    config = StudyConfig(
        name,
        {"lr": ("float_log", 1e-3, 1e-2)},
        budget=1,
        fixed=dict(PAIRWISE, factors=8, max_epochs=1),
        select_metric="NDCG@10",
        ks=(5, 10),
        convention="diffrec",
    )
    study = run_study(data, config)
    assert [(c.select_metric, c.ks, c.convention) for c in recorded_configs] == [
        ("NDCG@10", (5, 10), "diffrec")
    ]
    assert set(study["trials"][0]["training"]["best_valid"]) >= {"NDCG@5", "NDCG@10"}


def test_the_study_metric_reaches_every_adrec_stage(recorded_configs):
    sequences = load_dataset("synthetic-sequences").extras["sequences"]
    tiny = {"d": 8, "n_heads": 2, "encoder_blocks": 1, "denoiser_blocks": 1, "steps": 4,
            "max_len": 10, "batch_size": 256, "pretrain_epochs": 1, "freeze_epochs": 1,
            "max_epochs": 1, "eval_every": 1, "pack_ratio": 0.0}  # fmt: skip
    config = StudyConfig("adrec", {}, fixed=tiny, select_metric="HitRate@10", ks=(10,))
    run_study(SeqFitData.from_split(sequences), config)
    assert [(c.select_metric, c.ks) for c in recorded_configs] == [("HitRate@10", (10,))] * 3


@pytest.mark.parametrize("name", ["bprmf", "lightgcn"])
def test_train_valid_refit_trains_for_the_chosen_trials_best_epoch(name, split, data):
    config = StudyConfig(
        name, {"lr": ("float_log", 1e-3, 1e-2)}, budget=1, fixed=dict(PAIRWISE, factors=8)
    )
    study = run_study(data, config)
    best_epoch = study["best"]["training"]["best_epoch"]
    assert 1 <= best_epoch <= 3
    final = refit_and_test(split, config, study, refit="train+valid")
    assert final["training"]["epochs"] == best_epoch  # not the default 1000
    assert final["training"]["best_epoch"] is None  # nothing to validate on


def _my_mf_plan(values, data):
    """A user's model whose Trainable depends on the data (BPR-MF under another name)."""
    trainable = models.bprmf.bprmf(int(data.train.n_users), factors=values["factors"])
    return TrainPlan(trainable, row_train_config(values))


def test_train_step_cost_reads_the_registry_entry_not_the_name(data):
    spec = ModelSpec(
        "my_mf",
        {"factors": 8, "batch_size": 64, "max_epochs": 1, "eval_every": 1, "patience": None},
        kind="trained",
        plan=_my_mf_plan,
        score=lambda hparams: models.bprmf.embedding_score,
    )
    for s in (spec, models.get("bprmf"), models.get("lightgcn")):
        hparams = s.hparams(factors=8, batch_size=64)
        step = cost.train_step_cost(s, hparams, data)
        assert step is not None and step["flops"] > 0 and step["batch_size"] == 64
    ease = models.get("ease")
    assert cost.train_step_cost(ease, ease.hparams(), data) is None


def test_diffusion_diagnostics_are_declared_not_guessed():
    diffrec = models.get("diffrec")
    assert diagnostics.is_diffusion(diffrec)
    # Same hyperparameter names, no declaration: not a diffusion model for the audit.
    assert not diagnostics.is_diffusion(dataclasses.replace(diffrec, diffusion=None))
    # A declaration without the family's hyperparameters is an error, not a silent skip.
    broken = ModelSpec("broken", {"lam": 1.0}, make=models.ease, diffusion="gaussian")
    with pytest.raises(ConfigError, match="sampling_steps"):
        diagnostics.is_diffusion(broken)


def test_epoch_caps_come_from_the_registry_entry(monkeypatch):
    spec = dataclasses.replace(
        models.get("multvae"),
        name="warm_multvae",
        defaults={**models.get("multvae").defaults, "warmup_epochs": 50},
        epoch_hparams=("warmup_epochs", "max_epochs"),
    )
    monkeypatch.setitem(models.REGISTRY, "warm_multvae", spec)
    config = AuditConfig(target="diffrec", baselines=("warm_multvae",), max_epochs=7)
    capped = config.fixed_with_cap()["warm_multvae"]
    assert capped["warmup_epochs"] == 7 and capped["max_epochs"] == 7
    assert models.get("adrec").epoch_hparams == ("pretrain_epochs", "freeze_epochs", "max_epochs")


def test_side_data_is_data_and_kmeans_runs_at_fit(monkeypatch, split):
    calls = []
    real = ldiffrec.item_groups

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ldiffrec, "item_groups", counting)
    spec = models.get("ldiffrec")
    assert "item_emb" not in spec.defaults and spec.side_data == ("item_emb",)
    tiny = {"latent_size": 8, "mlp_dims": (8,), "emb_size": 4, "steps": 4, "batch_size": 128,
            "max_epochs": 1, "eval_every": 1}  # fmt: skip
    model = spec.build(**tiny)
    assert calls == []  # building clusters nothing
    with pytest.raises(ConfigError, match="item_emb"):
        model.fit(FitData(split.train, split.valid), seeds.key(0, "fit"))
    emb = np.random.default_rng(0).normal(size=(split.n_items, 4)).astype(np.float32)
    params = model.fit(FitData(split.train, split.valid, {"item_emb": emb}), seeds.key(0, "fit"))
    assert calls == [1] and "groups" in params


def test_one_seed_gives_one_fit_from_run_tune_and_audit(tmp_path, split, data):
    seed = 3
    results, _ = run(
        RunConfig(
            models=("diffrec",),
            dataset="synthetic-small",
            seeds=(seed,),
            hparams={"diffrec": {k: [v] for k, v in TINY_DIFFREC.items()}},
            output_dir=str(tmp_path / "run"),
        ),
        progress=lambda line: None,
    )
    from_run = results["runs"][0]["valid"]["Recall@20"]
    # Everything in DiffRec's search space is fixed: one trial, the run's hyperparameters.
    study = run_study(data, StudyConfig("diffrec", {}, seed=seed, fixed=TINY_DIFFREC))
    assert study["trials"][0]["value"] == pytest.approx(from_run, rel=1e-6)
    audit, _ = run_audit(
        AuditConfig(
            name="seeds",
            target="diffrec",
            baselines=("toppop",),
            fixed={"diffrec": TINY_DIFFREC},
            budget=1,
            tuning_seed=seed,
            seeds=(seed,),
            diag_step_fractions=(1.0,),
            diag_sampling_seeds=1,
            output_dir=str(tmp_path / "audit"),
        ),
        progress=lambda line: None,
    )
    (rerun,) = audit["runs"]["diffrec"]
    assert rerun["valid"]["Recall@20"] == pytest.approx(from_run, rel=1e-6)


@pytest.mark.parametrize("bad", [-1, 2**32, 2**64, True, 1.5, "3"])
def test_seeds_are_checked(bad):
    with pytest.raises(ConfigError, match="non-negative integer below 2"):
        seeds.check_seed(bad, "--seeds")


def test_seeds_that_would_alias_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="2\\*\\*32"):
        run(RunConfig(seeds=(0, 2**32), output_dir=str(tmp_path)), progress=lambda line: None)
    with pytest.raises(ConfigError, match="2\\*\\*32"):
        StudyConfig("ease", seed=2**32)


def test_keys_differ_by_purpose_and_seed():
    data = {
        (s, p): tuple(np.asarray(jax.random.key_data(seeds.key(s, p))).ravel())
        for s in (0, 1)
        for p in seeds.PURPOSES
    }
    assert len(set(data.values())) == len(data)
    with pytest.raises(ConfigError, match="purpose"):
        seeds.key(0, "other")


def test_register_refuses_a_taken_name_and_a_spec_missing_its_functions():
    with pytest.raises(ConfigError, match="already registered"):
        models.register(models.get("ease"))
    with pytest.raises(ConfigError, match="needs"):
        ModelSpec("half", {"batch_size": 1}, kind="trained")
    with pytest.raises(ConfigError, match="kind"):
        ModelSpec("odd", {}, kind="magic", make=models.ease)


class SamplingKeysTest(chex.TestCase):
    """The per-user noise keys are the same compiled and not (chex variants)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_sampling_keys_jitted_and_not(self):
        users = np.array([0, 5, 5, 2**20], np.int32)
        keys = self.variant(seeds.sampling_keys, static_argnums=0)(7, users)
        data = np.asarray(jax.random.key_data(keys))
        base = seeds.key(7, "sampling")
        want = np.stack([jax.random.key_data(jax.random.fold_in(base, int(u))) for u in users])
        np.testing.assert_array_equal(data, want)
        np.testing.assert_array_equal(data[1], data[2])  # a user's stream ignores the batch


def test_tuning_hands_side_data_to_the_model(split):
    """L-DiffRec's item embeddings reach every trial and the refit (they did not reach tune)."""
    emb = np.random.default_rng(0).normal(size=(split.n_items, 4)).astype(np.float32)
    tiny = {"latent_size": 8, "mlp_dims": (8,), "emb_size": 4, "steps": 4, "batch_size": 128,
            "max_epochs": 1, "eval_every": 1}  # fmt: skip
    (entry,) = tune_split(
        split,
        [StudyConfig("ldiffrec", {}, fixed=tiny)],
        progress=lambda line: None,
        side={"item_emb": emb, "sequences": None},
    )
    assert entry["trials"][0]["state"] == "complete", entry["trials"][0]["error"]
    assert entry["refit"]["test"]["Recall@20"] > 0


@pytest.mark.parametrize(
    "name, bad", [("diffrec", {"batch_size": 0}), ("sasrec", {"select_metric": "Recall@50"})]
)
def test_training_hyperparameters_are_checked_when_the_model_is_built(name, bad):
    with pytest.raises(ConfigError):
        models.get(name).build(**bad)


@pytest.mark.parametrize(
    "field, value", [("tuning_seed", 2**64), ("seeds", (1, 2**32)), ("data_seed", -1)]
)
def test_audit_configs_check_their_seeds(field, value):
    with pytest.raises(ConfigError, match=field):
        AuditConfig(**{field: value}).check()


def test_register_get_and_unregister_a_user_model():
    spec = dataclasses.replace(models.get("ease"), name="my_ease")
    try:
        assert models.register(spec) is spec and models.get("my_ease") is spec
        assert "my_ease" in models.available()
        models.register(dataclasses.replace(spec, defaults={"lam": 7.0}), replace=True)
        assert models.get("my_ease").defaults == {"lam": 7.0}
    finally:
        models.unregister("my_ease")
    with pytest.raises(ConfigError, match="unknown model 'my_ease'"):
        models.get("my_ease")
