"""gradcheck (float64) with respect to every layer's parameters, not only its inputs: attention vectors, edge
projections, Q/K/V/output projections, learnable PyG aggregations."""

from __future__ import annotations

import pytest
import torch
import torch_geometric.nn.aggr as pyg_aggr
from torch.func import functional_call

import graphformer as gf
from tests.conftest import random_graph


def gradcheck_parameters(module: torch.nn.Module, *inputs, **kwargs) -> None:
    module = module.double().eval()
    names = [name for name, _ in module.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for _, p in module.named_parameters())
    assert names, "module has no parameters"

    def call(*values):
        return functional_call(module, dict(zip(names, values)), inputs, kwargs)

    assert torch.autograd.gradcheck(call, params, eps=1e-6, atol=1e-5)


EDGE_INDEX = random_graph(6, 14, seed=2)
EDGE_ATTR = torch.randn(14, 3, dtype=torch.float64)
X = torch.randn(6, 4, dtype=torch.float64)


@pytest.mark.parametrize("concat", [True, False])
def test_gat_conv_parameters(concat):
    conv = gf.GATConv(4, 3, heads=2, concat=concat, edge_dim=3)
    gradcheck_parameters(conv, X, EDGE_INDEX, EDGE_ATTR)


@pytest.mark.parametrize("graph", ["edge_index", "fully_connected"])
def test_attention_conv_parameters(graph):
    if graph == "edge_index":
        gradcheck_parameters(gf.AttentionConv(4, 2, edge_dim=3), X, EDGE_INDEX, EDGE_ATTR)
    else:
        gradcheck_parameters(gf.AttentionConv(4, 2), X, gf.graphs.fully_connected(torch.tensor([0, 0, 0, 1, 1, 1])))


def test_transformer_layer_parameters():
    layer = gf.GraphTransformerLayer(4, 2, dim_feedforward=6, dropout=0.0)
    gradcheck_parameters(layer, X, EDGE_INDEX)


def test_graph_conv_with_learnable_pyg_aggregation_parameters():
    conv = gf.GraphConv(4, 3, aggr=pyg_aggr.SoftmaxAggregation(learn=True))
    assert any("aggr" in name for name, _ in conv.named_parameters())
    gradcheck_parameters(conv, X, EDGE_INDEX)


def test_transformer_layer_with_a_pyg_aggregation_replacing_attention():
    aggr = pyg_aggr.SoftmaxAggregation(learn=True)
    layer = gf.GraphTransformerLayer(4, 2, dim_feedforward=6, dropout=0.0, aggr=aggr)
    out = layer(X.float(), EDGE_INDEX)
    assert out.shape == (6, 4) and torch.isfinite(out).all()
    gradcheck_parameters(layer, X, EDGE_INDEX)
