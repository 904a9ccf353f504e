import pytest
import torch
import torch_geometric.nn as pyg_nn
import torch_geometric.nn.aggr as pyg_aggr

import graphformer as gf
from tests.conftest import random_graph


def _copy_to_pyg(conv: gf.GraphConv, aggr: str) -> pyg_nn.GraphConv:
    theirs = pyg_nn.GraphConv(conv.in_channels, conv.out_channels, aggr=aggr)
    theirs.lin_rel.load_state_dict(conv.lin_rel.state_dict())
    theirs.lin_root.load_state_dict(conv.lin_root.state_dict())
    return theirs


@pytest.mark.parametrize("aggr", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("num_nodes, num_edges", [(20, 60), (9, 0)])
def test_equals_pyg_graph_conv(aggr, num_nodes, num_edges):
    edge_index = random_graph(num_nodes, num_edges, seed=num_nodes)
    conv = gf.GraphConv(8, 5, aggr=aggr)
    x = torch.randn(num_nodes, 8)
    edge_weight = torch.rand(num_edges)
    theirs = _copy_to_pyg(conv, "add" if aggr == "sum" else aggr)
    torch.testing.assert_close(conv(x, edge_index), theirs(x, edge_index))
    if aggr == "sum":
        torch.testing.assert_close(conv(x, edge_index, edge_weight), theirs(x, edge_index, edge_weight))


def test_seed_formula_by_hand():
    conv = gf.GraphConv(3, 2, aggr="mean")
    x = torch.randn(4, 3)
    edge_index = torch.tensor([[1, 2, 3], [0, 0, 1]])  # 1->0, 2->0, 3->1; nodes 2, 3 receive nothing
    aggregated = torch.stack([(x[1] + x[2]) / 2, x[3], torch.zeros(3), torch.zeros(3)])
    expected = conv.lin_root(x) + conv.lin_rel(aggregated)
    torch.testing.assert_close(conv(x, edge_index), expected)


def test_structure_equals_materialised_edges():
    batch = torch.tensor([0, 0, 0, 1, 1])
    conv = gf.GraphConv(4, 3, aggr="max")
    x = torch.randn(5, 4)
    graph = gf.fully_connected(batch)
    torch.testing.assert_close(conv(x, graph), conv(x, graph.to_edge_index()))


@pytest.mark.parametrize("aggr", ["sum", "mean", "max", "min"])
def test_gradcheck(aggr):
    conv = gf.GraphConv(3, 2, aggr=aggr).double()
    edge_index = random_graph(6, 12, seed=1)
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: conv(t, edge_index), (x,))


def test_pyg_aggregation_instance_works():
    edge_index = random_graph(10, 30)
    conv = gf.GraphConv(4, 4, aggr=pyg_aggr.MedianAggregation())
    theirs = _copy_to_pyg(conv, "add")
    theirs.aggr_module = pyg_aggr.MedianAggregation()
    x = torch.randn(10, 4)
    torch.testing.assert_close(conv(x, edge_index), theirs(x, edge_index))


def test_accepts_pyg_data_without_mutating_it():
    from torch_geometric.data import Data

    data = Data(x=torch.randn(5, 3), edge_index=random_graph(5, 8))
    before = {k: v.clone() for k, v in data.items()}
    conv = gf.GraphConv(3, 2)
    torch.testing.assert_close(conv(data), conv(data.x, data.edge_index))
    assert all(torch.equal(before[k], v) for k, v in data.items()) and set(before) == set(data.keys())


def test_empty_graph():
    conv = gf.GraphConv(3, 2)
    assert conv(torch.randn(0, 3), torch.empty(2, 0, dtype=torch.long)).shape == (0, 2)


@pytest.mark.parametrize(
    "x, edge_index, error, match",
    [
        (torch.randn(4, 5), torch.tensor([[0], [1]]), ValueError, "expects 3"),
        (torch.randn(4), torch.tensor([[0], [1]]), ValueError, "num_nodes, num_features"),
        (torch.randint(0, 3, (4, 3)), torch.tensor([[0], [1]]), TypeError, "floating-point"),
        (torch.randn(4, 3).double(), torch.tensor([[0], [1]]), TypeError, "dtype torch.float64"),
        (torch.randn(4, 3), torch.tensor([[0], [4]]), ValueError, "only 4 nodes"),
        (torch.randn(4, 3), None, ValueError, "edge_index"),
    ],
)
def test_bad_input(x, edge_index, error, match):
    with pytest.raises(error, match=match):
        gf.GraphConv(3, 2)(x, edge_index)


def test_attention_aggregator_is_refused_and_repr():
    with pytest.raises(ValueError, match="GATConv or AttentionConv"):
        gf.GraphConv(3, 2, aggr="attention")
    assert repr(gf.GraphConv(3, 2, aggr="mean")).startswith("GraphConv(\n  3, 2\n  (aggr): MeanAggregation()")


def test_width_changing_pyg_aggregation_sizes_w2_like_pyg_sageconv():
    """A concatenating MultiAggregation ([sum, max] -> 2F) sizes W2 for 2F inputs, as PyG's SAGEConv does
    (PyG's GraphConv itself fails with a shape error there)."""
    edge_index = random_graph(10, 40, seed=4)
    x = torch.randn(10, 6)
    ours = gf.GraphConv(6, 5, aggr=pyg_aggr.MultiAggregation(["sum", "max"]))
    sage = pyg_nn.SAGEConv(6, 5, aggr=pyg_aggr.MultiAggregation(["sum", "max"]))
    assert ours.lin_rel.in_features == sage.lin_l.in_channels == 12
    source, target = edge_index
    both = torch.cat([gf.aggr.Sum()(x[source], target, dim_size=10), gf.aggr.Max()(x[source], target, dim_size=10)], -1)
    torch.testing.assert_close(ours(x, edge_index), ours.lin_rel(both) + ours.lin_root(x))


def test_aggregator_that_changes_width_unannounced_gets_a_clear_error():
    class Doubling(gf.aggr.Aggregator):
        def reduce(self, x, index, dim_size):
            out = gf.aggr.Sum().reduce(x, index, dim_size)
            return torch.cat([out, out], dim=-1)

    with pytest.raises(ValueError, match="out_channels"):
        gf.GraphConv(4, 3, aggr=Doubling())(torch.randn(5, 4), random_graph(5, 8))


def test_device_and_dtype_arguments():
    conv = gf.GraphConv(4, 3, aggr="mean", device="cpu", dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in conv.parameters())
    assert conv(torch.randn(5, 4, dtype=torch.float64), random_graph(5, 9)).dtype == torch.float64
