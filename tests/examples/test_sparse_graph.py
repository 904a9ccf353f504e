"""Tests of examples/sparse_graph.py on tiny settings (a couple of epochs on Cora)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

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


@pytest.mark.parametrize("seed", [0, 3])
def test_gat_and_gat_pyg_start_from_the_same_weights(sparse_graph, seed):
    """Same seed, same initial weights: the comparison of `gat` with `gat-pyg` is paired."""
    weights = {}
    for name in ("gat", "gat-pyg"):
        build = sparse_graph.SPECS[name][0]
        torch.manual_seed(seed)
        weights[name] = build(20, 4, 0).state_dict()
    assert list(weights["gat"]) == list(weights["gat-pyg"])
    for key, value in weights["gat-pyg"].items():
        assert torch.equal(weights["gat"][key], value), key


def test_gat_and_gat_pyg_train_alike_given_the_same_dropout_masks(sparse_graph, monkeypatch):
    """In training mode, with the same input and attention dropout masks, both models give the same loss and
    gradients: the layers differ only in how they draw the attention mask from the RNG."""
    import torch.nn.functional as F
    import torch_geometric.nn.conv.gat_conv as pyg_gat_conv
    from torch_geometric.utils import add_self_loops, remove_self_loops

    import graphformer.aggr.attention

    generator = torch.Generator().manual_seed(0)
    num_nodes, features, classes = 40, 12, 3
    x = torch.rand(num_nodes, features, generator=generator)
    edge_index = torch.randint(0, num_nodes, (2, 160), generator=generator)  # with some self-loops
    y = torch.randint(0, classes, (num_nodes,), generator=generator)
    looped = add_self_loops(remove_self_loops(edge_index)[0], num_nodes=num_nodes)[0]  # PyG's edge order
    to_graphformer_order = torch.argsort(looped[1], stable=True)  # graphformer visits edges sorted by target
    keep = [torch.rand(looped.size(1), heads, generator=generator) >= 0.6 for heads in (8, 1)]  # layer 1, 2
    calls = {"gat": 0, "gat-pyg": 0}

    def graphformer_mask(shape, p, device=None, generator=None):
        mask = keep[calls["gat"]]
        calls["gat"] += 1
        assert mask.shape == shape
        return mask[to_graphformer_order]

    def pyg_dropout(alpha, p=0.5, training=True):
        mask = keep[calls["gat-pyg"]]
        calls["gat-pyg"] += 1
        return alpha * mask / (1 - p)

    monkeypatch.setattr(graphformer.aggr.attention, "dropout_mask", graphformer_mask)
    monkeypatch.setattr(pyg_gat_conv, "F", SimpleNamespace(leaky_relu=F.leaky_relu, dropout=pyg_dropout))
    results = {}
    for name in ("gat", "gat-pyg"):
        torch.manual_seed(0)
        model = sparse_graph.SPECS[name][0](features, classes, 0).train()
        torch.manual_seed(1)  # the same input-dropout masks
        loss = F.cross_entropy(model(x, edge_index), y)
        loss.backward()
        results[name] = loss.detach(), {key: p.grad for key, p in model.named_parameters()}
    assert calls == {"gat": 2, "gat-pyg": 2}
    torch.testing.assert_close(results["gat"][0], results["gat-pyg"][0])
    for key, grad in results["gat-pyg"][1].items():
        torch.testing.assert_close(results["gat"][1][key], grad, msg=key)


def test_gat_pyg_runs_beside_gat_and_reports_the_paired_difference(sparse_graph, planetoid_root, planetoid_cache,
                                                                   tmp_path):
    out_json = tmp_path / "parity.json"
    rows = sparse_graph.main(tiny(planetoid_cache, "--model", "gat", "gat-pyg", "--epochs", "2", "--seeds", "2",
                                  "--pe", "none", "--json", str(out_json)))
    assert [row["model"] for row in rows] == ["gat", "gat-pyg"]
    assert all(len(row["test_accs"]) == 2 and len(row["curves_seed0"]["val_acc"]) == 2 for row in rows)
    assert rows[0]["parameters"] == rows[1]["parameters"]
    (paired,) = json.loads(out_json.read_text())["paired"]
    difference = [a - b for a, b in zip(rows[0]["test_accs"], rows[1]["test_accs"])]
    assert paired["model"] == "gat" and paired["reference"] == "gat-pyg" and paired["seeds"] == 2
    assert paired["mean_difference"] == pytest.approx(sum(difference) / 2, abs=1e-3)
    assert sum(paired["wins_ties_losses"]) == 2
