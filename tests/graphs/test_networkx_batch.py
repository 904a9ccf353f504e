"""batch_from_networkx / to_networkx against networkx and PyG."""

from __future__ import annotations

import networkx as nx
import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.utils import from_networkx as pyg_from_networkx

from graphformer.graphs import batch_from_networkx, from_networkx, to_networkx


def edge_set(edge_index):
    return {(int(j), int(i)) for j, i in edge_index.t()}


GRAPHS = [
    [nx.path_graph(4)],
    [nx.path_graph(3), nx.complete_graph(4), nx.star_graph(3)],
    [nx.DiGraph([(0, 1), (1, 2), (2, 0)]), nx.empty_graph(2), nx.cycle_graph(5)],
]


@pytest.mark.parametrize("graphs", GRAPHS)
def test_batch_from_networkx_matches_pyg_batch(graphs):
    edge_index, batch = batch_from_networkx(graphs)
    expected = Batch.from_data_list([pyg_from_networkx(g) for g in graphs])
    assert torch.equal(batch, expected.batch)
    assert edge_set(edge_index) == edge_set(expected.edge_index)
    assert edge_index.size(1) == expected.edge_index.size(1)


@pytest.mark.parametrize("graph", [nx.path_graph(5), nx.complete_graph(4), nx.DiGraph([(0, 2), (2, 1)])])
def test_to_networkx_round_trip(graph):
    edge_index = from_networkx(graph)
    back = to_networkx(edge_index, graph.number_of_nodes())
    relabelled = nx.convert_node_labels_to_integers(graph)  # from_networkx numbers nodes in graph.nodes order
    expected = relabelled if graph.is_directed() else relabelled.to_directed()
    assert set(back.edges) == set(expected.edges)
    assert back.number_of_nodes() == graph.number_of_nodes()


def test_to_networkx_weights_and_errors():
    edge_index = torch.tensor([[0, 1], [1, 0]])
    graph = to_networkx(edge_index, 2, weights=torch.tensor([0.25, 0.75]))
    assert graph[0][1]["weight"] == 0.25 and graph[1][0]["weight"] == 0.75
    with pytest.raises(ValueError, match="weights"):
        to_networkx(edge_index, 2, weights=torch.ones(3))
    with pytest.raises(ValueError, match="empty"):
        batch_from_networkx([])
