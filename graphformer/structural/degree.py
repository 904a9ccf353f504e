"""Graphormer's centrality encoding: a learned embedding of each node's degree, added to its features."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from graphformer.graphs.validation import check_edge_index

DIRECTIONS = ("in", "out", "both")


class DegreeEncoding(nn.Module):
    r"""Centrality encoding (Ying et al., 2021): :math:`h_i^{(0)} = x_i + z^-_{\deg^-(v_i)} + z^+_{\deg^+(v_i)}`.

    Returns the :math:`z` term: a learned embedding of the in-degree (edges ``j -> i`` entering ``i``), the
    out-degree, or the sum of both (``direction="both"``, two tables, as Graphormer does for directed graphs; for an
    undirected graph stored with both directions ``"in"`` suffices). Degrees above ``max_degree`` share its row.

    Args:
        max_degree: largest distinguished degree ``D`` (tables of ``D + 1`` rows).
        channels: embedding size (the node feature size it is added to).
        direction: ``"in"``, ``"out"`` or ``"both"``.

    Shapes:
        - forward(edge_index [2, E], num_nodes=None): ``num_nodes`` defaults to ``edge_index.max() + 1``
        - output: ``[N, channels]``
    """

    def __init__(self, max_degree: int, channels: int, direction: str = "in") -> None:
        super().__init__()
        if not isinstance(max_degree, int) or max_degree < 0:
            raise ValueError(f"`max_degree` must be a non-negative int, got {max_degree!r}")
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"`channels` must be a positive int, got {channels!r}")
        if direction not in DIRECTIONS:
            raise ValueError(f"`direction` must be one of {DIRECTIONS}, got {direction!r}")
        self.max_degree, self.channels, self.direction = max_degree, channels, direction
        self.in_embedding = nn.Embedding(max_degree + 1, channels) if direction in ("in", "both") else None
        self.out_embedding = nn.Embedding(max_degree + 1, channels) if direction in ("out", "both") else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for table in (self.in_embedding, self.out_embedding):
            if table is not None:
                nn.init.normal_(table.weight, std=0.02)

    def forward(self, edge_index: Tensor, num_nodes: int | None = None) -> Tensor:
        if num_nodes is None:
            num_nodes = int(edge_index.max()) + 1 if isinstance(edge_index, Tensor) and edge_index.numel() > 0 else 0
        edge_index = check_edge_index(edge_index, num_nodes)
        out: Tensor | None = None
        for table, row in ((self.in_embedding, 1), (self.out_embedding, 0)):
            if table is None:
                continue
            degree = torch.bincount(edge_index[row], minlength=num_nodes).clamp(max=self.max_degree)  # [N]
            term = table(degree.to(table.weight.device))  # [N, channels]
            out = term if out is None else out + term
        assert out is not None
        return out

    def extra_repr(self) -> str:
        return f"max_degree={self.max_degree}, channels={self.channels}, direction={self.direction!r}"
