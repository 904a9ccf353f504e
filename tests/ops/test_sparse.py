"""The memory-lean sparse attention against the gather/softmax/scatter reference (aggr.Attention)."""

from __future__ import annotations

import pytest
import torch

from graphformer.aggr import Attention
from graphformer.nn import AttentionConv, GATConv
from graphformer.ops import dot_product_scores
from graphformer.ops import sparse as sparse_module
from graphformer.ops.sparse import SparseAttention, csr_order, sparse_attention


def _graph(num_nodes: int, num_edges: int, seed: int, isolated: bool = False) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    high = num_nodes - 1 if isolated else num_nodes  # node N-1 gets no incoming edge
    source = torch.randint(0, num_nodes, (num_edges,), generator=gen)
    target = torch.randint(0, high, (num_edges,), generator=gen)
    return torch.stack([source, target])


def _reference(q, k, v, edge_index, bias=None):
    scores = dot_product_scores(q, k, edge_index)
    if bias is not None:
        scores = scores + bias
    values = v.index_select(0, edge_index[0])
    return Attention().reduce(values, edge_index[1], v.size(0), scores=scores)


@pytest.mark.parametrize("num_nodes,num_edges,heads,channels", [(7, 20, 1, 3), (12, 60, 3, 4), (30, 5, 2, 2)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_forward_and_grad_match_reference(num_nodes, num_edges, heads, channels, with_bias):
    gen = torch.Generator().manual_seed(num_nodes + num_edges)
    edge_index = _graph(num_nodes, num_edges, seed=num_edges, isolated=True)
    q, k, v = (torch.randn(num_nodes, heads, channels, generator=gen, dtype=torch.float64) for _ in range(3))
    bias = torch.randn(num_edges, heads, generator=gen, dtype=torch.float64) if with_bias else None
    inputs = [t.requires_grad_() for t in (q, k, v) + ((bias,) if with_bias else ())]
    out = sparse_attention(q, k, v, edge_index, bias=bias)
    ref = _reference(q, k, v, edge_index, bias)
    torch.testing.assert_close(out, ref)
    assert torch.all(out[-1] == 0)  # isolated target
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, inputs, grad)
    want = torch.autograd.grad(ref, inputs, grad)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("with_qk", [True, False])
def test_gradcheck(with_qk):
    gen = torch.Generator().manual_seed(0)
    edge_index = _graph(6, 15, seed=3)
    _, source, target = csr_order(edge_index)
    q, k, v = (torch.randn(6, 2, 3, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(3))
    bias = torch.randn(15, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    if with_qk:
        inputs = (q, k, v, bias, source, target, 0.5)
    else:
        inputs = (None, None, v, bias, source, target, 1.0)
    assert torch.autograd.gradcheck(SparseAttention.apply, inputs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_qk", [True, False])
def test_duplicate_edges_and_gather_path_match_reference(dtype, with_qk, monkeypatch):
    """Repeated (source, target) pairs (the CPU sampled product dedupes them); the gather path agrees too."""
    gen = torch.Generator().manual_seed(2)
    edge_index = _graph(9, 30, seed=4, isolated=True)
    edge_index = torch.cat([edge_index, edge_index[:, :10], edge_index[:, :3]], 1)  # duplicates, unsorted
    q, k, v = (torch.randn(9, 2, 5, generator=gen, dtype=dtype, requires_grad=True) for _ in range(3))
    bias = torch.randn(edge_index.size(1), 2, generator=gen, dtype=dtype, requires_grad=True)
    qk = (q, k) if with_qk else (None, None)
    inputs = [*((q, k) if with_qk else ()), v, bias]
    if with_qk:
        ref = _reference(q, k, v, edge_index, bias)
    else:
        ref = Attention().reduce(v.index_select(0, edge_index[0]), edge_index[1], 9, scores=bias)
    outs = [sparse_attention(*qk, v, edge_index, bias=bias)]
    monkeypatch.setattr(sparse_module, "_use_csr", lambda value, source: False)  # the gather path (off CPU)
    outs.append(sparse_attention(*qk, v, edge_index, bias=bias))
    grad = torch.randn_like(ref)
    want = torch.autograd.grad(ref, inputs, grad)
    for out in outs:
        torch.testing.assert_close(out, ref)
        for g, w in zip(torch.autograd.grad(out, inputs, grad), want):
            torch.testing.assert_close(g, w)


def test_empty_edge_set_gives_zeros():
    q, k, v = (torch.randn(4, 2, 3, requires_grad=True) for _ in range(3))
    edge_index = torch.zeros(2, 0, dtype=torch.long)
    out = sparse_attention(q, k, v, edge_index)
    assert torch.equal(out, torch.zeros(4, 2, 3))
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    assert all(torch.equal(g, torch.zeros_like(g)) for g in grads)


def test_csr_cache_follows_in_place_edits():
    edge_index = torch.tensor([[0, 1, 2, 0], [2, 0, 1, 0]])
    perm, _, target = csr_order(edge_index)
    assert perm is not None and torch.equal(target, torch.tensor([0, 0, 1, 2]))
    edge_index[1] = torch.tensor([0, 0, 0, 1])  # in place: new version, sorted now
    perm, _, target = csr_order(edge_index)
    assert perm is None and torch.equal(target, torch.tensor([0, 0, 0, 1]))


@pytest.mark.parametrize("sorted_edges", [True, False])
def test_cache_entries_are_freed_with_their_edge_index(sorted_edges):
    """The cache must not keep a graph alive (a view of it in the cached value would): mini-batch training
    makes a new edge_index per step."""
    import gc

    from graphformer.ops import sparse

    edge_index = _graph(30, 120, seed=5)
    if sorted_edges:
        edge_index = edge_index[:, torch.argsort(edge_index[1], stable=True)].contiguous()
    q, k, v = (torch.randn(30, 2, 4) for _ in range(3))
    before = len(sparse._CACHE)
    sparse_attention(q, k, v, edge_index)
    assert len(sparse._CACHE) > before
    del edge_index
    gc.collect()
    assert len(sparse._CACHE) == before


def test_saves_no_edge_by_channel_tensor():
    edge_index = _graph(50, 400, seed=1)
    q, k, v = (torch.randn(50, 2, 8, requires_grad=True) for _ in range(3))
    saved = []

    def pack(t):
        saved.append(t.shape)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        sparse_attention(q, k, v, edge_index).sum()
    assert (400, 2, 8) not in [tuple(s) for s in saved]


def test_validation_errors():
    v = torch.randn(3, 1, 2)
    with pytest.raises(ValueError, match="bias"):
        sparse_attention(None, None, v, torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="key"):
        sparse_attention(v, None, v, torch.zeros(2, 1, dtype=torch.long))


@pytest.mark.parametrize("edge_dim", [None, 3])
def test_attention_conv_lean_equals_reference(edge_dim):
    torch.manual_seed(0)
    conv = AttentionConv(8, 2, edge_dim=edge_dim).double()
    x = torch.randn(20, 8, dtype=torch.float64, requires_grad=True)
    edge_index = _graph(20, 90, seed=5)
    edge_attr = torch.randn(90, 3, dtype=torch.float64) if edge_dim else None
    out = conv(x, edge_index, edge_attr)
    ref, _ = conv(x, edge_index, edge_attr, return_attention=True)  # the reference path
    torch.testing.assert_close(out, ref)
    g1 = torch.autograd.grad(out.square().sum(), [x, *conv.parameters()])
    g2 = torch.autograd.grad(ref.square().sum(), [x, *conv.parameters()])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("heads,concat,edge_dim", [(1, True, None), (3, True, 2), (2, False, None)])
def test_gat_conv_lean_equals_reference_and_pyg(heads, concat, edge_dim):
    from torch_geometric.nn import GATConv as PyGGATConv

    torch.manual_seed(1)
    conv = GATConv(6, 4, heads=heads, concat=concat, edge_dim=edge_dim).double()
    x = torch.randn(15, 6, dtype=torch.float64, requires_grad=True)
    edge_index = _graph(15, 50, seed=7)
    edge_attr = torch.randn(50, 2, dtype=torch.float64) if edge_dim else None
    out = conv(x, edge_index, edge_attr)
    ref, _ = conv(x, edge_index, edge_attr, return_attention=True)
    torch.testing.assert_close(out, ref)
    g1 = torch.autograd.grad(out.square().sum(), [x, *conv.parameters()])
    g2 = torch.autograd.grad(ref.square().sum(), [x, *conv.parameters()])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)
    pyg = PyGGATConv(6, 4, heads=heads, concat=concat, edge_dim=edge_dim).double()
    with torch.no_grad():
        pyg.lin.weight.copy_(conv.lin.weight)
        pyg.att_src.copy_(conv.att_src)
        pyg.att_dst.copy_(conv.att_dst)
        if edge_dim:
            pyg.lin_edge.weight.copy_(conv.lin_edge.weight)
            pyg.att_edge.copy_(conv.att_edge)
        pyg.bias.copy_(conv.bias)
    torch.testing.assert_close(out, pyg(x, edge_index, edge_attr))


def test_gat_conv_cache_entries_are_freed_with_their_edge_index():
    import gc

    import graphformer as gf
    from graphformer.ops import sparse

    conv = gf.GATConv(4, 3, heads=2)
    edge_index = _graph(30, 120, seed=6)
    before = len(sparse._CACHE)
    conv(torch.randn(30, 4), edge_index)
    assert len(sparse._CACHE) > before
    del edge_index
    gc.collect()
    assert len(sparse._CACHE) == before


def test_int32_edge_index_with_many_nodes_equals_int64():
    """(target, source) pairs are formed in int64: in int32, 100000^2 wraps and distinct edges collide."""
    num_nodes = 100_000
    edge_index = torch.tensor([[0, 1, 32704, 32705], [50000, 50000, 7050, 7050]])
    q, k, v = (torch.randn(num_nodes, 1, 2, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(sparse_attention(q, k, v, edge_index.int()), sparse_attention(q, k, v, edge_index))


def test_inference_mode_works_for_layers_and_inference_tensors():
    import graphformer as gf

    gat, attention = gf.GATConv(6, 3, heads=2), gf.AttentionConv(6, 2)
    x = torch.randn(5, 6)
    expected = gat(x, torch.tensor([[0, 1, 2, 3, 4, 0], [1, 2, 3, 4, 0, 3]]))
    with torch.inference_mode():
        edge_index = torch.tensor([[0, 1, 2, 3, 4, 0], [1, 2, 3, 4, 0, 3]])  # an inference tensor
        torch.testing.assert_close(gat(x, edge_index), expected)
        assert attention(x, edge_index).shape == (5, 6)


@pytest.mark.parametrize("return_weights", [False, True])
def test_double_backward_raises_instead_of_being_silently_wrong(return_weights):
    edge_index = torch.tensor([[0, 1, 2, 0], [1, 1, 1, 2]])
    q, k, v = (torch.randn(3, 1, 2, dtype=torch.float64, requires_grad=True) for _ in range(3))
    result = sparse_attention(q, k, v, edge_index, return_weights=return_weights, dropout=0.2 * return_weights)
    out = result[0] if return_weights else result
    with pytest.raises(RuntimeError, match="first-order gradients only.*aggregator other than the plain"):
        torch.autograd.grad(out.pow(2).sum(), q, create_graph=True)


def test_double_backward_through_the_reference_path_with_an_attention_subclass():
    """The escape route the error names: any aggregator but the plain Attention runs the reference."""
    import graphformer as gf

    class MyAttention(Attention):
        pass

    conv = gf.AttentionConv(4, 2, aggr=MyAttention()).double()
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 0], [1, 2, 3, 4, 0, 3]])
    assert torch.autograd.gradgradcheck(lambda t: conv(t, edge_index, return_attention=True)[0], (x,))


@pytest.mark.parametrize("with_query", [True, False])
def test_positive_infinite_score_is_the_largest_not_nan(with_query):
    edge_index = torch.tensor([[0, 1, 2, 4], [1, 1, 3, 3]])
    bias = torch.randn(4, 2)
    bias[0, 0] = float("inf")
    v = torch.randn(5, 2, 3)
    q = k = torch.randn(5, 2, 3) if with_query else None
    out = sparse_attention(q, k, v, edge_index, bias=bias)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1, 0], v[0, 0])  # all weight on the +inf edge (source 0) for head 0
