"""Block attention over graphs of very different sizes: padded in size buckets, equal to the reference."""

from __future__ import annotations

import pytest
import torch

from graphformer.aggr import Attention
from graphformer.graphs import causal, fully_connected, window
from graphformer.ops import PairBias, dense, dot_product_attention
from graphformer.ops.dense import block_attention

SIZES = [1, 3, 20, 7, 16, 2, 40, 9]


class Ref(Attention):
    """Forces the gather/softmax/scatter reference path."""


@pytest.mark.parametrize("make", [fully_connected, causal, lambda b: window(b, 2)], ids=["full", "causal", "window"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_bucketed_equals_reference(make, with_bias, monkeypatch):
    monkeypatch.setattr(dense, "BUCKET_MIN_PAIRS", 0)  # bucket this small batch too
    batch = torch.repeat_interleave(torch.arange(len(SIZES)), torch.tensor(SIZES))
    structure = make(batch)
    assert dense.size_buckets(structure) is not None
    n, heads, channels = batch.numel(), 2, 4
    q, k, v = (torch.randn(n, heads, channels, dtype=torch.float64, requires_grad=True) for _ in range(3))
    bias = None
    if with_bias:
        pairs = sum(s * s for s in SIZES)
        bias = PairBias.from_values(torch.randn(pairs, heads, dtype=torch.float64, requires_grad=True), batch)
    out = block_attention(q, k, v, structure, bias=bias)
    expected, _, _ = dot_product_attention(q, k, v, structure, Ref(), bias=bias)
    torch.testing.assert_close(out, expected)
    inputs = [q, k, v] + ([bias.terms[0].values] if bias is not None else [])
    grads = torch.autograd.grad(out.square().sum(), inputs)
    expected_grads = torch.autograd.grad(expected.square().sum(), inputs)
    for a, b in zip(grads, expected_grads):
        torch.testing.assert_close(a, b)
