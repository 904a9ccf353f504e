"""Deployment: torch.compile of every layer, torch.export of GraphTransformer, deterministic algorithms."""

from __future__ import annotations

import pytest
import torch

from graphformer import fully_connected
from tests.reliability.conftest import DIM, LAYERS, make

EDGES = torch.tensor([[0, 1, 2, 3, 3, 0], [1, 2, 0, 0, 3, 1]])  # a self-loop, a duplicate, node 4 isolated
GRAPHS = {"edge_index": lambda: EDGES, "fully_connected": lambda: fully_connected(torch.tensor([0, 0, 0, 1, 1]))}


@pytest.mark.parametrize("graph", sorted(GRAPHS))
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_compile_matches_eager(name, graph):
    """Dynamo traces every layer (backend aot_eager: the full tracing and autograd stack, no C++ codegen)."""
    torch._dynamo.reset()
    layer = make(name)
    x = torch.randn(5, DIM)
    compiled = torch.compile(layer, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, GRAPHS[graph]()), layer(x, GRAPHS[graph]()), atol=1e-5, rtol=1e-4)


def test_compile_inductor_transformer():
    """The default inductor backend (C++ code generation on CPU) on the full stack, one case."""
    torch._dynamo.reset()
    model = make("transformer")
    x = torch.randn(5, DIM)
    compiled = torch.compile(model)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, EDGES), model(x, EDGES), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_export_graph_transformer(graph):
    model = make("transformer")
    structure = GRAPHS[graph]()
    x = torch.randn(5, DIM)

    class Fixed(torch.nn.Module):  # the graph is a constant of the exported program
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x, structure)

    exported = torch.export.export(Fixed(), (x,))
    other = torch.randn(5, DIM)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(other), model(other, structure), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_deterministic_algorithms(name):
    layer = make(name)
    x = torch.randn(5, DIM, requires_grad=True)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        runs = []
        for _ in range(2):
            out = layer(x, EDGES)
            (grad,) = torch.autograd.grad(out.square().sum(), x)
            runs.append((out.detach(), grad))
    finally:
        torch.use_deterministic_algorithms(previous)
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
