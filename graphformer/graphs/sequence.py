"""Graphs over sentences: a batch of variable-length token sequences as a batch of graphs.

A batch of ``B`` sentences with ``N = sum_g L_g`` tokens is described as in PyG by a sorted ``batch`` vector
``[N]``, by offsets ``ptr`` ``[B + 1]``, or by ``lengths`` ``[B]`` (``ptr = [0, cumsum(lengths)]``). Token
``t`` of sentence ``g`` is node ``ptr[g] + t``.

Implicit structures (never materialised unless asked; dense SDPA path in attention):

* complete: :func:`~graphformer.graphs.fully_connected`; causal: :func:`~graphformer.graphs.causal`;
  sliding window: :func:`~graphformer.graphs.window`; dilated window: :func:`dilated` (here).

Explicit ``edge_index`` builders (here): :func:`chain` (previous/next word), :func:`dependency_tree` (CoNLL-U
heads, both directions), :func:`union` (of any graphs), and :func:`binary_partition_tree` (BP-Transformer
span nodes, which adds nodes and so returns a :class:`PartitionTree`).

Every builder puts **self-loops** on the words by default (``self_loops=True``), as
:func:`~graphformer.graphs.fully_connected` does: a token attends to itself. Edges point from source ``j``
(row 0) to target ``i`` (row 1) and come sorted by target, then source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from graphformer.graphs.structure import Banded, BlockStructure, FullyConnected
from graphformer.graphs.validation import check_edge_index, check_index


def lengths_to_ptr(lengths: Tensor) -> Tensor:
    """Offsets ``ptr = [0, cumsum(lengths)]`` ``[B + 1]`` from sentence lengths ``[B]``."""
    lengths = check_index(lengths, "lengths")
    if lengths.numel() > 0 and int(lengths.min()) < 0:
        raise ValueError(f"`lengths` must be non-negative, got minimum {int(lengths.min())}")
    return torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])


def sentence_ptr(
    batch: Tensor | Any | None = None,
    *,
    ptr: Tensor | None = None,
    lengths: Tensor | None = None,
    num_nodes: int | None = None,
) -> Tensor:
    """Offsets ``ptr`` ``[B + 1]`` from whichever of ``batch`` / ``ptr`` / ``lengths`` / ``num_nodes`` is given.

    ``batch`` may also be a PyG ``Data``/``Batch``. Validation is that of
    :class:`~graphformer.graphs.BlockStructure` (sorted batch, non-decreasing ptr).
    """
    if lengths is not None:
        if batch is not None or ptr is not None:
            raise ValueError("give one of `batch`, `ptr` or `lengths`, not several")
        ptr = lengths_to_ptr(lengths)
    return FullyConnected(batch, ptr=ptr, num_nodes=num_nodes).ptr


def _sort_and_dedup(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Unique edges sorted by target, then source."""
    if edge_index.size(1) == 0:
        return edge_index
    key = torch.unique(edge_index[1] * max(num_nodes, 1) + edge_index[0])  # sorted
    return torch.stack([key % max(num_nodes, 1), key // max(num_nodes, 1)])


def _sort_edges(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Edges sorted by target, then source, duplicates kept (a multigraph stays one)."""
    if edge_index.size(1) == 0:
        return edge_index
    key = edge_index[1] * max(num_nodes, 1) + edge_index[0]
    return edge_index[:, torch.argsort(key, stable=True)]


def _local_positions(ptr: Tensor) -> tuple[Tensor, Tensor]:
    """``(graph [N], position [N])`` of every node from ``ptr``."""
    sizes = ptr.diff()
    graph = torch.repeat_interleave(torch.arange(sizes.numel(), device=ptr.device), sizes)
    position = torch.arange(int(ptr[-1]), device=ptr.device) - ptr[graph]
    return graph, position


def _self_loops(num_nodes: int, device: torch.device) -> Tensor:
    nodes = torch.arange(num_nodes, device=device)
    return torch.stack([nodes, nodes])


def chain(
    batch: Tensor | Any | None = None,
    *,
    ptr: Tensor | None = None,
    lengths: Tensor | None = None,
    num_nodes: int | None = None,
    self_loops: bool = True,
) -> Tensor:
    r"""The path graph of each sentence: word ``t`` receives from words ``t - 1`` and ``t + 1``.

    :math:`\mathcal{N}(i) = \{j : |i - j| = 1\}` (``\cup \{i\}`` with ``self_loops``), within each sentence.
    A sentence of length ``L`` has ``2 (L - 1)`` edges (``+ L`` self-loops); with self-loops the graph equals
    ``window(batch, radius=1).to_edge_index()``, without them ``networkx.path_graph(L)``.

    Args:
        batch / ptr / lengths / num_nodes: the batch of sentences (see :func:`sentence_ptr`).
        self_loops: add ``i -> i`` for every word.

    Shapes:
        - output: ``edge_index`` ``[2, E]``, sorted by target then source.
    """
    ptr = sentence_ptr(batch, ptr=ptr, lengths=lengths, num_nodes=num_nodes)
    _, position = _local_positions(ptr)
    nodes = torch.arange(position.numel(), device=ptr.device)
    has_next = position[1:] > 0  # node t+1 is in the same sentence as node t
    left, right = nodes[:-1][has_next], nodes[1:][has_next]
    parts = [torch.stack([left, right]), torch.stack([right, left])]
    if self_loops:
        parts.append(_self_loops(nodes.numel(), ptr.device))
    return _sort_and_dedup(torch.cat(parts, dim=1), nodes.numel())


class Dilated(Banded):
    r"""Dilated sliding window: node ``i`` receives from ``j`` with ``|i - j| = k \cdot dilation``, ``k <= radius``.

    .. math::
        \mathcal{N}(i) = \{ j : |i - j| \le \mathrm{radius} \cdot d,\; (i - j) \bmod d = 0 \}

    within each graph, self-loops included (``k = 0``). ``dilation=1`` is
    :class:`~graphformer.graphs.SlidingWindow`. Each node sees ``2 * radius + 1`` nodes spread over
    ``2 * radius * dilation + 1`` positions (Longformer's dilated window).

    Args:
        radius: number of dilated steps on each side (``>= 0``).
        dilation: gap between attended positions (``>= 1``).
        batch, ptr, num_nodes: as in :class:`~graphformer.graphs.BlockStructure`.
    """

    def __init__(
        self,
        radius: int,
        dilation: int,
        batch: Tensor | None = None,
        *,
        ptr: Tensor | None = None,
        num_nodes: int | None = None,
    ) -> None:
        if not isinstance(radius, int) or radius < 0:
            raise ValueError(f"`radius` must be a non-negative int, got {radius!r}")
        if not isinstance(dilation, int) or dilation < 1:
            raise ValueError(f"`dilation` must be a positive int, got {dilation!r}")
        super().__init__(batch, ptr=ptr, num_nodes=num_nodes)
        self.radius, self.dilation = radius, dilation

    def allows(self, target: Tensor, source: Tensor) -> Tensor:
        offset = (target - source).abs()
        return (offset <= self.radius * self.dilation) & (offset % self.dilation == 0)

    def offsets(self) -> list[int]:
        return [k * self.dilation for k in range(-self.radius, self.radius + 1)]

    def _extra_repr(self) -> str:
        return f"radius={self.radius}, dilation={self.dilation}"


def dilated(
    batch: Tensor | Any | None = None,
    radius: int = 2,
    dilation: int = 2,
    *,
    ptr: Tensor | None = None,
    lengths: Tensor | None = None,
    num_nodes: int | None = None,
) -> Dilated:
    """Dilated-window structure (see :class:`Dilated`); an implicit structure like ``window``."""
    if lengths is not None:
        ptr = sentence_ptr(batch, ptr=ptr, lengths=lengths)
        batch = None
    return Dilated(radius, dilation, batch, ptr=ptr, num_nodes=num_nodes)


def dependency_tree(
    heads: Tensor,
    batch: Tensor | Any | None = None,
    *,
    ptr: Tensor | None = None,
    lengths: Tensor | None = None,
    self_loops: bool = True,
) -> Tensor:
    r"""The dependency tree of each sentence from CoNLL-U head indices, edges in both directions.

    ``heads[n]`` is the CoNLL-U ``HEAD`` column of token ``n``: the 1-based position of its syntactic head
    within the sentence, or ``0`` for the root. For every non-root token ``d`` with head ``h``:
    ``h -> d`` and ``d -> h`` (and ``i -> i`` with ``self_loops``). A sentence of length ``L`` with one root
    has ``2 (L - 1)`` tree edges.

    Args:
        heads: ``[N]`` integer CoNLL-U heads (0 = root, else 1..L of the token's own sentence).
        batch / ptr / lengths: the batch of sentences (see :func:`sentence_ptr`); default one sentence.
        self_loops: add ``i -> i`` for every word.

    Shapes:
        - output: ``edge_index`` ``[2, E]``, sorted by target then source.
    """
    heads = check_index(heads, "heads")
    num_nodes = heads.numel()
    ptr = sentence_ptr(batch, ptr=ptr, lengths=lengths, num_nodes=num_nodes)
    if int(ptr[-1]) != num_nodes:
        raise ValueError(f"`heads` has {num_nodes} entries but the batch describes {int(ptr[-1])} tokens")
    graph, position = _local_positions(ptr)
    length = ptr.diff()[graph]
    if num_nodes > 0 and (bool((heads < 0).any()) or bool((heads > length).any())):
        bad = int(torch.nonzero((heads < 0) | (heads > length))[0])
        raise ValueError(
            f"`heads[{bad}]` = {int(heads[bad])} is outside [0, {int(length[bad])}] (0 = root, else the 1-based "
            "position of the head in the token's sentence)"
        )
    if num_nodes > 0 and bool((heads == position + 1).any()):
        bad = int(torch.nonzero(heads == position + 1)[0])
        raise ValueError(f"token {bad} is its own head (`heads[{bad}]` = {int(heads[bad])})")
    dependent = torch.nonzero(heads > 0).view(-1)
    head = ptr[graph[dependent]] + heads[dependent] - 1
    parts = [torch.stack([head, dependent]), torch.stack([dependent, head])]
    if self_loops:
        parts.append(_self_loops(num_nodes, heads.device))
    return _sort_and_dedup(torch.cat(parts, dim=1), num_nodes)


def union(*graphs: Tensor | BlockStructure, num_nodes: int) -> Tensor:
    """The union of several graphs over the same ``num_nodes`` nodes, as an explicit ``edge_index``.

    Block structures are materialised; duplicate edges are kept once. ``union(dependency_tree(...),
    chain(...), num_nodes=N)`` is the "tree + chain" graph.

    Shapes:
        - graphs: each an ``edge_index`` ``[2, E_k]`` or a block structure over ``num_nodes`` nodes
        - output: ``edge_index`` ``[2, E]`` with ``E <= sum_k E_k``, sorted by target then source.
    """
    if not graphs:
        raise ValueError("`union` needs at least one graph")
    parts = []
    for k, graph in enumerate(graphs):
        if isinstance(graph, BlockStructure):
            if graph.num_nodes != num_nodes:
                raise ValueError(f"graph {k} describes {graph.num_nodes} nodes, expected num_nodes={num_nodes}")
            parts.append(graph.to_edge_index())
        else:
            parts.append(check_edge_index(graph, num_nodes, f"graphs[{k}]"))
    return _sort_and_dedup(torch.cat(parts, dim=1), num_nodes)


@dataclass
class PartitionTree:
    """A batch of sentences extended with the span nodes of a binary partition tree (BP-Transformer).

    **Node layout**: the ``num_words`` words keep their indices ``0 .. num_words - 1``; all span nodes are
    appended after them, ``num_words .. num_nodes - 1``, sentence by sentence, level by level (finest first).
    So ``x_ext[:num_words]`` are the words and ``out[:num_words]`` the word outputs of a layer. ``batch``
    (of the extended node set) is therefore not sorted; scatter-based pooling does not need it to be.

    Attributes:
        edge_index: ``[2, E]`` edges over the extended node set, sorted by target then source.
        num_words: ``N`` words.
        num_nodes: ``N + S`` words and span nodes.
        batch: ``[N + S]`` sentence of every node.
        span_start, span_end: ``[N + S]`` global word range ``[start, end)`` each node covers (a word covers
            itself).
        level: ``[N + S]`` tree level (0 = word, ``l`` = span of up to ``2^l`` words).
    """

    edge_index: Tensor
    num_words: int
    num_nodes: int
    batch: Tensor
    span_start: Tensor
    span_end: Tensor
    level: Tensor

    def extend(self, x: Tensor) -> Tensor:
        r"""Features ``[N + S, F]`` for the extended node set: words copied, span ``s`` = mean of its words.

        :math:`x_s = \frac{1}{|s|} \sum_{t \in s} x_t` (a bag-of-words summary, so spans carry content from the
        first layer on; BP-Transformer instead starts them from zero and lets the tree edges fill them).
        """
        if x.dim() != 2 or x.size(0) != self.num_words:
            raise ValueError(f"`x` must have shape [num_words={self.num_words}, F], got {tuple(x.shape)}")
        prefix = torch.cat([x.new_zeros(1, x.size(1)), x.cumsum(0)])  # [N + 1, F]
        spans = slice(self.num_words, self.num_nodes)
        start, end = self.span_start[spans], self.span_end[spans]
        mean = (prefix[end] - prefix[start]) / (end - start).unsqueeze(-1).to(x.dtype)  # [S, F]
        return torch.cat([x, mean])


def binary_partition_tree(
    batch: Tensor | Any | None = None,
    *,
    ptr: Tensor | None = None,
    lengths: Tensor | None = None,
    num_nodes: int | None = None,
    contextual: bool = True,
    self_loops: bool = True,
) -> PartitionTree:
    r"""Binary partition tree over each sentence, as in BP-Transformer (Ye et al., 2019): span nodes, log depth.

    Level ``l`` of a sentence of length ``L`` has ``ceil(L / 2^l)`` nodes; node ``m`` of level ``l`` covers
    words ``[m 2^l, min((m + 1) 2^l, L))``. Levels go up to ``D = ceil(log2 L)`` (one root span); words are
    level 0. Edges (source -> target):

    * affiliated (tree) edges: child -> parent, i.e. a span receives from its (one or two) children;
    * contextual edges (``contextual=True``): word ``t`` receives from the sibling of its level-``l``
      ancestor for ``l = 0 .. D - 1``. These ``<= D`` nodes partition the rest of the sentence exactly, so
      every word sees the whole sentence in one hop at a resolution that coarsens with distance (BPT's
      multi-scale context with ``k = 1``);
    * self-loops on every word and span (``self_loops=True``).

    With ``contextual=False`` and without self-loops the edges are those of a rooted binary tree pointing to
    the root; for ``L = 2^D`` it is ``networkx.balanced_tree(2, D)`` with edges oriented child -> parent.

    Args:
        batch / ptr / lengths / num_nodes: the batch of sentences (see :func:`sentence_ptr`).
        contextual: add the word <- ancestor-sibling edges.
        self_loops: add ``i -> i`` for every node.

    Returns:
        A :class:`PartitionTree` (edges, extended node count and batch, span ranges, levels) whose
        :meth:`PartitionTree.extend` builds the features of the span nodes.
    """
    ptr = sentence_ptr(batch, ptr=ptr, lengths=lengths, num_nodes=num_nodes)
    device = ptr.device
    sizes = ptr.diff().tolist()
    num_words = int(ptr[-1])
    node_batch, starts, ends, levels = [], [], [], []
    src, dst = [], []
    next_id = num_words
    for g, length in enumerate(sizes):
        offset = int(ptr[g])
        # ids[l][m] = node id of span m at level l; level 0 = the words
        ids = [list(range(offset, offset + length))]
        level = 0
        while len(ids[-1]) > 1:
            level += 1
            count = len(ids[-1])
            parents = list(range(next_id, next_id + (count + 1) // 2))
            next_id += len(parents)
            for m, parent in enumerate(parents):
                node_batch.append(g)
                starts.append(offset + m * 2**level)
                ends.append(offset + min((m + 1) * 2**level, length))
                levels.append(level)
                for child in ids[-1][2 * m : 2 * m + 2]:  # affiliated edges child -> parent
                    src.append(child)
                    dst.append(parent)
            ids.append(parents)
        if contextual:
            for t in range(length):
                for lvl in range(len(ids) - 1):  # siblings of the ancestors below the root
                    sibling = (t >> lvl) ^ 1
                    if sibling < len(ids[lvl]):
                        src.append(ids[lvl][sibling])
                        dst.append(offset + t)
    total = next_id
    edge_index = torch.tensor([src, dst], dtype=torch.long, device=device).view(2, -1)
    if self_loops:
        edge_index = torch.cat([edge_index, _self_loops(total, device)], dim=1)
    word_graph, _ = _local_positions(ptr)
    words = torch.arange(num_words, device=device)
    tensor = lambda values: torch.tensor(values, dtype=torch.long, device=device)  # noqa: E731
    return PartitionTree(
        edge_index=_sort_and_dedup(edge_index, total),
        num_words=num_words,
        num_nodes=total,
        batch=torch.cat([word_graph, tensor(node_batch)]),
        span_start=torch.cat([words, tensor(starts)]),
        span_end=torch.cat([words + 1, tensor(ends)]),
        level=torch.cat([torch.zeros_like(words), tensor(levels)]),
    )
