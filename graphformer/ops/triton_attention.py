r"""Fused Triton kernel for sparse softmax attention aggregation (forward and backward).

Computes, for every target node :math:`i` and head :math:`h`,

.. math::
    s_{ij} = \mathrm{scale}\; q_i \cdot k_j + b_{ij}, \qquad
    h_i = \sum_{j \to i} \frac{e^{s_{ij}}}{\sum_{k \to i} e^{s_{ik}}} v_j

(``q``/``k`` may be None: :math:`s_{ij} = b_{ij}`), never materialising a per-edge ``[E, H, C]`` tensor.

**Forward.** Edges arrive sorted by target (CSR order, :func:`graphformer.ops.sparse.csr_order`); the row
pointer ``ptr[i] = #{e : target_e < i}`` comes from ``torch.searchsorted``. One program per (target, head)
walks its incoming edges in blocks of ``BLOCK_E`` with an online softmax (as in FlashAttention): with running
max :math:`m`, sum :math:`l` and accumulator :math:`a \in \mathbb{R}^C`, a block with scores :math:`s_B` updates

.. math::
    m' = \max(m, \max s_B), \quad l' = e^{m - m'} l + \sum_{j \in B} e^{s_{ij} - m'}, \quad
    a' = e^{m - m'} a + \sum_{j \in B} e^{s_{ij} - m'} v_j,

and finally :math:`h_i = a / l` and :math:`\mathrm{lse}_i = m + \log l`. Only ``out [N, H, C]`` and
``lse [N, H]`` are kept for backward. A target with no incoming edge (or only :math:`-\infty` scores) has
:math:`l = 0` and gets zeros, never NaN.

**Backward.** With :math:`g_i = \partial L / \partial h_i`, the weights are recomputed from the saved LSE,
:math:`\alpha_{ij} = e^{s_{ij} - \mathrm{lse}_i}`, and with :math:`D_i = g_i \cdot h_i = \sum_j \alpha_{ij}\,
g_i \cdot v_j`

.. math::
    \partial s_{ij} = \alpha_{ij}(g_i \cdot v_j - D_i), \quad
    \partial q_i = \mathrm{scale} \sum_j \partial s_{ij} k_j, \quad
    \partial k_j = \mathrm{scale} \sum_i \partial s_{ij} q_i, \quad
    \partial v_j = \sum_i \alpha_{ij} g_i, \quad
    \partial b_{ij} = \partial s_{ij}.

One program per (target, head) again: :math:`\partial q_i` is a sum over the target's own edges and is stored
once; :math:`\partial k_j, \partial v_j` are sums over edges by *source*, added with ``tl.atomic_add`` into
float32 (float64) buffers (so their summation order, and the last bits, are not deterministic); :math:`\partial s` is
stored per edge ``[E, H]``.

Half-precision inputs are read and accumulated in float32 (float64 inputs in float64); results are returned in
the input dtype.
:func:`~graphformer.ops.sparse.sparse_attention` calls the kernel only through :mod:`graphformer.ops.backend`, which
self-checks it once per (device, dtype) and otherwise falls back to PyTorch with a warning.
:class:`~graphformer.ops.sparse.SparseAttention` is the plain-PyTorch reference that the tests compare
against (run on CPU through Triton's interpreter, ``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """True when ``triton`` can be imported (the caller checks that the tensors are on CUDA)."""
    if importlib.util.find_spec("triton") is None:
        return False
    try:
        import triton  # noqa: F401
    except Exception:  # pragma: no cover - a broken install counts as absent
        return False
    return True


def _block_sizes(channels: int, block_edges: int | None) -> tuple[int, int]:
    """``(BLOCK_E, BLOCK_C)``: channels padded to a power of two, smaller edge blocks for wide heads."""
    block_channels = max(1, 1 << (max(channels, 1) - 1).bit_length())
    if block_edges is None:
        block_edges = 32 if block_channels <= 128 else 16
    if block_edges < 1 or block_edges & (block_edges - 1):
        raise ValueError(f"block_edges must be a power of two, got {block_edges}")
    return block_edges, block_channels


def _accumulator_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 for float64 inputs, float32 otherwise (float32, float16, bfloat16)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _triton_dtype(dtype: torch.dtype) -> Any:  # a triton.language dtype
    import triton.language as tl

    return tl.float64 if dtype == torch.float64 else tl.float32


def _row_pointer(target: Tensor, num_nodes: int) -> Tensor:
    """``ptr [N + 1]`` with edges ``ptr[i]:ptr[i + 1]`` pointing into ``i`` (``target`` sorted)."""
    nodes = torch.arange(num_nodes + 1, device=target.device, dtype=target.dtype)
    return torch.searchsorted(target, nodes).to(torch.int64)  # [N + 1]


class FusedAttention(torch.autograd.Function):
    r"""Autograd wrapper of the two kernels; see the module docstring for the math.

    Shapes:
        - query, key (or None), value: ``[N, H, C]``; bias (or None): ``[E, H]`` in CSR order;
          source, target: ``[E]`` sorted by target
        - output: ``[N, H, C]``; saved for backward: ``out [N, H, C]``, ``lse [N, H]``
    """

    @staticmethod
    def forward(
        ctx: Any,
        query: Tensor | None,
        key: Tensor | None,
        value: Tensor,
        bias: Tensor | None,
        source: Tensor,
        target: Tensor,
        scale: float,
        block_edges: int | None,
    ) -> Tensor:
        from graphformer.ops import _triton_kernels as kernels

        has_qk = query is not None
        has_bias = bias is not None
        num_nodes, heads, channels = value.shape
        block_e, block_c = _block_sizes(channels, block_edges)
        value = value.contiguous()
        query = query.contiguous() if query is not None else value  # dummy pointer when HAS_QK is off
        key = key.contiguous() if key is not None else value
        bias = bias.contiguous() if bias is not None else value
        source = source.contiguous()
        row_pointer = _row_pointer(target.contiguous(), num_nodes)  # [N + 1]
        acc_dtype = _accumulator_dtype(value.dtype)
        out = torch.zeros(num_nodes, heads, channels, device=value.device, dtype=acc_dtype)  # [N, H, C]
        lse = torch.zeros(num_nodes, heads, device=value.device, dtype=acc_dtype)  # [N, H]
        if num_nodes > 0 and heads > 0 and channels > 0:
            kernels.attention_forward_kernel[(num_nodes, heads)](
                query, key, value, bias, source, row_pointer, out, lse,
                heads, channels, float(scale),
                HAS_QK=has_qk, HAS_BIAS=has_bias, BLOCK_E=block_e, BLOCK_C=block_c,
                ACC_DTYPE=_triton_dtype(acc_dtype),
            )
        out = out.to(value.dtype)
        ctx.save_for_backward(query, key, value, bias, source, row_pointer, out, lse)
        ctx.scale = float(scale)
        ctx.flags = (has_qk, has_bias, block_e, block_c)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        from graphformer.ops import _triton_kernels as kernels

        query, key, value, bias, source, row_pointer, out, lse = ctx.saved_tensors
        has_qk, has_bias, block_e, block_c = ctx.flags
        num_nodes, heads, channels = value.shape
        grad_out = grad_out.contiguous()
        acc_dtype = lse.dtype
        delta = (grad_out.to(acc_dtype) * out.to(acc_dtype)).sum(-1)  # D_i = g_i . h_i, [N, H]
        grad_value = torch.zeros(value.shape, device=value.device, dtype=acc_dtype)  # [N, H, C]
        grad_query = torch.zeros_like(grad_value) if has_qk else grad_value
        grad_key = torch.zeros_like(grad_value) if has_qk else grad_value
        grad_scores = torch.zeros(source.numel(), heads, device=value.device, dtype=acc_dtype)  # [E, H]
        if num_nodes > 0 and heads > 0 and channels > 0:
            kernels.attention_backward_kernel[(num_nodes, heads)](
                query, key, value, bias, source, row_pointer, lse, delta, grad_out,
                grad_query, grad_key, grad_value, grad_scores,
                heads, channels, ctx.scale,
                HAS_QK=has_qk, HAS_BIAS=has_bias, BLOCK_E=block_e, BLOCK_C=block_c,
                ACC_DTYPE=_triton_dtype(acc_dtype),
            )
        needs = ctx.needs_input_grad
        return (
            grad_query.to(query.dtype) if has_qk and needs[0] else None,
            grad_key.to(key.dtype) if has_qk and needs[1] else None,
            grad_value.to(value.dtype) if needs[2] else None,
            grad_scores.to(bias.dtype) if has_bias and needs[3] else None,
            None, None, None, None,
        )


def fused_attention(
    query: Tensor | None,
    key: Tensor | None,
    value: Tensor,
    bias: Tensor | None,
    source: Tensor,
    target: Tensor,
    scale: float,
    block_edges: int | None = None,
) -> Tensor:
    r"""Fused :math:`h_i = \sum_{j \to i} \mathrm{softmax}_j(\mathrm{scale}\; q_i \cdot k_j + b_{ij}) v_j`.

    Same contract as :class:`~graphformer.ops.sparse.SparseAttention` (and the argument order used by
    :func:`~graphformer.ops.sparse.sparse_attention`'s CUDA dispatch). Runs on CUDA tensors, or on CPU
    tensors under Triton's interpreter (``TRITON_INTERPRET=1`` set before Triton is imported).

    Args:
        query, key: ``[N, H, C]`` or both None (scores are ``bias`` alone).
        value: ``[N, H, C]``; float16, bfloat16 or float32 (accumulated in float32) or float64 (in float64);
            the result has this dtype.
        bias: ``[E, H]`` additive scores in CSR order, or None.
        source, target: ``[E]`` integer edge endpoints sorted by ``target``.
        scale: multiplier of :math:`q_i \cdot k_j`.
        block_edges: edges per kernel block (power of two); default 32 (16 when ``C > 128``).

    Shapes:
        - output: ``[N, H, C]``; targets without incoming edges get zeros
    """
    if (query is None) != (key is None):
        raise ValueError("fused_attention needs both `query` and `key`, or neither")
    if query is None and bias is None:
        raise ValueError("fused_attention needs `query`/`key` or `bias` scores; got neither")
    if value.dim() != 3:
        raise ValueError(f"fused_attention expects value of shape [N, H, C], got {tuple(value.shape)}")
    return FusedAttention.apply(query, key, value, bias, source, target, scale, block_edges)
