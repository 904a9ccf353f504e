"""Tests of examples/node_classification.py: every model on a tiny synthetic npz graph, the protocol's metric and
epoch selection, bad input (a clear error naming the key, nothing written), and one epoch on the shared minesweeper."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import SHARED_DATA
from tests.examples.conftest import REPO_ROOT, load_example

MINESWEEPER = SHARED_DATA / "heterophilous" / "minesweeper.npz"


@pytest.fixture(scope="module")
def example():
    return load_example("node_classification")


def graph_arrays(num_classes: int, num_nodes: int = 60, splits: int = 3, isolated: int = 3, seed: int = 0) -> dict:
    """A random graph in the benchmark's npz format; its last ``isolated`` nodes have no edge, and every split
    holds every class in each of its train / val / test parts."""
    rng = np.random.default_rng(seed)
    labels = np.arange(num_nodes) % num_classes
    rng.shuffle(labels)
    features = rng.normal(size=(num_nodes, 5)).astype(np.float32)
    features[:, 0] += labels  # learnable
    edges = rng.integers(0, num_nodes - isolated, size=(150, 2))
    masks = np.zeros((3, splits, num_nodes), dtype=bool)
    for split in range(splits):
        order = rng.permutation(num_nodes)
        for part, nodes in enumerate(np.split(order, [num_nodes // 2, 3 * num_nodes // 4])):
            masks[part, split, nodes] = True
    return {"node_features": features, "node_labels": labels, "edges": edges, "train_masks": masks[0],
            "val_masks": masks[1], "test_masks": masks[2]}


def write_npz(path: Path, arrays: dict) -> Path:
    np.savez(path, **arrays)
    return path


def tiny(npz: Path, *extra: str) -> list[str]:
    return ["--npz", str(npz), "--epochs", "2", "--splits", "2", "--hidden", "16", "--heads", "2", "--threads", "1",
            "--no-progress", *extra]


# -- every model ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("num_classes", "metric"), [(2, "roc_auc"), (3, "accuracy")])
def test_every_model_runs_and_writes_json_and_png(example, tmp_path, num_classes, metric):
    npz = write_npz(tmp_path / "graph.npz", graph_arrays(num_classes))
    json_path, png_path = tmp_path / "out" / "results.json", tmp_path / "out" / "results.png"
    result = example.main(tiny(npz, "--json", str(json_path), "--png", str(png_path)))
    saved = json.loads(json_path.read_text())
    assert list(saved["models"]) == list(example.MODELS)
    assert saved["meta"]["metric"] == metric and saved["meta"]["isolated_nodes"] == 3
    for name, row in saved["models"].items():
        assert {"test_mean", "test_std", "val_mean", "val_std", "metric", "peer", "s_per_epoch", "peak_memory_mb",
                "memory_measure", "parameters"} <= set(row)
        assert row["metric"] == metric and row["peer"] == name.endswith("-pyg")
        assert all(math.isfinite(row[key]) for key in ("test_mean", "test_std", "val_mean", "val_std"))
        assert 0 <= row["test_mean"] <= 100 and row["test_std"] >= 0 and row["parameters"] > 0
        assert row["splits"] == 2 and [run["split"] for run in row["runs"]] == [0, 1]
        assert row["test_mean"] == pytest.approx(result["models"][name]["test_mean"])
    assert png_path.stat().st_size > 0


@pytest.mark.parametrize("name", ["resnet", "gat", "gat-sep", "gt", "gt-sep", "gps-performer", "gps-sgformer",
                                  "sgformer", "polynormer", "exphormer", "sgformer-pyg", "polynormer-pyg"])
def test_isolated_nodes_get_finite_outputs_and_gradients(example, name):
    assert name in example.MODELS
    arrays = graph_arrays(3, isolated=5)
    data = example.check_graph("g", "test", *(arrays[key] for key in example.NPZ_KEYS))
    args = example.parse_args(["--hidden", "16", "--heads", "2", "--layers", "2", "--npz", "unused.npz"])
    spec = example.MODELS[name]
    model = spec.build(data.x.size(1), data.num_classes, args)
    graph = example.Graph(data.edge_index, data.num_nodes)
    graph.extra = spec.prepare(graph, torch.Generator().manual_seed(0))
    for stage in ("local", "global") if spec.warmup else ("only",):
        if stage == "global":
            model.start_global()
        out = model(data.x, graph)  # [N, C]
        assert out.shape == (60, 3) and torch.isfinite(out).all()
        out[-5:].sum().backward()  # the isolated nodes
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        model.zero_grad()


def test_exphormer_graph_is_the_union_with_an_expander_and_a_virtual_node(example):
    arrays = graph_arrays(2)
    data = example.check_graph("g", "test", *(arrays[key] for key in example.NPZ_KEYS))
    graph = example.Graph(data.edge_index, data.num_nodes)
    extended, kinds = example.ExphormerNet.attention_graph(graph, torch.Generator().manual_seed(0))
    assert extended.num_nodes == 61 and kinds.shape == (extended.edge_index.size(1), 4)
    real = extended.node_index
    local = {(int(real[j]), int(real[i])) for j, i in data.edge_index.t()}
    edges = list(map(tuple, extended.edge_index.t().tolist()))
    assert local <= set(edges)
    for (j, i), kind in zip(edges, kinds.tolist()):
        assert kind[0] == ((j, i) in local)
        assert kind[2] == (j == 0 or i == 0)  # the virtual node comes first
        assert kind[3] == (j == i and j != 0)
        assert any(kind)
    in_degree = torch.bincount(extended.edge_index[1][kinds[:, 1] > 0], minlength=61)[1:]
    assert (in_degree >= 2).all()  # every real node has expander neighbours (a cycle's two at least)


# -- the protocol --------------------------------------------------------------------------------------------------
def roc_auc_by_pairs(scores: list[float], labels: list[int]) -> float:
    positives = [s for s, y in zip(scores, labels) if y == 1]
    negatives = [s for s, y in zip(scores, labels) if y != 1]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


@pytest.mark.parametrize("seed", range(4))
def test_roc_auc_equals_the_pairwise_count(example, seed):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (50,), generator=gen)
    labels[:2] = torch.tensor([0, 1])
    scores = torch.randint(0, 6, (50,), generator=gen).float()  # many ties
    assert example.roc_auc(scores, labels) == pytest.approx(roc_auc_by_pairs(scores.tolist(), labels.tolist()))
    logits = torch.stack([torch.zeros(50), scores], dim=1)
    assert example.score(logits, labels, "roc_auc") == pytest.approx(100 * example.roc_auc(scores, labels))
    logits3 = torch.randn(50, 3, generator=gen)
    labels3 = torch.randint(0, 3, (50,), generator=gen)
    expected = 100 * (logits3.argmax(1) == labels3).double().mean().item()
    assert example.score(logits3, labels3, "accuracy") == pytest.approx(expected)


def test_the_best_validation_epoch_gives_the_test_metric(example, tmp_path):
    npz = write_npz(tmp_path / "graph.npz", graph_arrays(3))
    result = example.main(tiny(npz, "--models", "gat-sep,polynormer", "--epochs", "12", "--patience", "3"))
    for name, row in result["models"].items():
        for run in row["runs"]:
            curve = run["val_curve"]
            assert run["epoch"] == int(np.argmax(curve)) + 1 and run["val"] == pytest.approx(max(curve), abs=1e-3)
            if name == "gat-sep" and run["epochs_run"] < 12:  # stopped early: 3 epochs without a better one
                assert run["epochs_run"] == run["epoch"] + 3
            if name == "polynormer":  # no early stop during the local warm-up (epochs 1..6)
                assert run["epochs_run"] >= 6 + 1
        vals = [run["val"] for run in row["runs"]]
        assert row["val_mean"] == pytest.approx(float(np.mean(vals)), abs=1e-3)


def test_random_planetoid_splits_are_disjoint_fixed_and_complete(example):
    train, val, test = example.random_splits(101)
    assert train.shape == (10, 101)
    assert (train.int() + val.int() + test.int() == 1).all()
    assert train.sum(1).eq(50).all() and val.sum(1).eq(25).all()
    assert torch.equal(train, example.random_splits(101)[0]) and not torch.equal(train[0], train[1])


def test_merge_of_two_runs(example, tmp_path):
    npz = write_npz(tmp_path / "graph.npz", graph_arrays(2))
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    example.main(tiny(npz, "--models", "gat", "--json", str(first)))
    example.main(tiny(npz, "--models", "resnet", "--json", str(second)))
    merged = tmp_path / "merged.json"
    example.main(["--from-json", str(first), str(second), "--json", str(merged)])
    assert list(json.loads(merged.read_text())["models"]) == ["resnet", "gat"]  # registry order


# -- bad input -----------------------------------------------------------------------------------------------------
def _without(key: str):
    return lambda arrays: arrays.pop(key)


def _set(key: str, value):
    return lambda arrays: arrays.__setitem__(key, value(arrays))


BAD_INPUT = {
    "missing key": (_without("val_masks"), "val_masks"),
    "masks of the wrong shape": (_set("test_masks", lambda a: a["test_masks"][:, :-1]), "test_masks"),
    "masks transposed": (_set("train_masks", lambda a: a["train_masks"].T), "train_masks"),
    "masks of different split counts": (_set("val_masks", lambda a: a["val_masks"][:2]), "val_masks"),
    "masks that overlap": (_set("test_masks", lambda a: a["test_masks"] | a["train_masks"]), "overlap"),
    "labels out of range": (_set("node_labels", lambda a: np.where(np.arange(60) == 7, -1, a["node_labels"])),
                            "node_labels"),
    "labels not integer": (_set("node_labels", lambda a: a["node_labels"].astype(np.float32) + 0.5), "node_labels"),
    "labels of the wrong length": (_set("node_labels", lambda a: a["node_labels"][:-1]), "node_labels"),
    "one class only": (_set("node_labels", lambda a: np.zeros(60, dtype=np.int64)), "node_labels"),
    "edges outside the node range": (_set("edges", lambda a: np.vstack([a["edges"], [[3, 60]]])), "edges"),
    "edges as [2, E]": (_set("edges", lambda a: a["edges"].T), "edges"),
    "features with NaN": (_set("node_features", lambda a: np.where(np.arange(5) == 2, np.nan, a["node_features"])),
                          "node_features"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_a_clear_error_and_writes_nothing(example, tmp_path, case):
    change, named = BAD_INPUT[case]
    arrays = graph_arrays(2)
    change(arrays)
    npz = write_npz(tmp_path / "bad.npz", arrays)
    out = tmp_path / "out"
    with pytest.raises(example.InputError, match=named):
        example.main(tiny(npz, "--json", str(out / "r.json"), "--png", str(out / "r.png")))
    assert not out.exists()


def test_one_class_in_a_validation_split_is_an_error_for_roc_auc(example, tmp_path):
    arrays = graph_arrays(2)
    arrays["node_labels"][arrays["val_masks"][1]] = 0
    with pytest.raises(example.InputError, match=r"val_masks.*split 1 holds one class"):
        example.main(tiny(write_npz(tmp_path / "bad.npz", arrays)))


def test_more_splits_than_the_file_has_is_an_error(example, tmp_path):
    npz = write_npz(tmp_path / "graph.npz", graph_arrays(2, splits=3))
    with pytest.raises(example.InputError, match="--splits 4"):
        example.main([*tiny(npz, "--json", str(tmp_path / "r.json")), "--splits", "4"])
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(("argv", "named"), [(["--models", "gat,transformer"], "--models"),
                                              (["--hidden", "10", "--heads", "4"], "--heads"),
                                              (["--dropout", "1.0"], "--dropout"), (["--splits", "0"], "--splits")])
def test_bad_arguments_name_the_option(example, capsys, argv, named):
    with pytest.raises(SystemExit):
        example.parse_args(argv)
    assert named in capsys.readouterr().err


def test_command_line_error_is_one_line_and_writes_nothing(tmp_path):
    arrays = graph_arrays(2)
    arrays.pop("edges")
    npz = write_npz(tmp_path / "bad.npz", arrays)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(REPO_ROOT / "examples" / "node_classification.py"), *tiny(npz),
                             "--json", str(tmp_path / "r.json")], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "error:" in result.stderr and "'edges'" in result.stderr
    assert not (tmp_path / "r.json").exists()


def test_missing_shared_file_downloads_into_the_cache_and_says_what_to_do_offline(example, tmp_path, monkeypatch):
    from torch_geometric.datasets import heterophilous_graph_dataset

    def offline(*args, **kwargs):
        raise OSError("Cannot connect to host github.com:443")

    monkeypatch.setattr(example, "SHARED_DATA", tmp_path / "no-shared-data")
    monkeypatch.setattr(heterophilous_graph_dataset, "download_url", offline)
    with pytest.raises(SystemExit) as error:
        example.main(["--dataset", "tolokers", "--cache", str(tmp_path / "cache"), "--no-progress"])
    message = str(error.value)
    assert str(tmp_path / "cache" / "heterophilous") in message and "--npz" in message


# -- real data -----------------------------------------------------------------------------------------------------
def listing(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in [root, *root.rglob("*")]}


def test_one_epoch_of_resnet_on_the_shared_minesweeper_writes_nothing_beside_it(example, tmp_path):
    if not MINESWEEPER.is_file():
        pytest.skip(f"offline minesweeper not found at {MINESWEEPER} (no downloads in tests)")
    before = listing(MINESWEEPER.parent)
    cache = tmp_path / "cache"
    result = example.main(["--dataset", "minesweeper", "--models", "resnet", "--epochs", "1", "--splits", "1",
                           "--threads", "1", "--no-progress", "--cache", str(cache),
                           "--json", str(tmp_path / "r.json")])
    row = result["models"]["resnet"]
    assert row["metric"] == "roc_auc" and 0 <= row["test_mean"] <= 100 and math.isfinite(row["test_mean"])
    assert result["meta"]["data"].startswith("minesweeper: 10,000 nodes, 39,402 undirected edges, 7 features, 2")
    assert listing(MINESWEEPER.parent) == before and not cache.exists()


def test_cora_gets_ten_random_splits_and_accuracy_without_writing_into_the_shared_copy(example, planetoid_root,
                                                                                        tmp_path):
    before = listing(planetoid_root)
    cache = tmp_path / "cache"
    result = example.main(["--dataset", "cora", "--models", "resnet", "--epochs", "1", "--splits", "1", "--threads",
                           "1", "--no-progress", "--cache", str(cache)])
    assert result["models"]["resnet"]["metric"] == "accuracy"
    assert result["meta"]["data"].startswith("cora: 2,708 nodes, 5,278 undirected edges, 1433 features, 7 classes")
    assert listing(planetoid_root) == before and (cache / "planetoid" / "Cora" / "raw").is_dir()
