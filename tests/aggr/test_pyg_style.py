"""Aggregators written PyG's way (override ``forward(x, index, ptr, dim_size, dim)``) next to graphformer's way
(implement ``reduce(x, index, dim_size)`` / ``normalize(scores, index, dim_size)``), alone and inside GraphConv,
GATConv and GraphTransformerLayer; oracles: a plain loop, the same class body as a genuine PyG ``Aggregation``,
and the built-in layers with rescaled weights."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch_geometric
from torch import Tensor, nn
from torch_geometric.utils import softmax as pyg_softmax

import graphformer as gf
from graphformer.aggr import Aggregator, ScoreAggregator, segment_softmax
from tests.conftest import random_graph

# ------------------------------------------------------------------------------------- the user's aggregators


class PyGSumOfSquares(Aggregator):
    """PyG style, with PyG's scatter helper ``self.reduce``: h_i = sum_j x_j^2."""

    def forward(self, x, index=None, ptr=None, dim_size=None, dim=-2):
        return self.reduce(x * x, index, ptr, dim_size, dim, reduce="sum")


class PyGRange(Aggregator):
    """PyG style, ``self.reduce`` twice: h_i = max_j x_j - min_j x_j."""

    def forward(self, x, index=None, ptr=None, dim_size=None, dim=-2):
        high = self.reduce(x, index, ptr, dim_size, dim, reduce="max")
        return high - self.reduce(x, index, ptr, dim_size, dim, reduce="min")


class PyGRootMeanSquare(Aggregator):
    """PyG style with plain torch ops: h_i = sqrt(mean_j x_j^2) (0 without messages)."""

    def forward(self, x, index=None, ptr=None, dim_size=None, dim=-2):
        x = x.movedim(dim, 0)
        total = x.new_zeros(dim_size, *x.shape[1:]).index_add_(0, index, x * x)
        count = torch.bincount(index, minlength=dim_size).clamp(min=1).view(-1, *([1] * (x.dim() - 1)))
        return (total / count).sqrt().movedim(0, dim)


class OursSumOfSquares(Aggregator):
    """graphformer style: the same aggregation as ``PyGSumOfSquares``."""

    def reduce(self, x, index, dim_size):
        return x.new_zeros(dim_size, *x.shape[1:]).index_add_(0, index, x * x)


class NativePyGSumOfSquares(torch_geometric.nn.aggr.Aggregation):
    """The class body of ``PyGSumOfSquares`` as a genuine PyG aggregation (the oracle)."""

    def forward(self, x, index=None, ptr=None, dim_size=None, dim=-2):
        return self.reduce(x * x, index, ptr, dim_size, dim, reduce="sum")


class PyGTemperatureSoftmax(ScoreAggregator):
    """PyG style score aggregator: h_i = sum_j softmax_j(s_ij / tau) x_j, with PyG's ``softmax``."""

    def __init__(self, tau: float = 0.5, learn: bool = False):
        super().__init__()
        self.tau = nn.Parameter(torch.tensor(tau)) if learn else tau

    def forward(self, x, index, ptr=None, dim_size=None, dim=0, scores=None):
        alpha = pyg_softmax(scores / self.tau, index, ptr, dim_size, dim=0)  # [E, H]
        return self.reduce(x * alpha.unsqueeze(-1), index, ptr, dim_size, dim, reduce="sum")


class OursTemperatureSoftmax(ScoreAggregator):
    """graphformer style: the same normalisation as ``PyGTemperatureSoftmax``."""

    def __init__(self, tau: float = 0.5, learn: bool = False):
        super().__init__()
        self.tau = nn.Parameter(torch.tensor(tau)) if learn else tau

    def normalize(self, scores, index, dim_size):
        return segment_softmax(scores / self.tau, index, dim_size)


def loop_reduce(x: Tensor, index: Tensor, dim_size: int, fn) -> Tensor:
    """``fn`` over each target's messages (edges first); zeros for targets without messages."""
    rows = [fn(x[index == i]) if bool((index == i).any()) else x.new_zeros(x.shape[1:]) for i in range(dim_size)]
    return torch.stack(rows)


LOOPS = {
    PyGSumOfSquares: lambda m: (m * m).sum(0),
    PyGRange: lambda m: m.amax(0) - m.amin(0),
    PyGRootMeanSquare: lambda m: (m * m).mean(0).sqrt(),
    OursSumOfSquares: lambda m: (m * m).sum(0),
}

# --------------------------------------------------------------------------------------------- aggregators


@pytest.mark.parametrize("klass", list(LOOPS))
def test_both_styles_match_a_loop(klass):
    x = torch.randn(12, 5)
    index = torch.tensor([0, 0, 1, 3, 3, 3, 4, 4, 0, 1, 6, 6])
    aggr = klass()
    want = loop_reduce(x, index, 8, LOOPS[klass])
    torch.testing.assert_close(aggr(x, index, dim_size=8), want)
    torch.testing.assert_close(aggr.reduce(x, index, 8), want)  # graphformer's internal form, edges first
    torch.testing.assert_close(aggr(x.t().unsqueeze(0), index, dim_size=8, dim=-1), want.t().unsqueeze(0))
    torch.testing.assert_close(aggr(x, index, dim_size=8, dim=0), want)
    ptr = torch.tensor([0, 3, 5, 5, 9, 12])  # sorted messages, segments by ptr only
    sorted_index = torch.repeat_interleave(torch.arange(5), ptr.diff())
    torch.testing.assert_close(aggr(x, ptr=ptr), loop_reduce(x, sorted_index, 5, LOOPS[klass]))
    assert klass.pyg_style == (klass is not OursSumOfSquares)


def test_pyg_style_subclass_is_a_module_like_any_other():
    aggr = PyGSumOfSquares()
    assert isinstance(aggr, torch_geometric.nn.aggr.Aggregation)
    assert repr(aggr) == "PyGSumOfSquares()"
    x, index = torch.randn(6, 3), torch.tensor([0, 0, 1, 2, 2, 2])
    for clone in (copy.deepcopy(aggr), pickle.loads(pickle.dumps(aggr))):
        torch.testing.assert_close(clone(x, index), aggr(x, index))
    multi = gf.aggr.resolve(["mean", PyGSumOfSquares()])  # Multi calls its parts' reduce(x, index, dim_size)
    torch.testing.assert_close(multi(x, index), torch.cat([gf.aggr.Mean()(x, index), aggr(x, index)], -1))
    with pytest.raises(ValueError, match="dim_size"):  # graphformer's input checks run before the user's forward
        aggr(x, index, dim_size=2)


def test_neither_style_is_a_clear_error():
    class Nothing(Aggregator):
        pass

    class NoScores(ScoreAggregator):
        pass

    with pytest.raises(TypeError, match=r"neither graphformer's reduce\(...\) nor PyG's forward"):
        Nothing()
    with pytest.raises(TypeError, match=r"neither graphformer's normalize\(...\) nor PyG's forward"):
        NoScores()


def test_pyg_style_score_aggregator_weights_match_its_forward():
    index = torch.tensor([0, 0, 0, 2, 2, 3])
    scores = torch.randn(6, 2, requires_grad=True)
    aggr = PyGTemperatureSoftmax(tau=0.7)
    weights = aggr.weights(scores, index, 4)  # read off forward by one backward pass
    want = pyg_softmax(scores / 0.7, index, num_nodes=4)
    torch.testing.assert_close(weights, want)
    (grad,) = torch.autograd.grad((weights * torch.arange(12.0).view(6, 2)).sum(), scores)  # differentiable
    (want_grad,) = torch.autograd.grad((want * torch.arange(12.0).view(6, 2)).sum(), scores)
    torch.testing.assert_close(grad, want_grad)
    values = torch.randn(6, 2, 3)
    out, returned = aggr(values, index, dim_size=4, scores=scores, return_weights=True)
    torch.testing.assert_close(returned, want)
    torch.testing.assert_close(out, aggr(values, index, dim_size=4, scores=scores))  # the user's forward
    with torch.inference_mode():
        torch.testing.assert_close(aggr.weights(scores.detach(), index, 4), want.detach())


# ------------------------------------------------------------------------------------------------- layers


@pytest.mark.parametrize("klass", [PyGSumOfSquares, PyGRange, PyGRootMeanSquare, OursSumOfSquares])
def test_graph_conv(klass):
    edge_index = random_graph(9, 30, seed=1)
    x = torch.randn(9, 6)
    conv = gf.GraphConv(6, 4, aggr=klass())
    aggregated = loop_reduce(x[edge_index[0]], edge_index[1], 9, LOOPS[klass])
    want = conv.lin_rel(aggregated) + conv.lin_root(x)
    torch.testing.assert_close(conv(x, edge_index), want)


def test_graph_conv_pyg_style_equals_native_pyg_aggregation():
    edge_index = random_graph(9, 30, seed=2)
    x = torch.randn(9, 6)
    ours = gf.GraphConv(6, 4, aggr=PyGSumOfSquares())
    native = gf.GraphConv(6, 4, aggr=NativePyGSumOfSquares())
    native.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x, edge_index), native(x, edge_index))


@pytest.mark.parametrize("klass", [PyGSumOfSquares, PyGRootMeanSquare])
def test_graph_transformer_layer_plain_aggregator(klass):
    """A plain aggregator in GraphTransformerLayer aggregates the values, heads side by side, without scores."""
    edge_index = random_graph(8, 26, seed=3)
    x = torch.randn(8, 12)
    layer = gf.GraphTransformerLayer(12, 3, dim_feedforward=16, dropout=0.0, aggr=klass()).eval()
    reference = gf.GraphTransformerLayer(12, 3, dim_feedforward=16, dropout=0.0,
                                         aggr=NativePyGSumOfSquares() if klass is PyGSumOfSquares else klass())
    reference.load_state_dict(layer.state_dict())
    torch.testing.assert_close(layer(x, edge_index), reference.eval()(x, edge_index))
    # and by hand: out_proj(AGG_j v_j), residual, norm, feed-forward
    attn = layer.self_attn
    values = attn.v_proj(x)[edge_index[0]]  # [E, H*C]
    attended = attn.out_proj(loop_reduce(values, edge_index[1], 8, LOOPS[klass]))
    h = layer.norm1(x + attended)
    want = layer.norm2(h + layer.linear2(layer.activation(layer.linear1(h))))
    torch.testing.assert_close(layer(x, edge_index), want)


def _scaled_gat(conv: gf.GATConv, tau: float) -> gf.GATConv:
    """softmax(leaky_relu(s) / tau) = softmax(leaky_relu(s / tau)): the built-in GATConv with att / tau."""
    reference = gf.GATConv(conv.in_channels, conv.out_channels, heads=conv.heads)
    reference.load_state_dict(conv.state_dict())
    with torch.no_grad():
        reference.att_src.div_(tau)
        reference.att_dst.div_(tau)
    return reference


@pytest.mark.parametrize("klass", [PyGTemperatureSoftmax, OursTemperatureSoftmax])
def test_gat_conv_score_aggregator(klass):
    edge_index = random_graph(10, 35, seed=4)
    x = torch.randn(10, 6)
    conv = gf.GATConv(6, 4, heads=2, aggr=klass(tau=0.5))
    reference = _scaled_gat(conv, 0.5)
    out, (edges, weights) = conv(x, edge_index, return_attention_weights=True)
    want, (want_edges, want_weights) = reference(x, edge_index, return_attention_weights=True)
    torch.testing.assert_close(out, want)
    assert torch.equal(edges, want_edges)
    torch.testing.assert_close(weights, want_weights)
    pyg = torch_geometric.nn.GATConv(6, 4, heads=2)  # and PyG's own GATConv with the same weights
    pyg.load_state_dict(reference.state_dict())
    torch.testing.assert_close(out, pyg(x, edge_index))


def test_gat_conv_learnable_temperature_gradients_agree():
    edge_index = random_graph(10, 35, seed=5)
    x = torch.randn(10, 6)
    convs = [gf.GATConv(6, 4, heads=2, aggr=klass(tau=0.8, learn=True))
             for klass in (PyGTemperatureSoftmax, OursTemperatureSoftmax)]
    convs[1].load_state_dict(convs[0].state_dict())
    grads = []
    for conv in convs:
        conv(x, edge_index).pow(2).sum().backward()
        grads.append((conv.attention.tau.grad, conv.att_src.grad))
    assert grads[0][0] is not None and grads[0][0].abs() > 0
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("klass", [PyGTemperatureSoftmax, OursTemperatureSoftmax])
def test_graph_transformer_layer_score_aggregator(klass):
    """softmax(q.k / (sqrt(C) tau)): the built-in layer with q_proj scaled by 1 / tau."""
    edge_index = random_graph(8, 30, seed=6)
    x = torch.randn(8, 12)
    layer = gf.GraphTransformerLayer(12, 3, dim_feedforward=16, dropout=0.0, aggr=klass(tau=0.5)).eval()
    reference = gf.GraphTransformerLayer(12, 3, dim_feedforward=16, dropout=0.0).eval()
    reference.load_state_dict(layer.state_dict())
    with torch.no_grad():
        reference.self_attn.q_proj.weight.div_(0.5)
        reference.self_attn.q_proj.bias.div_(0.5)
    out, (_, weights) = layer(x, edge_index, return_attention=True)
    want, (_, want_weights) = reference(x, edge_index, return_attention=True)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(weights, want_weights)
    torch.testing.assert_close(layer(x, edge_index), want)
