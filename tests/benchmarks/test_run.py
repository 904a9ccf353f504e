"""--quick smoke test of the benchmark CLI: it runs cases in subprocesses and writes JSON/Markdown/PNG."""

from __future__ import annotations

import json

import pytest

from benchmarks.run import main


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
                    "--repeats", "1", "--warmup", "0", "--threads", "1", "--out", str(tmp_path)])
    out = tmp_path / "cpu"
    data = json.loads((out / "results.json").read_text())
    assert len(data["results"]) == len(results) >= 2
    ours = [r for r in data["results"] if r["impl"].startswith(("gf_", "window_")) or r["impl"] == "graphformer"]
    assert ours and all(r["time_s"] > 0 and r["peak_memory_bytes"] > 0 and r["threads"] == 1 for r in ours)
    assert all("time_ratio_to_peer" in r for r in ours)
    assert "| " + impls.split(",")[0] in (out / "results.md").read_text()
    assert list(out.glob("*.png"))


def test_dense_cases_share_weights_and_inputs():
    """graphformer's dense case is torch's layer copied with ``from_torch``, on the same batch."""
    import torch

    from benchmarks.cases import build, list_cases

    cases = {c["impl"]: c for c in list_cases("dense", quick=True) if c["size"] == 16}
    assert all(c["peer"] == "torch_encoder_layer" for impl, c in cases.items() if impl != "torch_encoder_layer")
    torch_out = build(cases["torch_encoder_layer"], torch.device("cpu"))()
    ours = build(cases["graphformer"], torch.device("cpu"))()
    torch.testing.assert_close(ours, torch_out.reshape(ours.shape), atol=1e-5, rtol=1e-4)
