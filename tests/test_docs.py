"""The code in the docs runs: every ```python block of docs/*.md, in a fresh namespace.

The "Adding a model" example of docs/architecture.md registers a model from outside the package
and runs it through run, tune and audit; the test then checks what it produced.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from diffrec_jax import models

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def python_blocks(path: Path) -> list[str]:
    """The ```python code blocks of a markdown file, in order."""
    return BLOCK.findall(path.read_text())


def test_the_docs_have_code_to_run():
    assert python_blocks(DOCS / "architecture.md"), "the 'Adding a model' example is missing"


@pytest.mark.parametrize("path", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_doc_code_runs(path, monkeypatch):
    # Models the code registers are removed again after the test.
    monkeypatch.setattr(models, "REGISTRY", dict(models.REGISTRY))
    for i, code in enumerate(python_blocks(path)):
        namespace: dict = {"__name__": f"doc_{path.stem}_{i}"}
        exec(compile(code, f"{path}:block{i}", "exec"), namespace)
        if path.name == "architecture.md":
            _check_adding_a_model(namespace)


def _check_adding_a_model(ns: dict) -> None:
    spec = models.get("softmax_linear")
    assert spec.kind == "trained" and spec.space == {"lr": ("float_log", 1e-3, 1e-1)}
    summary = {e["model"]: e for e in ns["results"]["summary"]}
    assert summary["softmax_linear"]["seeds"] == [0, 1]
    # It learns: above TopPop on the synthetic data.
    mine, pop = (summary[m]["test"]["Recall@20"]["mean"] for m in ("softmax_linear", "toppop"))
    assert mine > pop
    (entry,) = ns["tuned"]["models"]
    assert entry["n_trials"] == 3 and entry["space"] == {"lr": ["float_log", 0.001, 0.1]}
    assert ns["audit"]["config"]["target"] == "softmax_linear"
    assert len(ns["audit"]["runs"]["softmax_linear"]) == 2 and ns["report"].is_dir()
