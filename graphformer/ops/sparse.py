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
from typing import Any, NamedTuple

import torch
from torch import Tensor

_CACHE: dict[tuple[int, Any], tuple[weakref.ref, int, Any]] = {}


def cached_on(tensor: Tensor, tag: Any, build: Callable[[], Any]) -> Any:
    """``build()``, cached per ``(tensor object, tag)``; an in-place change (new version) or freeing it invalidates.

    Writes that bypass autograd's version counter (through ``tensor.data`` or a shared numpy array) are not seen:
    give a changed graph as a new tensor. Tensors created under ``torch.inference_mode`` are never cached.
    """
    if tensor.is_inference():  # inference tensors have no version counter: nothing can tell an edit, so no cache
        return build()
    key = (id(tensor), tag)
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is tensor and hit[1] == tensor._version:
        return hit[2]
    value = build()
    try:
        ref = weakref.ref(tensor, lambda _r, k=key, cache=_CACHE: cache.pop(k, None))
    except TypeError:  # pragma: no cover - tensors support weakrefs
        return value
    if len(_CACHE) > 32:
        _CACHE.clear()
    _CACHE[key] = (ref, tensor._version, value)
    return value


def csr_order(edge_index: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
    """``(perm, source, target)``: edges sorted by target (``perm`` is None when already sorted).

    Cached per ``edge_index`` tensor object; an in-place change (new version) or freeing it invalidates.
    """

    def build() -> tuple[Tensor | None, Tensor, Tensor]:
        source, target = edge_index[0], edge_index[1]
        perm: Tensor | None = None
        if target.numel() > 1 and not bool((target[1:] >= target[:-1]).all()):
            perm = torch.argsort(target, stable=True)
            return perm, source[perm].contiguous(), target[perm].contiguous()
        # copies, not views: a cached view would keep `edge_index` alive, so its entry would never be freed
        return perm, source.clone(), target.clone()

    return cached_on(edge_index, "csr_order", build)


class CSRGraph(NamedTuple):
    """The CSR (rows = targets) and CSC (rows = sources) structure of edges sorted by target.

    All index tensors but ``offsets`` use int32 when the sizes allow (faster sparse products and gathers);
    ``to_csc`` permutes per-edge values from CSR to CSC order; ``target`` is the target per edge.
    The sampled product (SDDMM) needs distinct entries: ``unique_rowptr``/``unique_col`` hold the distinct
    ``(target, source)`` pairs and ``to_unique`` maps each edge to its pair (None without duplicate edges).
    """

    rowptr: Tensor  # [N + 1]
    col: Tensor  # [E] source of each edge, CSR order
    colptr: Tensor  # [N + 1]
    row: Tensor  # [E] target of each edge, CSC order
    to_csc: Tensor  # [E]
    target: Tensor  # [E]
    offsets: Tensor  # [N + 1] int64 rowptr (for segment_reduce)
    unique_rowptr: Tensor  # [N + 1]
    unique_col: Tensor  # [U]
    to_unique: Tensor | None  # [E]


def csr_graph(source: Tensor, target: Tensor, num_nodes: int) -> CSRGraph:
    """Build :class:`CSRGraph` from edges already sorted by ``target``."""
    index_dtype = torch.int32 if max(num_nodes, source.numel()) < 2**31 - 1 else torch.int64

    def pointers(index: Tensor) -> Tensor:
        ptr = index.new_zeros(num_nodes + 1)
        torch.cumsum(torch.bincount(index, minlength=num_nodes), 0, out=ptr[1:])
        return ptr

    offsets = pointers(target)
    to_csc = torch.argsort(source, stable=True)
    pairs = target.long() * num_nodes + source.long()  # int64: an int32 edge_index would overflow for N^2 > 2^31
    pairs, to_unique = torch.unique(pairs, return_inverse=True)  # sorted by (target, source)
    if pairs.numel() == source.numel():
        unique_rowptr, unique_col, to_unique = offsets, source, None
    else:
        unique_rowptr, unique_col = pointers(pairs // num_nodes), pairs % num_nodes
    return CSRGraph(
        rowptr=offsets.to(index_dtype),
        col=source.to(index_dtype),
        colptr=pointers(source).to(index_dtype),
        row=target.index_select(0, to_csc).to(index_dtype),
        to_csc=to_csc.to(index_dtype),
        target=target.to(index_dtype),
        offsets=offsets,
        unique_rowptr=unique_rowptr.to(index_dtype),
        unique_col=unique_col.to(index_dtype),
        to_unique=None if to_unique is None else to_unique.to(index_dtype),
    )


def _sparse(ptr: Tensor, index: Tensor, values: Tensor, num_nodes: int) -> Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(ptr, index, values, (num_nodes, num_nodes), check_invariants=False)


def _spmm(ptr: Tensor, index: Tensor, values: Tensor, dense: Tensor) -> Tensor:
    """Per head ``A_h @ dense_h`` with ``A_h`` the sparse matrix (ptr, index, values[h]): ``[H, N, C]``."""
    num_nodes = dense.size(1)
    return torch.stack([_sparse(ptr, index, values[h], num_nodes) @ dense[h] for h in range(dense.size(0))])


def _sddmm(graph: CSRGraph, left: Tensor, right: Tensor) -> Tensor:
    """Per head and edge ``left_h[i] . right_h[j]`` for each edge ``j -> i`` (CSR order): ``[H, E]``."""
    num_nodes = left.size(1)
    pattern = _sparse(graph.unique_rowptr, graph.unique_col, left.new_zeros(graph.unique_col.numel()), num_nodes)
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


class SparseAttention(torch.autograd.Function):
    r"""Fused :math:`h_i = \sum_{j \to i} \mathrm{softmax}_j(s_{ij}) v_j` with
    :math:`s_{ij} = \mathrm{scale}\; q_i \cdot k_j + b_{ij}` (``q``/``k`` may be None: scores = ``b``).

    Saves ``weights [E, H]`` (``[H, E]`` on the CPU path, with the node-sized ``q, k, v`` and output in
    ``[H, N, C]``), never an ``[E, H, C]`` tensor; backward (with :math:`g_i = \partial L / \partial h_i`):

    .. math::
        \partial v_j = \sum_{i} \alpha_{ij} g_i, \quad
        \partial \alpha_{ij} = g_i \cdot v_j, \quad
        \partial s_{ij} = \alpha_{ij}\left(\partial \alpha_{ij} - \sum_{k} \alpha_{ik} \partial \alpha_{ik}\right)

    and :math:`\partial q_i = \mathrm{scale} \sum_j \partial s_{ij} k_j`, :math:`\partial k_j = \mathrm{scale}
    \sum_i \partial s_{ij} q_i`, :math:`\partial b_{ij} = \partial s_{ij}`. On the CPU path
    :math:`\sum_{k} \alpha_{ik} \partial \alpha_{ik} = g_i \cdot h_i` (the output is saved, ``[N, H, C]``).

    Shapes:
        - query, key, value: ``[N, H, C]``; bias: ``[E, H]`` (in CSR order); source, target: ``[E]`` sorted by target
        - graph: optional prebuilt :class:`CSRGraph` of ``(source, target)`` (built when None)
        - output: ``[N, H, C]``
    """

    @staticmethod
    def forward(ctx, query, key, value, bias, source, target, scale, graph=None):  # type: ignore[override]
        ctx.scale = scale
        ctx.has_bias = bias is not None
        ctx.csr = _use_csr(value, source)
        if not ctx.csr:
            return SparseAttention._gather_forward(ctx, query, key, value, bias, source, target, scale)
        num_nodes = value.size(0)
        if graph is None:
            graph = csr_graph(source, target, num_nodes)
        ctx.graph = graph
        value_t = _heads_first(value)  # [H, N, C]
        query_t = key_t = None
        if query is not None:
            query_t = query.transpose(0, 1).clone(memory_format=torch.contiguous_format).mul_(scale)  # [H, N, C]
            key_t = _heads_first(key)  # [H, N, C]
            scores = _sddmm(graph, query_t, key_t)  # [H, E]
            if bias is not None:
                scores.add_(bias.t())
        else:
            scores = bias.t().clone(memory_format=torch.contiguous_format)  # [H, E]
        weights = _segment_softmax_(scores, graph)  # [H, E]
        out = _spmm(graph.rowptr, graph.col, weights, value_t).transpose(0, 1).contiguous()  # [N, H, C]
        ctx.save_for_backward(query_t, key_t, value_t, weights, out)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        if torch.is_grad_enabled():  # create_graph=True: this backward is not itself differentiable
            raise RuntimeError(
                "graphformer's memory-lean sparse attention supports first-order gradients only (create_graph=True "
                "asks for a double backward); call the layer with return_attention=True, which runs the "
                "differentiable gather/softmax/scatter reference"
            )
        if not ctx.csr:
            return SparseAttention._gather_backward(ctx, grad_out)
        query_t, key_t, value_t, weights, out = ctx.saved_tensors
        graph: CSRGraph = ctx.graph
        grad_t = _heads_first(grad_out)  # [H, N, C]
        grad_weights = _sddmm(graph, grad_t, value_t)  # [H, E]
        grad_value = None
        if ctx.needs_input_grad[2]:
            csc_weights = weights.index_select(1, graph.to_csc)  # [H, E]
            grad_value = _spmm(graph.colptr, graph.row, csc_weights, grad_t).transpose(0, 1)  # [N, H, C]
        row = (grad_out * out).sum(-1).t()  # [H, N]: sum_k alpha_ik dalpha_ik = g_i . h_i
        grad_scores = grad_weights.sub_(row.index_select(1, graph.target)).mul_(weights)  # [H, E]
        grad_query = grad_key = None
        if query_t is not None:
            if ctx.needs_input_grad[0]:
                grad_query = _spmm(graph.rowptr, graph.col, grad_scores, key_t).mul_(ctx.scale).transpose(0, 1)
            if ctx.needs_input_grad[1]:
                csc_scores = grad_scores.index_select(1, graph.to_csc)  # [H, E]
                grad_key = _spmm(graph.colptr, graph.row, csc_scores, query_t).transpose(0, 1)  # q_t has the scale
        grad_bias = grad_scores.t() if ctx.has_bias and ctx.needs_input_grad[3] else None
        return grad_query, grad_key, grad_value, grad_bias, None, None, None, None

    @staticmethod
    def _gather_forward(ctx, query, key, value, bias, source, target, scale):
        num_nodes = value.size(0)
        if query is not None:
            scores = (query.index_select(0, target) * key.index_select(0, source)).sum(-1).mul_(scale)  # [E, H]
            if bias is not None:
                scores = scores + bias
        else:
            scores = bias
        weights = _softmax_weights(scores, target, num_nodes)  # [E, H]
        messages = value.index_select(0, source).mul_(weights.unsqueeze(-1))  # [E, H, C], freed after forward
        out = value.new_zeros(num_nodes, *value.shape[1:]).index_add_(0, target, messages)
        ctx.save_for_backward(query, key, value, weights, source, target)
        return out

    @staticmethod
    def _gather_backward(ctx, grad_out):
        query, key, value, weights, source, target = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        num_nodes = value.size(0)
        grad_t = grad_out.index_select(0, target)  # [E, H, C]
        grad_weights = (grad_t * value.index_select(0, source)).sum(-1)  # [E, H]
        grad_value = None
        if ctx.needs_input_grad[2]:
            grad_value = torch.zeros_like(value).index_add_(0, source, grad_t.mul_(weights.unsqueeze(-1)))
        del grad_t
        row = weights.new_zeros(num_nodes, weights.size(1)).index_add_(0, target, weights * grad_weights)
        grad_scores = weights * (grad_weights - row.index_select(0, target))  # [E, H]
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
        return grad_query, grad_key, grad_value, grad_bias, None, None, None, None


def sparse_attention(
    query: Tensor | None,
    key: Tensor | None,
    value: Tensor,
    edge_index: Tensor,
    bias: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    r"""Softmax attention aggregation over explicit edges, keeping only ``[E, H]`` for backward.

    .. math:: h_i = \sum_{j \to i} \mathrm{softmax}_{j}\left(\mathrm{scale}\; q_i \cdot k_j + b_{ij}\right) v_j

    With ``query=key=None`` the scores are ``bias`` alone (GAT computes its additive scores itself).
    Equal to the gather/softmax/scatter reference with :class:`~graphformer.aggr.Attention`; a target
    with no incoming edge gets zeros. Dispatches to the fused Triton kernel
    (:func:`graphformer.ops.triton_attention.fused_attention`) on CUDA when Triton is importable, unless
    ``torch.use_deterministic_algorithms(True)`` is on (the kernel's backward sums with atomic adds).

    Shapes:
        - query, key, value: ``[N, H, C]``; edge_index: ``[2, E]`` (source row 0, target row 1);
          bias: ``[E, H]`` in ``edge_index`` order
        - output: ``[N, H, C]``
    """
    if query is None and bias is None:
        raise ValueError("sparse_attention needs `query`/`key` or `bias` scores; got neither")
    if (query is None) != (key is None):
        raise ValueError("sparse_attention needs both `query` and `key`, or neither")
    channels = query.size(-1) if query is not None else value.size(-1)
    scale = 1.0 / math.sqrt(channels) if scale is None else float(scale)
    perm, source, target = csr_order(edge_index)
    if bias is not None and perm is not None:
        bias = bias.index_select(0, perm)
    if value.is_cuda and not torch.are_deterministic_algorithms_enabled():  # its backward uses atomic adds
        from graphformer.ops import triton_attention

        if triton_attention.available():
            return triton_attention.fused_attention(query, key, value, bias, source, target, scale)
    graph = None
    if _use_csr(value, source):
        graph = cached_on(edge_index, ("csr_graph", value.size(0)), lambda: csr_graph(source, target, value.size(0)))
    return SparseAttention.apply(query, key, value, bias, source, target, scale, graph)
