"""--quick smoke test of the benchmark CLI: it runs cases in subprocesses and writes JSON/Markdown/PNG."""

from __future__ import annotations

import json

import pytest

from benchmarks.run import main

# a hung case fails its test after this long instead of hanging the suite; busy machines stay far below it
CASE_TIMEOUT = ["--case-timeout", "900"]


@pytest.mark.parametrize(
    "suite,impls,size",
    [
        ("sparse", "gf_attentionconv,pyg_transformerconv", "2000"),
        ("aggr", "gf_attention,pyg_attention", "2000"),
        ("dense", "graphformer,torch_encoder_layer", "16"),
        ("long", "fully_connected,window_masked,window_implicit,window_edge_index,pyg_transformerconv", "64"),
    ],
)
def test_quick_run_writes_results(tmp_path, suite, impls, size):
    results = main(["--suite", suite, "--quick", "--device", "cpu", "--impls", impls, "--sizes", size,
                    "--repeats", "1", "--warmup", "0", "--threads", "1", "--out", str(tmp_path), *CASE_TIMEOUT])
    out = tmp_path / "cpu"
    data = json.loads((out / "results.json").read_text())
    assert len(data["results"]) == len(results) >= 2
    ours = [r for r in data["results"] if r["impl"].startswith(("gf_", "window_")) or r["impl"] == "graphformer"]
    assert ours and all(r["time_s"] > 0 and r["peak_memory_bytes"] > 0 and r["threads"] == 1 for r in ours)
    assert all("time_ratio_to_peer" in r for r in ours)
    assert "| " + impls.split(",")[0] in (out / "results.md").read_text()
    assert list(out.glob("*.png"))


@pytest.mark.parametrize(
    "impls,size",
    [("gat,pyg_gat", "5000"), ("transformer,pyg_transformer", "5000"), ("cora_gat_epoch,pyg_cora_gat_epoch", "10556")],
    ids=["gat", "transformer", "cora"],
)
def test_quick_train_suite(tmp_path, impls, size):
    """Training mode with attention dropout: graphformer's layer against PyG's namesake in the same run."""
    if impls.startswith("transformer"):
        import graphformer.nn

        if not hasattr(graphformer.nn, "TransformerConv"):
            pytest.skip("graphformer.nn.TransformerConv is not in this branch yet")
    results = main(["--suite", "train", "--quick", "--device", "cpu", "--impls", impls, "--sizes", size,
                    "--repeats", "1", "--warmup", "1", "--threads", "1", "--out", str(tmp_path), *CASE_TIMEOUT])
    ours = [r for r in results if r["impl"] == impls.split(",")[0]]
    assert len(results) == 2 and len(ours) == 1, results
    assert ours[0]["time_s"] > 0 and ours[0]["threads"] == 1, ours[0]
    assert "time_ratio_to_peer" in ours[0] and ours[0]["peer"] == impls.split(",")[1]
    markdown = (tmp_path / "cpu" / "results.md").read_text()
    assert "### train" in markdown and f"| {impls.split(',')[0]} |" in markdown


def test_train_layer_cases_run_in_training_mode_with_attention_dropout():
    import torch

    from benchmarks.cases import list_cases

    cases = list_cases("train", quick=False)
    assert {c["impl"] for c in cases} == {"gat", "pyg_gat", "transformer", "pyg_transformer", "cora_gat_epoch",
                                          "pyg_cora_gat_epoch"}
    assert all(c["size"] == 1_040_000 for c in cases if c["graph"] == "random")
    from benchmarks.cases import build

    quick = {c["impl"]: c for c in list_cases("train", quick=True)}
    fn = build(quick["pyg_gat"], torch.device("cpu"))
    conv = next(cell.cell_contents for cell in fn.__closure__ if isinstance(cell.cell_contents, torch.nn.Module))
    assert conv.training and conv.dropout == 0.5 and conv.heads == 8 and conv.out_channels == 8


def test_dense_cases_share_weights_and_inputs():
    """graphformer's dense case is torch's layer copied with ``from_torch``, on the same batch."""
    import torch

    from benchmarks.cases import build, list_cases

    cases = {c["impl"]: c for c in list_cases("dense", quick=True) if c["size"] == 16}
    assert all(c["peer"] == "torch_encoder_layer" for impl, c in cases.items() if impl != "torch_encoder_layer")
    torch_out = build(cases["torch_encoder_layer"], torch.device("cpu"))()
    ours = build(cases["graphformer"], torch.device("cpu"))()
    torch.testing.assert_close(ours, torch_out.reshape(ours.shape), atol=1e-5, rtol=1e-4)


def test_quick_graph_suite_runs_gps_against_pyg(tmp_path):
    """Suite ``graph``: GPSLayer (copied with from_pyg) against PyG's GPSConv, time and memory ratios in one run."""
    results = main(["--suite", "graph", "--quick", "--device", "cpu", "--impls", "gps,pyg_gps", "--sizes", "16",
                    "--repeats", "1", "--warmup", "0", "--threads", "1", "--out", str(tmp_path), *CASE_TIMEOUT])
    assert {r["impl"] for r in results} == {"gps", "pyg_gps"} and all(r["graph"] == "molecules" for r in results)
    ours = next(r for r in results if r["impl"] == "gps")
    assert ours["time_s"] > 0 and ours["threads"] == 1 and ours["peer"] == "pyg_gps"
    assert "time_ratio_to_peer" in ours and "memory_ratio_to_peer" in ours
    markdown = (tmp_path / "cpu" / "results.md").read_text()
    assert "### graph" in markdown and "| molecules | 16 | gps |" in markdown
    assert (tmp_path / "cpu" / "graph_molecules.png").exists()


def test_graph_cases_share_weights_and_inputs():
    """The two GPS cases compute the same function on the same batch (eval mode, so BatchNorm is deterministic)."""
    import torch

    from benchmarks.cases import build, list_cases

    cases = {c["impl"]: c for c in list_cases("graph", quick=True) if c["graph"] == "large"}
    assert {c["graph"] for c in list_cases("graph", quick=False)} == {
        "molecules", "large", "spd_bias_molecules", "spd_bias_large"
    }
    outputs = []
    for impl in ("pyg_gps", "gps"):
        fn = build(cases[impl], torch.device("cpu"))
        layer = next(c.cell_contents for c in fn.__closure__ if isinstance(c.cell_contents, torch.nn.Module))
        layer.eval()
        outputs.append(fn())
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=1e-5)
