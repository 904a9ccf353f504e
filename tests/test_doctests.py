"""The ``>>>`` examples in the package's docstrings and in the documentation pages run as tests.

Every public module of ``graphformer`` (found with :func:`pkgutil.walk_packages`, as the API reference in
``docs/`` is) is one test case, and so is every ``docs/**/*.rst`` page with ``>>>`` examples (the tutorial). An
example that cannot run standalone (it needs a dataset, a GPU, a trained model) is written as a
``.. code-block:: python`` (or a ``::`` literal block without prompts) instead, or marked
``# doctest: +SKIP`` with the reason beside it.

The names a docstring may use without importing them are the module's own globals plus :data:`DOCTEST_GLOBALS`,
the one place that lists them. pytest's own ``--doctest-modules`` is not enabled (``pyproject.toml``), so these
examples are collected once, here.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest
import torch

import graphformer

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: Names every example may use without importing them (besides its module's own globals).
DOCTEST_GLOBALS = {"torch": torch, "nn": torch.nn, "gf": graphformer, "graphformer": graphformer}

OPTIONFLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def public_modules() -> list[str]:
    """``graphformer`` and its submodules whose dotted names have no part starting with ``_``."""
    names = ["graphformer"]
    for info in pkgutil.walk_packages(graphformer.__path__, prefix="graphformer."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def doc_pages() -> list[Path]:
    """Documentation pages that hold ``>>>`` examples (``docs/_build`` excluded)."""
    pages = [p for p in sorted(DOCS.rglob("*.rst")) if "_build" not in p.parts and ">>>" in p.read_text()]
    return pages


def _run(tests: list[doctest.DocTest]) -> tuple[int, str]:
    """Run ``tests``; return the number of examples that ran and the failure report ('' when all passed)."""
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=OPTIONFLAGS)
    attempted = 0
    torch.manual_seed(0)
    for test in tests:
        result = runner.run(test, out=report.append, clear_globs=True)
        attempted += result.attempted
    return attempted, "".join(report)


@pytest.mark.parametrize("name", public_modules())
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = [t for t in finder.find(module, name, extraglobs=DOCTEST_GLOBALS) if t.examples]
    _, failures = _run(tests)
    assert not failures, failures


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_documentation_page(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a page that writes files writes them here
    text = page.read_text()
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, dict(DOCTEST_GLOBALS), page.name, str(page), 0)
    attempted, failures = _run([test])
    assert not failures, failures
    assert attempted > 0


def test_modules_are_found() -> None:
    """The walk sees the subpackages' modules (an import error in one would hide its examples)."""
    names = public_modules()
    for expected in ("graphformer.graphs.pairs", "graphformer.nn.gps", "graphformer.ops.bias",
                     "graphformer.structural.spatial", "graphformer.datasets"):
        assert expected in names


def test_pytest_does_not_collect_them_again() -> None:
    """Running ``pytest`` in the repository root must not collect these examples a second time."""
    options = (ROOT / "pyproject.toml").read_text()
    assert "--doctest-modules" not in options and "--doctest-glob" not in options
