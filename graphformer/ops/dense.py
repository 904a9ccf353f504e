"""Dense path: attention over an implicit block structure with ``scaled_dot_product_attention``.

Nodes ``[N, H, C]`` are scattered into padded blocks ``[B, H, L, C]`` (``L`` = largest graph), attention
runs per block with the structure's mask (flash / memory-efficient kernels where torch has them), and
the result is gathered back to ``[N, H, C]``. No ``[E, ...]`` tensor is ever formed.

Graphs of very unequal sizes (a batch of molecules of 10 to 60 atoms) waste most of a single padded block:
its cost is ``B L_max^2`` against ``sum_g L_g^2``. Then the graphs are grouped into size buckets (lengths within a
factor :data:`BUCKET_RATIO` of each other), each padded to its own largest graph and run as its own SDPA call
(see :func:`size_buckets`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from graphformer.graphs.structure import BlockStructure, Causal, FullyConnected
from graphformer.ops.bias import PairBias
from graphformer.ops.sparse import cached_on

# Bucketed padding (graphs of unequal sizes): bucket k holds the graphs with L_max / r^(k+1) < L_g <= L_max / r^k
# for r = BUCKET_RATIO (the last bucket everything smaller), so padding wastes at most a factor r^2 of a bucket's
# work. Used when it cuts the padded work sum_b n_b L_b^2 to at most BUCKET_MIN_SAVING of B L_max^2, and only when
# that work is at least BUCKET_MIN_PAIRS (below, the ~20 small ops that build the buckets cost more than they save).
BUCKET_RATIO = 1.25
BUCKET_MAX = 16
BUCKET_MIN_SAVING = 0.75
BUCKET_MIN_PAIRS = 2**15


def _positions(structure: BlockStructure) -> tuple[Tensor, Tensor]:
    """Graph id ``[N]`` and position within the graph ``[N]`` of every node."""
    batch = structure.batch
    position = torch.arange(structure.num_nodes, device=structure.device) - structure.ptr[batch]
    return batch, position


class SizeBuckets(NamedTuple):
    """Padded layout of a batch grouped by graph size (see :func:`size_buckets`)."""

    rows: Tensor  # [N] row of every node in the concatenated padded buffer [sum_b n_b L_b, ...]
    counts: list[int]  # graphs per bucket n_b
    lengths: list[int]  # padded length per bucket L_b
    sizes: list[Tensor]  # per bucket: [n_b] sizes of its graphs, in slot order
    graphs: list[Tensor]  # per bucket: [n_b] graph ids (in the batch) of its slots, for a pair bias
    equal: list[bool]  # per bucket: all its graphs have length L_b (no padding)

    @property
    def rows_total(self) -> int:
        return sum(n * size for n, size in zip(self.counts, self.lengths))


def size_buckets(structure: BlockStructure) -> SizeBuckets | None:
    """The graphs of ``structure`` grouped into size buckets, or None when one padded block is about as cheap.

    Built without a Python loop over graphs and with one host sync (the buckets' counts and lengths), cached on
    ``structure.ptr`` (a stack of layers on one batch pays it once). Never used while ``torch.compile`` traces
    (the buckets' shapes depend on values).
    """
    if torch.compiler.is_compiling() or structure.num_graphs * structure.max_size**2 < BUCKET_MIN_PAIRS:
        return None
    return cached_on(structure.ptr, "size_buckets", lambda: _size_buckets(structure))


def _size_buckets(structure: BlockStructure) -> SizeBuckets | None:
    sizes, length, device = structure.sizes, structure.max_size, structure.device  # [B]
    ratio = math.log(BUCKET_RATIO)
    bucket = torch.floor(torch.log(length / sizes.clamp(min=1).double()) / ratio).long().clamp(0, BUCKET_MAX - 1)
    counts = torch.bincount(bucket, minlength=BUCKET_MAX)  # [K]
    lengths = torch.zeros(BUCKET_MAX, dtype=torch.long, device=device).scatter_reduce(0, bucket, sizes, "amax")
    filled = torch.zeros(BUCKET_MAX, dtype=torch.long, device=device).index_add(0, bucket, sizes)  # [K] nodes
    counts_list, lengths_list, filled_list = torch.stack([counts, lengths, filled]).tolist()  # the one host sync
    padded = sum(n * size * size for n, size in zip(counts_list, lengths_list))
    if padded > BUCKET_MIN_SAVING * structure.num_graphs * length * length:
        return None
    order = torch.argsort(bucket, stable=True)  # [B] graphs in slot order
    first = torch.cumsum(counts, 0) - counts  # [K] first slot of each bucket
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=device) - first[bucket[order]]  # [B] slot within its bucket
    block_rows = counts * lengths  # [K]
    row_offset = torch.cumsum(block_rows, 0) - block_rows  # [K]
    graph_row = row_offset[bucket] + rank * lengths[bucket]  # [B] first row of each graph
    batch = structure.batch
    rows = graph_row[batch] + torch.arange(structure.num_nodes, device=device) - structure.ptr[batch]  # [N]
    equal = [n * size == f for n, size, f in zip(counts_list, lengths_list, filled_list)]
    return SizeBuckets(
        rows, counts_list, lengths_list, list(sizes[order].split(counts_list)), list(order.split(counts_list)), equal
    )


def _bias_mask(bias: PairBias, length: int, graphs: Tensor | None, mask: Tensor | None, dtype: torch.dtype) -> Tensor:
    """The float mask of SDPA: the bias ``[B', H, L, L]`` of ``graphs`` (all if None), ``-inf`` where ``mask`` is
    False."""
    scores = bias.dense(length, graphs).to(dtype)  # [B', H, L, L], zeros in the padding
    # in place: dense() returns a fresh tensor that autograd does not keep (its backward needs only indices)
    return scores if mask is None else scores.masked_fill_(~mask, float("-inf"))


def _bucketed_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    structure: BlockStructure,
    buckets: SizeBuckets,
    dropout: float,
    scale: float | None,
    bias: PairBias | None = None,
) -> Tensor:
    """:func:`block_attention` with one padded block per size bucket (the same result up to float rounding); a
    pair bias is expanded per bucket for that bucket's graphs only."""
    heads = query.size(1)

    def pad(t: Tensor) -> Tensor:
        return t.new_zeros(buckets.rows_total, heads, t.size(-1)).index_copy(0, buckets.rows, t)  # [R, H, C]

    block_rows = [n * size for n, size in zip(buckets.counts, buckets.lengths)]
    # split, not slices: backward concatenates the blocks' gradients instead of adding each into a zero buffer
    blocks = zip(*(pad(t).split(block_rows) for t in (query, key, value)))
    outs = []
    for (q, k, v), count, length, sizes, graphs, equal in zip(
        blocks, buckets.counts, buckets.lengths, buckets.sizes, buckets.graphs, buckets.equal
    ):
        if count == 0 or length == 0:  # no graph, or only empty graphs: no rows
            continue
        mask: Tensor | None = None
        is_causal = False
        if equal and isinstance(structure, Causal) and bias is None:
            is_causal = True
        elif not (equal and isinstance(structure, FullyConnected)):
            mask = structure.dense_mask(length).view(1, 1, length, length)  # [1, 1, L_b, L_b]
            if not equal:
                valid = torch.arange(length, device=query.device).view(1, -1) < sizes.view(-1, 1)  # [n_b, L_b]
                # padded query rows may see every key: their output is discarded, and no row is all -inf
                mask = (mask & valid.view(count, 1, 1, length)) | ~valid.view(count, 1, length, 1)
        q_b, k_b, v_b = (t.view(count, length, heads, -1).transpose(1, 2) for t in (q, k, v))  # [n_b, H, L_b, C]
        attn_mask = mask if bias is None else _bias_mask(bias, length, graphs, mask, q_b.dtype)
        out = F.scaled_dot_product_attention(
            q_b, k_b, v_b, attn_mask=attn_mask, dropout_p=dropout, is_causal=is_causal, scale=scale
        )  # [n_b, H, L_b, C]
        outs.append(out.transpose(1, 2).reshape(count * length, heads, -1))
    return torch.cat(outs).index_select(0, buckets.rows)  # [N, H, C]
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
    are padded in size buckets (:func:`size_buckets`), each to its own largest graph, which cuts the time and the
    memory of the ``[B, H, L, L]`` scores (and of the bias) on batches like molecules of 10 to 60 atoms.

    Shapes:
        - query, key, value: ``[N, H, C]``
        - output: ``[N, H, C]``
    """
    num_nodes, heads, channels = query.shape
    if num_nodes == 0:
        return value.new_zeros(0, heads, value.size(-1))
    num_graphs, length = structure.num_graphs, structure.max_size
    equal_sizes = structure.num_nodes == num_graphs * length  # python ints: no host sync, traceable
    if not equal_sizes:
        buckets = size_buckets(structure)
        if buckets is not None:
            return _bucketed_attention(query, key, value, structure, buckets, dropout, scale, bias)
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
    attn_mask = mask if bias is None else _bias_mask(bias, length, None, mask, q.dtype)
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=dropout, is_causal=is_causal, scale=scale
    )  # [B, H, L, C]
    out = out.transpose(1, 2)  # [B, L, H, C]
    if equal_sizes:
        return out.reshape(num_nodes, heads, -1)
    return out[batch, position]
