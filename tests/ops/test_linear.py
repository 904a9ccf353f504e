"""Linear global attention kernels against their plain O(L^2) references: forward, gradients, gradcheck, half
precision, memory that grows linearly (no [N, N] tensor) and bad input."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from graphformer.ops import (
    linear_attention,
    linear_attention_reference,
    orthogonal_matrix,
    performer_features,
    simple_attention,
    simple_attention_reference,
)
from graphformer.ops.linear import size_groups

# graphs of unequal sizes, out of size order, with a single-node graph and an empty one
SIZES = [[6], [5, 1, 12, 7, 3, 0, 7], [1], [4, 4, 4], [1, 2, 3, 9]]


def _ptr(sizes: list[int]) -> torch.Tensor:
    return torch.tensor([0, *sizes]).cumsum(0)


def _inputs(sizes, heads=2, features=5, channels=3, dtype=torch.float64, positive=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    num_nodes = sum(sizes)
    q = torch.randn(num_nodes, heads, features, generator=gen, dtype=dtype)
    k = torch.randn(num_nodes, heads, features, generator=gen, dtype=dtype)
    v = torch.randn(num_nodes, heads, channels, generator=gen, dtype=dtype)
    if positive:  # kernel features are positive
        q, k = q.abs() + 0.01, k.abs() + 0.01
    return q, k, v


def _kernels():
    return [
        ("linear", linear_attention, linear_attention_reference, {}, True),
        ("simple-graph", simple_attention, simple_attention_reference, {"normalize": "graph"}, False),
        ("simple-node", simple_attention, simple_attention_reference, {"normalize": "node"}, False),
    ]


KERNELS = pytest.mark.parametrize("name,fast,reference,kwargs,positive", _kernels(), ids=[k[0] for k in _kernels()])


@KERNELS
@pytest.mark.parametrize("sizes", SIZES, ids=str)
def test_equals_the_reference_forward_and_gradients(name, fast, reference, kwargs, positive, sizes):
    q, k, v = (t.requires_grad_() for t in _inputs(sizes, positive=positive))
    ptr = _ptr(sizes)
    out = fast(q, k, v, ptr=ptr, **kwargs)
    expected = reference(q, k, v, ptr=ptr, **kwargs)
    torch.testing.assert_close(out, expected)
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), (q, k, v))
    expected_grads = torch.autograd.grad((expected * weights).sum(), (q, k, v))
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad)


@KERNELS
def test_batch_ptr_and_separate_runs_agree(name, fast, reference, kwargs, positive):
    sizes = [5, 1, 12, 7, 3, 0, 7]
    q, k, v = _inputs(sizes, positive=positive)
    ptr = _ptr(sizes)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    out = fast(q, k, v, ptr=ptr, **kwargs)
    torch.testing.assert_close(fast(q, k, v, batch, **kwargs), out)
    for start, stop in zip(ptr[:-1].tolist(), ptr[1:].tolist()):  # batching = each graph alone
        if stop > start:
            alone = fast(q[start:stop], k[start:stop], v[start:stop], **kwargs)
            torch.testing.assert_close(out[start:stop], alone)


def test_single_node_graphs_attend_to_themselves():
    q, k, v = _inputs([1, 1, 1], positive=True)
    torch.testing.assert_close(linear_attention(q, k, v, ptr=_ptr([1, 1, 1])), v)
    q, k, v = _inputs([1, 1, 1])
    torch.testing.assert_close(simple_attention(q, k, v, ptr=_ptr([1, 1, 1])), v)  # (q.k v + v) / (q.k + 1)


@KERNELS
def test_gradcheck_float64(name, fast, reference, kwargs, positive):
    sizes = [3, 1, 4]
    q, k, v = (t.requires_grad_() for t in _inputs(sizes, features=3, channels=2, positive=positive))
    ptr = _ptr(sizes)
    assert torch.autograd.gradcheck(lambda q, k, v: fast(q, k, v, ptr=ptr, **kwargs), (q, k, v))


@KERNELS
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_has_no_nan(name, fast, reference, kwargs, positive, dtype):
    sizes = [300, 1, 40]
    q, k, v = _inputs(sizes, dtype=torch.float32, positive=positive, seed=1)
    q, k, v = 30 * q, 30 * k, 30 * v  # sums over hundreds of nodes overflow float16 if taken in float16
    ptr = _ptr(sizes)
    out = fast(q.to(dtype), k.to(dtype), v.to(dtype), ptr=ptr, **kwargs)
    assert out.dtype == dtype and torch.isfinite(out).all()
    expected = fast(q.to(dtype).float(), k.to(dtype).float(), v.to(dtype).float(), ptr=ptr, **kwargs)
    torch.testing.assert_close(out.float(), expected, atol=0.05 * float(expected.abs().max()), rtol=0.05)


def test_empty_input_and_zero_features():
    q, k, v = _inputs([0])
    assert linear_attention(q, k, v).shape == (0, 2, 3)
    assert simple_attention(q, k, v, ptr=_ptr([0, 0])).shape == (0, 2, 3)
    q, k, v = _inputs([4])
    zeros = torch.zeros_like(q)
    for normalize in ("graph", "node"):  # a graph whose queries and keys are all zero: no NaN
        out = simple_attention(zeros, zeros, v, normalize=normalize)
        assert torch.isfinite(out).all()
    torch.testing.assert_close(simple_attention(zeros, zeros, v), v)


class _LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an aten op returns."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in torch.utils._pytree.tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return out


@KERNELS
def test_memory_is_linear_no_tensor_grows_with_the_square(name, fast, reference, kwargs, positive):
    num_nodes, heads, features, channels = 3000, 2, 4, 4
    q, k, v = (t.requires_grad_() for t in _inputs([num_nodes // 3, num_nodes - num_nodes // 3], heads, features,
                                                    channels, torch.float32, positive))
    ptr = _ptr([num_nodes // 3, num_nodes - num_nodes // 3])
    with _LargestTensor() as mode:  # forward and backward
        fast(q, k, v, ptr=ptr, **kwargs).sum().backward()
    assert mode.largest <= num_nodes * heads * max(features, channels)  # the size of the inputs; N^2 = 9e6
    with _LargestTensor() as mode:  # the reference does form an [L, L] matrix per graph: the probe sees it
        reference(q.detach()[:300], k.detach()[:300], v.detach()[:300], **kwargs)
    assert mode.largest >= 300 * 300


@KERNELS
def test_twenty_thousand_nodes_run_quickly(name, fast, reference, kwargs, positive):
    q, k, v = (t.requires_grad_() for t in _inputs([20000], 1, 4, 4, torch.float32, positive))
    out = fast(q, k, v, **kwargs)  # an [N, N] float32 matrix would be 1.6 GB
    out.sum().backward()
    assert out.shape == (20000, 1, 4) and torch.isfinite(q.grad).all()


def test_size_groups_view_graphs_of_equal_size_without_padding():
    groups = size_groups(_ptr([3, 1, 3, 0, 2]))
    assert groups.lengths == (0, 1, 2, 3) and groups.counts == (1, 1, 1, 2)
    assert groups.perm.tolist() == [3, 7, 8, 0, 1, 2, 4, 5, 6]
    assert torch.equal(groups.perm[groups.inverse], torch.arange(9))
    assert size_groups(_ptr([1, 2, 2, 5])).perm is None  # sizes in order: no permutation


def test_performer_features_and_orthogonal_matrix():
    gen = torch.Generator().manual_seed(0)
    matrix = orthogonal_matrix(10, 4, generator=gen)
    assert matrix.shape == (10, 4)
    for block in (matrix[:4], matrix[4:8]):  # orthonormal rows within each block
        torch.testing.assert_close(block @ block.t(), torch.eye(4))
    torch.testing.assert_close(matrix, orthogonal_matrix(10, 4, generator=torch.Generator().manual_seed(0)))
    x = torch.randn(7, 2, 4)
    features = performer_features(x, matrix)
    torch.testing.assert_close(features, torch.relu(x @ matrix.t()) + 1e-3)
    assert (features >= 1e-3).all()


def test_bad_input_names_the_argument():
    q, k, v = _inputs([3, 4], positive=True)
    ptr = _ptr([3, 4])
    with pytest.raises(ValueError, match="`query` must have shape"):
        linear_attention(q[0], k, v, ptr=ptr)
    with pytest.raises(TypeError, match="`value`"):
        simple_attention(q, k, [1, 2], ptr=ptr)
    with pytest.raises(ValueError, match="`query`, `key` and `value` must agree"):
        linear_attention(q, k, v[:-1], ptr=ptr)
    with pytest.raises(ValueError, match="`query` and `key` must have the same features"):
        linear_attention(q, k[..., :2], v, ptr=ptr)
    with pytest.raises(ValueError, match="`batch` has 6 entries but 7"):
        linear_attention(q, k, v, torch.tensor([0, 0, 0, 1, 1, 1]))
    with pytest.raises(ValueError, match="`batch` must be sorted"):
        simple_attention(q, k, v, torch.tensor([1, 1, 1, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="`ptr` ends at 6 but num_nodes is 7"):
        linear_attention(q, k, v, ptr=torch.tensor([0, 3, 6]))
    with pytest.raises(ValueError, match="either `batch` or `ptr`"):
        linear_attention(q, k, v, torch.zeros(7, dtype=torch.long), ptr=ptr)
    with pytest.raises(ValueError, match="`normalize`"):
        simple_attention(q, k, v, ptr=ptr, normalize="rows")
    with pytest.raises(ValueError, match="`projection_matrix`"):
        performer_features(q, torch.randn(8, 3, dtype=q.dtype))
    with pytest.raises(ValueError, match="`num_rows`"):
        orthogonal_matrix(0, 4)
