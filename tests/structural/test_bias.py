"""SpatialBias, EdgePathBias, DegreeEncoding, LaplacianPE: oracles, gradients, half precision, errors, end to end."""

from __future__ import annotations

import pytest
import torch

from graphformer import GraphTransformerLayer
from graphformer.aggr import Attention
from graphformer.graphs import PairCodes, fully_connected
from graphformer.graphs.pairs import pair_offsets
from graphformer.structural import DegreeEncoding, EdgePathBias, LaplacianPE, SpatialBias, shortest_paths

from .helpers import random_batch

# unequal sizes; the last node of every graph receives no edge, so there are disconnected pairs; a 1-node graph
SIZES = [5, 1, 7, 3]


def loop_spatial(distance, table, max_distance):
    out = torch.empty(distance.numel(), table.size(1), dtype=table.dtype)
    for p, d in enumerate(distance.tolist()):
        out[p] = table[max_distance + 1] if d < 0 else table[min(d, max_distance)]
    return out


def loop_edge_path(edge_attr, path, weight):
    out = torch.zeros(path.size(0), weight.size(1), dtype=edge_attr.dtype)
    for p in range(path.size(0)):
        edges = [e for e in path[p, : weight.size(0)].tolist() if e >= 0]
        for n, e in enumerate(edges):
            out[p] += weight[n] @ edge_attr[e] / len(edges)
    return out


def test_spatial_bias_matches_loop():
    batch = random_batch(SIZES)
    distance = shortest_paths(batch.edge_index, batch)
    module = SpatialBias(num_heads=3, max_distance=2)
    bias = module(distance, batch)
    edges = fully_connected(batch).to_edge_index()
    assert torch.allclose(bias.on_edges(edges), loop_spatial(distance, module.table.weight.detach(), 2))
    codes = PairCodes(distance.clamp(min=0), batch)  # a PairCodes of distances works too
    assert torch.allclose(module(codes).on_edges(edges), loop_spatial(distance.clamp(min=0), module.table.weight, 2))
    assert module(distance.view(-1)[:25].view(5, 5)).num_graphs == 1  # one graph as [L, L]
    assert repr(module).startswith("SpatialBias(\n  num_heads=3, max_distance=2")


def test_edge_path_bias_matches_loop():
    batch = random_batch([9, 1, 7, 3], edge_dim=4, density=0.15)
    distance, path = shortest_paths(batch.edge_index, batch, return_paths=True)
    assert path.size(1) > 2  # some paths are longer than max_path_length: truncated
    module = EdgePathBias(edge_dim=4, num_heads=2, max_path_length=2)
    bias = module(batch.edge_attr, path, batch)
    values = bias.on_edges(fully_connected(batch).to_edge_index())
    expected = loop_edge_path(batch.edge_attr, path, module.weight.detach())
    assert torch.allclose(values, expected, atol=1e-6)
    assert torch.all(values[distance <= 0] == 0)
    assert "max_path_length=2" in repr(module)


def test_gradcheck():
    batch = random_batch([4, 1, 3], edge_dim=3, density=0.4)
    distance, path = shortest_paths(batch.edge_index, batch, return_paths=True)
    edges = fully_connected(batch).to_edge_index()
    spatial = SpatialBias(2, 1).double()
    edge_path = EdgePathBias(3, 2, 2).double()
    attr = batch.edge_attr.double().requires_grad_()

    def f(table, weight, attr):
        bias = _spatial(spatial, table, distance, batch) + _edge_path(edge_path, weight, attr, path, batch)
        return bias.on_edges(edges) + bias.dense().sum()  # both ways a bias reaches attention

    table = spatial.table.weight.detach().clone().requires_grad_()
    weight = edge_path.weight.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (table, weight, attr))


def _spatial(module, table, distance, batch):
    from graphformer.ops import PairBias

    return PairBias.from_codes(module.buckets(distance, batch), table)


def _edge_path(module, weight, attr, path, batch):
    return torch.func.functional_call(module, {"weight": weight}, (attr, path, batch))


def test_degree_encoding():
    edge_index = torch.tensor([[0, 0, 0, 1, 2], [1, 2, 3, 2, 0]])
    both = DegreeEncoding(max_degree=2, channels=3, direction="both")
    out = both(edge_index, num_nodes=5)
    in_degree, out_degree = torch.tensor([1, 1, 2, 1, 0]), torch.tensor([2, 1, 1, 0, 0])  # out of node 0 clipped
    expected = both.in_embedding.weight[in_degree] + both.out_embedding.weight[out_degree]
    assert torch.allclose(out, expected)
    only_in = DegreeEncoding(5, 3)
    assert torch.allclose(only_in(edge_index), only_in.in_embedding.weight[torch.tensor([1, 1, 2, 1])])
    assert "direction='both'" in repr(both)
    assert torch.autograd.gradcheck(lambda w: torch.func.functional_call(
        only_in, {"in_embedding.weight": w}, (edge_index,)), (only_in.in_embedding.weight.double().detach()
                                                              .requires_grad_(),))
    with pytest.raises(ValueError, match="direction"):
        DegreeEncoding(3, 4, direction="sideways")
    with pytest.raises(ValueError, match="max_degree"):
        DegreeEncoding(-1, 4)


def test_laplacian_pe():
    module = LaplacianPE(k=3, channels=5)
    vectors = torch.randn(6, 3)
    batch = torch.tensor([0, 0, 0, 1, 1, 1])
    module.eval()
    assert torch.allclose(module(vectors, batch), module.linear(vectors))
    module.train()
    out = module(vectors, batch)
    # every graph's eigenvectors flipped by one sign each (one of the 2^k sign vectors)
    candidates = torch.tensor([[1 - 2 * ((c >> b) & 1) for b in range(3)] for c in range(8)], dtype=torch.float)
    for g in range(2):
        rows = slice(3 * g, 3 * g + 3)
        assert any(torch.allclose(out[rows], module.linear(vectors[rows] * sign), atol=1e-6) for sign in candidates)
    with pytest.raises(ValueError, match="eigenvectors"):
        module(torch.randn(6, 4))
    assert "k=3, channels=5" in repr(module)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_forward(dtype):
    batch = random_batch(SIZES, edge_dim=4)
    distance, path = shortest_paths(batch.edge_index, batch, return_paths=True)
    spatial, edge_path = SpatialBias(2, 3).to(dtype), EdgePathBias(4, 2, 3).to(dtype)
    bias = spatial(distance, batch) + edge_path(batch.edge_attr.to(dtype), path, batch)
    dense = bias.dense()
    assert dense.dtype == dtype and torch.isfinite(dense).all()
    layer = GraphTransformerLayer(8, 2, 16, dropout=0.0).to(dtype)
    out = layer(torch.randn(batch.num_nodes, 8, dtype=dtype), fully_connected(batch), attn_bias=bias)
    assert out.dtype == dtype and torch.isfinite(out).all()


def test_errors_name_the_argument():
    batch = random_batch(SIZES, edge_dim=4)
    other = random_batch([5, 2, 7, 3])
    distance, path = shortest_paths(batch.edge_index, batch, return_paths=True)
    spatial = SpatialBias(2, 3)
    with pytest.raises(ValueError, match="distance"):
        spatial(distance, other)  # computed for another batch
    with pytest.raises(ValueError, match="distance"):
        spatial(distance - 2, batch)
    with pytest.raises(ValueError, match="max_distance"):
        SpatialBias(2, -1)
    with pytest.raises(ValueError, match="num_heads"):
        SpatialBias(0, 3)
    layer = GraphTransformerLayer(8, 4, 16, dropout=0.0)
    x = torch.randn(batch.num_nodes, 8)
    with pytest.raises(ValueError, match="attn_bias"):
        layer(x, fully_connected(batch), attn_bias=spatial(distance, batch))  # 2 heads for a 4-head layer
    same_nodes = torch.tensor([0] * 9 + [1] * 7)  # 16 nodes like the batch, other graph sizes
    with pytest.raises(ValueError, match="attn_bias"):
        layer(x, fully_connected(batch), attn_bias=SpatialBias(4, 3)(
            shortest_paths(torch.zeros(2, 0, dtype=torch.long), same_nodes), same_nodes))
    edge_path = EdgePathBias(4, 2, 3)
    with pytest.raises(ValueError, match="edge_attr"):
        edge_path(batch.edge_attr[:, :3], path, batch)
    with pytest.raises(ValueError, match="edge_attr"):
        edge_path(batch.edge_attr.long(), path, batch)
    with pytest.raises(ValueError, match="path"):
        edge_path(batch.edge_attr, path[:-1], batch)
    with pytest.raises(ValueError, match="path"):
        edge_path(batch.edge_attr[:2], path, batch)  # ids beyond the edges given
    with pytest.raises(ValueError, match="max_path_length"):
        EdgePathBias(4, 2, 0)


class Ref(Attention):
    """A subclass of Attention: forces the gather/softmax/scatter reference path."""


@pytest.mark.parametrize("norm_first", [False, True])
def test_end_to_end_matches_reference(norm_first):
    batch = random_batch(SIZES, edge_dim=4, density=0.3)
    distance, path = shortest_paths(batch.edge_index, batch, max_distance=4, return_paths=True)
    assert (distance == -1).any() and (batch.ptr.diff() == 1).any()
    torch.manual_seed(0)
    fast = GraphTransformerLayer(8, 2, 16, dropout=0.0, norm_first=norm_first).double()
    reference = GraphTransformerLayer(8, 2, 16, dropout=0.0, norm_first=norm_first, aggr=Ref()).double()
    reference.load_state_dict(fast.state_dict())
    spatial = SpatialBias(2, 3).double()
    edge_path = EdgePathBias(4, 2, 4).double()
    with torch.no_grad():  # larger biases than the init, so that they matter
        spatial.table.weight.normal_()
        edge_path.weight.normal_()
    attr = batch.edge_attr.double()
    x = torch.randn(batch.num_nodes, 8, dtype=torch.float64)
    graph = fully_connected(batch)
    outputs, grads = [], []
    for layer in (fast, reference):
        spatial.zero_grad()
        edge_path.zero_grad()
        layer.zero_grad()
        inputs = x.clone().requires_grad_()
        out = layer(inputs, graph, attn_bias=spatial(distance, batch) + edge_path(attr, path, batch))
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        outputs.append(out)
        grads.append([inputs.grad, spatial.table.weight.grad, edge_path.weight.grad,
                      *(p.grad for p in layer.parameters())])
    assert torch.allclose(outputs[0], outputs[1], atol=1e-10)
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-10)


def test_pair_count_helper():
    batch = random_batch(SIZES)
    assert int(pair_offsets(batch.ptr)[-1]) == sum(s * s for s in SIZES)
