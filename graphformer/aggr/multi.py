"""Several aggregations side by side, concatenated (PyG's ``MultiAggregation(mode="cat")``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from graphformer.aggr.base import Aggregator, ScoreAggregator


class Multi(Aggregator):
    r"""Concatenation of several aggregations along the feature (last) dimension.

    .. math::
        h_i = \mathrm{AGG}_1(\{x_j\}_{j \to i}) \,\Vert\, \mathrm{AGG}_2(\{x_j\}_{j \to i}) \,\Vert\, \cdots

    Equal to ``torch_geometric.nn.aggr.MultiAggregation(aggrs, mode="cat")``; ``resolve(["mean", "max"])``
    builds one.

    Args:
        aggrs: names, :class:`Aggregator` instances or PyG ``Aggregation`` instances (not score aggregators).

    Shapes:
        - x: ``[*, E, F]`` (reduced along ``dim=-2``); index: ``[E]``
        - output: ``[*, dim_size, out_channels(F)]``, e.g. ``2F`` for two width-preserving parts
    """

    def __init__(self, aggrs: Sequence[str | Aggregator | nn.Module | Any]) -> None:
        super().__init__()
        from graphformer.aggr.registry import resolve  # registry builds Multi for lists; import here, not above

        if isinstance(aggrs, str) or not isinstance(aggrs, Sequence) or len(aggrs) == 0:
            raise ValueError(f"`aggrs` must be a non-empty list of aggregations, got {aggrs!r}")
        parts = [resolve(aggr) for aggr in aggrs]
        for part in parts:
            if isinstance(part, ScoreAggregator):
                raise TypeError(f"{part!r} needs per-edge scores, so it cannot be part of a Multi aggregation")
        self.aggrs = nn.ModuleList(parts)
        self.requires_index = any(part.requires_index for part in parts)

    @property
    def _parts(self) -> list[Aggregator]:
        return cast("list[Aggregator]", list(self.aggrs))  # typed: iterating a ModuleList gives nn.Module

    def reduce(self, x: Tensor, index: Tensor, dim_size: int) -> Tensor:
        return torch.cat([part.reduce(x, index, dim_size) for part in self._parts], dim=-1)  # [N, *, sum F_k]

    def out_channels(self, in_channels: int) -> int:
        return sum(part.out_channels(in_channels) for part in self._parts)

    def reset_parameters(self) -> None:
        for part in self._parts:
            part.reset_parameters()

    def __repr__(self) -> str:
        return f"{type(self).__name__}([{', '.join(repr(part) for part in self.aggrs)}])"
