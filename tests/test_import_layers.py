"""The package's import layers: every module imports only from its own layer or the ones below.

``LAYERS`` is the layer table, bottom up; the README describes the same table. Each row is
``(number, name, patterns)``. A pattern is either a module name (``"diffrec_jax.errors"``: that
module only) or a package followed by ``.*`` (``"diffrec_jax.data.*"``: the package ``__init__``
and every module under it). A module's layer is its exact pattern if one names it, else the
longest ``.*`` pattern that covers it; so ``diffrec_jax.models`` (the zoo, its ``__init__``) is
layer 6 while ``diffrec_jax.models.sasrec`` (a model definition) is layer 5. Modules of one layer
may import each other.

The checks read the source with :mod:`ast` and never import the package, so they run while the
package itself does not import. They fail when:

(a) a module-level import of ``diffrec_jax`` (absolute or relative, including one under
    ``if TYPE_CHECKING:`` or in a ``try`` block) goes to a higher layer than the importer's;
(b) any import of ``diffrec_jax`` sits inside a function or class body: a local import is how a
    cycle hides, and it moves the import error from import time to the first call (optional
    third-party imports such as ``optuna`` inside functions are fine);
(c) a module under ``diffrec_jax/`` is in no layer: a new top-level module or subpackage must be
    placed in ``LAYERS`` (and in the README's table).

``from P import name`` imports the module ``P.name`` when ``P/name.py`` (or ``P/name/``) exists,
else the package ``P`` itself: ``from diffrec_jax.models import sasrec`` in a model file imports
a sibling model definition (layer 5, allowed), while ``from diffrec_jax.models import get``
imports the zoo (layer 6). Imports via ``importlib.import_module("diffrec_jax...")`` or
``__import__`` with a literal name count as imports too.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

PACKAGE = "diffrec_jax"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE

LAYERS: tuple[tuple[float, str, tuple[str, ...]], ...] = (
    (
        0,
        "foundation",
        ("diffrec_jax", "diffrec_jax.errors", "diffrec_jax.results", "diffrec_jax.seeds"),
    ),
    (0.5, "data", ("diffrec_jax.data.*",)),
    (1, "protocol", ("diffrec_jax.protocol.*",)),
    (2, "metrics and evaluation", ("diffrec_jax.metrics.*", "diffrec_jax.evaluation.*")),
    (3, "diffusion and nn blocks", ("diffrec_jax.diffusion.*", "diffrec_jax.nn.*")),
    (4, "training loop", ("diffrec_jax.train.*",)),
    (5, "model definitions", ("diffrec_jax.models.*",)),
    (6, "zoo", ("diffrec_jax.models",)),
    (7, "experiment", ("diffrec_jax.experiment.*",)),
    (8, "tuning", ("diffrec_jax.tuning.*",)),
    (9, "audit", ("diffrec_jax.audit.*",)),
    (10, "command line", ("diffrec_jax.cli",)),
)
"""The layer table, bottom up: ``(number, name, module patterns)``; see the module docstring."""


@dataclasses.dataclass(frozen=True)
class Layer:
    number: float
    name: str

    def __str__(self) -> str:
        return f"layer {self.number:g}, {self.name}"


def layer_of(module: str, layers=LAYERS) -> Layer | None:
    """The layer of a dotted module name, or None when no pattern covers it."""
    best: tuple[int, Layer] | None = None
    for number, name, patterns in layers:
        for pattern in patterns:
            if pattern.endswith(".*"):
                prefix = pattern[:-2]
                if module == prefix or module.startswith(prefix + "."):
                    # an exact name outranks any prefix; a longer prefix outranks a shorter one
                    rank = len(prefix)
                else:
                    continue
            elif module == pattern:
                rank = 10**6
            else:
                continue
            if best is None or rank > best[0]:
                best = (rank, Layer(number, name))
    return None if best is None else best[1]


@dataclasses.dataclass(frozen=True)
class Import:
    """One import of the package found in a module's source."""

    line: int
    target: str  # the dotted module it imports (a submodule when the name is one)
    local: bool  # inside a function or class body


def package_modules(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Every module under the package directory: dotted name -> path (``__init__`` = package)."""
    root = package_dir.parent
    modules: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > len(base):
        raise ValueError(f"relative import beyond the top-level package in {module}")
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _in_package(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def _literal_import_call(node: ast.Call) -> str | None:
    """The module a call ``importlib.import_module("x")`` or ``__import__("x")`` names, if any."""
    func = node.func
    is_import = (isinstance(func, ast.Name) and func.id in ("__import__", "import_module")) or (
        isinstance(func, ast.Attribute) and func.attr == "import_module"
    )
    if is_import and node.args:
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
    return None


def find_imports(
    module: str, source: str, is_package: bool, modules: Iterable[str]
) -> list[Import]:
    """The imports of the package in one module's source, resolved to dotted module names.

    ``modules`` are the package's module names (to tell ``from P import submodule`` from
    ``from P import name``); ``is_package`` says whether the source is a package ``__init__``.
    """
    known = set(modules)
    found: list[Import] = []

    def visit(node: ast.AST, local: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _in_package(alias.name):
                    found.append(Import(node.lineno, alias.name, local))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(module, is_package, node.level, node.module)
            else:
                base = node.module or ""
            if _in_package(base):
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.append(Import(node.lineno, sub if sub in known else base, local))
        elif isinstance(node, ast.Call):
            name = _literal_import_call(node)
            if name is not None and _in_package(name):
                found.append(Import(node.lineno, name, local))
        inner = local or isinstance(
            node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef
        )
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(source), False)
    return list(dict.fromkeys(found))  # one per line and target: `from m import a, b` is one


def _no_layer(path: str, module: str) -> str:
    return (
        f"{path}: module {module} is in no layer: add it to LAYERS in "
        "tests/test_import_layers.py (and to the README's layer table)"
    )


def check_module(
    module: str, path: str, source: str, is_package: bool, modules: Iterable[str], layers=LAYERS
) -> list[str]:
    """Every layer violation in one module's source, one message each (empty when clean)."""
    own = layer_of(module, layers)
    if own is None:
        return [_no_layer(path, module)]
    problems = []
    for imp in find_imports(module, source, is_package, modules):
        target = layer_of(imp.target, layers)
        where = f"{path}:{imp.line}"
        if target is None:
            problems.append(f"{where}: {module} ({own}) imports {imp.target}, which is in no layer")
        elif imp.local:
            problems.append(
                f"{where}: function-local import of {imp.target} ({target}) in {module} ({own}): "
                "imports of the package belong at module level (a local import hides a cycle)"
            )
        elif target.number > own.number:
            problems.append(
                f"{where}: upward import: {module} ({own}) imports {imp.target} ({target})"
            )
    return problems


def check_package(modules: Mapping[str, Path], layers=LAYERS) -> list[str]:
    root = PACKAGE_DIR.parent
    problems = []
    for module, path in modules.items():
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        problems += check_module(
            module, str(shown), path.read_text(), _is_package(path), modules, layers
        )
    return problems


# --- the package -----------------------------------------------------------------------------

MODULES = package_modules()


def _report(problems: list[str]) -> str:
    return f"{len(problems)} layer violation(s):\n" + "\n".join(problems)


def test_package_is_found():
    # guards the checks below against passing vacuously on an empty or misplaced package
    expected = {"diffrec_jax", "diffrec_jax.cli", "diffrec_jax.models", "diffrec_jax.models.sasrec"}
    assert expected <= MODULES.keys()
    n_imports = sum(
        len(find_imports(m, p.read_text(), _is_package(p), MODULES)) for m, p in MODULES.items()
    )
    assert n_imports > 100


def test_every_module_has_a_layer():
    missing = [
        _no_layer(str(path.relative_to(PACKAGE_DIR.parent)), module)
        for module, path in MODULES.items()
        if layer_of(module) is None
    ]
    assert not missing, _report(missing)


def test_every_layer_pattern_matches_a_module():
    # a pattern left behind by a rename would silently stop covering anything
    for number, name, patterns in LAYERS:
        for pattern in patterns:
            prefix = pattern.removesuffix(".*")
            assert prefix in MODULES, f"layer {number:g} ({name}): {pattern} matches no module"


def test_module_level_imports_only_go_down():
    problems = [p for p in check_package(MODULES) if "upward import" in p or "in no layer" in p]
    assert not problems, _report(problems)


def test_no_function_local_imports_of_the_package():
    problems = [p for p in check_package(MODULES) if "function-local import" in p]
    assert not problems, _report(problems)


# --- the checker itself, on synthetic sources ------------------------------------------------

SYNTHETIC = [
    "diffrec_jax",
    "diffrec_jax.errors",
    "diffrec_jax.data",
    "diffrec_jax.data.split",
    "diffrec_jax.train",
    "diffrec_jax.train.loop",
    "diffrec_jax.models",
    "diffrec_jax.models.sasrec",
    "diffrec_jax.models.diffrec",
    "diffrec_jax.cli",
]


def _check(module: str, source: str, is_package: bool = False) -> list[str]:
    return check_module(module, "x.py", source, is_package, SYNTHETIC)


def test_checker_catches_an_upward_import():
    problems = _check("diffrec_jax.data.split", "import os\nfrom diffrec_jax.train import loop\n")
    assert problems == [
        "x.py:2: upward import: diffrec_jax.data.split (layer 0.5, data) imports "
        "diffrec_jax.train.loop (layer 4, training loop)"
    ]
    assert _check("diffrec_jax.errors", "import diffrec_jax.cli\n")[0].startswith("x.py:1: upward")


def test_checker_catches_an_upward_relative_import():
    (problem,) = _check("diffrec_jax.data.split", "from ..train.loop import train\n")
    assert "x.py:1: upward import" in problem and "diffrec_jax.train.loop" in problem
    (problem,) = _check("diffrec_jax.data", "from ..models import get\n", is_package=True)
    assert "imports diffrec_jax.models (layer 6, zoo)" in problem


def test_checker_catches_upward_imports_in_blocks():
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from diffrec_jax.models import Zoo\n"
        "try:\n"
        "    import diffrec_jax.cli\n"
        "except ImportError:\n"
        "    pass\n"
    )
    problems = _check("diffrec_jax.train.loop", source)
    assert [p.split(":")[1] for p in problems] == ["3", "5"]
    assert all("upward import" in p for p in problems)


def test_checker_catches_function_local_imports():
    source = (
        "def fit():\n"
        "    import optuna  # an optional third-party import is fine\n"
        "    from diffrec_jax.data import split  # even a downward one is not\n"
        "class Model:\n"
        "    from . import diffrec\n"
        "    def score(self):\n"
        "        return importlib.import_module('diffrec_jax.train.loop')\n"
    )
    problems = _check("diffrec_jax.models.sasrec", source)
    assert [p.split(":")[1] for p in problems] == ["3", "5", "7"]
    assert all("function-local import" in p for p in problems)
    assert "of diffrec_jax.data.split (layer 0.5, data)" in problems[0]
    assert "of diffrec_jax.models.diffrec (layer 5, model definitions)" in problems[1]


def test_checker_allows_sibling_models_and_lower_layers():
    source = (
        "import numpy as np\n"
        "import diffrec_jax\n"
        "from diffrec_jax.models import diffrec\n"
        "from . import diffrec as d\n"
        "from .diffrec import check_hparams\n"
        "from diffrec_jax.train.loop import train\n"
        "from diffrec_jax.errors import ConfigError\n"
    )
    assert _check("diffrec_jax.models.sasrec", source) == []


def test_checker_tells_the_zoo_from_a_model_module():
    # a name that is not a module file is the zoo's own attribute: importing it imports the zoo
    (problem,) = _check("diffrec_jax.models.sasrec", "from diffrec_jax.models import get\n")
    assert "imports diffrec_jax.models (layer 6, zoo)" in problem
    # the zoo may import its model definitions
    assert _check("diffrec_jax.models", "from . import sasrec\n", is_package=True) == []


def test_checker_catches_a_module_in_no_layer():
    (problem,) = _check("diffrec_jax.plotting", "")
    assert "diffrec_jax.plotting is in no layer" in problem and "LAYERS" in problem
    (problem,) = _check("diffrec_jax.errors", "from diffrec_jax.plotting import plot\n")
    assert "x.py:1:" in problem and "diffrec_jax.plotting, which is in no layer" in problem


def test_layer_of():
    assert layer_of("diffrec_jax") == Layer(0, "foundation")
    assert layer_of("diffrec_jax.data") == Layer(0.5, "data")
    assert layer_of("diffrec_jax.models") == Layer(6, "zoo")
    assert layer_of("diffrec_jax.models.sasrec") == Layer(5, "model definitions")
    assert layer_of("diffrec_jax.cli") == Layer(10, "command line")
    assert layer_of("diffrec_jax.clix") is None
    assert layer_of("diffrec_jax.newthing") is None


@pytest.mark.parametrize(
    "module, is_package, level, name, expected",
    [
        ("diffrec_jax.models.sasrec", False, 1, None, "diffrec_jax.models"),
        ("diffrec_jax.models.sasrec", False, 2, "train", "diffrec_jax.train"),
        ("diffrec_jax.models", True, 1, "sasrec", "diffrec_jax.models.sasrec"),
        ("diffrec_jax.models", True, 2, None, "diffrec_jax"),
    ],
)
def test_resolve_relative(module, is_package, level, name, expected):
    assert _resolve_relative(module, is_package, level, name) == expected
