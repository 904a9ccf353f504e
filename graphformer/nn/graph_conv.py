"""GraphConv: the seed formula of message passing."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from graphformer.aggr import Aggregator, ScoreAggregator, resolve
from graphformer.graphs.structure import BlockStructure
from graphformer.nn.inputs import check_sizes, prepare, unpack


class GraphConv(nn.Module):
    r"""Graph convolution with a pluggable aggregation (Morris et al., 2019).

    .. math::
        h_i' = W_1 h_i + W_2 \cdot \mathrm{AGG}_{j \to i} \left( w_{ji} \, h_j \right)

    with edge weights :math:`w_{ji}` (1 when not given). Same parameterisation as PyG's ``GraphConv``
    (``lin_root`` = :math:`W_1` without bias, ``lin_rel`` = :math:`W_2` with bias).

    Args:
        in_channels: input features per node ``F``.
        out_channels: output features per node ``F'``.
        aggr: ``"sum"``, ``"mean"``, ``"max"``, ``"min"``, a registered name, an :class:`Aggregator`
            instance or a PyG ``Aggregation`` instance.
        bias: learn an additive bias.
        device, dtype: where and in which dtype to create the parameters.

    Shapes:
        - x: ``[N, F]``; edge_index: ``[2, E]`` or a block structure; edge_weight: ``[E]``
        - output: ``[N, F']``
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        aggr: str | Aggregator | Any = "sum",
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_sizes(in_channels=in_channels, out_channels=out_channels)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.aggr = resolve(aggr)
        if isinstance(self.aggr, ScoreAggregator):
            raise ValueError(
                f"GraphConv computes no attention scores, so it cannot use {self.aggr!r}; "
                "use GATConv or AttentionConv for attention aggregation"
            )
        self.aggr_channels = self.aggr.out_channels(in_channels)  # e.g. 3F for a concatenating MultiAggregation
        factory = {"device": device, "dtype": dtype}
        self.lin_rel = nn.Linear(self.aggr_channels, out_channels, bias=bias, **factory)  # W2, on the aggregate
        self.lin_root = nn.Linear(in_channels, out_channels, bias=False, **factory)  # W1, on the node itself
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin_rel.reset_parameters()
        self.lin_root.reset_parameters()
        if hasattr(self.aggr, "reset_parameters"):
            self.aggr.reset_parameters()

    def forward(self, x: Tensor | Any, edge_index: Tensor | BlockStructure | None = None,
                edge_weight: Tensor | None = None) -> Tensor:
        x, edge_index, _ = unpack(x, edge_index)
        x, graph = prepare(self, x, edge_index, self.in_channels)
        edge_index = graph.to_edge_index() if isinstance(graph, BlockStructure) else graph
        messages = x.index_select(0, edge_index[0])  # [E, F]
        if edge_weight is not None:
            if not isinstance(edge_weight, Tensor) or edge_weight.shape != (edge_index.size(1),):
                shape = tuple(edge_weight.shape) if isinstance(edge_weight, Tensor) else type(edge_weight).__name__
                raise ValueError(f"`edge_weight` must have shape [num_edges={edge_index.size(1)}], got {shape}")
            messages = messages * edge_weight.to(messages.dtype).unsqueeze(-1)
        aggregated = self.aggr.reduce(messages, edge_index[1], x.size(0))  # [N, F] (or [N, aggr_channels])
        if aggregated.shape != (x.size(0), self.aggr_channels):
            raise ValueError(
                f"aggregator {self.aggr!r} returned shape {tuple(aggregated.shape)}, expected "
                f"[{x.size(0)}, {self.aggr_channels}]; an aggregator that changes the feature width must say so in "
                "its out_channels(in_channels)"
            )
        return self.lin_rel(aggregated) + self.lin_root(x)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}"
