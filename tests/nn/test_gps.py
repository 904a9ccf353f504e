"""GPSLayer against PyG's GPSConv (weights copied with from_pyg; softmax and Performer attention), the linear
attention kinds, gradcheck, half precision and bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GATConv as PyGGATConv
from torch_geometric.nn import GINConv, GPSConv

import graphformer as gf
from graphformer.nn import GPSLayer

CHANNELS, HEADS = 8, 2


def _batch(sizes: list[int], channels: int = CHANNELS, seed: int = 0, dtype=torch.float32) -> Batch:
    """A PyG Batch of random graphs of ``sizes`` nodes (about 2 edges per node; the last node of the first graph
    isolated)."""
    gen = torch.Generator().manual_seed(seed)
    graphs = []
    for i, size in enumerate(sizes):
        edges = torch.randint(0, size, (2, 2 * size), generator=gen)
        if i == 0 and size > 1:
            edges = edges[:, (edges != size - 1).all(0)]
        graphs.append(Data(x=torch.randn(size, channels, generator=gen, dtype=dtype), edge_index=edges))
    return Batch.from_data_list(graphs)


def _local(kind: str) -> nn.Module | None:
    if kind == "pyg_gin":
        return GINConv(nn.Sequential(nn.Linear(CHANNELS, CHANNELS), nn.ReLU(), nn.Linear(CHANNELS, CHANNELS)))
    if kind == "pyg_gat":
        return PyGGATConv(CHANNELS, CHANNELS // HEADS, heads=HEADS)
    if kind == "gf_gat":
        return gf.GATConv(CHANNELS, CHANNELS // HEADS, heads=HEADS)
    return None


@pytest.mark.parametrize("norm", ["batch_norm", "layer_norm"])
@pytest.mark.parametrize("conv", ["pyg_gin", "pyg_gat", "gf_gat", None])
def test_from_pyg_equals_gps_conv_forward_and_gradients(conv, norm):
    pyg = GPSConv(CHANNELS, _local(conv), heads=HEADS, norm=norm, attn_kwargs={"dropout": 0.1})
    with torch.no_grad():  # non-trivial norm statistics and affine parameters
        for module in (pyg.norm1, pyg.norm2, pyg.norm3):
            if module is not None:
                for p in module.parameters():
                    p.add_(0.1 * torch.randn_like(p))
    warmup = _batch([4, 9])
    pyg(warmup.x, warmup.edge_index, warmup.batch)  # in train mode: BatchNorm's running statistics move
    pyg.eval()
    ours = GPSLayer.from_pyg(pyg)
    assert not ours.training and ours.conv is pyg.conv and ours.attn.attention.dropout == 0.1
    data = _batch([5, 1, 12, 7, 3])
    x = data.x.clone().requires_grad_()
    x_ref = data.x.clone().requires_grad_()
    out = ours(x, data.edge_index, data.batch)
    expected = pyg(x_ref, data.edge_index, data.batch)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    weights = torch.randn_like(out)
    mine = dict(ours.named_parameters())  # the local conv is shared: its parameters appear under the same names
    theirs = dict(pyg.named_parameters())
    grads = torch.autograd.grad((out * weights).sum(), [x, *mine.values()], allow_unused=True)
    expected_grads = torch.autograd.grad((expected * weights).sum(), [x_ref, *theirs.values()], allow_unused=True)
    torch.testing.assert_close(grads[0], expected_grads[0], atol=1e-5, rtol=1e-5)
    mine, theirs = dict(zip(mine, grads[1:])), dict(zip(theirs, expected_grads[1:]))
    # attention: PyG's stacked in_proj against our q/k/v projections
    for name in ("weight", "bias"):
        stacked = torch.cat([mine.pop(f"attn.{proj}_proj.{name}") for proj in "qkv"])
        torch.testing.assert_close(stacked, theirs.pop(f"attn.in_proj_{name}"), atol=1e-5, rtol=1e-5)
    assert mine.keys() == theirs.keys()
    for name, grad in theirs.items():  # norm1 is unused without a local conv, on both sides
        if grad is None:
            assert mine[name] is None, name
        else:
            torch.testing.assert_close(mine[name], grad, atol=1e-5, rtol=1e-5, msg=name)


def test_loads_a_gps_conv_state_dict():
    pyg = GPSConv(CHANNELS, _local("pyg_gin"), heads=HEADS).eval()
    ours = GPSLayer(CHANNELS, _local("pyg_gin"), heads=HEADS).eval()
    ours.load_state_dict(pyg.state_dict())
    data = _batch([5, 2, 8])
    torch.testing.assert_close(ours(data.x, data.edge_index, data.batch), pyg(data.x, data.edge_index, data.batch),
                               atol=1e-5, rtol=1e-5)
    ours.load_state_dict(ours.state_dict())  # its own state_dict still loads


def test_gradcheck_float64():
    data = _batch([3, 1, 4], channels=4, dtype=torch.float64)
    conv = GINConv(nn.Linear(4, 4)).double()
    layer = GPSLayer(4, conv, heads=2, norm="layer_norm").double().eval()
    x = data.x.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: layer(x, data.edge_index, data.batch), (x,), fast_mode=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("norm", ["batch_norm", "layer_norm"])
def test_half_precision_on_cpu_has_no_nan(dtype, norm):
    data = _batch([4, 1, 6], seed=1)  # graph 0 has an isolated node; graph 1 has a single node
    layer = GPSLayer(CHANNELS, gf.GATConv(CHANNELS, CHANNELS // HEADS, heads=HEADS), heads=HEADS, norm=norm)
    reference = layer.eval()(data.x, data.edge_index, data.batch)
    layer = layer.to(dtype)
    out = layer(data.x.to(dtype), data.edge_index, data.batch)
    assert out.dtype == dtype and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), reference, atol=0.1, rtol=0.1)


def test_train_mode_runs_and_gives_gradients():
    data = _batch([5, 8, 2, 11], seed=2)
    layer = GPSLayer(CHANNELS, _local("pyg_gin"), heads=HEADS, dropout=0.2, attn_kwargs={"dropout": 0.2}).train()
    x = data.x.clone().requires_grad_()
    layer(x, data.edge_index, data.batch).pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())


def test_single_graph_without_batch_and_repr():
    layer = GPSLayer(CHANNELS, None, heads=HEADS, norm=None).eval()
    data = _batch([6])
    torch.testing.assert_close(layer(data.x, data.edge_index), layer(data.x, data.edge_index, data.batch))
    assert layer.extra_repr() == "8, heads=2, dropout=0.0, attn_type=multihead"
    assert "(attn): AttentionConv" in repr(layer)
    layer.reset_parameters()


def test_bad_input_names_the_argument():
    layer = GPSLayer(CHANNELS, _local("pyg_gin"), heads=HEADS)
    data = _batch([3, 4])
    with pytest.raises(ValueError, match="x"):
        layer(torch.randn(7, CHANNELS + 1), data.edge_index, data.batch)
    with pytest.raises(ValueError, match="batch"):
        layer(data.x, data.edge_index, data.batch[:-1])
    with pytest.raises(ValueError, match="batch.*sorted"):
        layer(data.x, data.edge_index, data.batch.flip(0))
    with pytest.raises(ValueError, match="attn_type"):
        GPSLayer(CHANNELS, None, attn_type="bigbird")
    with pytest.raises(ValueError, match="heads"):
        GPSLayer(CHANNELS, None, heads=3)
    with pytest.raises(ValueError, match="attn_kwargs"):
        GPSLayer(CHANNELS, None, attn_kwargs={"add_zero_attn": True})
    with pytest.raises(TypeError, match="GPSConv"):
        GPSLayer.from_pyg(layer)


# -- linear global attention: attn_type="performer" (PyG's GPSConv) and "sgformer" --------------------------------
def _pyg_performer_gps(conv: str | None, norm: str, **attn_kwargs) -> GPSConv:
    torch.manual_seed(0)
    pyg = GPSConv(CHANNELS, _local(conv), heads=HEADS, norm=norm, attn_type="performer", attn_kwargs=attn_kwargs)
    with torch.no_grad():  # non-trivial norm statistics and affine parameters
        for module in (pyg.norm1, pyg.norm2, pyg.norm3):
            if module is not None:
                for p in module.parameters():
                    p.add_(0.1 * torch.randn_like(p))
    warmup = _batch([4, 4])
    pyg(warmup.x, warmup.edge_index, warmup.batch)  # in train mode: BatchNorm's running statistics move
    return pyg.eval()


@pytest.mark.parametrize("sizes", [[6, 6, 6], [9]], ids=str)
@pytest.mark.parametrize("norm", ["batch_norm", "layer_norm"])
@pytest.mark.parametrize("conv", ["pyg_gin", None])
def test_from_pyg_performer_equals_gps_conv_in_eval_mode(conv, norm, sizes):
    # graphs of one size: PyG's padded Performer has no padding nodes, which would add to its normalisers
    pyg = _pyg_performer_gps(conv, norm, head_channels=8, qkv_bias=True, dropout=0.1)
    ours = GPSLayer.from_pyg(pyg)
    assert ours.attn_type == "performer" and not ours.training and ours.attn.dropout.p == 0.1
    assert torch.equal(ours.attn.fast_attn.projection_matrix, pyg.attn.fast_attn.projection_matrix)
    data = _batch(sizes)
    x, x_ref = data.x.clone().requires_grad_(), data.x.clone().requires_grad_()
    out, expected = ours(x, data.edge_index, data.batch), pyg(x_ref, data.edge_index, data.batch)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    weights = torch.randn_like(out)
    mine, theirs = dict(ours.named_parameters()), dict(pyg.named_parameters())
    assert mine.keys() == theirs.keys()  # the same names everywhere: no renaming needed
    grads = torch.autograd.grad((out * weights).sum(), [x, *mine.values()], allow_unused=True)
    expected_grads = torch.autograd.grad((expected * weights).sum(), [x_ref, *theirs.values()], allow_unused=True)
    for name, grad, expected_grad in zip(["x", *mine], grads, expected_grads):
        if expected_grad is None:
            assert grad is None, name
        else:
            torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=1e-5, msg=name)


def test_performer_on_unequal_sizes_equals_gps_conv_on_each_graph_alone():
    pyg = _pyg_performer_gps("pyg_gin", "batch_norm", head_channels=8)
    ours = GPSLayer.from_pyg(pyg)
    data = _batch([5, 1, 12, 7])
    out = ours(data.x, data.edge_index, data.batch)
    for i, graph in enumerate(data.to_data_list()):
        start, stop = int(data.ptr[i]), int(data.ptr[i + 1])
        torch.testing.assert_close(out[start:stop], pyg(graph.x, graph.edge_index), atol=1e-5, rtol=1e-5)


def test_loads_a_performer_gps_conv_state_dict():
    pyg = _pyg_performer_gps("pyg_gin", "batch_norm")  # PyG's defaults: 64 channels per head
    ours = GPSLayer(CHANNELS, _local("pyg_gin"), heads=HEADS, attn_type="performer").eval()
    ours.load_state_dict(pyg.state_dict())
    data = _batch([4, 4])
    torch.testing.assert_close(ours(data.x, data.edge_index, data.batch), pyg(data.x, data.edge_index, data.batch),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attn_type,attn_kwargs", [("performer", {"head_channels": 4}), ("sgformer", {}),
                                                   ("sgformer", {"normalize": "node", "qkv_bias": True})])
def test_linear_attention_kinds_gradcheck_and_training(attn_type, attn_kwargs):
    data = _batch([3, 1, 4], channels=4, dtype=torch.float64)
    layer = GPSLayer(4, GINConv(nn.Linear(4, 4)), heads=2, norm="layer_norm", attn_type=attn_type,
                     attn_kwargs=attn_kwargs).double().eval()
    x = data.x.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: layer(x, data.edge_index, data.batch), (x,), fast_mode=True)
    layer.train()
    layer(x, data.edge_index, data.batch).pow(2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())
    layer.reset_parameters()
    assert f"attn_type={attn_type}" in layer.extra_repr()


def test_sgformer_kind_is_simple_global_attention_per_graph():
    layer = GPSLayer(CHANNELS, None, heads=HEADS, norm=None, attn_type="sgformer").eval()
    assert isinstance(layer.attn, gf.SimpleGlobalAttention) and layer.attn.head_channels == CHANNELS
    data = _batch([5, 1, 12])
    out = layer(data.x, data.edge_index, data.batch)
    h = layer.attn(data.x, data.batch) + data.x
    torch.testing.assert_close(out, h + layer.mlp(h))
    torch.testing.assert_close(layer(data.x[:5], data.edge_index[:, :0]), out[:5])  # batch=None: one graph


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("attn_type", ["performer", "sgformer"])
def test_linear_attention_kinds_in_half_precision_have_no_nan(attn_type, dtype):
    data = _batch([4, 1, 6], seed=1)
    layer = GPSLayer(CHANNELS, gf.GATConv(CHANNELS, CHANNELS // HEADS, heads=HEADS), heads=HEADS,
                     norm="layer_norm", attn_type=attn_type).eval()
    reference = layer(data.x, data.edge_index, data.batch)
    out = layer.to(dtype)(data.x.to(dtype), data.edge_index, data.batch)
    assert out.dtype == dtype and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), reference, atol=0.1, rtol=0.1)


def test_linear_attention_kinds_bad_input_names_the_argument():
    data = _batch([3, 4])
    layer = GPSLayer(CHANNELS, None, heads=HEADS, attn_type="performer")
    with pytest.raises(ValueError, match="attn_bias"):
        layer(data.x, data.edge_index, data.batch, attn_bias=torch.zeros(25, HEADS))
    with pytest.raises(ValueError, match="batch"):
        layer(data.x, data.edge_index, data.batch[:-1])
    with pytest.raises(ValueError, match="attn_kwargs.*bias"):
        GPSLayer(CHANNELS, None, attn_type="performer", attn_kwargs={"bias": False})
    with pytest.raises(ValueError, match="attn_kwargs.*head_channels"):
        GPSLayer(CHANNELS, None, attn_type="sgformer", attn_kwargs={"head_channels": 4})
    with pytest.raises(ValueError, match="normalize"):
        GPSLayer(CHANNELS, None, attn_type="sgformer", attn_kwargs={"normalize": "rows"})


def test_from_pyg_refuses_an_attention_it_cannot_copy():
    layer = GPSConv(8, None, heads=2)
    layer.attn = nn.Identity()  # neither nn.MultiheadAttention nor PyG's PerformerAttention
    with pytest.raises(ValueError, match="`layer`.*Identity"):
        GPSLayer.from_pyg(layer)
