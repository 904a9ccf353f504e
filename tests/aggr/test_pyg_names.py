"""graphformer.aggr as a drop-in for torch_geometric.nn.aggr's basic aggregations, with PyG as the oracle."""

import pytest
import torch
import torch_geometric.nn as pyg_nn
import torch_geometric.nn.aggr as pyg_aggr

import graphformer as gf
import graphformer.aggr as aggr
from tests.conftest import random_graph

F = 4  # feature channels

# (ours, theirs, constructor kwargs)
CASES = [
    (aggr.SumAggregation, pyg_aggr.SumAggregation, {}),
    (aggr.MeanAggregation, pyg_aggr.MeanAggregation, {}),
    (aggr.MaxAggregation, pyg_aggr.MaxAggregation, {}),
    (aggr.MinAggregation, pyg_aggr.MinAggregation, {}),
    (aggr.MulAggregation, pyg_aggr.MulAggregation, {}),
    (aggr.VarAggregation, pyg_aggr.VarAggregation, {}),
    (aggr.VarAggregation, pyg_aggr.VarAggregation, {"semi_grad": True}),
    (aggr.StdAggregation, pyg_aggr.StdAggregation, {}),
    (aggr.StdAggregation, pyg_aggr.StdAggregation, {"semi_grad": True}),
    (aggr.SoftmaxAggregation, pyg_aggr.SoftmaxAggregation, {}),
    (aggr.SoftmaxAggregation, pyg_aggr.SoftmaxAggregation, {"t": 0.5}),
    (aggr.SoftmaxAggregation, pyg_aggr.SoftmaxAggregation, {"t": 2.0, "semi_grad": True}),
    (aggr.SoftmaxAggregation, pyg_aggr.SoftmaxAggregation, {"learn": True}),
    (aggr.SoftmaxAggregation, pyg_aggr.SoftmaxAggregation, {"learn": True, "channels": F}),
    (aggr.PowerMeanAggregation, pyg_aggr.PowerMeanAggregation, {}),
    (aggr.PowerMeanAggregation, pyg_aggr.PowerMeanAggregation, {"p": 2.0}),
    (aggr.PowerMeanAggregation, pyg_aggr.PowerMeanAggregation, {"learn": True}),
    (aggr.PowerMeanAggregation, pyg_aggr.PowerMeanAggregation, {"p": 3.0, "learn": True, "channels": F}),
]
IDS = [f"{ours.__name__}-{'-'.join(f'{k}={v}' for k, v in kwargs.items()) or 'default'}" for ours, _, kwargs in CASES]


def pair(ours, theirs, kwargs, seed=0):
    """Our module and PyG's with the same (randomised, where learnable) parameters."""
    mine, reference = ours(**kwargs).double(), theirs(**kwargs).double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in mine.parameters():
            parameter.add_(0.5 * torch.rand(parameter.shape, generator=generator, dtype=parameter.dtype))
    reference.load_state_dict(mine.state_dict(), strict=True)
    return mine, reference


def grads(out, inputs, generator):
    weight = torch.randn(out.shape, generator=generator, dtype=out.dtype)
    return torch.autograd.grad((out * weight).sum(), inputs, allow_unused=True)


@pytest.mark.parametrize("ours, theirs, kwargs", CASES, ids=IDS)
@pytest.mark.parametrize("num_nodes, num_edges, seed", [(10, 30, 0), (40, 300, 1), (6, 0, 2)])
def test_equals_pyg_with_isolated_targets_values_and_gradients(ours, theirs, kwargs, num_nodes, num_edges, seed):
    index = random_graph(num_nodes, num_edges, seed, isolated=3)[1]
    generator = torch.Generator().manual_seed(seed)
    x = (2 * torch.rand(num_edges, F, generator=generator, dtype=torch.float64) - 0.5).requires_grad_()
    mine, reference = pair(ours, theirs, kwargs, seed)
    out = mine(x, index, dim_size=num_nodes)
    expected = reference(x, index, dim_size=num_nodes)
    torch.testing.assert_close(out, expected)
    assert torch.isfinite(out).all()
    inputs = [x, *mine.parameters()]
    theirs_inputs = [x, *reference.parameters()]
    for got, want in zip(grads(out, inputs, torch.Generator().manual_seed(9)),
                         grads(expected, theirs_inputs, torch.Generator().manual_seed(9))):
        if want is None:
            assert got is None or (got == 0).all()
        else:
            torch.testing.assert_close(got, want)
            assert torch.isfinite(got).all()


@pytest.mark.parametrize("ours, theirs, kwargs", CASES, ids=IDS)
@pytest.mark.parametrize("call", ["ptr", "index+ptr", "batched-dim-2", "dim-0", "no-index"])
def test_equals_pyg_for_every_calling_form(ours, theirs, kwargs, call):
    x = torch.randn(7, F, dtype=torch.float64)
    index = torch.tensor([0, 0, 1, 1, 1, 3, 3])
    ptr = torch.tensor([0, 2, 5, 5, 7, 7])
    mine, reference = pair(ours, theirs, kwargs)
    if call in ("ptr", "index+ptr") and ours is aggr.MulAggregation:
        call = "index-with-dim-size"  # MulAggregation refuses ptr alone (tested below)
    if call == "ptr":
        args, kw = (x,), {"ptr": ptr}
    elif call == "index+ptr":
        args, kw = (x, index, ptr), {}
    elif call == "index-with-dim-size":
        args, kw = (x, index), {"dim_size": 5}
    elif call == "batched-dim-2":
        if kwargs.get("channels", 1) != 1:
            pytest.skip("PyG's per-channel parameters need 2-D input")
        args, kw = (torch.randn(3, 7, F, dtype=torch.float64), index), {"dim_size": 5}
    elif call == "dim-0":
        args, kw = (x, index), {"dim": 0}
    else:
        args, kw = (x,), {}
    torch.testing.assert_close(mine(*args, **kw), reference(*args, **kw))


@pytest.mark.parametrize("ours, theirs, kwargs", CASES, ids=IDS)
def test_state_dicts_load_strictly_both_ways_and_repr_matches(ours, theirs, kwargs):
    mine, reference = ours(**kwargs), theirs(**kwargs)
    assert {k: v.shape for k, v in mine.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    mine.load_state_dict(reference.state_dict(), strict=True)
    reference.load_state_dict(mine.state_dict(), strict=True)
    assert [name for name, _ in mine.named_parameters()] == [name for name, _ in reference.named_parameters()]
    assert repr(mine) == repr(reference)
    assert isinstance(mine, pyg_aggr.Aggregation) and isinstance(mine, aggr.Aggregator)


@pytest.mark.parametrize("ours, theirs, kwargs", CASES, ids=IDS)
def test_reset_parameters_restores_the_initial_value(ours, theirs, kwargs):
    mine = ours(**kwargs)
    initial = {k: v.clone() for k, v in mine.state_dict().items()}
    with torch.no_grad():
        for parameter in mine.parameters():
            parameter.add_(1.0)
    mine.reset_parameters()
    for key, value in mine.state_dict().items():
        torch.testing.assert_close(value, initial[key])


@pytest.mark.parametrize("ours, theirs, kwargs", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_empty_neighbourhoods(ours, theirs, kwargs, dtype):
    index = torch.tensor([0, 0, 1, 1, 1])
    x = torch.rand(5, F).to(dtype)
    out = ours(**kwargs).to(dtype)(x, index, dim_size=4)
    assert out.dtype == dtype and out.shape == (4, F) and torch.isfinite(out).all()
    empty = out[2:].float()
    if ours is aggr.MulAggregation:
        assert (empty == 1).all()  # PyG's empty product
    elif ours is aggr.PowerMeanAggregation and (kwargs.get("learn") or kwargs.get("p", 1.0) != 1.0):
        # PyG clamps the mean to clamp_min before the root: an empty target gets clamp_min ** (1 / p)
        expected = theirs(**kwargs)(x.double(), index, dim_size=4)[2:]
        torch.testing.assert_close(empty.double(), expected, rtol=2e-2, atol=1e-3)
    else:
        assert (empty == 0).all()
    reference = theirs(**kwargs).double()(x.double(), index, dim_size=4)
    torch.testing.assert_close(out.double(), reference, rtol=5e-2, atol=5e-2)


@pytest.mark.parametrize("semi_grad", [False, True])
def test_std_is_zero_with_a_finite_gradient_for_empty_and_constant_groups(semi_grad):
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [3.0, -1.0]], dtype=torch.float64, requires_grad=True)
    index = torch.tensor([0, 0, 1])  # group 0: constant, group 1: one message, group 2: empty
    out = aggr.StdAggregation(semi_grad=semi_grad)(x, index, dim_size=3)
    assert (out == 0).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    empty = aggr.StdAggregation()(torch.empty(0, 6), torch.empty(0, dtype=torch.long), dim_size=5)
    assert empty.shape == (5, 6) and (empty == 0).all()


def test_mul_refuses_ptr_alone_like_pyg():
    x, ptr = torch.randn(6, F), torch.tensor([0, 2, 5, 6])
    with pytest.raises(RuntimeError, match="requires 'index'"):
        aggr.MulAggregation()(x, ptr=ptr)
    with pytest.raises(RuntimeError, match="requires 'index'"):
        pyg_aggr.MulAggregation()(x, ptr=ptr)
    with pytest.raises(RuntimeError, match="requires 'index'"):
        aggr.resolve(["sum", "mul"])(x, ptr=ptr)


@pytest.mark.parametrize("ours, theirs, kwargs", CASES, ids=IDS)
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda a, x, index, ptr: a(x, index, dim=-3), "invalid dimension `dim`=-3"),
        (lambda a, x, index, ptr: a(x, index, dim=2), "invalid dimension `dim`=2"),
        (lambda a, x, index, ptr: a(x, index, dim_size=2), "invalid 'dim_size'"),
        (lambda a, x, index, ptr: a(x, index, ptr, dim_size=2), "invalid 'dim_size'"),
    ],
)
def test_bad_dim_and_dim_size_raise_like_pyg(ours, theirs, kwargs, call, match):
    x, index, ptr = torch.randn(6, F), torch.tensor([0, 0, 1, 1, 1, 2]), torch.tensor([0, 2, 5, 6])
    with pytest.raises(ValueError, match=match):
        call(ours(**kwargs), x, index, ptr)
    pyg_match = match.replace(" `dim`=", " '").replace("`", "")
    with pytest.raises(ValueError, match=pyg_match):
        call(theirs(**kwargs), x, index, ptr)


def test_short_names_are_the_pyg_named_classes():
    assert aggr.Sum is aggr.SumAggregation and aggr.Mean is aggr.MeanAggregation
    assert aggr.Max is aggr.MaxAggregation and aggr.Min is aggr.MinAggregation


def test_aggregator_stays_abstract_and_hooks_see_checked_arguments():
    with pytest.raises(TypeError, match="abstract"):
        aggr.Aggregator()
    mean = aggr.MeanAggregation()
    seen = []
    mean.register_forward_pre_hook(lambda module, args: seen.append(args[3]))
    mean.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    mean(torch.randn(5, 2), torch.tensor([0, 0, 1, 3, 3]))
    assert seen == [4, torch.Size([4, 2])]  # dim_size inferred before the hooks run


@pytest.mark.parametrize("name, klass", [
    ("sum", aggr.SumAggregation), ("add", aggr.SumAggregation), ("mean", aggr.MeanAggregation),
    ("max", aggr.MaxAggregation), ("min", aggr.MinAggregation), ("mul", aggr.MulAggregation),
    ("var", aggr.VarAggregation), ("std", aggr.StdAggregation), ("softmax", aggr.SoftmaxAggregation),
    ("attention", aggr.Attention),
])
def test_registry_names(name, klass):
    assert type(aggr.resolve(name)) is klass
    assert name in aggr.available()


def test_registry_has_powermean_and_unknown_names_are_reported():
    # "powermean" is PowerMeanAggregation unless a user registered their own under that name (the README does)
    assert "powermean" in aggr.available()
    assert isinstance(aggr.resolve("powermean"), aggr.Aggregator)
    with pytest.raises(ValueError, match="`aggr`='median3'; known names: .*mul.*powermean.*softmax.*std.*var"):
        aggr.resolve("median3")


@pytest.mark.parametrize("parts", [
    ["mean", "max"],
    ("sum", "std", "min"),
    ["softmax", "var"],
    [aggr.MeanAggregation(), pyg_aggr.MedianAggregation()],
])
@pytest.mark.parametrize("shape, dim", [((30, F), -2), ((2, 30, F), -2), ((30, 2, F), 0)])
def test_multi_equals_pyg_multi_aggregation(parts, shape, dim):
    index = random_graph(12, 30, seed=5, isolated=3)[1]
    if dim == -2 and any(isinstance(p, pyg_aggr.MedianAggregation) for p in parts) and len(shape) == 3:
        pytest.skip("PyG's MedianAggregation needs 2-D input")
    x = torch.randn(*shape)
    multi = aggr.resolve(parts)
    assert isinstance(multi, aggr.Multi) and multi.out_channels(F) == len(parts) * F
    names = [p if isinstance(p, str) else type(p).__name__.removesuffix("Aggregation").lower() for p in parts]
    reference = pyg_aggr.MultiAggregation(names, mode="cat")
    if dim == 0:  # PyG reduces along -2 only for 2-D parts like median: compare on flattened features
        expected = reference(x.reshape(30, -1), index, dim_size=12)
        got = multi(x, index, dim_size=12, dim=0)
        per_part = [expected.chunk(len(parts), dim=-1)[k].view(12, 2, F) for k in range(len(parts))]
        torch.testing.assert_close(got, torch.cat(per_part, dim=-1))
    else:
        torch.testing.assert_close(multi(x, index, dim_size=12), reference(x, index, dim_size=12))


def test_multi_checks_repr_and_state_dict():
    multi = aggr.resolve(["mean", aggr.SoftmaxAggregation(learn=True)])
    assert repr(multi) == "Multi([MeanAggregation(), SoftmaxAggregation(learn=True)])"
    pyg_multi = pyg_aggr.MultiAggregation(["mean", pyg_aggr.SoftmaxAggregation(learn=True)])
    pyg_multi.load_state_dict(multi.state_dict(), strict=True)
    multi.load_state_dict(pyg_multi.state_dict(), strict=True)
    with pytest.raises(ValueError, match="non-empty list"):
        aggr.resolve([])
    with pytest.raises(TypeError, match="needs per-edge scores"):
        aggr.resolve(["mean", "attention"])
    with pytest.raises(ValueError, match="`aggr`='nope'"):
        aggr.resolve(["mean", "nope"])


def test_graph_conv_accepts_a_list_of_aggregations():
    x, edge_index = torch.randn(10, 3), random_graph(10, 30, seed=6, isolated=2)
    conv = gf.GraphConv(3, 5, aggr=["mean", "max", "std"])
    assert conv.aggr_channels == 9 and conv(x, edge_index).shape == (10, 5)


@pytest.mark.parametrize("ours, theirs, kwargs", CASES, ids=IDS)
def test_pyg_message_passing_layers_accept_our_aggregations(ours, theirs, kwargs):
    x, edge_index = torch.randn(10, F), random_graph(10, 30, seed=7, isolated=2)
    torch.manual_seed(0)
    mine = pyg_nn.SAGEConv(F, 3, aggr=ours(**kwargs))
    torch.manual_seed(0)
    reference = pyg_nn.SAGEConv(F, 3, aggr=theirs(**kwargs))
    reference.load_state_dict(mine.state_dict(), strict=True)
    torch.testing.assert_close(mine(x, edge_index), reference(x, edge_index))
    combined = pyg_aggr.MultiAggregation([ours(**kwargs), "sum"])  # ours as a part of PyG's own multi
    expected = pyg_aggr.MultiAggregation([theirs(**kwargs), "sum"])
    expected.load_state_dict(combined.state_dict(), strict=True)
    messages, target = x[edge_index[0]], edge_index[1]
    torch.testing.assert_close(combined(messages, target, dim_size=10), expected(messages, target, dim_size=10))
