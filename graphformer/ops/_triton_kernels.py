r"""Triton kernels behind :mod:`graphformer.ops.triton_attention` (imports ``triton`` at module level).

Kept apart so that ``graphformer`` imports without Triton; :mod:`~graphformer.ops.triton_attention` imports this
module only when a kernel is launched. All tensors are contiguous: node tensors ``[N, H, C]`` are addressed as
``(node * H + head) * C + channel``, per-edge tensors ``[E, H]`` as ``edge * H + head``, per-node statistics
``[N, H]`` as ``node * H + head``. One program handles one (target node, head) pair and walks the target's
incoming edges ``row_pointer[i] : row_pointer[i + 1]`` (CSR order) in blocks of ``BLOCK_E`` edges. Inputs are
read in their own dtype and converted to ``ACC_DTYPE`` (float32, or float64 for float64 inputs); the output,
LSE and gradient buffers are ``ACC_DTYPE``.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _edge_scores(
    query_i, key_ptr, bias_ptr, src, offs_e, mask_e, offs_c, mask_c, head, heads, channels, scale,
    HAS_QK: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_E: tl.constexpr, ACC_DTYPE: tl.constexpr,
):
    r"""``s_ij = scale q_i . k_j + b_ij`` for one block of edges ``[BLOCK_E]`` (``ACC_DTYPE``; -inf when masked)."""
    scores = tl.zeros([BLOCK_E], dtype=ACC_DTYPE)
    if HAS_QK:
        k_offsets = (src[:, None] * heads + head) * channels + offs_c[None, :]  # [BLOCK_E, BLOCK_C]
        key_j = tl.load(key_ptr + k_offsets, mask=mask_e[:, None] & mask_c[None, :], other=0.0).to(ACC_DTYPE)
        scores += tl.sum(key_j * query_i[None, :], axis=1) * scale
    if HAS_BIAS:
        scores += tl.load(bias_ptr + offs_e * heads + head, mask=mask_e, other=0.0).to(ACC_DTYPE)
    return tl.where(mask_e, scores, float("-inf"))


@triton.jit
def attention_forward_kernel(
    query_ptr, key_ptr, value_ptr, bias_ptr, source_ptr, row_pointer_ptr, out_ptr, lse_ptr,
    heads, channels, scale,
    HAS_QK: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_C: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
):
    r"""Online-softmax aggregation for target ``i`` and head ``h`` (grid ``(N, H)``).

    Over edge blocks keeps the running max :math:`m`, running sum :math:`l = \sum_j e^{s_{ij} - m}` and
    accumulator :math:`a = \sum_j e^{s_{ij} - m} v_j` ``[C]``; a new block with max :math:`m'` rescales both by
    :math:`e^{m - m'}`. Writes ``out[i, h] = a / l`` (zeros when :math:`l = 0`) and
    ``lse[i, h] = m + \log l`` (0 when :math:`l = 0`, i.e. no edge or only :math:`-\infty` scores).
    """
    node = tl.program_id(0).to(tl.int64)
    head = tl.program_id(1).to(tl.int64)
    offs_c = tl.arange(0, BLOCK_C)
    mask_c = offs_c < channels
    node_offsets = (node * heads + head) * channels + offs_c  # [BLOCK_C]
    query_i = tl.zeros([BLOCK_C], dtype=ACC_DTYPE)
    if HAS_QK:
        query_i = tl.load(query_ptr + node_offsets, mask=mask_c, other=0.0).to(ACC_DTYPE)
    start = tl.load(row_pointer_ptr + node)
    end = tl.load(row_pointer_ptr + node + 1)
    # scalar accumulators built by reductions so that their type is the loop-carried type
    running_max = tl.max(tl.full([BLOCK_E], float("-inf"), ACC_DTYPE), axis=0)
    running_sum = tl.sum(tl.zeros([BLOCK_E], dtype=ACC_DTYPE), axis=0)
    acc = tl.zeros([BLOCK_C], dtype=ACC_DTYPE)
    for block_start in range(start, end, BLOCK_E):
        offs_e = block_start + tl.arange(0, BLOCK_E)
        mask_e = offs_e < end
        src = tl.load(source_ptr + offs_e, mask=mask_e, other=0).to(tl.int64)
        scores = _edge_scores(
            query_i, key_ptr, bias_ptr, src, offs_e, mask_e, offs_c, mask_c, head, heads, channels, scale,
            HAS_QK, HAS_BIAS, BLOCK_E, ACC_DTYPE,
        )
        new_max = tl.maximum(running_max, tl.max(scores, axis=0))
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)  # all -inf so far: avoid -inf - -inf
        probs = tl.exp(scores - shift)  # [BLOCK_E], 0 on masked lanes
        correction = tl.exp(running_max - shift)
        v_offsets = (src[:, None] * heads + head) * channels + offs_c[None, :]  # [BLOCK_E, BLOCK_C]
        value_j = tl.load(value_ptr + v_offsets, mask=mask_e[:, None] & mask_c[None, :], other=0.0).to(ACC_DTYPE)
        running_sum = running_sum * correction + tl.sum(probs, axis=0)
        acc = acc * correction + tl.sum(probs[:, None] * value_j, axis=0)
        running_max = new_max
    has_mass = running_sum > 0.0
    out = acc / tl.where(has_mass, running_sum, 1.0)
    lse = tl.where(has_mass, running_max + tl.log(tl.where(has_mass, running_sum, 1.0)), 0.0)
    tl.store(out_ptr + node_offsets, out, mask=mask_c)
    tl.store(lse_ptr + node * heads + head, lse)


@triton.jit
def attention_backward_kernel(
    query_ptr, key_ptr, value_ptr, bias_ptr, source_ptr, row_pointer_ptr, lse_ptr, delta_ptr, grad_out_ptr,
    grad_query_ptr, grad_key_ptr, grad_value_ptr, grad_scores_ptr,
    heads, channels, scale,
    HAS_QK: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_C: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
):
    r"""Gradients for target ``i`` and head ``h`` (grid ``(N, H)``), weights recomputed from the saved LSE.

    :math:`\alpha_{ij} = e^{s_{ij} - \mathrm{lse}_i}`, :math:`\partial s_{ij} = \alpha_{ij}(g_i \cdot v_j - D_i)`
    with :math:`D_i = g_i \cdot h_i` (``delta``). Stores ``grad_scores[e, h]`` and ``grad_query[i, h] =
    scale \sum_j \partial s_{ij} k_j``; adds ``alpha_ij g_i`` to ``grad_value[j, h]`` and
    ``scale ds_ij q_i`` to ``grad_key[j, h]`` with atomics (several targets share a source).
    """
    node = tl.program_id(0).to(tl.int64)
    head = tl.program_id(1).to(tl.int64)
    offs_c = tl.arange(0, BLOCK_C)
    mask_c = offs_c < channels
    node_offsets = (node * heads + head) * channels + offs_c  # [BLOCK_C]
    query_i = tl.zeros([BLOCK_C], dtype=ACC_DTYPE)
    if HAS_QK:
        query_i = tl.load(query_ptr + node_offsets, mask=mask_c, other=0.0).to(ACC_DTYPE)
    grad_i = tl.load(grad_out_ptr + node_offsets, mask=mask_c, other=0.0).to(ACC_DTYPE)
    lse = tl.load(lse_ptr + node * heads + head)
    delta = tl.load(delta_ptr + node * heads + head)
    start = tl.load(row_pointer_ptr + node)
    end = tl.load(row_pointer_ptr + node + 1)
    grad_query_i = tl.zeros([BLOCK_C], dtype=ACC_DTYPE)
    for block_start in range(start, end, BLOCK_E):
        offs_e = block_start + tl.arange(0, BLOCK_E)
        mask_e = offs_e < end
        mask_ec = mask_e[:, None] & mask_c[None, :]
        src = tl.load(source_ptr + offs_e, mask=mask_e, other=0).to(tl.int64)
        scores = _edge_scores(
            query_i, key_ptr, bias_ptr, src, offs_e, mask_e, offs_c, mask_c, head, heads, channels, scale,
            HAS_QK, HAS_BIAS, BLOCK_E, ACC_DTYPE,
        )
        alpha = tl.exp(scores - lse)  # [BLOCK_E], 0 on masked lanes and -inf scores
        j_offsets = (src[:, None] * heads + head) * channels + offs_c[None, :]  # [BLOCK_E, BLOCK_C]
        value_j = tl.load(value_ptr + j_offsets, mask=mask_ec, other=0.0).to(ACC_DTYPE)
        grad_alpha = tl.sum(grad_i[None, :] * value_j, axis=1)  # g_i . v_j, [BLOCK_E]
        grad_scores = tl.where(mask_e, alpha * (grad_alpha - delta), 0.0)
        tl.store(grad_scores_ptr + offs_e * heads + head, grad_scores, mask=mask_e)
        tl.atomic_add(grad_value_ptr + j_offsets, alpha[:, None] * grad_i[None, :], mask=mask_ec)
        if HAS_QK:
            key_j = tl.load(key_ptr + j_offsets, mask=mask_ec, other=0.0).to(ACC_DTYPE)
            grad_query_i += tl.sum(grad_scores[:, None] * key_j, axis=0)
            tl.atomic_add(grad_key_ptr + j_offsets, (grad_scores * scale)[:, None] * query_i[None, :], mask=mask_ec)
    if HAS_QK:
        tl.store(grad_query_ptr + node_offsets, grad_query_i * scale, mask=mask_c)
