"""The graph_bias benchmark: both implementations compute the same thing, and the CLI writes its files."""

from __future__ import annotations

import json

import torch

from benchmarks.bias_cases import build, list_cases, main


def test_padded_dense_equals_graphformer():
    outputs = {}
    for case in list_cases(quick=True):
        if case["graph"] != "molecules":
            continue
        torch.manual_seed(0)
        outputs[case["impl"]] = build(case, torch.device("cpu"))()
    assert torch.allclose(outputs["graphformer"], outputs["padded_dense"], atol=1e-5)


def test_quick_run_writes_results(tmp_path):
    main(["--quick", "--threads", "1", "--out", str(tmp_path), "--case-timeout", "900"])
    data = json.loads((tmp_path / "cpu" / "results.json").read_text())
    ours = [r for r in data["results"] if r["impl"] == "graphformer"]
    assert len(ours) == 2 and all("time_ratio_to_peer" in r for r in ours)
    assert (tmp_path / "cpu" / "graph_bias.png").exists()
    assert "| molecules" in (tmp_path / "cpu" / "results.md").read_text()
