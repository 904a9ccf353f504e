"""GraphTransformerLayer on fully_connected(batch) == nn.TransformerEncoderLayer on the padded batch."""

import pytest
import torch
from torch import nn

import graphformer as gf
from graphformer.aggr import Aggregator, Mean
from tests.conftest import random_graph, sentence_batch

LENGTHS = [6, 1, 9, 4]
CONFIGS = [(16, 1), (32, 4), (48, 6)]


def _torch_layer(d_model, nhead, norm_first, activation, bias=True):
    layer = nn.TransformerEncoderLayer(
        d_model, nhead, dim_feedforward=2 * d_model, dropout=0.1, activation=activation, batch_first=True,
        norm_first=norm_first, bias=bias,
    )
    with torch.no_grad():  # non-trivial LayerNorm parameters, so that copying them is tested too
        for norm in (layer.norm1, layer.norm2):
            norm.weight.normal_(1.0, 0.1)
            if norm.bias is not None:
                norm.bias.normal_(0.0, 0.1)
    return layer.eval()


@pytest.mark.parametrize("d_model, nhead", CONFIGS)
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("graph_form", ["implicit", "materialised"])
def test_equals_torch_encoder_layer(d_model, nhead, norm_first, activation, graph_form):
    torch_layer = _torch_layer(d_model, nhead, norm_first, activation)
    layer = gf.GraphTransformerLayer.from_torch(torch_layer)
    padded, mask, tokens, batch = sentence_batch(LENGTHS, d_model)
    graph = gf.fully_connected(batch)
    graph = graph if graph_form == "implicit" else graph.to_edge_index()
    expected = torch_layer(padded, src_key_padding_mask=mask)[~mask]
    out = layer(tokens, graph)
    assert (out - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("graph_form", ["implicit", "materialised"])
def test_causal_equals_is_causal(norm_first, graph_form):
    torch_layer = _torch_layer(32, 4, norm_first, "gelu")
    layer = gf.GraphTransformerLayer.from_torch(torch_layer)
    padded, mask, tokens, batch = sentence_batch(LENGTHS, 32)
    causal_mask = nn.Transformer.generate_square_subsequent_mask(max(LENGTHS))
    expected = torch_layer(padded, src_mask=causal_mask, is_causal=True,
                           src_key_padding_mask=mask.float().masked_fill(mask, float("-inf")))[~mask]
    graph = gf.causal(batch)
    graph = graph if graph_form == "implicit" else graph.to_edge_index()
    assert (layer(tokens, graph) - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("graph_form", ["implicit", "materialised"])
def test_same_gradients_for_input_and_parameters(norm_first, graph_form):
    torch_layer = _torch_layer(32, 4, norm_first, "relu")
    layer = gf.GraphTransformerLayer.from_torch(torch_layer)
    padded, mask, tokens, batch = sentence_batch(LENGTHS, 32)
    padded.requires_grad_(True)
    tokens = tokens.clone().requires_grad_(True)
    weight = torch.randn(tokens.shape)  # a loss that weighs every output differently
    (torch_layer(padded, src_key_padding_mask=mask)[~mask] * weight).sum().backward()
    graph = gf.fully_connected(batch)
    (layer(tokens, graph if graph_form == "implicit" else graph.to_edge_index()) * weight).sum().backward()
    torch.testing.assert_close(tokens.grad, padded.grad[~mask], atol=1e-5, rtol=1e-4)
    attn, mine = torch_layer.self_attn, layer.self_attn
    in_grads = attn.in_proj_weight.grad.chunk(3)
    in_bias_grads = attn.in_proj_bias.grad.chunk(3)
    for proj, grad, bias_grad in zip((mine.q_proj, mine.k_proj, mine.v_proj), in_grads, in_bias_grads):
        torch.testing.assert_close(proj.weight.grad, grad, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(proj.bias.grad, bias_grad, atol=1e-5, rtol=1e-4)
    pairs = [(mine.out_proj, attn.out_proj)] + [
        (getattr(layer, n), getattr(torch_layer, n)) for n in ("linear1", "linear2", "norm1", "norm2")
    ]
    for ours, theirs in pairs:
        torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ours.bias.grad, theirs.bias.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("final_norm", [False, True])
def test_stack_equals_torch_encoder(norm_first, final_norm):
    layers = [_torch_layer(32, 4, norm_first, "relu") for _ in range(3)]
    norm = nn.LayerNorm(32) if final_norm else None
    encoder = nn.TransformerEncoder(layers[0], 3, norm=norm, enable_nested_tensor=False)
    for slot, layer in zip(encoder.layers, layers):  # distinct weights per layer (no deep-copy clones)
        slot.load_state_dict(layer.state_dict())
    encoder.eval()
    model = gf.GraphTransformer.from_torch(encoder)
    assert model.num_layers == 3 and (model.norm is not None) == final_norm
    padded, mask, tokens, batch = sentence_batch(LENGTHS, 32)
    expected = encoder(padded, src_key_padding_mask=mask)[~mask]
    assert (model(tokens, gf.fully_connected(batch)) - expected).abs().max() <= 1e-5
    back = model.to_torch().eval()
    torch.testing.assert_close(back(padded, src_key_padding_mask=mask)[~mask], expected)


def test_to_torch_round_trip_and_bias_free_layers():
    layer = gf.GraphTransformerLayer(16, 2, 32, dropout=0.0, norm_first=True, bias=False).eval()
    torch_layer = layer.to_torch().eval()
    padded, mask, tokens, batch = sentence_batch([3, 5], 16)
    expected = torch_layer(padded, src_key_padding_mask=mask)[~mask]
    assert (layer(tokens, gf.fully_connected(batch)) - expected).abs().max() <= 1e-5
    again = gf.GraphTransformerLayer.from_torch(torch_layer)
    for (name, a), (_, b) in zip(layer.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name


def test_stack_layers_are_independently_initialised():
    model = gf.GraphTransformer(16, 2, 3)
    weights = [layer.linear1.weight for layer in model.layers]
    assert not torch.equal(weights[0], weights[1])


def test_gradcheck_float64():
    layer = gf.GraphTransformerLayer(8, 2, 16, dropout=0.0).double().eval()
    x = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    structure = gf.fully_connected(torch.tensor([0, 0, 0, 1, 1]))
    assert torch.autograd.gradcheck(lambda t: layer(t, structure), (x,))
    edge_index = random_graph(5, 8)
    assert torch.autograd.gradcheck(lambda t: layer(t, edge_index), (x,))
    stack = gf.GraphTransformer(8, 2, 2, 16, dropout=0.0, norm_first=True, final_norm=True).double().eval()
    assert torch.autograd.gradcheck(lambda t: stack(t, structure), (x,))


class MaxOfMeans(Aggregator):
    """A user's aggregator, as the README writes one."""

    def reduce(self, x, index, dim_size):
        return torch.maximum(Mean().reduce(x, index, dim_size), torch.zeros(()))


@pytest.mark.parametrize("aggr", ["sum", "mean", "max", MaxOfMeans()])
def test_swapped_aggregation_runs_on_sparse_and_complete_graphs(aggr):
    layer = gf.GraphTransformerLayer(16, 4, 32, dropout=0.0, aggr=aggr).eval()
    x = torch.randn(7, 16, requires_grad=True)
    structure = gf.fully_connected(torch.tensor([0, 0, 0, 1, 1, 1, 1]))
    out = layer(x, structure)
    torch.testing.assert_close(out, layer(x, structure.to_edge_index()))
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert layer(x, random_graph(7, 10)).shape == (7, 16)


def test_attention_weights_come_back_per_layer_and_sum_to_one():
    model = gf.GraphTransformer(16, 4, 2, dim_feedforward=32, dropout=0.0).eval()
    batch = torch.tensor([0, 0, 0, 1, 1])
    out, attention = model(torch.randn(5, 16), gf.fully_connected(batch), return_attention=True)
    assert out.shape == (5, 16) and len(attention) == 2
    edge_index, weights = attention[0]
    assert edge_index.shape == (2, 13) and weights.shape == (13, 4)
    sums = torch.zeros(5, 4).index_add_(0, edge_index[1], weights)
    torch.testing.assert_close(sums, torch.ones(5, 4))
    assert not hasattr(model.layers[0].self_attn, "_alpha")  # nothing stashed on the module


def test_accepts_pyg_batch():
    from torch_geometric.data import Batch, Data

    data = Batch.from_data_list([Data(x=torch.randn(n, 8), edge_index=random_graph(n, 5)) for n in (4, 6)])
    layer = gf.GraphTransformerLayer(8, 2, 16).eval()
    torch.testing.assert_close(layer(data), layer(data.x, data.edge_index))
    torch.testing.assert_close(layer(data, gf.fully_connected(data)), layer(data.x, gf.fully_connected(data.batch)))


def test_empty_graphs():
    layer = gf.GraphTransformerLayer(8, 2, 16).eval()
    assert layer(torch.randn(0, 8), gf.fully_connected(num_nodes=0)).shape == (0, 8)
    out = layer(torch.randn(3, 8), torch.empty(2, 0, dtype=torch.long))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: gf.GraphTransformerLayer(10, 3), ValueError, "divisible"),
        (lambda: gf.GraphTransformerLayer(8, 2, activation="swish"), ValueError, "unknown activation"),
        (lambda: gf.GraphTransformerLayer(8, 2, aggr="median-of-medians"), ValueError, "known names"),
        (lambda: gf.GraphTransformer(8, 2, 0), ValueError, "num_layers"),
        (lambda: gf.GraphTransformerLayer.from_torch(nn.Linear(2, 2)), TypeError, "TransformerEncoderLayer"),
        (lambda: gf.GraphTransformerLayer(8, 2)(torch.randn(3, 6), gf.fully_connected(num_nodes=3)),
         ValueError, "expects 8"),
        (lambda: gf.GraphTransformerLayer(8, 2)(torch.randn(3, 8), gf.fully_connected(num_nodes=4)),
         ValueError, "describes 4 nodes"),
        (lambda: gf.GraphTransformerLayer(8, 2)(torch.randn(3, 8), torch.tensor([[0, 1], [2, 7]])),
         ValueError, "index 7"),
        (lambda: gf.GraphTransformerLayer(8, 2, aggr="sum").to_torch(), ValueError, "torch counterpart"),
    ],
)
def test_bad_input(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_repr():
    text = repr(gf.GraphTransformerLayer(8, 2, 16, norm_first=True))
    assert text.startswith(
        "GraphTransformerLayer(\n  d_model=8, nhead=2, dim_feedforward=16, dropout=0.1, activation=relu, "
        "norm_first=True"
    )
