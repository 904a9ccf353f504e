"""Numerics: half precision (autocast and plain half modules) stays finite and near float32; gradcheck."""

from __future__ import annotations

import pytest
import torch

from graphformer import fully_connected
from graphformer.graphs import causal
from tests.reliability.conftest import DIM, LAYERS, make

# a batch of graphs of sizes 3, 1, 4; explicit edges leave nodes 1, 3 and 8 with no incoming edge
BATCH = torch.tensor([0, 0, 0, 1, 2, 2, 2, 2])
EDGES = torch.tensor([[0, 1, 2, 0, 4, 5, 6, 4], [2, 0, 0, 2, 5, 6, 4, 4]])
PATHS = {
    "edge_index": lambda: EDGES,
    "fully_connected": lambda: fully_connected(BATCH),
    "causal": lambda: causal(BATCH),
}
HALF = [torch.float16, torch.bfloat16]
#: documented tolerance of half-precision results against float32 (max abs error, outputs are O(1))
HALF_ATOL = {torch.float16: 2e-2, torch.bfloat16: 1e-1}


def inputs(scale: float = 1.0) -> torch.Tensor:
    return torch.randn(BATCH.numel(), DIM, generator=torch.Generator().manual_seed(0)) * scale


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_autocast_finite_and_close(name, path, dtype):
    layer = make(name)
    graph = PATHS[path]()
    with torch.no_grad():
        reference = layer(inputs(), graph)
        with torch.autocast("cpu", dtype=dtype):
            half = layer(inputs(), graph)
            large = layer(inputs(scale=20.0), graph)  # |logits| up to ~180: exp() overflows without the max shift
    assert torch.isfinite(half).all() and torch.isfinite(large).all()
    torch.testing.assert_close(half.float(), reference, atol=HALF_ATOL[dtype], rtol=0)


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_half_module_finite_and_close(name, path, dtype):
    layer = make(name)
    graph = PATHS[path]()
    with torch.no_grad():
        reference = layer(inputs(), graph)
        half_layer = make(name, dtype)
        half = half_layer(inputs().to(dtype), graph)
        large = half_layer(inputs(scale=20.0).to(dtype), graph)
    assert half.dtype == dtype
    assert torch.isfinite(half).all() and torch.isfinite(large).all()
    torch.testing.assert_close(half.float(), reference, atol=HALF_ATOL[dtype] * 2, rtol=0)


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_gradcheck_float64(name, path):
    layer = make(name, torch.float64)
    graph = PATHS[path]()
    x = inputs().double().requires_grad_(True)
    if name.startswith("graphconv-m") or name == "attention-max":  # max/min: ties make the gradient jump
        x = x + torch.arange(x.numel(), dtype=torch.float64).view_as(x) * 1e-2
        x = x.detach().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: layer(t, graph), (x,), eps=1e-6, atol=1e-5)
