"""--quick smoke test of the benchmark CLI: it runs cases in subprocesses and writes JSON/Markdown/PNG."""

from __future__ import annotations

import json

import pytest

from benchmarks.run import main


@pytest.mark.parametrize(
    "suite,impls", [("sparse", "gf_attentionconv,pyg_transformerconv"), ("aggr", "gf_attention,pyg_attention")]
)
def test_quick_run_writes_results(tmp_path, suite, impls):
    results = main(["--suite", suite, "--quick", "--device", "cpu", "--impls", impls, "--sizes", "2000",
                    "--repeats", "1", "--warmup", "0", "--out", str(tmp_path)])
    out = tmp_path / "cpu"
    data = json.loads((out / "results.json").read_text())
    assert len(data["results"]) == len(results) >= 2
    ours = [r for r in data["results"] if r["impl"].startswith("gf_")]
    assert ours and all(r["time_s"] > 0 and r["peak_memory_bytes"] > 0 for r in ours)
    assert all("time_ratio_to_peer" in r for r in ours)
    assert "| " + impls.split(",")[0] in (out / "results.md").read_text().replace("| random | 2000 ", "")
    assert list(out.glob("*.png"))
