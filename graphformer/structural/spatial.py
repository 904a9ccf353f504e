"""Graphormer's spatial encoding: a learned attention bias per head for each shortest-path distance."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from graphformer.graphs.pairs import PairCodes, pair_offsets
from graphformer.ops.bias import PairBias
from graphformer.structural.paths import UNREACHABLE, batch_ptr


def distance_codes(
    distance: PairCodes | Tensor, batch: Tensor | Any | None, ptr: Tensor | None, name: str = "distance"
) -> tuple[Tensor, Tensor]:
    """``(distance [P] int64, ptr [B + 1])`` from a :class:`PairCodes` or a flat tensor (``-1`` = unreachable) with
    its batch; raises ``ValueError`` naming ``name`` if the tensor does not fit the batch."""
    if isinstance(distance, PairCodes):
        if batch is not None or ptr is not None:
            raise ValueError(f"`{name}` is a PairCodes, which knows its batch; do not also give `batch` / `ptr`")
        return distance.codes, distance.ptr
    if not isinstance(distance, Tensor) or distance.is_floating_point() or distance.dtype is torch.bool:
        got = getattr(distance, "dtype", type(distance).__name__)
        raise TypeError(f"`{name}` must be a PairCodes or an integer [P] tensor, got {got}")
    if distance.dim() == 2 and distance.size(0) == distance.size(1) and batch is None and ptr is None:
        distance = distance.reshape(-1)  # one graph given as [L, L]
    if distance.dim() != 1:
        raise ValueError(f"`{name}` must be flat [P] (or [L, L] for one graph), got shape {tuple(distance.shape)}")
    if batch is None and ptr is None:
        root = int(round(distance.numel() ** 0.5))
        if root * root != distance.numel():
            raise ValueError(f"`{name}` has {distance.numel()} entries, not L*L for one graph; give `batch` or `ptr`")
        ptr = torch.tensor([0, root])
    else:
        ptr = batch_ptr(batch, ptr)
    expected = int(pair_offsets(ptr)[-1])
    if distance.numel() != expected:
        raise ValueError(
            f"`{name}` has {distance.numel()} entries but the batch has sum_g L_g^2 = {expected} node pairs; "
            "was it computed for another batch?"
        )
    if distance.numel() > 0 and int(distance.min()) < UNREACHABLE:
        raise ValueError(f"`{name}` must be >= 0, or -1 for unreachable pairs; got {int(distance.min())}")
    return distance.long(), ptr.to(distance.device)


class SpatialBias(nn.Module):
    r"""Graphormer's spatial encoding (Ying et al., 2021): a learned bias per head for each shortest-path distance.

    .. math::
        b_{ij}^h = T\left[\min(\phi(v_j, v_i), K),\ h\right], \qquad
        b_{ij}^h = T[K + 1, h] \text{ if } v_i \text{ is unreachable from } v_j

    with :math:`\phi` the shortest-path distance and ``K = max_distance`` (farther pairs share the bias of ``K``).
    The result is a :class:`~graphformer.ops.PairBias`: pass it as ``attn_bias=`` to
    :class:`~graphformer.nn.AttentionConv` / :class:`~graphformer.GraphTransformerLayer` on
    ``fully_connected(batch)`` (it reaches the kernel as a float mask per padded block; nothing of size
    ``sum L^2 x H`` exists outside attention).

    Args:
        num_heads: ``H``.
        max_distance: ``K >= 0``.

    Shapes:
        - forward(distance, batch=None, ptr=None): ``distance`` ``[P]`` (``P = sum_g L_g^2``, from
          :func:`~graphformer.structural.shortest_paths` or :class:`~graphformer.structural.ShortestPathDistance`;
          ``-1`` = unreachable) with the batch's ``batch`` vector / ``Batch`` / ``ptr``, or a
          :class:`~graphformer.graphs.PairCodes` of distances
        - output: :class:`~graphformer.ops.PairBias` with ``H`` heads (table ``[K + 2, H]``)
    """

    def __init__(self, num_heads: int, max_distance: int) -> None:
        super().__init__()
        if not isinstance(num_heads, int) or num_heads < 1:
            raise ValueError(f"`num_heads` must be a positive int, got {num_heads!r}")
        if not isinstance(max_distance, int) or max_distance < 0:
            raise ValueError(f"`max_distance` must be a non-negative int, got {max_distance!r}")
        self.num_heads, self.max_distance = num_heads, max_distance
        self.table = nn.Embedding(max_distance + 2, num_heads)  # rows 0..K: distance, K + 1: unreachable
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.table.weight, std=0.02)  # as Graphormer initialises its embeddings

    def buckets(
        self, distance: PairCodes | Tensor, batch: Tensor | Any | None = None, ptr: Tensor | None = None
    ) -> PairCodes:
        """The table row of every pair: ``min(d, K)``, or ``K + 1`` if unreachable (``[P]`` as :class:`PairCodes`)."""
        codes, ptr = distance_codes(distance, batch, ptr)
        codes = torch.where(codes < 0, self.max_distance + 1, codes.clamp(max=self.max_distance))
        return PairCodes(codes, ptr=ptr, num_codes=self.max_distance + 2)

    def forward(
        self, distance: PairCodes | Tensor, batch: Tensor | Any | None = None, ptr: Tensor | None = None
    ) -> PairBias:
        return PairBias.from_codes(self.buckets(distance, batch, ptr), self.table.weight)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, max_distance={self.max_distance}"
