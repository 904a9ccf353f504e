"""Aggregators by name, user registration, and adoption of PyG ``Aggregation`` instances."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Callable, TypeVar

from torch import Tensor, nn
from torch_geometric.nn.aggr import Aggregation

from graphformer.aggr.attention import Attention
from graphformer.aggr.base import Aggregator
from graphformer.aggr.basic import (
    MaxAggregation,
    MeanAggregation,
    MinAggregation,
    MulAggregation,
    PowerMeanAggregation,
    SoftmaxAggregation,
    StdAggregation,
    SumAggregation,
    VarAggregation,
)
from graphformer.aggr.multi import Multi

A = TypeVar("A", bound=type)

# PyG's names ("softmax" is PyG's SoftmaxAggregation over features; "attention" weights by a layer's scores)
_REGISTRY: dict[str, type[Aggregator]] = {
    "sum": SumAggregation,
    "add": SumAggregation,
    "mean": MeanAggregation,
    "max": MaxAggregation,
    "min": MinAggregation,
    "mul": MulAggregation,
    "var": VarAggregation,
    "std": StdAggregation,
    "softmax": SoftmaxAggregation,
    "powermean": PowerMeanAggregation,
    "attention": Attention,
}


def register(name: str, cls: type[Aggregator] | None = None) -> Any:
    """Register an :class:`Aggregator` subclass under ``name`` so layers accept ``aggr=name``.

    Use as a decorator, ``@register("powermean")``, or call ``register("powermean", PowerMean)``. The class
    must be constructible without arguments to be used by name.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"`name` must be a non-empty string, got {name!r}")

    def add(klass: A) -> A:
        if not (isinstance(klass, type) and issubclass(klass, Aggregator)):
            raise TypeError(f"only graphformer.aggr.Aggregator subclasses can be registered, got {klass!r}")
        _REGISTRY[name.lower()] = klass
        return klass

    return add(cls) if cls is not None else add


def available() -> list[str]:
    """The registered aggregator names."""
    return sorted(_REGISTRY)


class PyGAggregation(Aggregator):
    """Adapter that lets any ``torch_geometric.nn.aggr.Aggregation`` serve as a graphformer aggregator.

    Messages ``[E, *]`` are flattened to ``[E, F]`` (PyG reduces along ``dim=-2``) and the result is
    reshaped back to ``[N, *]`` when the PyG module keeps the feature size.
    """

    def __init__(self, module: Aggregation) -> None:
        super().__init__()
        self.module = module

    def reduce(self, x: Tensor, index: Tensor, dim_size: int) -> Tensor:
        flat = x.reshape(x.size(0), math.prod(x.shape[1:]))  # [E, F]
        out = self.module(flat, index, dim_size=dim_size)  # [N, F']
        if out.size(-1) == flat.size(-1):
            return out.view(dim_size, *x.shape[1:])
        if x.dim() > 2:
            raise ValueError(
                f"{self.module!r} changes the feature width ({flat.size(-1)} -> {out.size(-1)}), so its output "
                f"cannot be reshaped back to the messages' shape {tuple(x.shape[1:])}; use a width-preserving "
                "aggregation here"
            )
        return out

    def reset_parameters(self) -> None:
        self.module.reset_parameters()

    def out_channels(self, in_channels: int) -> int:
        """PyG's ``get_out_channels`` where the module has one (e.g. ``MultiAggregation`` concatenating)."""
        get = getattr(self.module, "get_out_channels", None)
        return int(get(in_channels)) if callable(get) else in_channels

    def __repr__(self) -> str:
        return f"PyGAggregation({self.module!r})"


def resolve(
    aggr: str | Aggregator | nn.Module | Sequence[str | Aggregator | nn.Module] | Callable[..., Tensor],
) -> Aggregator:
    """Turn a layer's ``aggr=`` argument into an :class:`Aggregator` instance.

    Accepts a registered name (``"sum"``, ``"mean"``, ``"max"``, ``"min"``, ``"mul"``, ``"var"``, ``"std"``,
    ``"softmax"``, ``"powermean"``, ``"attention"``, or a user's), an :class:`Aggregator` instance, a
    ``torch_geometric.nn.aggr.Aggregation`` instance, or a list / tuple of these, which gives a concatenating
    :class:`~graphformer.aggr.Multi` (PyG's ``MultiAggregation(mode="cat")``).
    """
    if isinstance(aggr, Aggregator):
        return aggr
    if isinstance(aggr, str):
        klass = _REGISTRY.get(aggr.lower())
        if klass is None:
            raise ValueError(f"unknown aggregation `aggr`={aggr!r}; known names: {', '.join(available())}")
        return klass()
    if isinstance(aggr, (list, tuple)):
        return Multi(aggr)
    if isinstance(aggr, type) and issubclass(aggr, Aggregator):
        raise TypeError(f"`aggr` must be an instance, not the class {aggr.__name__}; pass {aggr.__name__}()")
    if isinstance(aggr, Aggregation):
        return PyGAggregation(aggr)
    raise TypeError(
        "`aggr` must be a name, a list of names, a graphformer.aggr.Aggregator or a "
        f"torch_geometric.nn.aggr.Aggregation, got {type(aggr).__name__}"
    )
