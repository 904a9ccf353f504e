"""Readout: from node features ``[N, F]`` to one vector per graph ``[B, F]``.

* :class:`GlobalPool`: sum / mean / max over each graph's nodes (aggregation by the ``batch`` index; PyG's
  ``global_*_pool``);
* :class:`AttentionReadout`: a learned ``[CLS]`` query per head attends to the nodes of its graph; the "graph of
  the readout" is the bipartite graph node ``n`` -> graph ``batch[n]``, run on graphformer's sparse attention;
* :class:`VirtualNode` / :func:`add_virtual_node`: a learned token inserted as the first node of every graph, so
  that ``fully_connected(batch_ext)`` lets it attend to, and be attended by, every node in every layer
  (Graphormer's ``[VNode]``); :func:`shift_edge_index` moves an explicit ``edge_index`` to the new numbering.

An empty graph (a graph id with no node, counted through ``size``) reads out zeros everywhere.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.nn import global_add_pool, global_max_pool, global_mean_pool

from graphformer.graphs.validation import check_index
from graphformer.nn.inputs import check_features, check_sizes
from graphformer.ops.sparse import sparse_attention

_POOLS = {"sum": global_add_pool, "add": global_add_pool, "mean": global_mean_pool, "max": global_max_pool}


def _read_batch(batch: Tensor | None, num_nodes: int, size: int | None, device: torch.device) -> tuple[Tensor, int]:
    """``(batch [N], B)``: a checked ``batch`` (zeros when None: one graph) and the number of graphs."""
    if batch is None:
        batch = torch.zeros(num_nodes, dtype=torch.long, device=device)
        num_graphs = 1
    else:
        batch = check_index(batch, "batch", num_nodes)
        if batch.device != device:
            raise ValueError(f"`batch` is on {batch.device} but `x` is on {device}; move both to one device")
        num_graphs = int(batch.max()) + 1 if num_nodes > 0 else 0
        if num_nodes > 0 and int(batch.min()) < 0:
            raise ValueError("`batch` contains negative graph ids")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise TypeError(f"`size` (the number of graphs) must be a non-negative int, got {size!r}")
        if size < num_graphs:
            raise ValueError(f"`batch` has graph id {num_graphs - 1} but `size` is {size}; size must exceed every id")
        num_graphs = size
    return batch, num_graphs


class GlobalPool(nn.Module):
    r"""Per-graph pooling: :math:`h_g = \mathrm{AGG}_{n \in g}\, x_n` with ``AGG`` = sum, mean or max.

    PyG's ``global_add_pool`` / ``global_mean_pool`` / ``global_max_pool``; a graph without nodes gives zeros
    (never ``-inf`` or NaN).

    Args:
        aggr: ``"sum"`` (or ``"add"``), ``"mean"`` or ``"max"``.

    Shapes:
        - x: ``[N, F]``; batch: ``[N]`` graph id of every node (None: one graph)
        - output: ``[B, F]`` (``B = size``, default ``batch.max() + 1``)
    """

    def __init__(self, aggr: str = "mean") -> None:
        super().__init__()
        if aggr not in _POOLS:
            raise ValueError(f"`aggr` must be one of 'sum', 'mean', 'max', got {aggr!r}")
        self.aggr = aggr

    def forward(self, x: Tensor, batch: Tensor | None = None, size: int | None = None) -> Tensor:
        x = check_features(self, x, None)
        batch, num_graphs = _read_batch(batch, x.size(0), size, x.device)
        return _POOLS[self.aggr](x, batch, size=num_graphs)  # [B, F]

    def extra_repr(self) -> str:
        return f"aggr={self.aggr!r}"


class AttentionReadout(nn.Module):
    r"""Attention readout: a learned ``[CLS]`` query per head attends to every node of its own graph.

    .. math::
        h_g = W_O \, \big\Vert_{h=1}^{H} \sum_{n \in g} \mathrm{softmax}_n\left(\frac{q^h \cdot k_n^h}{\sqrt{C}}
        \right) v_n^h, \quad k_n^h = W_K^h x_n, \quad v_n^h = W_V^h x_n

    The query :math:`q^h` is a parameter (the same for every graph). This is attention aggregation over the
    bipartite graph with one edge per node, ``n -> batch[n]``, and runs on graphformer's memory-lean sparse
    path (:func:`~graphformer.ops.sparse.sparse_attention`). A graph without nodes reads out zeros.

    Args:
        channels: features per node ``D`` (``H`` heads of ``C = D / H`` channels).
        heads: number of heads ``H``.
        dropout: dropout on the attention weights during training.

    Shapes:
        - x: ``[N, D]``; batch: ``[N]`` graph id of every node (None: one graph)
        - output: ``[B, D]`` (``B = size``, default ``batch.max() + 1``)
    """

    def __init__(self, channels: int, heads: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        check_sizes(channels=channels, heads=heads)
        if channels % heads != 0:
            raise ValueError(f"`channels` ({channels}) must be divisible by `heads` ({heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout}")
        self.channels, self.heads, self.head_dim, self.dropout = channels, heads, channels // heads, dropout
        self.query = nn.Parameter(torch.empty(heads, self.head_dim))  # [H, C]
        self.k_proj = nn.Linear(channels, channels)
        self.v_proj = nn.Linear(channels, channels)
        self.out_proj = nn.Linear(channels, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.query, std=1.0 / math.sqrt(self.head_dim))
        for proj in (self.k_proj, self.v_proj, self.out_proj):
            proj.reset_parameters()

    def forward(self, x: Tensor, batch: Tensor | None = None, size: int | None = None) -> Tensor:
        x = check_features(self, x, self.channels)
        batch, num_graphs = _read_batch(batch, x.size(0), size, x.device)
        num_nodes, heads, channels = x.size(0), self.heads, self.head_dim
        key = self.k_proj(x).view(num_nodes, heads, channels)  # [N, H, C]
        value = self.v_proj(x).view(num_nodes, heads, channels)  # [N, H, C]
        query = self.query.to(x.dtype).expand(num_graphs, heads, channels)  # [B, H, C]
        edge_index = torch.stack([torch.arange(num_nodes, device=x.device), batch])  # node n -> graph batch[n]
        dropout = self.dropout if self.training else 0.0
        pooled = sparse_attention(query, key, value, edge_index, num_targets=num_graphs, dropout=dropout)  # [B, H, C]
        out = self.out_proj(pooled.reshape(num_graphs, self.channels))  # [B, D]
        nonempty = torch.bincount(batch, minlength=num_graphs) > 0  # [B]
        return out * nonempty.unsqueeze(-1).to(out.dtype)  # an empty graph reads out zeros, not W_O's bias

    def extra_repr(self) -> str:
        return f"{self.channels}, heads={self.heads}, dropout={self.dropout}"


def _graph_counts(
    batch: Tensor | None, num_nodes: int, size: int | None, device: torch.device
) -> tuple[Tensor, Tensor]:
    """``(batch [N], counts [B])`` for a sorted ``batch``."""
    batch, num_graphs = _read_batch(batch, num_nodes, size, device)
    if num_nodes > 1 and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError("`batch` must be sorted (nodes of one graph contiguous, as in a PyG Batch)")
    return batch, torch.bincount(batch, minlength=num_graphs)


def add_virtual_node(
    x: Tensor, batch: Tensor | None, token: Tensor, size: int | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Insert ``token`` as the first node of every graph (Graphormer's ``[VNode]``, a ``[CLS]`` token).

    Node ``n`` of graph ``g = batch[n]`` moves to index ``n + g + 1``; graph ``g``'s virtual node sits at
    ``cls_index[g] = ptr[g] + g``. With ``fully_connected(batch_ext)`` the virtual node attends to, and is
    attended by, every node of its graph in every layer; ``x_ext[cls_index]`` is the readout ``[B, F]``.
    A local conv on an explicit ``edge_index`` needs its edges renumbered: :func:`shift_edge_index`
    (the virtual node then has no explicit edges, so a conv sees it as isolated).

    Args:
        x: node features ``[N, F]``.
        batch: sorted graph id of every node ``[N]`` (None: one graph).
        token: the virtual node's features ``[F]`` (or ``[1, F]``), usually a learned parameter.
        size: number of graphs ``B`` (default ``batch.max() + 1``); an empty graph gets a virtual node alone.

    Returns:
        ``(x_ext [N + B, F], batch_ext [N + B], cls_index [B])``.
    """
    batch, counts = _graph_counts(batch, x.size(0), size, x.device)
    num_graphs, features = counts.numel(), x.size(-1)
    if token.numel() != features:
        raise ValueError(f"`token` must have {features} features like `x`, got shape {tuple(token.shape)}")
    graphs = torch.arange(num_graphs, device=x.device)
    cls_index = torch.cumsum(counts, 0) - counts + graphs  # [B] ptr[g] + g
    node_index = torch.arange(x.size(0), device=x.device) + batch + 1  # [N]
    x_ext = x.new_zeros(x.size(0) + num_graphs, features)
    x_ext = x_ext.index_copy(0, node_index, x).index_copy(0, cls_index, token.reshape(1, features).to(x.dtype)
                                                          .expand(num_graphs, features))  # [N + B, F]
    batch_ext = torch.repeat_interleave(graphs, counts + 1)  # [N + B]
    return x_ext, batch_ext, cls_index


def shift_edge_index(edge_index: Tensor, batch: Tensor | None) -> Tensor:
    """Renumber ``edge_index`` ``[2, E]`` for :func:`add_virtual_node`: node ``n`` becomes ``n + batch[n] + 1``."""
    if batch is None:
        return edge_index + 1
    return edge_index + batch[edge_index] + 1


class VirtualNode(nn.Module):
    r"""A learned virtual node per graph (:func:`add_virtual_node` with a parameter token).

    ``x_ext, batch_ext, cls_index = vn(x, batch)``; run layers on ``fully_connected(batch_ext)`` (and a local
    conv on ``shift_edge_index(edge_index, batch)``), then read ``x_ext[cls_index]``.

    Shapes:
        - x: ``[N, F]``; batch: ``[N]`` sorted (None: one graph)
        - output: ``(x_ext [N + B, F], batch_ext [N + B], cls_index [B])``
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        check_sizes(channels=channels)
        self.channels = channels
        self.token = nn.Parameter(torch.empty(channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.token, std=0.02)

    def forward(self, x: Tensor, batch: Tensor | None = None, size: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
        x = check_features(self, x, self.channels)
        return add_virtual_node(x, batch, self.token, size)

    def extra_repr(self) -> str:
        return f"{self.channels}"
