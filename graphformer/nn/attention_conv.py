"""AttentionConv: the transformer's multi-head scaled dot-product attention as a message-passing layer."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from graphformer.aggr import ScoreAggregator
from graphformer.debug import check_finite
from graphformer.graphs.structure import BlockStructure
from graphformer.graphs.validation import check_edge_attr
from graphformer.nn.inputs import check_sizes, prepare, resolve_attention, unpack
from graphformer.ops import dot_product_attention


class AttentionConv(nn.Module):
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
        super().__init__()
        check_sizes(embed_dim=embed_dim, num_heads=num_heads, edge_dim=edge_dim)
        if embed_dim % num_heads != 0:
            raise ValueError(
                f"`embed_dim` ({embed_dim}) must be divisible by `num_heads` ({num_heads}); "
                "each head gets embed_dim / num_heads channels"
            )
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.edge_dim = edge_dim
        self.aggr = resolve_attention(aggr, dropout)
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
        if hasattr(self.aggr, "reset_parameters"):
            self.aggr.reset_parameters()

    def forward(
        self,
        x: Tensor | Any,
        edge_index: Tensor | BlockStructure | None = None,
        edge_attr: Tensor | None = None,
        return_attention: bool = False,
    ) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
        """Returns ``out``, or ``(out, (edge_index, weights [E, H]))`` with ``return_attention=True``."""
        x, edge_index, edge_attr = unpack(x, edge_index, edge_attr, self.edge_dim is not None)
        x, graph = prepare(self, x, edge_index, self.embed_dim)
        num_nodes, heads, channels = x.size(0), self.num_heads, self.head_dim
        value = self.v_proj(x).view(num_nodes, heads, channels)  # [N, H, C]
        if not isinstance(self.aggr, ScoreAggregator):
            if return_attention:
                raise ValueError(f"return_attention needs an attention aggregation; this layer uses {self.aggr!r}")
            edges = graph.to_edge_index() if isinstance(graph, BlockStructure) else graph
            messages = value.index_select(0, edges[0]).reshape(-1, heads * channels)  # [E, H*C]
            out = self.aggr.reduce(messages, edges[1], num_nodes)  # [N, H*C]
            return self.out_proj(out.reshape(num_nodes, self.embed_dim))
        bias = None
        if edge_attr is not None:
            if isinstance(graph, BlockStructure):
                raise ValueError(
                    "`edge_attr` needs an explicit edge_index; materialise the structure with .to_edge_index()"
                )
            edge_attr = check_edge_attr(edge_attr, graph.size(1), self.edge_dim)
            check_finite(edge_attr, "edge_attr")
            bias = self.edge_proj(edge_attr)  # [E, H]
        query = self.q_proj(x).view(num_nodes, heads, channels)  # [N, H, C]
        key = self.k_proj(x).view(num_nodes, heads, channels)  # [N, H, C]
        out, edges, weights = dot_product_attention(
            query, key, value, graph, self.aggr, bias=bias, return_attention=return_attention
        )  # [N, H, C]
        out = self.out_proj(out.reshape(num_nodes, self.embed_dim))
        return (out, (edges, weights)) if return_attention else out

    def extra_repr(self) -> str:
        extra = f", edge_dim={self.edge_dim}" if self.edge_dim is not None else ""
        return f"{self.embed_dim}, num_heads={self.num_heads}{extra}"
