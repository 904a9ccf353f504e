"""PerformerAttention and SimpleGlobalAttention against PyG's modules (weights and projection copied), the paper's
SGFormer formula, their O(L^2) references, gradcheck, half precision and bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_geometric.nn.attention import PerformerAttention as PyGPerformerAttention
from torch_geometric.nn.attention import SGFormerAttention
from torch_geometric.utils import to_dense_batch

import graphformer as gf
from graphformer.nn import PerformerAttention, SimpleGlobalAttention
from graphformer.ops import linear_attention_reference, simple_attention_reference

CHANNELS, HEADS = 16, 2
SIZES = [5, 1, 12, 7, 3]


def _batch(sizes: list[int], channels: int = CHANNELS, dtype=torch.float32, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(sum(sizes), channels, generator=gen, dtype=dtype)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return x, batch, torch.tensor([0, *sizes]).cumsum(0)


def _pyg_performer(qkv_bias: bool = False, head_channels: int = 8) -> PyGPerformerAttention:
    torch.manual_seed(0)
    return PyGPerformerAttention(CHANNELS, HEADS, head_channels=head_channels, qkv_bias=qkv_bias).eval()


def _grads(out: torch.Tensor, inputs: list[torch.Tensor], weights: torch.Tensor) -> tuple:
    return torch.autograd.grad((out * weights).sum(), inputs)


# -- PerformerAttention ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("qkv_bias", [False, True])
def test_performer_equals_pyg_on_one_graph_forward_and_gradients(qkv_bias):
    pyg = _pyg_performer(qkv_bias)
    ours = PerformerAttention(CHANNELS, HEADS, head_channels=8, qkv_bias=qkv_bias).eval()
    ours.load_state_dict(pyg.state_dict())  # same names: the projection matrix comes along
    assert torch.equal(ours.fast_attn.projection_matrix, pyg.fast_attn.projection_matrix)
    x = torch.randn(9, CHANNELS, requires_grad=True)
    out, expected = ours(x), pyg(x.unsqueeze(0)).squeeze(0)
    torch.testing.assert_close(out, expected)
    weights = torch.randn_like(out)
    mine, theirs = [x, *ours.parameters()], [x, *pyg.parameters()]
    for grad, expected_grad in zip(_grads(out, mine, weights), _grads(expected, theirs, weights)):
        torch.testing.assert_close(grad, expected_grad)


def test_performer_equals_pyg_on_a_padded_batch_of_equal_sizes():
    pyg = _pyg_performer()
    ours = PerformerAttention(CHANNELS, HEADS, head_channels=8).eval()
    ours.load_state_dict(pyg.state_dict())
    x, batch, ptr = _batch([6, 6, 6])
    dense, mask = to_dense_batch(x, batch)
    torch.testing.assert_close(ours(x, ptr=ptr), pyg(dense, mask)[mask])
    torch.testing.assert_close(ours(x, batch), pyg(dense, mask)[mask])


def test_performer_on_unequal_sizes_equals_pyg_on_each_graph_alone():
    # PyG pads the batch and keeps the keys of padding nodes, which add phi(k_pad) >= epsilon to every graph's
    # normaliser; here each graph sees only its own nodes, i.e. what PyG gives on each graph alone
    pyg = _pyg_performer(qkv_bias=True)
    ours = PerformerAttention(CHANNELS, HEADS, head_channels=8, qkv_bias=True).eval()
    ours.load_state_dict(pyg.state_dict())
    x, batch, ptr = _batch(SIZES)
    out = ours(x, batch)
    for start, stop in zip(ptr[:-1].tolist(), ptr[1:].tolist()):
        torch.testing.assert_close(out[start:stop], pyg(x[start:stop].unsqueeze(0)).squeeze(0))


def test_performer_equals_the_quadratic_reference_with_gradients():
    layer = PerformerAttention(CHANNELS, HEADS, head_channels=4, qkv_bias=True).double()
    x, batch, _ = _batch(SIZES, dtype=torch.float64)
    x.requires_grad_()

    def reference(x):
        q, k, v = (proj(x).view(-1, HEADS, 4) for proj in (layer.q, layer.k, layer.v))
        features = layer.fast_attn.features
        out = linear_attention_reference(features(q), features(k), v, batch)
        return layer.attn_out(out.reshape(-1, HEADS * 4))

    out, expected = layer(x, batch), reference(x)
    torch.testing.assert_close(out, expected)
    weights = torch.randn_like(out)
    inputs = [x, *layer.parameters()]
    for grad, expected_grad in zip(_grads(out, inputs, weights), _grads(expected, inputs, weights)):
        torch.testing.assert_close(grad, expected_grad)


def test_performer_projection_is_redrawn_deterministically_and_defaults_follow_pyg():
    layer = PerformerAttention(CHANNELS, HEADS)
    assert layer.head_channels == 64 and layer.fast_attn.projection_matrix.shape == (int(64 * 4.1588830833), 64)
    layer.redraw_projection_matrix(torch.Generator().manual_seed(3))
    first = layer.fast_attn.projection_matrix.clone()
    layer.redraw_projection_matrix(torch.Generator().manual_seed(3))
    assert torch.equal(first, layer.fast_attn.projection_matrix)
    layer.reset_parameters()
    assert not torch.equal(first, layer.fast_attn.projection_matrix)
    assert "projection_matrix" not in dict(layer.named_parameters())  # a buffer: not trained
    assert PerformerAttention(CHANNELS, HEADS, head_channels=None).head_channels == CHANNELS // HEADS
    assert PerformerAttention(4, 4, head_channels=1).fast_attn.num_rows == 1  # PyG would draw 0 features


# -- SimpleGlobalAttention --------------------------------------------------------------------------------------
def test_simple_attention_node_normalized_equals_pyg_sgformer_attention_on_one_graph():
    torch.manual_seed(0)
    pyg = SGFormerAttention(CHANNELS, HEADS, head_channels=8)
    ours = SimpleGlobalAttention(CHANNELS, HEADS, head_channels=8, normalize="node")
    ours.load_state_dict(pyg.state_dict())
    x = torch.randn(11, CHANNELS, requires_grad=True)
    out, expected = ours(x), pyg(x.unsqueeze(0)).squeeze(0)
    torch.testing.assert_close(out, expected)
    weights = torch.randn_like(out)
    mine, theirs = [x, *ours.parameters()], [x, *pyg.parameters()]
    for grad, expected_grad in zip(_grads(out, mine, weights), _grads(expected, theirs, weights)):
        torch.testing.assert_close(grad, expected_grad)


def _sgformer_paper(x: torch.Tensor, wq: nn.Linear, wk: nn.Linear, wv: nn.Linear, heads: int) -> torch.Tensor:
    """The SGFormer paper's attention on one graph (its official TransConvLayer): Q, K divided by their Frobenius
    norms, numerator Q (K^T V) + N V, denominator Q (K^T 1) + N, heads averaged."""
    n = x.size(0)
    q, k, v = (w(x).reshape(n, heads, -1) for w in (wq, wk, wv))
    q, k = q / torch.norm(q, p=2), k / torch.norm(k, p=2)
    numerator = torch.einsum("nhm,hmd->nhd", q, torch.einsum("lhm,lhd->hmd", k, v)) + n * v
    denominator = torch.einsum("nhm,hm->nh", q, k.sum(0)).unsqueeze(-1) + n
    return (numerator / denominator).mean(dim=1)


def test_simple_attention_graph_normalized_equals_the_papers_formula_per_graph():
    layer = SimpleGlobalAttention(CHANNELS, HEADS, qkv_bias=True)  # the paper's code has biases
    x, batch, ptr = _batch(SIZES)
    out = layer(x, batch)
    assert out.shape == (x.size(0), CHANNELS)
    torch.testing.assert_close(layer(x, ptr=ptr), out)
    for start, stop in zip(ptr[:-1].tolist(), ptr[1:].tolist()):
        expected = _sgformer_paper(x[start:stop], layer.q, layer.k, layer.v, HEADS)
        torch.testing.assert_close(out[start:stop], expected)


@pytest.mark.parametrize("normalize", ["graph", "node"])
def test_simple_attention_equals_the_quadratic_reference_with_gradients(normalize):
    layer = SimpleGlobalAttention(CHANNELS, HEADS, head_channels=4, normalize=normalize).double()
    x, batch, _ = _batch(SIZES, dtype=torch.float64)
    x.requires_grad_()

    def reference(x):
        q, k, v = (proj(x).view(-1, HEADS, 4) for proj in (layer.q, layer.k, layer.v))
        return simple_attention_reference(q, k, v, batch, normalize=normalize).mean(1)

    out, expected = layer(x, batch), reference(x)
    torch.testing.assert_close(out, expected)
    weights = torch.randn_like(out)
    inputs = [x, *layer.parameters()]
    for grad, expected_grad in zip(_grads(out, inputs, weights), _grads(expected, inputs, weights)):
        torch.testing.assert_close(grad, expected_grad)


# -- both ---------------------------------------------------------------------------------------------------------
def _layers() -> list[nn.Module]:
    return [PerformerAttention(8, 2, head_channels=4, qkv_bias=True), SimpleGlobalAttention(8, 2, head_channels=4),
            SimpleGlobalAttention(8, 2, normalize="node")]


@pytest.mark.parametrize("index", range(3))
def test_gradcheck_float64(index):
    layer = _layers()[index].double()
    x, batch, _ = _batch([3, 1, 4], channels=8, dtype=torch.float64)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: layer(x, batch), (x,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("index", range(3))
def test_half_precision_has_no_nan(index, dtype):
    layer = _layers()[index].eval()
    x, batch, _ = _batch([200, 1, 30], channels=8, seed=1)
    expected = layer(x, batch)
    out = layer.to(dtype)(x.to(dtype), batch)
    assert out.dtype == dtype and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), expected, atol=0.1, rtol=0.1)


@pytest.mark.parametrize("index", range(3))
def test_training_with_dropout_gives_gradients_and_repr(index):
    layer = _layers()[index].train()
    x, batch, _ = _batch(SIZES, channels=8)
    x.requires_grad_()
    layer(x, batch).pow(2).sum().backward()
    assert torch.isfinite(x.grad).all() and all(p.grad is not None for p in layer.parameters())
    assert "heads=2" in repr(layer) and "head_channels=" in layer.extra_repr()


def test_exported_from_the_package():
    assert gf.PerformerAttention is PerformerAttention and gf.nn.SimpleGlobalAttention is SimpleGlobalAttention


@pytest.mark.parametrize("index", range(3))
def test_bad_input_names_the_argument(index):
    layer = _layers()[index]
    x, batch, ptr = _batch([3, 4], channels=8)
    with pytest.raises(ValueError, match="`x` must have shape"):
        layer(x[0])
    with pytest.raises(ValueError, match="`x` has 7 features"):
        layer(torch.randn(7, 7))
    with pytest.raises(ValueError, match="`batch` has 6 entries"):
        layer(x, batch[:-1])
    with pytest.raises(ValueError, match="`ptr` ends at 6"):
        layer(x, ptr=torch.tensor([0, 3, 6]))
    with pytest.raises(TypeError, match="`x` has dtype torch.float64"):
        layer(x.double(), batch)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="`channels` \\(10\\) must be divisible by `heads` \\(3\\)"):
        PerformerAttention(10, 3)
    with pytest.raises(ValueError, match="`channels` \\(10\\) must be divisible by `heads` \\(4\\)"):
        SimpleGlobalAttention(10, 4)
    with pytest.raises(ValueError, match="`head_channels`"):
        PerformerAttention(8, 2, head_channels=0)
    with pytest.raises(ValueError, match="`dropout`"):
        PerformerAttention(8, 2, dropout=1.5)
    with pytest.raises(ValueError, match="`normalize`"):
        SimpleGlobalAttention(8, 2, normalize="frobenius")
