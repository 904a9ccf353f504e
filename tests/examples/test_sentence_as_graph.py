"""examples/sentence_as_graph.py on a few hand-written sentences: the UD train / dev / test flow, every graph shape,
the aggregation and relative-bias rows, throughput, heads vs syntax, the stability sweep (seconds each)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "sentence_as_graph.py"
TINY = ["--epochs", "2", "--seeds", "0", "--batch-size", "4", "--d-model", "16", "--heads", "2",
        "--dim-feedforward", "16", "--char-dim", "4", "--char-channels", "8", "--warmup", "3", "--threads", "1"]


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("sentence_as_graph", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def files(conllu_sample, tmp_path):
    paths = {}
    for name, copies in (("train", 4), ("dev", 1), ("test", 1)):  # 12 / 3 / 3 sentences of lengths 5, 7, 2
        paths[name] = tmp_path / f"{name}.conllu"
        paths[name].write_text(conllu_sample * copies, encoding="utf-8")
    return paths


def test_train_dev_test_flow_writes_table_json_and_plots(example, files, tmp_path):
    out = tmp_path / "out.json"
    result = example.main([
        "--train", str(files["train"]), "--dev", str(files["dev"]), "--test", str(files["test"]), "--graph", "all",
        *TINY, "--throughput", "--throughput-repeats", "1", "--analysis", "--stability", "--stability-lr", "1e-3",
        "--stability-layers", "1", "--stability-epochs", "1", "--json", str(out),
    ])
    saved = json.loads(out.read_text())
    assert saved["graphs"] == result["graphs"]
    assert saved["data"]["train"]["sentences"] == 12 and saved["data"]["test"]["tokens"] == 14
    assert "scored once" in saved["scored"]
    rows = {row["graph"]: row for row in saved["graphs"]}
    assert set(rows) == set(example.GRAPHS)
    lengths = [5, 7, 2]
    assert rows["complete"]["edges_per_sentence"] == pytest.approx(sum(L * L for L in lengths) / 3)
    assert rows["causal"]["edges_per_sentence"] == pytest.approx(sum(L * (L + 1) / 2 for L in lengths) / 3)
    for name in ("chain", "tree"):  # both: 2 (L - 1) edges + L self-loops
        assert rows[name]["edges_per_sentence"] == pytest.approx(sum(3 * L - 2 for L in lengths) / 3)
    for row in rows.values():
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["test_accuracy"] <= 1.0
        assert row["seconds_per_epoch"] > 0 and 1 <= row["best_epoch"] <= 2
    for run in saved["runs"]:  # the reported dev accuracy is the best epoch's, and that epoch's model was tested
        assert run["accuracy"] == max(e["dev_accuracy"] for e in run["epochs"])
    throughput = {row["graph"]: row for row in saved["throughput"]}
    assert throughput["nn.TransformerEncoder (padded)"]["ratio_to_torch"] == 1.0
    assert set(example.GRAPHS) < set(throughput) and all(r["tokens_per_second"] > 0 for r in throughput.values())
    agreement = saved["attention_vs_syntax"]
    assert len(agreement["per_layer"]) == 2 and len(agreement["per_layer"][0]["related"]) == 2
    assert all(0.0 <= v <= 1.0 for layer in agreement["per_layer"] for v in layer["related"])
    assert len(agreement["head_importance"]["loss_increase"]) == 2
    assert len(saved["stability"]["table"]) == 4
    for suffix in ("graphs", "throughput", "attention", "stability"):
        assert (tmp_path / f"out_{suffix}.png").stat().st_size > 0


def test_selected_epoch_is_the_one_scored_on_test(example, files, tmp_path, monkeypatch):
    """The test score comes from the weights of the best dev epoch, not from the last epoch's."""
    scored = []
    original = example.Evaluation.__call__

    def spy(self, model, kind):
        result = original(self, model, kind)
        scored.append((self.sentences is not None and len(self.batches), result[1]))
        return result

    monkeypatch.setattr(example.Evaluation, "__call__", spy)
    result = example.main(["--train", str(files["train"]), "--dev", str(files["dev"]), "--test", str(files["test"]),
                           "--graph", "chain", *TINY, "--epochs", "4", "--patience", "4",
                           "--json", str(tmp_path / "o.json")])
    run = result["runs"][0]
    assert len(run["epochs"]) == 4 and len(scored) == 5  # 4 dev evaluations, then the test file once
    # dev and test hold the same sentences here, so the test score equals the selected epoch's dev score
    assert run["test_accuracy"] == pytest.approx(run["accuracy"])


def test_without_test_only_dev_is_reported(example, files, tmp_path):
    result = example.main(["--train", str(files["train"]), "--dev", str(files["dev"]), "--graph", "window",
                           *TINY, "--json", str(tmp_path / "o.json")])
    assert "no --test" in result["scored"] and "test" not in result["data"]
    assert "test_accuracy" not in result["graphs"][0]


def test_aggregation_and_relative_bias_rows(example, files, tmp_path):
    result = example.main(["--train", str(files["train"]), "--dev", str(files["dev"]), "--graph", "chain", "complete",
                           "--aggr", "attention", "sum", "mean", "max", "--relative", "0", "2", *TINY,
                           "--epochs", "1", "--json", str(tmp_path / "o.json")])
    rows = {(r["graph"], r["aggr"], r["relative"]) for r in result["graphs"]}
    expected = {(g, "attention", k) for g in ("chain", "complete") for k in (0, 2)}
    expected |= {(g, a, 0) for g in ("chain", "complete") for a in ("sum", "mean", "max")}
    assert rows == expected  # a relative bias of attention scores is not combined with sum / mean / max


def test_bad_input_names_the_argument(example, files, tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="--test"):
        example.main(["--train", str(files["train"]), "--dev", str(files["dev"]), "--test",
                      str(tmp_path / "nope.conllu"), *TINY])
    bad = tmp_path / "bad.conllu"
    bad.write_text(files["dev"].read_text().replace("\tNOUN\t", "\tNOUNS\t"), encoding="utf-8")
    out = tmp_path / "never.json"
    with pytest.raises(ValueError, match="--dev.*NOUNS"):
        example.main(["--train", str(files["train"]), "--dev", str(bad), *TINY, "--json", str(out)])
    assert not out.exists()
    for flags, message in ((["--heads", "3"], "divisible"), (["--epochs", "0"], "--epochs"),
                           (["--word-dropout", "1.5"], "--word-dropout"), (["--relative", "-1"], "--relative")):
        with pytest.raises(SystemExit):
            example.parse_args(flags)
        assert message in capsys.readouterr().err


def test_default_data_is_the_shared_ewt_and_nothing_is_downloaded(example, monkeypatch, tmp_path):
    if not example.SHARED_UD.is_dir():
        pytest.skip("no shared data folder")

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    assert example.resolve(None, "train", tmp_path) == example.SHARED_UD / "en_ewt-ud-train.conllu"
    assert example.resolve(None, "dev", tmp_path) == example.SHARED_UD / "en_ewt-ud-dev.conllu"
    args = example.parse_args([])
    assert (args.train, args.dev, args.test, args.graph) == (None, None, None, ["chain"])


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


def test_char_cnn_is_a_width_3_convolution_with_max_over_characters(example):
    import torch

    torch.manual_seed(0)
    cnn = example.CharCNN(num_chars=10, char_dim=4, channels=6, d_model=5)
    chars = torch.tensor([[2, 4, 5, 3, 0, 0], [2, 5, 6, 7, 8, 3]])
    conv = torch.nn.Conv1d(4, 6, 3, padding=1)
    conv.weight.data = cnn.conv.weight.view(6, 3, 4).transpose(1, 2).clone()  # [out, in, width]
    conv.bias.data = cnn.conv.bias.clone()
    expected = []
    for row in chars:
        n = int((row > 0).sum())
        h = torch.relu(conv(cnn.embed(row[:n]).t().unsqueeze(0)))[0]  # [channels, n]
        expected.append(cnn.out(h.amax(dim=1)))
    torch.testing.assert_close(cnn(chars), torch.stack(expected))


def test_unknown_words_and_forms(example, conllu_sample):
    from graphformer.datasets import read_conllu

    sentences = read_conllu(conllu_sample)
    vocab = example.Vocabulary(sentences, min_count=1, max_chars=6)
    batch = vocab.encode(sentences)
    assert (batch["words"] > 0).all()  # every training word is known at min_count 1
    unseen = example.Sentence(words=["Zyxwvutsrq"], upos=["X"], heads=[0], deprels=["root"])
    encoded = vocab.encode([unseen])
    assert int(encoded["words"]) == 0  # unknown word
    row = vocab.chars[int(encoded["forms"])]
    assert row.tolist() == [2, 1, 1, 1, 1, 1, 1, 3]  # markers around the first 3 + last 3 characters, all unseen


def test_from_json_merges_rows_trained_apart_and_checks_their_settings(example, files, tmp_path):
    common = ["--train", str(files["train"]), "--dev", str(files["dev"]), *TINY, "--epochs", "1"]
    first = example.main([*common, "--graph", "chain", "--json", str(tmp_path / "a.json")])
    merged = example.main([*common, "--graph", "causal", "--seeds", "1", "--from-json", str(tmp_path / "a.json"),
                           "--json", str(tmp_path / "b.json")])
    assert [(r["graph"], r["seed"]) for r in merged["runs"]] == [("chain", 0), ("causal", 1)]
    assert merged["graphs"][0] == first["graphs"][0]
    with pytest.raises(ValueError, match="--from-json.*lr=0.002"):
        example.main([*common, "--lr", "1e-3", "--from-json", str(tmp_path / "a.json"),
                      "--json", str(tmp_path / "c.json")])
    assert not (tmp_path / "c.json").exists()
