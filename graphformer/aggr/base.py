"""The aggregator base classes: validation and the empty-neighbourhood rule live here, once."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn.aggr import Aggregation

from graphformer.graphs.validation import check_index


class Aggregator(Aggregation, metaclass=ABCMeta):
    r"""Reduce per-edge messages to per-node outputs by a target index.

    .. math::
        h_i = \mathrm{AGG}_{e \,:\, \mathrm{index}_e = i} \; x_e

    A ``torch_geometric.nn.aggr.Aggregation``, called with PyG's contract
    ``aggr(x, index=None, ptr=None, dim_size=None, dim=-2)``: messages are reduced along ``dim`` (features
    last), grouped by ``index`` or by the segment offsets ``ptr``; with neither, everything is one group.
    A subclass is written in one of two styles:

    - graphformer's: implement only :meth:`reduce` ``(x, index, dim_size)``, which sees the reduced dimension
      first; the base class checks the inputs and moves ``dim``.
    - PyG's: override only ``forward(self, x, index=None, ptr=None, dim_size=None, dim=-2)``, as for a
      ``torch_geometric.nn.aggr.Aggregation``. ``self.reduce(x, index, ptr, dim_size, dim, reduce="sum")`` is then
      PyG's scatter helper, and graphformer's internal calls ``reduce(x, index, dim_size)`` (edges first) run
      that ``forward``. The inputs are checked before ``forward`` runs (``index`` is always given, ``dim_size`` an
      int, ``dim`` non-negative).

    A target that no message points to gets zeros (never NaN or -inf).

    Shapes:
        - x: ``[*, E, F]`` messages (reduced along ``dim``, default -2)
        - index: ``[E]`` target node of every message, values in ``[0, dim_size)``; or ptr: ``[dim_size + 1]``
        - output: ``[*, dim_size, F]``

    Example (a user's aggregator, registered under a name)::

        @graphformer.aggr.register("relu-powermean")
        class PowerMean(graphformer.aggr.Aggregator):
            def __init__(self, p: float = 3.0):
                super().__init__()
                self.p = p

            def reduce(self, x, index, dim_size):
                mean = graphformer.aggr.Mean().reduce(x.clamp(min=0) ** self.p, index, dim_size)
                root = mean.clamp(min=1e-12) ** (1 / self.p)  # clamp: finite gradient at 0
                return torch.where(mean > 0, root, torch.zeros_like(root))  # no message: exactly 0
    """

    requires_index: bool = False  # True: ``ptr`` alone is refused (PyG's ``MulAggregation``)
    pyg_style: bool = False  # True for a subclass written PyG's way (``forward`` overridden, no ``reduce``)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # ABCMeta computes the abstract methods after this hook, so a PyG-style class gets a concrete ``reduce``
        if "forward" in cls.__dict__ and getattr(cls.reduce, "__isabstractmethod__", False):
            cls.pyg_style = True
            cls.reduce = _pyg_style_reduce  # type: ignore[method-assign,assignment]  # PyG's signature

    def __new__(cls, *args: Any, **kwargs: Any) -> Aggregator:
        missing: frozenset[str] = getattr(cls, "__abstractmethods__", frozenset())
        if missing:
            raise TypeError(
                f"Can't instantiate abstract class {cls.__name__}: it implements neither graphformer's "
                f"{' / '.join(sorted(missing))}(...) nor PyG's forward(self, x, index=None, ptr=None, dim_size=None, "
                "dim=-2); override one of them"
            )
        return super().__new__(cls)

    def __call__(
        self,
        x: Tensor,
        index: Tensor | None = None,
        ptr: Tensor | None = None,
        dim_size: int | None = None,
        dim: int = -2,
        **kwargs: Any,
    ) -> Any:
        # our checks instead of PyG's ``Aggregation.__call__``; nn.Module.__call__ keeps hooks working
        index, dim_size, dim = self.check_inputs(x, index, ptr, dim_size, dim)
        return nn.Module.__call__(self, x, index, ptr, dim_size, dim, **kwargs)

    def forward(
        self,
        x: Tensor,
        index: Tensor | None = None,
        ptr: Tensor | None = None,
        dim_size: int | None = None,
        dim: int = -2,
        **kwargs: Any,
    ) -> Any:
        """Move ``dim`` to the front, :meth:`reduce`, move it back (``__call__`` has checked the inputs)."""
        if index is None or dim_size is None or dim < 0:  # called directly, not through __call__
            index, dim_size, dim = self.check_inputs(x, index, ptr, dim_size, dim)
        if dim != 0:
            x = x.movedim(dim, 0)
        out = self.reduce(x, index, dim_size, **kwargs)
        return out.movedim(0, dim) if dim != 0 else out

    def check_inputs(
        self, x: Tensor, index: Tensor | None, ptr: Tensor | None, dim_size: int | Tensor | None, dim: int
    ) -> tuple[Tensor, int, int]:
        """Check a call's arguments; return the int64 ``index``, the ``dim_size`` and ``dim`` as non-negative."""
        if not isinstance(x, Tensor):
            raise TypeError(f"`x` must be a torch.Tensor of messages [E, ...], got {type(x).__name__}")
        if x.dim() == 0:
            raise ValueError("`x` must have at least one dimension (the message dimension)")
        if isinstance(dim, bool) or not isinstance(dim, int) or not -x.dim() <= dim < x.dim():
            raise ValueError(
                f"invalid dimension `dim`={dim!r} for `x` of shape {tuple(x.shape)}: it must be an int in "
                f"[{-x.dim()}, {x.dim()}) (the dimension holding one entry per message; PyG's default is -2)"
            )
        dim = dim % x.dim()
        num_messages = x.size(dim)
        if dim_size is not None and (isinstance(dim_size, bool) or not isinstance(dim_size, int)):
            if isinstance(dim_size, Tensor) and dim_size.numel() == 1 and not dim_size.is_floating_point():
                dim_size = int(dim_size)
            else:
                raise TypeError(f"`dim_size` must be an int (the number of targets), got {dim_size!r}")
        if dim_size is not None and dim_size < 0:
            raise ValueError(f"invalid 'dim_size' (got {dim_size}): the number of targets must be non-negative")
        if ptr is not None:
            ptr = check_index(ptr, "ptr")
            if ptr.numel() == 0 or (not torch.compiler.is_compiling() and (
                int(ptr[0]) != 0 or int(ptr[-1]) != num_messages or bool((ptr.diff() < 0).any())
            )):
                raise ValueError(
                    f"`ptr` must be non-decreasing segment offsets from 0 to the number of messages ({num_messages}), "
                    f"got {ptr.tolist() if ptr.numel() <= 10 else ptr}"
                )
            if dim_size is not None and dim_size != ptr.numel() - 1:
                raise ValueError(
                    f"invalid 'dim_size' (got {dim_size}): `ptr` has {ptr.numel()} offsets, so it describes "
                    f"{ptr.numel() - 1} targets; pass dim_size={ptr.numel() - 1} or leave it out"
                )
            dim_size = ptr.numel() - 1
            if index is None:
                if self.requires_index:
                    raise NotImplementedError(  # a RuntimeError, as in PyG
                        f"{type(self).__name__} requires 'index' (the target of each message); `ptr` alone is not "
                        "supported. Pass index=..."
                    )
                index = torch.repeat_interleave(torch.arange(dim_size, device=ptr.device), ptr.diff())
        if index is None:  # neither index nor ptr: all messages go to one target, as in PyG
            index = torch.zeros(num_messages, dtype=torch.long, device=x.device)
        index = check_index(index, "index")
        if index.numel() != num_messages:
            raise ValueError(
                f"`index` has {index.numel()} entries but {num_messages} were expected: `x` of shape "
                f"{tuple(x.shape)} holds {num_messages} messages along `dim`={dim}. Messages are reduced along "
                "dim=-2 by default (PyG's contract, features last); pass dim=0 for edges-first [E, ...] messages"
            )
        if index.device != x.device:
            raise ValueError(f"`index` is on {index.device} but `x` is on {x.device}")
        if index.numel() > 0 and not torch.compiler.is_compiling():
            low, high = int(index.min()), int(index.max())
            if low < 0:
                raise ValueError(f"`index` contains a negative index ({low}); indices must lie in [0, dim_size)")
            if dim_size is not None and high >= dim_size:
                raise ValueError(
                    f"invalid 'dim_size' (got {dim_size}): `index` contains index {high}, so there are at least "
                    f"{high + 1} targets; pass dim_size >= {high + 1} or leave it out"
                )
            if dim_size is None:
                dim_size = high + 1
        if dim_size is None:
            dim_size = int(index.max()) + 1 if index.numel() > 0 else 0
        return index, dim_size, dim

    @abstractmethod
    def reduce(self, x: Tensor, index: Tensor, dim_size: int) -> Tensor:
        """Reduce ``x`` ``[E, *]`` along dim 0 by ``index`` ``[E]`` into ``[dim_size, *]``; inputs are valid."""

    def out_channels(self, in_channels: int) -> int:
        """Feature width of the output for messages of width ``in_channels`` (the same, unless overridden)."""
        return in_channels

    def get_out_channels(self, in_channels: int) -> int:
        """PyG's name for :meth:`out_channels`."""
        return self.out_channels(in_channels)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


def _pyg_style_reduce(
    self: Aggregator,
    x: Tensor,
    index: Tensor | None = None,
    ptr: Tensor | int | None = None,
    dim_size: int | None = None,
    dim: int = -2,
    reduce: str = "sum",
    **kwargs: Any,
) -> Any:
    """``reduce`` of a PyG-style subclass: PyG's scatter helper ``reduce(x, index, ptr, dim_size, dim, reduce=...)``
    for the user's ``forward``, and graphformer's ``reduce(x, index, dim_size)`` (third argument an int, messages
    edges first) for graphformer's own callers (``Multi``, the attention reference path), which runs ``forward``."""
    if ptr is not None and not isinstance(ptr, Tensor):  # graphformer's form: the third argument is dim_size
        assert index is not None, "graphformer's reduce(x, index, dim_size) always passes index"
        if isinstance(self, ScoreAggregator):
            return ScoreAggregator.reduce(self, x, index, ptr, **kwargs)
        return self.forward(x, index, None, ptr, 0, **kwargs)
    return Aggregation.reduce(self, x, index, ptr, dim_size, dim, reduce)


class ScoreAggregator(Aggregator):
    r"""An aggregator that weights messages by per-edge scores computed by a layer.

    .. math::
        \alpha_{ij} = \mathrm{normalize}_{j \to i}(s_{ij}), \qquad h_i = \sum_{j \to i} \alpha_{ij} \, v_j

    Subclasses implement :meth:`normalize` (e.g. softmax over each target's incoming edges). The layer
    computes the scores (dot product, additive GAT score, ...); the aggregator owns the normalisation, so
    "GAT vs. transformer" is a choice of score, not a second code path.

    PyG's style works too: override only ``forward(self, x, index, ptr=None, dim_size=None, dim=0, scores=None)``
    returning the weighted sum :math:`h_i = \sum_{j \to i} \alpha_{ij} x_j` (e.g. with
    ``torch_geometric.utils.softmax`` and ``self.reduce(..., reduce="sum")``, PyG's scatter helper). The weights
    must depend on the scores only (that is what a score aggregator is), so :meth:`normalize` reads them off
    that ``forward``: :math:`\alpha_{ij} = \partial h_i / \partial x_j`, one backward pass on an ``[E, H, 1]``
    probe (differentiable with respect to the scores). Layers then use it like any score aggregator: attention
    dropout, returned weights and ``GATConv`` / ``AttentionConv`` / ``GraphTransformerLayer`` all work.

    Called like any aggregator, but values come edges first, so ``dim`` defaults to 0 (not PyG's -2):
    ``aggr(x, index, dim_size=N, scores=scores)``.

    Shapes:
        - x: ``[E, H, C]`` values, one per edge and head
        - scores: ``[E, H]``
        - output: ``[N, H, C]`` (and the weights ``[E, H]`` with ``return_weights=True``)
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "forward" in cls.__dict__ and getattr(cls.normalize, "__isabstractmethod__", False):
            cls.pyg_style = True
            cls.reduce = _pyg_style_reduce  # type: ignore[method-assign,assignment]  # PyG's signature
            cls.normalize = ScoreAggregator._normalize_from_forward  # type: ignore[method-assign]

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout}")
        self.dropout = dropout

    def __call__(
        self,
        x: Tensor,
        index: Tensor | None = None,
        ptr: Tensor | None = None,
        dim_size: int | None = None,
        dim: int = 0,
        **kwargs: Any,
    ) -> Any:
        # values [E, H, C] come edges first, so the default ``dim`` is 0, not PyG's -2
        if self.pyg_style and kwargs.get("return_weights"):  # the user's forward returns no weights: ours does
            index, dim_size, dim = self.check_inputs(x, index, ptr, dim_size, dim)
            out, weights = ScoreAggregator.reduce(self, x.movedim(dim, 0), index, dim_size, **kwargs)
            return out.movedim(0, dim), weights
        return super().__call__(x, index, ptr, dim_size, dim, **kwargs)

    @abstractmethod
    def normalize(self, scores: Tensor, index: Tensor, dim_size: int) -> Tensor:
        """Per-edge weights ``[E, H]`` from scores ``[E, H]`` grouped by target ``index`` ``[E]``."""

    def _normalize_from_forward(self, scores: Tensor, index: Tensor, dim_size: int) -> Tensor:
        r""":meth:`normalize` of a PyG-style subclass: :math:`\alpha_{ij} = \partial h_i / \partial x_j` of its
        ``forward`` (linear in ``x``), from one backward pass on a zero probe ``x`` ``[E, H, 1]``."""
        differentiable = torch.is_grad_enabled()  # scores or the aggregator's own parameters may need gradients
        with torch.inference_mode(False), torch.enable_grad():
            if scores.is_inference():  # inference tensors cannot take part in autograd
                scores, index = scores.clone(), index.clone()
            probe = torch.zeros(*scores.shape, 1, dtype=scores.dtype, device=scores.device, requires_grad=True)
            out = self.forward(probe, index, None, dim_size, 0, scores=scores)  # [N, H, 1]
            (weights,) = torch.autograd.grad(
                out.sum(), probe, create_graph=differentiable, allow_unused=True, materialize_grads=True
            )
        weights = weights.squeeze(-1)  # [E, H]
        return weights if differentiable else weights.detach()

    def weights(self, scores: Tensor, index: Tensor, dim_size: int | None = None) -> Tensor:
        r"""Per-edge weights ``[E, H]``: :meth:`normalize`, then (in training) attention dropout
        :math:`\alpha \cdot m / (1 - p)` with the mask of :func:`~graphformer.aggr.attention.dropout_mask` in edge
        order, as the lean path draws it (same seed, same mask). Post-dropout, as PyG returns weights."""
        if dim_size is None:
            dim_size = int(index.max()) + 1 if index.numel() > 0 else 0
        weights = self.normalize(scores, index, dim_size)  # [E, H]
        if self.training and self.dropout > 0:
            from graphformer.aggr.attention import dropout_mask

            mask = dropout_mask(weights.shape, self.dropout, weights.device)  # [E, H], edge order
            weights = weights * mask * (1.0 / (1.0 - self.dropout))
        return weights

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
        weights = self.weights(scores, index, dim_size)  # [E, H]
        out = x.new_zeros(dim_size, *x.shape[1:])  # [N, H, C]
        out.index_add_(0, index, (weights.to(x.dtype).unsqueeze(-1) * x))
        return (out, weights) if return_weights else out  # weights after dropout, as PyG returns them

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}" if self.dropout else ""
