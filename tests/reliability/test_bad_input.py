"""Malformed inputs, end to end: each row gets the exact exception type and a message fragment."""

from __future__ import annotations

import pytest
import torch

import graphformer
from graphformer import fully_connected
from tests.reliability.conftest import DIM, LAYERS, make

E = torch.tensor([[0, 1, 2], [1, 2, 0]])
X = torch.randn(3, DIM)
NAN_X = X.clone()
NAN_X[1, 2] = float("nan")
INF_X = X.clone()
INF_X[0, 0] = float("inf")

# (id, x, edge_index, exception, message fragment)
CASES = [
    ("x-not-tensor", X.tolist(), E, TypeError, "`x` must be a torch.Tensor"),
    ("x-integer", X.long(), E, TypeError, "floating-point"),
    ("x-1d", X[0], E, ValueError, "[num_nodes, num_features]"),
    ("x-3d", X.unsqueeze(0), E, ValueError, "[num_nodes, num_features]"),
    ("x-wrong-width", torch.randn(3, DIM + 1), E, ValueError, "features per node"),
    ("x-float64-vs-float32-params", X.double(), E, TypeError, "dtype torch.float64"),
    ("x-on-meta", X.to("meta"), E, ValueError, "is on meta"),
    ("edge-none", X, None, ValueError, "`edge_index` is required"),
    ("edge-list", X, E.tolist(), TypeError, "`edge_index` must be a LongTensor"),
    ("edge-float", X, E.float(), TypeError, "integer dtype"),
    ("edge-transposed", X, E.t()[:, :2].t().t(), ValueError, "[2, num_edges]"),
    ("edge-1d", X, E[0], ValueError, "[2, num_edges]"),
    ("edge-out-of-range", X, torch.tensor([[0], [3]]), ValueError, "only 3 nodes"),
    ("edge-negative", X, torch.tensor([[-1], [0]]), ValueError, "negative index"),
    ("edge-on-meta", X, E.to("meta"), ValueError, "is on meta"),
    ("structure-wrong-size", X, fully_connected(num_nodes=4), ValueError, "describes 4 nodes"),
]


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_table(name, case):
    _, x, edge_index, error, fragment = case
    layer = make(name)
    with pytest.raises(error) as info:
        layer(x, edge_index)
    assert fragment in str(info.value), str(info.value)
    assert type(info.value) is error


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("bad", [NAN_X, INF_X], ids=["nan", "inf"])
def test_non_finite_features_flag(name, bad):
    layer = make(name)
    with torch.no_grad():
        layer(bad, E)  # flag off (default): no check, no exception
        with graphformer.debug.debug(check_finite=True):
            with pytest.raises(ValueError, match="`x` contains 1 non-finite"):
                layer(bad, E)
            layer(X, E)  # finite input passes
    assert not graphformer.debug.is_checking_finite()


@pytest.mark.parametrize(
    "layer", [graphformer.AttentionConv(DIM, 2, edge_dim=3), graphformer.GATConv(DIM, 4, 2, edge_dim=3)],
    ids=["attention", "gat"],
)
def test_non_finite_edge_attr_flag(layer):
    edge_attr = torch.randn(3, 3)
    edge_attr[2, 1] = float("nan")
    previous = graphformer.debug.set_debug(check_finite=True)
    try:
        with pytest.raises(ValueError, match="`edge_attr` contains 1 non-finite"):
            layer(X, E, edge_attr)
    finally:
        graphformer.debug.set_debug(previous)


@pytest.mark.parametrize(
    "edge_attr, error, fragment",
    [(torch.randn(2, 3), ValueError, "num_edges=3"), (torch.ones(3, 3, dtype=torch.long), TypeError, "floating point")],
)
def test_bad_edge_attr(edge_attr, error, fragment):
    layer = graphformer.AttentionConv(DIM, 2, edge_dim=3)
    with pytest.raises(error, match=fragment):
        layer(X, E, edge_attr)


def test_set_debug_rejects_non_bool():
    with pytest.raises(TypeError, match="check_finite"):
        graphformer.debug.set_debug(check_finite=1)
