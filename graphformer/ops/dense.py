"""Dense path: attention over an implicit block structure with ``scaled_dot_product_attention``.

Nodes ``[N, H, C]`` are scattered into padded blocks ``[B, H, L, C]`` (``L`` = largest graph), attention
runs per block with the structure's mask (flash / memory-efficient kernels where torch has them), and
the result is gathered back to ``[N, H, C]``. No ``[E, ...]`` tensor is ever formed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from graphformer.graphs.structure import BlockStructure, Causal, FullyConnected
from graphformer.ops.bias import PairBias


def _positions(structure: BlockStructure) -> tuple[Tensor, Tensor]:
    """Graph id ``[N]`` and position within the graph ``[N]`` of every node."""
    batch = structure.batch
    position = torch.arange(structure.num_nodes, device=structure.device) - structure.ptr[batch]
    return batch, position


def block_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    structure: BlockStructure,
    dropout: float = 0.0,
    scale: float | None = None,
    bias: PairBias | None = None,
) -> Tensor:
    r"""Softmax attention of every node over the sources its :class:`BlockStructure` allows.

    .. math:: h_i = \sum_{j \in N(i)} \mathrm{softmax}_j\left(\frac{q_i \cdot k_j}{\sqrt{C}} + b_{ij}\right) v_j

    Equal to the gather/softmax/scatter reference on ``structure.to_edge_index()``. A :class:`PairBias` reaches
    ``scaled_dot_product_attention`` as its float mask ``[B, H, L, L]`` (``-inf`` where the structure forbids a
    pair), expanded from the bias's compact per-pair codes here and nowhere else.

    Shapes:
        - query, key, value: ``[N, H, C]``
        - output: ``[N, H, C]``
    """
    num_nodes, heads, channels = query.shape
    if num_nodes == 0:
        return value.new_zeros(0, heads, value.size(-1))
    num_graphs, length = structure.num_graphs, structure.max_size
    equal_sizes = structure.num_nodes == num_graphs * length  # python ints: no host sync, traceable
    if equal_sizes:  # no padding: a plain reshape
        def pad(t: Tensor) -> Tensor:
            return t.view(num_graphs, length, heads, -1).transpose(1, 2)  # [B, H, L, C]
    else:
        batch, position = _positions(structure)

        def pad(t: Tensor) -> Tensor:
            dense = t.new_zeros(num_graphs, length, heads, t.size(-1))
            dense[batch, position] = t
            return dense.transpose(1, 2)  # [B, H, L, C]

    q, k, v = pad(query), pad(key), pad(value)
    mask: Tensor | None = None
    is_causal = False
    if isinstance(structure, FullyConnected) and equal_sizes:
        pass
    elif isinstance(structure, Causal) and equal_sizes and bias is None:
        is_causal = True
    else:
        mask = structure.dense_mask(length).view(1, 1, length, length)  # [1, 1, L, L]
        if not equal_sizes:
            pos = torch.arange(length, device=query.device)
            valid = pos.view(1, -1) < structure.sizes.view(-1, 1)  # [B, L]
            # padded query rows may see every key: their output is discarded, and no row is all -inf
            mask = (mask & valid.view(num_graphs, 1, 1, length)) | ~valid.view(num_graphs, 1, length, 1)
    attn_mask: Tensor | None = mask
    if bias is not None:
        scores = bias.dense(length).to(q.dtype)  # [B, H, L, L], zeros in the padding
        attn_mask = scores if mask is None else scores.masked_fill(~mask, float("-inf"))
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=dropout, is_causal=is_causal, scale=scale
    )  # [B, H, L, C]
    out = out.transpose(1, 2)  # [B, L, H, C]
    if equal_sizes:
        return out.reshape(num_nodes, heads, -1)
    return out[batch, position]
