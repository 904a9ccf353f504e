"""Conversions into the two graph forms every layer accepts (explicit ``edge_index`` or a block structure)."""

from __future__ import annotations

from typing import Any, Union

import torch
from torch import Tensor

from graphformer.graphs.structure import BlockStructure
from graphformer.graphs.validation import check_edge_index

#: What a layer accepts as its graph argument.
Graph = Union[Tensor, BlockStructure]


def as_graph(graph: Any, num_nodes: int, device: torch.device | None = None, name: str = "edge_index") -> Graph:
    """Validate a layer's graph argument against ``num_nodes`` nodes.

    Returns an int64 ``edge_index`` ``[2, E]`` or a :class:`BlockStructure` on ``device``. Raises a
    ``TypeError``/``ValueError`` naming ``name`` when the graph does not fit the node features.
    """
    if isinstance(graph, BlockStructure):
        if graph.num_nodes != num_nodes:
            raise ValueError(
                f"`{name}` describes {graph.num_nodes} nodes but `x` has {num_nodes} rows; "
                "build the structure from the same batch as the features"
            )
        if device is not None and graph.device != device:
            graph = graph.to(device)
        return graph
    if isinstance(graph, Tensor) and device is not None and graph.device != device:  # before reading values
        raise ValueError(f"`{name}` is on {graph.device} but `x` is on {device}; move both to the same device")
    return check_edge_index(graph, num_nodes, name)


def from_networkx(graph: Any) -> Tensor:
    """``edge_index`` ``[2, E]`` of a networkx graph, nodes numbered in ``graph.nodes`` order.

    Undirected graphs give both directions of every edge (as PyG's ``from_networkx`` does).
    """
    import networkx as nx

    if not isinstance(graph, nx.Graph):
        raise TypeError(f"`graph` must be a networkx graph, got {type(graph).__name__}")
    position = {node: k for k, node in enumerate(graph.nodes)}
    edges = [(position[u], position[v]) for u, v in graph.edges]
    if not graph.is_directed():
        edges += [(v, u) for u, v in edges if u != v]
    if not edges:
        return torch.empty(2, 0, dtype=torch.long)
    edge_index = torch.tensor(edges, dtype=torch.long).t()
    order = torch.argsort(edge_index[1] * graph.number_of_nodes() + edge_index[0])
    return edge_index[:, order].contiguous()


def batch_from_networkx(graphs: Any) -> tuple[Tensor, Tensor]:
    """Batch several networkx graphs into one ``(edge_index [2, E], batch [N])``, as a PyG ``Batch`` would.

    Graph ``g``'s nodes get ids ``ptr[g] .. ptr[g + 1] - 1`` in ``graph.nodes`` order; each graph's edges are
    those of :func:`from_networkx`, shifted by ``ptr[g]``.
    """
    graphs = list(graphs)
    if not graphs:
        raise ValueError("`graphs` is empty; give at least one networkx graph")
    edges, batch, offset = [], [], 0
    for g, graph in enumerate(graphs):
        edges.append(from_networkx(graph) + offset)
        batch.append(torch.full((graph.number_of_nodes(),), g, dtype=torch.long))
        offset += graph.number_of_nodes()
    return torch.cat(edges, dim=1), torch.cat(batch)


def to_networkx(edge_index: Tensor, num_nodes: int, weights: Tensor | None = None) -> Any:
    """A ``networkx.DiGraph`` with nodes ``0 .. num_nodes - 1`` and an edge ``j -> i`` per column of ``edge_index``.

    With ``weights`` ``[E]`` (e.g. one head's attention weights) each edge gets a ``weight`` attribute.
    """
    import networkx as nx

    edge_index = check_edge_index(edge_index, num_nodes)
    graph = nx.DiGraph()
    graph.add_nodes_from(range(num_nodes))
    if weights is None:
        graph.add_edges_from(edge_index.t().tolist())
    else:
        if weights.dim() != 1 or weights.numel() != edge_index.size(1):
            raise ValueError(f"`weights` must have shape [E={edge_index.size(1)}], got {tuple(weights.shape)}")
        graph.add_weighted_edges_from(
            (j, i, w) for (j, i), w in zip(edge_index.t().tolist(), weights.tolist())
        )
    return graph
