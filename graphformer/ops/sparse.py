"""Sparse path: memory-lean softmax attention aggregation over an explicit ``edge_index``.

The reference (gather ``q_i, k_j, v_j`` per edge, softmax, scatter) lets autograd keep every gathered
``[E, H, C]`` tensor alive for backward. :class:`SparseAttention` keeps only the softmax weights
``[E, H]`` (plus the node tensors ``q, k, v`` that exist anyway) and recomputes the gathers in backward.
Edges are visited sorted by target (CSR order), so every reduction over a target's incoming edges
touches a contiguous segment; the sort is cached per ``edge_index`` tensor (keyed on the tensor object
and its version counter, dropped when the tensor is freed), never stored on a module.
"""

from __future__ import annotations

import math
import weakref

import torch
from torch import Tensor

_CSR_CACHE: dict[int, tuple[weakref.ref, int, Tensor | None, Tensor, Tensor]] = {}


def csr_order(edge_index: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
    """``(perm, source, target)``: edges sorted by target (``perm`` is None when already sorted).

    Cached per ``edge_index`` tensor object; an in-place change (new version) or freeing it invalidates.
    """
    key = id(edge_index)
    hit = _CSR_CACHE.get(key)
    if hit is not None and hit[0]() is edge_index and hit[1] == edge_index._version:
        return hit[2], hit[3], hit[4]
    source, target = edge_index[0], edge_index[1]
    perm: Tensor | None = None
    if target.numel() > 1 and not bool((target[1:] >= target[:-1]).all()):
        perm = torch.argsort(target, stable=True)
        source, target = source[perm].contiguous(), target[perm].contiguous()
    try:
        ref = weakref.ref(edge_index, lambda _r, k=key: _CSR_CACHE.pop(k, None))
    except TypeError:  # pragma: no cover - tensors support weakrefs
        return perm, source, target
    if len(_CSR_CACHE) > 16:
        _CSR_CACHE.clear()
    _CSR_CACHE[key] = (ref, edge_index._version, perm, source, target)
    return perm, source, target


def _softmax_weights(scores: Tensor, target: Tensor, num_nodes: int) -> Tensor:
    """Per-target softmax of ``scores`` ``[E, H]``; targets without finite scores get weight 0."""
    index = target.view(-1, 1).expand_as(scores)
    peak = scores.new_full((num_nodes, scores.size(1)), float("-inf"))
    peak.scatter_reduce_(0, index, scores, reduce="amax", include_self=True)
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    weights = torch.exp(scores - peak.index_select(0, target))  # [E, H]
    total = scores.new_zeros(num_nodes, scores.size(1)).index_add_(0, target, weights)
    total = torch.where(total > 0, total, torch.ones_like(total))
    return weights.div_(total.index_select(0, target))


class SparseAttention(torch.autograd.Function):
    r"""Fused :math:`h_i = \sum_{j \to i} \mathrm{softmax}_j(s_{ij}) v_j` with
    :math:`s_{ij} = \mathrm{scale}\; q_i \cdot k_j + b_{ij}` (``q``/``k`` may be None: scores = ``b``).

    Saves ``weights [E, H]``; backward (with :math:`g_i = \partial L / \partial h_i`):

    .. math::
        \partial v_j = \sum_{i} \alpha_{ij} g_i, \quad
        \partial \alpha_{ij} = g_i \cdot v_j, \quad
        \partial s_{ij} = \alpha_{ij}\left(\partial \alpha_{ij} - \sum_{k} \alpha_{ik} \partial \alpha_{ik}\right)

    and :math:`\partial q_i = \mathrm{scale} \sum_j \partial s_{ij} k_j`, :math:`\partial k_j = \mathrm{scale}
    \sum_i \partial s_{ij} q_i`, :math:`\partial b_{ij} = \partial s_{ij}`.

    Shapes:
        - query, key, value: ``[N, H, C]``; bias: ``[E, H]`` (in CSR order); source, target: ``[E]`` sorted by target
        - output: ``[N, H, C]``
    """

    @staticmethod
    def forward(ctx, query, key, value, bias, source, target, scale):  # type: ignore[override]
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
        ctx.scale = scale
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
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
        return grad_query, grad_key, grad_value, grad_bias, None, None, None


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
    return SparseAttention.apply(query, key, value, bias, source, target, scale)
