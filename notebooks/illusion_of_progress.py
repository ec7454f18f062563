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
# # The illusion of progress: auditing DiffRec on MovieLens-1M
#
# A 2025 reproducibility study (Benigni, Ferrari Dacrema, Jannach, *Diffusion Recommender
# Models and the Illusion of Progress*) found that only about a quarter of the reported results
# of diffusion recommenders reproduce, and that simple, well-tuned baselines (EASE, SLIM, kNN,
# RP3beta, MultVAE) match or beat them. `diffrec_jax.audit` turns such a claim into a verdict
# with evidence, in one call:
#
# 1. every model (DiffRec and eleven baselines) is tuned on validation with the **same**
#    budget and search method;
# 2. the chosen configuration of every model is retrained with several seeds and evaluated on
#    test;
# 3. mean ± std per metric, paired per-user significance tests (Wilcoxon signed-rank and
#    t-test, Holm-corrected) of DiffRec against the best baseline, and a reproducibility
#    verdict for each number the paper reports;
# 4. the cost of every model: tuning, training and inference time, FLOPs from the compiled
#    XLA computations, memory, and an energy and CO2 estimate under stated assumptions;
# 5. diffusion diagnostics: the effective noise level, and test metrics with the reverse
#    process replaced by one denoiser call, with sampling noise, with other step counts;
# 6. a report folder: markdown, PNG plots and the raw results.
#
# This notebook runs the audit with a small budget (5 trials per model, 3 seeds) and shows
# the report. The full audit (50 trials, 5 seeds) is one command, at the end.
#
# **Colab:** Runtime > Change runtime type > TPU. The first cell installs the package (with
# the `tuning` extra, optuna) under Colab only; set `DIFFREC_JAX_REPO` there to the
# repository's URL (it is a placeholder). `DIFFREC_JAX_NOTEBOOK_SMALL=1` runs a one-minute
# version on CPU (the tiny audit of the tests: synthetic data, DiffRec against TopPop and
# EASE, one trial per model, 2 seeds): that is what CI runs.

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
    pip = [sys.executable, "-m", "pip", "install", "-q", f"{REPO_DIR}[tuning]", *tpu]
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
# ## The audit configuration
#
# Audits are configurations as code: `experiments/configs/audit_diffrec_ml1m.py` names the
# dataset, the audited model with its search space and the numbers its paper reports, the
# baselines (their search spaces are the library's defaults), the budget and the seeds.
#
# Data: the DiffRec release's MovieLens-1M "clean" split, from the project's data folder
# (`../shared/data` next to the repository, or `$DIFFREC_JAX_DATA`). Without it the same
# audit runs on the built-in synthetic dataset, with no reported numbers to check (the paper's
# are for ML-1M); the small version runs `experiments/configs/audit_tiny.py` instead. The next
# cell prints which one ran.

# %%
import dataclasses

from diffrec_jax import models
from diffrec_jax.audit import load_config, run_audit, scaled

CONFIGS = REPO_DIR / "experiments" / "configs"
DATA_DIR = Path(os.environ.get("DIFFREC_JAX_DATA", REPO_DIR.parent / "shared" / "data"))
ML1M = DATA_DIR / "diffrec-ml-1m_clean"
if SMALL:
    config = load_config(CONFIGS / "audit_tiny.py")
    BUDGET, SEEDS, MAX_EPOCHS = 1, 2, None
    print("small version: the tiny audit on synthetic data (its reported numbers are made up)")
else:
    config = load_config(CONFIGS / "audit_diffrec_ml1m.py")
    BUDGET, SEEDS, MAX_EPOCHS = 5, 3, None  # the full audit: 50 trials, 5 seeds
    if ML1M.is_dir():
        config = dataclasses.replace(config, dataset=f"diffrec:{ML1M}")
        print(f"MovieLens-1M clean (DiffRec release) from {ML1M}")
    else:
        config = dataclasses.replace(
            config, name="diffrec-synthetic", dataset="synthetic", reported={}, reported_source=""
        )
        print(f"{ML1M} not found: the audit runs on synthetic data, with no claim to check")

# Every batch is split evenly over the devices: round batch sizes up where needed (a no-op on
# one device).
fixed = {m: dict(config.fixed.get(m, {})) for m in config.models}
for m in config.models:
    batch = fixed[m].get("batch_size", models.get(m).defaults.get("batch_size"))
    if batch is not None and batch % jax.device_count():
        fixed[m]["batch_size"] = device_multiple(batch)
config = dataclasses.replace(config, fixed={m: v for m, v in fixed.items() if v})

OUTPUT = Path(os.environ.get("DIFFREC_JAX_OUTPUT", REPO_DIR / "results" / "notebooks"))
config = scaled(
    config,
    budget=BUDGET,
    seeds=SEEDS,
    max_epochs=MAX_EPOCHS,
    output_dir=str(OUTPUT / f"audit-{config.name}-budget{BUDGET}"),
)
print(f"audit {config.name!r}: {config.target} against {', '.join(config.baselines)}")
print(f"dataset {config.dataset}")
print(f"{config.budget} {config.method} trials per model, seeds {config.seeds}")
print(f"output {config.output_dir}")

# %% [markdown]
# ## Run
#
# Progress is printed step by step. Every finished unit (a trial, a seed's run, a diagnostic)
# is saved, so an interrupted audit resumes where it stopped: run the cell again. On a CPU
# the full-size version takes hours (DiffRec and the gradient-trained baselines dominate); on
# a TPU much less.

# %%
command = f"notebooks/illusion_of_progress.ipynb (budget {config.budget}, seeds {config.seeds})"
results, report_dir = run_audit(config, progress=print, command=command)

# %% [markdown]
# ## The report
#
# `report.md` in the report folder, with its plots: accuracy against training cost, the
# per-metric bars with the seeds' spread, and the diffusion diagnostics. `results.json` next
# to it holds every figure.

# %%
import re

from IPython.display import Image, Markdown, display

print(f"report folder: {report_dir}")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+\.png)\)")
for i, chunk in enumerate(IMAGE.split((report_dir / "report.md").read_text())):
    if i % 2:  # a captured image file name
        display(Image(filename=str(report_dir / chunk)))
    elif chunk.strip():
        display(Markdown(chunk))

# %% [markdown]
# ## The full audit
#
# From a checkout, with the data in `../shared/data` (hours on a CPU; resumable):
#
# ```bash
# python experiments/audit.py --config=experiments/configs/audit_diffrec_ml1m.py \
#     --output_dir=results/audit-diffrec-ml1m
# ```
#
# `--budget`, `--seeds` and `--max_epochs` scale it down; `--smoke` is a minutes-long
# version. `experiments/configs/audit_ldiffrec_ml1m.py` audits L-DiffRec the same way.
