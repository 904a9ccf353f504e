"""The one place that decides how dot-product attention aggregation runs.

``dot_product_attention`` computes :math:`h_i = \\mathrm{AGG}_{j \\to i}(q_i \\cdot k_j / \\sqrt{C} + b_{ij}, v_j)`
for every head. Two paths, equal to each other up to float rounding:

* dense: an implicit :class:`~graphformer.graphs.BlockStructure` with the standard softmax
  :class:`~graphformer.aggr.Attention` runs block attention with ``scaled_dot_product_attention``;
* sparse: an explicit ``edge_index`` with the standard softmax :class:`~graphformer.aggr.Attention` (no
  dropout active, no returned weights) runs :func:`~graphformer.ops.sparse.sparse_attention`, which keeps
  only ``[E, H]`` weights for backward (Triton kernel on CUDA);
* reference: explicit edges (or anything else: a user's score aggregator, edge biases, returned weights)
  gather ``q_i, k_j`` per edge, score, and let the aggregator normalise and sum.

Layers call this function and never know which path ran.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from graphformer.aggr.attention import Attention
from graphformer.aggr.base import ScoreAggregator
from graphformer.graphs.structure import BlockStructure
from graphformer.ops.dense import block_attention
from graphformer.ops.sparse import sparse_attention


def dot_product_scores(query: Tensor, key: Tensor, edge_index: Tensor, scale: float | None = None) -> Tensor:
    r"""Per-edge scores :math:`s_{ij}^h = q_i^h \cdot k_j^h \cdot \mathrm{scale}` ``[E, H]`` (scale 1/sqrt(C)).

    Float32 for half-precision inputs (the softmax runs in float32 anyway)."""
    scale = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale
    source, target = edge_index[0], edge_index[1]
    # scale before the product and sum in float32, so half-precision scores do not overflow to inf
    products = (query * scale).index_select(0, target) * key.index_select(0, source)  # [E, H, C]
    if products.dtype in (torch.float16, torch.bfloat16):
        return products.sum(-1, dtype=torch.float32)
    return products.sum(-1)  # [E, H]


def dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    graph: Tensor | BlockStructure,
    aggr: ScoreAggregator,
    bias: Tensor | None = None,
    scale: float | None = None,
    return_attention: bool = False,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Multi-head dot-product attention aggregation over ``graph``.

    Args:
        query, key, value: ``[N, H, C]`` projected node features.
        graph: explicit ``edge_index`` ``[2, E]`` (validated) or a block structure.
        aggr: the score aggregator that normalises and sums (``Attention`` is softmax).
        bias: optional additive score per edge and head ``[E, H]`` (needs an explicit ``edge_index``).
        return_attention: also return the materialised ``edge_index`` and the weights ``[E, H]``.

    Returns:
        ``(out [N, H, C], edge_index or None, weights or None)``.
    """
    num_nodes = query.size(0)
    dense_ok = isinstance(graph, BlockStructure) and type(aggr) is Attention and bias is None
    if dense_ok and not return_attention:
        dropout = aggr.dropout if aggr.training else 0.0
        return block_attention(query, key, value, graph, dropout=dropout, scale=scale), None, None
    if (
        not isinstance(graph, BlockStructure)
        and type(aggr) is Attention
        and not return_attention
        and not (aggr.training and aggr.dropout > 0)
        and query.dtype in (torch.float32, torch.float64)
    ):
        return sparse_attention(query, key, value, graph, bias=bias, scale=scale), None, None
    edge_index = graph.to_edge_index() if isinstance(graph, BlockStructure) else graph
    scores = dot_product_scores(query, key, edge_index, scale)  # [E, H]
    if bias is not None:
        scores = scores + bias
    values = value.index_select(0, edge_index[0])  # [E, H, C]
    if return_attention:
        out, weights = aggr(values, edge_index[1], dim_size=num_nodes, scores=scores, return_weights=True)
        return out, edge_index, weights
    return aggr.reduce(values, edge_index[1], num_nodes, scores=scores), None, None
