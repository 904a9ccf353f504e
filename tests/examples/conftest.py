"""Shared fixtures for the example scripts' tests: load an example as a module, find the offline Cora copy."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PLANETOID = REPO_ROOT.parent / "shared" / "data" / "planetoid"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` (examples are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"graphformer_example_{name}", REPO_ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def planetoid_root() -> Path:
    if not (PLANETOID / "Cora" / "raw").is_dir():
        pytest.skip(f"offline Cora copy not found at {PLANETOID}/Cora/raw (no downloads in tests)")
    return PLANETOID


@pytest.fixture(scope="session")
def planetoid_cache(tmp_path_factory: pytest.TempPathFactory, planetoid_root: Path) -> Path:
    """One writable cache per test session, so Cora is processed once."""
    return tmp_path_factory.mktemp("planetoid-cache")


@pytest.fixture(scope="session")
def sparse_graph() -> ModuleType:
    return load_example("sparse_graph")


@pytest.fixture(scope="session")
def custom_aggregator() -> ModuleType:
    return load_example("custom_aggregator")
