"""Random expander graphs per graph of a batch: regularity (networkx), symmetry, connectivity and spectral gap,
no edge across graphs, determinism, and bad input."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data

from graphformer.graphs import expander

SIZES = [50, 3, 120, 9, 1, 0, 4, 5]


def _ptr(sizes: list[int]) -> torch.Tensor:
    return torch.tensor([0, *sizes]).cumsum(0)


def _multigraph(edge_index: torch.Tensor, nodes: range) -> nx.MultiGraph:
    """The undirected multigraph: one edge per (source < target) pair of the symmetric edge list."""
    graph = nx.MultiGraph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from((int(j), int(i)) for j, i in edge_index.t() if j < i)
    return graph


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("degree", [2, 4, 6])
def test_every_graph_is_regular_symmetric_and_without_self_loops(degree):
    ptr = _ptr(SIZES)
    edge_index = expander(degree, ptr=ptr, generator=_gen())
    assert edge_index.dtype == torch.long and edge_index.size(0) == 2
    assert not (edge_index[0] == edge_index[1]).any()
    # symmetric as a multiset of edges: every j -> i has an i -> j, as often
    forward = sorted(map(tuple, edge_index.t().tolist()))
    assert forward == sorted(map(tuple, edge_index.flip(0).t().tolist()))
    # sorted by target, then source
    key = edge_index[1] * ptr[-1] + edge_index[0]
    assert bool((key[1:] >= key[:-1]).all())
    for start, stop in zip(ptr[:-1].tolist(), ptr[1:].tolist()):
        size = stop - start
        inside = (edge_index[1] >= start) & (edge_index[1] < stop)
        graph = _multigraph(edge_index[:, inside], range(start, stop))
        if size > degree:  # d-regular (counted with multiplicity): in- and out-degree d
            assert nx.is_regular(graph) and all(d == degree for _, d in graph.degree())
            out_degree = torch.bincount(edge_index[0][inside] - start, minlength=size)
            assert torch.equal(out_degree, torch.full((size,), degree))
        else:  # small graphs: the complete graph without self-loops
            assert nx.utils.graphs_equal(nx.Graph(graph), nx.complete_graph(range(start, stop)))
            assert graph.number_of_edges() == size * (size - 1) // 2


def test_no_edge_joins_two_graphs_and_sizes_add_up():
    sizes = [7, 30, 2, 11]
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    edge_index = expander(4, batch, generator=_gen(1))
    assert torch.equal(batch[edge_index[0]], batch[edge_index[1]])
    assert edge_index.size(1) == 4 * (7 + 30 + 11) + 2 * 1  # the 2-node graph: one edge each way


@pytest.mark.parametrize("degree,gap", [(4, 0.3), (6, 1.0)])
def test_a_few_hundred_nodes_give_a_connected_expander_with_a_clear_spectral_gap(degree, gap):
    edge_index = expander(degree, num_nodes=300, generator=_gen(2))
    graph = _multigraph(edge_index, range(300))
    assert nx.is_connected(graph)
    adjacency = nx.to_numpy_array(graph)  # multi-edges counted: row sums d
    eigenvalues = np.sort(np.linalg.eigvalsh(adjacency))[::-1]
    assert abs(eigenvalues[0] - degree) < 1e-8
    # second eigenvalue near the Ramanujan bound 2 sqrt(d - 1) (3.46 for d = 4, 4.47 for d = 6), well below d
    assert degree - eigenvalues[1] > gap
    assert eigenvalues[1] < 2 * (degree - 1) ** 0.5 + 0.5


def test_deterministic_given_a_generator_and_random_across_seeds():
    ptr = _ptr(SIZES)
    first = expander(4, ptr=ptr, generator=_gen(5))
    assert torch.equal(first, expander(4, ptr=ptr, generator=_gen(5)))
    assert not torch.equal(first, expander(4, ptr=ptr, generator=_gen(6)))
    torch.manual_seed(0)
    global_rng = expander(4, ptr=ptr)
    torch.manual_seed(0)
    assert torch.equal(global_rng, expander(4, ptr=ptr))


def test_accepts_a_pyg_batch_and_empty_input():
    data = Batch.from_data_list([Data(num_nodes=12), Data(num_nodes=6)])
    edge_index = expander(4, data, generator=_gen())
    assert torch.equal(edge_index, expander(4, ptr=data.ptr, generator=_gen()))
    assert expander(2, ptr=torch.tensor([0])).shape == (2, 0)
    assert expander(2, num_nodes=1).shape == (2, 0)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="`degree` must be an even number"):
        expander(3, num_nodes=10)
    with pytest.raises(ValueError, match="`degree`"):
        expander(0, num_nodes=10)
    with pytest.raises(TypeError, match="`degree` must be an int"):
        expander(4.0, num_nodes=10)
    with pytest.raises(TypeError, match="`degree` must be an int"):
        expander(True, num_nodes=10)
    with pytest.raises(ValueError, match="`batch` must be sorted"):
        expander(2, torch.tensor([1, 1, 0]))
    with pytest.raises(ValueError, match="`ptr` must start at 0"):
        expander(2, ptr=torch.tensor([1, 3]))
    with pytest.raises(ValueError, match="either `batch` or `ptr`"):
        expander(2, torch.tensor([0, 0]), ptr=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="give `batch`, `ptr` or `num_nodes`"):
        expander(2)
    if torch.cuda.is_available():  # pragma: no cover - CPU-only machines
        with pytest.raises(ValueError, match="`generator`"):
            expander(2, num_nodes=5, generator=torch.Generator(device="cuda"))
