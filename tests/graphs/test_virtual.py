"""Virtual nodes as explicit edges, and Exphormer's attention graph union(local, expander, virtual nodes) through
GraphTransformerLayer: the sparse path against the reference path and against nn.TransformerEncoderLayer with the
graph as a dense mask."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graphformer as gf
from graphformer.graphs import chain, expander, union, with_virtual_nodes

SIZES = [7, 1, 12, 0, 3]


def _ptr(sizes: list[int]) -> torch.Tensor:
    return torch.tensor([0, *sizes]).cumsum(0)


def _edge_set(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return {(int(j), int(i)) for j, i in edge_index.t()}


@pytest.mark.parametrize("num_virtual", [1, 3])
def test_virtual_nodes_join_every_node_of_their_graph_both_ways(num_virtual):
    ptr = _ptr(SIZES)
    local = chain(ptr=ptr, self_loops=False)
    graph = with_virtual_nodes(local, ptr=ptr, num_virtual=num_virtual)
    k = num_virtual
    assert graph.num_nodes == sum(SIZES) + k * len(SIZES) and graph.num_virtual == k
    assert graph.ptr.tolist() == [p + k * g for g, p in enumerate(ptr.tolist())]
    assert torch.equal(torch.bincount(graph.batch), torch.tensor(SIZES) + k)
    expected = {(int(graph.node_index[j]), int(graph.node_index[i])) for j, i in local.t()}  # renumbered input
    for g, (start, stop) in enumerate(zip(ptr[:-1].tolist(), ptr[1:].tolist())):
        for u in graph.virtual_index[g].tolist():
            expected.add((u, u))
            for n in graph.node_index[start:stop].tolist():
                expected |= {(n, u), (u, n)}
    assert _edge_set(graph.edge_index) == expected
    assert graph.edge_index.size(1) == len(expected)  # no duplicates
    # virtual nodes first in each graph, then the real nodes in order
    for g in range(len(SIZES)):
        assert graph.virtual_index[g].tolist() == list(range(int(graph.ptr[g]), int(graph.ptr[g]) + k))
    assert torch.equal(graph.batch[graph.node_index], torch.repeat_interleave(torch.arange(5), torch.tensor(SIZES)))


def test_one_virtual_node_has_the_layout_of_add_virtual_node():
    ptr = _ptr(SIZES)
    batch = torch.repeat_interleave(torch.arange(len(SIZES)), torch.tensor(SIZES))
    x, token = torch.randn(sum(SIZES), 4), torch.randn(4)
    local = chain(ptr=ptr)
    graph = with_virtual_nodes(local, batch, self_loops=False)
    x_ext, batch_ext, cls_index = gf.add_virtual_node(x, batch, token, size=len(SIZES))
    torch.testing.assert_close(graph.extend(x, token), x_ext)
    assert torch.equal(graph.batch, batch_ext) and torch.equal(graph.virtual_index[:, 0], cls_index)
    assert torch.equal(graph.node_index[local], gf.shift_edge_index(local, batch))
    loops = graph.edge_index[0][graph.edge_index[0] == graph.edge_index[1]]
    assert torch.equal(loops, graph.node_index)  # self_loops=False: the chain's loops on the real nodes only


def test_extend_is_differentiable_in_features_and_tokens():
    graph = with_virtual_nodes(None, ptr=_ptr([2, 3]), num_virtual=2)
    x, tokens = torch.randn(5, 3, requires_grad=True), torch.randn(2, 3, requires_grad=True)
    out = graph.extend(x, tokens)
    assert out.shape == (9, 3)
    torch.testing.assert_close(out[graph.virtual_index[1]], tokens)
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones(5, 3)) and torch.equal(tokens.grad, torch.full((2, 3), 2.0))


def test_bad_input_names_the_argument():
    ptr = _ptr([2, 3])
    with pytest.raises(ValueError, match="`num_virtual`"):
        with_virtual_nodes(None, ptr=ptr, num_virtual=0)
    with pytest.raises(ValueError, match="`edge_index` contains index 5"):
        with_virtual_nodes(torch.tensor([[0], [5]]), ptr=ptr)
    with pytest.raises(ValueError, match="`edge_index` must have shape"):
        with_virtual_nodes(torch.tensor([0, 1]), ptr=ptr)
    with pytest.raises(ValueError, match="`ptr` ends at 5 but num_nodes is 4"):
        with_virtual_nodes(None, ptr=ptr, num_nodes=4)
    graph = with_virtual_nodes(None, ptr=ptr)
    with pytest.raises(ValueError, match="`x` must have shape"):
        graph.extend(torch.randn(4, 3), torch.randn(3))
    with pytest.raises(ValueError, match="`tokens` must have shape"):
        graph.extend(torch.randn(5, 3), torch.randn(2, 3))


# -- Exphormer's attention graph through the sparse attention path ---------------------------------------------------
def _exphormer_graph(sizes: list[int]):
    ptr = _ptr(sizes)
    num_nodes = int(ptr[-1])
    local = chain(ptr=ptr)  # the "local" graph, with self-loops
    sparse = union(local, expander(4, ptr=ptr, generator=torch.Generator().manual_seed(0)), num_nodes=num_nodes)
    return with_virtual_nodes(sparse, ptr=ptr)


def test_graph_transformer_layer_on_exphormer_graph_equals_the_reference_path_and_torch():
    torch.manual_seed(0)
    graph = _exphormer_graph([9, 1, 14, 5])
    torch_layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.0, batch_first=True).eval()
    layer = gf.GraphTransformerLayer.from_torch(torch_layer).eval()
    x = torch.randn(29, 16)
    x_ext = graph.extend(x, torch.randn(16)).requires_grad_()
    out = layer(x_ext, graph.edge_index)  # the lean sparse path
    (grad,) = torch.autograd.grad(out.pow(2).sum(), x_ext)

    handle = layer.self_attn.register_message_forward_hook(lambda module, inputs, output: None)
    assert layer.self_attn.needs_reference()
    reference = layer(x_ext, graph.edge_index)  # PyG's propagate, edge by edge
    (reference_grad,) = torch.autograd.grad(reference.pow(2).sum(), x_ext)
    handle.remove()
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad, reference_grad, atol=1e-5, rtol=1e-5)

    # and nn.TransformerEncoderLayer with the attention graph as a dense mask (True = may not attend)
    mask = torch.ones(graph.num_nodes, graph.num_nodes, dtype=torch.bool)
    mask[graph.edge_index[1], graph.edge_index[0]] = False
    expected = torch_layer(x_ext.unsqueeze(0), src_mask=mask).squeeze(0)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert out[graph.node_index].shape == (29, 16)
