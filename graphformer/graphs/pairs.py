"""Per-pair codes: one small integer for every ordered pair of nodes of the same graph.

Structure that a graph transformer uses as attention bias is information about *pairs* of nodes: the
shortest-path distance between them, their relative position in a sentence, the type of the edge that joins
them. :class:`PairCodes` stores one integer per ordered pair ``(target i, source j)`` of nodes of the same graph,
for a whole PyG-style batch: ``P = sum_g L_g^2`` integers, never a padded ``[B, N_max, N_max]`` tensor and never
one value per head. Learned modules (:mod:`graphformer.encodings`) turn codes into per-head scores
(:class:`~graphformer.ops.PairBias`) only inside attention.

Layout: the pairs of graph ``g`` form a row-major ``[L_g, L_g]`` block (rows = targets ``i``, columns =
sources ``j``, local positions), the blocks concatenated in graph order. Pair ``(i, j)`` of graph ``g`` sits at
``pair_ptr[g] + i * L_g + j`` with ``pair_ptr = [0, cumsum(L_g^2)]``. This is exactly what PyG's ``Batch``
produces when every graph of a dataset stores its ``[L * L]`` block flat (see
:class:`~graphformer.structural.ShortestPathDistance`), so per-graph codes computed once by a transform are
batched by plain concatenation. It is also the order of ``fully_connected(batch).to_edge_index()``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from graphformer.graphs.validation import check_edge_index


def pair_offsets(ptr: Tensor) -> Tensor:
    """``pair_ptr`` ``[B + 1]``: where each graph's ``[L_g, L_g]`` block of pairs starts (``cumsum L_g^2``)."""
    sizes = ptr.diff()
    return torch.cat([sizes.new_zeros(1), (sizes * sizes).cumsum(0)])


def graph_of_nodes(ptr: Tensor, num_nodes: int | None = None) -> Tensor:
    """``[N]`` graph id of every node of a batch described by ``ptr`` ``[B + 1]``."""
    sizes = ptr.diff()
    return torch.repeat_interleave(torch.arange(sizes.numel(), device=ptr.device), sizes, output_size=num_nodes)


def pair_index(edge_index: Tensor, ptr: Tensor) -> Tensor:
    """Position of every edge ``j -> i`` in the flat pair layout: ``pair_ptr[g] + (i - ptr[g]) L_g + (j - ptr[g])``.

    Raises ``ValueError`` (naming ``edge_index``) if an edge joins nodes of different graphs: such a pair has no
    code.

    Shapes:
        - edge_index: ``[2, E]``; ptr: ``[B + 1]``
        - output: ``[E]`` int64
    """
    num_nodes = int(ptr[-1])
    edge_index = check_edge_index(edge_index, num_nodes)
    graph = graph_of_nodes(ptr, num_nodes)
    source, target = edge_index[0], edge_index[1]
    graph_of_edge = graph[target]
    if edge_index.numel() > 0 and bool((graph[source] != graph_of_edge).any()):
        bad = int((graph[source] != graph_of_edge).nonzero()[0, 0])
        raise ValueError(
            f"`edge_index` joins nodes of different graphs (edge {bad}: {int(source[bad])} -> {int(target[bad])}); "
            "pair codes and pair biases exist only for pairs of nodes of the same graph of the batch"
        )
    start = ptr[graph_of_edge]
    size = ptr[graph_of_edge + 1] - start
    return pair_offsets(ptr)[graph_of_edge] + (target - start) * size + (source - start)


def pair_nodes(ptr: Tensor) -> tuple[Tensor, Tensor]:
    """Global ``(target [P], source [P])`` node ids of every pair, in the flat pair layout (``O(P)``, no loop)."""
    sizes = ptr.diff()
    counts = sizes * sizes
    total = int(counts.sum())
    graph = torch.repeat_interleave(torch.arange(sizes.numel(), device=ptr.device), counts, output_size=total)
    local = torch.arange(total, device=ptr.device) - pair_offsets(ptr)[graph]  # [P]
    size = sizes[graph]
    start = ptr[graph]
    return start + local // size, start + local % size


def padded_pair_index(ptr: Tensor, length: int | None = None, graphs: Tensor | None = None) -> Tensor:
    """``[B, L, L]`` position of pair ``(i, j)`` of graph ``g`` in the flat layout; ``P`` (one past the end) where
    ``i`` or ``j`` is padding (``>= L_g``), so that a value appended at position ``P`` fills the padding.

    ``length`` defaults to the largest graph. ``graphs`` (``[B']`` graph ids) restricts the blocks to those graphs,
    in that order: ``[B', L, L]`` (attention over graphs bucketed by size).
    """
    sizes = ptr.diff()
    total = int((sizes * sizes).sum())
    starts = pair_offsets(ptr)[:-1]
    if graphs is not None:
        sizes, starts = sizes[graphs], starts[graphs]
    length = int(sizes.max()) if length is None and sizes.numel() > 0 else (length or 0)
    position = torch.arange(length, device=ptr.device)
    size = sizes.view(-1, 1, 1)  # [B, 1, 1]
    row, column = position.view(1, -1, 1), position.view(1, 1, -1)
    index = starts.view(-1, 1, 1) + row * size + column  # [B, L, L]
    valid = (row < size) & (column < size)
    return torch.where(valid, index, torch.full_like(index, total))


def _is_integer(t: Tensor) -> bool:
    return not (t.is_floating_point() or t.is_complex() or t.dtype is torch.bool)


class PairCodes:
    """An integer code in ``[0, num_codes)`` for every ordered pair of nodes of the same graph of a batch.

    Args:
        codes: ``[P]`` integers, ``P = sum_g L_g^2``, in the flat pair layout of this module (row-major
            ``[L_g, L_g]`` block per graph, rows = targets). A ``[L, L]`` tensor is accepted for a single graph.
        batch: the batch the codes belong to: a PyG ``batch`` vector ``[N]``, a ``Data``/``Batch`` object, or
        ptr: offsets ``[B + 1]``. With neither, the codes describe one graph of ``sqrt(P)`` nodes.
        num_codes: number of distinct codes (the size of the table that embeds them); default ``max + 1``.

    Example::

        >>> codes = PairCodes(torch.tensor([0, 1, 1, 0, 0]), ptr=torch.tensor([0, 2, 3]), num_codes=2)
        >>> codes.dense()  # graph 0 has 2 nodes, graph 1 has 1; padding shows as -1
        tensor([[[ 0,  1],
                 [ 1,  0]],
        <BLANKLINE>
                [[ 0, -1],
                 [-1, -1]]])
    """

    def __init__(
        self,
        codes: Tensor,
        batch: Tensor | Any | None = None,
        *,
        ptr: Tensor | None = None,
        num_codes: int | None = None,
    ) -> None:
        if not isinstance(codes, Tensor) or not _is_integer(codes):
            raise TypeError(f"`codes` must be an integer tensor, got {getattr(codes, 'dtype', type(codes).__name__)}")
        if codes.dim() == 2 and codes.size(0) == codes.size(1) and batch is None and ptr is None:
            ptr = torch.tensor([0, codes.size(0)], device=codes.device)
            codes = codes.reshape(-1)
        if codes.dim() != 1:
            raise ValueError(f"`codes` must be flat [P] (or [L, L] for one graph), got shape {tuple(codes.shape)}")
        codes = codes.long()
        if batch is not None or ptr is not None:
            from graphformer.graphs.structure import FullyConnected  # reads batch / ptr / Data with its checks

            ptr = FullyConnected(batch, ptr=ptr).ptr.to(codes.device)
        else:
            root = int(round(codes.numel() ** 0.5))
            if root * root != codes.numel():
                raise ValueError(f"`codes` has {codes.numel()} entries, not L*L for one graph; give `batch` or `ptr`")
            ptr = torch.tensor([0, root], device=codes.device)
        expected = int(pair_offsets(ptr)[-1])
        if codes.numel() != expected:
            raise ValueError(
                f"`codes` has {codes.numel()} entries but the batch has sum_g L_g^2 = {expected} node pairs; "
                "were the codes computed for another batch?"
            )
        if codes.numel() > 0 and int(codes.min()) < 0:
            raise ValueError(f"`codes` must be non-negative, got {int(codes.min())}")
        largest = int(codes.max()) + 1 if codes.numel() > 0 else 0
        if num_codes is None:
            num_codes = largest
        elif largest > num_codes:
            raise ValueError(f"`codes` reach {largest - 1} but num_codes is {num_codes}")
        self.codes, self.ptr, self.num_codes = codes, ptr, int(num_codes)

    @property
    def num_graphs(self) -> int:
        return self.ptr.numel() - 1

    @property
    def num_nodes(self) -> int:
        return int(self.ptr[-1])

    @property
    def sizes(self) -> Tensor:
        return self.ptr.diff()

    def to(self, device: torch.device | str) -> PairCodes:
        new = object.__new__(PairCodes)
        new.codes, new.ptr, new.num_codes = self.codes.to(device), self.ptr.to(device), self.num_codes
        return new

    def dense(self, length: int | None = None, fill: int = -1) -> Tensor:
        """``[B, L, L]`` codes per graph, padded with ``fill`` (rows = targets, columns = sources)."""
        index = padded_pair_index(self.ptr, length)
        extended = torch.cat([self.codes, self.codes.new_full((1,), fill)])
        return extended[index]

    def on_edges(self, edge_index: Tensor) -> Tensor:
        """``[E]`` code of every edge ``j -> i`` (an edge must join nodes of the same graph)."""
        return self.codes[pair_index(edge_index.to(self.ptr.device), self.ptr)]

    def __repr__(self) -> str:
        return f"PairCodes(num_graphs={self.num_graphs}, num_pairs={self.codes.numel()}, num_codes={self.num_codes})"
