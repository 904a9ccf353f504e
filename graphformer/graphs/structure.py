"""Implicit graph structures: who talks to whom, without materialising the edges.

A batch of ``B`` graphs with ``N = sum_g L_g`` nodes is described, as in PyG, by a sorted ``batch`` vector
``[N]`` or by offsets ``ptr`` ``[B + 1]``. A :class:`BlockStructure` joins node ``j`` to node ``i`` only
inside the same graph and only where its rule ``allows(i_local, j_local)`` holds, so it stands for up to
``sum_g L_g^2`` edges while storing ``O(N)`` numbers. Attention over such a structure can run as dense
block attention (``scaled_dot_product_attention``); :meth:`BlockStructure.to_edge_index` materialises the
same edges as an explicit ``edge_index`` for checking and for sparse kernels.

Edges point from source ``j`` (row 0) to target ``i`` (row 1), as in PyG. Materialised edges are sorted by
target, then source.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor

from graphformer.graphs.validation import check_index


def _batch_from_data(data: Any) -> tuple[Tensor | None, Tensor | None, int]:
    """Read ``(batch, ptr, num_nodes)`` from a PyG ``Data``/``Batch`` without modifying it."""
    num_nodes = data.num_nodes
    batch = getattr(data, "batch", None)
    ptr = getattr(data, "ptr", None)
    return batch, ptr, int(num_nodes)


class BlockStructure(ABC):
    """Base class of block-diagonal implicit structures over a PyG-style batch.

    Subclasses define :meth:`allows` on local (within-graph) positions. Node ``i`` receives from node ``j``
    iff both are in the same graph and ``allows(i - ptr[g], j - ptr[g])``.

    Args:
        batch: ``[N]`` sorted graph assignment of each node (PyG ``batch``), or
        ptr: ``[B + 1]`` offsets of each graph's nodes (PyG ``ptr``). Give exactly one. With neither,
            ``num_nodes`` describes a single graph.
        num_nodes: number of nodes ``N``; inferred from ``batch``/``ptr`` when omitted.
    """

    def __init__(
        self,
        batch: Tensor | None = None,
        *,
        ptr: Tensor | None = None,
        num_nodes: int | None = None,
    ) -> None:
        if batch is not None and not isinstance(batch, Tensor):  # a PyG Data / Batch
            if not hasattr(batch, "num_nodes"):
                raise TypeError(
                    f"`batch` must be a 1-D LongTensor, a PyG Data/Batch or None, got {type(batch).__name__}"
                )
            batch, data_ptr, num_nodes = _batch_from_data(batch)
            if batch is None and ptr is None:
                ptr = data_ptr
            elif batch is not None:
                ptr = None
        if batch is not None and ptr is not None:
            raise ValueError("give either `batch` or `ptr`, not both")
        if batch is not None:
            batch = check_index(batch, "batch", num_nodes)
            if batch.numel() > 0:
                if int(batch.min()) < 0:
                    raise ValueError("`batch` contains negative graph ids")
                if bool((batch[1:] < batch[:-1]).any()):
                    raise ValueError(
                        "`batch` must be sorted (nodes of one graph contiguous, as in a PyG Batch); "
                        "sort nodes by graph first"
                    )
                num_graphs = int(batch.max()) + 1
            else:
                num_graphs = 0
            counts = torch.bincount(batch, minlength=num_graphs)
            ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        elif ptr is not None:
            ptr = check_index(ptr, "ptr")
            if ptr.numel() == 0 or int(ptr[0]) != 0 or bool((ptr[1:] < ptr[:-1]).any()):
                raise ValueError("`ptr` must start at 0 and be non-decreasing, like PyG's Batch.ptr")
            if num_nodes is not None and int(ptr[-1]) != num_nodes:
                raise ValueError(f"`ptr` ends at {int(ptr[-1])} but num_nodes is {num_nodes}")
        else:
            if num_nodes is None:
                raise ValueError("give `batch`, `ptr` or `num_nodes` to describe the graph(s)")
            ptr = torch.tensor([0, num_nodes], dtype=torch.long)
        self.ptr: Tensor = ptr  # [B + 1]
        self.num_nodes: int = int(ptr[-1])
        sizes = ptr.diff()
        self.sizes: Tensor = sizes  # [B]
        self.max_size: int = int(sizes.max()) if sizes.numel() > 0 else 0

    # -- the rule ---------------------------------------------------------------------------------------
    @abstractmethod
    def allows(self, target: Tensor, source: Tensor) -> Tensor:
        """Bool mask: may local position ``target`` receive from local position ``source``? Broadcasts."""

    # -- derived views ----------------------------------------------------------------------------------
    @property
    def num_graphs(self) -> int:
        return self.sizes.numel()

    @property
    def device(self) -> torch.device:
        return self.ptr.device

    @property
    def batch(self) -> Tensor:
        """``[N]`` graph id of every node."""
        return torch.repeat_interleave(torch.arange(self.num_graphs, device=self.device), self.sizes)

    def to(self, device: torch.device | str) -> BlockStructure:
        """A copy of this structure with its index tensors on ``device``."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.ptr, new.sizes = self.ptr.to(device), self.sizes.to(device)
        return new

    def dense_mask(self, length: int | None = None) -> Tensor:
        """``[L, L]`` bool mask of :meth:`allows` over local positions (rows = targets, columns = sources)."""
        length = self.max_size if length is None else length
        pos = torch.arange(length, device=self.device)
        return self.allows(pos.view(-1, 1), pos.view(1, -1))

    def to_edge_index(self) -> Tensor:
        """Materialise the structure as an explicit ``edge_index`` ``[2, E]`` sorted by target, then source."""
        sizes = self.sizes
        pair_counts = sizes * sizes  # candidate (target, source) pairs per graph
        total = int(pair_counts.sum())
        if total == 0:
            return torch.empty(2, 0, dtype=torch.long, device=self.device)
        graph = torch.repeat_interleave(torch.arange(self.num_graphs, device=self.device), pair_counts)  # [P]
        first_pair = torch.cumsum(pair_counts, 0) - pair_counts
        local = torch.arange(total, device=self.device) - first_pair[graph]  # [P]
        length = sizes[graph]
        target, source = local // length, local % length
        keep = self.allows(target, source)
        offset = self.ptr[graph]
        return torch.stack([(source + offset)[keep], (target + offset)[keep]])

    @property
    def num_edges(self) -> int:
        """Number of edges the structure stands for (counted without materialising them)."""
        if self.max_size == 0:
            return 0
        mask = self.dense_mask().to(torch.long)  # [Lmax, Lmax]
        # edges of a graph of size L = sum of the top-left L x L block of the mask
        block_sums = mask.cumsum(0).cumsum(1)  # [Lmax, Lmax]
        sizes = self.sizes[self.sizes > 0]
        return int(block_sums[sizes - 1, sizes - 1].sum())

    def _extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        extra = self._extra_repr()
        extra = f", {extra}" if extra else ""
        return f"{type(self).__name__}(num_graphs={self.num_graphs}, num_nodes={self.num_nodes}{extra})"


class FullyConnected(BlockStructure):
    """Every node joined to every node of its own graph, **self-loops included** (a token attends to itself).

    Stands for ``sum_g L_g^2`` edges; this is the graph on which attention is a transformer's self-attention.
    """

    def allows(self, target: Tensor, source: Tensor) -> Tensor:
        return torch.ones_like(target + source, dtype=torch.bool)

    @property
    def num_edges(self) -> int:
        return int((self.sizes * self.sizes).sum())


class Causal(BlockStructure):
    """Node ``i`` receives from every ``j <= i`` of its own graph (self-loops included): a decoder's mask.

    Stands for ``sum_g L_g (L_g + 1) / 2`` edges.
    """

    def allows(self, target: Tensor, source: Tensor) -> Tensor:
        return source <= target

    @property
    def num_edges(self) -> int:
        return int((self.sizes * (self.sizes + 1) // 2).sum())


class Banded(BlockStructure):
    """A band structure: node ``i`` receives from ``i + o`` for every ``o`` in :meth:`offsets` inside its graph.

    Subclasses give the offsets (and a matching :meth:`allows`); materialising and counting are ``O(N K)`` for
    ``K`` offsets, never ``O(L^2)``.
    """

    @abstractmethod
    def offsets(self) -> list[int]:
        """Source offsets ``j - i`` the rule allows (within a graph)."""

    def to_edge_index(self) -> Tensor:
        """The band materialised in ``O(N K)``, sorted by target, then source (as the generic method)."""
        offsets = self.offsets()
        if self.num_nodes == 0 or not offsets:
            return torch.empty(2, 0, dtype=torch.long, device=self.device)
        target = torch.arange(self.num_nodes, device=self.device)  # [N]
        graph = self.batch
        start, end = self.ptr[graph], self.ptr[graph + 1]  # [N] first node and one past the last of its graph
        shift = torch.tensor(sorted(offsets), dtype=torch.long, device=self.device)  # [K]
        source = target.view(-1, 1) + shift.view(1, -1)  # [N, K], row-major = sorted by target, then source
        keep = (source >= start.view(-1, 1)) & (source < end.view(-1, 1))
        return torch.stack([source[keep], target.view(-1, 1).expand_as(source)[keep]])

    @property
    def num_edges(self) -> int:
        """``sum_g sum_o max(L_g - |o|, 0)``, without materialising."""
        shift = torch.tensor(self.offsets(), dtype=torch.long).abs()  # [K]
        return int((self.sizes.cpu().view(-1, 1) - shift.view(1, -1)).clamp(min=0).sum())


class SlidingWindow(Banded):
    """Node ``i`` receives from every ``j`` of its own graph with ``|i - j| <= radius`` (self-loops included).

    Local attention: ``2 * radius + 1`` sources per node away from the ends of a sequence.

    Args:
        radius: how far (in positions) a node sees on each side; ``radius=0`` is self-loops only.
        batch, ptr, num_nodes: as in :class:`BlockStructure`.
    """

    def __init__(
        self,
        radius: int,
        batch: Tensor | None = None,
        *,
        ptr: Tensor | None = None,
        num_nodes: int | None = None,
    ) -> None:
        if not isinstance(radius, int) or radius < 0:
            raise ValueError(f"`radius` must be a non-negative int, got {radius!r}")
        super().__init__(batch, ptr=ptr, num_nodes=num_nodes)
        self.radius = radius

    def allows(self, target: Tensor, source: Tensor) -> Tensor:
        return (target - source).abs() <= self.radius

    def offsets(self) -> list[int]:
        return list(range(-self.radius, self.radius + 1))

    def _extra_repr(self) -> str:
        return f"radius={self.radius}"


def fully_connected(
    batch: Tensor | Any | None = None, *, ptr: Tensor | None = None, num_nodes: int | None = None
) -> FullyConnected:
    """The complete graph of each graph in a batch, self-loops included, as an implicit structure.

    Args:
        batch: PyG ``batch`` vector ``[N]`` (sorted), or a PyG ``Data``/``Batch`` object.
        ptr: alternatively, offsets ``[B + 1]``.
        num_nodes: alternatively, the size of a single graph.

    Example::

        >>> g = fully_connected(torch.tensor([0, 0, 1, 1, 1]))
        >>> g.num_edges, g.to_edge_index().shape
        (13, torch.Size([2, 13]))
    """
    return FullyConnected(batch, ptr=ptr, num_nodes=num_nodes)


def causal(batch: Tensor | Any | None = None, *, ptr: Tensor | None = None, num_nodes: int | None = None) -> Causal:
    """Causal structure: node ``i`` receives from ``j <= i`` within its graph (see :func:`fully_connected`)."""
    return Causal(batch, ptr=ptr, num_nodes=num_nodes)


def window(
    batch: Tensor | Any | None = None,
    radius: int = 1,
    *,
    ptr: Tensor | None = None,
    num_nodes: int | None = None,
) -> SlidingWindow:
    """Sliding-window structure: node ``i`` receives from ``j`` with ``|i - j| <= radius`` within its graph."""
    return SlidingWindow(radius, batch, ptr=ptr, num_nodes=num_nodes)
