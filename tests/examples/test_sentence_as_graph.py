"""Smoke run of examples/sentence_as_graph.py on the hand-written CoNLL-U sample (a few seconds)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "sentence_as_graph.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("sentence_as_graph", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_run_writes_table_json_and_plots(example, conllu_sample, tmp_path):
    train = tmp_path / "train.conllu"
    train.write_text(conllu_sample * 4, encoding="utf-8")  # 12 sentences
    test = tmp_path / "test.conllu"
    test.write_text(conllu_sample, encoding="utf-8")  # lengths 5, 7, 2
    out = tmp_path / "out.json"
    result = example.main([
        "--train", str(train), "--test", str(test), "--graph", "all", "--epochs", "2", "--seeds", "0",
        "--batch-size", "4", "--d-model", "16", "--heads", "2", "--dim-feedforward", "16", "--threads", "1",
        "--stability", "--stability-lr", "1e-3", "--stability-layers", "1", "--warmup", "3", "--json", str(out),
    ])
    saved = json.loads(out.read_text())
    assert saved["graphs"] == result["graphs"]
    rows = {row["graph"]: row for row in saved["graphs"]}
    assert set(rows) == set(example.GRAPHS)
    lengths = [5, 7, 2]
    assert rows["complete"]["edges_per_sentence"] == pytest.approx(sum(L * L for L in lengths) / 3)
    for name in ("chain", "tree"):  # both: 2 (L - 1) edges + L self-loops
        assert rows[name]["edges_per_sentence"] == pytest.approx(sum(3 * L - 2 for L in lengths) / 3)
    assert all(0.0 <= row["accuracy"] <= 1.0 and row["seconds_per_epoch"] > 0 for row in rows.values())
    agreement = saved["attention_vs_syntax"]
    assert len(agreement["per_layer"]) == 2 and len(agreement["per_layer"][0]["related"]) == 2
    assert all(0.0 <= v <= 1.0 for layer in agreement["per_layer"] for v in layer["related"])
    assert len(agreement["head_importance"]["loss_increase"]) == 2
    assert len(saved["stability"]["table"]) == 4
    for suffix in ("graphs", "attention", "stability"):
        assert (tmp_path / f"out_{suffix}.png").stat().st_size > 0


def test_graph_builders_cover_every_choice(example, conllu_sample):
    from graphformer.datasets import read_conllu

    sentences = read_conllu(conllu_sample)
    vocab = example.Vocabulary(sentences)
    batch = vocab.encode(sentences)
    args = example.parse_args(["--window", "1"])
    for kind in example.GRAPHS:
        graph = example.build_graph(kind, batch, args)
        assert example.num_edges(graph) > 0
    with pytest.raises(ValueError, match="unknown graph"):
        example.build_graph("star", batch, args)


@pytest.mark.parametrize("graph", ["complete", "bptree", "tree+chain"])
def test_relative_distance_bias_option(example, conllu_sample, tmp_path, graph):
    train = tmp_path / "train.conllu"
    train.write_text(conllu_sample * 2, encoding="utf-8")
    result = example.main([
        "--train", str(train), "--val-fraction", "0.34", "--graph", graph, "--epochs", "1", "--d-model", "8",
        "--heads", "2", "--dim-feedforward", "8", "--relative", "2", "--threads", "1",
        "--json", str(tmp_path / "rel.json"),
    ])
    assert result["config"]["relative"] == 2
    assert [row["graph"] for row in result["graphs"]] == [graph]
