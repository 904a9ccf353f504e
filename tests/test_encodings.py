"""Position encodings against Vaswani et al.'s formula and plain loops."""

from __future__ import annotations

import math

import pytest
import torch

from graphformer.encodings import (
    LearnedPositionalEncoding,
    RelativePositionBias,
    SinusoidalPositionalEncoding,
    positions,
    relative_distance,
    relative_distance_features,
)
from graphformer.graphs import chain, fully_connected, lengths_to_ptr
from graphformer.nn import AttentionConv
from graphformer.ops import dot_product_attention


@pytest.mark.parametrize("lengths", [[1], [4], [3, 0, 5], [2, 7, 1]])
def test_positions_restart_in_every_graph(lengths):
    lengths_t = torch.tensor(lengths)
    expected = torch.tensor([t for L in lengths for t in range(L)], dtype=torch.long)
    batch = torch.repeat_interleave(torch.arange(len(lengths)), lengths_t)
    assert torch.equal(positions(lengths=lengths_t), expected)
    assert torch.equal(positions(ptr=lengths_to_ptr(lengths_t)), expected)
    assert torch.equal(positions(batch, num_nodes=sum(lengths)), expected)


@pytest.mark.parametrize("d_model", [1, 6, 7, 64])
def test_sinusoidal_matches_formula(d_model):
    encoding = SinusoidalPositionalEncoding(d_model)
    ptr = torch.tensor([0, 3, 8])
    out = encoding(ptr=ptr)
    assert out.shape == (8, d_model)
    local = [0, 1, 2, 0, 1, 2, 3, 4]
    for n, p in enumerate(local):
        for k in range(d_model):
            angle = p / 10000 ** (2 * (k // 2) / d_model)
            expected = math.sin(angle) if k % 2 == 0 else math.cos(angle)
            assert abs(float(out[n, k]) - expected) < 1e-5


def test_sinusoidal_equals_torch_style_table():
    """The classic precomputed-table implementation (PyTorch tutorial) gives the same rows."""
    d_model, max_len = 16, 50
    position = torch.arange(max_len).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
    table = torch.zeros(max_len, d_model)
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term)
    position_ids = torch.tensor([0, 5, 49, 17])
    torch.testing.assert_close(SinusoidalPositionalEncoding(d_model)(position=position_ids), table[position_ids])


def test_learned_encoding_is_embedding_of_position_and_trains():
    encoding = LearnedPositionalEncoding(10, 4)
    batch = torch.tensor([0, 0, 0, 1, 1])
    out = encoding(batch)
    torch.testing.assert_close(out, encoding.embedding.weight[torch.tensor([0, 1, 2, 0, 1])])
    out.sum().backward()
    assert encoding.embedding.weight.grad[:3].abs().sum() > 0 and encoding.embedding.weight.grad[3:].abs().sum() == 0
    with pytest.raises(ValueError, match="max_len"):
        encoding(position=torch.tensor([10]))
    with pytest.raises(ValueError, match="not both"):
        encoding(batch, position=torch.tensor([0]))


@pytest.mark.parametrize("max_distance", [0, 1, 3])
def test_relative_distance_features_one_hot_of_clipped_distance(max_distance):
    ptr = torch.tensor([0, 4, 6])
    edge_index = fully_connected(ptr=ptr).to_edge_index()
    position = positions(ptr=ptr)
    distance = relative_distance(edge_index, position)
    for e, (j, i) in enumerate(edge_index.t().tolist()):
        assert int(distance[e]) == int(position[i]) - int(position[j])
    features = relative_distance_features(edge_index, position, max_distance)
    assert features.shape == (edge_index.size(1), 2 * max_distance + 1)
    assert torch.equal(features.sum(1), torch.ones(edge_index.size(1)))
    assert torch.equal(features.argmax(1) - max_distance, distance.clamp(-max_distance, max_distance))


@pytest.mark.parametrize("heads", [1, 4])
def test_relative_bias_equals_edge_features_through_attention_conv(heads):
    """RelativePositionBias as `bias` == one-hot features through AttentionConv.edge_proj with the same table."""
    torch.manual_seed(0)
    max_distance, dim = 2, 8
    ptr = torch.tensor([0, 5, 9])
    edge_index = chain(ptr=ptr)
    position = positions(ptr=ptr)
    bias_module = RelativePositionBias(heads, max_distance)
    torch.nn.init.normal_(bias_module.bias.weight)
    conv = AttentionConv(dim, heads, edge_dim=2 * max_distance + 1)
    with torch.no_grad():
        conv.edge_proj.weight.copy_(bias_module.bias.weight.t())
    x = torch.randn(9, dim)
    out = conv(x, edge_index, relative_distance_features(edge_index, position, max_distance))
    n, c = x.size(0), dim // heads
    query = conv.q_proj(x).view(n, heads, c)
    key = conv.k_proj(x).view(n, heads, c)
    value = conv.v_proj(x).view(n, heads, c)
    bias = bias_module(edge_index, position)  # [E, H]
    manual, _, _ = dot_product_attention(query, key, value, edge_index, conv.attention, bias=bias)
    torch.testing.assert_close(out, conv.out_proj(manual.reshape(n, dim)))
