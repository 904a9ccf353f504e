"""Attention analysis: weights out of any layer, top-k against a loop, head masking against a manual oracle."""

from __future__ import annotations

import copy

import pytest
import torch
from torch_geometric.utils import scatter

from graphformer import GATConv, GraphTransformer, GraphTransformerLayer
from graphformer.analysis import (
    attention_layers,
    attention_weights,
    head_importance,
    head_mask,
    prune_heads_,
    pruning_curve,
    top_k_edges,
)
from graphformer.graphs import chain, fully_connected
from graphformer.nn import AttentionConv
from graphformer.ops import dot_product_attention

PTR = torch.tensor([0, 4, 9])


def make(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "conv":
        return AttentionConv(8, 2)
    if kind == "gat":
        return GATConv(8, 4, heads=2)
    if kind == "layer":
        return GraphTransformerLayer(8, 2, dim_feedforward=16, dropout=0.0)
    return GraphTransformer(8, 2, 3, dim_feedforward=16, dropout=0.0)


@pytest.mark.parametrize("kind,layers", [("conv", 1), ("gat", 1), ("layer", 1), ("stack", 3)])
@pytest.mark.parametrize("graph", ["complete", "chain"])
def test_attention_weights_from_any_layer(kind, layers, graph):
    model = make(kind).eval()
    x = torch.randn(9, 8)
    structure = fully_connected(ptr=PTR) if graph == "complete" else chain(ptr=PTR)
    attention = attention_weights(model, x, structure)
    assert len(attention) == layers
    for edge_index, weights in attention:
        assert weights.shape == (edge_index.size(1), 2)
        sums = scatter(weights, edge_index[1], dim=0, dim_size=9, reduce="sum")
        torch.testing.assert_close(sums, torch.ones(9, 2))


def loop_top_k(edge_index, weights, k, num_nodes, exclude_self_loops):
    sources = torch.full((num_nodes, k, weights.size(1)), -1)
    values = torch.zeros(num_nodes, k, weights.size(1))
    for h in range(weights.size(1)):
        for i in range(num_nodes):
            incoming = [(float(weights[e, h]), int(edge_index[0, e])) for e in range(edge_index.size(1))
                        if int(edge_index[1, e]) == i and not (exclude_self_loops and int(edge_index[0, e]) == i)]
            incoming.sort(key=lambda t: -t[0])
            for r, (w, j) in enumerate(incoming[:k]):
                sources[i, r, h], values[i, r, h] = j, w
    return sources, values


@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("exclude_self_loops", [False, True])
@pytest.mark.parametrize("heads", [1, 3])
def test_top_k_edges_against_loop(k, exclude_self_loops, heads):
    torch.manual_seed(k + heads)
    edge_index = fully_connected(ptr=PTR).to_edge_index()
    perm = torch.randperm(edge_index.size(1))  # order of edges must not matter
    edge_index = edge_index[:, perm]
    weights = torch.rand(edge_index.size(1), heads)
    sources, values = top_k_edges(edge_index, weights, k, 9, exclude_self_loops=exclude_self_loops)
    expected_sources, expected_values = loop_top_k(edge_index, weights, k, 9, exclude_self_loops)
    assert torch.equal(sources, expected_sources)
    torch.testing.assert_close(values, expected_values)


def test_top_k_edges_single_head_and_errors():
    edge_index = torch.tensor([[0, 1, 2], [2, 2, 2]])
    sources, values = top_k_edges(edge_index, torch.tensor([0.2, 0.5, 0.3]), 2)
    assert sources.tolist() == [[-1, -1], [-1, -1], [1, 2]]
    assert values[2].tolist() == pytest.approx([0.5, 0.3])
    with pytest.raises(ValueError, match="`k`"):
        top_k_edges(edge_index, torch.rand(3), 0)
    with pytest.raises(ValueError, match="weights"):
        top_k_edges(edge_index, torch.rand(4, 2), 1)


def manual_masked_conv(conv: AttentionConv, x, graph, keep):
    """Oracle: attention by hand, head outputs multiplied by ``keep`` [H] before out_proj."""
    n, heads, c = x.size(0), conv.num_heads, conv.head_dim
    q, k, v = (proj(x).view(n, heads, c) for proj in (conv.q_proj, conv.k_proj, conv.v_proj))
    out, _, _ = dot_product_attention(q, k, v, graph, conv.attention)
    return conv.out_proj((out * keep.view(1, heads, 1)).reshape(n, heads * c))


@pytest.mark.parametrize("graph", ["complete", "chain"])
@pytest.mark.parametrize("zeroed", [[], [0], [1, 3], [0, 1, 2, 3]])
def test_head_mask_equals_manual_zeroing(graph, zeroed):
    torch.manual_seed(1)
    conv = AttentionConv(8, 4).eval()
    x = torch.randn(9, 8)
    structure = fully_connected(ptr=PTR) if graph == "complete" else chain(ptr=PTR)
    keep = torch.ones(4)
    keep[zeroed] = 0.0
    before = conv(x, structure)
    with head_mask(conv, {0: zeroed}):
        masked = conv(x, structure)
    torch.testing.assert_close(masked, manual_masked_conv(conv, x, structure, keep))
    torch.testing.assert_close(conv(x, structure), before)  # hooks removed on exit
    assert not conv.out_proj._forward_pre_hooks


def test_head_mask_removes_hooks_after_exception_and_validates():
    model = make("stack")
    with pytest.raises(RuntimeError):
        with head_mask(model, torch.ones(3, 2)):
            raise RuntimeError("boom")
    assert all(not layer.out_proj._forward_pre_hooks for layer in attention_layers(model))
    with pytest.raises(ValueError, match="num_layers=3"):
        with head_mask(model, torch.ones(2, 2)):
            pass
    with pytest.raises(ValueError, match="layer 5"):
        with head_mask(model, {5: [0]}):
            pass


@pytest.mark.parametrize("mask", [{0: [1]}, {1: [0, 1], 2: [0]}, {0: [0], 1: [1], 2: [0, 1]}])
def test_prune_heads_equals_head_mask(mask):
    model = make("stack").eval()
    x = torch.randn(9, 8)
    graph = fully_connected(ptr=PTR)
    with head_mask(model, mask):
        masked = model(x, graph)
    pruned = prune_heads_(copy.deepcopy(model), mask)
    torch.testing.assert_close(pruned(x, graph), masked)


def test_head_importance_and_pruning_curve_against_loop():
    model = make("stack").eval()
    x = torch.randn(9, 8)
    target = torch.randn(9, 8)
    graph = fully_connected(ptr=PTR)

    def evaluate(m):
        with torch.no_grad():
            return float(((m(x, graph) - target) ** 2).mean())

    baseline, importance = head_importance(model, evaluate)
    assert baseline == pytest.approx(evaluate(model))
    for layer in range(3):
        for head in range(2):
            ablated = prune_heads_(copy.deepcopy(model), {layer: [head]})
            assert float(importance[layer, head]) == pytest.approx(evaluate(ablated) - baseline, abs=1e-6)
    order = torch.tensor([[2, 1], [0, 0], [1, 1]])
    curve = pruning_curve(model, evaluate, order)
    assert len(curve) == 4 and curve[0] == pytest.approx(baseline)
    cumulative = prune_heads_(copy.deepcopy(model), {2: [1], 0: [0], 1: [1]})
    assert curve[-1] == pytest.approx(evaluate(cumulative), abs=1e-6)
    assert evaluate(model) == pytest.approx(baseline)  # the model itself is unchanged
