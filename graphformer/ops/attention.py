"""The one place that decides how dot-product attention aggregation runs.

``dot_product_attention`` computes :math:`h_i = \\mathrm{AGG}_{j \\to i}(q_i \\cdot k_j / \\sqrt{C} + b_{ij}, v_j)`
for every head. Three paths, equal to each other up to float rounding (and in distribution under attention dropout):

* dense: an implicit :class:`~graphformer.graphs.BlockStructure` with the standard softmax
  :class:`~graphformer.aggr.Attention` and no returned weights runs block attention with
  ``scaled_dot_product_attention`` (attention dropout through its ``dropout_p``); a
  :class:`~graphformer.ops.PairBias` reaches it as the float mask per padded block. A structure that needs an
  explicit ``[L, L]`` mask (anything but the complete graph or a causal mask over equal-size graphs) whose
  edge density ``E / sum_g L_g^2`` is below :data:`SPARSE_DENSITY_THRESHOLD` (a sliding window over a long
  sequence) is materialised once (cached on the structure) and takes the sparse path instead: ``O(E)``
  instead of ``O(L^2)`` time and memory (on CPU in float32/64 only for now: the threshold was measured
  there; the CUDA crossover is not measured yet);
* sparse (memory-lean): explicit ``edge_index`` with the standard :class:`~graphformer.aggr.Attention` runs
  :func:`~graphformer.ops.sparse.sparse_attention`, which keeps only ``[E, H]`` weights (and a bool dropout
  mask) for backward, in every configuration: training with attention dropout, returned weights (after
  dropout, differentiable), edge biases, half precision (softmax in float32) and bipartite query/key sizes.
  A block structure with returned weights (or with a bias given as an ``[E, H]`` tensor) is materialised and
  takes this path too; a :class:`~graphformer.ops.PairBias` arrives here as ``[E, H]`` via ``on_edges``. On CUDA the
  plain case (no dropout, no returned weights, ``N_dst = N_src``) runs the fused Triton kernel;
* reference: any other score aggregator (a user's, a subclass of ``Attention``) gathers ``q_i, k_j`` per
  edge, scores, and lets the aggregator normalise and sum (the only path with higher-order gradients).

Layers call this function and never know which path ran.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import Tensor

from graphformer.aggr.attention import Attention
from graphformer.aggr.base import ScoreAggregator
from graphformer.graphs.structure import BlockStructure, Causal, FullyConnected
from graphformer.ops.bias import PairBias
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


def attention_dropout(aggr: ScoreAggregator) -> float:
    """The dropout probability ``aggr`` applies now: its ``dropout`` in training mode, else 0."""
    return float(aggr.dropout) if aggr.training else 0.0


def lean_path_applies(
    aggr: ScoreAggregator, dtype: torch.dtype | None = None, return_attention: bool | None = None
) -> bool:
    """Whether :func:`~graphformer.ops.sparse.sparse_attention` computes what ``aggr`` would: the standard
    softmax :class:`~graphformer.aggr.Attention` (not a subclass or another aggregator).

    ``lean_path_applies(aggr)`` asks for a caller that passes ``dropout=attention_dropout(aggr)`` and
    ``return_weights=`` to ``sparse_attention``: then any dtype, attention dropout and returned weights qualify.
    The older form ``lean_path_applies(aggr, dtype, return_attention)`` is for callers that pass neither: it
    also requires no active dropout and no weights to return (``dtype`` no longer matters; half precision runs
    in float32 on the lean path).
    """
    if type(aggr) is not Attention:
        return False
    if dtype is None and return_attention is None:
        return True
    return not return_attention and attention_dropout(aggr) == 0.0


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
    bias: Tensor | PairBias | None = None,
    scale: float | None = None,
    return_attention: bool = False,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Multi-head dot-product attention aggregation over ``graph``.

    Args:
        query: ``[N_dst, H, C]`` projected target features.
        key, value: ``[N_src, H, C]`` projected source features (``N_src = N_dst`` on a block structure).
        graph: explicit ``edge_index`` ``[2, E]`` (validated) or a block structure.
        aggr: the score aggregator that normalises and sums (``Attention`` is softmax); its ``dropout`` applies
            to the weights in training mode.
        bias: optional additive score per edge and head: a :class:`~graphformer.ops.PairBias` (any graph whose
            edges stay within the bias's graphs; the dense path takes it without materialising edges) or an
            ``[E, H]`` tensor (on a block structure: in the order of ``graph.to_edge_index()``).
        return_attention: also return the materialised ``edge_index`` and the weights ``[E, H]`` (after dropout).

    Returns:
        ``(out [N_dst, H, C], edge_index or None, weights or None)``.
    """
    num_targets = query.size(0)
    lean = lean_path_applies(aggr)
    dropout = attention_dropout(aggr)
    if isinstance(graph, BlockStructure) and key.size(0) != num_targets:
        raise ValueError(
            f"a block structure pairs every node with nodes of the same graph, so query and key need the same number "
            f"of nodes; got {num_targets} and {key.size(0)} (give a bipartite graph as an explicit edge_index)"
        )
    pair_bias = bias if isinstance(bias, PairBias) else None
    if pair_bias is not None:
        pair_bias.check(graph.ptr if isinstance(graph, BlockStructure) else None, num_targets, query.size(1), "bias")
        if key.size(0) != num_targets:
            raise ValueError("a PairBias needs query and key over the same nodes; got a bipartite graph")
    if (
        isinstance(graph, BlockStructure)
        and lean
        and (bias is None or pair_bias is not None)
        and not return_attention
        and query.device.type == "cpu"  # the threshold is measured on CPU only
        and query.dtype in (torch.float32, torch.float64)  # ... with the sparse-dense products of these dtypes
        and not torch.compiler.is_compiling()
    ):
        edge_index = sparse_edges_of(graph)  # a long sparse structure: O(E) beats the O(L^2) masked path
        if edge_index is not None:
            edge_bias = pair_bias.on_edges(edge_index) if pair_bias is not None else None
            out = sparse_attention(query, key, value, edge_index, bias=edge_bias, scale=scale, dropout=dropout)
            return out, None, None
    if isinstance(graph, BlockStructure) and lean and (bias is None or pair_bias is not None) and not return_attention:
        out = block_attention(query, key, value, graph, dropout=dropout, scale=scale, bias=pair_bias)
        return out, None, None
    edge_index = graph.to_edge_index() if isinstance(graph, BlockStructure) else graph
    edge_bias = bias.on_edges(edge_index) if isinstance(bias, PairBias) else bias  # [E, H] or None
    if lean:
        if return_attention:
            out, weights = sparse_attention(
                query, key, value, edge_index, bias=edge_bias, scale=scale, dropout=dropout, return_weights=True
            )
            return out, edge_index, weights
        return sparse_attention(query, key, value, edge_index, bias=edge_bias, scale=scale, dropout=dropout), None, None
    # reference: gather per edge, score, and let the aggregator normalise and sum
    scores = dot_product_scores(query, key, edge_index, scale)  # [E, H]
    if edge_bias is not None:
        scores = scores + edge_bias
    values = value.index_select(0, edge_index[0])  # [E, H, C]
    if return_attention:
        out, weights = aggr(values, edge_index[1], dim_size=num_targets, scores=scores, return_weights=True)
        return out, edge_index, weights
    out = cast(Tensor, aggr.reduce(values, edge_index[1], num_targets, scores=scores))  # no weights asked: [N, H, C]
    return out, None, None

