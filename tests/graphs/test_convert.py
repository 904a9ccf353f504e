import networkx as nx
import pytest
import torch

from graphformer.graphs import as_graph, check_edge_index, from_networkx, fully_connected


def test_from_networkx_undirected_gives_both_directions():
    graph = nx.karate_club_graph()
    edge_index = from_networkx(graph)
    assert edge_index.size(1) == 2 * graph.number_of_edges()
    assert set(map(tuple, edge_index.t().tolist())) == {
        *graph.edges, *((v, u) for u, v in graph.edges)
    }


def test_from_networkx_directed_and_relabelled():
    graph = nx.DiGraph([("a", "b"), ("b", "c")])
    assert from_networkx(graph).tolist() == [[0, 1], [1, 2]]
    assert from_networkx(nx.empty_graph(3)).shape == (2, 0)


@pytest.mark.parametrize(
    "edge_index, error, match",
    [
        ([[0, 1], [1, 0]], TypeError, "LongTensor"),
        (torch.tensor([[0.0, 1.0], [1.0, 0.0]]), TypeError, "integer dtype"),
        (torch.tensor([0, 1, 2]), ValueError, r"shape \[2, num_edges\]"),
        (torch.tensor([[0, 1], [1, 0], [0, 0]]), ValueError, r"shape \[2, num_edges\]"),
        (torch.tensor([[0, -1], [1, 0]]), ValueError, "negative"),
        (torch.tensor([[0, 3], [1, 0]]), ValueError, "index 3 but there are only 3 nodes"),
    ],
)
def test_check_edge_index_errors(edge_index, error, match):
    with pytest.raises(error, match=match):
        check_edge_index(edge_index, 3)


def test_check_edge_index_accepts_int32_and_empty():
    assert check_edge_index(torch.tensor([[0], [1]], dtype=torch.int32), 2).dtype == torch.long
    assert check_edge_index(torch.empty(2, 0, dtype=torch.long), 0).shape == (2, 0)


def test_as_graph_checks_structure_size():
    with pytest.raises(ValueError, match="describes 4 nodes"):
        as_graph(fully_connected(num_nodes=4), 5)
