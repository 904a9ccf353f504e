"""Constructor arguments: sizes must be positive ints (a float or bool is a clear TypeError, not a torch crash),
and device/dtype create the parameters where asked."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graphformer as gf


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda: gf.GraphTransformerLayer(64.0, 4), TypeError, "`d_model` must be an int"),
        (lambda: gf.GraphTransformerLayer(64, 4.0), TypeError, "`nhead` must be an int"),
        (lambda: gf.GraphTransformerLayer(64, 0), ValueError, "`nhead` must be at least 1"),
        (lambda: gf.GraphTransformerLayer(64, 3), ValueError, "divisible"),
        (lambda: gf.GraphTransformerLayer(64, 4, dim_feedforward=True), TypeError, "`dim_feedforward`"),
        (lambda: gf.GraphTransformer(64, 4, num_layers=0), ValueError, "`num_layers` must be at least 1"),
        (lambda: gf.AttentionConv(64, 2.5), TypeError, "`num_heads` must be an int"),
        (lambda: gf.AttentionConv(64, 4, edge_dim=0), ValueError, "`edge_dim` must be at least 1"),
        (lambda: gf.GATConv(8, 4, heads=0), ValueError, "`heads` must be at least 1"),
        (lambda: gf.GATConv("8", 4), TypeError, "`in_channels` must be an int"),
        (lambda: gf.GraphConv(8, -1), ValueError, "`out_channels` must be at least 1"),
    ],
)
def test_bad_sizes(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_gat_conv_device_and_dtype():
    conv = gf.GATConv(4, 3, heads=2, edge_dim=2, device="cpu", dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in conv.parameters())
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
    out = conv(torch.randn(3, 4, dtype=torch.float64), edge_index, torch.randn(3, 2, dtype=torch.float64))
    assert out.shape == (3, 6) and out.dtype == torch.float64


def test_to_torch_keeps_a_different_attention_dropout():
    layer = gf.GraphTransformerLayer(16, 2, dim_feedforward=32, dropout=0.1)
    layer.self_attn.attention.dropout = 0.3
    torch_layer = layer.to_torch()
    assert isinstance(torch_layer, nn.TransformerEncoderLayer)
    assert torch_layer.self_attn.dropout == 0.3 and torch_layer.dropout.p == 0.1
    assert gf.GraphTransformerLayer.from_torch(torch_layer).self_attn.attention.dropout == 0.3
