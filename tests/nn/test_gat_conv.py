import pytest
import torch
import torch_geometric.nn as pyg_nn

import graphformer as gf
from tests.conftest import random_graph


def _pyg_copy(conv: gf.GATConv, **kwargs) -> pyg_nn.GATConv:
    theirs = pyg_nn.GATConv(conv.in_channels, conv.out_channels, heads=conv.heads, concat=conv.concat,
                            edge_dim=conv.edge_dim, **kwargs)
    state = {k: v for k, v in conv.state_dict().items()}
    theirs.load_state_dict(state, strict=True)
    return theirs


@pytest.mark.parametrize("heads, concat", [(1, True), (4, True), (3, False)])
@pytest.mark.parametrize("edge_dim", [None, 3])
@pytest.mark.parametrize("add_self_loops", [True, False])
def test_equals_pyg_gat_conv(heads, concat, edge_dim, add_self_loops):
    num_nodes, num_edges = 15, 50
    edge_index = random_graph(num_nodes, num_edges, seed=heads)
    edge_attr = torch.randn(num_edges, edge_dim) if edge_dim else None
    conv = gf.GATConv(6, 4, heads=heads, concat=concat, edge_dim=edge_dim, add_self_loops=add_self_loops)
    theirs = _pyg_copy(conv, add_self_loops=add_self_loops)
    x = torch.randn(num_nodes, 6)
    ours, (ours_edges, ours_alpha) = conv(x, edge_index, edge_attr, return_attention=True)
    expected, (their_edges, their_alpha) = theirs(x, edge_index, edge_attr, return_attention_weights=True)
    torch.testing.assert_close(ours, expected)
    assert torch.equal(ours_edges, their_edges)
    torch.testing.assert_close(ours_alpha, their_alpha)


def test_structure_equals_materialised_edges():
    batch = torch.tensor([0, 0, 1, 1, 1])
    conv = gf.GATConv(4, 2, heads=2)
    x = torch.randn(5, 4)
    graph = gf.causal(batch)
    torch.testing.assert_close(conv(x, graph), conv(x, graph.to_edge_index()))


def test_gradcheck():
    conv = gf.GATConv(3, 2, heads=2, edge_dim=2).double()
    edge_index = random_graph(6, 10, seed=4)
    edge_attr = torch.randn(10, 2, dtype=torch.float64)
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: conv(t, edge_index, edge_attr), (x,))


def test_isolated_nodes_without_self_loops_get_bias_only():
    conv = gf.GATConv(3, 2, heads=2, add_self_loops=False)
    torch.nn.init.normal_(conv.bias)
    out = conv(torch.randn(4, 3), torch.tensor([[0, 1], [1, 0]]))
    torch.testing.assert_close(out[2:], conv.bias.expand(2, -1))


def test_errors():
    with pytest.raises(ValueError, match="heads"):
        gf.GATConv(3, 2, heads=0)
    with pytest.raises(ValueError, match="score aggregator"):
        gf.GATConv(3, 2, aggr="sum")
    conv = gf.GATConv(3, 2)
    with pytest.raises(ValueError, match="edge_dim"):
        conv(torch.randn(3, 3), torch.tensor([[0], [1]]), torch.randn(1, 2))
    with pytest.raises(ValueError, match="expects 3"):
        conv(torch.randn(3, 4), torch.tensor([[0], [1]]))
    assert conv(torch.randn(0, 3), torch.empty(2, 0, dtype=torch.long)).shape == (0, 2)
