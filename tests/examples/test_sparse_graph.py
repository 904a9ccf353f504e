"""Tests of examples/sparse_graph.py on tiny settings (a couple of epochs on Cora)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.examples.conftest import REPO_ROOT

RAW_FILES = [f"ind.cora.{ext}" for ext in ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")]


def tiny(cache: Path, *extra: str) -> list[str]:
    return ["--cache", str(cache), "--no-progress", "--threads", "1", *extra]


@pytest.mark.parametrize("read_only", [True, False])
def test_resolve_root_never_writes_into_a_read_only_root(sparse_graph, tmp_path, read_only):
    root, cache = tmp_path / "root", tmp_path / "cache"
    raw = root / "Cora" / "raw"
    raw.mkdir(parents=True)
    for index, name in enumerate(RAW_FILES):
        (raw / name).write_bytes(bytes([index]) * 10)
    if read_only:
        (root / "Cora").chmod(0o555)
    try:
        resolved = sparse_graph.resolve_root(str(root), str(cache), "Cora")
    finally:
        (root / "Cora").chmod(0o755)
    assert resolved == (cache if read_only else root)
    assert sorted(p.name for p in (root / "Cora").iterdir()) == ["raw"]
    if read_only:
        for name in RAW_FILES:
            assert (cache / "Cora" / "raw" / name).read_bytes() == (raw / name).read_bytes()


def test_missing_data_without_network_says_what_to_do(sparse_graph, tmp_path, monkeypatch):
    from torch_geometric.datasets import planetoid

    def offline(*args, **kwargs):
        raise OSError("Cannot connect to host github.com:443 [Name or service not known]")

    monkeypatch.setattr(planetoid.fs, "cp", offline)
    with pytest.raises(SystemExit) as error:
        sparse_graph.main(["--root", str(tmp_path), "--epochs", "1", "--no-progress"])
    message = str(error.value)
    assert str(tmp_path / "Cora" / "raw") in message and "ind.cora.x" in message and "--root" in message


@pytest.mark.parametrize("num_neighbors", [[3, 2], [5], [-1]])
def test_neighbor_loader_samples_real_edges_up_to_k(sparse_graph, planetoid_root, planetoid_cache, num_neighbors):
    args = sparse_graph.parse_args(tiny(planetoid_cache, "--pe", "none"))
    data, _ = sparse_graph.load_dataset(args)
    seeds = data.train_mask.nonzero().view(-1)
    loader = sparse_graph.make_neighbor_loader(data, seeds, num_neighbors, batch_size=32, seed=0)
    edges = set(map(tuple, data.edge_index.t().tolist()))
    in_degree = torch.bincount(data.edge_index[1], minlength=data.num_nodes)
    batches = list(loader)
    assert sum(batch.batch_size for batch in batches) == seeds.numel()
    for batch in batches:
        node = batch.n_id  # global id of every local node, seeds first
        assert node.unique().numel() == node.numel()
        assert torch.equal(batch.x, data.x[node]) and torch.equal(batch.y, data.y[node])
        sampled = list(zip(node[batch.edge_index[0]].tolist(), node[batch.edge_index[1]].tolist()))
        assert set(sampled) <= edges and len(set(sampled)) == len(sampled)
        # hop 1: every seed receives min(in-degree, k) of its incoming edges
        k = num_neighbors[0]
        seed_edges = batch.edge_index[:, : batch.num_sampled_edges[0]]
        received = torch.bincount(seed_edges[1], minlength=batch.batch_size)[: batch.batch_size]
        expected = in_degree[node[: batch.batch_size]]
        assert torch.equal(received, expected if k < 0 else expected.clamp(max=k))


def test_all_models_tiny_run_writes_table_json_and_png(sparse_graph, planetoid_root, planetoid_cache, tmp_path):
    out_json, out_png = tmp_path / "cora.json", tmp_path / "cora.png"
    rows = sparse_graph.main(tiny(planetoid_cache, "--model", "all", "--epochs", "1", "--pe", "rw", "--pe-dim", "4",
                                  "--json", str(out_json), "--png", str(out_png)))
    names = [row["model"] for row in rows]
    assert names == ["graphconv-sum", "graphconv-mean", "graphconv-max", "gat", "attention", "transformer",
                     "transformer+rwpe", "transformer-complete", "transformer-complete+rwpe"]
    table = json.loads(out_json.read_text())
    assert table["dataset"] == "Cora" and table["processes"] == 1 and [r["model"] for r in table["results"]] == names
    for row in table["results"]:
        assert 0.0 <= row["test_acc_mean"] <= 100.0 and row["seconds_per_epoch"] > 0 and row["seeds"] == 1
        assert len(row["curves_seed0"]["val_acc"]) == 1
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    merged = sparse_graph.main(["--from-json", str(out_json), str(out_json), "--json", str(tmp_path / "m.json")])
    assert [row["model"] for row in merged] == names + names


@pytest.mark.parametrize("model,seeds,threshold", [("gat", 2, 70.0), ("graphconv-mean", 1, 60.0)])
def test_models_learn_cora(sparse_graph, planetoid_root, planetoid_cache, model, seeds, threshold):
    """A few dozen epochs lift test accuracy far above the 7-class chance level (about 14-32 %)."""
    rows = sparse_graph.main(tiny(planetoid_cache, "--model", model, "--epochs", "30", "--seeds", str(seeds)))
    assert rows[0]["test_acc_mean"] > threshold
    assert len(rows[0]["test_accs"]) == seeds


def test_neighbor_sampling_training(sparse_graph, planetoid_root, planetoid_cache):
    rows = sparse_graph.main(tiny(planetoid_cache, "--model", "gat", "transformer", "--neighbor-sampling",
                                  "--num-neighbors", "5", "5", "--batch-size", "32", "--epochs", "2", "--pe", "none"))
    assert [row["model"] for row in rows] == ["gat", "transformer"]
    assert all(len(row["curves_seed0"]["train_loss"]) == 2 for row in rows)


@pytest.mark.parametrize("extra", [[], ["--neighbor-sampling", "--batch-size", "32"]])
def test_torchrun_two_processes_ddp(planetoid_root, planetoid_cache, tmp_path, extra):
    """Two gloo processes on one machine. Robust on a busy machine: ``--standalone`` lets the OS pick a free port
    (no fixed port to collide with a parallel run), gloo talks over the loopback interface, each process uses one
    thread, rank 0 prepares the data before the other reads it, and the timeout only catches a hang (the run takes
    seconds to a few minutes; gloo's own collective timeout is 30 minutes)."""
    out_json = tmp_path / "ddp.json"
    script = str(REPO_ROOT / "examples" / "sparse_graph.py")
    options = tiny(planetoid_cache, "--model", "gat", "--epochs", "2", "--pe", "none", "--json", str(out_json),
                   *extra)
    options += ["--device", "cpu"]  # gloo: the test must not need two GPUs
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", script, *options]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if Path("/sys/class/net/lo").exists():  # Linux: keep gloo off the machine's other interfaces
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    table = json.loads(out_json.read_text())
    assert table["processes"] == 2
    assert table["mode"] == ("neighbor sampling" if extra else "full batch")
    assert len(table["results"][0]["curves_seed0"]["val_acc"]) == 2
