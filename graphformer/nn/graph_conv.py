"""GraphConv: the seed formula of message passing, PyG's layer with graphformer's aggregators."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.nn.dense.linear import Linear

from graphformer.aggr import Aggregator, ScoreAggregator, resolve
from graphformer.graphs.structure import BlockStructure
from graphformer.nn.inputs import check_in_channels, check_sizes, read_inputs
from graphformer.nn.message_passing import MessagePassing


class GraphConv(MessagePassing):
    r"""Graph convolution with a pluggable aggregation (Morris et al., 2019); PyG's ``GraphConv``.

    .. math::
        h_i' = W_1 h_i + W_2 \cdot \mathrm{AGG}_{j \to i} \left( w_{ji} \, h_j \right)

    with edge weights :math:`w_{ji}` (1 when not given). Same arguments and parameters as PyG's layer
    (``lin_root`` = :math:`W_1` without bias, ``lin_rel`` = :math:`W_2` with bias), so state_dicts load both ways.

    Args:
        in_channels: input features per node ``F``, ``-1`` (lazy), or a pair ``(F_src, F_dst)`` (bipartite).
        out_channels: output features per node ``F'``.
        aggr: ``"sum"`` / ``"add"``, ``"mean"``, ``"max"``, ``"min"``, any name of :func:`graphformer.aggr.available`,
            a list of them (concatenated), an :class:`~graphformer.aggr.Aggregator` or a PyG ``Aggregation``.
        bias: learn an additive bias.
        device, dtype: where and in which dtype to create the parameters.
        **kwargs: PyG ``MessagePassing`` options (``flow``, ``decomposed_layers``, ...).

    Shapes:
        - x: ``[N, F]`` or a pair ``([N_src, F_src], [N_dst, F_dst] or None)``; edge_index: ``[2, E]``, a sparse
          ``adj_t`` (its values are edge weights) or a block structure; edge_weight: ``[E]``
        - output: ``[N_dst, F']``
    """

    def __init__(
        self,
        in_channels: int | tuple[int, int],
        out_channels: int,
        aggr: str | list[str] | Aggregator | Any = "add",
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> None:
        channels = check_in_channels(in_channels)
        check_sizes(out_channels=out_channels)
        module = resolve(aggr)
        if isinstance(module, ScoreAggregator):
            raise ValueError(
                f"GraphConv computes no attention scores, so `aggr` cannot be {module!r}; "
                "use GATConv, TransformerConv or AttentionConv for attention aggregation"
            )
        super().__init__(aggr=None, **kwargs)
        self.aggr = aggr if isinstance(aggr, str) else (list(aggr) if isinstance(aggr, (list, tuple)) else str(module))
        self.aggr_module = module
        self.in_channels, self.out_channels = in_channels, out_channels
        self._channels = channels
        # e.g. 3F for a concatenating Multi; lazy (-1) stays lazy
        self.aggr_channels = module.out_channels(channels[0]) if channels[0] > 0 else -1
        self.lin_rel = Linear(self.aggr_channels, out_channels, bias=bias)  # W2, on the aggregate
        self.lin_root = Linear(channels[1], out_channels, bias=False)  # W1, on the node itself
        self.reset_parameters()
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    def reset_parameters(self) -> None:
        self.lin_rel.reset_parameters()
        self.lin_root.reset_parameters()
        if hasattr(self.aggr_module, "reset_parameters"):
            self.aggr_module.reset_parameters()

    def forward(self, x: Tensor | tuple[Tensor, Tensor | None] | Any, edge_index: Any = None,
                edge_weight: Tensor | None = None, size: tuple[int, int] | None = None) -> Tensor:
        if not isinstance(x, (Tensor, tuple, list)) and hasattr(x, "x"):  # a PyG Data / Batch
            data = x
            x = data.x
            if edge_index is None:
                edge_index = getattr(data, "edge_index", None)
                edge_weight = getattr(data, "edge_weight", None) if edge_weight is None else edge_weight
        x_src, x_dst, graph = read_inputs(self, x, edge_index, size, self._channels)
        edges = graph.edge_index.to_edge_index() if isinstance(graph.edge_index, BlockStructure) else graph.edge_index
        if edge_weight is None and graph.values is not None and graph.values.dim() == 1:
            edge_weight = graph.values
        if edge_weight is not None:
            if not isinstance(edge_weight, Tensor) or edge_weight.shape != (edges.size(1),):
                shape = tuple(edge_weight.shape) if isinstance(edge_weight, Tensor) else type(edge_weight).__name__
                raise ValueError(f"`edge_weight` must have shape [num_edges={edges.size(1)}], got {shape}")
            edge_weight = edge_weight.to(x_src.dtype)
        # sum / mean / max ... of gathered messages is already what PyG's propagate does: no separate fast path
        out = self.propagate(edges, x=(x_src, x_dst), edge_weight=edge_weight, size=(graph.num_src, graph.num_dst))
        if out.size(-1) != self.lin_rel.in_channels and self.lin_rel.in_channels > 0:
            raise ValueError(
                f"aggregation {self.aggr_module!r} returned width {out.size(-1)}, expected {self.lin_rel.in_channels}; "
                "an aggregator that changes the feature width must say so in its out_channels(in_channels)"
            )
        out = self.lin_rel(out)
        if x_dst is not None:
            out = out + self.lin_root(x_dst)
        return out

    def message(self, x_j: Tensor, edge_weight: Tensor | None) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def aggregate(self, inputs: Tensor, index: Tensor, ptr: Tensor | None = None,
                  dim_size: int | None = None) -> Tensor:
        return self.aggr_module(inputs, index, dim_size=dim_size, dim=self.node_dim)
