"""Write your own aggregator and plug it into graphformer's layers, trained on Cora.

Two user-written aggregators, each a few lines over a graphformer base class:

- ``PowerMean`` (an :class:`graphformer.aggr.Aggregator`): ``h_i = (mean_{j->i} relu(x_j)^p)^(1/p)`` with a
  learnable ``p >= 1``: ``p = 1`` is the mean, ``p -> inf`` approaches the max. Used by
  :class:`graphformer.GraphConv` and compared with the built-in ``"mean"``.
- ``TemperatureSoftmax`` (a :class:`graphformer.aggr.ScoreAggregator`): ``alpha_ij = softmax_j(s_ij / tau_h)``
  with one learnable temperature per head. Used by :class:`graphformer.GraphTransformerLayer` (the layer
  computes the scaled dot-product scores, the aggregator normalises them) and compared with the built-in
  softmax ``"attention"``.

Example::

    PYTHONPATH=. python examples/custom_aggregator.py --epochs 200 --seeds 3 --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import stat
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import graphformer

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_ROOT = REPO_ROOT.parent / "shared" / "data" / "planetoid"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="User-written aggregators in GraphConv and GraphTransformerLayer")
    parser.add_argument("--root", default=None, help=f"Planetoid root with Cora/raw (default: {SHARED_ROOT})")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "graphformer" / "planetoid"),
                        help="writable copy of the raw files when --root is read-only")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None, help="write the results as JSON here")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------ the aggregators


@graphformer.aggr.register("powermean")
class PowerMean(graphformer.aggr.Aggregator):
    r"""Power mean with a learnable exponent.

    .. math::
        h_i = \Big(\frac{1}{|N(i)|} \sum_{j \to i} \max(x_j, 0)^p\Big)^{1/p}, \qquad p = 1 + \mathrm{softplus}(\rho)

    Args:
        p: initial exponent (> 1).
        eps: floor that keeps :math:`x^{1/p}` differentiable at zero.

    Shapes:
        - x: ``[E, *]``; index: ``[E]``; output: ``[dim_size, *]``
    """

    def __init__(self, p: float = 2.0, eps: float = 1e-6) -> None:
        super().__init__()
        if p <= 1.0:
            raise ValueError(f"`p` must be > 1, got {p}")
        self.initial_p, self.eps = p, eps
        self.rho = nn.Parameter(torch.empty(()))
        self.mean = graphformer.aggr.Mean()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        excess = self.initial_p - 1.0
        with torch.no_grad():  # rho = softplus^-1(p - 1), written so that it does not overflow for large p
            self.rho.fill_(excess + math.log(-math.expm1(-excess)))

    @property
    def p(self) -> Tensor:
        return 1.0 + F.softplus(self.rho)

    def reduce(self, x: Tensor, index: Tensor, dim_size: int) -> Tensor:
        p = self.p
        powered = (x.clamp(min=0) + self.eps) ** p  # [E, *]
        mean = self.mean.reduce(powered, index, dim_size)  # [N, *]; exactly 0 only where no message arrives
        root = mean.clamp(min=self.eps**p) ** (1.0 / p)
        return torch.where(mean > 0, root, torch.zeros_like(root))  # empty neighbourhoods: zeros

    def extra_repr(self) -> str:
        return f"p={self.p.item():.3f}"


class TemperatureSoftmax(graphformer.aggr.ScoreAggregator):
    r"""Softmax attention with a learnable temperature per head.

    .. math::
        \alpha_{ij}^h = \mathrm{softmax}_{j \to i}\big(s_{ij}^h / \tau_h\big), \qquad \tau_h = e^{\theta_h},
        \qquad h_i^h = \sum_{j \to i} \alpha_{ij}^h v_j^h

    Args:
        heads: number of heads ``H`` (one temperature each, initialised to 1).
        dropout: dropout on the weights during training.

    Shapes:
        - scores: ``[E, H]``; x: ``[E, H, C]``; output: ``[N, H, C]``
    """

    def __init__(self, heads: int, dropout: float = 0.0) -> None:
        super().__init__(dropout)
        self.heads = heads
        self.log_temperature = nn.Parameter(torch.zeros(heads))

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.log_temperature)

    @property
    def temperature(self) -> Tensor:
        return self.log_temperature.exp()

    def normalize(self, scores: Tensor, index: Tensor, dim_size: int) -> Tensor:
        return graphformer.aggr.segment_softmax(scores / self.temperature, index, dim_size)  # [E, H]

    def extra_repr(self) -> str:
        return f"heads={self.heads}" + (f", dropout={self.dropout}" if self.dropout else "")


# ----------------------------------------------------------------------------------------- the models


class GraphConvNet(nn.Module):
    """Two GraphConv layers with the given aggregation: ``h_i' = W1 h_i + W2 AGG_j h_j``."""

    def __init__(self, in_channels: int, num_classes: int, aggr, hidden: int = 64, dropout: float = 0.5):
        super().__init__()
        self.conv1 = graphformer.GraphConv(in_channels, hidden, aggr=aggr())
        self.conv2 = graphformer.GraphConv(hidden, num_classes, aggr=aggr())
        self.dropout = dropout

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = F.relu(self.conv1(F.dropout(x, self.dropout, self.training), edge_index))  # [N, hidden]
        return self.conv2(F.dropout(x, self.dropout, self.training), edge_index)  # [N, classes]


class TransformerNet(nn.Module):
    """Linear input, two pre-norm GraphTransformerLayers with the given aggregation, linear classifier."""

    def __init__(self, in_channels: int, num_classes: int, aggr, d_model: int = 64, nhead: int = 4,
                 dropout: float = 0.5):
        super().__init__()
        self.input = nn.Linear(in_channels, d_model)
        self.layers = nn.ModuleList(
            graphformer.GraphTransformerLayer(d_model, nhead, 2 * d_model, dropout, norm_first=True, aggr=aggr())
            for _ in range(2)
        )
        self.norm = nn.LayerNorm(d_model)
        self.output = nn.Linear(d_model, num_classes)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        h = self.input(F.dropout(x, 0.6, self.training))  # [N, d_model]
        for layer in self.layers:
            h = layer(h, edge_index)
        return self.output(self.norm(h))  # [N, classes]


def variants(num_features: int, num_classes: int) -> dict:
    """name -> (model builder, learned-parameter report)."""
    return {
        "graphconv-mean (built-in)": lambda: GraphConvNet(num_features, num_classes, lambda: "mean"),
        "graphconv-powermean (custom)": lambda: GraphConvNet(num_features, num_classes, PowerMean),
        "transformer-softmax (built-in)": lambda: TransformerNet(num_features, num_classes, lambda: "attention"),
        "transformer-temperature (custom)": lambda: TransformerNet(
            num_features, num_classes, lambda: TemperatureSoftmax(4, dropout=0.5)),
    }


def learned(model: nn.Module) -> dict:
    """The learned aggregator parameters (p of every PowerMean, temperatures of every TemperatureSoftmax)."""
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, PowerMean):
            out[name] = round(module.p.item(), 3)
        elif isinstance(module, TemperatureSoftmax):
            out[name] = [round(t, 3) for t in module.temperature.tolist()]
    return out


# ---------------------------------------------------------------------------------------------- data


def load_cora(root: str | None, cache: str):
    """PyG's Planetoid Cora; the shared offline copy (never written to, whatever its permission bits say) or a
    read-only ``root`` is copied to ``cache`` first (PyG writes ``processed/`` beside ``raw/``)."""
    from torch_geometric.datasets import Planetoid
    from torch_geometric.transforms import NormalizeFeatures

    shared = not root and (SHARED_ROOT / "Cora" / "raw").is_dir()
    path = Path(root).expanduser() if root else (SHARED_ROOT if shared else Path(cache).expanduser())
    folder = path / "Cora"
    read_only = shared or (
        folder.exists() and not (os.access(folder, os.W_OK) and folder.stat().st_mode & stat.S_IWUSR)
    )
    if read_only:
        target = Path(cache).expanduser()
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError:
            target = Path(tempfile.gettempdir()) / "graphformer-planetoid"
        if not (target / "Cora" / "raw").is_dir():
            shutil.copytree(folder / "raw", target / "Cora" / "raw")
        path = target
    try:
        return Planetoid(str(path), "Cora", transform=NormalizeFeatures())
    except OSError as error:
        raise SystemExit(f"Could not load Cora from {path} ({error}). Without network access, put PyG's raw "
                         f"Planetoid files (ind.cora.*) into {path / 'Cora' / 'raw'} or pass --root.") from error


# ------------------------------------------------------------------------------------------ training


def train(model: nn.Module, data, epochs: int, progress: bool, desc: str) -> dict:
    """Adam (lr 0.005, weight decay 5e-4); test accuracy at the epoch of best validation accuracy."""
    from tqdm import tqdm

    optimizer = torch.optim.Adam(model.parameters(), lr=0.005, weight_decay=5e-4)
    best = {"val_acc": -1.0, "test_acc": 0.0, "epoch": 0}
    bar = tqdm(range(1, epochs + 1), desc=desc, leave=False, disable=not progress)
    for epoch in bar:
        model.train()
        optimizer.zero_grad()
        loss = F.cross_entropy(model(data.x, data.edge_index)[data.train_mask], data.y[data.train_mask])
        loss.backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            predictions = model(data.x, data.edge_index).argmax(-1)
        val_acc = float((predictions[data.val_mask] == data.y[data.val_mask]).float().mean())
        if val_acc > best["val_acc"]:
            test_acc = float((predictions[data.test_mask] == data.y[data.test_mask]).float().mean())
            best = {"val_acc": val_acc, "test_acc": test_acc, "epoch": epoch}
        bar.set_postfix(loss=f"{loss.item():.3f}", val=f"{val_acc:.3f}")
    return {**best, "learned": learned(model)}


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = load_cora(args.root, args.cache)
    data = dataset[0].to(args.device)
    from torch_geometric.utils import add_self_loops

    data.edge_index = add_self_loops(data.edge_index, num_nodes=data.num_nodes)[0]  # every node attends to itself
    rows = []
    for name, build in variants(dataset.num_features, dataset.num_classes).items():
        runs = []
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            runs.append(train(build().to(args.device), data, args.epochs, not args.no_progress, f"{name} {seed}"))
        accs = torch.tensor([run["test_acc"] for run in runs]) * 100
        rows.append({"model": name, "test_acc_mean": round(float(accs.mean()), 2),
                     "test_acc_std": round(float(accs.std()) if len(runs) > 1 else 0.0, 2),
                     "seeds": len(runs), "learned_seed0": runs[0]["learned"]})
    print(f"\n{'model':<34} {'test acc (%)':>14}  learned aggregator parameters (seed 0)")
    for row in rows:
        accuracy = f"{row['test_acc_mean']:.1f} ± {row['test_acc_std']:.1f}"
        print(f"{row['model']:<34} {accuracy:>14}  {row['learned_seed0'] or ''}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"dataset": "Cora", "epochs": args.epochs, "results": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
