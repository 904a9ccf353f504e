"""Node classification on the Planetoid citation graphs with every graphformer aggregator side by side.

Models (``--model``, or ``all``):

- ``graphconv-sum`` / ``graphconv-mean`` / ``graphconv-max``: two :class:`graphformer.GraphConv` layers,
  ``h_i' = W1 h_i + W2 AGG_{j->i} h_j``.
- ``gat``: the GAT paper's Cora setup (Velickovic et al., 2018): 2 :class:`graphformer.GATConv` layers,
  8 heads x 8 hidden + ELU, then 1 averaged output head; dropout 0.6 on inputs and attention,
  Adam lr 0.005, weight decay 5e-4, early stopping on validation (patience 100).
- ``gat-pyg``: the same model, loop and seeds with PyG's own ``torch_geometric.nn.GATConv`` in place of
  graphformer's (a reference, not part of ``all``). Both draw identical initial weights for a seed, so running
  ``--model gat gat-pyg`` prints their paired difference (see ``examples/results/gat_parity.md``).
- ``attention``: two :class:`graphformer.AttentionConv` layers (scaled dot-product attention over neighbours).
- ``transformer``: a :class:`graphformer.GraphTransformer` on the citation graph (plus self-loops), run with
  and without graph positional encodings (``--pe lap`` Laplacian eigenvectors, ``--pe rw`` random-walk).
- ``transformer-complete``: the same transformer on :func:`graphformer.fully_connected` (every paper attends
  to every paper; the citation edges are dropped), also with and without positional encodings.

Scale: ``--neighbor-sampling`` trains on :class:`graphformer.loader.NeighborLoader` mini-batches; under
``torchrun --nproc_per_node 2 examples/sparse_graph.py ...`` each process trains on its shard of the training
nodes with ``DistributedDataParallel`` (gloo on CPU, nccl on GPU).

Example::

    PYTHONPATH=. python examples/sparse_graph.py --model all --seeds 5 \\
        --json examples/results/cora.json --png examples/results/cora.png
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path
from urllib.error import URLError

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

import graphformer

MODELS = [
    "graphconv-sum",
    "graphconv-mean",
    "graphconv-max",
    "gat",
    "attention",
    "transformer",
    "transformer-complete",
]
# PyG's own layer in the same model, and the graphformer model it mirrors; run when named, not by ``all``
REFERENCES = {"gat-pyg": "gat"}
REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_ROOT = REPO_ROOT.parent / "shared" / "data" / "planetoid"
DEFAULT_CACHE = Path.home() / ".cache" / "graphformer" / "planetoid"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="Cora", choices=["Cora", "CiteSeer", "PubMed"])
    parser.add_argument("--root", default=None,
                        help=f"Planetoid root holding <dataset>/raw (default: {SHARED_ROOT}, never written to: its "
                             f"raw files are copied to --cache; without it PyG downloads into --cache)")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE),
                        help="writable folder the raw files are copied to (from the default root, or a read-only "
                             "--root)")
    parser.add_argument("--model", nargs="+", default=["gat"], choices=[*MODELS, *REFERENCES, "all"])
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds (0, 1, ..., N-1)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="maximum epochs (default: 1000 for gat(-pyg), 100 for transformer-complete, else 500)")
    parser.add_argument("--patience", type=int, default=100, help="early stopping patience on validation")
    parser.add_argument("--pe", default="lap", choices=["lap", "rw", "none"],
                        help="positional encoding for the transformer runs, each also run without it")
    parser.add_argument("--pe-dim", type=int, default=8, help="eigenvectors (lap) or walk length (rw)")
    parser.add_argument("--neighbor-sampling", action="store_true", help="train on NeighborLoader mini-batches")
    parser.add_argument("--num-neighbors", type=int, nargs="+", default=[10, 10], help="neighbours per hop")
    parser.add_argument("--batch-size", type=int, default=64, help="seed nodes per mini-batch")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    parser.add_argument("--json", default=None, help="write the results table (and curves) as JSON here")
    parser.add_argument("--png", default=None, help="write accuracy bars + learning curves as a PNG here")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--from-json", nargs="+", default=None, metavar="PATH",
                        help="train nothing: merge the tables of earlier --json outputs, then print/--json/--png")
    args = parser.parse_args(argv)
    if "all" in args.model:
        args.model = list(MODELS)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    return args


# ----------------------------------------------------------------------------------------------- data


def _writable(path: Path) -> bool:
    """Whether PyG may create ``processed/`` inside ``path`` (creating ``path`` itself if needed).

    The folder's permission bits count even for root (who could write anyway): a folder marked read-only, like a
    shared data copy, is never written to.
    """
    probe = path
    while not probe.exists():
        probe = probe.parent
    return os.access(probe, os.W_OK) and bool(probe.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def resolve_root(root: str | None, cache: str, dataset: str) -> Path:
    """The Planetoid root to load from (PyG writes ``processed/`` beside ``raw/`` there).

    The default shared root (``../shared/data/planetoid``) is read-only by contract, whatever its permission bits
    say: its raw files are copied into ``cache``, and without them there PyG downloads into ``cache``. A ``--root``
    you give is used in place when writable, else its raw files are copied into ``cache`` likewise.
    """
    if root is None:
        if not (SHARED_ROOT / dataset / "raw").is_dir():
            return Path(cache).expanduser()  # PyG downloads here
        root_path = SHARED_ROOT
    else:
        root_path = Path(root).expanduser()
        if _writable(root_path / dataset):
            return root_path
    raw = root_path / dataset / "raw"
    if not raw.is_dir():
        raise ValueError(f"`--root` {root_path} is read-only and has no {dataset}/raw folder to copy from")
    cache_path = Path(cache).expanduser()
    if not _writable(cache_path):
        cache_path = Path(tempfile.gettempdir()) / "graphformer-planetoid"
    target = cache_path / dataset / "raw"
    if not target.is_dir() or {p.name for p in raw.iterdir()} - {p.name for p in target.iterdir()}:
        target.mkdir(parents=True, exist_ok=True)
        for file in raw.iterdir():  # copy, then rename: a concurrent reader never sees a partial file
            partial = target / f".{file.name}.{os.getpid()}.partial"
            shutil.copy2(file, partial)
            os.replace(partial, target / file.name)
    return cache_path


def load_dataset(args: argparse.Namespace):
    """Cora / CiteSeer / PubMed with row-normalised features (and positional encodings as ``data.pe``)."""
    from torch_geometric.datasets import Planetoid
    from torch_geometric.transforms import NormalizeFeatures

    root = resolve_root(args.root, args.cache, args.dataset)
    try:
        dataset = Planetoid(str(root), args.dataset, transform=NormalizeFeatures())
    except (URLError, OSError) as error:  # aiohttp / fsspec connection errors are OSErrors too
        raise SystemExit(
            f"Could not load {args.dataset} from {root} ({error}).\n"
            f"Without network access, put PyG's raw Planetoid files (ind.{args.dataset.lower()}.x, .tx, .allx, "
            f".y, .ty, .ally, .graph, .test.index from https://github.com/kimiyoung/planetoid/tree/master/data) "
            f"into {root / args.dataset / 'raw'} or pass --root DIR with DIR/{args.dataset}/raw holding them."
        ) from error
    data = dataset[0]
    if args.pe == "lap":
        from torch_geometric.transforms import AddLaplacianEigenvectorPE

        data = AddLaplacianEigenvectorPE(args.pe_dim, attr_name="pe", is_undirected=True)(data)
    elif args.pe == "rw":
        from torch_geometric.transforms import AddRandomWalkPE

        data = AddRandomWalkPE(args.pe_dim, attr_name="pe")(data)
    return data, dataset.num_classes


# ---------------------------------------------------------------------------------------------- models


class GraphConvNet(nn.Module):
    """Two GraphConv layers: ``h' = W1 h_i + W2 AGG_j h_j``, ReLU and dropout in between."""

    def __init__(self, in_channels: int, num_classes: int, aggr: str, hidden: int = 64, dropout: float = 0.5):
        super().__init__()
        self.conv1 = graphformer.GraphConv(in_channels, hidden, aggr=aggr)
        self.conv2 = graphformer.GraphConv(hidden, num_classes, aggr=aggr)
        self.dropout = dropout

    def forward(self, x: Tensor, edge_index, pe: Tensor | None = None) -> Tensor:
        x = F.dropout(x, self.dropout, self.training)
        x = F.relu(self.conv1(x, edge_index))  # [N, hidden]
        x = F.dropout(x, self.dropout, self.training)
        return self.conv2(x, edge_index)  # [N, classes]


class GAT(nn.Module):
    """The GAT paper's transductive model: 8 heads x 8 features + ELU, then one averaged output head.

    ``conv`` is the layer class: :class:`graphformer.GATConv` or PyG's ``GATConv`` (same arguments, same
    parameters created and initialised in the same order, so a seed gives both the same initial weights).
    """

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 8, heads: int = 8, dropout: float = 0.6,
                 conv: type[nn.Module] = graphformer.GATConv):
        super().__init__()
        self.conv1 = conv(in_channels, hidden, heads=heads, dropout=dropout)
        self.conv2 = conv(hidden * heads, num_classes, heads=1, concat=False, dropout=dropout)
        self.dropout = dropout

    def forward(self, x: Tensor, edge_index, pe: Tensor | None = None) -> Tensor:
        x = F.dropout(x, self.dropout, self.training)
        x = F.elu(self.conv1(x, edge_index))  # [N, heads * hidden]
        x = F.dropout(x, self.dropout, self.training)
        return self.conv2(x, edge_index)  # [N, classes]


class AttentionNet(nn.Module):
    """Input projection, two AttentionConv layers (softmax(q_i k_j / sqrt(d)) v_j over neighbours), classifier."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 64, heads: int = 8, dropout: float = 0.6):
        super().__init__()
        self.input = nn.Linear(in_channels, hidden)
        self.conv1 = graphformer.AttentionConv(hidden, heads, dropout=dropout)
        self.conv2 = graphformer.AttentionConv(hidden, heads, dropout=dropout)
        self.output = nn.Linear(hidden, num_classes)
        self.dropout = dropout

    def forward(self, x: Tensor, edge_index, pe: Tensor | None = None) -> Tensor:
        x = self.input(F.dropout(x, self.dropout, self.training))  # [N, hidden]
        for conv in (self.conv1, self.conv2):
            x = F.elu(conv(F.dropout(x, self.dropout, self.training), edge_index))
        return self.output(F.dropout(x, self.dropout, self.training))  # [N, classes]


class TransformerNet(nn.Module):
    """``h^0 = W_x x + W_pe pe`` -> pre-norm GraphTransformer -> LayerNorm -> linear classifier."""

    def __init__(self, in_channels: int, num_classes: int, pe_dim: int = 0, d_model: int = 64, nhead: int = 4,
                 num_layers: int = 2, dropout: float = 0.5, input_dropout: float = 0.6):
        super().__init__()
        self.input = nn.Linear(in_channels, d_model)
        self.pe_proj = nn.Linear(pe_dim, d_model) if pe_dim > 0 else None
        self.encoder = graphformer.GraphTransformer(d_model, nhead, num_layers, dim_feedforward=2 * d_model,
                                                    dropout=dropout, norm_first=True, final_norm=True)
        self.output = nn.Linear(d_model, num_classes)
        self.input_dropout = input_dropout

    def forward(self, x: Tensor, edge_index, pe: Tensor | None = None) -> Tensor:
        h = self.input(F.dropout(x, self.input_dropout, self.training))  # [N, d_model]
        if self.pe_proj is not None:
            if self.training and pe is not None:  # eigenvector signs are arbitrary: flip them at random
                pe = pe * (torch.randint(0, 2, (1, pe.size(1)), device=pe.device) * 2 - 1)
            h = h + self.pe_proj(pe)
        return self.output(self.encoder(h, edge_index))  # [N, classes]


# Per model: builder, learning rate, weight decay, graph ("sparse", "sparse+self-loops" or "complete").
SPECS = {
    "graphconv-sum": (lambda f, c, pe: GraphConvNet(f, c, "sum"), 0.01, 5e-4, "sparse"),
    "graphconv-mean": (lambda f, c, pe: GraphConvNet(f, c, "mean"), 0.01, 5e-4, "sparse"),
    "graphconv-max": (lambda f, c, pe: GraphConvNet(f, c, "max"), 0.01, 5e-4, "sparse"),
    "gat": (lambda f, c, pe: GAT(f, c), 0.005, 5e-4, "sparse"),
    "gat-pyg": (lambda f, c, pe: GAT(f, c, conv=pyg_gat_conv()), 0.005, 5e-4, "sparse"),
    "attention": (lambda f, c, pe: AttentionNet(f, c), 0.005, 5e-4, "sparse+self-loops"),
    "transformer": (lambda f, c, pe: TransformerNet(f, c, pe), 0.005, 5e-4, "sparse+self-loops"),
    "transformer-complete": (lambda f, c, pe: TransformerNet(f, c, pe), 0.005, 5e-4, "complete"),
}


def pyg_gat_conv() -> type[nn.Module]:
    from torch_geometric.nn import GATConv

    return GATConv


def variants(models: list[str], pe: str, pe_dim: int) -> list[tuple[str, str, int]]:
    """(row name, model, pe_dim) for every run: transformers both with and without positional encodings."""
    rows = []
    for model in models:
        if model.startswith("transformer") and pe != "none":
            rows += [(model, model, 0), (f"{model}+{pe}pe", model, pe_dim)]
        else:
            rows.append((model, model, 0))
    return rows


def make_graph(edge_index: Tensor, num_nodes: int, kind: str):
    from torch_geometric.utils import add_self_loops, remove_self_loops

    if kind == "complete":
        return graphformer.fully_connected(num_nodes=num_nodes)
    if kind == "sparse+self-loops":
        return add_self_loops(remove_self_loops(edge_index)[0], num_nodes=num_nodes)[0]
    return edge_index


# ------------------------------------------------------------------------------------ neighbour sampling


def make_neighbor_loader(data, input_nodes: Tensor, num_neighbors: list[int], batch_size: int, seed: int):
    """Shuffled mini-batches of sampled neighbourhoods around ``input_nodes`` (seeds first in each batch).

    :class:`graphformer.loader.NeighborLoader` is PyG's ``NeighborLoader``; without pyg-lib / torch-sparse it
    samples in plain torch.
    """
    generator = torch.Generator().manual_seed(seed)  # shuffling and sampling
    return graphformer.loader.NeighborLoader(data, num_neighbors=num_neighbors, input_nodes=input_nodes,
                                             batch_size=batch_size, shuffle=True, generator=generator)


# ------------------------------------------------------------------------------------------- training


def run_one(row_name: str, model_name: str, pe_dim: int, seed: int, data, num_classes: int,
            args: argparse.Namespace, device: torch.device, rank: int, world: int) -> dict:
    """Train one model with one seed; returns test accuracy at the best validation epoch and curves."""
    from tqdm import tqdm

    build, lr, weight_decay, kind = SPECS[model_name]
    torch.manual_seed(seed)
    model = build(data.num_features, num_classes, pe_dim).to(device)
    trained = model
    if world > 1:  # DDP broadcasts rank 0's initial weights; dropout differs per process
        trained = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                      else None)
        torch.manual_seed(seed + 1000 * rank)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    x, y = data.x.to(device), data.y.to(device)
    pe = data.pe.to(device) if pe_dim > 0 else None
    graph = make_graph(data.edge_index, data.num_nodes, kind)
    graph = graph.to(device) if isinstance(graph, Tensor) else graph
    train_nodes = data.train_mask.nonzero().view(-1)
    train_nodes = train_nodes[rank::world][: train_nodes.numel() // world]  # equal shards: equal batch counts
    loader = None
    if args.neighbor_sampling:
        loader = make_neighbor_loader(data, train_nodes, args.num_neighbors, args.batch_size, seed)
    max_epochs = args.epochs or {"gat": 1000, "gat-pyg": 1000, "transformer-complete": 100}.get(model_name, 500)

    best = {"val_acc": -1.0, "val_loss": float("inf"), "test_acc": 0.0, "epoch": 0}
    best_loss, waited, train_seconds = float("inf"), 0, 0.0
    curves = {"train_loss": [], "val_acc": []}
    bar = tqdm(range(1, max_epochs + 1), desc=f"{row_name} seed {seed}", leave=False,
               disable=args.no_progress or rank != 0)
    for epoch in bar:
        trained.train()
        start = time.perf_counter()
        if loader is None:
            optimizer.zero_grad()
            out = trained(x, graph, pe)  # [N, classes]
            loss = F.cross_entropy(out[train_nodes.to(device)], y[train_nodes.to(device)])
            loss.backward()
            optimizer.step()
            epoch_loss = loss.item()
        else:
            total, seen = 0.0, 0
            for batch in loader:
                batch = batch.to(device)
                sub_graph = make_graph(batch.edge_index, batch.num_nodes, kind)
                optimizer.zero_grad()
                out = trained(batch.x, sub_graph, batch.pe if pe_dim > 0 else None)[: batch.batch_size]
                loss = F.cross_entropy(out, batch.y[: batch.batch_size])
                loss.backward()
                optimizer.step()
                total, seen = total + loss.item() * batch.batch_size, seen + batch.batch_size
            epoch_loss = total / max(seen, 1)
        train_seconds += time.perf_counter() - start

        model.eval()  # every process evaluates the whole graph with identical weights: they stop together
        with torch.no_grad():
            out = model(x, graph, pe)
            val_loss = float(F.cross_entropy(out[data.val_mask], y[data.val_mask]))
            predictions = out.argmax(-1)
            val_acc = float((predictions[data.val_mask] == y[data.val_mask]).float().mean())
            test_acc = float((predictions[data.test_mask] == y[data.test_mask]).float().mean())
        curves["train_loss"].append(round(epoch_loss, 4))
        curves["val_acc"].append(round(val_acc, 4))
        improved = val_acc > best["val_acc"] or (val_acc == best["val_acc"] and val_loss < best["val_loss"])
        if improved:
            best = {"val_acc": val_acc, "val_loss": val_loss, "test_acc": test_acc, "epoch": epoch}
        if improved or val_loss < best_loss:  # GAT's rule: patience on both validation accuracy and loss
            waited = 0
        else:
            waited += 1
        best_loss = min(best_loss, val_loss)
        bar.set_postfix(loss=f"{epoch_loss:.3f}", val=f"{val_acc:.3f}", best_test=f"{best['test_acc']:.3f}")
        if waited >= args.patience:
            break
    bar.close()
    return {**best, "epochs": epoch, "seconds_per_epoch": train_seconds / epoch, "curves": curves,
            "parameters": sum(p.numel() for p in model.parameters())}


def summarise(row_name: str, runs: list[dict], args: argparse.Namespace) -> dict:
    accs = torch.tensor([run["test_acc"] for run in runs]) * 100
    return {
        "model": row_name,
        "test_acc_mean": round(float(accs.mean()), 2),
        "test_acc_std": round(float(accs.std()) if len(runs) > 1 else 0.0, 2),  # sample std over seeds
        "seeds": len(runs),
        "seconds_per_epoch": round(sum(r["seconds_per_epoch"] for r in runs) / len(runs), 4),
        "test_accs": [round(float(a), 2) for a in accs],
        "best_epochs": [r["epoch"] for r in runs],
        "epochs_run": [r["epochs"] for r in runs],
        "parameters": runs[0]["parameters"],
        "curves_seed0": runs[0]["curves"],
    }


def paired_difference(row: dict, reference: dict) -> dict:
    """Test accuracy of ``row`` minus ``reference`` seed by seed (same seeds, so the same initial weights).

    Returns the mean difference, its sample std, standard error and the paired t-test (``t``, two-sided ``p``).
    """
    if row["seeds"] != reference["seeds"]:
        raise ValueError(f"paired comparison needs the same seeds; got {row['seeds']} ({row['model']}) and "
                         f"{reference['seeds']} ({reference['model']})")
    diff = torch.tensor(row["test_accs"], dtype=torch.float64) - torch.tensor(reference["test_accs"],
                                                                               dtype=torch.float64)
    n = diff.numel()
    std = float(diff.std()) if n > 1 else 0.0
    stderr = std / n**0.5
    t = float(diff.mean()) / stderr if stderr > 0 else float("nan")
    try:
        from scipy.stats import t as student_t

        p = float(2 * student_t.sf(abs(t), n - 1)) if n > 1 and stderr > 0 else float("nan")
    except ImportError:
        p = None
    return {"model": row["model"], "reference": reference["model"], "seeds": n,
            "mean_difference": round(float(diff.mean()), 3), "std_difference": round(std, 3),
            "stderr_difference": round(stderr, 3), "t": round(t, 3), "p": None if p is None else round(p, 4),
            "wins_ties_losses": [int((diff > 0).sum()), int((diff == 0).sum()), int((diff < 0).sum())]}


def comparisons(rows: list[dict]) -> list[dict]:
    """Paired differences of every graphformer row whose PyG reference row (``REFERENCES``) also ran."""
    by_name = {row["model"]: row for row in rows}
    return [paired_difference(by_name[model], by_name[reference]) for reference, model in REFERENCES.items()
            if reference in by_name and model in by_name]


def print_table(rows: list[dict], device: str) -> None:
    print(f"\n{'model':<30} {'test acc (%)':>14} {'seeds':>6} {'s/epoch':>9}  device")
    for row in rows:
        accuracy = f"{row['test_acc_mean']:.1f} ± {row['test_acc_std']:.1f}"
        print(f"{row['model']:<30} {accuracy:>14} {row['seeds']:>6} {row['seconds_per_epoch']:>9.4f}  {device}")
    for pair in comparisons(rows):
        print(f"paired, {pair['model']} - {pair['reference']}: {pair['mean_difference']:+.2f} ± "
              f"{pair['stderr_difference']:.2f} (standard error, {pair['seeds']} seeds), t = {pair['t']:.2f}, "
              f"p = {pair['p']}; wins/ties/losses {pair['wins_ties_losses']}")


def plot(rows: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (bars, curves) = plt.subplots(1, 2, figsize=(14, 5))
    names = [row["model"] for row in rows]
    bars.barh(names, [row["test_acc_mean"] for row in rows], xerr=[row["test_acc_std"] for row in rows],
              color="tab:blue", capsize=4)
    bars.invert_yaxis()
    bars.set_xlabel("test accuracy (%), mean ± std over seeds")
    bars.set_xlim(0, 100)
    for index, row in enumerate(rows):
        bars.text(row["test_acc_mean"] + row["test_acc_std"] + 1, index, f"{row['test_acc_mean']:.1f}",
                  va="center")
    for row in rows:
        curves.plot(range(1, len(row["curves_seed0"]["val_acc"]) + 1),
                    [100 * a for a in row["curves_seed0"]["val_acc"]], label=row["model"])
    curves.set_xlabel("epoch")
    curves.set_ylabel("validation accuracy (%), seed 0")
    curves.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def merge(paths: list[str], args: argparse.Namespace) -> list[dict]:
    """Concatenate the result rows of earlier ``--json`` files (e.g. runs with different ``--seeds``)."""
    loaded = [json.loads(Path(path).read_text()) for path in paths]
    rows = [row for table in loaded for row in table["results"]]
    meta = {key: value for key, value in loaded[0].items() if key != "results"}
    meta["commands"] = [table["command"] for table in loaded]
    meta.pop("command", None)
    meta.pop("paired", None)
    print_table(rows, meta["device"])
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({**meta, "results": rows, "paired": comparisons(rows)}, indent=1) + "\n")
    if args.png:
        plot(rows, args.png, f"{meta['dataset']}, {meta['mode']}, {meta['processes']} process(es), {meta['device']}")
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.from_json:
        return merge(args.from_json, args)
    if args.threads:
        torch.set_num_threads(args.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device(args.device)
    if world > 1:  # launched by torchrun
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        if world > 1 and rank != 0:
            dist.barrier()  # rank 0 copies and processes the data first; the others then read what it wrote
        data, num_classes = load_dataset(args)
        if world > 1 and rank == 0:
            dist.barrier()
        device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.machine()})"
        mode = "neighbor sampling" if args.neighbor_sampling else "full batch"
        meta = {"dataset": args.dataset, "device": device_name, "processes": world, "mode": mode,
                "pe": args.pe, "pe_dim": args.pe_dim,
                "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
                "torch": torch.__version__}
        runs = {row: [] for row, _, _ in variants(args.model, args.pe, args.pe_dim)}
        for seed in range(args.seeds):  # seeds outer: every model has run the same seeds whenever a run stops
            for row_name, model_name, pe_dim in variants(args.model, args.pe, args.pe_dim):
                run = run_one(row_name, model_name, pe_dim, seed, data, num_classes, args, device, rank, world)
                runs[row_name].append(run)
                if rank == 0:
                    print(f"{row_name} seed {seed}: test {100 * run['test_acc']:.1f} at epoch {run['epoch']} of "
                          f"{run['epochs']} ({run['seconds_per_epoch']:.4f} s/epoch)", flush=True)
            rows = [summarise(row_name, row_runs, args) for row_name, row_runs in runs.items()]
            if rank == 0 and args.json:  # rewritten after every seed, so an interrupted run keeps what it finished
                Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                table = {**meta, "results": rows, "paired": comparisons(rows)}
                Path(args.json).write_text(json.dumps(table, indent=1) + "\n")
        if rank == 0:
            print_table(rows, device_name)
            if args.png:
                plot(rows, args.png, f"{args.dataset}, {mode}, {world} process(es), {device_name}")
        return copy.deepcopy(rows)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
