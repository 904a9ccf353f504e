"""Readouts against plain loops over graphs: GlobalPool, AttentionReadout, add_virtual_node / shift_edge_index."""

from __future__ import annotations

import math

import pytest
import torch

import graphformer as gf
from graphformer.nn import AttentionReadout, GlobalPool, VirtualNode, add_virtual_node, shift_edge_index

SIZES = [3, 0, 1, 5]  # graph 1 is empty (no node carries its id)


def _batch(sizes: list[int] = SIZES) -> torch.Tensor:
    return torch.arange(len(sizes)).repeat_interleave(torch.tensor(sizes))


@pytest.mark.parametrize("aggr", ["sum", "mean", "max"])
def test_global_pool_equals_a_loop_and_empty_graphs_give_zeros(aggr):
    batch = _batch()
    x = torch.randn(batch.numel(), 4) - 10.0  # all negative: a max that started at 0 or -inf would show
    out = GlobalPool(aggr)(x, batch, size=len(SIZES) + 1)  # and a trailing empty graph
    reduce = {"sum": lambda t: t.sum(0), "mean": lambda t: t.mean(0), "max": lambda t: t.max(0).values}[aggr]
    expected = torch.stack([reduce(x[batch == g]) if (batch == g).any() else torch.zeros(4)
                            for g in range(len(SIZES) + 1)])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(GlobalPool(aggr)(x), reduce(x).unsqueeze(0))  # batch=None: one graph
    assert repr(GlobalPool(aggr)) == f"GlobalPool(aggr={aggr!r})"


def _attention_loop(readout: AttentionReadout, x: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    heads, channels = readout.heads, readout.head_dim
    rows = []
    for g in range(num_graphs):
        nodes = x[batch == g]
        if nodes.size(0) == 0:
            rows.append(x.new_zeros(readout.channels))
            continue
        key = readout.k_proj(nodes).view(-1, heads, channels)
        value = readout.v_proj(nodes).view(-1, heads, channels)
        scores = (key * readout.query).sum(-1) / math.sqrt(channels)  # [n, H]
        pooled = (scores.softmax(0).unsqueeze(-1) * value).sum(0)  # [H, C]
        rows.append(readout.out_proj(pooled.reshape(-1)))
    return torch.stack(rows)


@pytest.mark.parametrize("heads", [1, 2])
def test_attention_readout_equals_a_loop_with_gradients(heads):
    readout = AttentionReadout(8, heads=heads)
    batch = _batch()
    x = torch.randn(batch.numel(), 8, requires_grad=True)
    out = readout(x, batch)
    expected = _attention_loop(readout, x, batch, len(SIZES))
    torch.testing.assert_close(out, expected)
    assert out[1].abs().max() == 0  # the empty graph
    params = [x, *readout.parameters()]
    weights = torch.randn_like(out)
    for grad, expected_grad in zip(torch.autograd.grad((out * weights).sum(), params),
                                   torch.autograd.grad((expected * weights).sum(), params)):
        torch.testing.assert_close(grad, expected_grad)
    assert readout.extra_repr() == f"8, heads={heads}, dropout=0.0"


def test_attention_readout_gradcheck_and_half_precision():
    readout = AttentionReadout(4, heads=2).double()
    batch = _batch([2, 1, 3])
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: readout(x, batch), (x,))
    for dtype in (torch.float16, torch.bfloat16):
        out = readout.to(dtype)(x.detach().to(dtype), _batch([2, 0, 3, 1]))
        assert out.dtype == dtype and torch.isfinite(out).all()


def test_attention_readout_dropout_in_training():
    readout = AttentionReadout(8, heads=2, dropout=0.5).train()
    x = torch.randn(9, 8, requires_grad=True)
    out = readout(x, _batch([4, 5]))
    out.sum().backward()
    assert out.shape == (2, 8) and torch.isfinite(x.grad).all()


def test_add_virtual_node_inserts_the_token_first_in_every_graph():
    batch = _batch()
    x = torch.randn(batch.numel(), 3, requires_grad=True)
    token = torch.randn(3, requires_grad=True)
    x_ext, batch_ext, cls_index = add_virtual_node(x, batch, token)
    # a loop: per graph, the token then the graph's nodes
    expected_x = torch.cat([torch.cat([token.view(1, 3), x[batch == g]]) for g in range(len(SIZES))])
    expected_batch = torch.arange(len(SIZES)).repeat_interleave(torch.tensor(SIZES) + 1)
    torch.testing.assert_close(x_ext, expected_x)
    assert torch.equal(batch_ext, expected_batch)
    assert torch.equal(cls_index, torch.tensor([0, 4, 5, 7]))
    assert torch.equal(x_ext[cls_index], token.expand(4, 3))
    # gradients reach both x and the token
    x_ext.pow(2).sum().backward()
    torch.testing.assert_close(x.grad, 2 * x)
    torch.testing.assert_close(token.grad, 2 * len(SIZES) * token)
    # the structure: the virtual node sees every node of its graph and is seen by all
    structure = gf.fully_connected(batch_ext)
    edges = structure.to_edge_index()
    for g, vn in enumerate(cls_index.tolist()):
        members = (batch_ext == g).nonzero().view(-1)
        assert set(edges[1][edges[0] == vn].tolist()) == set(members.tolist())
        assert set(edges[0][edges[1] == vn].tolist()) == set(members.tolist())


def test_shift_edge_index_keeps_the_local_graph():
    batch = _batch()
    edge_index = torch.tensor([[0, 1, 3, 4, 5], [1, 2, 3, 5, 8]])  # within graphs 0, 2, 3
    shifted = shift_edge_index(edge_index, batch)
    x = torch.randn(batch.numel(), 2)
    x_ext, _, _ = add_virtual_node(x, batch, torch.zeros(2))
    torch.testing.assert_close(x_ext[shifted], x[edge_index])  # the same endpoints, renumbered
    conv = gf.GraphConv(2, 2, aggr="sum")
    x_ext, _, cls_index = add_virtual_node(x, batch, torch.zeros(2))
    keep = torch.ones(x_ext.size(0), dtype=torch.bool)
    keep[cls_index] = False
    torch.testing.assert_close(conv(x_ext, shifted)[keep], conv(x, edge_index))
    assert torch.equal(shift_edge_index(edge_index, None), edge_index + 1)


def test_virtual_node_module_and_a_transformer_readout():
    vn = VirtualNode(8)
    batch = _batch([3, 5])
    x = torch.randn(8, 8)
    x_ext, batch_ext, cls_index = vn(x, batch)
    layer = gf.GraphTransformerLayer(8, 2, dim_feedforward=16, dropout=0.0)
    out = layer(x_ext, gf.fully_connected(batch_ext))[cls_index]  # [B, D]
    out.sum().backward()
    assert out.shape == (2, 8) and vn.token.grad is not None
    assert vn.extra_repr() == "8"


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="aggr"):
        GlobalPool("median")
    with pytest.raises(ValueError, match="batch"):
        GlobalPool()(torch.randn(4, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="size"):
        GlobalPool()(torch.randn(4, 2), torch.tensor([0, 0, 1, 2]), size=2)
    with pytest.raises(ValueError, match="channels"):
        AttentionReadout(6, heads=4)
    with pytest.raises(ValueError, match="batch.*sorted"):
        add_virtual_node(torch.randn(3, 2), torch.tensor([1, 0, 0]), torch.zeros(2))
    with pytest.raises(ValueError, match="token"):
        add_virtual_node(torch.randn(3, 2), torch.tensor([0, 0, 1]), torch.zeros(3))
