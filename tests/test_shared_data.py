"""The shared offline data (``../shared/data``) is read-only by contract, whatever its permission bits say.

PyG writes ``processed/`` beside ``raw/``. The examples and benchmarks that read Planetoid from the shared folder by
default must copy the raw files to a cache instead, even when the folder happens to be writable. These tests run
those code paths against a writable stand-in for the shared folder and compare its listing (names, sizes, mtimes)
before and after; ``tests/conftest.py`` also aborts any write of the test process into the real folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA
from tests.examples.conftest import load_example

CORA_RAW = SHARED_DATA / "planetoid" / "Cora" / "raw"


def listing(root: Path) -> dict[str, tuple[int, int]]:
    """``{relative path: (mtime_ns, size)}`` of ``root`` and everything under it."""
    paths = [root, *root.rglob("*")]
    return {str(path.relative_to(root)): (path.stat().st_mtime_ns, path.stat().st_size) for path in paths}


@pytest.fixture
def writable_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A writable copy of ``../shared/data/planetoid`` (raw files only) that the code below takes for the shared one."""
    if not CORA_RAW.is_dir():
        pytest.skip(f"offline Cora copy not found at {CORA_RAW} (no downloads in tests)")
    shared = tmp_path / "shared" / "planetoid"
    shutil.copytree(CORA_RAW, shared / "Cora" / "raw")
    import benchmarks.cases

    monkeypatch.setattr(benchmarks.cases, "SHARED_PLANETOID", shared)
    return shared


def test_default_planetoid_root_is_never_written(writable_shared, tmp_path):
    from torch_geometric.datasets import Planetoid

    import benchmarks.cases

    before = listing(writable_shared)
    cache = tmp_path / "cache"

    sparse_graph = load_example("sparse_graph")
    sparse_graph.SHARED_ROOT = writable_shared  # a fresh module object: nothing else sees the change
    data, num_classes = sparse_graph.load_dataset(sparse_graph.parse_args(["--cache", str(cache), "--pe", "none"]))
    assert data.num_nodes == 2708 and num_classes == 7
    assert sparse_graph.resolve_root(None, str(cache), "Cora") == cache
    assert sparse_graph.resolve_root(None, str(cache), "CiteSeer") == cache  # not in the shared folder: downloads

    custom_aggregator = load_example("custom_aggregator")
    custom_aggregator.SHARED_ROOT = writable_shared
    assert custom_aggregator.load_cora(None, str(tmp_path / "cache2"))[0].num_nodes == 2708

    assert Planetoid(str(benchmarks.cases.planetoid_root("Cora")), "Cora")[0].num_nodes == 2708

    assert listing(writable_shared) == before
    assert (cache / "Cora" / "processed").is_dir() and (tmp_path / "cache2" / "Cora" / "processed").is_dir()


def test_a_given_writable_root_is_used_in_place(tmp_path):
    """``--root`` is the user's folder: PyG may write ``processed/`` there, as it always does."""
    sparse_graph = load_example("sparse_graph")
    (tmp_path / "mine" / "Cora" / "raw").mkdir(parents=True)
    assert sparse_graph.resolve_root(str(tmp_path / "mine"), str(tmp_path / "cache"), "Cora") == tmp_path / "mine"


def test_writes_into_the_real_shared_folder_are_refused():
    """The session's audit hook aborts a write before it happens (a missing folder: nothing is created either way)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"no shared data folder at {SHARED_DATA}")
    with pytest.raises(PermissionError, match="read-only by contract"):
        open(SHARED_DATA / "no-such-folder" / "probe.txt", "w")
    with pytest.raises(PermissionError, match="read-only by contract"):
        (SHARED_DATA / "no-such-folder").mkdir()
