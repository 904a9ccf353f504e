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


# Graphs padded into one block differ in size by at most this factor, so a block holds at most 1 / 0.8^2 = 1.56x
# the pairs of its graphs; a batch whose padding to its largest graph would waste more than BUCKET_WASTE of the
# pairs is split into such buckets of similar size (at most MAX_BUCKETS, each padded to its own largest graph).
BUCKET_SIZE_RATIO = 0.8
BUCKET_WASTE = 1.5
MAX_BUCKETS = 8


def size_buckets(sizes: Tensor) -> list[Tensor] | None:
    """Graph ids grouped by similar size (each group sorted by id), or None if one padded block is good enough.

    Greedy over graphs sorted by decreasing size: a bucket takes graphs down to ``BUCKET_SIZE_RATIO`` of its
    largest; the ratio loosens until there are at most :data:`MAX_BUCKETS` buckets.
    """
    counts = sizes.tolist()
    pairs = sum(n * n for n in counts)
    if len(counts) < 2 or len(counts) * max(counts) ** 2 <= BUCKET_WASTE * pairs:
        return None
    order = sorted(range(len(counts)), key=lambda g: -counts[g])
    ratio = BUCKET_SIZE_RATIO
    while True:
        buckets: list[list[int]] = []
        for g in order:
            if buckets and counts[g] >= ratio * counts[buckets[-1][0]]:
                buckets[-1].append(g)
            else:
                buckets.append([g])
        if len(buckets) <= MAX_BUCKETS:
            break
        ratio *= 0.8
    if len(buckets) == 1:
        return None
    return [torch.tensor(sorted(b), device=sizes.device) for b in buckets]


def _pad(t: Tensor, graph: Tensor, position: Tensor, num_graphs: int, length: int) -> Tensor:
    """Nodes ``[n, H, C]`` at (graph, position) into padded blocks ``[B, H, L, C]`` (zeros in the padding)."""
    dense = t.new_zeros(num_graphs, length, t.size(1), t.size(2))
    dense[graph, position] = t
    return dense.transpose(1, 2)


def _padded_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    structure: BlockStructure,
    sizes: Tensor,
    length: int,
    dropout: float,
    scale: float | None,
    bias: PairBias | None,
    graphs: Tensor | None = None,
) -> Tensor:
    """SDPA over padded blocks ``[B, H, L, C]`` of graphs of ``sizes`` ``[B]`` (``graphs``: their ids in the batch,
    for the bias; None = all graphs) with the structure's mask and the bias; ``[B, H, L, C]`` out."""
    pos = torch.arange(length, device=q.device)
    valid = pos.view(1, -1) < sizes.view(-1, 1)  # [B, L]
    mask = structure.dense_mask(length).view(1, 1, length, length)  # [1, 1, L, L]
    # padded query rows may see every key: their output is discarded, and no row is all -inf
    mask = (mask & valid.view(-1, 1, 1, length)) | ~valid.view(-1, 1, length, 1)  # [B, 1, L, L]
    attn_mask: Tensor = mask
    if bias is not None:
        scores = bias.dense(length, graphs).to(q.dtype)  # [B, H, L, L], zeros in the padding
        # in place: dense() returns a fresh tensor that autograd does not keep (its backward needs only indices)
        attn_mask = scores.masked_fill_(~mask, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout, scale=scale)


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
    pair), expanded from the bias's compact per-pair codes here and nowhere else. Graphs of very different sizes
    are padded in buckets of similar size (:func:`size_buckets`), each to its own largest graph, so that padding
    stays below ~1.6x the real pairs (memory and time of the ``[B, H, L, L]`` scores).

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

        q, k, v = pad(query), pad(key), pad(value)
        mask: Tensor | None = None
        is_causal = False
        if isinstance(structure, FullyConnected):
            pass
        elif isinstance(structure, Causal) and bias is None:
            is_causal = True
        else:
            mask = structure.dense_mask(length).view(1, 1, length, length)  # [1, 1, L, L]
        attn_mask: Tensor | None = mask
        if bias is not None:
            scores = bias.dense(length).to(q.dtype)  # [B, H, L, L]
            attn_mask = scores if mask is None else scores.masked_fill(~mask, float("-inf"))
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=dropout, is_causal=is_causal, scale=scale
        )  # [B, H, L, C]
        return out.transpose(1, 2).reshape(num_nodes, heads, -1)

    batch, position = _positions(structure)
    buckets = None if torch.compiler.is_compiling() else size_buckets(structure.sizes)
    if buckets is None:  # one block, padded to the largest graph
        def pad(t: Tensor) -> Tensor:
            dense = t.new_zeros(num_graphs, length, heads, t.size(-1))
            dense[batch, position] = t
            return dense.transpose(1, 2)  # [B, H, L, C]

        out = _padded_attention(pad(query), pad(key), pad(value), structure, structure.sizes, length, dropout,
                                scale, bias)  # [B, H, L, C]
        return out.transpose(1, 2)[batch, position]
    # buckets of graphs of similar size, each padded to its own largest graph
    bucket_of_graph = torch.empty(num_graphs, dtype=torch.long, device=query.device)
    rank = torch.empty(num_graphs, dtype=torch.long, device=query.device)  # index of a graph within its bucket
    for b, graphs in enumerate(buckets):
        bucket_of_graph[graphs] = b
        rank[graphs] = torch.arange(graphs.numel(), device=query.device)
    node_bucket = bucket_of_graph[batch]  # [N]
    order = torch.argsort(node_bucket, stable=True)  # nodes grouped by bucket
    counts = torch.bincount(node_bucket, minlength=len(buckets)).tolist()
    out = value.new_zeros(num_nodes, heads, value.size(-1))
    start = 0
    for graphs, count in zip(buckets, counts):
        nodes = order[start: start + count]  # [n_b]
        start += count
        sizes = structure.sizes[graphs]
        bucket_length = int(sizes.max())
        slot, slot_position = rank[batch[nodes]], position[nodes]
        q, k, v = (_pad(t[nodes], slot, slot_position, graphs.numel(), bucket_length) for t in (query, key, value))
        attended = _padded_attention(q, k, v, structure, sizes, bucket_length, dropout, scale, bias, graphs)
        out[nodes] = attended.transpose(1, 2)[slot, slot_position]
    return out
