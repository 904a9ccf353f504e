"""Attention aggregation: softmax over each target's incoming edges, then a weighted sum of values."""

from __future__ import annotations

import torch
from torch import Tensor

from graphformer.aggr.base import ScoreAggregator


def segment_softmax(scores: Tensor, index: Tensor, dim_size: int) -> Tensor:
    r"""Softmax of ``scores`` ``[E, *]`` over the edges that share a target in ``index`` ``[E]``.

    .. math:: \alpha_{ij} = \frac{\exp(s_{ij} - m_i)}{\sum_{k \to i} \exp(s_{ik} - m_i)}, \quad m_i = \max_k s_{ik}

    Computed in float32 for half-precision inputs and returned in the input dtype. ``-inf`` scores get
    weight 0 and ``+inf`` counts as the largest finite score; a target whose scores are all ``-inf`` gets
    all-zero weights instead of NaN.
    """
    work = scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores
    work = work.clamp(max=torch.finfo(work.dtype).max)  # a +inf score is the largest finite one, not NaN
    expanded = index.view(-1, *([1] * (work.dim() - 1))).expand_as(work)
    with torch.no_grad():  # any per-target constant gives the same softmax; the max keeps exp() in range
        peak = work.new_full((dim_size, *work.shape[1:]), float("-inf"))
        peak = peak.scatter_reduce(0, expanded, work, reduce="amax", include_self=True)
        peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    unnormalised = torch.exp(work - peak.index_select(0, index))  # [E, *]
    total = work.new_zeros(dim_size, *work.shape[1:]).index_add_(0, index, unnormalised)
    total = total.index_select(0, index)
    weights = unnormalised / torch.where(total > 0, total, torch.ones_like(total))
    return weights.to(scores.dtype)


def dropout_mask(
    shape: tuple[int, ...] | torch.Size,
    p: float,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Keep-mask of attention dropout: bool ``shape`` (``[E, H]``, edges in ``edge_index`` order) with
    :math:`m \sim \mathrm{Bernoulli}(1 - p)`; the dropped weights are :math:`\alpha \cdot m / (1 - p)`.

    The one place the mask is drawn: the reference (:meth:`ScoreAggregator.reduce`) and the memory-lean path
    (:func:`graphformer.ops.sparse.sparse_attention`) both call it in ``edge_index`` order, so the same seed
    gives both the same mask.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability `p` must be in [0, 1), got {p}")
    if generator is None:  # torch.rand(..., generator=None) takes an overload that rejects symbolic (compiled) sizes
        return torch.rand(shape, device=device) >= p
    return torch.rand(shape, device=device, generator=generator) >= p


class Attention(ScoreAggregator):
    r"""Attention aggregation, the transformer's and GAT's normalisation.

    .. math::
        \alpha_{ij} = \mathrm{softmax}_{j \in N(i)}(s_{ij}), \qquad h_i = \sum_{j \in N(i)} \alpha_{ij} \, v_j

    computed independently for each head. Targets with no incoming edge get zeros.

    Args:
        dropout: dropout probability on the weights :math:`\alpha` during training.

    Shapes:
        - x: ``[E, H, C]`` values; scores: ``[E, H]``; index: ``[E]``
        - output: ``[N, H, C]``
    """

    def normalize(self, scores: Tensor, index: Tensor, dim_size: int) -> Tensor:
        return segment_softmax(scores, index, dim_size)
