"""Shortest paths between all pairs of nodes of every graph of a batch, by one vectorised BFS.

Distances come out in the flat pair layout of :mod:`graphformer.graphs.pairs` (``[P]``, ``P = sum_g L_g^2``,
graph ``g``'s ``[L_g, L_g]`` block row-major with rows = targets ``i`` and columns = sources ``j``), so they
feed :class:`~graphformer.structural.SpatialBias` and batch by concatenation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from graphformer.graphs.pairs import graph_of_nodes, pair_index, pair_offsets
from graphformer.graphs.validation import check_edge_index

UNREACHABLE = -1
"""Distance code of a pair with no path (of at most ``max_distance`` edges, when that is given)."""


def batch_ptr(
    batch: Tensor | Any | None = None,
    ptr: Tensor | None = None,
    num_nodes: int | None = None,
    edge_index: Tensor | None = None,
) -> Tensor:
    """``ptr`` ``[B + 1]`` of a batch given as a ``batch`` vector, a PyG ``Data``/``Batch``, ``ptr`` or (one graph)
    ``num_nodes``; with none of them, one graph of ``edge_index.max() + 1`` nodes."""
    from graphformer.graphs.structure import FullyConnected  # reads batch / ptr / Data with its checks

    if batch is None and ptr is None and num_nodes is None:
        if edge_index is None:
            raise ValueError("give `batch`, `ptr` or `num_nodes` to describe the graph(s)")
        num_nodes = int(edge_index.max()) + 1 if edge_index.numel() > 0 else 0
    return FullyConnected(batch, ptr=ptr, num_nodes=num_nodes).ptr


def shortest_paths(
    edge_index: Tensor,
    batch: Tensor | Any | None = None,
    ptr: Tensor | None = None,
    num_nodes: int | None = None,
    max_distance: int | None = None,
    return_paths: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Shortest-path distance :math:`d(j \to i)` (number of edges) for every ordered pair of nodes of each graph.

    Edges are directed, ``j -> i`` for a column ``(j, i)`` of ``edge_index`` (PyG convention; store both
    directions for an undirected graph). One breadth-first search from *every* node at once: the frontier is a
    set of ``(source, node)`` pairs, expanded along the out-edges of ``node`` with index operations, keeping
    pairs not seen before; no Python loop over nodes or pairs, only over the ``<= max_distance`` levels.

    Args:
        edge_index: ``[2, E]``; every edge must join two nodes of the same graph.
        batch, ptr, num_nodes: the batch (a PyG ``batch`` vector or ``Data``/``Batch``, ``ptr`` ``[B + 1]``,
            or the size of one graph; default one graph of ``edge_index.max() + 1`` nodes).
        max_distance: stop the search after this many levels; farther pairs are reported as
            :data:`UNREACHABLE` (``-1``), like pairs with no path. ``None``: search to the end.
        return_paths: also return the edges of one shortest path per pair.

    Returns:
        ``distance`` ``[P]`` int64 in the flat pair layout (pair ``(i, j)`` of graph ``g`` at
        ``pair_ptr[g] + (i - ptr[g]) L_g + (j - ptr[g])``): ``0`` on the diagonal, ``-1`` if ``i`` cannot be
        reached from ``j``. With ``return_paths``, also ``path`` ``[P, W]`` int64: the ids (columns of
        ``edge_index``) of the edges of one shortest path *from source* ``j`` *to target* ``i``, in walking order
        (``path[p, 0]`` leaves ``j``, ``path[p, d - 1]`` enters ``i``), padded with ``-1``; ``W`` is
        ``max_distance`` when given, else the largest distance found. Among equally short paths the one whose
        last edge has the smallest id is chosen, recursively, so the choice does not depend on batching.
    """
    ptr = batch_ptr(batch, ptr, num_nodes, edge_index if isinstance(edge_index, Tensor) else None)
    if max_distance is not None and (not isinstance(max_distance, int) or max_distance < 0):
        raise ValueError(f"`max_distance` must be a non-negative int or None, got {max_distance!r}")
    num_nodes = int(ptr[-1])
    edge_index = check_edge_index(edge_index, num_nodes)
    device = edge_index.device
    ptr = ptr.to(device)
    pair_index(edge_index, ptr)  # raises ValueError (naming edge_index) for an edge between graphs
    num_edges = edge_index.size(1)
    source, target = edge_index[0], edge_index[1]

    # per node: where its graph's nodes and pairs start, and the graph's size
    graph = graph_of_nodes(ptr, num_nodes)
    start, size = ptr[graph], ptr.diff()[graph]  # [N]
    pair_start = pair_offsets(ptr)[graph]  # [N]
    num_pairs = int(pair_offsets(ptr)[-1])

    def pair_id(node: Tensor, root: Tensor) -> Tensor:  # pair (target node, source root) in the flat layout
        return pair_start[node] + (node - start[node]) * size[node] + (root - start[node])

    # out-edges of every node, CSR over sources
    order = torch.argsort(source, stable=True)  # [E] edge ids grouped by source
    degree = torch.bincount(source, minlength=num_nodes)  # [N]
    row_start = degree.cumsum(0) - degree  # [N]

    distance = torch.full((num_pairs,), UNREACHABLE, dtype=torch.long, device=device)
    parent = torch.full((num_pairs,), num_edges, dtype=torch.long, device=device)  # last edge of the path
    nodes = torch.arange(num_nodes, device=device)
    distance[pair_id(nodes, nodes)] = 0
    frontier_node, frontier_root = nodes, nodes  # [F]: pairs (root -> node) reached at the current level
    level = 0
    while frontier_node.numel() > 0 and (max_distance is None or level < max_distance):
        level += 1
        counts = degree[frontier_node]  # [F]
        total = int(counts.sum())
        if total == 0:
            break
        owner = torch.repeat_interleave(torch.arange(counts.numel(), device=device), counts, output_size=total)
        offset = torch.arange(total, device=device) - (counts.cumsum(0) - counts)[owner]
        edge = order[row_start[frontier_node][owner] + offset]  # [C] candidate edges u -> v
        node, root = target[edge], frontier_root[owner]  # [C]
        pid = pair_id(node, root)
        new = distance[pid] == UNREACHABLE
        edge, node, root, pid = edge[new], node[new], root[new], pid[new]
        distance[pid] = level
        parent.scatter_reduce_(0, pid, edge, reduce="amin")
        # one candidate per new pair: (root, edge) is unique within a level, so exactly one carries the minimum
        keep = parent[pid] == edge
        frontier_node, frontier_root = node[keep], root[keep]

    if not return_paths:
        return distance
    if max_distance is not None:
        width = max_distance
    else:
        width = max(int(distance.max()), 0) if num_pairs > 0 else 0
    path = torch.full((num_pairs, width), -1, dtype=torch.long, device=device)
    pid = (distance > 0).nonzero().view(-1)  # [Q] pairs with a path of at least one edge
    steps = distance[pid]  # [Q]
    # the source (root) of each pair, from its flat position
    graph_of_pair = torch.searchsorted(pair_offsets(ptr), pid, right=True) - 1
    graph_size, graph_start = ptr.diff()[graph_of_pair], ptr[graph_of_pair]
    root = graph_start + (pid - pair_offsets(ptr)[graph_of_pair]) % graph_size
    row, position, current = pid, steps - 1, pid
    while row.numel() > 0:  # walk back from the target, one edge per step (at most `width` steps)
        edge = parent[current]
        path[row, position] = edge
        more = position > 0
        previous = source[edge][more]
        row, position, root = row[more], position[more] - 1, root[more]
        current = pair_id(previous, root)
    return distance, path


def batch_path_edges(path: Tensor, data: Any) -> Tensor:
    """Paths stored per graph (edge ids of the graph's own ``edge_index``, as
    :class:`~graphformer.structural.ShortestPathDistance` stores them) as ids into the batch's ``edge_index``.

    PyG concatenates such an attribute without an offset (its name has no ``index``); this adds each graph's
    first edge id to its pairs' path entries (padding ``-1`` stays). ``data`` is the PyG ``Batch`` (its edges
    grouped by graph, in graph order, as ``Batch.from_data_list`` makes them). A single ``Data`` is returned
    unchanged.

    Shapes:
        - path: ``[P, W]``; output: ``[P, W]``
    """
    ptr = batch_ptr(data)
    edge_index = data.edge_index
    num_graphs = ptr.numel() - 1
    if num_graphs <= 1:
        return path
    edge_graph = graph_of_nodes(ptr.to(edge_index.device), int(ptr[-1]))[edge_index[0]]  # [E]
    if edge_graph.numel() > 1 and bool((edge_graph[1:] < edge_graph[:-1]).any()):
        raise ValueError("`data.edge_index` must list edges grouped by graph in graph order, as PyG's Batch does")
    edges = torch.bincount(edge_graph, minlength=num_graphs)
    edge_start = edges.cumsum(0) - edges  # [B]
    pair_ptr = pair_offsets(ptr.to(path.device))
    if path.size(0) != int(pair_ptr[-1]):
        raise ValueError(f"`path` has {path.size(0)} rows but the batch has {int(pair_ptr[-1])} node pairs")
    pairs = pair_ptr.diff()
    offset = torch.repeat_interleave(edge_start.to(path.device), pairs, output_size=path.size(0))  # [P]
    return torch.where(path >= 0, path + offset.view(-1, 1), path)
