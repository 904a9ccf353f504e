"""GATConv: additive multi-head graph attention (Velickovic et al., 2018)."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphformer.aggr import ScoreAggregator
from graphformer.debug import check_finite
from graphformer.graphs.structure import BlockStructure
from graphformer.graphs.validation import check_edge_attr
from graphformer.nn.inputs import check_sizes, prepare, resolve_attention, unpack
from graphformer.ops.attention import lean_path_applies
from graphformer.ops.sparse import cached_on, sparse_attention


def _self_loops(
    edge_index: Tensor, num_nodes: int, edge_attr: Tensor | None = None, fill_value: float | str = "mean"
) -> tuple[Tensor, Tensor | None]:
    """Remove existing self-loops and add one per node (PyG's utilities)."""
    from torch_geometric.utils import add_self_loops, remove_self_loops

    edge_index, edge_attr = remove_self_loops(edge_index, edge_attr)
    return add_self_loops(edge_index, edge_attr, fill_value=fill_value, num_nodes=num_nodes)


def _sorted_self_loops(edge_index: Tensor, num_nodes: int) -> Tensor:
    """:func:`_self_loops` without edge features, sorted by target (scores then come in the CSR order)."""
    looped, _ = _self_loops(edge_index, num_nodes)
    return looped.index_select(1, torch.argsort(looped[1], stable=True))


class GATConv(nn.Module):
    r"""Graph attention layer with additive scores.

    .. math::
        s_{ij}^h = \mathrm{LeakyReLU}\left(a_{dst}^h \cdot W^h h_i + a_{src}^h \cdot W^h h_j
                   + a_{edge}^h \cdot W_e^h e_{ij}\right), \qquad
        h_i'^h = \sum_{j \to i} \mathrm{softmax}_j(s_{ij}^h) \, W^h h_j

    and the heads are concatenated (``concat=True``) or averaged. Same parameterisation as PyG's
    ``GATConv`` (``lin``, ``att_src``, ``att_dst``, ``lin_edge``, ``att_edge``, ``bias``).

    Args:
        in_channels: input features per node ``F``.
        out_channels: features per head ``C``.
        heads: number of heads ``H``.
        concat: concatenate heads (output ``H * C``) or average them (output ``C``).
        negative_slope: LeakyReLU slope.
        dropout: dropout on the attention weights during training.
        add_self_loops: remove existing self-loops and add one per node (a node attends to itself).
        edge_dim: size of edge features, if any.
        fill_value: edge feature of added self-loops (``"mean"`` of incoming edges, a number, ...), as PyG.
        bias: learn an additive bias.
        aggr: the score aggregator; default softmax :class:`~graphformer.aggr.Attention`.
        device, dtype: where and in which dtype to create the parameters.

    Shapes:
        - x: ``[N, F]``; edge_index: ``[2, E]`` or a block structure; edge_attr: ``[E, edge_dim]``
        - output: ``[N, H * C]`` or ``[N, C]``
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        negative_slope: float = 0.2,
        dropout: float = 0.0,
        add_self_loops: bool = True,
        edge_dim: int | None = None,
        fill_value: float | str = "mean",
        bias: bool = True,
        aggr: str | ScoreAggregator | Any = "attention",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_sizes(in_channels=in_channels, out_channels=out_channels, heads=heads, edge_dim=edge_dim)
        self.in_channels, self.out_channels, self.heads, self.concat = in_channels, out_channels, heads, concat
        self.negative_slope, self.add_self_loops, self.edge_dim = negative_slope, add_self_loops, edge_dim
        self.fill_value = fill_value
        aggregator = resolve_attention(aggr, dropout)
        if not isinstance(aggregator, ScoreAggregator):
            raise ValueError(f"GATConv needs a score aggregator (e.g. Attention), got {aggregator!r}")
        self.aggr = aggregator
        factory = {"device": device, "dtype": dtype}
        self.lin = nn.Linear(in_channels, heads * out_channels, bias=False, **factory)
        self.att_src = nn.Parameter(torch.empty(1, heads, out_channels, **factory))
        self.att_dst = nn.Parameter(torch.empty(1, heads, out_channels, **factory))
        if edge_dim is not None:
            self.lin_edge = nn.Linear(edge_dim, heads * out_channels, bias=False, **factory)
            self.att_edge = nn.Parameter(torch.empty(1, heads, out_channels, **factory))
        else:
            self.register_module("lin_edge", None)
            self.register_parameter("att_edge", None)
        out_size = heads * out_channels if concat else out_channels
        self.bias = nn.Parameter(torch.empty(out_size, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.lin.weight)
        for att in (self.att_src, self.att_dst, self.att_edge):
            if att is not None:
                nn.init.xavier_uniform_(att.view(self.heads, self.out_channels))
        if self.lin_edge is not None:
            nn.init.xavier_uniform_(self.lin_edge.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(
        self,
        x: Tensor | Any,
        edge_index: Tensor | BlockStructure | None = None,
        edge_attr: Tensor | None = None,
        return_attention: bool = False,
    ) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
        """Returns ``out``, or ``(out, (edge_index, weights [E, H]))`` with ``return_attention=True``."""
        x, edge_index, edge_attr = unpack(x, edge_index, edge_attr, self.edge_dim is not None)
        x, graph = prepare(self, x, edge_index, self.in_channels)
        num_nodes, heads, channels = x.size(0), self.heads, self.out_channels
        edge_index = graph.to_edge_index() if isinstance(graph, BlockStructure) else graph
        if edge_attr is not None:
            edge_attr = check_edge_attr(edge_attr, edge_index.size(1), self.edge_dim)
            check_finite(edge_attr, "edge_attr")
        if self.add_self_loops and edge_attr is None and not return_attention:  # reuse the looped graph per edges
            looped = partial(_sorted_self_loops, edge_index, num_nodes)
            edge_index = cached_on(edge_index, ("self_loops", num_nodes), looped)
        elif self.add_self_loops:
            edge_index, edge_attr = _self_loops(edge_index, num_nodes, edge_attr, self.fill_value)
        h = self.lin(x).view(num_nodes, heads, channels)  # [N, H, C]
        alpha_src = (h * self.att_src).sum(-1)  # [N, H]
        alpha_dst = (h * self.att_dst).sum(-1)  # [N, H]
        source, target = edge_index[0], edge_index[1]
        scores = alpha_src.index_select(0, source) + alpha_dst.index_select(0, target)  # [E, H]
        if self.lin_edge is not None and edge_attr is not None:
            e = self.lin_edge(edge_attr).view(-1, heads, channels)  # [E, H, C]
            scores = scores + (e * self.att_edge).sum(-1)
        scores = F.leaky_relu(scores, self.negative_slope)
        weights = None
        # memory-lean fused softmax + weighted sum: keeps only [E, H] for backward
        if lean_path_applies(self.aggr, h.dtype, return_attention):
            out = sparse_attention(None, None, h, edge_index, bias=scores)
        else:  # reference: gather values [E, H, C], the aggregator normalises and sums
            values = h.index_select(0, source)  # [E, H, C]
            out, weights = self.aggr(values, target, dim_size=num_nodes, scores=scores, return_weights=True)
        out = out.reshape(num_nodes, heads * channels) if self.concat else out.mean(dim=1)
        if self.bias is not None:
            out = out + self.bias
        return (out, (edge_index, weights)) if return_attention else out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, heads={self.heads}, concat={self.concat}, "
            f"edge_dim={self.edge_dim}"
        )
