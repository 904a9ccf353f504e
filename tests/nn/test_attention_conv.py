import pytest
import torch
from torch import nn

import graphformer as gf
from tests.conftest import random_graph, sentence_batch


def _from_mha(mha: nn.MultiheadAttention) -> gf.AttentionConv:
    conv = gf.AttentionConv(mha.embed_dim, mha.num_heads)
    with torch.no_grad():
        for proj, w, b in zip((conv.q_proj, conv.k_proj, conv.v_proj), mha.in_proj_weight.chunk(3),
                              mha.in_proj_bias.chunk(3)):
            proj.weight.copy_(w)
            proj.bias.copy_(b)
        conv.out_proj.load_state_dict(mha.out_proj.state_dict())
    return conv


@pytest.mark.parametrize("embed_dim, heads", [(16, 1), (16, 4), (24, 3)])
def test_on_fully_connected_graph_equals_multihead_attention(embed_dim, heads):
    mha = nn.MultiheadAttention(embed_dim, heads, batch_first=True)
    conv = _from_mha(mha)
    padded, mask, tokens, batch = sentence_batch([5, 2, 7], embed_dim)
    expected = mha(padded, padded, padded, key_padding_mask=mask, need_weights=False)[0][~mask]
    torch.testing.assert_close(conv(tokens, gf.fully_connected(batch)), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(conv(tokens, gf.fully_connected(batch).to_edge_index()), expected,
                               atol=1e-5, rtol=1e-5)


def test_explicit_edges_equal_a_plain_loop_with_edge_bias():
    conv = gf.AttentionConv(8, 2, edge_dim=3)
    x = torch.randn(6, 8)
    edge_index = random_graph(6, 14, seed=2)
    edge_attr = torch.randn(14, 3)
    out, (edges, weights) = conv(x, edge_index, edge_attr, return_attention=True)
    q = conv.q_proj(x).view(6, 2, 4)
    k = conv.k_proj(x).view(6, 2, 4)
    v = conv.v_proj(x).view(6, 2, 4)
    bias = conv.edge_proj(edge_attr)
    rows = []
    for i in range(6):
        incoming = (edge_index[1] == i).nonzero().flatten()
        if incoming.numel() == 0:
            rows.append(torch.zeros(8))
            continue
        j = edge_index[0, incoming]
        scores = (q[i].unsqueeze(0) * k[j]).sum(-1) / 2.0 + bias[incoming]  # [deg, H]
        alpha = torch.softmax(scores, 0)
        torch.testing.assert_close(weights[incoming], alpha)
        rows.append((alpha.unsqueeze(-1) * v[j]).sum(0).reshape(8))
    torch.testing.assert_close(out, conv.out_proj(torch.stack(rows)))
    assert torch.equal(edges, edge_index)


@pytest.mark.parametrize("aggr", ["sum", "mean", "max"])
def test_plain_aggregation_ignores_scores(aggr):
    conv = gf.AttentionConv(8, 2, aggr=aggr)
    x = torch.randn(5, 8)
    edge_index = random_graph(5, 9)
    expected = conv.out_proj(gf.aggr.resolve(aggr)(conv.v_proj(x)[edge_index[0]], edge_index[1], dim_size=5))
    torch.testing.assert_close(conv(x, edge_index), expected)
    with pytest.raises(ValueError, match="return_attention"):
        conv(x, edge_index, return_attention=True)


@pytest.mark.parametrize("graph", ["edges", "structure"])
def test_gradcheck(graph):
    conv = gf.AttentionConv(4, 2, edge_dim=1 if graph == "edges" else None).double()
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    if graph == "edges":
        edge_index, edge_attr = random_graph(5, 9), torch.randn(9, 1, dtype=torch.float64)
        fn = lambda t: conv(t, edge_index, edge_attr)  # noqa: E731
    else:
        structure = gf.fully_connected(torch.tensor([0, 0, 0, 1, 1]))
        fn = lambda t: conv(t, structure)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))


def test_errors_and_empty_graphs():
    with pytest.raises(ValueError, match="divisible"):
        gf.AttentionConv(10, 3)
    conv = gf.AttentionConv(4, 2)
    with pytest.raises(ValueError, match="explicit edge_index"):
        conv.edge_proj = nn.Linear(1, 2)
        conv.edge_dim = 1
        conv(torch.randn(3, 4), gf.fully_connected(num_nodes=3), torch.randn(9, 1))
    conv = gf.AttentionConv(4, 2)
    assert conv(torch.randn(0, 4), gf.fully_connected(num_nodes=0)).shape == (0, 4)
    out = conv(torch.randn(3, 4), torch.empty(2, 0, dtype=torch.long))
    torch.testing.assert_close(out, conv.out_proj.bias.expand(3, 4))  # nothing arrives: zeros before W_O


def test_aggr_name_is_case_insensitive():
    conv = gf.AttentionConv(8, 2, aggr="Attention", dropout=0.2)
    assert type(conv.attention) is gf.aggr.Attention and conv.attention.dropout == 0.2
    assert type(gf.GATConv(8, 4, heads=2, aggr="ATTENTION").attention) is gf.aggr.Attention


def test_half_precision_large_scores_do_not_overflow_on_explicit_edges():
    """q.k of 16 channels of magnitude ~90 is ~1.3e5 > fp16 max; scaled first and summed in float32 it is fine."""
    torch.manual_seed(0)
    conv = gf.AttentionConv(16, 1, bias=False)
    with torch.no_grad():
        for proj in (conv.q_proj, conv.k_proj, conv.v_proj, conv.out_proj):
            proj.weight.copy_(torch.eye(16))
    x = torch.full((6, 16), 90.0) + torch.randn(6, 16)
    edge_index = random_graph(6, 20, seed=1)
    expected = conv(x, edge_index)
    out = conv.half()(x.half(), edge_index)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=0.5)


def test_data_edge_attr_is_ignored_by_a_layer_without_edge_dim():
    from torch_geometric.data import Data

    data = Data(x=torch.randn(5, 8), edge_index=random_graph(5, 12), edge_attr=torch.randn(12, 3))
    conv = gf.AttentionConv(8, 2)
    torch.testing.assert_close(conv(data), conv(data.x, data.edge_index))
    gat = gf.GATConv(8, 4, heads=2)
    torch.testing.assert_close(gat(data), gat(data.x, data.edge_index))
    layer = gf.GraphTransformerLayer(8, 2, dim_feedforward=16, dropout=0.0)
    torch.testing.assert_close(layer(data), layer(data.x, data.edge_index))


def test_repr_shows_the_configuration():
    from graphformer.nn import AttentionConv

    assert repr(AttentionConv(8, 2)) == "AttentionConv(8, num_heads=2)"
    assert repr(AttentionConv(8, 2, edge_dim=3)) == "AttentionConv(8, num_heads=2, edge_dim=3)"
