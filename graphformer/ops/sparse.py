r"""Sparse path: memory-lean softmax attention aggregation over an explicit ``edge_index``.

The reference (gather ``q_i, k_j, v_j`` per edge, softmax, scatter) lets autograd keep every gathered
``[E, H, C]`` tensor alive for backward. :class:`SparseAttention` keeps only the softmax weights
``[E, H]`` (plus the node tensors ``q, k, v`` that exist anyway) and recomputes what it needs in backward.
Edges are visited sorted by target (CSR order), so every reduction over a target's incoming edges
touches a contiguous segment; the sort is cached per ``edge_index`` tensor (keyed on the tensor object
and its version counter, dropped when the tensor is freed), never stored on a module.

On CPU the per-edge work runs as sparse-dense products, one per head, on the CSR structure of the graph
(never materialising an ``[E, H, C]`` tensor): the scores are a sampled dense-dense product (SDDMM,
:math:`s = (Q K^\top) \odot A`), the weighted sum is :math:`A V` (SpMM), and backward uses the same two
products with the transposed structure (CSC, also cached). Elsewhere (and while tracing for
``torch.compile`` / ``torch.export``) it gathers ``[E, H, C]`` per edge and scatters with ``index_add_``.
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, overload

import torch
from torch import Tensor

from graphformer.ops import backend

_CACHE: dict[tuple[int, Any], tuple[weakref.ref, int, Any]] = {}


def cached_on(tensor: Tensor, tag: Any, build: Callable[[], Any]) -> Any:
    """``build()``, cached per ``(tensor object, tag)``; an in-place change (new version) or freeing it invalidates.

    Writes that bypass autograd's version counter (through ``tensor.data`` or a shared numpy array) are not seen:
    give a changed graph as a new tensor. Tensors created under ``torch.inference_mode`` are never cached, and
    nothing is cached while ``torch.compile`` traces (an ``id()``-keyed lookup would make dynamo guard on the
    object and recompile for every new graph; the traced graph recomputes ``build()`` instead).
    """
    if torch.compiler.is_compiling():
        return build()
    if tensor.is_inference():  # inference tensors have no version counter: nothing can tell an edit, so no cache
        return build()
    key = (id(tensor), tag)
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is tensor and hit[1] == tensor._version:
        return hit[2]
    value = build()

    def forget(_ref: weakref.ref[Tensor], cache: dict = _CACHE) -> None:  # cache bound now: safe at exit
        cache.pop(key, None)

    try:
        ref = weakref.ref(tensor, forget)
    except TypeError:  # pragma: no cover - tensors support weakrefs
        return value
    if len(_CACHE) > 32:
        _CACHE.clear()
    _CACHE[key] = (ref, tensor._version, value)
    return value


def csr_order(edge_index: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
    """``(perm, source, target)``: edges sorted by target (``perm`` is None when already sorted).

    Cached per ``edge_index`` tensor object; an in-place change (new version) or freeing it invalidates.
    While compiling, edges are always sorted (no data-dependent branch, so no graph break).
    """

    def build() -> tuple[Tensor | None, Tensor, Tensor]:
        source, target = edge_index[0], edge_index[1]
        perm: Tensor | None = None
        if torch.compiler.is_compiling() or (
            target.numel() > 1 and not bool((target[1:] >= target[:-1]).all())
        ):
            perm = torch.argsort(target, stable=True)
            return perm, source[perm].contiguous(), target[perm].contiguous()
        # copies, not views: a cached view would keep `edge_index` alive, so its entry would never be freed
        return perm, source.clone(), target.clone()

    return cached_on(edge_index, "csr_order", build)


class CSRGraph(NamedTuple):
    """The CSR (rows = targets) and CSC (rows = sources) structure of edges sorted by target.

    The matrix is ``[N_dst, N_src]`` (rectangular for bipartite graphs): ``rowptr`` has ``N_dst + 1`` entries,
    ``colptr`` ``N_src + 1``. All index tensors but ``offsets`` use int32 when the sizes allow (faster sparse
    products and gathers); ``to_csc`` permutes per-edge values from CSR to CSC order; ``target`` is the target
    per edge. The sampled product (SDDMM) needs distinct entries: ``unique_rowptr``/``unique_col`` hold the
    distinct ``(target, source)`` pairs and ``to_unique`` maps each edge to its pair (None without duplicates).
    """

    rowptr: Tensor  # [N_dst + 1]
    col: Tensor  # [E] source of each edge, CSR order
    colptr: Tensor  # [N_src + 1]
    row: Tensor  # [E] target of each edge, CSC order
    to_csc: Tensor  # [E]
    target: Tensor  # [E]
    offsets: Tensor  # [N_dst + 1] int64 rowptr (for segment_reduce)
    unique_rowptr: Tensor  # [N_dst + 1]
    unique_col: Tensor  # [U]
    to_unique: Tensor | None  # [E]

    @property
    def shape(self) -> tuple[int, int]:
        """``(N_dst, N_src)``."""
        return self.rowptr.numel() - 1, self.colptr.numel() - 1


def csr_graph(source: Tensor, target: Tensor, num_targets: int, num_sources: int | None = None) -> CSRGraph:
    """Build :class:`CSRGraph` from edges already sorted by ``target`` (``num_sources`` defaults to ``num_targets``)."""
    num_sources = num_targets if num_sources is None else num_sources
    index_dtype = torch.int32 if max(num_targets, num_sources, source.numel()) < 2**31 - 1 else torch.int64

    def pointers(index: Tensor, size: int) -> Tensor:
        ptr = index.new_zeros(size + 1)
        torch.cumsum(torch.bincount(index, minlength=size), 0, out=ptr[1:])
        return ptr

    offsets = pointers(target, num_targets)
    to_csc = torch.argsort(source, stable=True)
    pairs = target.long() * num_sources + source.long()  # int64: an int32 edge_index would overflow for N^2 > 2^31
    pairs, to_unique = torch.unique(pairs, return_inverse=True)  # sorted by (target, source)
    if pairs.numel() == source.numel():
        unique_rowptr, unique_col, to_unique = offsets, source, None
    else:
        unique_rowptr, unique_col = pointers(pairs // num_sources, num_targets), pairs % num_sources
    return CSRGraph(
        rowptr=offsets.to(index_dtype),
        col=source.to(index_dtype),
        colptr=pointers(source, num_sources).to(index_dtype),
        row=target.index_select(0, to_csc).to(index_dtype),
        to_csc=to_csc.to(index_dtype),
        target=target.to(index_dtype),
        offsets=offsets,
        unique_rowptr=unique_rowptr.to(index_dtype),
        unique_col=unique_col.to(index_dtype),
        to_unique=None if to_unique is None else to_unique.to(index_dtype),
    )


def _sparse(ptr: Tensor, index: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(ptr, index, values, shape, check_invariants=False)


def _spmm(ptr: Tensor, index: Tensor, values: Tensor, dense: Tensor) -> Tensor:
    """Per head ``A_h @ dense_h`` with ``A_h`` the sparse ``[ptr.numel() - 1, dense.size(1)]`` matrix
    (ptr, index, values[h]): ``[H, rows, C]``."""
    shape = (ptr.numel() - 1, dense.size(1))
    return torch.stack([_sparse(ptr, index, values[h], shape) @ dense[h] for h in range(dense.size(0))])


def _sddmm(graph: CSRGraph, left: Tensor, right: Tensor) -> Tensor:
    """Per head and edge ``left_h[i] . right_h[j]`` for each edge ``j -> i`` (CSR order): ``[H, E]``.

    ``left``: ``[H, N_dst, C]`` (indexed by target), ``right``: ``[H, N_src, C]`` (indexed by source)."""
    pattern = _sparse(graph.unique_rowptr, graph.unique_col, left.new_zeros(graph.unique_col.numel()), graph.shape)
    products = torch.stack([
        torch.sparse.sampled_addmm(pattern, left[h], right[h].t(), beta=0.0).values() for h in range(left.size(0))
    ])  # [H, U]
    return products if graph.to_unique is None else products.index_select(1, graph.to_unique)


def _heads_first(t: Tensor) -> Tensor:
    return t.transpose(0, 1).contiguous()  # [N, H, C] -> [H, N, C]


def _segment_softmax_(scores: Tensor, graph: CSRGraph) -> Tensor:
    """In place: per-target softmax of ``scores`` ``[H, E]``; targets without finite scores get weight 0."""
    offsets = graph.offsets.expand(scores.size(0), -1)
    scores.clamp_(max=torch.finfo(scores.dtype).max)  # +inf counts as the largest finite score, as in the reference
    peak = torch.segment_reduce(scores, "max", offsets=offsets, axis=1)  # [H, N]
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    weights = scores.sub_(peak.index_select(1, graph.target)).exp_()  # [H, E]
    total = torch.segment_reduce(weights, "sum", offsets=offsets, axis=1)  # [H, N]
    total = torch.where(total > 0, total, torch.ones_like(total))
    return weights.div_(total.index_select(1, graph.target))


def _softmax_weights(scores: Tensor, target: Tensor, num_nodes: int) -> Tensor:
    """Per-target softmax of ``scores`` ``[E, H]``; targets without finite scores get weight 0."""
    index = target.view(-1, 1).expand_as(scores)
    scores = scores.clamp(max=torch.finfo(scores.dtype).max)  # +inf counts as the largest finite score
    peak = scores.new_full((num_nodes, scores.size(1)), float("-inf"))
    peak.scatter_reduce_(0, index, scores, reduce="amax", include_self=True)
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    weights = torch.exp(scores - peak.index_select(0, target))  # [E, H]
    total = scores.new_zeros(num_nodes, scores.size(1)).index_add_(0, target, weights)
    total = torch.where(total > 0, total, torch.ones_like(total))
    return weights.div_(total.index_select(0, target))


def _use_csr(value: Tensor, source: Tensor) -> bool:
    """Sparse-dense products on CPU in float32/64; gathers elsewhere, for empty edge sets and while compiling."""
    return (
        value.device.type == "cpu"
        and value.dtype in (torch.float32, torch.float64)
        and source.numel() > 0
        and not torch.compiler.is_compiling()
        and not torch.compiler.is_exporting()
    )


def _dropped(weights: Tensor, mask: Tensor | None, dropout: float) -> Tensor:
    r"""The weights after dropout, :math:`\tilde\alpha = \alpha \cdot m / (1 - p)` (``weights`` when no mask)."""
    return weights if mask is None else weights * mask * (1.0 / (1.0 - dropout))


class SparseAttention(torch.autograd.Function):
    r"""Fused :math:`h_i = \sum_{j \to i} \tilde\alpha_{ij} v_j`, :math:`\tilde\alpha_{ij} = \alpha_{ij}
    m_{ij} / (1 - p)`, :math:`\alpha_{ij} = \mathrm{softmax}_j(s_{ij})`, with
    :math:`s_{ij} = \mathrm{scale}\; q_i \cdot k_j + b_{ij}` (``q``/``k`` may be None: scores = ``b``) and the
    dropout keep-mask :math:`m` (all ones without dropout).

    Saves ``weights`` :math:`\alpha` ``[E, H]`` (``[H, E]`` on the CPU path, with the node-sized ``q, k, v`` and
    output in ``[H, N, C]``) and the bool mask ``[E, H]``, never an ``[E, H, C]`` tensor. Backward (with
    :math:`g_i = \partial L / \partial h_i` and :math:`w_{ij}` the incoming gradient of the returned weights
    :math:`\tilde\alpha`, zero when they are not returned):

    .. math::
        \partial v_j = \sum_{i} \tilde\alpha_{ij} g_i, \quad
        \partial \alpha_{ij} = \frac{m_{ij}}{1 - p} (g_i \cdot v_j + w_{ij}), \quad
        \partial s_{ij} = \alpha_{ij}\left(\partial \alpha_{ij} - \sum_{k} \alpha_{ik} \partial \alpha_{ik}\right)

    and :math:`\partial q_i = \mathrm{scale} \sum_j \partial s_{ij} k_j`, :math:`\partial k_j = \mathrm{scale}
    \sum_i \partial s_{ij} q_i`, :math:`\partial b_{ij} = \partial s_{ij}`. On the CPU path
    :math:`\sum_{k} \alpha_{ik} \partial \alpha_{ik} = g_i \cdot h_i + \sum_k \tilde\alpha_{ik} w_{ik}` (the
    output is saved, ``[N, H, C]``).

    Shapes:
        - query: ``[N_dst, H, C]``; key, value: ``[N_src, H, C]``; bias: ``[E, H]`` (in CSR order);
          source, target: ``[E]`` sorted by target; mask: bool ``[E, H]`` in CSR order, or None
        - graph: optional prebuilt :class:`CSRGraph` of ``(source, target)`` (built when None)
        - output: ``[N_dst, H, C]`` (``num_targets`` rows; default ``value.size(0)``), and the weights
          :math:`\tilde\alpha` ``[E, H]`` in CSR order with ``return_weights=True``
    """

    @staticmethod
    def forward(
        ctx: Any, query: Tensor | None, key: Tensor | None, value: Tensor, bias: Tensor | None, source: Tensor,
        target: Tensor, scale: float, graph: CSRGraph | None = None, mask: Tensor | None = None,
        dropout: float = 0.0, return_weights: bool = False, num_targets: int | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        ctx.scale, ctx.dropout, ctx.return_weights = scale, dropout, return_weights
        ctx.has_bias = bias is not None
        ctx.num_targets = value.size(0) if num_targets is None else num_targets
        ctx.csr = _use_csr(value, source)
        if not ctx.csr:
            return SparseAttention._gather_forward(ctx, query, key, value, bias, source, target, mask)
        if graph is None:
            graph = csr_graph(source, target, ctx.num_targets, value.size(0))
        ctx.graph = graph
        value_t = _heads_first(value)  # [H, N_src, C]
        query_t = key_t = None
        if query is not None:
            assert key is not None  # query and key come together (sparse_attention checks it)
            query_t = query.transpose(0, 1).clone(memory_format=torch.contiguous_format).mul_(scale)  # [H, N_dst, C]
            key_t = _heads_first(key)  # [H, N_src, C]
            scores = _sddmm(graph, query_t, key_t)  # [H, E]
            if bias is not None:
                scores.add_(bias.t())
        else:
            assert bias is not None  # scores from the bias alone (sparse_attention checks one is given)
            scores = bias.t().clone(memory_format=torch.contiguous_format)  # [H, E]
        weights = _segment_softmax_(scores, graph)  # [H, E]
        mask_t = None if mask is None else mask.t()  # [H, E]
        dropped = _dropped(weights, mask_t, dropout)  # [H, E]
        out = _spmm(graph.rowptr, graph.col, dropped, value_t).transpose(0, 1).contiguous()  # [N_dst, H, C]
        ctx.save_for_backward(query_t, key_t, value_t, weights, mask_t, out)
        if return_weights:
            return out, dropped.t().contiguous()  # [E, H]
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor, grad_returned: Tensor | None = None) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph=True: this backward is not itself differentiable
            raise RuntimeError(
                "graphformer's memory-lean sparse attention supports first-order gradients only (create_graph=True "
                "asks for a double backward); for higher-order gradients give the layer an aggregator other than "
                "the plain graphformer.aggr.Attention (a subclass, `class MyAttention(Attention): pass`, will do), "
                "which runs the differentiable gather/softmax/scatter reference"
            )
        with torch.autocast(grad_out.device.type, enabled=False):  # computed in the saved dtype (float32/64)
            if not ctx.csr:
                return SparseAttention._gather_backward(ctx, grad_out, grad_returned)
            return SparseAttention._csr_backward(ctx, grad_out, grad_returned)

    @staticmethod
    def _csr_backward(ctx: Any, grad_out: Tensor, grad_returned: Tensor | None) -> tuple[Tensor | None, ...]:
        query_t, key_t, value_t, weights, mask_t, out = ctx.saved_tensors
        graph: CSRGraph = ctx.graph
        grad_t = _heads_first(grad_out)  # [H, N_dst, C]
        grad_dropped = _sddmm(graph, grad_t, value_t)  # [H, E]: g_i . v_j
        row = (grad_out * out).sum(-1).t()  # [H, N_dst]: sum_k dropped_ik (g_i . v_k) = g_i . h_i
        if grad_returned is not None:
            grad_returned_t = grad_returned.t()  # [H, E]
            grad_dropped.add_(grad_returned_t)
            extra = _dropped(weights, mask_t, ctx.dropout) * grad_returned_t  # [H, E]
            row = row + torch.segment_reduce(extra, "sum", offsets=graph.offsets.expand(extra.size(0), -1), axis=1)
        grad_value = None
        if ctx.needs_input_grad[2]:
            csc_weights = _dropped(weights, mask_t, ctx.dropout).index_select(1, graph.to_csc)  # [H, E]
            grad_value = _spmm(graph.colptr, graph.row, csc_weights, grad_t).transpose(0, 1)  # [N_src, H, C]
        grad_weights = _dropped(grad_dropped, mask_t, ctx.dropout)  # [H, E]: d alpha
        grad_scores = grad_weights.sub_(row.index_select(1, graph.target)).mul_(weights)  # [H, E]
        grad_query = grad_key = None
        if query_t is not None:
            if ctx.needs_input_grad[0]:
                grad_query = _spmm(graph.rowptr, graph.col, grad_scores, key_t).mul_(ctx.scale).transpose(0, 1)
            if ctx.needs_input_grad[1]:
                csc_scores = grad_scores.index_select(1, graph.to_csc)  # [H, E]
                grad_key = _spmm(graph.colptr, graph.row, csc_scores, query_t).transpose(0, 1)  # q_t has the scale
        grad_bias = grad_scores.t() if ctx.has_bias and ctx.needs_input_grad[3] else None
        return grad_query, grad_key, grad_value, grad_bias, *([None] * 8)

    @staticmethod
    def _gather_forward(
        ctx: Any, query: Tensor | None, key: Tensor | None, value: Tensor, bias: Tensor | None, source: Tensor,
        target: Tensor, mask: Tensor | None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        num_targets = ctx.num_targets
        if query is not None:
            assert key is not None  # query and key come together (sparse_attention checks it)
            scores = (query.index_select(0, target) * key.index_select(0, source)).sum(-1).mul_(ctx.scale)  # [E, H]
            if bias is not None:
                scores = scores + bias
        else:
            assert bias is not None  # scores from the bias alone (sparse_attention checks one is given)
            scores = bias
        weights = _softmax_weights(scores, target, num_targets)  # [E, H]
        dropped = _dropped(weights, mask, ctx.dropout)  # [E, H]
        messages = value.index_select(0, source).mul_(dropped.unsqueeze(-1))  # [E, H, C], freed after forward
        out = value.new_zeros(num_targets, *value.shape[1:]).index_add_(0, target, messages)
        ctx.save_for_backward(query, key, value, weights, mask, source, target)
        if ctx.return_weights:
            return out, dropped.clone() if dropped is weights else dropped
        return out

    @staticmethod
    def _gather_backward(ctx: Any, grad_out: Tensor, grad_returned: Tensor | None) -> tuple[Tensor | None, ...]:
        query, key, value, weights, mask, source, target = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_t = grad_out.index_select(0, target)  # [E, H, C]
        grad_dropped = (grad_t * value.index_select(0, source)).sum(-1)  # [E, H]: g_i . v_j
        if grad_returned is not None:
            grad_dropped = grad_dropped + grad_returned
        dropped = _dropped(weights, mask, ctx.dropout)  # [E, H]
        grad_value = None
        if ctx.needs_input_grad[2]:
            grad_value = torch.zeros_like(value).index_add_(0, source, grad_t.mul_(dropped.unsqueeze(-1)))
        del grad_t
        # sum_k alpha_ik d alpha_ik = sum_k dropped_ik (g_i . v_k + w_ik)
        row = weights.new_zeros(ctx.num_targets, weights.size(1)).index_add_(0, target, dropped * grad_dropped)
        grad_scores = weights * (_dropped(grad_dropped, mask, ctx.dropout) - row.index_select(0, target))  # [E, H]
        grad_query = grad_key = None
        if query is not None:
            if ctx.needs_input_grad[0]:
                grad_query = torch.zeros_like(query).index_add_(
                    0, target, key.index_select(0, source).mul_(grad_scores.unsqueeze(-1))
                ).mul_(ctx.scale)
            if ctx.needs_input_grad[1]:
                grad_key = torch.zeros_like(key).index_add_(
                    0, source, query.index_select(0, target).mul_(grad_scores.unsqueeze(-1))
                ).mul_(ctx.scale)
        grad_bias = grad_scores if ctx.has_bias and ctx.needs_input_grad[3] else None
        return grad_query, grad_key, grad_value, grad_bias, *([None] * 8)


@overload
def sparse_attention(
    query: Tensor | None, key: Tensor | None, value: Tensor, edge_index: Tensor, bias: Tensor | None = ...,
    scale: float | None = ..., dropout: float = ..., return_weights: Literal[False] = ...,
    num_targets: int | None = ..., generator: torch.Generator | None = ...,
) -> Tensor: ...


@overload
def sparse_attention(
    query: Tensor | None, key: Tensor | None, value: Tensor, edge_index: Tensor, bias: Tensor | None = ...,
    scale: float | None = ..., dropout: float = ..., *, return_weights: Literal[True],
    num_targets: int | None = ..., generator: torch.Generator | None = ...,
) -> tuple[Tensor, Tensor]: ...


@overload
def sparse_attention(
    query: Tensor | None, key: Tensor | None, value: Tensor, edge_index: Tensor, bias: Tensor | None = ...,
    scale: float | None = ..., dropout: float = ..., return_weights: bool = ...,
    num_targets: int | None = ..., generator: torch.Generator | None = ...,
) -> Tensor | tuple[Tensor, Tensor]: ...


def sparse_attention(
    query: Tensor | None,
    key: Tensor | None,
    value: Tensor,
    edge_index: Tensor,
    bias: Tensor | None = None,
    scale: float | None = None,
    dropout: float = 0.0,
    return_weights: bool = False,
    num_targets: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Softmax attention aggregation over explicit edges, keeping only ``[E, H]`` for backward.

    .. math::
        h_i = \sum_{j \to i} \tilde\alpha_{ij} v_j, \quad
        \tilde\alpha_{ij} = \frac{m_{ij}}{1 - p} \, \mathrm{softmax}_{j}\left(\mathrm{scale}\; q_i \cdot k_j
        + b_{ij}\right), \quad m_{ij} \sim \mathrm{Bernoulli}(1 - p)

    With ``query=key=None`` the scores are ``bias`` alone (GAT computes its additive scores itself). Equal to
    the gather/softmax/scatter reference with :class:`~graphformer.aggr.Attention`, dropout included: the keep
    mask comes from :func:`graphformer.aggr.attention.dropout_mask` drawn in ``edge_index`` order, exactly as the
    reference draws it, so the same seed gives the same mask on both. A target with no incoming edge gets zeros.

    On CUDA the plain case (no dropout, no returned weights, ``N_dst = N_src``) runs the fused Triton kernel
    (:func:`graphformer.ops.triton_attention.fused_attention`) when Triton is importable and the kernel passed its
    self-check on this device and dtype, unless ``torch.use_deterministic_algorithms(True)`` is on (the kernel's
    backward sums with atomic adds); :mod:`graphformer.ops.backend` decides (``GRAPHFORMER_SPARSE_BACKEND``,
    :func:`~graphformer.ops.set_sparse_backend`) and :func:`~graphformer.ops.last_sparse_backend` reports the path.
    Everything else runs :class:`SparseAttention` (sparse-dense products on CPU in float32/64, gathers elsewhere).
    Half precision off the Triton kernel is computed in float32 (node-sized copies) and returned in the input dtype.

    Args:
        query, key: per-head queries (targets) and keys (sources), or both None.
        value: per-head values of the sources.
        edge_index: ``[2, E]``, source row 0, target row 1.
        bias: additive scores ``[E, H]`` in ``edge_index`` order.
        scale: multiplier of :math:`q_i \cdot k_j` (default :math:`1/\sqrt{C}`).
        dropout: probability :math:`p` of dropping an attention weight (pass ``p if training else 0.0``).
        return_weights: also return the weights :math:`\tilde\alpha` ``[E, H]`` (after dropout, in ``edge_index``
            order, differentiable).
        num_targets: ``N_dst`` when ``query`` is None (default ``query.size(0)``, else ``value.size(0)``).
        generator: random generator of the dropout mask (default: torch's global one).

    Shapes:
        - query: ``[N_dst, H, C]``; key: ``[N_src, H, C]``; value: ``[N_src, H, C_v]``;
          edge_index: ``[2, E]`` (sources index key/value, targets index query/output); bias: ``[E, H]``
        - output: ``[N_dst, H, C_v]``, or ``(output, weights [E, H])``
    """
    if query is None and bias is None:
        raise ValueError("sparse_attention needs `query`/`key` or `bias` scores; got neither")
    if (query is None) != (key is None):
        raise ValueError("sparse_attention needs both `query` and `key`, or neither")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1), got {dropout}")
    if num_targets is None:
        num_targets = query.size(0) if query is not None else value.size(0)
    elif query is not None and query.size(0) != num_targets:
        raise ValueError(f"`num_targets` ({num_targets}) must equal query.size(0) ({query.size(0)}) when given both")
    channels = query.size(-1) if query is not None else value.size(-1)
    scale = 1.0 / math.sqrt(channels) if scale is None else float(scale)
    perm, source, target = csr_order(edge_index)
    if bias is not None and perm is not None:
        bias = bias.index_select(0, perm)
    plain = dropout == 0.0 and not return_weights and num_targets == value.size(0)
    if backend.use_fused(value, supported=plain):  # see graphformer.ops.backend: self-checked, or forced
        from graphformer.ops import triton_attention

        try:
            out = triton_attention.fused_attention(query, key, value, bias, source, target, scale)
        except Exception as error:  # a compile or launch error: PyTorch from now on, unless Triton is forced
            if not backend.fused_failed(value, error):
                raise
        else:
            backend.record("triton")
            return out
    backend.record("torch")
    mask = None
    if dropout > 0.0:
        from graphformer.aggr.attention import dropout_mask

        heads = value.size(1)
        mask = dropout_mask((edge_index.size(1), heads), dropout, value.device, generator)  # edge_index order
        if perm is not None:
            mask = mask.index_select(0, perm)  # CSR order
    dtype = value.dtype
    half = (torch.float16, torch.bfloat16)  # softmax and sums in float32, as the reference does
    query, key, bias = (t.float() if t is not None and t.dtype in half else t for t in (query, key, bias))
    value = value.float() if value.dtype in half else value
    graph = None
    if _use_csr(value, source):
        num_sources = value.size(0)
        graph = cached_on(
            edge_index, ("csr_graph", num_targets, num_sources),
            lambda: csr_graph(source, target, num_targets, num_sources),
        )
    with torch.autocast(value.device.type, enabled=False):  # under autocast: still float32 (sparse products need it)
        result = SparseAttention.apply(
            query, key, value, bias, source, target, scale, graph, mask, float(dropout), return_weights, num_targets
        )
    if not return_weights:
        return result.to(dtype)
    out, weights = result  # weights [E, H] in CSR order
    if perm is not None:
        weights = torch.zeros_like(weights).index_copy(0, perm, weights)  # back to edge_index order
    return out.to(dtype), weights.to(dtype)
