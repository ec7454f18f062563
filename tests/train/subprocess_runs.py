"""Helpers of the tests that run JAX in subprocesses (device counts, several processes, kills).

The number of (simulated CPU) devices is fixed when JAX starts, so such tests start the
scripts of this directory as subprocesses; their output goes to log files, never to pipes that
could fill up.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def jax_env(n_devices: int, **extra: str) -> dict[str, str]:
    """This process's environment for a CPU-only JAX child with `n_devices` devices.

    XLA_FLAGS are passed on (e.g. the test session's optimisation level), except a device count.
    """
    env = dict(os.environ)
    flags = env.pop("XLA_FLAGS", "").split()
    flags = [f for f in flags if not f.startswith("--xla_force_host_platform_device_count")]
    if flags:
        env["XLA_FLAGS"] = " ".join(flags)
    env |= {
        "JAX_NUM_CPU_DEVICES": str(n_devices),
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]),
    }
    return env | extra


def start(script: str, args: Sequence[str], *, n_devices: int, log: Path) -> subprocess.Popen:
    """Starts ``python <script> <args>`` (a file of this directory); stdout+stderr go to `log`."""
    with open(log, "w") as f:
        return subprocess.Popen(
            [sys.executable, str(HERE / script), *map(str, args)],
            env=jax_env(n_devices),
            cwd=HERE,
            stdout=f,
            stderr=subprocess.STDOUT,
        )


def finish(procs: Sequence[tuple[subprocess.Popen, Path]], timeout: float = 300) -> None:
    """Waits for every (process, log); kills them all if one fails or times out."""
    try:
        for proc, log in procs:
            proc.wait(timeout=timeout)
            assert proc.returncode == 0, f"{proc.args} failed:\n{log.read_text()[-3000:]}"
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def free_port() -> int:
    """A TCP port on localhost that is free now (for a coordinator started right after)."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]
