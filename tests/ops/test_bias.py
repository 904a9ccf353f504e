"""PairBias on every path: dense (SDPA float mask), sparse ([E, H]) and the reference, equal with gradients."""

import pytest
import torch

from graphformer import GraphTransformerLayer
from graphformer.aggr import Attention
from graphformer.encodings import RelativePositionBias
from graphformer.graphs import FullyConnected, PairCodes, causal, fully_connected, window
from graphformer.nn import AttentionConv
from graphformer.ops import PairBias, dot_product_attention

PTR = torch.tensor([0, 4, 5, 11, 14])  # unequal sizes, a single-node graph
HEADS, CHANNELS = 2, 3


class Reference(Attention):
    """Same softmax, but a subclass: the dispatch sends it down the per-edge reference path."""


def _bias(dtype=torch.float64, requires_grad=True):
    generator = torch.Generator().manual_seed(0)
    pairs = int((PTR.diff() ** 2).sum())
    codes = PairCodes(torch.randint(0, 6, (pairs,), generator=generator), ptr=PTR, num_codes=6)
    table = torch.randn(6, HEADS, generator=generator, dtype=dtype).requires_grad_(requires_grad)
    values = torch.randn(pairs, HEADS, generator=generator, dtype=dtype).requires_grad_(requires_grad)
    return PairBias.from_codes(codes, table) + PairBias.from_values(values, ptr=PTR), (table, values)


def _qkv(dtype=torch.float64):
    generator = torch.Generator().manual_seed(1)
    n = int(PTR[-1])
    return [torch.randn(n, HEADS, CHANNELS, generator=generator, dtype=dtype).requires_grad_() for _ in range(3)]


STRUCTURES = {
    "complete": lambda: fully_connected(ptr=PTR),
    "causal": lambda: causal(ptr=PTR),
    "window": lambda: window(ptr=PTR, radius=1),
    "explicit": lambda: torch.tensor([[0, 1, 2, 3, 4, 5, 6, 12], [1, 0, 0, 0, 4, 6, 5, 13]]),
}


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_fast_path_equals_reference_with_gradients(name):
    graph = STRUCTURES[name]()
    bias, leaves = _bias()
    q, k, v = _qkv()
    out, _, _ = dot_product_attention(q, k, v, graph, Attention(), bias=bias)
    ref, _, _ = dot_product_attention(q, k, v, graph, Reference(), bias=bias)
    torch.testing.assert_close(out, ref)
    inputs = [q, k, v, *leaves]
    grads = torch.autograd.grad(out.square().sum(), inputs)
    ref_grads = torch.autograd.grad(ref.square().sum(), inputs)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want)


def test_dense_path_never_materialises_edges(monkeypatch):
    def forbidden(self):
        raise AssertionError("to_edge_index called")

    monkeypatch.setattr(FullyConnected, "to_edge_index", forbidden)
    bias, _ = _bias()
    q, k, v = _qkv()
    out, _, _ = dot_product_attention(q, k, v, fully_connected(ptr=PTR), Attention(), bias=bias)
    assert torch.isfinite(out).all()


def test_gradcheck_dense_path():
    bias_codes = PairCodes(torch.arange(int((PTR.diff() ** 2).sum())) % 3, ptr=PTR)
    table = torch.randn(3, HEADS, dtype=torch.float64, requires_grad=True)
    q, k, v = _qkv()

    def run(q, k, v, table):
        bias = PairBias.from_codes(bias_codes, table)
        return dot_product_attention(q, k, v, fully_connected(ptr=PTR), Attention(), bias=bias)[0]

    assert torch.autograd.gradcheck(run, (q, k, v, table))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_no_nan(dtype):
    layer = AttentionConv(2 * HEADS, HEADS).to(dtype)
    relative = RelativePositionBias(HEADS, 2).to(dtype)
    with torch.no_grad():
        relative.bias.weight.normal_()
    x = torch.randn(int(PTR[-1]), 2 * HEADS, dtype=dtype)
    for graph in (fully_connected(ptr=PTR), causal(ptr=PTR)):
        out = layer(x, graph, attn_bias=relative(graph))
        assert out.dtype == dtype and torch.isfinite(out).all()


def test_relative_bias_on_structure_equals_explicit_edges():
    relative = RelativePositionBias(HEADS, 2)
    with torch.no_grad():
        relative.bias.weight.normal_()
    layer = GraphTransformerLayer(2 * HEADS, HEADS, dim_feedforward=8, dropout=0.0).double()
    relative.double()
    structure = fully_connected(ptr=PTR)
    edges = structure.to_edge_index()
    position = torch.arange(int(PTR[-1])) - PTR[torch.repeat_interleave(torch.arange(4), PTR.diff())]
    x = torch.randn(int(PTR[-1]), 2 * HEADS, dtype=torch.float64)
    dense = layer(x, structure, attn_bias=relative(structure))
    sparse = layer(x, edges, attn_bias=relative(edges, position))
    torch.testing.assert_close(dense, sparse)


def test_layer_reference_path_with_pair_bias():
    """Hooks send AttentionConv down PyG's per-edge reference path; a PairBias arrives there as [E, H]."""
    layer = AttentionConv(4, HEADS).double()
    bias, _ = _bias()
    x = torch.randn(int(PTR[-1]), 4, dtype=torch.float64)
    fast = layer(x, fully_connected(ptr=PTR), attn_bias=bias)
    handle = layer.register_message_forward_hook(lambda module, inputs, output: None)
    reference = layer(x, fully_connected(ptr=PTR), attn_bias=bias)
    handle.remove()
    torch.testing.assert_close(fast, reference)


def test_bias_and_edge_features_add():
    layer = AttentionConv(4, HEADS, edge_dim=3).double()
    edges = STRUCTURES["explicit"]()
    edge_attr = torch.randn(edges.size(1), 3, dtype=torch.float64)
    bias, _ = _bias()
    x = torch.randn(int(PTR[-1]), 4, dtype=torch.float64)
    out = layer(x, edges, edge_attr, attn_bias=bias)
    as_tensor = layer(x, edges, edge_attr, attn_bias=bias.on_edges(edges))
    torch.testing.assert_close(out, as_tensor)


def test_errors_name_attn_bias():
    layer = AttentionConv(4, HEADS)
    x = torch.randn(int(PTR[-1]), 4)
    other_batch = PairBias.from_codes(PairCodes(torch.zeros(14 * 14, dtype=torch.long), num_codes=1),
                                      torch.zeros(1, HEADS))
    with pytest.raises(ValueError, match="attn_bias.*other graph sizes"):
        layer(x, fully_connected(ptr=PTR), attn_bias=other_batch)
    three_heads = PairBias.from_codes(PairCodes(torch.zeros(14 * 14, dtype=torch.long)), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="attn_bias.*3 heads"):
        layer(x, fully_connected(num_nodes=14), attn_bias=three_heads)
    with pytest.raises(ValueError, match=r"attn_bias.*\[E, H\]"):
        layer(x, STRUCTURES["explicit"](), attn_bias=torch.zeros(3, HEADS))
    with pytest.raises(ValueError, match="different graphs"):
        layer(x, torch.tensor([[0], [5]]), attn_bias=_bias()[0])
    with pytest.raises(TypeError, match="attn_bias"):
        layer(x, fully_connected(ptr=PTR), attn_bias="distance")
    with pytest.raises(ValueError, match="1 layers|list of 2"):
        from graphformer import GraphTransformer

        GraphTransformer(4, HEADS, 1, dim_feedforward=8)(x, fully_connected(ptr=PTR), attn_bias=[None, None])
