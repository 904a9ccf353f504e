"""Run benchmark suites and write JSON + Markdown + PNG to ``benchmarks/results/<device>/``.

Every case runs in its own subprocess (so CPU peak memory is that process's peak RSS, and one case cannot
hold memory for the next). Time is forward + backward, the median of repeated runs after warm-up.

    python -m benchmarks.run --suite all --device cpu --out benchmarks/results
    python -m benchmarks.run --suite sparse --device cuda --quick
    python -m benchmarks.run --suite long --device cpu --threads 1 --out /tmp/long
    python -m benchmarks.run --suite train --device cpu --threads 1 --out /tmp/train
    python -m benchmarks.run --suite graph --device cpu --threads 1 --out /tmp/graph
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
from pathlib import Path
from typing import Any

SUITES = ("dense", "sparse", "aggr", "long", "train", "graph")
# nominal peak memory bandwidth (bytes/s) by device name, for the achieved-bandwidth fraction on CUDA
PEAK_BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.0e12, "L4": 0.3e12, "A10": 0.6e12, "T4": 0.32e12}
MEMORY_CAP_BYTES = 4 * 1024**3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="all", choices=[*SUITES, "all"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repeats (CI smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case (default 5, quick 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs per case (default 2, quick 1)")
    parser.add_argument("--impls", default=None, help="comma-separated implementations to run (default: all)")
    parser.add_argument("--sizes", default=None, help="comma-separated sizes (L or E) to run (default: suite's)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads in every case (default: torch's default)")
    parser.add_argument("--memory-cap-gb", type=float, default=MEMORY_CAP_BYTES / 2**30,
                        help="on CPU, skip dense/long cases whose estimated peak memory exceeds this (default 4)")
    parser.add_argument("--out", default="benchmarks/results", help="results root; writes <out>/<device>/")
    parser.add_argument("--case-timeout", type=float, default=3600.0,
                        help="seconds before a case's subprocess is stopped and the case reported as skipped")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def measure(
    case: dict[str, Any], device_name: str, warmup: int, repeats: int, threads: int | None = None
) -> dict[str, Any]:
    """Run one case in this process: median fwd+bwd seconds and peak memory (``threads``: CPU threads)."""
    import torch

    from benchmarks.cases import build, bytes_per_run

    if threads is not None:
        torch.set_num_threads(threads)
    device = torch.device(device_name)
    import torch_geometric.nn  # noqa: F401  (library imports count for neither implementation)

    import graphformer  # noqa: F401

    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    fn = build(case, device)

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn().float().sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(warmup):
        once()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = [once() for _ in range(repeats)]
    result: dict[str, Any] = {**case, "time_s": statistics.median(times), "times_s": times,
                              "threads": torch.get_num_threads()}
    if device.type == "cuda":
        result["peak_memory_bytes"] = torch.cuda.max_memory_allocated()
        moved = bytes_per_run(case)
        if moved is not None:
            name = torch.cuda.get_device_name()
            peak = next((v for k, v in PEAK_BANDWIDTH.items() if k in name), None)
            result["achieved_bandwidth_Bps"] = moved / result["time_s"]
            result["bandwidth_fraction_of_peak"] = result["achieved_bandwidth_Bps"] / peak if peak else None
    else:
        result["peak_memory_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        result["peak_memory_above_import_bytes"] = result["peak_memory_bytes"] - baseline_rss
    return result


def run_case(case: dict[str, Any], args: argparse.Namespace, warmup: int, repeats: int) -> dict[str, Any]:
    """Run ``case`` in a fresh subprocess and parse its JSON line."""
    spec = json.dumps({"case": case, "device": args.device, "warmup": warmup, "repeats": repeats,
                       "threads": args.threads})
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--worker", spec], capture_output=True,
                              text=True, cwd=root, env=env, timeout=args.case_timeout)
    except subprocess.TimeoutExpired:
        return {**case, "skipped": f"timed out after {args.case_timeout:g} s (--case-timeout)"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {**case, "skipped": f"failed (rc {proc.returncode}): {proc.stderr.strip()[-300:]}"}
    return json.loads(lines[-1])


def add_ratios(results: list[dict[str, Any]]) -> None:
    """``time_ratio`` / ``memory_ratio`` = this case / its peer (same suite, graph, size) in the same run."""
    index = {(r["suite"], r["graph"], r["size"], r["impl"]): r for r in results if "time_s" in r}
    for r in results:
        peer = index.get((r["suite"], r["graph"], r["size"], r.get("peer")))
        if "time_s" in r and peer is not None:
            r["time_ratio_to_peer"] = r["time_s"] / peer["time_s"]
            r["memory_ratio_to_peer"] = r["peak_memory_bytes"] / peer["peak_memory_bytes"]
            above, peer_above = r.get("peak_memory_above_import_bytes"), peer.get("peak_memory_above_import_bytes")
            if above is not None and peer_above:  # tiny cases may not raise the peak above the imports at all
                r["memory_above_import_ratio_to_peer"] = above / peer_above


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """One table per suite."""
    lines = [f"Device: {meta['device_desc']}; date {meta['date']}; command `{meta['command']}`", ""]
    size_name = {"dense": "L", "sparse": "E", "aggr": "E", "long": "L", "train": "E", "graph": "graphs"}
    for suite in SUITES:
        rows = [r for r in results if r["suite"] == suite]
        if not rows:
            continue
        lines += [f"### {suite}", "", f"| graph | {size_name[suite]} | impl | fwd+bwd (ms) | peak mem (MB) | "
                  "time / peer | mem / peer | mem above imports (MB) | above imports / peer | peer |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if "time_s" not in r:
                reason = " ".join(str(r["skipped"]).split()).replace("|", "/")  # one table row: no newlines or pipes
                lines.append(f"| {r['graph']} | {r['size']} | {r['impl']} | skipped: {reason} | | | | | | |")
                continue
            tr = f"{r['time_ratio_to_peer']:.2f}" if "time_ratio_to_peer" in r else ""
            mr = f"{r['memory_ratio_to_peer']:.2f}" if "memory_ratio_to_peer" in r else ""
            above = r.get("peak_memory_above_import_bytes")
            above_mb = f"{above / 2**20:.0f}" if above is not None else ""
            ar = f"{r['memory_above_import_ratio_to_peer']:.2f}" if "memory_above_import_ratio_to_peer" in r else ""
            bw = r.get("bandwidth_fraction_of_peak")
            extra = f" (bw {100 * bw:.1f}% of peak)" if bw else ""
            lines.append(f"| {r['graph']} | {r['size']} | {r['impl']} | {1e3 * r['time_s']:.1f}{extra} | "
                         f"{r['peak_memory_bytes'] / 2**20:.0f} | {tr} | {mr} | {above_mb} | {ar} | "
                         f"{r.get('peer') or ''} |")
        lines.append("")
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One PNG per suite and graph kind: fwd+bwd time over size, a line per implementation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for suite in SUITES:
        for graph in sorted({r["graph"] for r in results if r["suite"] == suite}):
            rows = [r for r in results if r["suite"] == suite and r["graph"] == graph and "time_s" in r]
            if not rows:
                continue
            fig, ax = plt.subplots(figsize=(6, 4))
            for impl in dict.fromkeys(r["impl"] for r in rows):
                pts = sorted((r["size"], r["time_s"] * 1e3) for r in rows if r["impl"] == impl)
                ax.plot(*zip(*pts), marker="o", label=impl)
            xlabel = {"dense": "L", "long": "L", "graph": "graphs in the batch"}.get(suite, "E")
            ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="fwd+bwd (ms)",
                   title=f"{suite} / {graph}")
            ax.legend(fontsize=7)
            fig.tight_layout()
            path = out_dir / f"{suite}_{graph}.png"
            fig.savefig(path, dpi=90)
            plt.close(fig)
            paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.worker is not None:
        spec = json.loads(args.worker)
        print(json.dumps(measure(spec["case"], spec["device"], spec["warmup"], spec["repeats"], spec.get("threads"))))
        return []
    import torch

    from benchmarks.cases import dense_bytes_estimate, list_cases, long_bytes_estimate

    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)  # so the results' device description states it

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)
    suites = SUITES if args.suite == "all" else (args.suite,)
    cases = [c for s in suites for c in list_cases(s, args.quick)]
    if args.impls:
        cases = [c for c in cases if c["impl"] in args.impls.split(",")]
    if args.sizes:
        cases = [c for c in cases if str(c["size"]) in args.sizes.split(",")]
    results = []
    for n, case in enumerate(cases, 1):
        label = f"[{n}/{len(cases)}] {case['suite']} {case['graph']} size={case['size']} {case['impl']}"
        if args.device == "cpu" and case["suite"] in ("dense", "long"):
            estimate = dense_bytes_estimate(case["impl"], case["size"], args.quick) if case["suite"] == "dense" \
                else long_bytes_estimate(case["impl"], case["size"])
            if estimate > args.memory_cap_gb * 2**30:
                cap = f"{args.memory_cap_gb:g} GB cap"
                results.append({**case, "skipped": f"estimated {estimate / 2**30:.1f} GB > {cap}"})
                print(f"{label}: skipped (estimated {estimate / 2**30:.1f} GB)", flush=True)
                continue
        result = run_case(case, args, warmup, repeats)
        results.append(result)
        status = f"{1e3 * result['time_s']:.1f} ms, {result['peak_memory_bytes'] / 2**20:.0f} MB" \
            if "time_s" in result else result["skipped"]
        print(f"{label}: {status}", flush=True)
    add_ratios(results)
    if args.device == "cuda":
        desc = torch.cuda.get_device_name()
    else:
        desc = f"CPU ({torch.get_num_threads()} threads, {os.cpu_count()} cores), {platform.processor() or ''}"
    meta = {"device_desc": desc.strip(", "), "date": datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC"), "command": "python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None
                                                                                else argv),
            "torch": torch.__version__, "quick": args.quick}
    out_dir = Path(args.out) / args.device
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    (out_dir / "results.md").write_text(markdown(results, meta))
    plot(results, out_dir)
    print(f"wrote {out_dir}/results.json, results.md and PNG plots", flush=True)
    return results


if __name__ == "__main__":
    main()
