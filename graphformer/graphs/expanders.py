r"""Random expander graphs per graph of a batch: the sparse global attention graph of Exphormer (Shirzad et al.,
"Exphormer: Sparse Transformers for Graphs", ICML 2023).

An expander is sparse (:math:`d` edges per node) yet well connected: its spectral gap keeps every node a few hops
from every other, so attention over ``union(local graph, expander, virtual nodes)`` mixes information globally in
:math:`O(N d)` edges instead of :math:`\sum_g L_g^2`. The result is an explicit ``edge_index``, so it runs on
graphformer's memory-lean sparse attention path (:class:`~graphformer.nn.AttentionConv`,
:class:`~graphformer.GraphTransformerLayer`); virtual nodes come from
:func:`~graphformer.graphs.with_virtual_nodes`.

**Construction** (:func:`expander`): the union of :math:`d/2` random Hamiltonian cycles of each graph, every edge in
both directions. Exphormer joins each node :math:`i` to :math:`\pi(i)` for random permutations :math:`\pi`, which
also creates self-loops; a cycle through all nodes never does, and every node gets exactly two neighbours from
each cycle. The union of random Hamiltonian cycles is a standard model of random regular graphs (contiguous with
the uniform random :math:`d`-regular graph; Kim & Wormald 2001), which are expanders with high probability
(Friedman 2008: second adjacency eigenvalue close to :math:`2\sqrt{d - 1}`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from graphformer.graphs.sequence import _sort_edges, sentence_ptr


def _check_degree(degree: Any) -> int:
    if isinstance(degree, bool) or not isinstance(degree, int):
        raise TypeError(f"`degree` must be an int, got {type(degree).__name__} {degree!r}")
    if degree < 2 or degree % 2 != 0:
        raise ValueError(
            f"`degree` must be an even number >= 2 (the graph is the union of degree / 2 random Hamiltonian cycles), "
            f"got {degree}"
        )
    return degree


def _cycle_edges(ptr: Tensor, graph: Tensor, degree: int, generator: torch.Generator | None) -> Tensor:
    """Both directions of ``degree / 2`` random Hamiltonian cycles through the nodes of every graph with more than
    ``degree`` nodes: ``[2, degree * N_large]``."""
    sizes = ptr.diff()
    nodes = torch.nonzero((sizes > degree)[graph]).view(-1)  # [N'] nodes of the large graphs, graph by graph
    if nodes.numel() == 0:
        return torch.empty(2, 0, dtype=torch.long, device=ptr.device)
    owner = graph[nodes]  # [N'] sorted graph id
    keys = torch.rand(degree // 2, nodes.numel(), generator=generator, device=ptr.device)  # [K, N']
    order = keys.argsort(dim=1)  # a random order of all positions per cycle...
    order = order.gather(1, owner[order].argsort(dim=1, stable=True))  # ...regrouped by graph: random within each
    cycle = nodes[order]  # [K, N'] node at position t of cycle k; positions of graph g = its slots in `nodes`
    position = torch.arange(nodes.numel(), device=ptr.device)
    first = torch.searchsorted(owner, owner)  # [N'] first position of each position's graph
    successor = first + (position - first + 1) % sizes[owner]  # [N'] next position along the cycle
    source, target = cycle.reshape(-1), cycle[:, successor].reshape(-1)
    return torch.cat([torch.stack([source, target]), torch.stack([target, source])], dim=1)


def _complete_edges(ptr: Tensor, degree: int) -> Tensor:
    """All ordered pairs of distinct nodes of every graph with at most ``degree`` nodes (no self-loops)."""
    sizes = ptr.diff()
    pair_counts = torch.where(sizes <= degree, sizes * sizes, torch.zeros_like(sizes))  # [B]
    total = int(pair_counts.sum())
    graph = torch.repeat_interleave(torch.arange(sizes.numel(), device=ptr.device), pair_counts)  # [P]
    local = torch.arange(total, device=ptr.device) - (torch.cumsum(pair_counts, 0) - pair_counts)[graph]
    length = sizes[graph]
    target, source = ptr[graph] + local // length, ptr[graph] + local % length
    keep = target != source
    return torch.stack([source[keep], target[keep]])


def expander(
    degree: int,
    batch: Tensor | Any | None = None,
    *,
    ptr: Tensor | None = None,
    num_nodes: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""A random ``degree``-regular expander on the nodes of every graph of a batch (Exphormer's expander graph).

    Every graph with :math:`L > d` nodes gets the union of :math:`d / 2` random Hamiltonian cycles through its
    nodes, each edge in both directions: every node has exactly :math:`d` incoming and :math:`d` outgoing edges
    and no self-loop. Two cycles may share a pair of nodes; that edge then appears twice (a multigraph, so that
    degrees stay exactly :math:`d`; :func:`~graphformer.graphs.union` keeps it once). A graph with
    :math:`L \le d` nodes gets the complete graph without self-loops (:math:`L - 1` neighbours each). No edge
    joins two graphs. The self-loops of attention come from the local graph (or
    :func:`~graphformer.graphs.with_virtual_nodes`).

    Vectorised over the batch: one sort per cycle for all graphs, no loop over graphs or nodes. Deterministic
    given ``generator`` (on the batch's device).

    Args:
        degree: :math:`d`, even, at least 2.
        batch / ptr / num_nodes: the batch of graphs (a sorted ``batch`` ``[N]`` or PyG ``Data``/``Batch``,
            offsets ``ptr`` ``[B + 1]``, or ``num_nodes`` of one graph).
        generator: the random generator (default: torch's global one).

    Shapes:
        - output: ``edge_index`` ``[2, E]``, sorted by target then source; :math:`E = d N` when every graph has
          more than :math:`d` nodes.

    Example::

        >>> ptr = torch.tensor([0, 10, 13])   # a graph of 10 nodes and one of 3
        >>> edge_index = gf.graphs.expander(4, ptr=ptr, generator=torch.Generator().manual_seed(0))
        >>> torch.bincount(edge_index[1], minlength=13)   # 4 in-edges each; the 3-node graph is complete
        tensor([4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 2, 2, 2])
    """
    degree = _check_degree(degree)
    ptr = sentence_ptr(batch, ptr=ptr, num_nodes=num_nodes)
    if generator is not None and generator.device.type != ptr.device.type:
        raise ValueError(
            f"`generator` is on {generator.device} but the batch is on {ptr.device}; "
            f"use torch.Generator(device={str(ptr.device)!r})"
        )
    sizes = ptr.diff()
    graph = torch.repeat_interleave(torch.arange(sizes.numel(), device=ptr.device), sizes)  # [N]
    edges = torch.cat([_cycle_edges(ptr, graph, degree, generator), _complete_edges(ptr, degree)], dim=1)
    return _sort_edges(edges, int(ptr[-1]))
