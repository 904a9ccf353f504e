"""The plain aggregations under PyG's names: sum, mean, max, min, mul, var, std, softmax and power mean.

Each class is a few lines over :class:`~graphformer.aggr.Aggregator`: the base class checks ``index`` /
``ptr`` / ``dim_size`` / ``dim`` and moves the reduced dimension to the front, so ``reduce`` only sees
messages ``[E, *]`` and targets ``[E]``. Numerics, parameters (``t``, ``p``) and ``repr`` follow
``torch_geometric.nn.aggr``, so a state dict loads into either. ``Sum``, ``Mean``, ``Max`` and ``Min`` are
the short names of the first four.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from graphformer.aggr.attention import segment_softmax
from graphformer.aggr.base import Aggregator

_HALF = (torch.float16, torch.bfloat16)


def _expand_index(index: Tensor, like: Tensor) -> Tensor:
    return index.view(-1, *([1] * (like.dim() - 1))).expand_as(like)


def _sum(x: Tensor, index: Tensor, dim_size: int) -> Tensor:
    return x.new_zeros(dim_size, *x.shape[1:]).index_add_(0, index, x)  # [N, *]


def _mean(x: Tensor, index: Tensor, dim_size: int) -> Tensor:
    total = _sum(x, index, dim_size)  # [N, *]
    # count in int64: a half-precision count stops growing at 256 (bf16) / 2048 (fp16) messages
    count = index.new_zeros(dim_size).index_add_(0, index, torch.ones_like(index))
    count = count.clamp_(min=1).view(-1, *([1] * (x.dim() - 1)))  # [N, 1, ...]
    if x.dtype in _HALF:
        return (total.float() / count).to(x.dtype)
    return total / count  # float / int64 keeps the float dtype


def _var(x: Tensor, index: Tensor, dim_size: int, semi_grad: bool) -> Tensor:
    """E[x^2] - E[x]^2, in float32 for half-precision ``x`` (the difference cancels) and returned so."""
    x = x.float() if x.dtype in _HALF else x
    mean = _mean(x, index, dim_size)  # [N, *]
    with torch.set_grad_enabled(torch.is_grad_enabled() and not semi_grad):  # semi_grad: no gradient via E[x^2]
        mean_of_squares = _mean(x * x, index, dim_size)  # [N, *]
    return mean_of_squares - mean * mean


def _scatter_reduce(x: Tensor, index: Tensor, dim_size: int, reduce: str, initial: float = 0.0) -> Tensor:
    out = x.new_full((dim_size, *x.shape[1:]), initial)  # [N, *]; what a target with no message keeps
    return out.scatter_reduce(0, _expand_index(index, x), x, reduce=reduce, include_self=reduce == "prod")


def _check_learnable(cls: type, learn: bool, channels: int) -> None:
    if not learn and channels != 1:
        raise ValueError(
            f"{cls.__name__} learns one value per channel only with `learn=True`; got learn=False and "
            f"channels={channels} (use channels=1 or learn=True)"
        )


class SumAggregation(Aggregator):
    r""":math:`h_i = \sum_{j \to i} x_j`; zeros where nothing arrives.

    Shapes:
        - x: ``[*, E, F]`` (reduced along ``dim=-2``); index: ``[E]``; output: ``[*, dim_size, F]``
    """

    def reduce(self, x: Tensor, index: Tensor, dim_size: int) -> Tensor:
        return _sum(x, index, dim_size)


class MeanAggregation(Aggregator):
    r""":math:`h_i = \frac{1}{|N(i)|} \sum_{j \to i} x_j`; zeros where nothing arrives.

    Shapes:
        - x: ``[*, E, F]`` (reduced along ``dim=-2``); index: ``[E]``; output: ``[*, dim_size, F]``
    """

    def reduce(self, x: Tensor, index: Tensor, dim_size: int) -> Tensor:
        return _mean(x, index, dim_size)


class MaxAggregation(Aggregator):
    r""":math:`h_i = \max_{j \to i} x_j` (element-wise); zeros where nothing arrives.

    Shapes:
        - x: ``[*, E, F]`` (reduced along ``dim=-2``); index: ``[E]``; output: ``[*, dim_size, F]``
    """

    def reduce(self, x: Tensor, index: Tensor, dim_size: int) -> Tensor:
        return _scatter_reduce(x, index, dim_size, "amax")


class MinAggregation(Aggregator):
    r""":math:`h_i = \min_{j \to i} x_j` (element-wise); zeros where nothing arrives.

    Shapes:
        - x: ``[*, E, F]`` (reduced along ``dim=-2``); index: ``[E]``; output: ``[*, dim_size, F]``
    """

    def reduce(self, x: Tensor, index: Tensor, dim_size: int) -> Tensor:
        return _scatter_reduce(x, index, dim_size, "amin")


class MulAggregation(Aggregator):
    r""":math:`h_i = \prod_{j \to i} x_j` (element-wise).

    A target with no message gets the empty product 1, as in PyG. Needs ``index`` (PyG's ``mul`` cannot
    run on ``ptr`` alone).

    Shapes:
        - x: ``[*, E, F]`` (reduced along ``dim=-2``); index: ``[E]``; output: ``[*, dim_size, F]``
    """

    requires_index = True

    def reduce(self, x: Tensor, index: Tensor, dim_size: int) -> Tensor:
        return _scatter_reduce(x, index, dim_size, "prod", initial=1.0)


class VarAggregation(Aggregator):
    r""":math:`h_i = \mathrm{mean}_{j \to i}(x_j^2) - \big(\mathrm{mean}_{j \to i}\, x_j\big)^2`; zeros where
    nothing arrives.

    Args:
        semi_grad: compute :math:`\mathrm{mean}(x^2)` without gradient (less memory; semi-gradients).

    Shapes:
        - x: ``[*, E, F]`` (reduced along ``dim=-2``); index: ``[E]``; output: ``[*, dim_size, F]``
    """

    def __init__(self, semi_grad: bool = False) -> None:
        super().__init__()
        self.semi_grad = semi_grad

    def reduce(self, x: Tensor, index: Tensor, dim_size: int) -> Tensor:
        return _var(x, index, dim_size, self.semi_grad).to(x.dtype)


class StdAggregation(Aggregator):
    r""":math:`h_i = \sqrt{\mathrm{var}_{j \to i}\, x_j}`, with a variance below :math:`10^{-5}` read as 0
    (PyG's rule: a finite gradient at 0, and zeros where nothing arrives, never NaN).

    Args:
        semi_grad: compute :math:`\mathrm{mean}(x^2)` without gradient (less memory; semi-gradients).

    Shapes:
        - x: ``[*, E, F]`` (reduced along ``dim=-2``); index: ``[E]``; output: ``[*, dim_size, F]``
    """

    def __init__(self, semi_grad: bool = False) -> None:
        super().__init__()
        self.semi_grad = semi_grad

    def reduce(self, x: Tensor, index: Tensor, dim_size: int) -> Tensor:
        var = _var(x, index, dim_size, self.semi_grad)  # [N, *]
        # test the variance, not its root, against 1e-5: robust to rounding of sqrt(1e-5)
        std = var.clamp(min=1e-5).sqrt().masked_fill(var <= 1e-5, 0.0)  # clamp: finite gradient at 0
        return std.to(x.dtype)


class SoftmaxAggregation(Aggregator):
    r"""Softmax aggregation with an (optionally learnable) inverse temperature :math:`t` (DeeperGCN).

    .. math::
        h_i = \sum_{j \to i} \frac{\exp(t \, x_j)}{\sum_{k \to i} \exp(t \, x_k)} \, x_j

    element-wise over channels; zeros where nothing arrives.

    Args:
        t: initial inverse temperature.
        learn: learn :math:`t` (a parameter ``t`` of shape ``[channels]``).
        semi_grad: compute the softmax weights without gradient (only with ``learn=False``).
        channels: number of learned temperatures, one per feature channel (needs ``learn=True``).

    Shapes:
        - x: ``[*, E, F]`` (reduced along ``dim=-2``); index: ``[E]``; output: ``[*, dim_size, F]``
    """

    def __init__(self, t: float = 1.0, learn: bool = False, semi_grad: bool = False, channels: int = 1) -> None:
        super().__init__()
        if learn and semi_grad:
            raise ValueError("SoftmaxAggregation cannot use semi_grad=True with a learnable `t` (learn=True)")
        _check_learnable(type(self), learn, channels)
        self._init_t, self.learn, self.semi_grad, self.channels = t, learn, semi_grad, channels
        self.t = nn.Parameter(torch.empty(channels)) if learn else t
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if isinstance(self.t, Tensor):
            self.t.data.fill_(self._init_t)

    def reduce(self, x: Tensor, index: Tensor, dim_size: int) -> Tensor:
        _check_channels(self, x)
        scores = x if isinstance(self.t, float | int) and self.t == 1 else x * self.t  # [E, *]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.semi_grad):
            weights = segment_softmax(scores, index, dim_size)  # [E, *]
        return _sum(x * weights, index, dim_size)

    def extra_repr(self) -> str:
        return f"learn={self.learn}"


class PowerMeanAggregation(Aggregator):
    r"""Power mean with an (optionally learnable) exponent :math:`p` (DeeperGCN).

    .. math::
        h_i = \Big(\frac{1}{|N(i)|} \sum_{j \to i} \mathrm{clamp}(x_j)^{p}\Big)^{1/p}

    with PyG's clamp to ``[clamp_min, clamp_max]`` of the inputs and the mean (when :math:`p \ne 1` or
    learnable), so a target with no message gets ``clamp_min ** (1 / p)``, as in PyG.

    Args:
        p: initial exponent.
        learn: learn :math:`p` (a parameter ``p`` of shape ``[channels]``).
        channels: number of learned exponents, one per feature channel (needs ``learn=True``).
        clamp_min, clamp_max: range the inputs and the mean are clamped to (``None``: no bound).

    Shapes:
        - x: ``[*, E, F]`` (reduced along ``dim=-2``); index: ``[E]``; output: ``[*, dim_size, F]``
    """

    def __init__(
        self,
        p: float = 1.0,
        learn: bool = False,
        channels: int = 1,
        clamp_min: float | None = 1e-4,
        clamp_max: float | None = 100.0,
    ) -> None:
        super().__init__()
        _check_learnable(type(self), learn, channels)
        self._init_p, self.learn, self.channels = p, learn, channels
        self.p = nn.Parameter(torch.empty(channels)) if learn else p
        self.min_value, self.max_value = clamp_min, clamp_max
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if isinstance(self.p, Tensor):
            self.p.data.fill_(self._init_p)

    def reduce(self, x: Tensor, index: Tensor, dim_size: int) -> Tensor:
        _check_channels(self, x)
        if isinstance(self.p, float | int) and self.p == 1:
            return _mean(x, index, dim_size)
        powered = x.clamp(min=self.min_value, max=self.max_value).pow(self.p)  # [E, *]
        mean = _mean(powered, index, dim_size)  # [N, *]
        return mean.clamp(min=self.min_value, max=self.max_value).pow(1.0 / self.p)

    def extra_repr(self) -> str:
        return f"learn={self.learn}"


def _check_channels(aggr: SoftmaxAggregation | PowerMeanAggregation, x: Tensor) -> None:
    if aggr.channels != 1 and x.size(-1) != aggr.channels:
        raise ValueError(
            f"{type(aggr).__name__}(channels={aggr.channels}) learns one value per feature channel, but the "
            f"messages have shape {tuple(x.shape)} (last dimension {x.size(-1)}); pass [E, {aggr.channels}] messages"
        )


Sum = SumAggregation
Mean = MeanAggregation
Max = MaxAggregation
Min = MinAggregation
