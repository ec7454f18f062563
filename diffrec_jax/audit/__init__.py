"""The audit: from "diffusion model X beats the state of the art" to a verdict with evidence.

One module per job:

- :mod:`~diffrec_jax.audit.config`: :class:`AuditConfig` (configs as code, ``get_config()``)
  and :func:`scaled` (budget, seeds, epoch cap from the command line);
- :mod:`~diffrec_jax.audit.stats`: paired Wilcoxon signed-rank and t-tests per user, Holm and
  Bonferroni corrections, reproducibility verdicts;
- :mod:`~diffrec_jax.audit.cost`: FLOPs from the compiled XLA computation (loops unrolled),
  timing, memory, energy and CO2 under stated assumptions;
- :mod:`~diffrec_jax.audit.diagnostics`: effective noise level, reverse-process variants and
  top-K overlap between sampling seeds of diffusion models;
- :mod:`~diffrec_jax.audit.store`: resumable units (atomic JSON + arrays);
- :mod:`~diffrec_jax.audit.report`: the markdown report, PNG plots and raw results;
- :mod:`~diffrec_jax.audit.runner`: :func:`run_audit`, the pipeline
  (``experiments/audit.py``).

Example::

    from diffrec_jax.audit import load_config, run_audit, scaled
    config = scaled(load_config("experiments/configs/audit_tiny.py"), output_dir="/tmp/a")
    results, report_dir = run_audit(config)
"""

from __future__ import annotations

from diffrec_jax.audit.config import AuditConfig, load_config, scaled
from diffrec_jax.audit.cost import Assumptions
from diffrec_jax.audit.runner import run_audit

__all__ = ["Assumptions", "AuditConfig", "load_config", "run_audit", "scaled"]
