"""Tests of examples/custom_aggregator.py: the user-written aggregators against plain-loop / built-in oracles."""

from __future__ import annotations

import math

import pytest
import torch

import graphformer


def power_mean_loop(x: torch.Tensor, index: torch.Tensor, dim_size: int, p: float, eps: float) -> torch.Tensor:
    out = torch.zeros(dim_size, *x.shape[1:], dtype=x.dtype)
    for node in range(dim_size):
        incoming = x[index == node]
        if incoming.numel():
            mean = ((incoming.clamp(min=0) + eps) ** p).mean(0)
            out[node] = mean ** (1 / p)
    return out  # a node with no incoming message keeps zeros


@pytest.mark.parametrize("p", [1.5, 3.0])
@pytest.mark.parametrize("shape", [(40, 5), (40, 2, 3)])
def test_power_mean_matches_a_plain_loop(custom_aggregator, p, shape):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=generator, dtype=torch.float64)
    index = torch.randint(0, 12, (shape[0],), generator=generator)  # some of the 13 targets receive nothing
    aggr = custom_aggregator.PowerMean(p=p).double()
    assert aggr.p.item() == pytest.approx(p)
    out = aggr(x, index, dim_size=13, dim=0)  # edges first (the default dim=-2 is PyG's features-last)
    torch.testing.assert_close(out, power_mean_loop(x, index, 13, p, aggr.eps))


def test_power_mean_is_learnable_and_registered(custom_aggregator):
    x = torch.rand(30, 4, requires_grad=True)
    index = torch.arange(30) % 7
    aggr = graphformer.aggr.resolve("powermean")
    assert isinstance(aggr, custom_aggregator.PowerMean)
    aggr(x, index, dim_size=7).sum().backward()
    assert aggr.rho.grad is not None and torch.isfinite(aggr.rho.grad) and x.grad.isfinite().all()
    with pytest.raises(ValueError, match="`p` must be > 1"):
        custom_aggregator.PowerMean(p=1.0)


def test_power_mean_approaches_max_for_large_p(custom_aggregator):
    x = torch.rand(50, 3, dtype=torch.float64) + 0.5
    index = torch.arange(50) % 5
    out = custom_aggregator.PowerMean(p=400.0).double()(x, index, dim_size=5)
    expected = graphformer.aggr.Max()(x, index, dim_size=5)
    torch.testing.assert_close(out, expected, rtol=1e-2, atol=0)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
@pytest.mark.parametrize("heads", [1, 4])
def test_temperature_softmax_equals_builtin_attention_on_rescaled_scores(custom_aggregator, temperature, heads):
    generator = torch.Generator().manual_seed(1)
    values = torch.randn(60, heads, 3, generator=generator)
    scores = torch.randn(60, heads, generator=generator)
    index = torch.randint(0, 9, (60,), generator=generator)
    aggr = custom_aggregator.TemperatureSoftmax(heads)
    with torch.no_grad():
        aggr.log_temperature.fill_(math.log(temperature))
    out, weights = aggr(values, index, dim_size=10, scores=scores, return_weights=True)
    oracle, oracle_weights = graphformer.aggr.Attention()(values, index, dim_size=10, scores=scores / temperature,
                                                          return_weights=True)
    torch.testing.assert_close(out, oracle)
    torch.testing.assert_close(weights, oracle_weights)


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_layer_with_unit_temperature_equals_builtin_attention(custom_aggregator, norm_first):
    torch.manual_seed(0)
    builtin = graphformer.GraphTransformerLayer(16, 4, 32, dropout=0.0, norm_first=norm_first).eval()
    custom = graphformer.GraphTransformerLayer(16, 4, 32, dropout=0.0, norm_first=norm_first,
                                               aggr=custom_aggregator.TemperatureSoftmax(4)).eval()
    missing, unexpected = custom.load_state_dict(builtin.state_dict(), strict=False)
    assert missing == ["self_attn.attention.log_temperature"] and unexpected == []
    x = torch.randn(12, 16)
    edge_index = torch.randint(0, 12, (2, 40))
    for graph in (edge_index, graphformer.fully_connected(num_nodes=12)):
        torch.testing.assert_close(custom(x, graph), builtin(x, graph))


def test_graph_conv_with_power_mean_trains(custom_aggregator):
    torch.manual_seed(0)
    conv = graphformer.GraphConv(4, 2, aggr=custom_aggregator.PowerMean())
    x = torch.rand(10, 4)
    edge_index = torch.randint(0, 10, (2, 30))
    conv(x, edge_index).pow(2).sum().backward()
    assert conv.aggr_module.rho.grad is not None and conv.lin_rel.weight.grad.abs().sum() > 0


def test_main_tiny_run(custom_aggregator, planetoid_root, planetoid_cache, tmp_path):
    out_json = tmp_path / "custom.json"
    rows = custom_aggregator.main(["--cache", str(planetoid_cache), "--epochs", "2", "--no-progress",
                                   "--threads", "1", "--json", str(out_json)])
    assert [row["model"] for row in rows] == ["graphconv-mean (built-in)", "graphconv-powermean (custom)",
                                              "transformer-softmax (built-in)", "transformer-temperature (custom)"]
    assert set(rows[1]["learned_seed0"]) == {"conv1.aggr_module", "conv2.aggr_module"}
    assert all(len(t) == 4 for t in rows[3]["learned_seed0"].values())
    assert out_json.exists()
