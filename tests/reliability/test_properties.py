"""Property tests (hypothesis): equivariance, isolated nodes, dense vs sparse, batching."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphformer import fully_connected
from graphformer.graphs import causal, window
from tests.reliability.conftest import DIM, LAYERS, make, random_edges

PROPS = settings(max_examples=12, deadline=None, derandomize=True)
TOL = {"atol": 1e-5, "rtol": 1e-4}


@st.composite
def graphs(draw, min_nodes=0):
    """(x [N, DIM], edge_index [2, E]) with self-loops, duplicate edges and isolated nodes possible."""
    n = draw(st.integers(min_nodes, 7))
    e = draw(st.integers(0, 3 * n)) if n else 0
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    edge_index = random_edges(n, e, gen)
    if n and draw(st.booleans()):  # an explicit self-loop and a duplicated edge
        edge_index = torch.cat([edge_index, torch.tensor([[0, 0], [0, 0]])], 1)
    return torch.randn(n, DIM, generator=gen), edge_index


@pytest.mark.parametrize("name", sorted(LAYERS))
@PROPS
@given(data=graphs(), perm_seed=st.integers(0, 2**16))
def test_permutation_equivariance(name, data, perm_seed):
    """Relabel nodes by pi and shuffle edge order: out'[pi(i)] == out[i]."""
    x, edge_index = data
    layer = make(name)
    n, e = x.size(0), edge_index.size(1)
    gen = torch.Generator().manual_seed(perm_seed)
    perm = torch.randperm(n, generator=gen)  # new position of old node i is perm[i]
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)
    x_perm = x[inverse]
    edge_perm = perm[edge_index][:, torch.randperm(e, generator=gen)] if e else edge_index
    with torch.no_grad():
        out = layer(x, edge_index)
        out_perm = layer(x_perm, edge_perm)
    assert out.shape == (n, DIM)
    torch.testing.assert_close(out_perm[perm], out, **TOL)


@pytest.mark.parametrize("name", sorted(LAYERS))
@PROPS
@given(data=graphs())
def test_isolated_node_leaves_others_unchanged(name, data):
    x, edge_index = data
    layer = make(name)
    x_plus = torch.cat([x, torch.randn(1, DIM) * 100])
    with torch.no_grad():
        out = layer(x, edge_index)
        out_plus = layer(x_plus, edge_index)
    assert torch.isfinite(out_plus).all()
    torch.testing.assert_close(out_plus[:-1], out, **TOL)


@pytest.mark.parametrize("name", sorted(LAYERS))
@PROPS
@given(sizes=st.lists(st.integers(0, 5), min_size=1, max_size=4), kind=st.sampled_from(["full", "causal", "window"]))
def test_structure_equals_materialised_edges(name, sizes, kind):
    """Dense path (BlockStructure) == sparse path (its materialised edge_index), empty graphs included."""
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    structure = {"full": fully_connected, "causal": causal, "window": lambda b: window(b, radius=1)}[kind](batch)
    layer = make(name)
    x = torch.randn(batch.numel(), DIM)
    with torch.no_grad():
        dense = layer(x, structure)
        sparse = layer(x, structure.to_edge_index())
    torch.testing.assert_close(dense, sparse, **TOL)


@pytest.mark.parametrize("name", sorted(LAYERS))
@PROPS
@given(first=graphs(), second=graphs())
def test_batching_two_graphs_equals_separate_runs(name, first, second):
    (x1, e1), (x2, e2) = first, second
    layer = make(name)
    x = torch.cat([x1, x2])
    edge_index = torch.cat([e1, e2 + x1.size(0)], 1)
    with torch.no_grad():
        joint = layer(x, edge_index)
        separate = torch.cat([layer(x1, e1), layer(x2, e2)])
    torch.testing.assert_close(joint, separate, **TOL)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_empty_graph(name):
    layer = make(name)
    out = layer(torch.randn(0, DIM), torch.empty(2, 0, dtype=torch.long))
    assert out.shape == (0, DIM)
    out = layer(torch.randn(3, DIM), torch.empty(2, 0, dtype=torch.long))  # nodes but no edges
    assert out.shape == (3, DIM) and torch.isfinite(out).all()
