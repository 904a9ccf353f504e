"""Density-based dispatch of ``dot_product_attention`` (ops/attention.py): long sparse structures take the sparse
path, dense ones the block path, with equal outputs and gradients."""

from __future__ import annotations

import pytest
import torch

import graphformer.ops.attention as attention
from graphformer.aggr import Attention
from graphformer.graphs import causal, fully_connected, window
from graphformer.graphs.sequence import Dilated
from graphformer.graphs.structure import BlockStructure
from graphformer.nn import AttentionConv


class _Spy:
    """Wraps a function, counting calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


@pytest.fixture
def spies(monkeypatch):
    dense, sparse = _Spy(attention.block_attention), _Spy(attention.sparse_attention)
    monkeypatch.setattr(attention, "block_attention", dense)
    monkeypatch.setattr(attention, "sparse_attention", sparse)
    return dense, sparse


def _qkv(num_nodes: int, dtype=torch.float64, heads: int = 2, channels: int = 4):
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(num_nodes, heads, channels, generator=gen, dtype=dtype).requires_grad_() for _ in range(3)]


def test_long_window_takes_sparse_path(spies):
    dense, sparse = spies
    structure = window(num_nodes=4096, radius=8)
    q, k, v = _qkv(4096, torch.float32)
    attention.dot_product_attention(q, k, v, structure, Attention())
    assert (sparse.calls, dense.calls) == (1, 0)
    cached = attention.sparse_edges_of(structure)
    assert cached is attention.sparse_edges_of(structure)  # materialised once per structure object
    assert torch.equal(cached, BlockStructure.to_edge_index(structure))


@pytest.mark.parametrize("make", [lambda n: fully_connected(num_nodes=n), lambda n: causal(num_nodes=n),
                                  lambda n: window(num_nodes=n, radius=n // 4)], ids=["complete", "causal", "wide"])
def test_dense_structures_take_block_path(spies, make):
    dense, sparse = spies
    q, k, v = _qkv(1024, torch.float32)
    attention.dot_product_attention(q, k, v, make(1024), Attention())
    assert (sparse.calls, dense.calls) == (0, 1)


def test_short_window_takes_block_path(spies):
    """Below SPARSE_MIN_PAIRS the sparse path's fixed cost loses to the masked dense path."""
    dense, sparse = spies
    q, k, v = _qkv(128, torch.float32)
    attention.dot_product_attention(q, k, v, window(num_nodes=128, radius=1), Attention())
    assert (sparse.calls, dense.calls) == (0, 1)


@pytest.mark.parametrize("reason,path", [("dropout", "sparse"), ("return_attention", "sparse"), ("half", "dense")])
def test_long_window_dispatch_in_training_configurations(spies, reason, path):
    """Attention dropout and returned weights stay on the lean path; half precision takes the block path (the
    density threshold is measured for the float32/64 sparse-dense products)."""
    dense, sparse = spies
    q, k, v = _qkv(2048, torch.bfloat16 if reason == "half" else torch.float32)
    aggr = Attention(dropout=0.5 if reason == "dropout" else 0.0)
    attention.dot_product_attention(q, k, v, window(num_nodes=2048, radius=2), aggr,
                                    return_attention=reason == "return_attention")
    assert (sparse.calls, dense.calls) == ((1, 0) if path == "sparse" else (0, 1))


@pytest.mark.parametrize("make", [lambda batch: window(batch, radius=3), lambda batch: Dilated(2, 3, batch)],
                         ids=["window", "dilated"])
def test_sparse_dispatch_equals_dense_path(monkeypatch, make):
    """Outputs and gradients of the dispatched sparse path equal the masked block path (ragged batch)."""
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor([300, 17, 200]))
    q, k, v = _qkv(batch.numel())
    monkeypatch.setattr(attention, "SPARSE_MIN_PAIRS", 0)
    structure = make(batch)
    assert attention.sparse_edges_of(structure) is not None
    out, _, _ = attention.dot_product_attention(q, k, v, structure, Attention())
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    monkeypatch.setattr(attention, "SPARSE_DENSITY_THRESHOLD", 0.0)  # force the masked block path
    assert attention.sparse_edges_of(structure) is None
    ref, _, _ = attention.dot_product_attention(q, k, v, structure, Attention())
    ref_grads = torch.autograd.grad(ref.square().sum(), (q, k, v))
    torch.testing.assert_close(out, ref)
    for grad, ref_grad in zip(grads, ref_grads):
        torch.testing.assert_close(grad, ref_grad)


def test_layer_on_implicit_window_equals_materialised(spies):
    dense, sparse = spies
    torch.manual_seed(0)
    layer = AttentionConv(16, 4)
    x = torch.randn(1024, 16, requires_grad=True)
    structure = window(num_nodes=1024, radius=4)
    out = layer(x, structure)
    (grad,) = torch.autograd.grad(out.sum(), x)
    ref = layer(x, structure.to_edge_index())
    (ref_grad,) = torch.autograd.grad(ref.sum(), x)
    assert dense.calls == 0 and sparse.calls == 2
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(grad, ref_grad)


class _ReferenceAttention(Attention):
    """Any aggregator but the plain Attention runs the gather/softmax/scatter reference."""


def _random_edges(num_sources: int, num_targets: int, num_edges: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, num_sources, (num_edges,), generator=gen),
                        torch.randint(0, num_targets - 1, (num_edges,), generator=gen)])  # last target isolated


def test_lean_path_applies_forms():
    aggr = Attention(dropout=0.3)
    assert attention.lean_path_applies(aggr) and attention.lean_path_applies(aggr.eval(), torch.float16, False)
    assert not attention.lean_path_applies(aggr.train(), torch.float32, False)  # legacy form: caller passes no dropout
    assert not attention.lean_path_applies(Attention(), torch.float32, True)  # ... and takes no weights
    assert not attention.lean_path_applies(_ReferenceAttention())
    assert attention.attention_dropout(aggr.train()) == 0.3 and attention.attention_dropout(aggr.eval()) == 0.0


@pytest.mark.parametrize("graph_kind", ["edge_index", "bipartite", "block"])
@pytest.mark.parametrize("return_attention", [False, True])
def test_training_dispatch_is_lean_and_equals_reference_with_same_seed(spies, graph_kind, return_attention):
    dense, sparse = spies
    num_targets, num_sources = (24, 24) if graph_kind != "bipartite" else (18, 31)
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(num_targets, 2, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    k, v = (torch.randn(num_sources, 2, 4, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(2))
    graph = window(num_nodes=24, radius=3) if graph_kind == "block" else _random_edges(num_sources, num_targets, 90)
    bias = torch.randn(graph.size(1) if graph_kind != "block" else graph.num_edges, 2, generator=gen,
                       dtype=torch.float64, requires_grad=True)
    results = []
    for aggr in (Attention(dropout=0.4), _ReferenceAttention(dropout=0.4)):
        torch.manual_seed(11)
        out, edge_index, weights = attention.dot_product_attention(q, k, v, graph, aggr, bias=bias,
                                                                   return_attention=return_attention)
        loss = out.square().sum() + (weights.square().sum() if return_attention else 0)
        results.append((out, weights, torch.autograd.grad(loss, (q, k, v, bias))))
    assert (sparse.calls, dense.calls) == (1, 0)  # the lean path ran once (the reference never calls it)
    (out, weights, grads), (ref, ref_weights, ref_grads) = results
    torch.testing.assert_close(out, ref)
    if return_attention:
        torch.testing.assert_close(weights, ref_weights)
        assert (weights == 0).any()  # post-dropout
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want)


def test_half_precision_on_edges_takes_lean_path(spies):
    dense, sparse = spies
    q, k, v = _qkv(40, torch.bfloat16)
    edge_index = _random_edges(40, 40, 200)
    out, _, _ = attention.dot_product_attention(q, k, v, edge_index, Attention())
    assert sparse.calls == 1 and out.dtype == torch.bfloat16 and torch.isfinite(out).all() and (out[-1] == 0).all()
    ref, _, _ = attention.dot_product_attention(q, k, v, edge_index, _ReferenceAttention())
    torch.testing.assert_close(out, ref, atol=2e-2, rtol=2e-2)


def test_block_structure_needs_equal_query_and_key_sizes():
    q, k, v = _qkv(6)
    with pytest.raises(ValueError, match="bipartite"):
        attention.dot_product_attention(q, k[:4], v[:4], fully_connected(num_nodes=6), Attention())


@pytest.mark.parametrize("make", [lambda n: fully_connected(num_nodes=n), lambda n: window(num_nodes=n, radius=5)],
                         ids=["complete", "window"])
def test_dense_path_dropout_statistics(spies, make):
    """SDPA's attention dropout on the block path: with identity values the output rows are the (dropped) weights,
    so the fraction of zeros is about p, and the mean over many draws is the output without dropout."""
    dense, sparse = spies
    length, p, draws = 32, 0.3, 400
    gen = torch.Generator().manual_seed(0)
    q, k = (torch.randn(length, 1, 8, generator=gen) for _ in range(2))
    v = torch.eye(length).unsqueeze(1)  # [L, 1, L]: out[i, 0, j] = weight of j -> i
    structure = make(length)
    exact, _, _ = attention.dot_product_attention(q, k, v, structure, Attention())
    aggr = Attention(dropout=p)
    torch.manual_seed(0)
    outs = torch.stack([attention.dot_product_attention(q, k, v, structure, aggr)[0] for _ in range(draws)])
    assert sparse.calls == 0 and dense.calls == draws + 1
    edges = exact > 0
    dropped = (outs == 0) & edges
    assert abs(dropped.sum().item() / (edges.sum().item() * draws) - p) < 0.02
    assert ((outs != 0) & ~edges).sum() == 0  # dropout never adds an edge
    torch.testing.assert_close(outs.mean(0), exact, atol=0.05, rtol=0)
