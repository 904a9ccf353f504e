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


# ------------------------------------------------------------------ training: dropout, returned weights, bipartite


def _bipartite_graph(num_sources: int, num_targets: int, num_edges: int, seed: int) -> torch.Tensor:
    """Random edges, the last target isolated, then some duplicates appended (unsorted)."""
    gen = torch.Generator().manual_seed(seed)
    source = torch.randint(0, num_sources, (num_edges,), generator=gen)
    target = torch.randint(0, num_targets - 1, (num_edges,), generator=gen)
    edge_index = torch.stack([source, target])
    return torch.cat([edge_index, edge_index[:, : num_edges // 4]], 1)


def _reference_with_weights(q, k, v, edge_index, bias, dropout, num_targets):
    """The gather/softmax/scatter reference in training mode: (out, post-dropout weights)."""
    scores = dot_product_scores(q, k, edge_index) if q is not None else 0
    if bias is not None:
        scores = scores + bias
    aggr = Attention(dropout=dropout).train()
    return aggr.reduce(v.index_select(0, edge_index[0]), edge_index[1], num_targets, scores=scores,
                       return_weights=True)


def _inputs(num_sources, num_targets, num_edges, heads, channels, dtype, with_qk, with_bias, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(num_targets, heads, channels, generator=gen, dtype=dtype) if with_qk else None
    k = torch.randn(num_sources, heads, channels, generator=gen, dtype=dtype) if with_qk else None
    v = torch.randn(num_sources, heads, channels, generator=gen, dtype=dtype)
    bias = torch.randn(num_edges, heads, generator=gen, dtype=dtype) if with_bias else None
    return [None if t is None else t.requires_grad_() for t in (q, k, v, bias)]


@pytest.mark.parametrize("path", ["csr", "gather"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sizes", [(12, 12), (9, 14), (15, 6)], ids=["square", "more_targets", "more_sources"])
@pytest.mark.parametrize("scores", ["qk", "qk_bias", "bias"])
@pytest.mark.parametrize("dropout", [0.0, 0.4])
def test_same_seed_lean_equals_reference(path, dtype, sizes, scores, dropout, monkeypatch):
    """With the same seed both paths draw the same mask: equal outputs, post-dropout weights and gradients of a loss
    using both."""
    if path == "gather":
        monkeypatch.setattr(sparse_module, "_use_csr", lambda value, source: False)
    num_sources, num_targets = sizes
    edge_index = _bipartite_graph(num_sources, num_targets, 40, seed=num_sources)
    q, k, v, bias = _inputs(num_sources, num_targets, edge_index.size(1), 3, 4, dtype, "qk" in scores,
                            "bias" in scores)
    inputs = [t for t in (q, k, v, bias) if t is not None]
    torch.manual_seed(7)
    out, weights = sparse_attention(q, k, v, edge_index, bias=bias, dropout=dropout, return_weights=True,
                                    num_targets=num_targets)
    torch.manual_seed(7)
    ref, ref_weights = _reference_with_weights(q, k, v, edge_index, bias, dropout, num_targets)
    assert out.shape == (num_targets, 3, 4) and weights.shape == (edge_index.size(1), 3)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(weights, ref_weights)
    assert torch.equal(weights == 0, ref_weights == 0)  # the same mask (softmax weights are > 0 here)
    assert torch.all(out[-1] == 0)  # isolated target
    gen = torch.Generator().manual_seed(1)
    grad_out, grad_weights = torch.randn(out.shape, generator=gen, dtype=dtype), torch.randn(weights.shape,
                                                                                            generator=gen, dtype=dtype)

    def loss(o, w):
        return (o * grad_out).sum() + (w * grad_weights).sum()

    for got, want in zip(torch.autograd.grad(loss(out, weights), inputs),
                         torch.autograd.grad(loss(ref, ref_weights), inputs, retain_graph=True)):
        torch.testing.assert_close(got, want)
    torch.manual_seed(7)  # without returned weights: same output and gradients of the output
    out_only = sparse_attention(q, k, v, edge_index, bias=bias, dropout=dropout, num_targets=num_targets)
    torch.testing.assert_close(out_only, ref)
    for got, want in zip(torch.autograd.grad((out_only * grad_out).sum(), inputs),
                         torch.autograd.grad((ref * grad_out).sum(), inputs)):
        torch.testing.assert_close(got, want)


def test_dropout_zero_equals_no_dropout_exactly():
    edge_index = _bipartite_graph(10, 10, 50, seed=2)
    q, k, v, bias = _inputs(10, 10, edge_index.size(1), 2, 3, torch.float32, True, True)
    plain = sparse_attention(q, k, v, edge_index, bias=bias)
    assert torch.equal(sparse_attention(q, k, v, edge_index, bias=bias, dropout=0.0), plain)
    out, weights = sparse_attention(q, k, v, edge_index, bias=bias, dropout=0.0, return_weights=True)
    assert torch.equal(out, plain)
    ref_out, ref_weights = Attention(dropout=0.0).train().reduce(
        v.index_select(0, edge_index[0]), edge_index[1], 10,
        scores=dot_product_scores(q, k, edge_index) + bias, return_weights=True)
    torch.testing.assert_close(weights, ref_weights)
    eval_out = Attention(dropout=0.5).eval().reduce(
        v.index_select(0, edge_index[0]), edge_index[1], 10, scores=dot_product_scores(q, k, edge_index) + bias)
    assert torch.equal(eval_out, ref_out)


def test_generator_fixes_the_mask_and_dropout_rate():
    edge_index = _bipartite_graph(200, 200, 4000, seed=3)
    v = torch.randn(200, 2, 3)
    bias = torch.zeros(edge_index.size(1), 2)

    def run(seed):
        return sparse_attention(None, None, v, edge_index, bias=bias, dropout=0.3, return_weights=True,
                                generator=torch.Generator().manual_seed(seed))[1]

    assert torch.equal(run(0), run(0)) and not torch.equal(run(0), run(1))
    assert abs((run(0) == 0).float().mean().item() - 0.3) < 0.03


@pytest.mark.parametrize("path", ["csr", "gather"])
@pytest.mark.parametrize("with_qk", [True, False])
def test_gradcheck_with_dropout_and_returned_weights(path, with_qk, monkeypatch):
    if path == "gather":
        monkeypatch.setattr(sparse_module, "_use_csr", lambda value, source: False)
    edge_index = _bipartite_graph(5, 7, 16, seed=4)
    q, k, v, bias = _inputs(5, 7, edge_index.size(1), 2, 3, torch.float64, with_qk, True)

    def fn(*tensors):
        qk = tensors[:2] if with_qk else (None, None)
        gen = torch.Generator().manual_seed(0)  # the same mask on every evaluation
        return sparse_attention(*qk, tensors[-2], edge_index, bias=tensors[-1], dropout=0.3, return_weights=True,
                                num_targets=7, generator=gen)

    inputs = tuple(t for t in (q, k, v, bias) if t is not None)
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradcheck(lambda *t: fn(*t)[0], inputs)  # output only (weights' gradient unused)


def test_dropout_saves_no_edge_by_channel_tensor():
    edge_index = _graph(50, 400, seed=1)
    q, k, v = (torch.randn(50, 2, 8, requires_grad=True) for _ in range(3))
    saved = []

    def pack(t):
        saved.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        sparse_attention(q, k, v, edge_index, dropout=0.5, return_weights=True)
    assert (400, 2, 8) not in saved


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("with_qk", [True, False])
def test_half_precision_equals_reference(dtype, with_qk):
    edge_index = _bipartite_graph(11, 9, 60, seed=5)
    q, k, v, bias = _inputs(11, 9, edge_index.size(1), 2, 8, dtype, with_qk, True)
    bias.data.mul_(3)
    inputs = [t for t in (q, k, v, bias) if t is not None]
    out, weights = sparse_attention(q, k, v, edge_index, bias=bias, return_weights=True, num_targets=9)
    assert out.dtype == dtype and weights.dtype == dtype
    assert torch.isfinite(out).all() and torch.all(out[-1] == 0)
    # the reference in float32 (the half-precision reference rounds its products; both are within half tolerance)
    ref_inputs = [None if t is None else t.detach().float().requires_grad_() for t in (q, k, v, bias)]
    ref_q, ref_k, ref_v, ref_bias = ref_inputs
    ref, ref_weights = _reference_with_weights(ref_q, ref_k, ref_v, edge_index, ref_bias, 0.0, 9)
    tol = {"atol": 2e-2, "rtol": 2e-2}
    torch.testing.assert_close(out.float(), ref, **tol)
    torch.testing.assert_close(weights.float(), ref_weights, **tol)
    grad = torch.randn(out.shape)
    for got, want in zip(torch.autograd.grad(out, inputs, grad.to(dtype)),
                         torch.autograd.grad(ref, [t for t in ref_inputs if t is not None], grad)):
        assert got.dtype == dtype
        torch.testing.assert_close(got.float(), want, **tol)
    half_ref = Attention().reduce(v.index_select(0, edge_index[0]), edge_index[1], 9,
                                  scores=(dot_product_scores(q, k, edge_index) if with_qk else 0) + bias)
    torch.testing.assert_close(out.float(), half_ref.float(), **tol)


def test_half_precision_all_masked_target_is_zero_not_nan():
    edge_index = torch.tensor([[0, 1, 2], [0, 0, 1]])
    v = torch.randn(3, 1, 4, dtype=torch.bfloat16)
    bias = torch.tensor([[0.0], [1.0], [float("-inf")]], dtype=torch.bfloat16)
    out = sparse_attention(None, None, v, edge_index, bias=bias, num_targets=3)
    assert torch.isfinite(out).all() and torch.all(out[1:] == 0)


def test_num_targets_must_match_query():
    q = torch.randn(4, 1, 2)
    with pytest.raises(ValueError, match="num_targets"):
        sparse_attention(q, q, q, torch.tensor([[0], [1]]), num_targets=5)


def test_compiled_over_graphs_of_different_sizes_recompiles_no_more_than_pyg():
    """``cached_on`` keeps its ``id()``-keyed cache out of compiled regions (dynamo would guard on the object and
    recompile for every new graph)."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    from torch_geometric.nn import TransformerConv

    gen = torch.Generator().manual_seed(0)
    graphs = [(torch.randn(n, 8, generator=gen), torch.randint(0, n, (2, e), generator=gen))
              for n, e in [(10, 30), (13, 50), (17, 70), (23, 90), (29, 120), (31, 150)]]

    def unique_graphs(fn):
        torch._dynamo.reset()
        counters.clear()
        compiled = torch.compile(fn, backend="eager")
        for x, edge_index in graphs:
            compiled(x.requires_grad_(), edge_index).sum().backward()
        return counters["stats"]["unique_graphs"]

    def ours(x, edge_index):
        q, k, v = ((x * scale).view(-1, 2, 4) for scale in (1.0, 0.5, 2.0))  # distinct tensors, as layers pass
        out, weights = sparse_attention(q, k, v, edge_index, dropout=0.1, return_weights=True)
        return out.sum() + weights.sum()

    torch.manual_seed(0)
    conv = TransformerConv(8, 4, heads=2, dropout=0.1)
    try:
        assert unique_graphs(ours) <= unique_graphs(lambda x, edge_index: conv(x, edge_index))
    finally:
        torch._dynamo.reset()
