# ---
# jupyter:
#   accelerator: TPU
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: accelerator,kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Sequential recommendation: ADRec against SASRec+ on Amazon Beauty
#
# ADRec (Chen et al., KDD 2025) is a diffusion model for next-item prediction: a causal
# Transformer encodes the history and a second one denoises, with independent noise on every
# token. Its paper compares against "SASRec+", the SASRec architecture trained with
# full-softmax cross entropy instead of the original sampled BCE, which is a much stronger
# baseline. Both run here with the papers' settings and the same leave-one-out protocol: for
# every user the last item is the test target and the one before it the validation target;
# histories are the last 50 items; full ranking over all items; history items are **not**
# excluded from the ranking (as in the papers).
#
# **Colab:** Runtime > Change runtime type > TPU. The first cell installs the package under
# Colab only; set `DIFFREC_JAX_REPO` there to the repository's URL (it is a placeholder).
# `DIFFREC_JAX_NOTEBOOK_SMALL=1` runs a one-minute version on CPU (synthetic sequences, tiny
# models, 2 epochs): that is what CI runs.

# %%
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

# PLACEHOLDER: the git URL of the diffrec_jax repository (Colab clones and installs it).
DIFFREC_JAX_REPO = os.environ.get("DIFFREC_JAX_REPO", "https://github.com/OWNER/diffrec_jax.git")
if "google.colab" in sys.modules:
    REPO_DIR = Path("/content/diffrec_jax")
    if not REPO_DIR.exists():
        subprocess.run(["git", "clone", "-q", DIFFREC_JAX_REPO, str(REPO_DIR)], check=True)
    # On a TPU runtime, jax is upgraded together with its TPU runtime (libtpu).
    tpu = ["jax[tpu]"] if importlib.util.find_spec("libtpu") else []
    pip = [sys.executable, "-m", "pip", "install", "-q", str(REPO_DIR), *tpu]
    subprocess.run(pip, check=True)
else:  # a checkout: the repository is the folder holding experiments/ above this notebook
    REPO_DIR = next(
        (p for p in (Path.cwd(), *Path.cwd().parents) if (p / "experiments").is_dir()), Path.cwd()
    )

import jax

SMALL = os.environ.get("DIFFREC_JAX_NOTEBOOK_SMALL", "0") not in ("", "0")
print(f"jax {jax.__version__}: backend {jax.default_backend()}, {jax.device_count()} device(s)")
print("small (CI) sizes" if SMALL else "full sizes")


def device_multiple(batch_size: int) -> int:
    """`batch_size` rounded up to a multiple of the device count (the data-parallel loop
    splits every batch evenly over all devices)."""
    n = jax.device_count()
    return -(-batch_size // n) * n


# %% [markdown]
# ## Data
#
# Amazon Beauty as released with ADRec (ratings > 3, 5-core; one `user item` line per
# interaction, chronological per user) is read from the project's data folder
# (`../shared/data/adrec-beauty/sequences.txt` next to the repository, or
# `$DIFFREC_JAX_DATA/adrec-beauty/sequences.txt`), or from any file of that format named by
# `$DIFFREC_JAX_BEAUTY` (e.g. downloaded from the ADRec repository). Without it, and always
# in the small version, the built-in synthetic sequences are used (each next item depends on
# the previous one; their numbers say nothing about Beauty). The next cell prints which one
# ran.

# %%
import matplotlib.pyplot as plt
import numpy as np

from diffrec_jax import models
from diffrec_jax.data import load_dataset
from diffrec_jax.experiment import RunConfig, format_table, run

DATA_DIR = Path(os.environ.get("DIFFREC_JAX_DATA", REPO_DIR.parent / "shared" / "data"))
BEAUTY = Path(os.environ.get("DIFFREC_JAX_BEAUTY", DATA_DIR / "adrec-beauty" / "sequences.txt"))
if SMALL:
    spec, options = "synthetic-sequences", dict(n_users=300, n_items=200, mean_length=12.0)
    print("small version: synthetic sequences (300 users x 200 items)")
elif BEAUTY.is_file():
    spec, options = f"sequences:{BEAUTY}", {}
    print(f"Amazon Beauty (ADRec release) from {BEAUTY}")
else:
    spec, options = "synthetic-sequences", {}
    print(f"{BEAUTY} not found: synthetic sequences (1,000 users x 500 items) instead")

stats = load_dataset(spec, **options).stats
print(f"{stats['name']}: {stats['users']:,} users, {stats['items']:,} items")

# %% [markdown]
# ## The two models
#
# The papers' settings, from the registry's defaults (`models.get(name).defaults`): ADRec's
# three stages (SASRec pretraining of the item table, 5 epochs with that table frozen, then
# everything) and SASRec+ with the same encoder, both validated on NDCG@20 every 5 epochs with
# early stopping. The small version shrinks widths, history length and epochs, and skips
# ADRec's two warm-up stages (each compiles its own training step, which dominates a tiny
# run on CPU).

# %%
NAMES = ("adrec", "sasrec+")
if SMALL:
    hparams = {
        "adrec": dict(d=32, n_heads=2, encoder_blocks=1, denoiser_blocks=1, steps=4, max_len=10),
        "sasrec+": dict(d=32, n_heads=2, n_blocks=1, max_len=10, max_epochs=2, eval_every=1),
    }
    hparams["adrec"] |= dict(pretrain_epochs=0, freeze_epochs=0, max_epochs=2, eval_every=1)
    for h in hparams.values():
        h["batch_size"] = device_multiple(64)
else:
    hparams = {m: {"batch_size": models.get(m).defaults["batch_size"]} for m in NAMES}
    hparams = {m: {"batch_size": device_multiple(h["batch_size"])} for m, h in hparams.items()}
for name in NAMES:
    changed = ", ".join(f"{k}={v}" for k, v in hparams[name].items())
    print(f"{name}: {models.get(name).description}; registry defaults with {changed}")

# %% [markdown]
# ## Train and evaluate
#
# `diffrec_jax.experiment.run` fits every model on the training sequences (validation targets
# for early stopping only), evaluates it on valid and test in one pass, and writes a results
# file with the configuration, timings and environment.

# %%
OUTPUT = Path(os.environ.get("DIFFREC_JAX_OUTPUT", REPO_DIR / "results" / "notebooks"))
config = RunConfig(
    models=NAMES,
    dataset=spec,
    dataset_options=options,
    seeds=(2025,),  # the ADRec code's seed
    hparams={m: {k: [v] for k, v in h.items()} for m, h in hparams.items()},
    ks=(5, 10, 20),
    select_metric="NDCG@20",
    output_dir=str(OUTPUT / "sequential"),
    exclude_history=False,
)
results, path = run(config)
print(f"\nresults file: {path}\n")
print(format_table(results, ks=(5, 10, 20)))

# %% [markdown]
# ## Comparison
#
# Left: test HitRate and NDCG at K = 5, 10, 20 (with leave-one-out there is one target, so
# Recall@K equals HitRate@K). Right: the cost, training time and the time to score the valid
# and test histories of every user, on this machine's backend. On Beauty the ADRec paper
# reports HR@20 16.82% / NDCG@20 8.32% for ADRec and 15.20% / 7.65% for SASRec with cross
# entropy (approximate, quoted from the paper's table).

# %%
summary = {e["model"]: e for e in results["summary"]}
ks = (5, 10, 20)
fig, (ax_acc, ax_cost) = plt.subplots(1, 2, figsize=(11, 3.8))
for i, name in enumerate(NAMES):
    for metric, style in (("HitRate", "o-"), ("NDCG", "s--")):
        values = [summary[name]["test"][f"{metric}@{k}"]["mean"] for k in ks]
        ax_acc.plot(ks, values, style, color=f"C{i}", label=f"{name} {metric}")
ax_acc.set_xticks(ks)
ax_acc.set_xlabel("K")
ax_acc.set_ylabel("test")
ax_acc.set_title(f"Accuracy, {results['dataset']['name']}")
ax_acc.legend(fontsize=8)

x = np.arange(len(NAMES))
fit = [summary[n]["fit_seconds"] for n in NAMES]
score = [summary[n]["eval_seconds"] for n in NAMES]
ax_cost.bar(x - 0.2, fit, 0.4, label="training")
ax_cost.bar(x + 0.2, score, 0.4, label="scoring valid + test")
ax_cost.set_xticks(x, NAMES)
ax_cost.set_yscale("log")
ax_cost.set_ylabel("seconds")
ax_cost.set_title(f"Cost ({jax.default_backend()}, {jax.device_count()} device(s))")
ax_cost.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# One seed is a first look, not a verdict: the difference between two models on one seed
# can be within the spread of the seeds. `illusion_of_progress.ipynb` shows the full audit
# (equal tuning budgets, several seeds, paired significance tests, costs).
