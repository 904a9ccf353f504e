"""Graphormer's edge encoding: an attention bias from the features of the edges along a shortest path."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from graphformer.graphs.pairs import pair_offsets
from graphformer.ops.bias import PairBias
from graphformer.structural.paths import batch_ptr


class EdgePathBias(nn.Module):
    r"""Graphormer's edge encoding (Ying et al., 2021): the mean over the edges of a shortest path ``j -> i`` of
    each edge's features projected by a learned weight per position on the path and head.

    .. math::
        c_{ij}^h = \frac{1}{N} \sum_{n=1}^{N} x_{e_n} \cdot w_n^h, \qquad N = \min(\mathrm{len}(SP_{ij}), K)

    with :math:`SP_{ij} = (e_1, \dots, e_{len})` the path from :math:`v_j` to :math:`v_i` (:math:`e_1` leaves
    :math:`v_j`) and ``K = max_path_length``: longer paths keep their first ``K`` edges (Graphormer's
    ``multi_hop_max_dist``). Pairs without a path (``i = j``, unreachable) get ``0``. Categorical edge features
    are embedded first (e.g. an ``nn.Embedding`` to ``edge_dim``), as Graphormer does.

    Args:
        edge_dim: size ``F`` of the edge features.
        num_heads: ``H``.
        max_path_length: ``K >= 1``.

    Shapes:
        - forward(edge_attr, path, batch=None, ptr=None): ``edge_attr`` ``[E, F]``; ``path`` ``[P, W]`` edge ids
          (columns of the batch's ``edge_index``, ``-1``-padded) from
          :func:`~graphformer.structural.shortest_paths` (``return_paths=True``) or
          :func:`~graphformer.structural.batch_path_edges`; the batch as a ``batch`` vector / ``Batch`` / ``ptr``
        - output: :class:`~graphformer.ops.PairBias` with ``H`` heads (values ``[P, H]``)
    """

    def __init__(self, edge_dim: int, num_heads: int, max_path_length: int) -> None:
        super().__init__()
        for name, value in (("edge_dim", edge_dim), ("num_heads", num_heads), ("max_path_length", max_path_length)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}")
        self.edge_dim, self.num_heads, self.max_path_length = edge_dim, num_heads, max_path_length
        self.weight = nn.Parameter(torch.empty(max_path_length, num_heads, edge_dim))  # w_n^h: [K, H, F]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=0.02)

    def forward(
        self, edge_attr: Tensor, path: Tensor, batch: Tensor | Any | None = None, ptr: Tensor | None = None
    ) -> PairBias:
        if not isinstance(edge_attr, Tensor) or not edge_attr.is_floating_point() or edge_attr.dim() != 2 \
                or edge_attr.size(1) != self.edge_dim:
            got = f"shape {tuple(edge_attr.shape)}, {edge_attr.dtype}" if isinstance(edge_attr, Tensor) \
                else type(edge_attr).__name__
            raise ValueError(f"`edge_attr` must be a float [E, edge_dim={self.edge_dim}] tensor, got {got}")
        if not isinstance(path, Tensor) or path.is_floating_point() or path.dim() != 2:
            got = f"shape {tuple(path.shape)}, {path.dtype}" if isinstance(path, Tensor) else type(path).__name__
            raise ValueError(f"`path` must be an integer [P, W] tensor of edge ids, got {got}")
        if batch is None and ptr is None:  # one graph
            root = int(round(path.size(0) ** 0.5))
            if root * root != path.size(0):
                raise ValueError(f"`path` has {path.size(0)} rows, not L*L for one graph; give `batch` or `ptr`")
            ptr = torch.tensor([0, root])
        else:
            ptr = batch_ptr(batch, ptr)
        num_pairs = int(pair_offsets(ptr)[-1])
        if path.size(0) != num_pairs:
            raise ValueError(
                f"`path` has {path.size(0)} rows but the batch has sum_g L_g^2 = {num_pairs} node pairs; "
                "was it computed for another batch?"
            )
        num_edges = edge_attr.size(0)
        if path.numel() > 0 and (int(path.min()) < -1 or int(path.max()) >= num_edges):
            raise ValueError(
                f"`path` holds edge ids in [{int(path.min())}, {int(path.max())}] but `edge_attr` has {num_edges} "
                "edges (ids must be in [0, E) or -1 for padding); for a PyG Batch use batch_path_edges"
            )
        path = path[:, : self.max_path_length].long().to(edge_attr.device)  # [P, N]
        steps = path.size(1)
        weight = self.weight[:steps].to(edge_attr.dtype)  # [N, H, F]
        out = edge_attr.new_zeros(num_pairs, self.num_heads)  # [P, H]
        if steps > 0 and num_edges > 0:
            rows = (path[:, 0] >= 0).nonzero().view(-1)  # [Q] pairs with a path
            path = path[rows]  # [Q, N]
            projected = torch.einsum("ef,nhf->enh", edge_attr, weight).reshape(num_edges * steps, -1)  # [E * N, H]
            valid = path >= 0  # [Q, N]
            index = path.clamp(min=0) * steps + torch.arange(steps, device=path.device)  # [Q, N]
            terms = projected[index] * valid.unsqueeze(-1).to(projected.dtype)  # [Q, N, H]
            length = valid.sum(1, keepdim=True).to(projected.dtype)  # [Q, 1]
            out = out.index_copy(0, rows, terms.sum(1) / length)
        return PairBias.from_values(out, ptr=ptr.to(out.device))

    def extra_repr(self) -> str:
        return f"edge_dim={self.edge_dim}, num_heads={self.num_heads}, max_path_length={self.max_path_length}"
