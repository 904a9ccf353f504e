"""graphformer's layers as PyG drop-ins: same weights -> same outputs as PyG's layers, PyG's input forms and API."""

from __future__ import annotations

import pytest
import torch
import torch_geometric.nn as pyg_nn
from torch_geometric.utils import to_torch_coo_tensor, to_torch_csc_tensor, to_torch_csr_tensor

import graphformer as gf


def random_graph(num_src: int, num_dst: int, num_edges: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(num_src, (num_edges,), generator=gen),
                        torch.randint(num_dst, (num_edges,), generator=gen)])


def copy_both_ways(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    """Load PyG's weights into ours and ours back into a fresh PyG layer: both strict."""
    ours.load_state_dict(theirs.state_dict(), strict=True)
    theirs.load_state_dict(ours.state_dict(), strict=True)


LAYERS = {
    "gat": lambda m, **kw: m.GATConv(8, 4, heads=3, **kw),
    "gat-mean-heads": lambda m, **kw: m.GATConv(8, 4, heads=3, concat=False, **kw),
    "gat-residual": lambda m, **kw: m.GATConv(8, 4, heads=2, residual=True, **kw),
    "gat-edge": lambda m, **kw: m.GATConv(8, 4, heads=2, edge_dim=3, **kw),
    "gat-noloops": lambda m, **kw: m.GATConv(8, 4, heads=2, add_self_loops=False, **kw),
    "transformer": lambda m, **kw: m.TransformerConv(8, 4, heads=3, **kw),
    "transformer-beta-edge": lambda m, **kw: m.TransformerConv(8, 4, heads=2, beta=True, edge_dim=3, **kw),
    "transformer-mean-noroot": lambda m, **kw: m.TransformerConv(8, 4, heads=2, concat=False, root_weight=False, **kw),
    "graphconv": lambda m, **kw: m.GraphConv(8, 5, **kw),
    "graphconv-mean": lambda m, **kw: m.GraphConv(8, 5, aggr="mean", **kw),
    "graphconv-max": lambda m, **kw: m.GraphConv(8, 5, aggr="max", **kw),
}


def _call(name, layer, x, edge_index, edge_attr):
    if "edge" in name:
        return layer(x, edge_index, edge_attr)
    return layer(x, edge_index)


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("num_nodes,num_edges", [(7, 20), (30, 200), (5, 0)])
def test_equal_to_pyg_with_copied_weights(name, num_nodes, num_edges):
    torch.manual_seed(0)
    ours, theirs = LAYERS[name](gf.nn).eval(), LAYERS[name](pyg_nn).eval()
    copy_both_ways(ours, theirs)
    x = torch.randn(num_nodes, 8, requires_grad=True)
    edge_index = random_graph(num_nodes, num_nodes, num_edges)
    edge_attr = torch.randn(num_edges, 3)
    expected = _call(name, theirs, x, edge_index, edge_attr)
    out = _call(name, ours, x, edge_index, edge_attr)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    (grad,) = torch.autograd.grad(out.pow(2).sum(), x)
    (expected_grad,) = torch.autograd.grad(expected.pow(2).sum(), x)
    torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=1e-4)
    for p_ours, p_theirs in zip(ours.parameters(), theirs.parameters()):
        assert p_ours.shape == p_theirs.shape


BIPARTITE = {
    "gat": lambda m: m.GATConv((8, 6), 4, heads=2, add_self_loops=False),
    "gat-shared-lin-residual": lambda m: m.GATConv(8, 4, heads=2, add_self_loops=False, residual=True),
    "transformer": lambda m: m.TransformerConv((8, 6), 4, heads=2, beta=True),
    "graphconv": lambda m: m.GraphConv((8, 6), 5),
}


@pytest.mark.parametrize("name", BIPARTITE)
def test_bipartite_equal_to_pyg(name):
    torch.manual_seed(1)
    ours, theirs = BIPARTITE[name](gf.nn).eval(), BIPARTITE[name](pyg_nn).eval()
    copy_both_ways(ours, theirs)
    width = 8 if "shared" in name else 6
    x_src, x_dst = torch.randn(9, 8), torch.randn(4, width)
    edge_index = random_graph(9, 4, 25)
    torch.testing.assert_close(ours((x_src, x_dst), edge_index), theirs((x_src, x_dst), edge_index),
                               atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours((x_src, x_dst), edge_index, size=(9, 4)), theirs((x_src, x_dst), edge_index),
                               atol=1e-5, rtol=1e-4)
    if "transformer" not in name:  # (x_src, None): targets without features of their own
        torch.testing.assert_close(ours((x_src, None), edge_index, size=(9, 4)),
                                   theirs((x_src, None), edge_index, size=(9, 4)), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["gat", "transformer", "graphconv", "attention"])
@pytest.mark.parametrize("to_sparse", [to_torch_csr_tensor, to_torch_csc_tensor, to_torch_coo_tensor])
def test_sparse_adjacency_equals_edge_index(name, to_sparse):
    torch.manual_seed(2)
    layer = {"gat": lambda: gf.GATConv(8, 4, heads=2), "transformer": lambda: gf.TransformerConv(8, 4, heads=2),
             "graphconv": lambda: gf.GraphConv(8, 5), "attention": lambda: gf.AttentionConv(8, 2)}[name]().eval()
    x = torch.randn(10, 8)
    edge_index = torch.unique(random_graph(10, 10, 40), dim=1)  # a sparse matrix has no duplicate entries
    adj_t = to_sparse(edge_index.flip(0), size=(10, 10))  # [target, source]
    torch.testing.assert_close(layer(x, adj_t), layer(x, edge_index), atol=1e-5, rtol=1e-4)
    float_adj = to_sparse(edge_index.flip(0), torch.rand(edge_index.size(1)), size=(10, 10))
    out = layer(x, float_adj)  # a float sparse tensor is an adjacency (GraphConv reads its values as weights)
    assert out.shape[0] == 10 and torch.isfinite(out).all()


def test_graph_conv_adjacency_values_are_edge_weights_and_data_edge_weight_is_used():
    from torch_geometric.data import Data

    torch.manual_seed(3)
    conv = gf.GraphConv(8, 5)
    x, edge_index, weight = torch.randn(6, 8), torch.unique(random_graph(6, 6, 20), dim=1), None
    weight = torch.rand(edge_index.size(1))
    adj_t = to_torch_csr_tensor(edge_index.flip(0), weight, size=(6, 6))
    torch.testing.assert_close(conv(x, adj_t), conv(x, edge_index, weight), atol=1e-5, rtol=1e-4)
    data = Data(x=x, edge_index=edge_index, edge_weight=weight)
    torch.testing.assert_close(conv(data), conv(x, edge_index, weight))


def test_return_attention_weights_forms():
    torch.manual_seed(4)
    conv = gf.GATConv(8, 4, heads=2).eval()
    x, edge_index = torch.randn(5, 8), torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])
    out, (looped, weights) = conv(x, edge_index, return_attention_weights=True)
    assert looped.shape == (2, 9) and weights.shape == (9, 2)  # 4 edges + 5 self-loops
    torch.testing.assert_close(out, conv(x, edge_index))
    out_sparse, (adj, _) = conv(x, to_torch_csr_tensor(edge_index.flip(0), size=(5, 5)), return_attention_weights=True)
    assert adj.layout == torch.sparse_csr and adj.shape == (5, 5, 2) and adj._nnz() == 9
    transformer = gf.TransformerConv(8, 4, heads=2).eval()
    _, (edges, weights) = transformer(x, edge_index, return_attention_weights=False)  # any bool returns them (PyG)
    assert weights.shape == (4, 2)
    assert transformer._alpha is None  # nothing stashed on the module


def test_returned_weights_are_post_dropout_in_training():
    torch.manual_seed(5)
    conv = gf.GATConv(8, 4, heads=2, dropout=0.5).train()
    x, edge_index = torch.randn(50, 8), random_graph(50, 50, 400)
    _, (looped, weights) = conv(x, edge_index, return_attention_weights=True)
    zero = (weights == 0).float().mean().item()
    assert 0.35 < zero < 0.65  # about half of the weights dropped, as PyG returns them


@pytest.mark.parametrize("make", [
    lambda: gf.GATConv(-1, 4, heads=2),
    lambda: gf.GATConv((-1, -1), 4, heads=2, add_self_loops=False),
    lambda: gf.TransformerConv(-1, 4, heads=2),
    lambda: gf.GraphConv(-1, 5),
])
def test_lazy_in_channels(make):
    torch.manual_seed(6)
    layer = make()
    x, edge_index = torch.randn(6, 11), random_graph(6, 6, 15)
    out = layer(x, edge_index)
    assert out.shape[0] == 6
    twin = make()
    twin(x, edge_index)
    twin.load_state_dict(layer.state_dict())
    torch.testing.assert_close(twin(x, edge_index), out)


def test_lazy_layer_state_dict_before_forward_is_a_clear_error():
    lazy, built = gf.GATConv(-1, 4, heads=2), gf.GATConv(11, 4, heads=2)
    before = built.lin.weight.detach().clone()
    with pytest.raises(ValueError, match="in_channels=-1"):
        built.load_state_dict(lazy.state_dict())
    torch.testing.assert_close(built.lin.weight, before)  # not silently un-initialised


def test_bad_inputs_name_the_argument():
    conv = gf.GATConv((8, 6), 4, add_self_loops=False)
    edge_index = random_graph(9, 4, 10)
    with pytest.raises(ValueError, match=r"`x\[1\]`.*size"):
        conv((torch.randn(9, 8), torch.randn(4, 6)), edge_index, size=(9, 3))
    with pytest.raises(ValueError, match="`x`"):
        conv((torch.randn(9, 8), torch.randn(4, 6)), edge_index, size=(8, 4))
    with pytest.raises(ValueError, match=r"edge_index\[1\]"):
        conv((torch.randn(9, 8), torch.randn(4, 6)), random_graph(9, 6, 10, seed=3).clamp(max=8))
    with pytest.raises(ValueError, match="unknown aggregation.*known names"):
        gf.GraphConv(8, 4, aggr="median-ish")
    with pytest.raises(TypeError, match="`in_channels`"):
        gf.GATConv(8.0, 4)


class DoubledMessages(gf.GraphConv):
    def message(self, x_j, edge_weight):
        return 2 * x_j


class TemperedGAT(gf.GATConv):
    def message(self, x_j, alpha):
        return alpha.unsqueeze(-1) * x_j * 0.5


def test_subclass_overriding_message_takes_effect():
    torch.manual_seed(7)
    x, edge_index = torch.randn(6, 8), random_graph(6, 6, 18)
    base, doubled = gf.GraphConv(8, 5), DoubledMessages(8, 5)
    doubled.load_state_dict(base.state_dict())
    expected = 2 * base.lin_rel(base.propagate(edge_index, x=(x, x), edge_weight=None)) - base.lin_rel.bias
    torch.testing.assert_close(doubled(x, edge_index) - base.lin_root(x), expected, atol=1e-5, rtol=1e-4)
    gat, tempered = gf.GATConv(8, 4, heads=2, bias=False).eval(), TemperedGAT(8, 4, heads=2, bias=False).eval()
    tempered.load_state_dict(gat.state_dict())
    assert tempered.needs_reference() and not gat.needs_reference()
    torch.testing.assert_close(tempered(x, edge_index), 0.5 * gat(x, edge_index), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("make", [lambda: gf.GATConv(8, 4, heads=2), lambda: gf.TransformerConv(8, 4, heads=2),
                                  lambda: gf.AttentionConv(8, 2)])
def test_hooks_run_the_reference_path_with_the_same_result(make):
    torch.manual_seed(8)
    layer = make().eval()
    x, edge_index = torch.randn(12, 8), random_graph(12, 12, 50)
    fast = layer(x, edge_index)
    seen = []
    handle = layer.register_message_forward_hook(lambda module, inputs, out: seen.append(inputs[0]["alpha"]))
    assert layer.needs_reference()
    torch.testing.assert_close(layer(x, edge_index), fast, atol=1e-5, rtol=1e-4)
    handle.remove()
    assert len(seen) == 1 and seen[0].dim() == 2 and not layer.needs_reference()


class TwoLayerGAT(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = gf.GATConv(8, 4, heads=2)
        self.conv2 = gf.TransformerConv(8, 3)

    def forward(self, x, edge_index):
        return self.conv2(self.conv1(x, edge_index).relu(), edge_index)


def test_explainer_edge_masks_and_attention_explainer():
    from torch_geometric.explain import Explainer
    from torch_geometric.explain.algorithm import AttentionExplainer, GNNExplainer

    torch.manual_seed(9)
    model = TwoLayerGAT().eval()
    x, edge_index = torch.randn(15, 8), random_graph(15, 15, 60)
    config = dict(explanation_type="model", node_mask_type="attributes", edge_mask_type="object",
                  model_config=dict(mode="multiclass_classification", task_level="node", return_type="raw"))
    explanation = Explainer(model, GNNExplainer(epochs=5), **config)(x, edge_index, index=3)
    assert explanation.edge_mask.shape == (60,) and explanation.edge_mask.abs().sum() > 0
    config["node_mask_type"] = None
    explanation = Explainer(model, AttentionExplainer(), **config)(x, edge_index, index=3)
    assert explanation.edge_mask.shape == (60,) and explanation.edge_mask.abs().sum() > 0
    assert not model.conv1.needs_reference()  # the explainers leave the layers as they found them


def test_to_hetero_and_hetero_conv():
    from torch_geometric.data import HeteroData
    from torch_geometric.nn import HeteroConv, to_hetero

    torch.manual_seed(10)
    data = HeteroData()
    data["paper"].x, data["author"].x = torch.randn(7, 8), torch.randn(5, 8)
    data["author", "writes", "paper"].edge_index = random_graph(5, 7, 12)
    data["paper", "rev_writes", "author"].edge_index = data["author", "writes", "paper"].edge_index.flip(0)
    data["paper", "cites", "paper"].edge_index = random_graph(7, 7, 10)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = gf.GATConv((-1, -1), 6, heads=2, add_self_loops=False)
            self.conv2 = gf.TransformerConv((-1, -1), 4)

        def forward(self, x, edge_index):
            return self.conv2(self.conv1(x, edge_index).relu(), edge_index)

    model = to_hetero(Net(), data.metadata(), aggr="sum")
    out = model(data.x_dict, data.edge_index_dict)
    assert out["paper"].shape == (7, 4) and out["author"].shape == (5, 4)
    out["paper"].sum().backward()

    conv = HeteroConv({
        ("author", "writes", "paper"): gf.GATConv((-1, -1), 4, add_self_loops=False),
        ("paper", "cites", "paper"): gf.GraphConv(-1, 4),
        ("paper", "rev_writes", "author"): gf.TransformerConv((-1, -1), 4),
    }, aggr="sum")
    out = conv(data.x_dict, data.edge_index_dict)
    assert out["paper"].shape == (7, 4) and out["author"].shape == (5, 4)


def _recompiles(make, graphs) -> int:
    """Graphs compiled after the first call: what changing graph sizes costs (graph breaks, e.g. in PyG's
    ``remove_self_loops``, split a layer into several compiled fragments; the first call compiles each once)."""
    import torch._dynamo as dynamo
    from torch._dynamo.utils import counters

    dynamo.reset()
    counters.clear()
    compiled = torch.compile(make().eval(), backend="eager")
    with torch.no_grad():
        first = None
        for x, edge_index in graphs:
            compiled(x, edge_index)
            first = int(counters["stats"]["unique_graphs"]) if first is None else first
    return int(counters["stats"]["unique_graphs"]) - first


@pytest.mark.parametrize("name", ["GATConv", "TransformerConv"])
def test_compile_over_graphs_of_varying_size_recompiles_no_more_than_pyg(name):
    gen = torch.Generator().manual_seed(11)
    graphs = []
    for n, e in [(10, 30), (14, 50), (21, 64), (33, 90), (40, 130), (55, 170), (61, 200), (70, 260)]:
        graphs.append((torch.randn(n, 8, generator=gen), random_graph(n, n, e, seed=n)))
    ours = _recompiles(lambda: getattr(gf, name)(8, 4, heads=2), graphs)
    theirs = _recompiles(lambda: getattr(pyg_nn, name)(8, 4, heads=2), graphs)
    assert ours <= theirs, (ours, theirs)
    assert _recompiles(lambda: getattr(gf, name)(8, 4, heads=2), graphs[:3]) == ours  # no growth with more sizes
