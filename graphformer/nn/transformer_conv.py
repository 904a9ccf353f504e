"""TransformerConv: PyG's graph transformer operator (Shi et al., 2021) with graphformer's attention dispatch."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch_geometric.nn.dense.linear import Linear

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
from graphformer.ops.attention import dot_product_attention


class TransformerConv(AttentionMessagePassing):
    r"""PyG's ``TransformerConv``: multi-head dot-product attention over a graph's edges, with a gated skip.

    .. math::
        \alpha_{ij}^h = \mathrm{softmax}_{j \to i}\left(
            \frac{(W_Q^h h_i)\cdot(W_K^h h_j + W_E^h e_{ij})}{\sqrt{C}}\right),
        \qquad o_i^h = \sum_{j \to i} \alpha_{ij}^h \left(W_V^h h_j + W_E^h e_{ij}\right)

    heads concatenated (or averaged), then :math:`h_i' = W_S h_i + o_i` (``root_weight``) or, with ``beta``,
    :math:`h_i' = \beta_i W_S h_i + (1 - \beta_i) o_i`, :math:`\beta_i = \sigma(w^\top [o_i, W_S h_i, o_i - W_S h_i])`.
    Same arguments and parameters as PyG's layer (``lin_query``, ``lin_key``, ``lin_value``, ``lin_edge``,
    ``lin_skip``, ``lin_beta``): state_dicts load both ways. Unlike PyG's, the returned attention weights are
    post-dropout (as PyG's ``GATConv`` returns them) and no attention tensor is kept on the module.

    Attention runs through :func:`graphformer.ops.dot_product_attention`: on an explicit ``edge_index`` the
    memory-lean sparse path (edge features enter as an additive score :math:`q_i \cdot W_E e_{ij} / \sqrt{C}`
    plus a weighted sum of :math:`W_E e_{ij}`), on a block structure such as
    :func:`~graphformer.graphs.fully_connected` dense ``scaled_dot_product_attention``.

    Args:
        in_channels: input features per node, ``-1`` (lazy), or a pair ``(F_src, F_dst)`` for bipartite graphs.
        out_channels: features per head ``C``.
        heads: number of heads ``H``.
        concat: concatenate heads (``H * C``) or average them (``C``).
        beta: gate the skip connection (needs ``root_weight``).
        dropout: dropout on the attention weights during training.
        edge_dim: size of edge features, added to keys and values.
        bias: biases in the query / key / value / skip projections.
        root_weight: add the skip projection ``lin_skip`` of the target's features.
        aggr: the attention normalisation (default softmax :class:`~graphformer.aggr.Attention`).
        **kwargs: PyG ``MessagePassing`` options.

    Shapes:
        - x: ``[N, F]`` or a pair ``([N_src, F_src], [N_dst, F_dst])``; edge_index: ``[2, E]``, a sparse ``adj_t``
          or a block structure; edge_attr: ``[E, edge_dim]``
        - output: ``[N_dst, H * C]`` or ``[N_dst, C]``
    """

    #: always None: PyG's layer stashes the last attention weights here; graphformer returns them when asked
    #: (``return_attention_weights=True``) and never keeps them on the module. Kept for code that reads it.
    _alpha: Tensor | None = None

    def __init__(
        self,
        in_channels: int | tuple[int, int],
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        beta: bool = False,
        dropout: float = 0.0,
        edge_dim: int | None = None,
        bias: bool = True,
        root_weight: bool = True,
        aggr: str | ScoreAggregator | Any = "attention",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> None:
        channels = check_in_channels(in_channels)
        check_sizes(out_channels=out_channels, heads=heads, edge_dim=edge_dim)
        attention = score_aggregator(aggr, dropout, "TransformerConv")
        super().__init__(aggr="sum", node_dim=0, **kwargs)
        self.in_channels, self.out_channels, self.heads = in_channels, out_channels, heads
        self.beta, self.root_weight, self.concat, self.edge_dim = beta and root_weight, root_weight, concat, edge_dim
        self.attention = attention
        self._channels = channels
        width = heads * out_channels
        self.lin_key = Linear(channels[0], width, bias=bias)
        self.lin_query = Linear(channels[1], width, bias=bias)
        self.lin_value = Linear(channels[0], width, bias=bias)
        if edge_dim is not None:
            self.lin_edge = Linear(edge_dim, width, bias=False)
        else:
            self.register_parameter("lin_edge", None)
        out_size = width if concat else out_channels
        self.lin_skip = Linear(channels[1], out_size, bias=bias)  # created always (unused without root_weight), as PyG
        if self.beta:
            self.lin_beta = Linear(3 * out_size, 1, bias=False)
        else:
            self.register_parameter("lin_beta", None)
        self.reset_parameters()
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    def reset_parameters(self) -> None:
        for lin in (self.lin_key, self.lin_query, self.lin_value, self.lin_edge, self.lin_skip, self.lin_beta):
            if lin is not None:
                lin.reset_parameters()
        if hasattr(self.attention, "reset_parameters"):
            self.attention.reset_parameters()

    def forward(
        self,
        x: Tensor | tuple[Tensor, Tensor] | Any,
        edge_index: Any = None,
        edge_attr: Tensor | None = None,
        return_attention_weights: bool | None = None,
        size: tuple[int, int] | None = None,
        return_attention: bool = False,
    ) -> Tensor | tuple[Tensor, Any]:
        """Returns ``out``, or ``(out, (edge_index, weights [E, H]))`` with ``return_attention_weights=True``
        (or ``False``: PyG returns the weights whenever a bool is given) or ``return_attention=True``."""
        x, edge_index, edge_attr = unpack(x, edge_index, edge_attr, self.edge_dim is not None)
        want_weights = isinstance(return_attention_weights, bool) or return_attention
        heads, channels = self.heads, self.out_channels
        x_src, x_dst, graph = read_inputs(self, x, edge_index, size, self._channels, needs_targets=True)
        if edge_attr is None and self.edge_dim is not None:  # a layer without edge_dim ignores adjacency values
            edge_attr = edge_features_of(graph)
        query = self.lin_query(x_dst).view(-1, heads, channels)  # [N_dst, H, C]
        key = self.lin_key(x_src).view(-1, heads, channels)  # [N_src, H, C]
        value = self.lin_value(x_src).view(-1, heads, channels)  # [N_src, H, C]
        edges = graph.edge_index
        edge_emb = None
        if edge_attr is not None:
            if isinstance(edges, BlockStructure):
                raise ValueError(
                    "`edge_attr` needs an explicit edge_index; materialise the structure with .to_edge_index()"
                )
            edge_attr = check_edge_attr(edge_attr, edges.size(1), self.edge_dim)
            check_finite(edge_attr, "edge_attr")
            edge_emb = self.lin_edge(edge_attr).view(-1, heads, channels)  # [E, H, C]

        if self.needs_reference():
            if isinstance(edges, BlockStructure):
                edges = edges.to_edge_index()
            weights = self.edge_updater(edges, query=query, key=key, edge_attr=edge_emb,
                                        size=(graph.num_src, graph.num_dst))
            out = self.propagate(edges, value=value, alpha=weights, edge_attr=edge_emb,
                                 size=(graph.num_src, graph.num_dst))  # [N_dst, H, C]
        else:
            scale = 1.0 / math.sqrt(channels)
            bias = None
            if edge_emb is not None:  # q_i . (k_j + e_ij) = q_i . k_j + q_i . e_ij
                assert isinstance(edges, Tensor)  # edge_attr on a block structure was refused above
                bias = (query.index_select(0, edges[1]) * edge_emb).sum(-1) * scale  # [E, H]
            out, returned, weights = dot_product_attention(
                query, key, value, edges, self.attention, bias=bias, scale=scale,
                return_attention=want_weights or edge_emb is not None,
            )  # [N_dst, H, C]
            if returned is not None:
                edges = returned
            if edge_emb is not None:  # sum_j alpha_ij (v_j + e_ij) = (lean sum_j alpha_ij v_j) + sum_j alpha_ij e_ij
                assert isinstance(edges, Tensor) and weights is not None  # return_attention was set
                out = out.index_add(0, edges[1], weights.unsqueeze(-1).to(edge_emb.dtype) * edge_emb)
        out = out.reshape(-1, heads * channels) if self.concat else out.mean(dim=1)
        if self.root_weight:
            skip = self.lin_skip(x_dst)
            if self.lin_beta is not None:
                gate = self.lin_beta(torch.cat([out, skip, out - skip], dim=-1)).sigmoid()
                out = gate * skip + (1 - gate) * out
            else:
                out = out + skip
        if want_weights:
            assert isinstance(edges, Tensor) and weights is not None  # return_attention was set
            return out, weights_like(graph, edges, weights)
        return out

    # -- the reference path ------------------------------------------------------------------------------------
    def edge_update(self, query_i: Tensor, key_j: Tensor, edge_attr: Tensor | None, index: Tensor,
                    ptr: Tensor | None, dim_size: int | None) -> Tensor:
        if edge_attr is not None:
            key_j = key_j + edge_attr
        scores = (query_i * key_j).sum(dim=-1) / math.sqrt(self.out_channels)  # [E, H]
        return self.attention.weights(scores, index, dim_size)

    def message(self, value_j: Tensor, alpha: Tensor, edge_attr: Tensor | None) -> Tensor:
        if edge_attr is not None:
            value_j = value_j + edge_attr
        return value_j * alpha.unsqueeze(-1)  # [E, H, C]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, heads={self.heads})"

