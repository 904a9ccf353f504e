"""Benchmark: global attention with Graphormer's spatial (shortest-path distance) bias, graphformer vs padded dense.

``graphformer``: :class:`~graphformer.nn.AttentionConv` on ``fully_connected(batch)`` with
``attn_bias=SpatialBias(H, K)(spd, batch)`` (flat per-pair distances, as ``ShortestPathDistance`` stores them).
``padded_dense`` (the peer): attention as DGL's and Hugging Face's Graphormer implement it: ``to_dense_batch`` to
``[B, N_max, D]``, Q/K/V, scores ``[B, H, N_max, N_max]`` plus the embedding of a padded ``[B, N_max, N_max]``
distance tensor, key padding mask, softmax, dropout, ``@ V``, output projection; same weights. Distances are
precomputed for both (a transform caches them) and not timed. Time is forward + backward (median of repeats after
warm-up), each case in its own subprocess; peak memory is that process's peak RSS (above the RSS after imports,
too: after importing torch, PyG and graphformer and building the inputs), as in :mod:`benchmarks.run`.

    python -m benchmarks.bias_cases --threads 1 --out benchmarks/results/graph_bias

The suite in :mod:`benchmarks.run` can call :func:`list_cases` and :func:`build` (same contract as
:mod:`benchmarks.cases`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

SUITE = "graph_bias"
IMPLS = ["padded_dense", "graphformer"]
PEERS = {"graphformer": "padded_dense"}
# graphs: (number of graphs, smallest, largest size); sizes uniform in [smallest, largest]
GRAPHS = {"molecules": (128, 10, 60), "large": (8, 200, 1000)}
QUICK_GRAPHS = {"molecules": (8, 3, 12), "large": (2, 20, 40)}
D_MODEL, HEADS, MAX_DISTANCE = 128, 8, 20


def list_cases(quick: bool = False) -> list[dict[str, Any]]:
    """Case specs (JSON-serialisable dicts) of the suite."""
    graphs = QUICK_GRAPHS if quick else GRAPHS
    return [
        {"suite": SUITE, "graph": name, "size": num_graphs, "sizes": [low, high], "impl": impl,
         "peer": PEERS.get(impl), "quick": quick}
        for name, (num_graphs, low, high) in graphs.items() for impl in IMPLS
    ]


def molecule_like_batch(num_graphs: int, low: int, high: int, seed: int = 0):
    """A PyG ``Batch`` of sparse undirected graphs of uniform random sizes in ``[low, high]`` (a random tree plus
    ~10% extra edges, both directions stored; the last graph gets one isolated node), with ``spd`` cached."""
    from torch_geometric.data import Batch, Data

    from graphformer.structural import ShortestPathDistance

    gen = torch.Generator().manual_seed(seed)
    transform = ShortestPathDistance()
    graphs = []
    for g in range(num_graphs):
        size = int(torch.randint(low, high + 1, (1,), generator=gen))
        connected = size - 1 if g == num_graphs - 1 else size
        child = torch.arange(1, connected)
        parent = (torch.rand(connected - 1, generator=gen) * child).long()  # a random tree over `connected` nodes
        extra = max(connected // 10, 0)
        extra_edges = torch.randint(0, max(connected, 1), (2, extra), generator=gen)
        edges = torch.cat([torch.stack([parent, child]), extra_edges], 1)
        edge_index = torch.cat([edges, edges.flip(0)], 1)
        graphs.append(transform(Data(edge_index=edge_index, num_nodes=size)))
    return Batch.from_data_list(graphs)


class PaddedGraphormerAttention(torch.nn.Module):
    """Graphormer's biased multi-head self-attention over a padded batch (the DGL / Hugging Face way)."""

    def __init__(self, conv: Any, table: Tensor, dropout: float = 0.0) -> None:
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = conv.q_proj, conv.k_proj, conv.v_proj, conv.out_proj
        self.heads = conv.num_heads
        self.table = torch.nn.Embedding.from_pretrained(table, freeze=False)
        self.dropout = torch.nn.Dropout(dropout)

    def forward(self, x: Tensor, batch: Tensor, spatial_pos: Tensor) -> Tensor:
        from torch_geometric.utils import to_dense_batch

        dense, mask = to_dense_batch(x, batch)  # [B, N, D], [B, N]
        b, n, d = dense.shape
        h, c = self.heads, d // self.heads
        q = self.q_proj(dense).view(b, n, h, c).transpose(1, 2) * c**-0.5  # [B, H, N, C]
        k = self.k_proj(dense).view(b, n, h, c).transpose(1, 2)
        v = self.v_proj(dense).view(b, n, h, c).transpose(1, 2)
        scores = q @ k.transpose(-1, -2)  # [B, H, N, N]
        scores = scores + self.table(spatial_pos).permute(0, 3, 1, 2)  # + spatial bias [B, H, N, N]
        scores = scores.masked_fill(~mask.view(b, 1, 1, n), float("-inf"))  # key padding mask
        weights = self.dropout(torch.softmax(scores, dim=-1))
        out = (weights @ v).transpose(1, 2).reshape(b, n, d)  # [B, N, D]
        return self.out_proj(out)[mask]  # [N_total, D]


def build(case: dict[str, Any], device: torch.device) -> Callable[[], Tensor]:
    """Inputs of ``case`` and a closure that runs the forward pass (the caller runs backward)."""
    from graphformer import fully_connected
    from graphformer.nn import AttentionConv
    from graphformer.structural import SpatialBias

    num_graphs, (low, high) = case["size"], case["sizes"]
    data = molecule_like_batch(num_graphs, low, high).to(device)
    torch.manual_seed(0)
    conv = AttentionConv(D_MODEL, HEADS).to(device)
    spatial = SpatialBias(HEADS, MAX_DISTANCE).to(device)
    x = torch.randn(data.num_nodes, D_MODEL, device=device, requires_grad=True)
    if case["impl"] == "graphformer":
        graph = fully_connected(data)
        spd = data.spd
        return lambda: conv(x, graph, attn_bias=spatial(spd, data))
    if case["impl"] == "padded_dense":
        spatial_pos = spatial.buckets(data.spd, data).dense(fill=0)  # [B, N_max, N_max], as a collator pads it
        reference = PaddedGraphormerAttention(conv, spatial.table.weight.detach().clone()).to(device)
        return lambda: reference(x, data.batch, spatial_pos)
    raise ValueError(f"unknown impl {case['impl']!r}")


def measure(case: dict[str, Any], device_name: str, warmup: int, repeats: int, threads: int | None) -> dict[str, Any]:
    """Run one case in this process: median fwd+bwd seconds and peak RSS (as :func:`benchmarks.run.measure`)."""
    if threads is not None:
        torch.set_num_threads(threads)
    device = torch.device(device_name)
    import torch_geometric.utils  # noqa: F401  (imports count for neither implementation)

    import graphformer  # noqa: F401

    import_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    fn = build(case, device)
    inputs_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def once() -> float:
        start = time.perf_counter()
        fn().float().sum().backward()
        return time.perf_counter() - start

    for _ in range(warmup):
        once()
    times = [once() for _ in range(repeats)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {**case, "time_s": statistics.median(times), "times_s": times, "threads": torch.get_num_threads(),
            "peak_memory_bytes": peak, "peak_memory_above_import_bytes": peak - import_rss,
            "peak_memory_above_inputs_bytes": peak - inputs_rss}


def run_case(
    case: dict[str, Any], warmup: int, repeats: int, threads: int | None, timeout: float | None = None
) -> dict[str, Any]:
    spec = json.dumps({"case": case, "warmup": warmup, "repeats": repeats, "threads": threads})
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.bias_cases", "--worker", spec],
                              capture_output=True, text=True, cwd=root, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**case, "skipped": f"timed out after {timeout:g} s (--case-timeout)"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {**case, "skipped": f"failed (rc {proc.returncode}): {proc.stderr.strip()[-300:]}"}
    return json.loads(lines[-1])


def add_ratios(results: list[dict[str, Any]]) -> None:
    index = {(r["graph"], r["impl"]): r for r in results if "time_s" in r}
    for r in results:
        peer = index.get((r["graph"], r.get("peer")))
        if "time_s" in r and peer is not None:
            r["time_ratio_to_peer"] = r["time_s"] / peer["time_s"]
            r["memory_ratio_to_peer"] = r["peak_memory_bytes"] / peer["peak_memory_bytes"]
            if peer["peak_memory_above_import_bytes"] > 0:  # tiny (quick) cases may not raise the peak at all
                r["memory_above_import_ratio_to_peer"] = (
                    r["peak_memory_above_import_bytes"] / peer["peak_memory_above_import_bytes"]
                )


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"Device: {meta['device_desc']}; torch {meta['torch']}; date {meta['date']}; command "
             f"`{meta['command']}`", "", f"AttentionConv({D_MODEL}, {HEADS}) + SpatialBias(max_distance="
             f"{MAX_DISTANCE}), forward + backward.", "",
             "| graphs | B | sizes | impl | fwd+bwd (ms) | peak RSS (MB) | above import (MB) | time / peer | "
             "mem / peer | mem above import / peer |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        sizes = f"{r['sizes'][0]}-{r['sizes'][1]}"
        if "time_s" not in r:
            reason = " ".join(str(r["skipped"]).split()).replace("|", "/")
            lines.append(f"| {r['graph']} | {r['size']} | {sizes} | {r['impl']} | skipped: {reason} | | | | | |")
            continue
        ratios = [f"{r[k]:.2f}" if k in r else "" for k in
                  ("time_ratio_to_peer", "memory_ratio_to_peer", "memory_above_import_ratio_to_peer")]
        lines.append(f"| {r['graph']} | {r['size']} | {sizes} | {r['impl']} | {1e3 * r['time_s']:.1f} | "
                     f"{r['peak_memory_bytes'] / 2**20:.0f} | {r['peak_memory_above_import_bytes'] / 2**20:.0f} | "
                     + " | ".join(ratios) + " |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict[str, Any]], out_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results if "time_s" in r]
    graphs = list(dict.fromkeys(r["graph"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    width = 0.8 / len(IMPLS)
    for n, impl in enumerate(IMPLS):
        by_graph = {r["graph"]: r for r in rows if r["impl"] == impl}
        positions = [g + n * width for g in range(len(graphs))]
        axes[0].bar(positions, [1e3 * by_graph[g]["time_s"] if g in by_graph else 0 for g in graphs], width,
                    label=impl)
        axes[1].bar(positions, [by_graph[g]["peak_memory_above_import_bytes"] / 2**20 if g in by_graph else 0
                                for g in graphs], width, label=impl)
    for ax, label in zip(axes, ["fwd+bwd (ms)", "peak RSS above import (MB)"]):
        ax.set_xticks([g + width * (len(IMPLS) - 1) / 2 for g in range(len(graphs))], graphs)
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle("SPD-biased global attention")
    fig.tight_layout()
    path = out_dir / "graph_bias.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case (default 5, quick 1)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs per case (default 2, quick 0)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in every case")
    parser.add_argument("--impls", default=None, help="comma-separated implementations (default: all)")
    parser.add_argument("--graphs", default=None, help="comma-separated graph sets (default: all)")
    parser.add_argument("--out", default="benchmarks/results/graph_bias", help="writes <out>/cpu/")
    parser.add_argument("--case-timeout", type=float, default=3600.0,
                        help="seconds before a case's subprocess is stopped and the case reported as skipped")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        spec = json.loads(args.worker)
        print(json.dumps(measure(spec["case"], "cpu", spec["warmup"], spec["repeats"], spec["threads"])))
        return []
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    warmup = args.warmup if args.warmup is not None else (0 if args.quick else 2)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 5)
    cases = list_cases(args.quick)
    if args.impls:
        cases = [c for c in cases if c["impl"] in args.impls.split(",")]
    if args.graphs:
        cases = [c for c in cases if c["graph"] in args.graphs.split(",")]
    results = []
    for n, case in enumerate(cases, 1):
        result = run_case(case, warmup, repeats, args.threads, args.case_timeout)
        results.append(result)
        status = f"{1e3 * result['time_s']:.1f} ms, {result['peak_memory_above_import_bytes'] / 2**20:.0f} MB " \
            "above import" if "time_s" in result else result["skipped"]
        print(f"[{n}/{len(cases)}] {case['graph']} {case['impl']}: {status}", flush=True)
    add_ratios(results)
    meta = {"device_desc": f"CPU ({torch.get_num_threads()} threads, {os.cpu_count()} cores), "
                           f"{platform.processor() or ''}".strip(", "),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python -m benchmarks.bias_cases " + " ".join(sys.argv[1:] if argv is None else argv),
            "torch": torch.__version__, "quick": args.quick}
    out_dir = Path(args.out) / "cpu"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    (out_dir / "results.md").write_text(markdown(results, meta))
    plot(results, out_dir)
    print(f"wrote {out_dir}/results.json, results.md and graph_bias.png", flush=True)
    return results


if __name__ == "__main__":
    main()
