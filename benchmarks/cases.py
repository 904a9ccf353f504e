"""Benchmark cases: each builds its inputs and returns a closure that runs forward + backward once.

Suites: ``dense`` (complete graphs over L), ``sparse`` (explicit random / power-law graphs over E),
``aggr`` (sum / mean / max / attention aggregation over E messages), ``long`` (one long sequence of length L
under a complete graph vs a sliding window, implicit or materialised), ``train`` (layers in training mode with
attention dropout on a random graph, and one training step of a 2-layer GAT on Cora), ``graph`` (whole-graph
transformers: ``GPSLayer`` against PyG's ``GPSConv`` with the same weights on batches of molecule-sized and larger
graphs). Every case names its ``peer``, the implementation it is compared against in the same run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

# every dense implementation is compared with torch's own layer on the same batch
DENSE_PEERS = {
    "graphformer": "torch_encoder_layer", "sdpa": "torch_encoder_layer", "pyg_transformerconv": "torch_encoder_layer"
}
SPARSE_PEERS = {"gf_attentionconv": "pyg_transformerconv", "gf_gatconv": "pyg_gatconv"}
AGGR_PEERS = {f"gf_{name}": f"pyg_{name}" for name in ("sum", "mean", "max", "attention")}
# every long-sequence case is compared with the transformer baseline (complete graph, dense SDPA) at the same L
LONG_IMPLS = ["fully_connected", "window_masked", "window_implicit", "window_edge_index", "pyg_transformerconv"]
LONG_PEERS = {impl: "fully_connected" for impl in LONG_IMPLS[1:]}
LONG_RADIUS = 8
LONG_D_MODEL, LONG_HEADS = 64, 4
# training mode, attention dropout 0.5: 8 heads x 8 channels on 64 features, over a random graph of the size of
# tolokers (11,758 nodes) with 1,040,000 edges; and one training step of a 2-layer GAT on Cora (10,556 edges)
TRAIN_PEERS = {"gat": "pyg_gat", "transformer": "pyg_transformer", "cora_gat_epoch": "pyg_cora_gat_epoch"}
TRAIN_LAYER_IMPLS = ["pyg_gat", "gat", "pyg_transformer", "transformer"]
TRAIN_CORA_IMPLS = ["pyg_cora_gat_epoch", "cora_gat_epoch"]
CORA_EDGES = 10_556
# whole-graph layers in training mode: GPSLayer.from_pyg(GPSConv(64, GINConv(MLP), heads=4)) against the GPSConv,
# on 128 molecule-sized graphs (10-60 nodes, ~2.2 directed edges per node) and on 8 graphs of 200-1,000 nodes
GRAPH_PEERS = {"gps": "pyg_gps"}
GRAPH_IMPLS = ["pyg_gps", "gps"]
GRAPH_CHANNELS, GRAPH_HEADS = 64, 4
# graph kind -> (number of graphs, smallest, largest graph); quick mode: a few small graphs
GRAPH_BATCHES = {"molecules": (128, 10, 60), "large": (8, 200, 1000)}
GRAPH_BATCHES_QUICK = {"molecules": (16, 4, 20), "large": (2, 30, 80)}


def _dense_sizes(quick: bool) -> dict[str, int]:
    if quick:
        return {"batch": 2, "d_model": 32, "heads": 4, "ffn": 64}
    return {"batch": 8, "d_model": 256, "heads": 8, "ffn": 2048}


def dense_bytes_estimate(impl: str, length: int, quick: bool) -> int:
    """Rough peak bytes of a dense case (PyG on the materialised complete graph keeps several ``[E, H, C]``)."""
    s = _dense_sizes(quick)
    edges = s["batch"] * length * length
    if impl == "pyg_transformerconv":
        return edges * (s["d_model"] * 4 * 6 + 16)
    return s["batch"] * length * s["d_model"] * 4 * 40 + s["batch"] * s["heads"] * length * length * 4 * 3


def long_bytes_estimate(impl: str, length: int) -> int:
    """Rough peak bytes of a ``long`` case above import: the complete graph runs SDPA's flash kernel (``O(L)``,
    measured); the masked window keeps an ``[L, L]`` bool mask and ``[H, L, L]`` float scores; ``O(L r)`` else."""
    node_bytes = length * LONG_D_MODEL * 4 * 40
    if impl == "fully_connected":
        return node_bytes
    if impl == "window_masked":
        return node_bytes + length * length + LONG_HEADS * length * length * 4
    return node_bytes + length * (2 * LONG_RADIUS + 1) * LONG_D_MODEL * 4 * 6


def list_cases(suite: str, quick: bool) -> list[dict[str, Any]]:
    """All case specs (plain dicts, JSON-serialisable) of ``suite``."""
    cases: list[dict[str, Any]] = []
    if suite == "dense":
        for length in [16, 32] if quick else [128, 256, 512]:
            for impl in ["torch_encoder_layer", "graphformer", "sdpa", "pyg_transformerconv"]:
                cases.append({"suite": suite, "impl": impl, "size": length, "graph": "complete",
                              "peer": DENSE_PEERS.get(impl), "quick": quick})
    elif suite == "sparse":
        for graph in ["random", "powerlaw"]:
            for edges in [2000, 6000] if quick else [250_000, 1_000_000]:
                for impl in ["pyg_transformerconv", "gf_attentionconv", "pyg_gatconv", "gf_gatconv"]:
                    cases.append({"suite": suite, "impl": impl, "size": edges, "graph": graph,
                                  "peer": SPARSE_PEERS.get(impl), "quick": quick})
    elif suite == "aggr":
        for edges in [2000, 6000] if quick else [100_000, 1_000_000]:
            for name in ["sum", "mean", "max", "attention"]:
                for impl in [f"pyg_{name}", f"gf_{name}"]:
                    cases.append({"suite": suite, "impl": impl, "size": edges, "graph": "random",
                                  "peer": AGGR_PEERS.get(impl), "quick": quick})
    elif suite == "long":
        for length in [64, 128] if quick else [1024, 4096, 16384]:
            for impl in LONG_IMPLS:
                cases.append({"suite": suite, "impl": impl, "size": length, "graph": f"window{LONG_RADIUS}",
                              "peer": LONG_PEERS.get(impl), "quick": quick})
    elif suite == "train":
        for edges in [5000] if quick else [1_040_000]:
            for impl in TRAIN_LAYER_IMPLS:
                cases.append({"suite": suite, "impl": impl, "size": edges, "graph": "random",
                              "peer": TRAIN_PEERS.get(impl), "quick": quick})
        for impl in TRAIN_CORA_IMPLS:
            cases.append({"suite": suite, "impl": impl, "size": CORA_EDGES, "graph": "cora",
                          "peer": TRAIN_PEERS.get(impl), "quick": quick})
    elif suite == "graph":
        for graph, (num_graphs, _, _) in (GRAPH_BATCHES_QUICK if quick else GRAPH_BATCHES).items():
            for impl in GRAPH_IMPLS:
                cases.append({"suite": suite, "impl": impl, "size": num_graphs, "graph": graph,
                              "peer": GRAPH_PEERS.get(impl), "quick": quick})
        # SPD-biased global attention vs a padded [B, H, N_max, N_max] implementation (benchmarks/bias_cases.py)
        from benchmarks import bias_cases

        for case in bias_cases.list_cases(quick):
            cases.append({**case, "suite": suite, "graph": f"spd_bias_{case['graph']}", "kind": "bias"})
    else:
        raise ValueError(f"`suite` must be one of dense, sparse, aggr, long, train, graph; got {suite!r}")
    return cases


def random_graph(num_nodes: int, num_edges: int, kind: str, gen: torch.Generator) -> Tensor:
    """``edge_index`` ``[2, E]``: uniform endpoints (``random``) or Zipf-distributed targets (``powerlaw``)."""
    source = torch.randint(0, num_nodes, (num_edges,), generator=gen)
    if kind == "random":
        target = torch.randint(0, num_nodes, (num_edges,), generator=gen)
    elif kind == "powerlaw":  # in-degree of node r proportional to 1 / (r + 1): a few hubs, a long tail
        probs = 1.0 / torch.arange(1, num_nodes + 1, dtype=torch.float64)
        target = torch.multinomial(probs, num_edges, replacement=True, generator=gen)
        target = torch.randperm(num_nodes, generator=gen)[target]
    else:
        raise ValueError(f"`graph` must be 'random' or 'powerlaw', got {kind!r}")
    return torch.stack([source, target])


def _dense_case(impl: str, length: int, quick: bool, device: torch.device) -> Callable[[], Tensor]:
    from torch import nn

    from graphformer import GraphTransformerLayer
    from graphformer.graphs import fully_connected

    s = _dense_sizes(quick)
    b, d, h = s["batch"], s["d_model"], s["heads"]
    torch.manual_seed(0)
    if impl in ("torch_encoder_layer", "graphformer"):  # same weights, same batch: [B, L, D] vs [B * L, D]
        torch_layer = nn.TransformerEncoderLayer(d, h, s["ffn"], dropout=0.0, batch_first=True).to(device)
        padded = torch.randn(b, length, d, device=device)
        if impl == "torch_encoder_layer":
            x = padded.requires_grad_()
            mask = torch.zeros(b, length, dtype=torch.bool, device=device)
            return lambda: torch_layer(x, src_key_padding_mask=mask)
        layer = GraphTransformerLayer.from_torch(torch_layer)
        x = padded.reshape(b * length, d).requires_grad_()
        graph = fully_connected(torch.arange(b, device=device).repeat_interleave(length))
        return lambda: layer(x, graph)
    if impl == "sdpa":
        q, k, v = (torch.randn(b, h, length, d // h, device=device, requires_grad=True) for _ in range(3))
        return lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)
    if impl == "pyg_transformerconv":
        from torch_geometric.nn import TransformerConv

        conv = TransformerConv(d, d // h, heads=h, root_weight=False).to(device)
        x = torch.randn(b * length, d, device=device, requires_grad=True)
        graph = fully_connected(torch.arange(b, device=device).repeat_interleave(length))
        edge_index = graph.to_edge_index()
        return lambda: conv(x, edge_index)
    raise ValueError(f"unknown dense impl {impl!r}")


def _sparse_case(impl: str, edges: int, kind: str, device: torch.device) -> Callable[[], Tensor]:
    gen = torch.Generator().manual_seed(0)
    num_nodes = max(edges // 20, 10)
    edge_index = random_graph(num_nodes, edges, kind, gen).to(device)
    torch.manual_seed(0)
    x = torch.randn(num_nodes, 64, device=device, requires_grad=True)
    if impl == "gf_attentionconv":
        from graphformer.nn import AttentionConv

        conv = AttentionConv(64, 4)
    elif impl == "pyg_transformerconv":
        from torch_geometric.nn import TransformerConv

        conv = TransformerConv(64, 16, heads=4)
    elif impl == "gf_gatconv":
        from graphformer.nn import GATConv

        conv = GATConv(64, 16, heads=4)
    elif impl == "pyg_gatconv":
        from torch_geometric.nn import GATConv

        conv = GATConv(64, 16, heads=4)
    else:
        raise ValueError(f"unknown sparse impl {impl!r}")
    conv = conv.to(device)
    return lambda: conv(x, edge_index)


def _aggr_case(impl: str, edges: int, device: torch.device) -> Callable[[], Tensor]:
    import torch_geometric.nn.aggr as pyg_aggr
    from torch_geometric.utils import softmax

    from graphformer import aggr as gf_aggr

    gen = torch.Generator().manual_seed(0)
    num_nodes = max(edges // 20, 10)
    heads, channels = 4, 16
    index = torch.randint(0, num_nodes, (edges,), generator=gen).to(device)
    x = torch.randn(edges, heads, channels, generator=gen).to(device).requires_grad_()
    scores = torch.randn(edges, heads, generator=gen).to(device).requires_grad_()
    name = impl.split("_", 1)[1]
    if impl.startswith("gf_"):
        if name == "attention":
            agg = gf_aggr.Attention()
            return lambda: agg(x, index, dim_size=num_nodes, scores=scores)
        agg = gf_aggr.resolve(name)
        flat = x.view(edges, heads * channels)
        return lambda: agg(flat, index, dim_size=num_nodes)
    if name == "attention":  # PyG's softmax utility + sum aggregation (what its attention layers do)
        summ = pyg_aggr.SumAggregation()
        return lambda: summ((x * softmax(scores, index, num_nodes=num_nodes).unsqueeze(-1)).view(edges, -1),
                            index, dim_size=num_nodes)
    agg = {"sum": pyg_aggr.SumAggregation, "mean": pyg_aggr.MeanAggregation, "max": pyg_aggr.MaxAggregation}[name]()
    flat = x.view(edges, heads * channels)
    return lambda: agg(flat, index, dim_size=num_nodes)


def _long_case(impl: str, length: int, device: torch.device) -> Callable[[], Tensor]:
    """``AttentionConv(64, 4)`` on one sequence of ``length`` tokens under the graph ``impl`` names.

    ``fully_connected``: the complete graph (dense SDPA, the transformer baseline); ``window_masked``: the
    radius-8 window as an implicit structure, forced onto the dense masked path (``[L, L]`` mask);
    ``window_implicit``: the same structure as :func:`dot_product_attention` dispatches it by default;
    ``window_edge_index``: the window materialised with ``to_edge_index()`` (sparse path); ``pyg_transformerconv``:
    PyG's ``TransformerConv`` on the materialised window.
    """
    from graphformer.graphs import fully_connected, window
    from graphformer.nn import AttentionConv

    torch.manual_seed(0)
    d, h = LONG_D_MODEL, LONG_HEADS
    x = torch.randn(length, d, device=device, requires_grad=True)
    batch = torch.zeros(length, dtype=torch.long, device=device)
    structure = window(batch, radius=LONG_RADIUS)
    if impl == "pyg_transformerconv":
        from torch_geometric.nn import TransformerConv

        conv = TransformerConv(d, d // h, heads=h, root_weight=False).to(device)
        edge_index = structure.to_edge_index()
        return lambda: conv(x, edge_index)
    layer = AttentionConv(d, h).to(device)
    if impl == "fully_connected":
        graph: Any = fully_connected(batch)
    elif impl == "window_masked":
        import graphformer.ops.attention as attention

        attention.SPARSE_DENSITY_THRESHOLD = 0.0  # in this worker process only: never dispatch to sparse
        graph = structure
    elif impl == "window_implicit":
        graph = structure
    elif impl == "window_edge_index":
        graph = structure.to_edge_index()
    else:
        raise ValueError(f"unknown long impl {impl!r}")
    return lambda: layer(x, graph)


def _train_layer_case(impl: str, edges: int, quick: bool, device: torch.device) -> Callable[[], Tensor]:
    """One layer in training mode with attention dropout 0.5 (8 heads x 8 channels, 64 input features)."""
    gen = torch.Generator().manual_seed(0)
    num_nodes = 500 if quick else 11_758
    edge_index = random_graph(num_nodes, edges, "random", gen).to(device)
    x = torch.randn(num_nodes, 64, generator=gen).to(device)
    torch.manual_seed(0)
    if impl == "gat":
        from graphformer.nn import GATConv as Layer
    elif impl == "pyg_gat":
        from torch_geometric.nn import GATConv as Layer
    elif impl == "transformer":
        from graphformer.nn import TransformerConv as Layer  # graphformer's PyG-compatible TransformerConv
    elif impl == "pyg_transformer":
        from torch_geometric.nn import TransformerConv as Layer
    else:
        raise ValueError(f"unknown train impl {impl!r}")
    conv = Layer(64, 8, heads=8, dropout=0.5).to(device).train()
    return lambda: conv(x, edge_index)


SHARED_PLANETOID = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "planetoid"


def planetoid_root(dataset: str = "Cora") -> Path:
    """A Planetoid root holding a copy of the raw files of the shared folder (``../shared/data/planetoid`` from the
    repository) in the temporary directory: PyG writes ``processed/`` beside ``raw/``, and the shared folder is
    read-only by contract, whatever its permission bits say."""
    raw = SHARED_PLANETOID / dataset / "raw"
    if not raw.is_dir():
        raise FileNotFoundError(f"no Planetoid {dataset} raw files in {raw} (see ../shared/data/README.md)")
    copy = Path(tempfile.gettempdir()) / "graphformer-benchmarks-planetoid"
    target = copy / dataset / "raw"
    if not target.is_dir() or {p.name for p in raw.iterdir()} - {p.name for p in target.iterdir()}:
        target.mkdir(parents=True, exist_ok=True)
        for file in raw.iterdir():  # copy, then rename: a concurrent case never reads a partial file
            partial = target / f".{file.name}.{os.getpid()}.partial"
            shutil.copy2(file, partial)
            os.replace(partial, target / file.name)
    return copy


def _cora_gat_case(impl: str, device: torch.device) -> Callable[[], Tensor]:
    """One training step of the GAT of Velickovic et al. on Cora: dropout 0.6 on features and attention, 8 heads
    x 8 hidden, ELU, a 1-head output layer; Adam. The closure applies the previous step's gradients, then returns
    the loss of a new forward (the runner's backward completes the step)."""
    from torch import nn
    from torch_geometric.datasets import Planetoid
    from torch_geometric.transforms import NormalizeFeatures

    if impl == "cora_gat_epoch":
        from graphformer.nn import GATConv
    elif impl == "pyg_cora_gat_epoch":
        from torch_geometric.nn import GATConv
    else:
        raise ValueError(f"unknown train impl {impl!r}")
    data = Planetoid(str(planetoid_root("Cora")), "Cora", transform=NormalizeFeatures())[0].to(device)
    torch.manual_seed(0)
    model = nn.ModuleDict({
        "conv1": GATConv(data.num_features, 8, heads=8, dropout=0.6),
        "conv2": GATConv(8 * 8, 7, heads=1, concat=False, dropout=0.6),
    }).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.005, weight_decay=5e-4)

    def step() -> Tensor:
        optimizer.step()  # gradients of the previous call (none on the first: Adam skips those parameters)
        optimizer.zero_grad()
        h = nn.functional.dropout(data.x, 0.6, training=True)
        h = nn.functional.elu(model["conv1"](h, data.edge_index))
        h = nn.functional.dropout(h, 0.6, training=True)
        out = model["conv2"](h, data.edge_index)
        return nn.functional.cross_entropy(out[data.train_mask], data.y[data.train_mask])

    return step


def graph_batch(num_graphs: int, smallest: int, largest: int, channels: int, gen: torch.Generator) -> tuple[
    Tensor, Tensor, Tensor
]:
    """``(x [N, channels], edge_index [2, E], batch [N])``: ``num_graphs`` random graphs of ``smallest``-``largest``
    nodes with ``1.1 L`` random undirected edges each (2.2 directed edges per node, like molecules)."""
    sizes = torch.randint(smallest, largest + 1, (num_graphs,), generator=gen)
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)])
    edges = []
    for start, size in zip(ptr.tolist(), sizes.tolist()):
        pairs = torch.randint(0, size, (2, round(1.1 * size)), generator=gen) + start
        edges.append(torch.cat([pairs, pairs.flip(0)], 1))
    batch = torch.arange(num_graphs).repeat_interleave(sizes)
    return torch.randn(int(ptr[-1]), channels, generator=gen), torch.cat(edges, 1), batch


def _graph_case(impl: str, graph: str, quick: bool, device: torch.device) -> Callable[[], Tensor]:
    """One GPS layer in training mode (fwd + bwd) on a batch of graphs; ours is PyG's copied with ``from_pyg``.

    Every call passes a fresh ``batch`` tensor (a clone), as a training loop does with a new mini-batch, so the
    per-batch work (PyG's ``to_dense_batch``; our ``fully_connected`` structure and size buckets, cached per
    ``batch`` tensor) is timed in every step.
    """
    from torch import nn
    from torch_geometric.nn import GINConv, GPSConv

    from graphformer.nn import GPSLayer

    num_graphs, smallest, largest = (GRAPH_BATCHES_QUICK if quick else GRAPH_BATCHES)[graph]
    c = GRAPH_CHANNELS
    x, edge_index, batch = graph_batch(num_graphs, smallest, largest, c, torch.Generator().manual_seed(0))
    x, edge_index, batch = x.to(device).requires_grad_(), edge_index.to(device), batch.to(device)
    torch.manual_seed(0)
    local = GINConv(nn.Sequential(nn.Linear(c, c), nn.ReLU(), nn.Linear(c, c)))
    layer: nn.Module = GPSConv(c, local, heads=GRAPH_HEADS).to(device).train()
    if impl == "gps":
        layer = GPSLayer.from_pyg(layer)
    elif impl != "pyg_gps":
        raise ValueError(f"unknown graph impl {impl!r}")
    return lambda: layer(x, edge_index, batch.clone())


def build(case: dict[str, Any], device: torch.device) -> Callable[[], Tensor]:
    """The forward closure of ``case`` on ``device``."""
    if case["suite"] == "graph" and case.get("kind") == "bias":
        from benchmarks import bias_cases

        return bias_cases.build(case, device)
    if case["suite"] == "graph":
        return _graph_case(case["impl"], case["graph"], case["quick"], device)
    if case["suite"] == "train":
        if case["graph"] == "cora":
            return _cora_gat_case(case["impl"], device)
        return _train_layer_case(case["impl"], case["size"], case["quick"], device)
    if case["suite"] == "long":
        return _long_case(case["impl"], case["size"], device)
    if case["suite"] == "dense":
        return _dense_case(case["impl"], case["size"], case["quick"], device)
    if case["suite"] == "sparse":
        return _sparse_case(case["impl"], case["size"], case["graph"], device)
    return _aggr_case(case["impl"], case["size"], device)


def bytes_per_run(case: dict[str, Any]) -> int | None:
    """Bytes that must move for one fwd+bwd of a sparse attention case (for bandwidth on CUDA), else None.

    Per edge, forward reads ``k_j, v_j`` (``2 H C`` floats) and the two indices, writes one weight per head;
    backward reads ``k_j, v_j, q_i, g_i`` and the weight and scatters ``dq, dk, dv`` (``7 H C`` floats): in all
    ``9 H C + 2 H`` floats and 4 index reads per edge (node-side traffic, ``O(N)``, is ignored).
    """
    if case["suite"] != "sparse" or "attention" not in case["impl"] and "transformer" not in case["impl"]:
        return None
    heads, channels = 4, 16
    return case["size"] * ((9 * heads * channels + 2 * heads) * 4 + 4 * 8)
