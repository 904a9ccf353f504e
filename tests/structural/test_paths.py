"""shortest_paths against networkx, on batches with directed graphs, isolated nodes and disconnected pairs."""

from __future__ import annotations

import networkx as nx
import pytest
import torch

from graphformer.graphs.pairs import pair_offsets
from graphformer.structural import shortest_paths

from .helpers import random_batch

SIZES = [[5, 1, 7, 3], [1], [6], [0, 4, 0], [12, 9, 2, 1, 8]]


def networkx_distances(batch, max_distance=None) -> torch.Tensor:
    """The oracle: flat [P] distances from networkx, -1 where there is no path (of at most max_distance edges)."""
    out = []
    ptr = batch.ptr
    for g in range(batch.num_graphs):
        start, size = int(ptr[g]), int(ptr[g + 1] - ptr[g])
        graph = nx.MultiDiGraph()
        graph.add_nodes_from(range(size))
        edges = batch.edge_index[:, (batch.edge_index[0] >= start) & (batch.edge_index[0] < start + size)] - start
        graph.add_edges_from(edges.t().tolist())
        lengths = dict(nx.all_pairs_shortest_path_length(graph, cutoff=max_distance))
        block = torch.full((size, size), -1, dtype=torch.long)
        for j, targets in lengths.items():  # j = source
            for i, d in targets.items():
                block[i, j] = d
        out.append(block.reshape(-1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def check_paths(distance, path, edge_index, ptr):
    """Every path is a walk of `distance` edges from source j to target i, padded with -1."""
    pair_ptr = pair_offsets(ptr)
    for g in range(ptr.numel() - 1):
        start, size = int(ptr[g]), int(ptr[g + 1] - ptr[g])
        for i in range(size):
            for j in range(size):
                p = int(pair_ptr[g]) + i * size + j
                d = int(distance[p])
                row = path[p].tolist()
                if d <= 0:
                    assert all(e == -1 for e in row)
                    continue
                assert all(e == -1 for e in row[d:])
                edges = row[:d]
                assert min(edges) >= 0
                node = start + j
                for e in edges:
                    assert int(edge_index[0, e]) == node
                    node = int(edge_index[1, e])
                assert node == start + i


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("directed", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_distances_match_networkx(sizes, directed, seed):
    batch = random_batch(sizes, seed=seed, directed=directed)
    distance, path = shortest_paths(batch.edge_index, batch.batch, num_nodes=batch.num_nodes, return_paths=True)
    assert torch.equal(distance, networkx_distances(batch))
    assert path.size(1) == max(int(distance.max()), 0) if distance.numel() else True
    check_paths(distance, path, batch.edge_index, batch.ptr)


@pytest.mark.parametrize("max_distance", [0, 1, 2, 3])
def test_max_distance_truncates(max_distance):
    batch = random_batch([9, 1, 6], seed=3, density=0.12)
    distance, path = shortest_paths(batch.edge_index, ptr=batch.ptr, max_distance=max_distance, return_paths=True)
    assert torch.equal(distance, networkx_distances(batch, max_distance))
    assert path.shape == (distance.numel(), max_distance)
    check_paths(distance, path, batch.edge_index, batch.ptr)


def test_empty_edges_and_single_graph_forms():
    edge_index = torch.zeros(2, 0, dtype=torch.long)
    distance = shortest_paths(edge_index, num_nodes=3)
    assert torch.equal(distance.view(3, 3), torch.eye(3, dtype=torch.long) - 1)
    chain = torch.tensor([[0, 1, 2], [1, 2, 3]])
    distance, path = shortest_paths(chain, return_paths=True)  # one graph of max + 1 nodes
    assert distance.view(4, 4)[3, 0] == 3 and distance.view(4, 4)[0, 3] == -1
    assert path.view(4, 4, 3)[3, 0].tolist() == [0, 1, 2]
    batch = random_batch([4, 3])
    assert torch.equal(shortest_paths(batch.edge_index, batch), shortest_paths(batch.edge_index, ptr=batch.ptr))


def test_paths_choice_independent_of_batching():
    batch = random_batch([7, 5, 6], seed=5, density=0.4)
    _, path = shortest_paths(batch.edge_index, batch, return_paths=True)
    pair_ptr = pair_offsets(batch.ptr)
    edge_start = 0
    for g, data in enumerate(batch.to_data_list()):
        _, own = shortest_paths(data.edge_index, num_nodes=data.num_nodes, return_paths=True)
        block = path[int(pair_ptr[g]): int(pair_ptr[g + 1]), : own.size(1)]
        assert torch.equal(block, torch.where(own >= 0, own + edge_start, own))
        edge_start += data.edge_index.size(1)


def test_errors():
    with pytest.raises(ValueError, match="edge_index"):
        shortest_paths(torch.tensor([[0], [3]]), ptr=torch.tensor([0, 2, 4]))  # an edge between graphs
    with pytest.raises(ValueError, match="max_distance"):
        shortest_paths(torch.tensor([[0], [1]]), max_distance=-1)
    with pytest.raises(ValueError, match="edge_index"):
        shortest_paths(torch.tensor([[0, 1, 2]]), num_nodes=3)
