"""The one place that decides how dot-product attention aggregation runs.

``dot_product_attention`` computes :math:`h_i = \\mathrm{AGG}_{j \\to i}(q_i \\cdot k_j / \\sqrt{C} + b_{ij}, v_j)`
for every head. Two paths, equal to each other up to float rounding:

* dense: an implicit :class:`~graphformer.graphs.BlockStructure` with the standard softmax
  :class:`~graphformer.aggr.Attention` runs block attention with ``scaled_dot_product_attention``;
  a structure that needs an explicit ``[L, L]`` mask (anything but the complete graph or a causal mask over
  equal-size graphs) whose edge density ``E / sum_g L_g^2`` is below :data:`SPARSE_DENSITY_THRESHOLD`
  (a sliding window over a long sequence) is materialised once (cached on the structure) and takes the
  sparse path instead, where the sparse path applies: ``O(E)`` instead of ``O(L^2)`` time and memory
  (on CPU only for now: the threshold was measured there, and the CUDA crossover is not measured yet);
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
from graphformer.graphs.structure import BlockStructure, Causal, FullyConnected
from graphformer.ops.dense import block_attention
from graphformer.ops.sparse import cached_on, sparse_attention

# Below this edge density E / sum_g L_g^2 (and with at least SPARSE_MIN_PAIRS candidate pairs), a masked block
# structure runs on the sparse path. Measured on CPU (1 thread, AttentionConv(64, 4), fwd+bwd, sliding windows):
# the sparse path wins below density ~0.15-0.2 once L >= 512, ties at L = 256, and loses 2x at L <= 128 (its
# fixed cost of ~1.5 ms dominates there); see the README, "Long sequences".
SPARSE_DENSITY_THRESHOLD = 0.1
SPARSE_MIN_PAIRS = 256 * 256


def _needs_mask(structure: BlockStructure) -> bool:
    """Whether block attention over ``structure`` builds an explicit ``[L, L]`` mask (see ``block_attention``)."""
    equal_sizes = structure.num_nodes == structure.num_graphs * structure.max_size
    return not (equal_sizes and isinstance(structure, (FullyConnected, Causal)))


def lean_path_applies(aggr: ScoreAggregator, dtype: torch.dtype, return_attention: bool) -> bool:
    """Whether :func:`~graphformer.ops.sparse.sparse_attention` computes what ``aggr`` would: softmax
    :class:`~graphformer.aggr.Attention` with no active dropout, float32/64, and no weights to return."""
    return (
        type(aggr) is Attention
        and not return_attention
        and not (aggr.training and aggr.dropout > 0)
        and dtype in (torch.float32, torch.float64)
    )


def sparse_edges_of(structure: BlockStructure) -> Tensor | None:
    r"""``structure.to_edge_index()`` if the structure is sparse enough for the sparse path, else None.

    Sparse enough: it needs an explicit mask, :math:`P = \sum_g L_g^2 \ge` :data:`SPARSE_MIN_PAIRS` and
    :math:`E / P <` :data:`SPARSE_DENSITY_THRESHOLD` (``num_edges`` is counted without materialising).
    The materialised edges are cached on the structure's ``ptr`` tensor (see
    :func:`~graphformer.ops.sparse.cached_on`), so a model that reuses one structure across layers and steps
    materialises it once.
    """
    if structure.num_nodes == 0 or not _needs_mask(structure):
        return None
    pairs = int((structure.sizes * structure.sizes).sum())
    if pairs < SPARSE_MIN_PAIRS or structure.num_edges >= SPARSE_DENSITY_THRESHOLD * pairs:
        return None
    return cached_on(structure.ptr, ("edges", type(structure), repr(structure)), structure.to_edge_index)


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
    sparse_ok = lean_path_applies(aggr, query.dtype, return_attention)
    if (
        isinstance(graph, BlockStructure)
        and sparse_ok
        and bias is None
        and query.device.type == "cpu"  # the threshold is measured on CPU only
        and not torch.compiler.is_compiling()
    ):
        edge_index = sparse_edges_of(graph)  # a long sparse structure: O(E) beats the O(L^2) masked path
        if edge_index is not None:
            return sparse_attention(query, key, value, edge_index, scale=scale), None, None
    dense_ok = isinstance(graph, BlockStructure) and type(aggr) is Attention and bias is None
    if dense_ok and not return_attention:
        dropout = aggr.dropout if aggr.training else 0.0
        return block_attention(query, key, value, graph, dropout=dropout, scale=scale), None, None
    if not isinstance(graph, BlockStructure) and sparse_ok:
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


def attention_weights(aggr: ScoreAggregator, scores: Tensor, index: Tensor, dim_size: int | None,
                      dropout: float = 0.0) -> Tensor:
    r"""Per-edge attention weights ``[E, H]``: ``aggr``'s normalisation of ``scores`` over each target's edges,
    then attention dropout with probability ``dropout`` (``\alpha \cdot m / (1 - p)``) — the reference path's
    weights, post-dropout as PyG returns them."""
    dim_size = int(index.max()) + 1 if dim_size is None and index.numel() > 0 else (dim_size or 0)
    weights = aggr.normalize(scores, index, dim_size)  # [E, H]
    if dropout > 0:
        weights = torch.nn.functional.dropout(weights, dropout, True)
    return weights
