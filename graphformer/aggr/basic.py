"""The plain aggregators: sum, mean, max and min over each target's incoming messages."""

from __future__ import annotations

import torch
from torch import Tensor

from graphformer.aggr.base import Aggregator

_HALF = (torch.float16, torch.bfloat16)


def _expand_index(index: Tensor, like: Tensor) -> Tensor:
    return index.view(-1, *([1] * (like.dim() - 1))).expand_as(like)


class Sum(Aggregator):
    r""":math:`h_i = \sum_{j \to i} x_j`; zeros where nothing arrives."""

    def reduce(self, x: Tensor, index: Tensor, dim_size: int) -> Tensor:
        return x.new_zeros(dim_size, *x.shape[1:]).index_add_(0, index, x)


class Mean(Aggregator):
    r""":math:`h_i = \frac{1}{|N(i)|} \sum_{j \to i} x_j`; zeros where nothing arrives."""

    def reduce(self, x: Tensor, index: Tensor, dim_size: int) -> Tensor:
        total = x.new_zeros(dim_size, *x.shape[1:]).index_add_(0, index, x)
        # count in int64: a half-precision count stops growing at 256 (bf16) / 2048 (fp16) messages
        count = index.new_zeros(dim_size).index_add_(0, index, torch.ones_like(index))
        count = count.clamp_(min=1).view(-1, *([1] * (x.dim() - 1)))
        if x.dtype in _HALF:
            return (total.float() / count).to(x.dtype)
        return total / count  # float / int64 keeps the float dtype


class Max(Aggregator):
    r""":math:`h_i = \max_{j \to i} x_j` (element-wise); zeros where nothing arrives."""

    def reduce(self, x: Tensor, index: Tensor, dim_size: int) -> Tensor:
        out = x.new_zeros(dim_size, *x.shape[1:])
        return out.scatter_reduce(0, _expand_index(index, x), x, reduce="amax", include_self=False)


class Min(Aggregator):
    r""":math:`h_i = \min_{j \to i} x_j` (element-wise); zeros where nothing arrives."""

    def reduce(self, x: Tensor, index: Tensor, dim_size: int) -> Tensor:
        out = x.new_zeros(dim_size, *x.shape[1:])
        return out.scatter_reduce(0, _expand_index(index, x), x, reduce="amin", include_self=False)
