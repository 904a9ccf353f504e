import math

import pytest
import torch
import torch_geometric.nn.aggr as pyg_aggr

import graphformer as gf
from graphformer.aggr import Aggregator, Max, Mean, Min, PyGAggregation, Sum, available, register, resolve
from tests.conftest import random_graph

PAIRS = [
    (Sum, pyg_aggr.SumAggregation),
    (Mean, pyg_aggr.MeanAggregation),
    (Max, pyg_aggr.MaxAggregation),
    (Min, pyg_aggr.MinAggregation),
]


@pytest.mark.parametrize("ours, theirs", PAIRS)
@pytest.mark.parametrize("num_nodes, num_edges, seed", [(10, 30, 0), (50, 400, 1), (7, 0, 2)])
@pytest.mark.parametrize("feature_shape", [(5,), (3, 4)])
def test_equals_pyg_on_random_graphs_with_isolated_nodes(ours, theirs, num_nodes, num_edges, seed, feature_shape):
    index = random_graph(num_nodes, num_edges, seed, isolated=3)[1]
    x = torch.randn(num_edges, *feature_shape)
    out = ours()(x, index, dim_size=num_nodes, dim=0)  # edges first
    flat = x.reshape(num_edges, math.prod(feature_shape))
    expected = theirs()(flat, index, dim_size=num_nodes).view(num_nodes, *feature_shape)
    torch.testing.assert_close(out, expected)
    assert out[-3:].abs().sum() == 0  # isolated nodes aggregate to zeros


@pytest.mark.parametrize("ours, theirs", PAIRS)
@pytest.mark.parametrize("shape, dim", [((30, 5), -2), ((2, 30, 5), -2), ((2, 30, 5), 1), ((5, 30), 1), ((5, 30), -1)])
def test_default_and_explicit_dim_equal_pyg(ours, theirs, shape, dim):
    index = random_graph(10, 30, seed=4, isolated=3)[1]
    x = torch.randn(*shape)
    kwargs = {} if dim == -2 else {"dim": dim}  # -2 is the default, features last, as in PyG
    torch.testing.assert_close(ours()(x, index, dim_size=10, **kwargs), theirs()(x, index, dim_size=10, **kwargs))


@pytest.mark.parametrize("ours, _", PAIRS)
def test_equals_a_plain_loop(ours, _):
    index = torch.tensor([0, 0, 2, 2, 2, 3])
    x = torch.randn(6, 4)
    reduce = {Sum: lambda t: t.sum(0), Mean: lambda t: t.mean(0), Max: lambda t: t.max(0).values,
              Min: lambda t: t.min(0).values}[ours]
    expected = torch.stack([reduce(x[index == i]) if (index == i).any() else torch.zeros(4) for i in range(5)])
    torch.testing.assert_close(ours()(x, index, dim_size=5), expected)


@pytest.mark.parametrize("ours, _", PAIRS)
def test_gradcheck(ours, _):
    index = torch.tensor([0, 0, 1, 3, 3, 3])
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: ours()(t, index, dim_size=5), (x,))


@pytest.mark.parametrize("ours, _", PAIRS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_empty_neighbourhoods_are_zero_not_nan(ours, _, dtype):
    index = torch.tensor([0, 0, 1])
    x = torch.tensor([[60000.0], [-60000.0], [1.0]]).to(dtype)
    out = ours()(x, index, dim_size=4)
    assert out.dtype == dtype and torch.isfinite(out).all() and (out[2:] == 0).all()


def test_ptr_and_dim_arguments():
    x = torch.randn(6, 2)
    index = torch.tensor([0, 0, 1, 1, 1, 2])
    ptr = torch.tensor([0, 2, 5, 6])
    torch.testing.assert_close(Sum()(x, ptr=ptr), Sum()(x, index))
    torch.testing.assert_close(Sum()(x, index, ptr), Sum()(x, index))
    torch.testing.assert_close(Sum()(x.t(), index, dim=1), Sum()(x, index).t())
    torch.testing.assert_close(Sum()(x.t(), index, dim=-1), Sum()(x, index).t())


@pytest.mark.parametrize("ours, theirs", PAIRS)
def test_no_index_and_no_ptr_is_one_group_as_in_pyg(ours, theirs):
    x = torch.randn(6, 3)
    torch.testing.assert_close(ours()(x), theirs()(x))
    assert ours()(x).shape == (1, 3)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: Sum()(torch.randn(3, 2), torch.tensor([0, 1])), ValueError, "3 were expected"),
        (lambda: Sum()(torch.randn(2, 2), torch.tensor([0.0, 1.0])), TypeError, "integer"),
        (lambda: Sum()(torch.randn(2, 2), torch.tensor([0, 5]), dim_size=3), ValueError, "index 5"),
        (lambda: Sum()(torch.randn(2, 2), torch.tensor([0, -1])), ValueError, "negative"),
        (lambda: Sum()([1.0, 2.0], torch.tensor([0, 1])), TypeError, "torch.Tensor"),
        (lambda: Sum()(torch.randn(4, 2, 3), torch.arange(4)), ValueError, "pass dim=0"),
        (lambda: Sum()(torch.randn(6, 2), torch.arange(6), dim=-3), ValueError, "invalid dimension `dim`=-3"),
        (lambda: Sum()(torch.randn(6, 2), torch.arange(6), dim=2), ValueError, "invalid dimension `dim`=2"),
        (lambda: Sum()(torch.randn(6, 2), torch.arange(6), dim_size=4), ValueError, "invalid 'dim_size'.*>= 6"),
        (lambda: Sum()(torch.randn(6, 2), ptr=torch.tensor([0, 2, 6]), dim_size=3), ValueError, "invalid 'dim_size'"),
        (lambda: Sum()(torch.randn(6, 2), torch.arange(6), dim_size=-1), ValueError, "invalid 'dim_size'"),
        (lambda: Sum()(torch.randn(6, 2), ptr=torch.tensor([0, 4, 2, 6])), ValueError, "non-decreasing"),
        (lambda: Sum()(torch.randn(6, 2), ptr=torch.tensor([0, 2, 5])), ValueError, "from 0 to .* \\(6\\)"),
        (lambda: Sum()(torch.randn(6, 2), ptr=torch.tensor([1, 2, 6])), ValueError, "segment offsets"),
        (lambda: Sum()(torch.randn(6, 2), ptr=torch.tensor([], dtype=torch.long)), ValueError, "segment offsets"),
        (lambda: Sum()(torch.randn(2, 2), torch.tensor([0, 1]), dim_size=2.0), TypeError, "dim_size"),
        (lambda: Sum()(torch.randn(2, 2), torch.tensor([0, 1]), dim_size=True), TypeError, "dim_size"),
        (lambda: PyGAggregation(pyg_aggr.MultiAggregation(["sum", "max"]))(
            torch.randn(4, 2, 3), torch.arange(4), dim=0), ValueError, "changes the feature width"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_mean_of_many_messages_equals_pyg(dtype):
    # 5000 messages into one target: a count kept in fp16 (bf16) would stop growing at 2048 (256)
    x = torch.rand(5000, 3)
    index = torch.zeros(5000, dtype=torch.long)
    index[-1] = 1
    out = Mean()(x.to(dtype), index, dim_size=3)
    expected = pyg_aggr.MeanAggregation()(x.to(dtype).float(), index, dim_size=3)
    torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=2e-2)
    assert out.dtype == dtype and (out[2] == 0).all()


def test_dim_size_may_be_a_zero_dim_integer_tensor():
    x, index = torch.randn(3, 2), torch.tensor([0, 2, 2])
    torch.testing.assert_close(Sum()(x, index, dim_size=torch.tensor(4)), Sum()(x, index, dim_size=4))


def test_resolve_names_instances_and_pyg():
    assert isinstance(resolve("sum"), Sum) and isinstance(resolve("MEAN"), Mean)
    instance = Max()
    assert resolve(instance) is instance
    wrapped = resolve(pyg_aggr.MedianAggregation())
    assert isinstance(wrapped, PyGAggregation)
    with pytest.raises(ValueError, match="known names: .*max.*mean.*min.*sum"):
        resolve("median-of-medians")
    with pytest.raises(TypeError, match="instance, not the class"):
        resolve(Sum)
    with pytest.raises(TypeError, match="must be a name"):
        resolve(3)


def test_pyg_aggregation_adapter_matches_pyg_on_multi_head_messages():
    index = random_graph(12, 40, seed=3)[1]
    x = torch.randn(40, 2, 3)
    module = pyg_aggr.SoftmaxAggregation(learn=True)
    out = PyGAggregation(module)(x, index, dim_size=12, dim=0)
    torch.testing.assert_close(out, module(x.view(40, 6), index, dim_size=12).view(12, 2, 3))


class PowerMean(Aggregator):
    """The README's custom aggregator."""

    def __init__(self, p: float = 3.0):
        super().__init__()
        self.p = p

    def reduce(self, x, index, dim_size):
        mean = Mean().reduce(x.clamp(min=0) ** self.p, index, dim_size)
        root = mean.clamp(min=1e-12) ** (1 / self.p)  # clamp: finite gradient at 0
        return torch.where(mean > 0, root, torch.zeros_like(root))  # no message: exactly 0


def test_custom_aggregator_and_registration():
    index = torch.tensor([0, 0, 1])
    x = torch.tensor([[1.0], [2.0], [3.0]])
    out = PowerMean(p=2.0)(x, index, dim_size=3)
    torch.testing.assert_close(out, torch.tensor([[(2.5) ** 0.5], [3.0], [0.0]]))  # node 2: no message, zero
    register("test-powermean", PowerMean)
    assert "test-powermean" in available()
    conv = gf.GraphConv(1, 2, aggr="test-powermean")
    assert isinstance(conv.aggr_module, PowerMean)
    with pytest.raises(TypeError, match="Aggregator subclasses"):
        register("bad", dict)
    assert repr(Sum()) == "SumAggregation()"  # Sum is the short name of SumAggregation
