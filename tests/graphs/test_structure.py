import networkx as nx
import pytest
import torch
from torch_geometric.data import Batch, Data

from graphformer.graphs import causal, fully_connected, window
from graphformer.graphs.sequence import Dilated
from graphformer.graphs.structure import BlockStructure

LENGTHS = [[4], [3, 1, 5], [2, 0, 3]]


def _batch(lengths):
    return torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))


def _edge_set(edge_index):
    return set(map(tuple, edge_index.t().tolist()))


def _expected(lengths, rule):
    edges, start = set(), 0
    for length in lengths:
        for i in range(length):
            for j in range(length):
                if rule(i, j):
                    edges.add((start + j, start + i))
        start += length
    return edges


@pytest.mark.parametrize("lengths", LENGTHS)
@pytest.mark.parametrize(
    "make, rule",
    [
        (fully_connected, lambda i, j: True),
        (causal, lambda i, j: j <= i),
        (lambda b: window(b, 1), lambda i, j: abs(i - j) <= 1),
        (lambda b: window(b, 0), lambda i, j: i == j),
    ],
)
def test_materialised_edges_follow_the_rule(lengths, make, rule):
    structure = make(_batch(lengths))
    edge_index = structure.to_edge_index()
    assert _edge_set(edge_index) == _expected(lengths, rule)
    assert edge_index.size(1) == len(_expected(lengths, rule)) == structure.num_edges
    # sorted by target, then source (CSR order)
    key = edge_index[1] * 1000 + edge_index[0]
    assert torch.equal(key, key.sort().values)


@pytest.mark.parametrize("n", [1, 2, 6])
def test_fully_connected_is_networkx_complete_graph_with_self_loops(n):
    graph = nx.complete_graph(n, create_using=nx.DiGraph)
    graph.add_edges_from((i, i) for i in range(n))
    assert _edge_set(fully_connected(num_nodes=n).to_edge_index()) == set(graph.edges)


def test_batch_ptr_and_pyg_batch_agree():
    lengths = [3, 1, 5]
    batch = _batch(lengths)
    ptr = torch.tensor([0, 3, 4, 9])
    data = Batch.from_data_list([Data(x=torch.randn(n, 2)) for n in lengths])
    reference = fully_connected(batch).to_edge_index()
    assert torch.equal(fully_connected(ptr=ptr).to_edge_index(), reference)
    assert torch.equal(fully_connected(data).to_edge_index(), reference)
    assert torch.equal(fully_connected(batch).batch, batch)
    single = Data(x=torch.randn(4, 2))
    assert fully_connected(single).num_edges == 16


def test_structure_does_not_store_edges():
    structure = fully_connected(torch.zeros(10_000, dtype=torch.long))
    assert structure.num_edges == 100_000_000  # counted, never materialised
    assert structure.ptr.numel() == 2


def test_empty_structure():
    structure = fully_connected(torch.empty(0, dtype=torch.long))
    assert structure.num_nodes == 0 and structure.num_edges == 0
    assert structure.to_edge_index().shape == (2, 0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"batch": torch.tensor([1, 0])}, ValueError, "sorted"),
        ({"batch": torch.tensor([0.0, 1.0])}, TypeError, "integer"),
        ({"batch": torch.tensor([[0, 1]])}, ValueError, "1-D"),
        ({"batch": torch.tensor([0, 0]), "num_nodes": 3}, ValueError, "entries"),
        ({"ptr": torch.tensor([1, 3])}, ValueError, "start at 0"),
        ({}, ValueError, "batch"),
    ],
)
def test_bad_batch(kwargs, error, match):
    with pytest.raises(error, match=match):
        fully_connected(**kwargs)


def test_window_radius_must_be_non_negative():
    with pytest.raises(ValueError, match="radius"):
        window(_batch([3]), -1)


def test_repr():
    assert repr(window(_batch([3, 2]), 2)) == "SlidingWindow(num_graphs=2, num_nodes=5, radius=2)"


@pytest.mark.parametrize("sizes", [[5, 1, 0, 9, 3], [20], []])
@pytest.mark.parametrize("make", [lambda ptr, r: window(ptr=ptr, radius=r), lambda ptr, r: Dilated(r, 2, ptr=ptr)],
                         ids=["window", "dilated"])
@pytest.mark.parametrize("radius", [0, 1, 3, 30])
def test_banded_edge_index_equals_generic(sizes, make, radius):
    """The O(N r) materialisation and count of windows equal the generic O(L^2) ones."""
    ptr = torch.tensor([0, *sizes]).cumsum(0)
    structure = make(ptr, radius)
    reference = BlockStructure.to_edge_index(structure)
    assert torch.equal(structure.to_edge_index(), reference)
    assert structure.num_edges == reference.size(1) == BlockStructure.num_edges.fget(structure)
