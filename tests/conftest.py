"""Test-session settings shared by every test module."""

import os

# Two pytest-xdist workers on a 2-core machine: one BLAS thread each avoids oversubscription,
# which made the numpy/scipy baselines an order of magnitude slower under `pytest -n 2`.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

# Compile time dominates the model tests on a 2-core CPU: XLA's backend optimisation level 0
# compiles several times faster (measured 3.6x on ADRec's step) and leaves results within float
# tolerance; benchmarks and experiments keep the default level.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
