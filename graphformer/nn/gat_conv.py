"""GATConv: additive multi-head graph attention (Velickovic et al., 2018), PyG's layer with a fast path."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import glorot, zeros
from torch_geometric.utils import add_self_loops, remove_self_loops

from graphformer.aggr import ScoreAggregator
from graphformer.debug import check_finite
from graphformer.graphs.structure import BlockStructure
from graphformer.graphs.validation import check_edge_attr
from graphformer.nn.inputs import (
    check_in_channels,
    check_sizes,
    edge_features_of,
    read_inputs,
    score_aggregator,
    unpack,
    weights_like,
)
from graphformer.nn.message_passing import AttentionMessagePassing
from graphformer.ops.attention import attention_dropout, lean_path_applies
from graphformer.ops.sparse import cached_on, sparse_attention


def _self_loops(
    edge_index: Tensor, num_nodes: int, edge_attr: Tensor | None = None, fill_value: Any = "mean"
) -> tuple[Tensor, Tensor | None]:
    """Remove existing self-loops and add one per node ``0 .. num_nodes - 1`` (PyG's utilities)."""
    edge_index, edge_attr = remove_self_loops(edge_index, edge_attr)
    return add_self_loops(edge_index, edge_attr, fill_value=fill_value, num_nodes=num_nodes)


def _sorted_self_loops(edge_index: Tensor, num_nodes: int) -> Tensor:
    """:func:`_self_loops` without edge features, sorted by target (scores then come in the CSR order)."""
    looped, _ = _self_loops(edge_index, num_nodes)
    return looped.index_select(1, torch.argsort(looped[1], stable=True))


class GATConv(AttentionMessagePassing):
    r"""Graph attention layer with additive scores; PyG's ``GATConv`` (same arguments, parameters, outputs).

    .. math::
        s_{ij}^h = \mathrm{LeakyReLU}\left(a_{dst}^h \cdot W^h h_i + a_{src}^h \cdot W^h h_j
                   + a_{edge}^h \cdot W_e^h e_{ij}\right), \qquad
        h_i'^h = \sum_{j \to i} \mathrm{softmax}_j(s_{ij}^h) \, W^h h_j

    and the heads are concatenated (``concat=True``) or averaged, plus ``res(h_i)`` with ``residual=True``
    and a bias. A PyG ``GATConv``'s ``state_dict`` loads into this layer and back (strict). ``message`` /
    ``edge_update`` are PyG's reference; ``forward`` runs graphformer's memory-lean fused softmax-and-sum
    instead whenever nothing needs the per-edge path (see :meth:`MessagePassing.needs_reference`).

    Args:
        in_channels: input features per node ``F``, ``-1`` (lazy), or a pair ``(F_src, F_dst)`` for bipartite
            graphs (separate source / target projections ``lin_src`` / ``lin_dst``).
        out_channels: features per head ``C``.
        heads: number of heads ``H``.
        concat: concatenate heads (output ``H * C``) or average them (output ``C``).
        negative_slope: LeakyReLU slope.
        dropout: dropout on the attention weights during training (returned weights are post-dropout, as PyG's).
        add_self_loops: remove existing self-loops and add one per node (a node attends to itself).
        edge_dim: size of edge features, if any.
        fill_value: edge feature of added self-loops (``"mean"`` of incoming edges, a number, ...), as PyG.
        bias: learn an additive bias.
        residual: add a learned projection of the target's input features (``res``).
        aggr: the attention normalisation, a :class:`~graphformer.aggr.ScoreAggregator` (default softmax
            :class:`~graphformer.aggr.Attention`).
        device, dtype: where and in which dtype to create the parameters.
        **kwargs: PyG ``MessagePassing`` options (``flow``, ``decomposed_layers``).

    Shapes:
        - x: ``[N, F]`` or a pair ``([N_src, F_src], [N_dst, F_dst] or None)``; edge_index: ``[2, E]``, a sparse
          ``adj_t`` ``[N_dst, N_src]`` or a block structure; edge_attr: ``[E, edge_dim]``
        - output: ``[N_dst, H * C]`` or ``[N_dst, C]``; with ``return_attention_weights=True`` also
          ``(edge_index, weights [E', H])`` (``E'`` includes added self-loops), or a sparse tensor for ``adj_t``
    """

    def __init__(
        self,
        in_channels: int | tuple[int, int],
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        negative_slope: float = 0.2,
        dropout: float = 0.0,
        add_self_loops: bool = True,
        edge_dim: int | None = None,
        fill_value: float | Tensor | str = "mean",
        bias: bool = True,
        residual: bool = False,
        aggr: str | ScoreAggregator | Any = "attention",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> None:
        channels = check_in_channels(in_channels)
        check_sizes(out_channels=out_channels, heads=heads, edge_dim=edge_dim)
        attention = score_aggregator(aggr, dropout, "GATConv")
        super().__init__(aggr="sum", node_dim=0, **kwargs)
        self.in_channels, self.out_channels, self.heads, self.concat = in_channels, out_channels, heads, concat
        self.negative_slope, self.add_self_loops, self.edge_dim = negative_slope, add_self_loops, edge_dim
        self.fill_value, self.residual = fill_value, residual
        self.attention = attention
        self._channels = channels
        width = heads * out_channels
        self.lin: Linear | None = None  # one projection, or lin_src / lin_dst for a pair of input widths
        self.lin_src: Linear | None = None
        self.lin_dst: Linear | None = None
        if isinstance(in_channels, int):
            self.lin = Linear(in_channels, width, bias=False, weight_initializer="glorot")
        else:
            self.lin_src = Linear(channels[0], width, bias=False, weight_initializer="glorot")
            self.lin_dst = Linear(channels[1], width, bias=False, weight_initializer="glorot")
        self.att_src = nn.Parameter(torch.empty(1, heads, out_channels))
        self.att_dst = nn.Parameter(torch.empty(1, heads, out_channels))
        if edge_dim is not None:
            self.lin_edge = Linear(edge_dim, width, bias=False, weight_initializer="glorot")
            self.att_edge = nn.Parameter(torch.empty(1, heads, out_channels))
        else:
            self.lin_edge = None
            self.register_parameter("att_edge", None)
        out_size = width if concat else out_channels
        if residual:
            self.res = Linear(channels[1], out_size, bias=False, weight_initializer="glorot")
        else:
            self.register_parameter("res", None)
        if bias:
            self.bias = nn.Parameter(torch.empty(out_size))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for lin in (self.lin, self.lin_src, self.lin_dst, self.lin_edge, self.res):
            if lin is not None:
                lin.reset_parameters()
        glorot(self.att_src)
        glorot(self.att_dst)
        glorot(self.att_edge)
        zeros(self.bias)
        if hasattr(self.attention, "reset_parameters"):
            self.attention.reset_parameters()

    def _project(self, x_src: Tensor, x_dst: Tensor | None) -> tuple[Tensor, Tensor | None]:
        heads, channels = self.heads, self.out_channels
        if self.lin is not None:
            h_src = self.lin(x_src).view(-1, heads, channels)  # [N_src, H, C]
            if x_dst is None:
                return h_src, None
            return h_src, h_src if x_dst is x_src else self.lin(x_dst).view(-1, heads, channels)
        assert self.lin_src is not None and self.lin_dst is not None  # built when lin is not
        h_src = self.lin_src(x_src).view(-1, heads, channels)  # [N_src, H, C]
        return h_src, None if x_dst is None else self.lin_dst(x_dst).view(-1, heads, channels)  # [N_dst, H, C]

    def forward(
        self,
        x: Tensor | tuple[Tensor, Tensor | None] | Any,
        edge_index: Any = None,
        edge_attr: Tensor | None = None,
        size: tuple[int, int] | None = None,
        return_attention_weights: bool | None = None,
        return_attention: bool = False,
    ) -> Tensor | tuple[Tensor, Any]:
        """Returns ``out``, or ``(out, (edge_index, weights [E, H]))`` when attention weights are asked for
        (``return_attention_weights=True`` as in PyG, or ``return_attention=True``)."""
        x, edge_index, edge_attr = unpack(x, edge_index, edge_attr, self.edge_dim is not None)
        want_weights = bool(return_attention_weights) or return_attention
        x_src, x_dst, graph = read_inputs(self, x, edge_index, size, self._channels)
        num_src, num_dst = graph.num_src, graph.num_dst
        edge_index = graph.edge_index
        if isinstance(edge_index, BlockStructure):
            edge_index = edge_index.to_edge_index()
        if edge_attr is None and self.edge_dim is not None:  # a layer without edge_dim ignores adjacency values
            edge_attr = edge_features_of(graph)
        if edge_attr is not None:  # given explicitly to a layer without edge_dim: an error, not silently ignored
            edge_attr = check_edge_attr(edge_attr, edge_index.size(1), self.edge_dim)
            check_finite(edge_attr, "edge_attr")

        res = self.res(x_dst) if self.res is not None and x_dst is not None else None
        h_src, h_dst = self._project(x_src, x_dst)
        alpha_src = (h_src * self.att_src).sum(-1)  # [N_src, H]
        alpha_dst = None if h_dst is None else (h_dst * self.att_dst).sum(-1)  # [N_dst, H]

        if self.add_self_loops:
            loops = min(num_src, num_dst)
            if edge_attr is None and not want_weights and graph.layout is None and not torch.compiler.is_compiling():
                # eager: reuse the looped, target-sorted graph per edge_index (compiled code keeps no such cache)
                looped = partial(_sorted_self_loops, edge_index, loops)
                edge_index = cached_on(edge_index, ("self_loops", loops), looped)
            else:
                # PyG's utilities called here, not through a helper: one graph break fewer under torch.compile
                edge_index, edge_attr = remove_self_loops(edge_index, edge_attr)
                edge_index, edge_attr = add_self_loops(edge_index, edge_attr, fill_value=self.fill_value,
                                                       num_nodes=loops)

        if self.needs_reference():
            weights = self.edge_updater(edge_index, alpha=(alpha_src, alpha_dst), edge_attr=edge_attr,
                                        size=(num_src, num_dst))
            out = self.propagate(edge_index, x=(h_src, h_dst), alpha=weights, size=(num_src, num_dst))
        else:
            scores = self._scores(alpha_src, alpha_dst, edge_attr, edge_index)  # [E, H]
            p = attention_dropout(self.attention)
            if lean_path_applies(self.attention):
                result = sparse_attention(None, None, h_src, edge_index, bias=scores, dropout=p,
                                          return_weights=want_weights, num_targets=num_dst)
                out, weights = result if want_weights else (result, None)
            else:  # a user's normalisation: per-edge weights, then the weighted sum
                weights = self.attention.weights(scores, edge_index[1], num_dst)
                out = h_src.new_zeros(num_dst, self.heads, self.out_channels).index_add_(
                    0, edge_index[1], weights.unsqueeze(-1).to(h_src.dtype) * h_src.index_select(0, edge_index[0]))
        out = out.reshape(num_dst, self.heads * self.out_channels) if self.concat else out.mean(dim=1)
        if res is not None:
            out = out + res
        if self.bias is not None:
            out = out + self.bias
        if want_weights:
            return out, weights_like(graph, edge_index, weights)
        return out

    def _scores(self, alpha_src: Tensor, alpha_dst: Tensor | None, edge_attr: Tensor | None,
                edge_index: Tensor) -> Tensor:
        """The additive scores ``LeakyReLU(a_src.Wh_j + a_dst.Wh_i + a_edge.W_e e_ij)`` ``[E, H]``."""
        scores = alpha_src.index_select(0, edge_index[0])  # [E, H]
        if alpha_dst is not None:
            scores = scores + alpha_dst.index_select(0, edge_index[1])
        if edge_attr is not None and self.lin_edge is not None:
            scores = scores + self._edge_scores(edge_attr)
        return F.leaky_relu(scores, self.negative_slope)

    def _edge_scores(self, edge_attr: Tensor) -> Tensor:
        if edge_attr.dim() == 1:
            edge_attr = edge_attr.view(-1, 1)
        e = self.lin_edge(edge_attr).view(-1, self.heads, self.out_channels)  # [E, H, C]
        return (e * self.att_edge).sum(dim=-1)  # [E, H]

    # -- the reference path, as PyG's GATConv ----------------------------------------------------------------
    def edge_update(self, alpha_j: Tensor, alpha_i: Tensor | None, edge_attr: Tensor | None, index: Tensor,
                    ptr: Tensor | None, dim_size: int | None) -> Tensor:
        alpha = alpha_j if alpha_i is None else alpha_j + alpha_i  # [E, H]
        if index.numel() == 0:
            return alpha
        if edge_attr is not None and self.lin_edge is not None:
            alpha = alpha + self._edge_scores(edge_attr)
        alpha = F.leaky_relu(alpha, self.negative_slope)
        return self.attention.weights(alpha, index, dim_size)

    def message(self, x_j: Tensor, alpha: Tensor) -> Tensor:
        return alpha.unsqueeze(-1) * x_j  # [E, H, C]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, heads={self.heads})"
