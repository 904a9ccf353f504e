"""Dense block attention (ops/dense.py) against the gather/softmax/scatter reference, and its fast path."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import graphformer as gf
from graphformer.aggr import Attention
from graphformer.graphs import window
from graphformer.ops import dot_product_attention
from graphformer.ops.dense import block_attention

STRUCTURES = {"fully_connected": gf.fully_connected, "causal": gf.causal,
              "window": lambda batch: window(batch, radius=1)}
# ops that would mean padding, gathering or a host sync on the equal-size path
PADDING_OR_SYNC = ("index", "index_put", "index_put_", "_index_put_impl_", "_local_scalar_dense", "nonzero",
                   "scatter", "gather", "masked_fill", "repeat_interleave")


class _OpLog(TorchDispatchMode):
    """Records ``(op name, kwargs)`` of every aten op run under it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, dict]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        self.calls.append((func.overloadpacket.__name__, dict(kwargs or {})))
        return func(*args, **(kwargs or {}))


def _qkv(num_nodes: int, heads: int = 2, channels: int = 4, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(num_nodes, heads, channels, generator=gen, dtype=torch.float64) for _ in range(3)]


@pytest.mark.parametrize("name", sorted(STRUCTURES))
@pytest.mark.parametrize("sizes", [[4, 4, 4], [5, 1, 3], [6]])
def test_block_attention_equals_reference(name, sizes):
    batch = torch.arange(len(sizes)).repeat_interleave(torch.tensor(sizes))
    structure = STRUCTURES[name](batch)
    query, key, value = _qkv(batch.numel())
    expected, _, _ = dot_product_attention(query, key, value, structure.to_edge_index(), Attention())
    torch.testing.assert_close(block_attention(query, key, value, structure), expected)


@pytest.mark.parametrize("name", ["fully_connected", "causal"])
def test_equal_sizes_run_one_unmasked_sdpa_without_padding_or_sync(name):
    """Equal-size graphs reshape to ``[B, H, L, C]`` and call SDPA once: no mask, no padding, no ``.item()``."""
    layer = gf.GraphTransformerLayer(16, 4, dim_feedforward=32, dropout=0.0)
    x = torch.randn(3 * 8, 16, requires_grad=True)
    structure = STRUCTURES[name](torch.arange(3).repeat_interleave(8))
    with _OpLog() as log:
        layer(x, structure).sum().backward()
    names = [op for op, _ in log.calls]
    assert not set(names) & set(PADDING_OR_SYNC), sorted(set(names) & set(PADDING_OR_SYNC))
    sdpa = [(op, kwargs) for op, kwargs in log.calls if "scaled_dot_product" in op and "backward" not in op]
    assert len(sdpa) == 1
    assert sdpa[0][1].get("attn_mask") is None
    assert x.grad is not None and x.grad.shape == x.shape


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_size_buckets_equal_the_reference_with_gradients(name):
    """Graphs of 1 to 60 nodes and an empty one (molecule-like spread) run bucketed; forward and gradients match."""
    from graphformer.ops.dense import size_buckets

    sizes = torch.tensor([60, 0, 1, 7, 33, 12, 60, 25, 3, 18, 9, 31])  # B L_max^2 above BUCKET_MIN_PAIRS
    batch = torch.arange(len(sizes)).repeat_interleave(sizes)
    structure = STRUCTURES[name](batch)  # graph 1 is empty: no node has its id
    assert structure.num_graphs == len(sizes)
    buckets = size_buckets(structure)
    assert buckets is not None and sum(c > 0 for c in buckets.counts) > 3
    inputs = [t.requires_grad_() for t in _qkv(int(sizes.sum()), seed=3)]
    out = block_attention(*inputs, structure)
    grads = torch.autograd.grad(out.pow(2).sum(), inputs)
    expected, _, _ = dot_product_attention(*inputs, structure.to_edge_index(), Attention())
    expected_grads = torch.autograd.grad(expected.pow(2).sum(), inputs)
    torch.testing.assert_close(out, expected)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad)


def test_size_buckets_are_skipped_when_padding_is_cheap():
    from graphformer.ops.dense import size_buckets

    sizes = torch.tensor([200, 180, 190, 170])  # within a factor 1.25: one bucket saves little
    assert size_buckets(gf.fully_connected(torch.arange(4).repeat_interleave(sizes))) is None
    sizes = torch.tensor([20, 2, 3])  # small: building buckets would cost more than it saves
    assert size_buckets(gf.fully_connected(torch.arange(3).repeat_interleave(sizes))) is None
