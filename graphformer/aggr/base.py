"""The aggregator base classes: validation and the empty-neighbourhood rule live here, once."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import torch
from torch import Tensor, nn

from graphformer.graphs.validation import check_index, check_index_range


class Aggregator(nn.Module, metaclass=ABCMeta):
    r"""Reduce per-edge messages to per-node outputs by a target index.

    .. math::
        h_i = \mathrm{AGG}_{e \,:\, \mathrm{index}_e = i} \; x_e

    Called with PyG's contract, ``aggr(x, index, dim_size=N)``. Subclasses implement only :meth:`reduce`;
    the base class validates the inputs. A target that no message points to gets zeros (never NaN or -inf).

    Shapes:
        - x: ``[E, *]`` messages (reduced along ``dim``, default 0)
        - index: ``[E]`` target node of every message, values in ``[0, dim_size)``
        - output: ``[dim_size, *]``

    Example (a user's aggregator, registered under a name)::

        @graphformer.aggr.register("powermean")
        class PowerMean(graphformer.aggr.Aggregator):
            def __init__(self, p: float = 3.0):
                super().__init__()
                self.p = p

            def reduce(self, x, index, dim_size):
                mean = graphformer.aggr.Mean().reduce(x.clamp(min=0) ** self.p, index, dim_size)
                root = mean.clamp(min=1e-12) ** (1 / self.p)  # clamp: finite gradient at 0
                return torch.where(mean > 0, root, torch.zeros_like(root))  # no message: exactly 0
    """

    def forward(
        self,
        x: Tensor,
        index: Tensor | None = None,
        ptr: Tensor | None = None,
        dim_size: int | None = None,
        dim: int = 0,
        **kwargs: Tensor,
    ) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"`x` must be a torch.Tensor of messages [E, ...], got {type(x).__name__}")
        if x.dim() == 0:
            raise ValueError("`x` must have at least one dimension (the message dimension)")
        dim = dim % x.dim()
        num_messages = x.size(dim)
        if index is None:
            if ptr is None:
                raise ValueError("give `index` (target of each message) or `ptr` (segment offsets)")
            ptr = check_index(ptr, "ptr")
            if ptr.numel() == 0 or (not torch.compiler.is_compiling() and (
                int(ptr[0]) != 0 or int(ptr[-1]) != num_messages or bool((ptr.diff() < 0).any())
            )):
                raise ValueError(
                    f"`ptr` must be non-decreasing segment offsets from 0 to the number of messages ({num_messages}), "
                    f"got {ptr.tolist() if ptr.numel() <= 10 else ptr}"
                )
            index = torch.repeat_interleave(torch.arange(ptr.numel() - 1, device=ptr.device), ptr.diff())
            dim_size = ptr.numel() - 1 if dim_size is None else dim_size
        if dim_size is not None and (isinstance(dim_size, bool) or not isinstance(dim_size, int)):
            if isinstance(dim_size, Tensor) and dim_size.numel() == 1 and not dim_size.is_floating_point():
                dim_size = int(dim_size)
            else:
                raise TypeError(f"`dim_size` must be an int (the number of targets), got {dim_size!r}")
        index = check_index(index, "index", num_messages)
        if dim_size is None:
            dim_size = int(index.max()) + 1 if index.numel() > 0 else 0
        if dim_size < 0:
            raise ValueError(f"`dim_size` must be non-negative, got {dim_size}")
        check_index_range(index, dim_size, "index")
        if index.device != x.device:
            raise ValueError(f"`index` is on {index.device} but `x` is on {x.device}")
        if dim != 0:
            x = x.movedim(dim, 0)
        out = self.reduce(x, index, dim_size, **kwargs)
        return out.movedim(0, dim) if dim != 0 else out

    @abstractmethod
    def reduce(self, x: Tensor, index: Tensor, dim_size: int) -> Tensor:
        """Reduce ``x`` ``[E, *]`` along dim 0 by ``index`` ``[E]`` into ``[dim_size, *]``; inputs are valid."""

    def out_channels(self, in_channels: int) -> int:
        """Feature width of the output for messages of width ``in_channels`` (the same, unless overridden)."""
        return in_channels

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class ScoreAggregator(Aggregator):
    r"""An aggregator that weights messages by per-edge scores computed by a layer.

    .. math::
        \alpha_{ij} = \mathrm{normalize}_{j \to i}(s_{ij}), \qquad h_i = \sum_{j \to i} \alpha_{ij} \, v_j

    Subclasses implement :meth:`normalize` (e.g. softmax over each target's incoming edges). The layer
    computes the scores (dot product, additive GAT score, ...); the aggregator owns the normalisation, so
    "GAT vs. transformer" is a choice of score, not a second code path.

    Shapes:
        - x: ``[E, H, C]`` values, one per edge and head
        - scores: ``[E, H]``
        - output: ``[N, H, C]`` (and the weights ``[E, H]`` with ``return_weights=True``)
    """

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout}")
        self.dropout = dropout

    @abstractmethod
    def normalize(self, scores: Tensor, index: Tensor, dim_size: int) -> Tensor:
        """Per-edge weights ``[E, H]`` from scores ``[E, H]`` grouped by target ``index`` ``[E]``."""

    def reduce(  # type: ignore[override]
        self,
        x: Tensor,
        index: Tensor,
        dim_size: int,
        scores: Tensor | None = None,
        return_weights: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        if scores is None:
            raise ValueError(f"{type(self).__name__} needs per-edge `scores` [E, H]; pass scores=...")
        if x.dim() == 2:  # [E, C] with a single head
            x = x.unsqueeze(1)
        if scores.dim() == 1:
            scores = scores.unsqueeze(-1)
        if scores.shape != x.shape[:2]:
            raise ValueError(
                f"`scores` must have shape [E, H] = {tuple(x.shape[:2])} to match values {tuple(x.shape)}, "
                f"got {tuple(scores.shape)}"
            )
        weights = self.normalize(scores, index, dim_size)  # [E, H]
        if self.training and self.dropout > 0:  # the mask helper shared with the lean path (same seed, same mask)
            from graphformer.aggr.attention import dropout_mask

            mask = dropout_mask(weights.shape, self.dropout, weights.device)  # [E, H], edge order
            weights = weights * mask * (1.0 / (1.0 - self.dropout))
        out = x.new_zeros(dim_size, *x.shape[1:])  # [N, H, C]
        out.index_add_(0, index, (weights.to(x.dtype).unsqueeze(-1) * x))
        return (out, weights) if return_weights else out  # weights after dropout, as PyG returns them

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}" if self.dropout else ""
