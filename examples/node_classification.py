r"""Node classification on hard graphs: GNNs, graph transformers and linear global attention on one budget.

The protocol of Platonov et al., "A critical look at the evaluation of GNNs under heterophily: are we really
making progress?" (ICLR 2023): every model trains on each of the fixed train / validation / test splits of the
graph (``--splits K`` takes the first K), full batch, Adam, cross-entropy on the training nodes; after every epoch
the validation and test metric are computed, the epoch with the best validation metric is selected (early stopping
after ``--patience`` epochs without a better one), and its test metric is reported: ROC-AUC when there are two
classes (score: the class-1 logit minus the class-0 logit), accuracy otherwise; mean ± std (sample std) over the
splits, in percent.

Data (``--dataset``): ``minesweeper`` and ``tolokers`` (and any other graph of the benchmark) are read from
``../shared/data/heterophilous/<name>.npz`` relative to the repository root, never written to; without that file
PyG's ``HeterophilousGraphDataset`` downloads it into ``--cache``. ``--npz PATH`` reads any graph in the same
format: ``node_features [N, F]``, ``node_labels [N]`` (integers ``0 .. C-1``), ``edges [E, 2]`` (each undirected
edge once: the reverse is added, self-loops and duplicates dropped) and ``train_masks`` / ``val_masks`` /
``test_masks`` ``[K, N]``. ``cora`` / ``citeseer`` are the Planetoid graphs (read as ``examples/sparse_graph.py``
does: the raw files of the read-only shared copy go to ``--cache``; CiteSeer is downloaded) with row-normalised
features and 10 random 50 / 25 / 25 % splits (the benchmark's proportions), split ``k`` drawn by
``torch.Generator().manual_seed(k)``. Every input is checked before anything is trained or written.

Every model maps node features ``x_i`` to class logits with hidden width ``d = --hidden``, ``L = --layers``,
dropout ``p = --dropout``, heads ``H = --heads``. ``A`` is the graph's edge set (both directions, no self-loops),
``A + I`` the same with a self-loop per node, ``LN`` LayerNorm, ``Drop`` dropout. Split ``k`` seeds the initial
weights (and the expander), so all models start each split alike.

Platonov et al.'s skeleton (``resnet``, ``gat``, ``gat-sep``, ``gt``, ``gt-sep``; also the frame of ``gps-*`` and
``exphormer``): an input layer, ``L`` pre-norm residual blocks, an output layer,

.. math::
    h^0 = \mathrm{GELU}(\mathrm{Drop}(W_{in} x)), \quad
    h^{l} = h^{l-1} + M_l(\mathrm{LN}(h^{l-1}), A), \quad
    \hat y = W_{out}\, \mathrm{LN}(h^L)

with the feed-forward module
:math:`\mathrm{FFN}(u) = \mathrm{Drop}(W_2\, \mathrm{GELU}(\mathrm{Drop}(W_1 u)))`, ``W_1: [d or 2d -> d]``,
``W_2: [d -> d]``. The blocks ``M_l``:

- ``resnet``: :math:`M(u) = \mathrm{FFN}(u_i)`: no graph at all, the floor every graph model must beat.
- ``gat``: :math:`M(u)_i = \mathrm{FFN}(m_i)`, :math:`m_i = \Vert_h \sum_{j \in N(i) \cup \{i\}}
  \mathrm{softmax}_j(\mathrm{LeakyReLU}(a_{dst}^h \cdot W^h u_i + a_{src}^h \cdot W^h u_j))\, W^h u_j`: a
  :class:`graphformer.GATConv` with ``H`` heads of ``d / H`` (self-loops added), then the FFN.
- ``gat-sep``: the same attention without self-loops (``add_self_loops=False``), and the ego representation kept
  apart: :math:`M(u)_i = \mathrm{FFN}([u_i \Vert m_i])`; ``W_1`` on the concatenation is a root weight plus a
  neighbour weight, :math:`W_1^{ego} u_i + W_1^{nb} m_i`.
- ``gt``: :class:`graphformer.GraphTransformerLayer` (pre-norm, GELU, feed-forward width ``d``) on ``A + I``: two
  residual blocks, :math:`M(u)_i = \mathrm{Drop}(W_O \Vert_h \sum_{j \in N(i) \cup \{i\}}
  \mathrm{softmax}_j(q_i^h \cdot k_j^h / \sqrt{d/H})\, v_j^h)` (dropout also on the attention weights) and then
  the FFN.
- ``gt-sep``: the same attention over ``A`` (no self-loop) plus a separate root weight,
  :math:`M(u)_i = \mathrm{Drop}(W_O m_i + W_R u_i)`, then the FFN block (:class:`graphformer.AttentionConv`).
- ``gps-performer`` / ``gps-sgformer``: ``L`` :class:`graphformer.GPSLayer` s (post-norm, LayerNorm, GELU) in the
  skeleton in place of the residual blocks: :math:`h' = \mathrm{LN}(t + \mathrm{MLP}(t))`,
  :math:`t = \mathrm{LN}(h + \mathrm{Drop}(\mathrm{GraphConv}(h, A))) + \mathrm{LN}(h + \mathrm{Drop}(
  \mathrm{Attn}(h)))` with the local :class:`graphformer.GraphConv` :math:`W_1 h_i + W_2\, \mathrm{mean}_{j \in
  N(i)} h_j` and a linear global attention over all nodes: Performer (``H`` heads of ``d / H``, ReLU random
  features; :class:`graphformer.PerformerAttention`) or SGFormer's simple attention (one head;
  :class:`graphformer.SimpleGlobalAttention`, graph-wise normalisation, Q/K/V biases).
- ``sgformer``: SGFormer (Wu et al., NeurIPS 2023) from graphformer parts on the skeleton's input layer: a global
  branch of one simple-attention layer, :math:`g = \mathrm{Drop}(\mathrm{ReLU}(\mathrm{LN}((\mathrm{SGA}(h^0) +
  h^0) / 2)))`, :math:`\mathrm{SGA}_i = (\hat q_i^\top \sum_j \hat k_j v_j^\top + N v_i) / (\hat q_i^\top \sum_j
  \hat k_j + N)` over all ``N`` nodes with Frobenius-normalised :math:`\hat Q, \hat K`; a GNN branch of ``L``
  blocks :math:`l \leftarrow l + \mathrm{Drop}(\mathrm{GELU}(\mathrm{GraphConv}(\mathrm{LN}(l), A)))` from
  :math:`l = h^0`; then :math:`\hat y = W_{out}\, \mathrm{LN}(\alpha\, l + (1 - \alpha)\, g)`, :math:`\alpha = 0.5`.
- ``polynormer``: Polynormer (Deng et al., ICLR 2024; the structure of PyG's ``Polynormer`` with local
  attention, written with graphformer parts). Input dropout 0.15, then ``L`` local layers
  :math:`g = \mathrm{ReLU}(W_g x)`, :math:`x \leftarrow \mathrm{Drop}(\mathrm{ReLU}(\mathrm{BN}(\mathrm{GAT}(x,
  A + I) + W_r x)))`, :math:`x \leftarrow (1 - \beta)\, \mathrm{LN}(g \odot x) + \beta x` (GAT: a
  :class:`graphformer.GATConv` with ``H`` heads of ``d / H``, no added self-loops, no bias; :math:`\beta = 0.9`),
  summed over the layers into :math:`x_{loc}`; then 2 global layers on :math:`z = \mathrm{LN}(x_{loc})`,
  :math:`z \leftarrow \mathrm{Drop}(\mathrm{ReLU}(W_o (\mathrm{LN}(a) \odot (W_g z + \beta))))` with the
  kernelised attention :math:`a_i^h = \sigma(q_i^h)^\top \sum_j \sigma(k_j^h) v_j^{h\top} / \sigma(q_i^h)^\top
  \sum_j \sigma(k_j^h)` over all nodes (:func:`graphformer.ops.linear_attention`, sigmoid features). The local
  stage alone (:math:`\hat y = W_{loc} x_{loc}`) trains for the first half of the epochs (Polynormer's warm-up),
  then the global stage (:math:`\hat y = W_{glob} z`); early stopping only counts after the switch.
- ``exphormer``: Exphormer's sparse attention graph (Shirzad et al., ICML 2023) under ``L``
  :class:`graphformer.GraphTransformerLayer` s (pre-norm, GELU) in the skeleton:
  ``with_virtual_nodes(union(A, expander(4), I))`` (a random 4-regular expander,
  :func:`graphformer.graphs.expander`, and one virtual node joined to every node,
  :func:`graphformer.graphs.with_virtual_nodes`, whose input is a learned vector). Each edge carries its kinds
  (graph edge, expander edge, virtual-node edge, self-loop) as a 4-dimensional multi-hot feature that every layer
  turns into a per-head attention bias (``edge_dim=4``).

Peers (PyG's own models, ``"peer": true`` in the JSON), at the same width, depth, dropout, optimiser and epochs:

- ``sgformer-pyg``: ``torch_geometric.nn.models.SGFormer`` (one attention layer with one head, ``L`` GCN layers,
  ``graph_weight=0.5``).
- ``polynormer-pyg``: ``torch_geometric.nn.models.Polynormer`` with ``local_attn=True``, ``L`` local and 2 global
  layers, one head (PyG's global attention expects ``heads * hidden`` inputs of width ``hidden``, so it runs only
  with one head), on ``A + I``; the same local-to-global schedule as ``polynormer``.

Isolated nodes (no neighbours) aggregate to zeros: every model gives them finite outputs. ``--json`` holds, per
model, ``test_mean`` / ``test_std`` / ``val_mean`` / ``val_std`` (percent), ``metric``, ``s_per_epoch`` (one
training step and one evaluation), ``peak_memory_mb`` with ``memory_measure`` (CUDA: ``max_memory_allocated``; CPU:
the growth of the process's peak resident memory, ``ru_maxrss``, while the model ran — 0 when it stayed below the
peak of a model before it; run one model per process to compare CPU memory), ``parameters``, ``peer`` and the
per-split results.

Run from the repository root::

    PYTHONPATH=. python examples/node_classification.py --json results.json --png results.png
    PYTHONPATH=. python examples/node_classification.py --dataset tolokers --models resnet,gat-sep,gt-sep --splits 10
    PYTHONPATH=. python examples/node_classification.py --npz my_graph.npz --models gat,gat-sep
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import platform
import resource
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple
from urllib.error import URLError

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import graphformer
from graphformer.graphs import expander, union, with_virtual_nodes
from graphformer.ops import linear_attention

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DEFAULT_CACHE = Path.home() / ".cache" / "graphformer"
HETEROPHILOUS = ["minesweeper", "tolokers", "roman-empire", "amazon-ratings", "questions"]
PLANETOID = {"cora": "Cora", "citeseer": "CiteSeer"}
NPZ_KEYS = ("node_features", "node_labels", "edges", "train_masks", "val_masks", "test_masks")
EXPANDER_DEGREE = 4  # Exphormer's expander: 4 random neighbours per node
POLYNORMER_BETA = 0.9
POLYNORMER_IN_DROPOUT = 0.15
POLYNORMER_GLOBAL_LAYERS = 2
SGFORMER_GRAPH_WEIGHT = 0.5

#: Defaults chosen so that the default run (minesweeper, every model, 3 splits of 100 epochs) takes about 15 minutes
#: on two CPU cores (measured: about 3.3 s for one epoch of all twelve models with one thread); see the README.
DEFAULTS = {"splits": 3, "epochs": 100, "hidden": 64, "layers": 2, "heads": 4, "patience": 50}


class InputError(ValueError):
    """Bad data or arguments: the message names the key or option and says what was expected."""


# -- data ----------------------------------------------------------------------------------------------------------
class NodeData(NamedTuple):
    """One graph with its splits, checked: ``x [N, F]`` float, ``y [N]`` in ``0 .. num_classes - 1``,
    ``edge_index [2, E]`` (both directions, no self-loops, no duplicates), masks ``[K, N]`` bool."""

    name: str
    source: str
    x: Tensor
    y: Tensor
    edge_index: Tensor
    train_masks: Tensor
    val_masks: Tensor
    test_masks: Tensor
    num_classes: int

    @property
    def num_nodes(self) -> int:
        return self.x.size(0)

    @property
    def num_splits(self) -> int:
        return self.train_masks.size(0)

    @property
    def metric(self) -> str:
        return "roc_auc" if self.num_classes == 2 else "accuracy"

    def isolated_nodes(self) -> int:
        return int((torch.bincount(self.edge_index[1], minlength=self.num_nodes) == 0).sum())


def _integers(array: np.ndarray, key: str, source: str) -> np.ndarray:
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"`{key}` in {source} must hold integers, got dtype {array.dtype}")
    return array


def _masks(array: np.ndarray, key: str, source: str, num_nodes: int) -> Tensor:
    if array.ndim != 2 or array.shape[1] != num_nodes:
        raise InputError(f"`{key}` in {source} must have shape [num_splits, num_nodes={num_nodes}], got "
                         f"{list(array.shape)}")
    if array.dtype != bool:
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)) or not np.isin(
                array, (0, 1)).all():
            raise InputError(f"`{key}` in {source} must be boolean (or 0 / 1), got dtype {array.dtype}")
    return torch.from_numpy(array.astype(bool))


def check_graph(name: str, source: str, x: Any, y: Any, edges: Any, train: Any, val: Any, test: Any) -> NodeData:
    """Check the arrays of one graph (the npz keys) and build :class:`NodeData`; errors name the key."""
    x, y, edges = np.asarray(x), np.asarray(y), np.asarray(edges)
    if x.ndim != 2 or x.shape[0] == 0:
        raise InputError(f"`node_features` in {source} must have shape [num_nodes, num_features], got {list(x.shape)}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer) or x.dtype == bool):
        raise InputError(f"`node_features` in {source} must be numbers, got dtype {x.dtype}")
    if not np.isfinite(x.astype(np.float64)).all():
        raise InputError(f"`node_features` in {source} hold NaN or infinite values")
    num_nodes = x.shape[0]
    if y.shape != (num_nodes,):
        raise InputError(f"`node_labels` in {source} must have shape [num_nodes={num_nodes}] like `node_features`, "
                         f"got {list(y.shape)}")
    y = _integers(y, "node_labels", source)
    if y.min() < 0:
        node = int(np.argmin(y))
        raise InputError(f"`node_labels` in {source} must be class indices 0 .. C-1; node {node} has label "
                         f"{int(y[node])}")
    num_classes = int(y.max()) + 1
    if num_classes < 2:
        raise InputError(f"`node_labels` in {source} must hold at least two classes, got only class 0")
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise InputError(f"`edges` in {source} must have shape [num_edges, 2] (one row per undirected edge), got "
                         f"{list(edges.shape)}")
    edges = _integers(edges, "edges", source)
    if edges.size and (edges.min() < 0 or edges.max() >= num_nodes):
        bad = edges[(edges < 0) | (edges >= num_nodes)][0]
        raise InputError(f"`edges` in {source} point outside the node range 0 .. {num_nodes - 1}: node {int(bad)} "
                         f"(`node_features` has {num_nodes} rows)")
    masks = {key: _masks(np.asarray(array), key, source, num_nodes)
             for key, array in (("train_masks", train), ("val_masks", val), ("test_masks", test))}
    counts = {key: mask.size(0) for key, mask in masks.items()}
    if len(set(counts.values())) != 1 or counts["train_masks"] == 0:
        raise InputError(f"`train_masks`, `val_masks` and `test_masks` in {source} must hold the same number (>= 1) "
                         f"of splits, got {counts}")
    train_m, val_m, test_m = masks["train_masks"], masks["val_masks"], masks["test_masks"]
    labels = torch.from_numpy(y.astype(np.int64))
    for split in range(train_m.size(0)):
        for key, mask in masks.items():
            if not mask[split].any():
                raise InputError(f"`{key}` in {source}: split {split} selects no node")
        overlap = (train_m[split] & (val_m[split] | test_m[split])) | (val_m[split] & test_m[split])
        if overlap.any():
            raise InputError(f"`train_masks` / `val_masks` / `test_masks` in {source} overlap in split {split} "
                             f"(node {int(overlap.nonzero()[0])} is in two of them)")
        if num_classes == 2:  # ROC-AUC needs both classes wherever it is computed
            for key in ("val_masks", "test_masks"):
                if labels[masks[key][split]].unique().numel() < 2:
                    raise InputError(f"`{key}` in {source}: split {split} holds one class only, so its ROC-AUC is "
                                     f"undefined")
    edge_index = torch.from_numpy(edges.astype(np.int64)).t()  # [2, E] one direction
    edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)  # [2, 2E] both directions
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]  # no self-loops: each model adds its own
    edge_index = torch.unique(edge_index[1] * num_nodes + edge_index[0])  # sorted by target, no duplicates
    edge_index = torch.stack([edge_index % num_nodes, edge_index // num_nodes])  # [2, E'] source, target
    return NodeData(name, source, torch.from_numpy(x.astype(np.float32)), labels, edge_index, train_m, val_m, test_m,
                    num_classes)


def load_npz(path: Path, name: str | None = None) -> NodeData:
    """A graph in the heterophilous benchmark's npz format, checked (see :func:`check_graph`)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"`--npz` {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as file:
            missing = [key for key in NPZ_KEYS if key not in file.files]
            if missing:
                raise InputError(f"{path} has no key {', '.join(map(repr, missing))}; a graph needs the keys "
                                 f"{', '.join(NPZ_KEYS)} (found {', '.join(file.files) or 'none'})")
            arrays = {key: file[key] for key in NPZ_KEYS}
    except (OSError, EOFError, ValueError) as error:
        if isinstance(error, InputError):
            raise
        raise InputError(f"`--npz` {path} is not a readable npz file ({error})") from error
    return check_graph(name or path.stem, str(path), arrays["node_features"], arrays["node_labels"], arrays["edges"],
                       arrays["train_masks"], arrays["val_masks"], arrays["test_masks"])


def heterophilous_file(name: str, cache: Path) -> Path:
    """``../shared/data/heterophilous/<name>.npz``, or PyG's download of it into ``cache`` (nothing is written
    beside the shared file)."""
    shared = SHARED_DATA / "heterophilous" / f"{name.replace('-', '_')}.npz"
    if shared.is_file():
        return shared
    from torch_geometric.datasets import HeterophilousGraphDataset

    root = cache / "heterophilous"
    try:
        dataset = HeterophilousGraphDataset(str(root), name)
    except (URLError, OSError) as error:  # aiohttp / fsspec connection errors are OSErrors too
        raise SystemExit(f"Could not download {name} into {root} ({error}).\nWithout network access, put "
                         f"{name.replace('-', '_')}.npz (https://github.com/yandex-research/heterophilous-graphs) "
                         f"into {shared.parent} or pass --npz PATH.") from error
    return Path(dataset.raw_paths[0])


def _writable(path: Path) -> bool:
    """Whether ``path`` (or its nearest existing parent) may be written; permission bits count even for root."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    return os.access(probe, os.W_OK) and bool(probe.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def planetoid_root(name: str, cache: Path) -> Path:
    """A writable Planetoid root for PyG (which writes ``processed/`` beside ``raw/``): the raw files of the
    read-only shared copy are copied into ``cache``; without them PyG downloads into ``cache``."""
    cache = cache / "planetoid"
    if not _writable(cache):
        cache = Path(tempfile.gettempdir()) / "graphformer-planetoid"
    raw = SHARED_DATA / "planetoid" / name / "raw"
    target = cache / name / "raw"
    if raw.is_dir() and (not target.is_dir() or {p.name for p in raw.iterdir()} - {p.name for p in target.iterdir()}):
        target.mkdir(parents=True, exist_ok=True)
        for file in raw.iterdir():  # copy, then rename: a concurrent reader never sees a partial file
            partial = target / f".{file.name}.{os.getpid()}.partial"
            shutil.copy2(file, partial)
            os.replace(partial, target / file.name)
    return cache


def random_splits(num_nodes: int, count: int = 10, fractions: tuple[float, float] = (0.5, 0.25)) -> tuple:
    """``count`` random train / val / test masks ``[count, N]`` (50 / 25 / 25 %); split ``k`` from seed ``k``."""
    masks = torch.zeros(3, count, num_nodes, dtype=torch.bool)
    train_size, val_size = int(fractions[0] * num_nodes), int(fractions[1] * num_nodes)
    for k in range(count):
        order = torch.randperm(num_nodes, generator=torch.Generator().manual_seed(k))
        for part, nodes in enumerate((order[:train_size], order[train_size:train_size + val_size],
                                      order[train_size + val_size:])):
            masks[part, k, nodes] = True
    return masks[0], masks[1], masks[2]


def load_planetoid(name: str, cache: Path) -> NodeData:
    from torch_geometric.datasets import Planetoid
    from torch_geometric.transforms import NormalizeFeatures

    root = planetoid_root(PLANETOID[name], cache)
    try:
        data = Planetoid(str(root), PLANETOID[name], transform=NormalizeFeatures())[0]
    except (URLError, OSError) as error:
        raise SystemExit(f"Could not load {PLANETOID[name]} from {root} ({error}).\nWithout network access, put "
                         f"PyG's raw Planetoid files into {root / PLANETOID[name] / 'raw'}.") from error
    edges = data.edge_index[:, data.edge_index[0] < data.edge_index[1]].t()  # each undirected edge once
    train, val, test = random_splits(data.num_nodes)
    return check_graph(name, f"Planetoid {PLANETOID[name]} ({root})", data.x.numpy(), data.y.numpy(), edges.numpy(),
                       train.numpy(), val.numpy(), test.numpy())


def load_data(args: argparse.Namespace) -> NodeData:
    if args.npz is not None:
        return load_npz(args.npz)
    cache = Path(args.cache).expanduser()
    if args.dataset in PLANETOID:
        return load_planetoid(args.dataset, cache)
    return load_npz(heterophilous_file(args.dataset, cache), args.dataset)


# -- models --------------------------------------------------------------------------------------------------------
class Graph:
    """The graph as the models see it: ``A`` (both directions, no self-loops) over ``num_nodes`` nodes, and
    what a model builds from it once per split (``extra``: the Exphormer graph, the batch vector of PyG's models)."""

    def __init__(self, edge_index: Tensor, num_nodes: int, extra: Any = None) -> None:
        self.edge_index, self.num_nodes, self.extra = edge_index, num_nodes, extra

    def with_self_loops(self) -> Tensor:
        """``A + I`` ``[2, E + N]``."""
        loops = torch.arange(self.num_nodes, device=self.edge_index.device).expand(2, -1)
        return torch.cat([self.edge_index, loops], dim=1)


class FeedForward(nn.Module):
    """Platonov et al.'s feed-forward module: ``Drop(W2 GELU(Drop(W1 u)))``; ``W1`` reads ``inputs * d``."""

    def __init__(self, hidden: int, dropout: float, inputs: int = 1) -> None:
        super().__init__()
        self.linear1 = nn.Linear(inputs * hidden, hidden)
        self.linear2 = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, u: Tensor, graph: Graph | None = None) -> Tensor:
        return self.dropout(self.linear2(F.gelu(self.dropout(self.linear1(u)))))  # [N, d]


class Residual(nn.Module):
    """A pre-norm residual block: ``h + module(LN(h), graph)``."""

    def __init__(self, module: nn.Module, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.module = module

    def forward(self, h: Tensor, graph: Graph) -> Tensor:
        return h + self.module(self.norm(h), graph)


class GATModule(nn.Module):
    """``FFN(m_i)`` (``gat``: attention over ``A + I``) or ``FFN([u_i || m_i])`` (``gat-sep``: over ``A``)."""

    def __init__(self, hidden: int, heads: int, dropout: float, separate: bool) -> None:
        super().__init__()
        self.separate = separate
        self.conv = graphformer.GATConv(hidden, hidden // heads, heads=heads, add_self_loops=not separate)
        self.ffn = FeedForward(hidden, dropout, inputs=2 if separate else 1)

    def forward(self, u: Tensor, graph: Graph) -> Tensor:
        m = self.conv(u, graph.edge_index)  # [N, d]; with self-loops added unless separate
        return self.ffn(torch.cat([u, m], dim=-1) if self.separate else m)


class SeparateAttention(nn.Module):
    """``Drop(W_O m_i + W_R u_i)``: dot-product attention over ``A`` (no self-loop) and a root weight."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attention = graphformer.AttentionConv(hidden, heads, dropout=dropout)
        self.root = nn.Linear(hidden, hidden, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, u: Tensor, graph: Graph) -> Tensor:
        return self.dropout(self.attention(u, graph.edge_index) + self.root(u))  # [N, d]


class TransformerBlock(nn.Module):
    """A pre-norm :class:`graphformer.GraphTransformerLayer` (GELU, FFN width ``d``) on ``A + I``."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.layer = graphformer.GraphTransformerLayer(hidden, heads, dim_feedforward=hidden, dropout=dropout,
                                                       activation="gelu", norm_first=True)

    def forward(self, h: Tensor, graph: Graph) -> Tensor:
        return self.layer(h, graph.extra)  # graph.extra: A + I, built once per split


class GPSBlock(nn.Module):
    """:class:`graphformer.GPSLayer`: ``GraphConv`` (mean) on ``A`` beside a linear global attention."""

    def __init__(self, hidden: int, heads: int, dropout: float, attn_type: str) -> None:
        super().__init__()
        kwargs: dict[str, Any] = ({"head_channels": hidden // heads} if attn_type == "performer"
                                  else {"qkv_bias": True})
        self.layer = graphformer.GPSLayer(hidden, graphformer.GraphConv(hidden, hidden, aggr="mean"),
                                          heads=heads if attn_type == "performer" else 1, dropout=dropout,
                                          act="gelu", norm=nn.LayerNorm(hidden), attn_type=attn_type,
                                          attn_kwargs=kwargs)

    def forward(self, h: Tensor, graph: Graph) -> Tensor:
        return self.layer(h, graph.edge_index)  # no batch: all nodes are one graph


class ResidualNet(nn.Module):
    """Platonov et al.'s skeleton: ``W_out LN(blocks(GELU(Drop(W_in x))))``."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int, dropout: float,
                 blocks: list[nn.Module]) -> None:
        super().__init__()
        self.input = nn.Linear(in_channels, hidden)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(hidden)
        self.output = nn.Linear(hidden, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return F.gelu(self.dropout(self.input(x)))  # [N, d]

    def forward(self, x: Tensor, graph: Graph) -> Tensor:
        h = self.embed(x)
        for block in self.blocks:
            h = block(h, graph)
        return self.output(self.norm(h))  # [N, C]


class GraphConvModule(nn.Module):
    """``Drop(GELU(GraphConv(u, A)))``, GraphConv ``W1 u_i + W2 mean_j u_j``."""

    def __init__(self, hidden: int, dropout: float) -> None:
        super().__init__()
        self.conv = graphformer.GraphConv(hidden, hidden, aggr="mean")
        self.dropout = nn.Dropout(dropout)

    def forward(self, u: Tensor, graph: Graph) -> Tensor:
        return self.dropout(F.gelu(self.conv(u, graph.edge_index)))


class SGFormerNet(ResidualNet):
    """SGFormer: one simple global attention layer beside ``L`` GraphConv blocks, mixed ``alpha : 1 - alpha``."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int, layers: int, dropout: float) -> None:
        blocks: list[nn.Module] = [Residual(GraphConvModule(hidden, dropout), hidden) for _ in range(layers)]
        super().__init__(in_channels, num_classes, hidden, dropout, blocks)
        self.attention = graphformer.SimpleGlobalAttention(hidden, heads=1, qkv_bias=True)
        self.attention_norm = nn.LayerNorm(hidden)

    def forward(self, x: Tensor, graph: Graph) -> Tensor:
        h = self.embed(x)  # [N, d]
        g = self.attention_norm((self.attention(h) + h) / 2)  # [N, d] every node attends to all N nodes
        g = self.dropout(F.relu(g))
        local = h
        for block in self.blocks:
            local = block(local, graph)
        mixed = SGFORMER_GRAPH_WEIGHT * local + (1 - SGFORMER_GRAPH_WEIGHT) * g
        return self.output(self.norm(mixed))  # [N, C]


class PolynormerGlobalLayer(nn.Module):
    """Polynormer's global layer: ``Drop(ReLU(W_o (LN(a) * (W_g z + beta))))``, ``a`` sigmoid-kernel linear
    attention over all nodes (:func:`graphformer.ops.linear_attention`)."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.gate = nn.Linear(hidden, hidden)
        self.q, self.k, self.v = (nn.Linear(hidden, hidden, bias=False) for _ in range(3))
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, z: Tensor) -> Tensor:
        n, heads = z.size(0), self.heads
        q = torch.sigmoid(self.q(z)).view(n, heads, -1)  # [N, H, d/H] positive features
        k = torch.sigmoid(self.k(z)).view(n, heads, -1)  # [N, H, d/H]
        v = self.v(z).view(n, heads, -1)  # [N, H, d/H]
        a = linear_attention(q, k, v).reshape(n, -1)  # [N, d] one graph: every node attends to all
        return self.dropout(F.relu(self.out(self.norm(a) * (self.gate(z) + POLYNORMER_BETA))))


class PolynormerNet(nn.Module):
    """Polynormer: ``L`` gated local attention layers (GAT over ``A + I`` plus a root weight), summed; then 2
    global linear-attention layers once :meth:`start_global` was called."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int, layers: int, heads: int,
                 dropout: float) -> None:
        super().__init__()
        widths = [in_channels] + [hidden] * (layers - 1)
        self.gates = nn.ModuleList(nn.Linear(width, hidden) for width in widths)
        self.convs = nn.ModuleList(graphformer.GATConv(width, hidden // heads, heads=heads, add_self_loops=False,
                                                       bias=False) for width in widths)
        self.roots = nn.ModuleList(nn.Linear(width, hidden) for width in widths)
        self.batch_norms = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in widths)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in widths)
        self.global_norm = nn.LayerNorm(hidden)
        self.global_layers = nn.ModuleList(PolynormerGlobalLayer(hidden, heads, dropout)
                                           for _ in range(POLYNORMER_GLOBAL_LAYERS))
        self.predict_local = nn.Linear(hidden, num_classes)
        self.predict_global = nn.Linear(hidden, num_classes)
        self.dropout = nn.Dropout(dropout)
        self.global_stage = False

    def start_global(self) -> None:
        """Switch from the local warm-up to local + global attention (Polynormer's schedule)."""
        self.global_stage = True

    def forward(self, x: Tensor, graph: Graph) -> Tensor:
        x = F.dropout(x, POLYNORMER_IN_DROPOUT, self.training)
        edge_index = graph.extra  # A + I
        local: Tensor | float = 0.0
        for gate, conv, root, batch_norm, norm in zip(self.gates, self.convs, self.roots, self.batch_norms,
                                                      self.norms):
            g = F.relu(gate(x))  # [N, d]
            x = self.dropout(F.relu(batch_norm(conv(x, edge_index) + root(x))))  # [N, d]
            x = (1 - POLYNORMER_BETA) * norm(g * x) + POLYNORMER_BETA * x
            local = local + x
        assert isinstance(local, Tensor)
        if not self.global_stage:
            return self.predict_local(local)  # [N, C]
        z = self.global_norm(local)
        for layer in self.global_layers:
            z = layer(z)
        return self.predict_global(z)  # [N, C]


class ExphormerNet(ResidualNet):
    """GraphTransformerLayers on ``with_virtual_nodes(union(A, expander, I))``, edge kinds as attention bias."""

    EDGE_KINDS = 4  # graph edge, expander edge, virtual-node edge, self-loop

    def __init__(self, in_channels: int, num_classes: int, hidden: int, layers: int, heads: int,
                 dropout: float) -> None:
        blocks: list[nn.Module] = [
            graphformer.GraphTransformerLayer(hidden, heads, dim_feedforward=hidden, dropout=dropout,
                                              activation="gelu", norm_first=True, edge_dim=self.EDGE_KINDS)
            for _ in range(layers)
        ]
        super().__init__(in_channels, num_classes, hidden, dropout, blocks)
        self.virtual = nn.Parameter(torch.zeros(hidden))  # the virtual node's input

    @staticmethod
    def attention_graph(graph: Graph, generator: torch.Generator) -> tuple[Any, Tensor]:
        """``(VirtualNodes, edge kinds [E', 4])`` of ``union(A, expander(4), I)`` plus one virtual node."""
        n, device = graph.num_nodes, graph.edge_index.device
        random_edges = expander(EXPANDER_DEGREE, num_nodes=n, generator=generator).to(device)  # drawn on the CPU
        loops = torch.arange(n, device=device).expand(2, -1)
        ptr = torch.tensor([0, n], device=device)  # one graph
        extended = with_virtual_nodes(union(graph.edge_index, random_edges, loops, num_nodes=n), ptr=ptr)
        edges = extended.edge_index  # [2, E'] over N + 1 nodes, the virtual node is 0
        total = extended.num_nodes
        keys = edges[0] * total + edges[1]

        def contains(part: Tensor) -> Tensor:
            mapped = extended.node_index[part]
            return torch.isin(keys, mapped[0] * total + mapped[1])

        is_virtual = torch.isin(edges[0], extended.virtual_index) | torch.isin(edges[1], extended.virtual_index)
        kinds = torch.stack([contains(graph.edge_index), contains(random_edges), is_virtual,
                             (edges[0] == edges[1]) & ~is_virtual], dim=1)
        return extended, kinds.float()  # [E', 4]

    def forward(self, x: Tensor, graph: Graph) -> Tensor:
        extended, kinds = graph.extra
        h = extended.extend(self.embed(x), self.virtual)  # [N + 1, d]
        for block in self.blocks:
            h = block(h, extended.edge_index, kinds)
        return self.output(self.norm(h[extended.node_index]))  # [N, C]


class PygSGFormer(nn.Module):
    """PyG's ``SGFormer`` (one attention layer, one head, ``L`` GCN layers); all nodes form one graph."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        from torch_geometric.nn.models import SGFormer

        self.model = SGFormer(in_channels, hidden, num_classes, trans_num_layers=1, trans_num_heads=1,
                              trans_dropout=dropout, gnn_num_layers=layers, gnn_dropout=dropout,
                              graph_weight=SGFORMER_GRAPH_WEIGHT)

    def forward(self, x: Tensor, graph: Graph) -> Tensor:
        return self.model(x, graph.edge_index, graph.extra)  # graph.extra: zeros [N] batch vector


class PygPolynormer(nn.Module):
    """PyG's ``Polynormer`` (``local_attn=True``, one head) on ``A + I``."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        from torch_geometric.nn.models import Polynormer

        self.model = Polynormer(in_channels, hidden, num_classes, local_layers=layers,
                                global_layers=POLYNORMER_GLOBAL_LAYERS, in_dropout=POLYNORMER_IN_DROPOUT,
                                dropout=dropout, global_dropout=dropout, heads=1, beta=POLYNORMER_BETA,
                                local_attn=True)

    def start_global(self) -> None:
        self.model._global = True

    def forward(self, x: Tensor, graph: Graph) -> Tensor:
        edge_index, batch = graph.extra
        return self.model(x, edge_index, batch)


def _no_extra(graph: Graph, generator: torch.Generator) -> Any:
    return None


def _self_loops(graph: Graph, generator: torch.Generator) -> Any:
    return graph.with_self_loops()


def _one_batch(graph: Graph, generator: torch.Generator) -> Any:
    return torch.zeros(graph.num_nodes, dtype=torch.long, device=graph.edge_index.device)


def _self_loops_and_batch(graph: Graph, generator: torch.Generator) -> Any:
    return graph.with_self_loops(), _one_batch(graph, generator)


class ModelSpec(NamedTuple):
    """How to build a model (``build(in_channels, num_classes, args)``), what it needs from the graph once per
    split (``prepare(graph, generator)`` -> ``graph.extra``), whether it is PyG's (a peer) and whether it has a
    local warm-up stage (``start_global()`` at half the epochs)."""

    build: Callable[[int, int, argparse.Namespace], nn.Module]
    prepare: Callable[[Graph, torch.Generator], Any] = _no_extra
    peer: bool = False
    warmup: bool = False


def _skeleton(make_blocks: Callable[[argparse.Namespace], list[nn.Module]]) -> Callable[..., nn.Module]:
    def build(in_channels: int, num_classes: int, args: argparse.Namespace) -> nn.Module:
        return ResidualNet(in_channels, num_classes, args.hidden, args.dropout, make_blocks(args))

    return build


def _blocks(make: Callable[[argparse.Namespace], list[nn.Module]]) -> Callable[..., list[nn.Module]]:
    return lambda args: [module for _ in range(args.layers) for module in make(args)]


MODELS: dict[str, ModelSpec] = {
    "resnet": ModelSpec(_skeleton(_blocks(lambda a: [Residual(FeedForward(a.hidden, a.dropout), a.hidden)]))),
    "gat": ModelSpec(_skeleton(_blocks(lambda a: [Residual(GATModule(a.hidden, a.heads, a.dropout, False),
                                                           a.hidden)]))),
    "gat-sep": ModelSpec(_skeleton(_blocks(lambda a: [Residual(GATModule(a.hidden, a.heads, a.dropout, True),
                                                               a.hidden)]))),
    "gt": ModelSpec(_skeleton(_blocks(lambda a: [TransformerBlock(a.hidden, a.heads, a.dropout)])), _self_loops),
    "gt-sep": ModelSpec(_skeleton(_blocks(lambda a: [Residual(SeparateAttention(a.hidden, a.heads, a.dropout),
                                                              a.hidden),
                                                     Residual(FeedForward(a.hidden, a.dropout), a.hidden)]))),
    "gps-performer": ModelSpec(_skeleton(_blocks(lambda a: [GPSBlock(a.hidden, a.heads, a.dropout, "performer")]))),
    "gps-sgformer": ModelSpec(_skeleton(_blocks(lambda a: [GPSBlock(a.hidden, a.heads, a.dropout, "sgformer")]))),
    "sgformer": ModelSpec(lambda f, c, a: SGFormerNet(f, c, a.hidden, a.layers, a.dropout)),
    "polynormer": ModelSpec(lambda f, c, a: PolynormerNet(f, c, a.hidden, a.layers, a.heads, a.dropout),
                            _self_loops, warmup=True),
    "exphormer": ModelSpec(lambda f, c, a: ExphormerNet(f, c, a.hidden, a.layers, a.heads, a.dropout),
                           ExphormerNet.attention_graph),
    "sgformer-pyg": ModelSpec(lambda f, c, a: PygSGFormer(f, c, a.hidden, a.layers, a.dropout), _one_batch,
                              peer=True),
    "polynormer-pyg": ModelSpec(lambda f, c, a: PygPolynormer(f, c, a.hidden, a.layers, a.dropout),
                                _self_loops_and_batch, peer=True, warmup=True),
}


# -- arguments -----------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default="minesweeper", choices=[*HETEROPHILOUS, *PLANETOID],
                      help="heterophilous graphs from ../shared/data/heterophilous (else downloaded into --cache), "
                           "or Planetoid's cora / citeseer with 10 random 50/25/25 splits")
    data.add_argument("--npz", type=Path, default=None,
                      help="read this graph instead (keys node_features, node_labels, edges, train_masks, "
                           "val_masks, test_masks)")
    data.add_argument("--cache", default=str(DEFAULT_CACHE), help="writable folder for downloads and copies")
    data.add_argument("--splits", type=int, default=DEFAULTS["splits"],
                      help=f"use the first K fixed splits (default {DEFAULTS['splits']}; the benchmark has 10)")
    model = parser.add_argument_group("models and training")
    model.add_argument("--models", default=",".join(MODELS),
                       help=f"comma-separated, from {', '.join(MODELS)} (default: all)")
    model.add_argument("--epochs", type=int, default=DEFAULTS["epochs"], help="maximum epochs (full-batch steps)")
    model.add_argument("--patience", type=int, default=DEFAULTS["patience"],
                       help="stop after this many epochs without a better validation metric")
    model.add_argument("--hidden", type=int, default=DEFAULTS["hidden"], help="width d of every model")
    model.add_argument("--layers", type=int, default=DEFAULTS["layers"], help="layers (residual blocks) L")
    model.add_argument("--heads", type=int, default=DEFAULTS["heads"], help="attention heads H (d divisible by H)")
    model.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    model.add_argument("--weight-decay", type=float, default=0.0, help="Adam weight decay")
    model.add_argument("--dropout", type=float, default=0.2)
    run = parser.add_argument_group("running and output")
    run.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    run.add_argument("--json", type=Path, default=None, help="write the results here")
    run.add_argument("--png", type=Path, default=None, help="write a bar chart (mean ± std over splits) here")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    run.add_argument("--from-json", type=Path, nargs="+", default=None, metavar="PATH",
                     help="train nothing: merge the models of earlier --json outputs, then print / --json / --png")
    args = parser.parse_args(argv)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in args.models if name not in MODELS]
    if unknown or not args.models:
        parser.error(f"unknown model(s) {unknown} in --models; choose from {', '.join(MODELS)}")
    for option in ("splits", "epochs", "hidden", "layers", "heads"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be >= 1, got {getattr(args, option)}")
    if args.patience < 1:
        parser.error(f"--patience must be >= 1, got {args.patience}")
    if args.hidden % args.heads:
        parser.error(f"--hidden ({args.hidden}) must be divisible by --heads ({args.heads})")
    if not 0.0 <= args.dropout < 1.0:
        parser.error(f"--dropout must be in [0, 1), got {args.dropout}")
    if not args.lr > 0:
        parser.error(f"--lr must be > 0, got {args.lr}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    return args


# -- training ------------------------------------------------------------------------------------------------------
def roc_auc(scores: Tensor, labels: Tensor) -> float:
    """ROC-AUC of ``scores`` for the positive class (``labels == 1``): the Mann-Whitney statistic, ties halved."""
    scores, positive = scores.double(), labels == 1
    num_pos, num_neg = int(positive.sum()), int((~positive).sum())
    if num_pos == 0 or num_neg == 0:
        raise ValueError("ROC-AUC needs both classes among the labels")
    order = torch.argsort(scores)
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, scores.numel() + 1, dtype=scores.dtype, device=scores.device)
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).to(scores.dtype)  # average rank of each group of ties
    mean_rank = ends - (counts.to(scores.dtype) - 1) / 2
    ranks[order] = mean_rank[inverse]
    return float((ranks[positive].sum() - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg))


def score(logits: Tensor, labels: Tensor, metric: str) -> float:
    """The metric in percent."""
    if metric == "roc_auc":
        return 100 * roc_auc(logits[:, 1] - logits[:, 0], labels)
    return 100 * float((logits.argmax(-1) == labels).double().mean())


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def run_split(name: str, data: NodeData, split: int, args: argparse.Namespace, device: torch.device) -> dict:
    """Train ``name`` on split ``split``; the epoch with the best validation metric gives the test metric."""
    from tqdm import tqdm

    spec = MODELS[name]
    torch.manual_seed(split)
    model = spec.build(data.x.size(1), data.num_classes, args).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    x, y = data.x.to(device), data.y.to(device)
    graph = Graph(data.edge_index.to(device), data.num_nodes)
    graph.extra = spec.prepare(graph, torch.Generator().manual_seed(split))
    train, val, test = (masks[split].to(device) for masks in (data.train_masks, data.val_masks, data.test_masks))
    warmup = args.epochs // 2 if spec.warmup else 0
    best = {"val": -math.inf, "test": math.nan, "epoch": 0}
    waited, seconds, curve = 0, [], []
    bar = tqdm(range(1, args.epochs + 1), desc=f"{name} split {split}", leave=False, disable=args.no_progress)
    for epoch in bar:
        start = time.perf_counter()
        if spec.warmup and epoch == warmup + 1:
            model.start_global()  # type: ignore[operator]
            waited = 0
        model.train()
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x, graph)[train], y[train])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{name}: the training loss is {float(loss)} at epoch {epoch} of split {split}; "
                                     f"lower --lr or check the features")
        loss.backward()
        optimizer.step()
        loss_value = float(loss.detach())
        model.eval()
        with torch.no_grad():
            logits = model(x, graph).float()
        val_score, test_score = score(logits[val], y[val], data.metric), score(logits[test], y[test], data.metric)
        seconds.append(time.perf_counter() - start)
        curve.append(round(val_score, 3))
        if val_score > best["val"]:
            best, waited = {"val": val_score, "test": test_score, "epoch": epoch}, 0
        else:
            waited += 1
        bar.set_postfix(loss=f"{loss_value:.3f}", val=f"{val_score:.2f}", test_at_best=f"{best['test']:.2f}")
        if epoch > warmup and waited >= args.patience:
            break
    bar.close()
    return {"split": split, **best, "epochs_run": len(seconds), "s_per_epoch": sum(seconds) / len(seconds),
            "parameters": sum(p.numel() for p in model.parameters()), "val_curve": curve}


def run_model(name: str, data: NodeData, args: argparse.Namespace, device: torch.device) -> dict:
    """Every split for one model, summarised."""
    from tqdm import tqdm

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = _peak_memory_mb(device)
    runs = [run_split(name, data, split, args, device)
            for split in tqdm(range(args.splits), desc=name, disable=args.no_progress)]
    peak = _peak_memory_mb(device) if device.type == "cuda" else _peak_memory_mb(device) - before
    test = torch.tensor([run["test"] for run in runs], dtype=torch.float64)
    val = torch.tensor([run["val"] for run in runs], dtype=torch.float64)
    std = (lambda t: float(t.std()) if t.numel() > 1 else 0.0)  # noqa: E731 (sample std over splits)
    return {
        "test_mean": round(float(test.mean()), 3), "test_std": round(std(test), 3),
        "val_mean": round(float(val.mean()), 3), "val_std": round(std(val), 3),
        "metric": data.metric, "splits": len(runs), "peer": MODELS[name].peer,
        "s_per_epoch": round(sum(run["s_per_epoch"] for run in runs) / len(runs), 5),
        "peak_memory_mb": round(peak, 1),
        "memory_measure": ("torch.cuda.max_memory_allocated" if device.type == "cuda"
                           else "growth of the process peak RSS (ru_maxrss)"),
        "parameters": runs[0]["parameters"], "runs": runs,
    }


# -- results -------------------------------------------------------------------------------------------------------
METRIC_NAMES = {"roc_auc": "ROC-AUC", "accuracy": "accuracy"}


def markdown(results: dict[str, dict], meta: dict) -> str:
    metric = METRIC_NAMES[meta["metric"]]
    lines = [f"{meta['data']}; {meta['device']}, {meta['threads']} thread(s); {meta['date']}.",
             f"{meta['splits']} split(s), hidden {meta['hidden']}, {meta['layers']} layers, {meta['heads']} heads, "
             f"up to {meta['epochs']} epochs (patience {meta['patience']}), Adam lr {meta['lr']:g}, dropout "
             f"{meta['dropout']:g}; test {metric} (%) at the best validation epoch, mean ± std over splits.",
             "",
             f"| model | test {metric} (%) | val {metric} (%) | s / epoch | peak memory (MB) | parameters |",
             "|---|---|---|---|---|---|"]
    for name, row in results.items():
        label = f"{name} (PyG)" if row["peer"] else name
        lines.append(f"| {label} | {row['test_mean']:.2f} ± {row['test_std']:.2f} | {row['val_mean']:.2f} ± "
                     f"{row['val_std']:.2f} | {row['s_per_epoch']:.3f} | {row['peak_memory_mb']:.0f} | "
                     f"{row['parameters']:,} |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, dict], path: Path, title: str, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    means = [results[n]["test_mean"] for n in names]
    figure, axes = plt.subplots(figsize=(max(6.0, 0.8 * len(names) + 2), 4.5))
    axes.bar(names, means, yerr=[results[n]["test_std"] for n in names], capsize=4,
             color=["tab:orange" if results[n]["peer"] else "tab:blue" for n in names])
    low = min(m - results[n]["test_std"] for n, m in zip(names, means))
    axes.set_ylim(max(0.0, low - 5), 100)
    axes.set_ylabel(f"test {METRIC_NAMES[metric]} (%), mean ± std over splits")
    axes.tick_params(axis="x", rotation=35)
    for index, name in enumerate(names):
        axes.text(index, means[index] + results[name]["test_std"] + 0.5, f"{means[index]:.1f}", ha="center",
                  va="bottom", fontsize=8)
    if metric == "roc_auc":
        axes.axhline(50, color="tab:gray", linestyle="--", linewidth=1, label="chance (ROC-AUC 50)")
    if any(results[n]["peer"] for n in names):
        axes.bar([names[0]], [0], color="tab:orange", label="PyG's model (peer)")  # an empty bar: a legend entry
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8, loc="upper left")
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_outputs(results: dict[str, dict], meta: dict, args: argparse.Namespace) -> None:
    print("\n" + markdown(results, meta))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "models": results}, indent=1) + "\n")
    if args.png is not None:
        plot(results, args.png, f"{meta['data']}\n{meta['device']}; {meta['date']}", meta["metric"])


def merge(paths: list[Path]) -> tuple[dict[str, dict], dict]:
    """Models of several ``--json`` outputs (a later file wins) and the first file's meta; the data, metric and
    budget must agree."""
    loaded = [json.loads(Path(path).read_text()) for path in paths]
    meta = {**loaded[0]["meta"], "command": " + ".join(saved["meta"]["command"] for saved in loaded)}
    for key in ("data", "metric", "splits", "epochs", "patience", "hidden", "layers", "heads", "lr", "dropout"):
        if any(saved["meta"][key] != meta[key] for saved in loaded):
            raise InputError(f"--from-json files differ in {key!r}: {[saved['meta'][key] for saved in loaded]}")
    models = {name: row for saved in loaded for name, row in saved["models"].items()}
    return {name: models[name] for name in sorted(models, key=lambda n: list(MODELS).index(n))}, meta


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.from_json:
        merged, meta = merge(args.from_json)
        write_outputs(merged, meta, args)
        return {"meta": meta, "models": merged}
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data = load_data(args)  # raises before anything is trained or written
    if args.splits > data.num_splits:
        raise InputError(f"--splits {args.splits} asks for more splits than {data.source} has ({data.num_splits})")
    device = torch.device(args.device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.machine()})"
    isolated = data.isolated_nodes()
    description = (f"{data.name}: {data.num_nodes:,} nodes, {data.edge_index.size(1) // 2:,} undirected edges, "
                   f"{data.x.size(1)} features, {data.num_classes} classes")
    print(description + (f"; {isolated} isolated node(s): their neighbourhood aggregates to zero" if isolated else ""),
          flush=True)
    meta = {"data": description, "source": data.source, "metric": data.metric, "device": device_name,
            "threads": torch.get_num_threads(), "isolated_nodes": isolated,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
            "torch": torch.__version__,
            **{key: getattr(args, key) for key in ("splits", "epochs", "patience", "hidden", "layers", "heads", "lr",
                                                   "weight_decay", "dropout")}}
    results: dict[str, dict] = {}
    for name in args.models:
        results[name] = row = run_model(name, data, args, device)
        print(f"{name:>15}: test {METRIC_NAMES[data.metric]} {row['test_mean']:.2f} ± {row['test_std']:.2f} "
              f"(val {row['val_mean']:.2f}), {row['s_per_epoch']:.3f} s/epoch, {row['parameters']:,} parameters",
              flush=True)
        if args.json is not None:  # rewritten after every model: an interrupted run keeps what it finished
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"meta": meta, "models": results}, indent=1) + "\n")
    write_outputs(results, meta, args)
    return {"meta": meta, "models": copy.deepcopy(results)}


if __name__ == "__main__":
    try:
        main()
    except InputError as error:
        sys.exit(f"error: {error}")
