"""Tests of graphformer.loader: the plain-torch neighbour sampler behind graphformer's NeighborLoader.

The sampler is checked against its rule (real edges, hop structure, fan-out, uniform draws, exact forward passes
with all neighbours) on Cora and random graphs. Equivalence with PyG's compiled sampler (pyg-lib) is not
tested: pyg-lib cannot be installed here, and the two draw different random numbers anyway.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
import torch
import torch_geometric.loader
import torch_geometric.typing
from torch import nn
from torch_geometric.data import Data, HeteroData
from torch_geometric.sampler import NeighborSampler

import graphformer
from graphformer.loader import NeighborLoader, TorchNeighborSampler
from tests.conftest import random_graph

PLANETOID = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "planetoid"


@pytest.fixture(autouse=True)
def plain_torch(monkeypatch):
    """Test the plain-torch sampler even where pyg-lib or torch-sparse is installed."""
    monkeypatch.setattr(torch_geometric.typing, "WITH_PYG_LIB", False)
    monkeypatch.setattr(torch_geometric.typing, "WITH_TORCH_SPARSE", False)


@pytest.fixture(scope="module")
def cora(tmp_path_factory) -> Data:
    raw = PLANETOID / "Cora" / "raw"
    if not raw.is_dir():
        pytest.skip(f"offline Cora copy not found at {raw} (no downloads in tests)")
    from torch_geometric.datasets import Planetoid

    root = tmp_path_factory.mktemp("planetoid")
    shutil.copytree(raw, root / "Cora" / "raw")  # PyG writes processed/ beside raw/: use a writable copy
    return Planetoid(str(root), "Cora")[0]


def small_graph(seed: int = 0) -> Data:
    """60 nodes, 400 random edges (repeated edges and self-loops possible), the last 2 nodes receive none."""
    edge_index = random_graph(60, 400, seed=seed)
    return Data(x=torch.randn(60, 5, generator=torch.Generator().manual_seed(seed)), edge_index=edge_index,
                num_nodes=60)


@pytest.fixture(params=["random", "cora"])
def graph(request) -> Data:
    return small_graph() if request.param == "random" else request.getfixturevalue("cora")


def check_batch(data: Data, batch: Data, input_nodes: torch.Tensor, num_neighbors: list[int], replace: bool):
    """Every property the sampling rule promises, for one mini-batch."""
    node, edge_index = batch.n_id, batch.edge_index  # [N'], [2, E'] local
    # seeds first, in the order the loader chose them; no node twice (the seeds here are distinct)
    assert torch.equal(node[: batch.batch_size], input_nodes[batch.input_id])
    assert node.unique().numel() == node.numel()
    assert torch.equal(batch.x, data.x[node])
    # e_id maps each sampled edge back to the original edge_index
    assert torch.equal(data.edge_index[:, batch.e_id], node[edge_index])
    # hop structure: the edges of hop h point into the nodes reached at hop h - 1, from nodes reached by hop h
    bounds = [0, *itertools.accumulate(batch.num_sampled_nodes)]
    edge_bounds = [0, *itertools.accumulate(batch.num_sampled_edges)]
    assert len(bounds) == len(num_neighbors) + 2 and edge_bounds[-1] == edge_index.size(1)
    in_degree = torch.bincount(data.edge_index[1], minlength=data.num_nodes)
    for hop, k in enumerate(num_neighbors, start=1):
        source, target = edge_index[:, edge_bounds[hop - 1]: edge_bounds[hop]]
        assert bool((target >= bounds[hop - 1]).all() and (target < bounds[hop]).all())
        assert bool((source < bounds[hop + 1]).all())
        reached = torch.zeros(batch.num_nodes, dtype=torch.bool)
        reached[source] = True
        assert bool(reached[bounds[hop]: bounds[hop + 1]].all())  # every new node is a sampled source
        # fan-out of each node expanded at this hop
        received = torch.bincount(target - bounds[hop - 1], minlength=bounds[hop] - bounds[hop - 1])
        degree = in_degree[node[bounds[hop - 1]: bounds[hop]]]
        if k < 0:
            expected = degree
        elif replace:
            expected = torch.where(degree > 0, k, 0)
        else:
            expected = degree.clamp(max=k)
        assert torch.equal(received, expected)
    if not replace:  # each edge drawn at most once
        assert batch.e_id.unique().numel() == batch.e_id.numel()


@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("num_neighbors", [[3, 2], [-1, -1], [5], [0, 4], [2, -1, 3]])
def test_batches_follow_the_sampling_rule(graph, num_neighbors, replace):
    input_nodes = torch.randperm(graph.num_nodes)[:100]  # distinct seeds
    loader = NeighborLoader(graph, num_neighbors=num_neighbors, input_nodes=input_nodes, batch_size=32,
                            replace=replace, shuffle=True)
    batches = list(loader)
    input_id = torch.cat([batch.input_id for batch in batches])  # positions in input_nodes
    assert torch.equal(input_id.sort().values, torch.arange(input_nodes.numel()))
    for batch in batches:
        check_batch(graph, batch, input_nodes, num_neighbors, replace)


def test_boolean_mask_and_default_input_nodes():
    data = small_graph(1)
    mask = torch.zeros(data.num_nodes, dtype=torch.bool)
    mask[::3] = True
    batch = next(iter(NeighborLoader(data, [2], input_nodes=mask, batch_size=100)))
    assert torch.equal(batch.n_id[: batch.batch_size], mask.nonzero().view(-1))
    batch = next(iter(NeighborLoader(data, [2], batch_size=100)))
    assert torch.equal(batch.n_id[: batch.batch_size], torch.arange(data.num_nodes))


def mean_graph_conv_stack(in_channels: int, num_layers: int) -> nn.ModuleList:
    torch.manual_seed(0)
    return nn.ModuleList(graphformer.GraphConv(in_channels if i == 0 else 16, 16, aggr="mean")
                         for i in range(num_layers))


def forward(layers: nn.ModuleList, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
    for index, layer in enumerate(layers):
        x = layer(x, edge_index)  # [N, 16]
        x = x.relu() if index < len(layers) - 1 else x
    return x


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_all_neighbours_give_the_full_graph_forward_at_the_seeds(graph, num_layers):
    """With num_neighbors=[-1] * L, an L-layer GNN on each mini-batch equals the full-graph GNN at the seeds."""
    layers = mean_graph_conv_stack(graph.num_features, num_layers)
    with torch.no_grad():
        full = forward(layers, graph.x, graph.edge_index)  # [N, 16]
        input_nodes = torch.randperm(graph.num_nodes)[:90]
        for batch in NeighborLoader(graph, [-1] * num_layers, input_nodes=input_nodes, batch_size=30):
            out = forward(layers, batch.x, batch.edge_index)[: batch.batch_size]  # [batch_size, 16]
            torch.testing.assert_close(out, full[batch.n_id[: batch.batch_size]], atol=1e-5, rtol=1e-5)


def hub(degree: int) -> Data:
    """Node 0 receives one edge from each of nodes 1..degree."""
    edge_index = torch.stack([torch.arange(1, degree + 1), torch.zeros(degree, dtype=torch.long)])
    return Data(edge_index=edge_index, num_nodes=degree + 1)


def chi_square(counts: torch.Tensor) -> float:
    expected = counts.sum() / counts.numel()
    return float(((counts - expected) ** 2 / expected).sum())


def test_draws_without_replacement_are_uniform_over_subsets():
    """k = 2 of 6 neighbours: each of the 15 pairs about equally often (chi-square, 14 dof, p ~ 0.001)."""
    trials = 3000
    data = hub(6)
    sampler = TorchNeighborSampler(data, [2], generator=torch.Generator().manual_seed(0))
    out = sampler._sample(torch.zeros(trials, dtype=torch.long))  # 3000 copies of the hub, each drawn apart
    assert out.num_sampled_edges == [2 * trials]
    pairs = out.edge.view(trials, 2).sort(dim=1).values  # CSC positions 0..5 of the drawn edges
    assert bool((pairs[:, 0] < pairs[:, 1]).all())  # never the same edge twice
    codes = pairs[:, 0] * 6 + pairs[:, 1]
    counts = torch.bincount(codes, minlength=36)[torch.triu_indices(6, 6, 1).mT @ torch.tensor([6, 1])]
    assert counts.sum() == trials and chi_square(counts.double()) < 36.1


def test_draws_with_replacement_are_uniform():
    """k = 3 with replacement of 5 neighbours: each edge about equally often (chi-square, 4 dof, p ~ 0.001)."""
    trials = 2000
    sampler = TorchNeighborSampler(hub(5), [3], replace=True, generator=torch.Generator().manual_seed(0))
    out = sampler._sample(torch.zeros(trials, dtype=torch.long))
    counts = torch.bincount(out.edge, minlength=5)
    assert counts.sum() == 3 * trials and chi_square(counts.double()) < 18.5
    repeated = (out.edge.view(trials, 3).sort(dim=1).values.diff(dim=1) == 0).any(dim=1)
    assert 0.4 < float(repeated.double().mean()) < 0.6  # P(a repeat among 3 draws of 5) = 1 - 12/25 = 0.52


def batches(loader) -> list[tuple[torch.Tensor, ...]]:
    return [(batch.n_id, batch.edge_index, batch.e_id) for batch in loader]


def same(first, second) -> bool:
    return len(first) == len(second) and all(
        all(torch.equal(a, b) for a, b in zip(x, y)) for x, y in zip(first, second)
    )


def test_deterministic_given_a_generator_or_the_global_seed():
    data = small_graph(2)

    def run(seed: int | None = None, generator_seed: int | None = None):
        if seed is not None:
            torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(generator_seed) if generator_seed is not None else None
        return batches(NeighborLoader(data, [3, 2], batch_size=16, shuffle=True, generator=generator))

    assert same(run(generator_seed=0), run(generator_seed=0))
    assert not same(run(generator_seed=0), run(generator_seed=1))
    torch.manual_seed(5)
    first = run(generator_seed=0)
    torch.manual_seed(6)  # the generator alone decides
    assert same(first, run(generator_seed=0))
    assert same(run(seed=3), run(seed=3))
    assert not same(run(seed=3), run(seed=4))


def test_bidirectional_subgraph():
    data = small_graph(3)
    batch = next(iter(NeighborLoader(data, [3, 2], batch_size=10, subgraph_type="bidirectional")))
    edges = set(map(tuple, data.edge_index.t().tolist()))
    sampled = set(map(tuple, batch.n_id[batch.edge_index].t().tolist()))
    assert sampled == {(j, i) for i, j in sampled}
    assert all(edge in edges or edge[::-1] in edges for edge in sampled)


def test_compiled_backend_is_used_when_importable(monkeypatch):
    data = small_graph()
    loader = NeighborLoader(data, [2], batch_size=4)
    assert isinstance(loader, torch_geometric.loader.NeighborLoader)
    assert isinstance(loader.node_sampler, TorchNeighborSampler)
    monkeypatch.setattr(torch_geometric.typing, "WITH_PYG_LIB", True)
    assert type(NeighborLoader(data, [2], batch_size=4).node_sampler) is NeighborSampler  # PyG's own
    mine = TorchNeighborSampler(data, [2])
    assert NeighborLoader(data, [2], batch_size=4, neighbor_sampler=mine).node_sampler is mine


@pytest.mark.parametrize("num_neighbors", ["10", 10, [2.0], [True, 2], None, {("n", "to", "n"): [2]}])
def test_num_neighbors_must_be_a_list_of_ints(num_neighbors):
    with pytest.raises(TypeError, match="`num_neighbors`"):
        NeighborLoader(small_graph(), num_neighbors, batch_size=4)


def test_num_neighbors_below_minus_one():
    with pytest.raises(ValueError, match="`num_neighbors`"):
        NeighborLoader(small_graph(), [2, -2], batch_size=4)


@pytest.mark.parametrize("input_nodes", [torch.tensor([0, 60]), torch.tensor([-1, 3]), [5, 99],
                                         torch.ones(59, dtype=torch.bool)])
def test_input_nodes_out_of_range(input_nodes):
    with pytest.raises(ValueError, match="`input_nodes`"):
        NeighborLoader(small_graph(), [2], input_nodes=input_nodes, batch_size=4)


def test_input_nodes_must_be_indices_or_a_mask():
    with pytest.raises(TypeError, match="`input_nodes`"):
        NeighborLoader(small_graph(), [2], input_nodes=torch.tensor([0.0, 1.0]), batch_size=4)


@pytest.mark.parametrize("options,name", [
    ({"disjoint": True}, "`disjoint"),
    ({"subgraph_type": "induced"}, "`subgraph_type`"),
    ({"directed": False}, "`subgraph_type`"),
    ({"time_attr": "time"}, "`time_attr`"),
    ({"weight_attr": "weight"}, "`weight_attr`"),
])
def test_unsupported_options_name_the_argument(options, name):
    data = small_graph()
    data.time = torch.arange(data.num_nodes)
    data.weight = torch.ones(data.num_edges)
    with pytest.raises(NotImplementedError, match=name):
        NeighborLoader(data, [2], batch_size=4, **options)


def test_unknown_subgraph_type():
    with pytest.raises(ValueError, match="`subgraph_type`"):
        NeighborLoader(small_graph(), [2], batch_size=4, subgraph_type="upward")


def test_heterogeneous_data_is_refused():
    data = HeteroData()
    data["paper"].x = torch.randn(4, 2)
    data["paper", "cites", "paper"].edge_index = torch.tensor([[0, 1], [1, 2]])
    with pytest.raises(NotImplementedError, match="`data`"):
        NeighborLoader(data, {("paper", "cites", "paper"): [2]}, input_nodes=("paper", None), batch_size=2)


def test_repeated_seeds_each_get_their_own_neighbourhood():
    data = small_graph(4)
    layers = mean_graph_conv_stack(data.num_features, 2)
    input_nodes = torch.tensor([3, 7, 3, 3, 10])
    batch = next(iter(NeighborLoader(data, [-1, -1], input_nodes=input_nodes, batch_size=5)))
    assert torch.equal(batch.n_id[:5], input_nodes)
    with torch.no_grad():
        full = forward(layers, data.x, data.edge_index)
        out = forward(layers, batch.x, batch.edge_index)[: batch.batch_size]
    torch.testing.assert_close(out, full[input_nodes], atol=1e-5, rtol=1e-5)


def test_workers_draw_reproducibly_and_apart():
    """In worker processes the sampler uses the worker's seeded global generator (not copies of one generator)."""
    data = small_graph(5)
    input_nodes = torch.zeros(40, dtype=torch.long)  # one hub copied: every batch has the same seeds

    def run():
        loader = NeighborLoader(data, [2], input_nodes=input_nodes, batch_size=10, num_workers=2,
                                generator=torch.Generator().manual_seed(0))
        return batches(loader)

    first = run()
    assert same(first, run())
    assert not torch.equal(first[0][2], first[1][2])  # batch 0 from worker 0, batch 1 from worker 1
