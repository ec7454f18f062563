"""Every malformed input of the corpus gives the library's own error, naming the place; the
package never unpickles data."""

from __future__ import annotations

import ast
import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest
from corpus import CASES, SCRIPT_CASES, UNPICKLED, Case

from diffrec_jax.errors import DiffrecError

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "diffrec_jax"
IN_PROCESS = [c for c in CASES if c.script is None]


def test_corpus_is_large_and_well_formed():
    names = [c.name for c in CASES]
    assert len(names) >= 30 and len(set(names)) == len(names)
    for case in CASES:
        assert issubclass(case.error, DiffrecError), case.name
        assert case.fragments, case.name
        assert (case.call is None) != (case.script is None), case.name


def _check_message(case: Case, message: str, tmp: Path) -> None:
    for fragment in case.fragments:
        assert fragment.replace("{tmp}", str(tmp)) in message, (case.name, message)


@pytest.mark.parametrize("case", IN_PROCESS, ids=lambda c: c.name)
def test_in_process(case: Case, tmp_path: Path):
    target = case.write(tmp_path) if case.write else None
    with pytest.raises(DiffrecError) as info:
        case.call(tmp_path, target)
    assert type(info.value) is case.error or isinstance(info.value, case.error), (
        case.name,
        repr(info.value),
    )
    _check_message(case, str(info.value), tmp_path)
    assert not (tmp_path / UNPICKLED).exists(), "something unpickled the data"
    assert not list(tmp_path.glob("out/*.json")), "a results file was written"


# -- the scripts, in subprocesses started together (each spends seconds importing jax) ---------


@pytest.fixture(scope="module")
def script_runs(tmp_path_factory):
    procs = {}
    for case in SCRIPT_CASES:
        tmp = tmp_path_factory.mktemp(case.name)
        if case.write:
            case.write(tmp)
        flags = [f.replace("{tmp}", str(tmp)) for f in case.flags]
        defaults = {"--dataset": "synthetic-small", "--output_dir": str(tmp / "out")}
        if case.script == "audit.py":
            defaults = {"--output_dir": str(tmp / "out")}
        elif case.script == "merge.py":
            defaults = {}  # merge.py takes files, and --output
        if case.script == "tune.py":
            defaults["--budget"] = "1"
        given = {f.split("=", 1)[0] for f in flags}
        flags += [f"{k}={v}" for k, v in defaults.items() if k not in given]
        procs[case.name] = (
            tmp,
            subprocess.Popen(
                [sys.executable, str(REPO / "experiments" / case.script), *flags],
                cwd=tmp,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
    yield procs
    for _, proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("case", SCRIPT_CASES, ids=lambda c: c.name)
def test_script(case: Case, script_runs):
    tmp, proc = script_runs[case.name]
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, (case.name, stdout, stderr)
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    _check_message(case, errors[0], tmp)
    assert not (tmp / UNPICKLED).exists()
    assert not list(tmp.glob("out/*.json")), "a results file was written"


# -- no code path unpickles data ------------------------------------------------------------------

PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve"}


@functools.cache
def _sources() -> dict[Path, tuple[str, ast.Module]]:
    """Source text and syntax tree of every module of the package."""
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    out = {}
    for path in files:
        source = path.read_text()
        out[path] = (source, ast.parse(source))
    return out


def test_no_pickle_in_the_package():
    offenders = []
    for path, (source, tree) in _sources().items():
        for k, line in enumerate(source.splitlines(), 1):
            if re.search(r"allow_pickle\s*=\s*True|read_pickle|torch\.load|\bpickle\.", line):
                offenders.append(f"{path.relative_to(REPO)}:{k}: {line.strip()}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            else:
                continue
            bad = PICKLE_MODULES.intersection(names)
            if bad:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: imports {bad}")
    assert not offenders, "\n".join(offenders)


def test_every_np_load_refuses_pickles():
    """Every ``np.load``/``numpy.load`` call passes the literal ``allow_pickle=False``."""
    calls = []
    for path, (_, tree) in _sources().items():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in ("np", "numpy")
            ):
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                kw = {k.arg: k.value for k in node.keywords}
                value = kw.get("allow_pickle")
                ok = isinstance(value, ast.Constant) and value.value is False
                calls.append((where, ok))
    assert calls, "expected the DiffRec loader's np.load"
    assert all(ok for _, ok in calls), [where for where, ok in calls if not ok]
    # `from numpy import load` would hide a call from the check above.
    for path, (source, _) in _sources().items():
        assert not re.search(r"from numpy(\.\w+)* import .*\bload\b", source), path
