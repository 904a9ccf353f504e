"""AttentionConv: the transformer's multi-head scaled dot-product attention as a message-passing layer."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from graphformer.aggr import ScoreAggregator, resolve
from graphformer.debug import check_finite
from graphformer.graphs.structure import BlockStructure
from graphformer.graphs.validation import check_edge_attr
from graphformer.nn.inputs import (
    check_sizes,
    read_inputs,
    resolve_attention,
    unpack,
    weights_like,
)
from graphformer.nn.message_passing import MessagePassing
from graphformer.ops.attention import dot_product_attention
from graphformer.ops.bias import PairBias


def _check_bias(
    attn_bias: object, edges: Tensor | BlockStructure, num_dst: int, num_src: int, heads: int
) -> Tensor | PairBias | None:
    """Validate ``attn_bias`` against the graph and the number of heads (errors name ``attn_bias``)."""
    if attn_bias is None:
        return None
    if isinstance(attn_bias, PairBias):
        if num_src != num_dst:
            raise ValueError("`attn_bias` as a PairBias needs one node set (not a bipartite graph)")
        attn_bias.check(edges.ptr if isinstance(edges, BlockStructure) else None, num_dst, heads)
        return attn_bias
    if not isinstance(attn_bias, Tensor) or not attn_bias.is_floating_point():
        raise TypeError(
            f"`attn_bias` must be a graphformer.ops.PairBias or a float [E, H] tensor, got {type(attn_bias).__name__}"
        )
    num_edges = edges.num_edges if isinstance(edges, BlockStructure) else edges.size(1)
    if attn_bias.shape != (num_edges, heads):
        raise ValueError(
            f"`attn_bias` must have shape [E, H] = [{num_edges}, {heads}], got {tuple(attn_bias.shape)}"
        )
    check_finite(attn_bias, "attn_bias")
    return attn_bias


class AttentionConv(MessagePassing):
    r"""Multi-head dot-product attention over the edges of a graph.

    .. math::
        q_i^h = W_Q^h h_i, \quad k_j^h = W_K^h h_j, \quad v_j^h = W_V^h h_j, \quad
        s_{ij}^h = \frac{q_i^h \cdot k_j^h}{\sqrt{C}} + w_h \cdot e_{ij}

    .. math::
        h_i' = W_O \, \big\Vert_{h=1}^{H} \mathrm{AGG}_{j \to i}\left(s_{ij}^h, v_j^h\right)

    With the default softmax aggregation :math:`\mathrm{AGG} = \sum_j \mathrm{softmax}_j(s_{ij}) v_j` this is
    ``nn.MultiheadAttention`` restricted to the graph's edges; on :func:`~graphformer.graphs.fully_connected`
    it *is* ``nn.MultiheadAttention`` (self-attention). With a plain aggregator (``"sum"``, ``"mean"``,
    ``"max"``, ...) the scores are not used: :math:`h_i' = W_O \,\mathrm{AGG}_{j \to i} v_j`.

    Args:
        embed_dim: features per node ``D`` (split into ``H`` heads of ``C = D / H``).
        num_heads: number of heads ``H``.
        dropout: dropout on the attention weights during training.
        bias: biases in the Q/K/V/output projections.
        edge_dim: size of edge features; each edge gets a learned additive score per head.
        aggr: the aggregation; default softmax :class:`~graphformer.aggr.Attention`.

    Shapes:
        - x: ``[N, D]``; edge_index: ``[2, E]`` or a block structure; edge_attr: ``[E, edge_dim]``
        - output: ``[N, D]``; attention weights ``[E, H]`` with ``return_attention=True``
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        edge_dim: int | None = None,
        aggr: str | Any = "attention",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(aggr=None, node_dim=0)
        check_sizes(embed_dim=embed_dim, num_heads=num_heads, edge_dim=edge_dim)
        if embed_dim % num_heads != 0:
            raise ValueError(
                f"`embed_dim` ({embed_dim}) must be divisible by `num_heads` ({num_heads}); "
                "each head gets embed_dim / num_heads channels"
            )
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.edge_dim = edge_dim
        module = resolve_attention(aggr, dropout)
        # attention: the score normalisation (softmax) and a sum; otherwise the plain aggregator of the values
        self.attention = module if isinstance(module, ScoreAggregator) else None
        self.aggr_module = resolve("sum") if self.attention is not None else module
        self.aggr = "sum" if self.attention is not None else (aggr if isinstance(aggr, str) else str(module))
        factory = {"device": device, "dtype": dtype}
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.edge_proj = nn.Linear(edge_dim, num_heads, bias=False, **factory) if edge_dim is not None else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as ``nn.MultiheadAttention`` does: Xavier on the stacked Q/K/V weight, zero biases."""
        stacked = torch.empty(3 * self.embed_dim, self.embed_dim)
        nn.init.xavier_uniform_(stacked)
        with torch.no_grad():
            for proj, weight in zip((self.q_proj, self.k_proj, self.v_proj), stacked.chunk(3)):
                proj.weight.copy_(weight)
                if proj.bias is not None:
                    proj.bias.zero_()
            self.out_proj.reset_parameters()
            if self.out_proj.bias is not None:
                self.out_proj.bias.zero_()
        if self.edge_proj is not None:
            self.edge_proj.reset_parameters()
        for module in (self.attention, self.aggr_module):
            if module is not None and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def forward(
        self,
        x: Tensor | tuple[Tensor, Tensor] | Any,
        edge_index: Any = None,
        edge_attr: Tensor | None = None,
        return_attention: bool = False,
        size: tuple[int, int] | None = None,
        return_attention_weights: bool | None = None,
        attn_bias: Tensor | PairBias | None = None,
    ) -> Tensor | tuple[Tensor, Any]:
        """Returns ``out``, or ``(out, (edge_index, weights [E, H]))`` with ``return_attention=True`` (PyG's
        ``return_attention_weights=True`` works too). ``x`` may be a pair ``(x_src, x_dst)``: queries come from
        the targets, keys and values from the sources.

        ``attn_bias`` adds :math:`b_{ij}^h` to the scores: a :class:`~graphformer.ops.PairBias` (structural
        bias from :mod:`graphformer.encodings`, on an implicit structure or explicit edges within graphs) or an
        ``[E, H]`` tensor per explicit edge. It adds to the ``edge_attr`` score."""
        x, edge_index, edge_attr = unpack(x, edge_index, edge_attr, self.edge_dim is not None)
        want_weights = return_attention or bool(return_attention_weights)
        x_src, x_dst, graph = read_inputs(self, x, edge_index, size, (self.embed_dim, self.embed_dim), True)
        num_dst, heads, channels = graph.num_dst, self.num_heads, self.head_dim
        edges = graph.edge_index
        value = self.v_proj(x_src).view(-1, heads, channels)  # [N_src, H, C]
        if self.attention is None:  # a plain aggregator: h_i' = W_O AGG_j v_j
            if want_weights:
                raise ValueError(
                    f"return_attention needs an attention aggregation; this layer uses {self.aggr_module!r}"
                )
            edges = edges.to_edge_index() if isinstance(edges, BlockStructure) else edges
            out = self.propagate(edges, value=value, alpha=None, size=(graph.num_src, num_dst))  # [N_dst, H*C]
            return self.out_proj(out.reshape(num_dst, self.embed_dim))
        bias = _check_bias(attn_bias, edges, num_dst, graph.num_src, heads)
        if edge_attr is not None:
            if isinstance(edges, BlockStructure):
                raise ValueError(
                    "`edge_attr` needs an explicit edge_index; materialise the structure with .to_edge_index()"
                )
            edge_attr = check_edge_attr(edge_attr, edges.size(1), self.edge_dim)
            check_finite(edge_attr, "edge_attr")
            assert self.edge_proj is not None  # check_edge_attr refuses edge_attr without edge_dim
            edge_bias = self.edge_proj(edge_attr)  # [E, H]
            if isinstance(bias, PairBias):
                bias = bias.on_edges(edges)
            bias = edge_bias if bias is None else edge_bias + bias.to(edge_bias.dtype)
        query = self.q_proj(x_dst).view(-1, heads, channels)  # [N_dst, H, C]
        key = self.k_proj(x_src).view(-1, heads, channels)  # [N_src, H, C]
        if self.needs_reference():
            edges = edges.to_edge_index() if isinstance(edges, BlockStructure) else edges
            bias = bias.on_edges(edges) if isinstance(bias, PairBias) else bias
            weights = self.edge_updater(edges, query=query, key=key, bias=bias, size=(graph.num_src, num_dst))
            out = self.propagate(edges, value=value, alpha=weights, size=(graph.num_src, num_dst))
        else:
            out, returned, weights = dot_product_attention(
                query, key, value, edges, self.attention, bias=bias, return_attention=want_weights
            )  # [N_dst, H, C]
            edges = returned if returned is not None else edges
        out = self.out_proj(out.reshape(num_dst, self.embed_dim))
        if want_weights:
            assert isinstance(edges, Tensor)  # the weights come with explicit edges
            return out, weights_like(graph, edges, weights)
        return out

    # -- the reference path ------------------------------------------------------------------------------------
    def edge_update(self, query_i: Tensor, key_j: Tensor, bias: Tensor | None, index: Tensor,
                    ptr: Tensor | None, dim_size: int | None) -> Tensor:
        scores = (query_i * key_j).sum(dim=-1) / math.sqrt(self.head_dim)  # [E, H]
        if bias is not None:
            scores = scores + bias
        assert self.attention is not None  # a plain aggregator never computes edge weights
        return self.attention.weights(scores, index, dim_size)

    def message(self, value_j: Tensor, alpha: Tensor | None) -> Tensor:
        if alpha is None:  # plain aggregation of the values, heads side by side
            return value_j.flatten(1)  # [E, H*C]
        return value_j * alpha.unsqueeze(-1).to(value_j.dtype)  # [E, H, C]

    def aggregate(self, inputs: Tensor, index: Tensor, ptr: Tensor | None = None,
                  dim_size: int | None = None) -> Tensor:
        return self.aggr_module(inputs, index, dim_size=dim_size, dim=0)

    def extra_repr(self) -> str:
        extra = f", edge_dim={self.edge_dim}" if self.edge_dim is not None else ""
        return f"{self.embed_dim}, num_heads={self.num_heads}{extra}"

    def __repr__(self) -> str:  # PyG's MessagePassing.__repr__ would print "AttentionConv()" and drop extra_repr
        return f"{type(self).__name__}({self.extra_repr()})"
