import pytest
import torch
from torch_geometric.utils import softmax as pyg_softmax

from graphformer.aggr import Attention, ScoreAggregator, segment_softmax
from tests.conftest import random_graph


@pytest.mark.parametrize("num_nodes, num_edges, heads", [(10, 40, 1), (30, 200, 4), (5, 0, 2)])
def test_segment_softmax_equals_pyg(num_nodes, num_edges, heads):
    index = random_graph(num_nodes, num_edges, seed=num_edges)[1]
    scores = torch.randn(num_edges, heads) * 5
    torch.testing.assert_close(
        segment_softmax(scores, index, num_nodes), pyg_softmax(scores, index, num_nodes=num_nodes)
    )


def test_attention_equals_a_plain_loop():
    index = torch.tensor([0, 0, 0, 2, 2, 3])
    values = torch.randn(6, 2, 3)
    scores = torch.randn(6, 2)
    out, weights = Attention()(values, index, dim_size=5, scores=scores, return_weights=True)
    for i in range(5):
        rows = index == i
        if not rows.any():
            assert (out[i] == 0).all()
            continue
        alpha = torch.softmax(scores[rows], dim=0)  # [deg, H]
        torch.testing.assert_close(weights[rows], alpha)
        torch.testing.assert_close(out[i], (alpha.unsqueeze(-1) * values[rows]).sum(0))


def test_attention_gradcheck():
    index = torch.tensor([0, 0, 1, 1, 1, 3])
    values = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    scores = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, s: Attention()(v, index, dim_size=5, scores=s), (values, scores))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_large_and_infinite_logits_stay_finite(dtype):
    index = torch.tensor([0, 0, 1, 1])
    scores = torch.tensor([[1e4], [-1e4], [float("-inf")], [float("-inf")]]).to(dtype)
    values = torch.ones(4, 1, 2, dtype=dtype)
    out, weights = Attention()(values, index, dim_size=3, scores=scores, return_weights=True)
    assert torch.isfinite(out).all() and torch.isfinite(weights).all()
    assert weights[:, 0].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert (out[1:] == 0).all()  # all -inf and no-edge targets: zeros, not NaN


def test_attention_dropout_only_in_training():
    index = torch.zeros(100, dtype=torch.long)
    values = torch.randn(100, 1, 1)
    scores = torch.zeros(100, 1)
    aggr = Attention(dropout=0.5)
    expected = values.mean(0, keepdim=True)
    torch.testing.assert_close(aggr.eval()(values, index, dim_size=1, scores=scores), expected)
    assert not torch.allclose(aggr.train()(values, index, dim_size=1, scores=scores), expected)
    with pytest.raises(ValueError, match="dropout"):
        Attention(dropout=1.5)


def test_score_aggregator_errors():
    with pytest.raises(ValueError, match="needs per-edge `scores`"):
        Attention()(torch.randn(3, 1, 2), torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match=r"shape \[E, H\]"):
        Attention()(torch.randn(3, 2, 2), torch.tensor([0, 0, 1]), scores=torch.randn(3, 3))


class Sharpened(ScoreAggregator):
    """A user's score aggregator: softmax with a learnable temperature."""

    def __init__(self):
        super().__init__()
        self.log_temperature = torch.nn.Parameter(torch.zeros(()))

    def normalize(self, scores, index, dim_size):
        return segment_softmax(scores / self.log_temperature.exp(), index, dim_size)


def test_custom_score_aggregator_gets_gradients():
    aggr = Sharpened()
    index = torch.tensor([0, 0, 1])
    out = aggr(torch.randn(3, 1, 2), index, dim_size=2, scores=torch.randn(3, 1))
    out.sum().backward()
    assert aggr.log_temperature.grad is not None


def test_segment_softmax_positive_infinity_is_the_largest_score_not_nan():
    scores = torch.tensor([[float("inf")], [1.0], [2.0], [float("-inf")]])
    weights = segment_softmax(scores, torch.tensor([0, 0, 1, 1]), 3)
    torch.testing.assert_close(weights, torch.tensor([[1.0], [0.0], [1.0], [0.0]]))


def test_returned_weights_are_post_dropout_and_match_the_shared_mask():
    """PyG's convention: the weights returned in training are those the output used (after dropout); the mask comes
    from graphformer.aggr.attention.dropout_mask, drawn in edge order."""
    from graphformer.aggr.attention import dropout_mask

    index = torch.randint(0, 7, (300,), generator=torch.Generator().manual_seed(0))
    values, scores = torch.randn(300, 2, 3), torch.randn(300, 2)
    aggr = Attention(dropout=0.25).train()
    torch.manual_seed(5)
    out, weights = aggr(values, index, dim_size=8, scores=scores, return_weights=True)
    torch.manual_seed(5)
    mask = dropout_mask((300, 2), 0.25)
    plain = Attention().normalize(scores, index, 8)
    torch.testing.assert_close(weights, plain * mask / 0.75)
    torch.testing.assert_close(out, torch.zeros(8, 2, 3).index_add_(0, index, weights.unsqueeze(-1) * values))
    assert abs((~mask).float().mean().item() - 0.25) < 0.05
