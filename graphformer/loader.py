r"""Mini-batches of sampled neighbourhoods that work out of the box: PyG's ``NeighborLoader`` with a plain-torch
sampler when neither pyg-lib nor torch-sparse is installed.

PyG's :class:`torch_geometric.loader.NeighborLoader` samples through pyg-lib or torch-sparse, compiled
extensions without wheels for every torch release. :class:`NeighborLoader` here takes the same arguments and is
a subclass of PyG's: with either extension importable it *is* PyG's loader (same sampler, same batches); without
them it plugs in :class:`TorchNeighborSampler`, the same sampling rule written in vectorised torch.

The two backends draw different random numbers, so the same seed gives different (equally distributed) batches
under each. Equivalence of the plain sampler's batches with pyg-lib's is *not* tested: pyg-lib cannot be installed
where the tests run. The tests check the sampling rule itself (real edges, hop structure, fan-out, uniformity,
exact full-neighbourhood forward passes).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch_geometric.loader
import torch_geometric.typing
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.sampler import NeighborSampler, SamplerOutput
from torch_geometric.sampler.base import NumNeighbors, SubgraphType

__all__ = ["NeighborLoader", "TorchNeighborSampler", "has_compiled_sampler"]


def has_compiled_sampler() -> bool:
    """Whether PyG can sample neighbours itself (pyg-lib or torch-sparse is importable)."""
    return bool(torch_geometric.typing.WITH_PYG_LIB or torch_geometric.typing.WITH_TORCH_SPARSE)


def sample_incoming(colptr: Tensor, frontier: Tensor, k: int, replace: bool = False,
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    r"""One hop of uniform neighbour sampling on a CSC graph, for all frontier nodes at once.

    For each frontier node :math:`v` with in-degree :math:`d_v` (incoming edges ``colptr[v]:colptr[v+1]``):

    - ``k < 0``: all :math:`d_v` incoming edges;
    - ``replace=False``: a uniformly random subset of :math:`\min(k, d_v)` incoming edges (every subset of that
      size equally likely): random keys, one stable sort by node, keep each node's first ``k``;
    - ``replace=True``: :math:`k` independent uniform draws among the :math:`d_v` edges when :math:`d_v > 0`
      (an edge may repeat), none when :math:`d_v = 0`.

    Cost: :math:`O(C \log C)` with :math:`C = \sum_v d_v` candidate edges without replacement (all candidates are
    ranked; pyg-lib's per-node sampling is :math:`O(k)`), :math:`O(k F)` with replacement.

    Returns:
        ``(edge, owner)``: CSC positions of the sampled edges ``[E']`` and, for each, the position of its
        target in ``frontier`` ``[E']``, grouped by target in frontier order.
    """
    start = colptr[frontier]  # [F]
    degree = colptr[frontier + 1] - start  # [F]
    if replace and k >= 0:
        count = torch.where(degree > 0, k, 0)  # [F]
        owner = torch.repeat_interleave(torch.arange(frontier.numel()), count)  # [E']
        draw = torch.rand(owner.numel(), generator=generator, dtype=torch.float64)
        offset = (draw * degree[owner]).long().clamp_(max=degree[owner] - 1)  # uniform in [0, d_v)
        return start[owner] + offset, owner
    owner = torch.repeat_interleave(torch.arange(frontier.numel()), degree)  # [C], non-decreasing
    first = torch.repeat_interleave(degree.cumsum(0) - degree, degree)  # [C] position of the owner's first candidate
    offset = torch.arange(owner.numel()) - first  # [C] rank within the owner's candidates
    if k < 0 or owner.numel() == 0 or int(degree.max()) <= k:
        return start[owner] + offset, owner
    # random order within each owner: shuffle all candidates, then a stable sort by owner
    order = torch.argsort(torch.rand(owner.numel(), generator=generator))
    order = order[torch.argsort(owner[order], stable=True)]  # [C]; owner[order] == owner
    keep = offset < k  # the owner of position p is unchanged, so its rank is still offset[p]
    return (start[owner] + offset)[order][keep], owner[keep]


class TorchNeighborSampler(NeighborSampler):
    r"""PyG's :class:`~torch_geometric.sampler.NeighborSampler` with ``_sample`` in plain, vectorised torch.

    Sampling rule (that of pyg-lib for homogeneous, non-disjoint, non-temporal graphs): start from the seeds
    :math:`S_0`; at hop :math:`h = 1..L` every node newly reached at hop :math:`h-1` (:math:`S_{h-1}`) draws
    incoming edges :math:`j \to i` as in :func:`sample_incoming` with ``k = num_neighbors[h-1]``; the sources
    :math:`j` not reached before form :math:`S_h`. A node is expanded once, so each sampled node has either all of
    its sampled in-edges or none, and with ``num_neighbors=[-1] * L`` an ``L``-layer GNN computes exactly its
    full-graph output at the seeds.

    Local node ids follow :math:`S_0, S_1, \dots, S_L` (seeds first, in input order, duplicates kept; each later
    hop sorted by global id), so outputs for the seeds are ``out[:batch_size]``. The sampler returns a
    :class:`~torch_geometric.sampler.SamplerOutput` like PyG's: ``node`` (global ids ``[N']``), ``row`` / ``col``
    (local source / target ``[E']``), ``edge`` (CSC positions, mapped to ``e_id`` by the loader), ``batch=None``,
    ``num_sampled_nodes`` (``|S_h|``) and ``num_sampled_edges`` (edges drawn at each hop).

    Random numbers come from ``generator`` if given, otherwise from torch's global generator
    (``torch.manual_seed``). In a ``DataLoader`` worker process the worker's global generator is used (seeded
    per worker from the loader's base seed), so workers never repeat each other's draws.

    Args:
        data: a homogeneous :class:`~torch_geometric.data.Data` graph.
        num_neighbors: incoming edges to sample per node at each hop; ``-1`` takes all.
        subgraph_type: ``"directional"`` (the sampled edges) or ``"bidirectional"`` (each also reversed).
        replace: sample with replacement.
        generator: the random generator (``None``: torch's global one).
        **kwargs: the other arguments of :class:`~torch_geometric.sampler.NeighborSampler` (``is_sorted``,
            ``share_memory``); ``disjoint``, temporal and weighted sampling raise :class:`NotImplementedError`.
    """

    def __init__(self, data: Data, num_neighbors: list[int] | NumNeighbors, subgraph_type: str = "directional",
                 replace: bool = False, *, generator: torch.Generator | None = None, **kwargs: Any) -> None:
        _check_plain_sampler_arguments(data, subgraph_type=subgraph_type, **kwargs)
        with warnings.catch_warnings():  # PyG warns that sampling without pyg-lib is deprecated: not here
            warnings.filterwarnings("ignore", message=".*without a 'pyg-lib' installation")
            super().__init__(data, num_neighbors, subgraph_type=subgraph_type, replace=replace, **kwargs)
        self.generator = generator

    def _generator(self) -> torch.Generator | None:
        return None if torch.utils.data.get_worker_info() is not None else self.generator

    def _sample(self, seed: Tensor, seed_time: Tensor | None = None, **kwargs: Any) -> SamplerOutput:
        if isinstance(seed, dict) or seed_time is not None or self.disjoint:
            raise NotImplementedError(
                "TorchNeighborSampler samples homogeneous graphs without `disjoint` or temporal sampling; "
                "install pyg-lib for those"
            )
        generator = self._generator()
        seed = seed.long()  # [S]
        known, known_local = seed.sort()  # global ids reached so far (sorted) and their local ids
        nodes, rows, cols, edges = [seed], [], [], []
        num_sampled_nodes, num_sampled_edges = [seed.numel()], []
        frontier, frontier_start, count = seed, 0, seed.numel()
        for k in self.num_neighbors.get_mapped_values():
            edge, owner = sample_incoming(self.colptr, frontier, k, self.replace, generator)  # [E'], [E']
            source = self.row[edge]  # [E'] global ids
            position = torch.searchsorted(known, source).clamp_(max=max(known.numel() - 1, 0))
            found = known[position] == source if known.numel() else torch.zeros_like(source, dtype=torch.bool)
            new = source[~found].unique()  # [N_h] sorted
            source_local = torch.where(found, known_local[position] if known.numel() else source,
                                       count + torch.searchsorted(new, source))
            nodes.append(new)
            rows.append(source_local)
            cols.append(frontier_start + owner)  # the frontier holds local ids frontier_start, frontier_start + 1, ...
            edges.append(edge)
            num_sampled_nodes.append(new.numel())
            num_sampled_edges.append(edge.numel())
            known, order = torch.cat([known, new]).sort()
            known_local = torch.cat([known_local, torch.arange(count, count + new.numel())])[order]
            frontier, frontier_start, count = new, count, count + new.numel()
        empty = torch.empty(0, dtype=torch.long)
        return SamplerOutput(node=torch.cat(nodes), row=torch.cat(rows) if rows else empty,
                             col=torch.cat(cols) if cols else empty, edge=torch.cat(edges) if edges else empty,
                             batch=None, num_sampled_nodes=num_sampled_nodes, num_sampled_edges=num_sampled_edges)


class NeighborLoader(torch_geometric.loader.NeighborLoader):
    r"""PyG's :class:`~torch_geometric.loader.NeighborLoader` that also runs without pyg-lib / torch-sparse.

    Each mini-batch is the subgraph sampled around ``batch_size`` seed nodes from ``input_nodes``: at hop
    :math:`h` every node reached at hop :math:`h-1` draws up to ``num_neighbors[h-1]`` of its incoming edges
    :math:`j \to i` uniformly (all of them for ``-1``; see :class:`TorchNeighborSampler` for the exact rule). The
    batch is a :class:`~torch_geometric.data.Data` with PyG's attributes: ``n_id`` (global id of each local node,
    seeds first), ``e_id`` (index into the original ``edge_index`` of each sampled edge), ``batch_size``,
    ``input_id`` (positions of the seeds in ``input_nodes``), ``num_sampled_nodes`` / ``num_sampled_edges`` (per
    hop). Outputs for the seeds are ``out[:batch.batch_size]``.

    With pyg-lib or torch-sparse importable this is exactly PyG's loader (every argument passed through). Without
    them it samples with :class:`TorchNeighborSampler`, which handles homogeneous ``Data`` with
    ``disjoint=False``, ``subgraph_type="directional"`` or ``"bidirectional"``, ``replace`` either way, and no
    ``time_attr`` / ``weight_attr``; anything else raises :class:`NotImplementedError` naming the argument. The
    sampler draws from ``generator`` (a ``DataLoader`` keyword, also used for shuffling) or, without one, from
    torch's global generator: batches are reproducible under ``torch.manual_seed``. Equivalence with PyG's
    compiled sampler is not tested here (it cannot be installed where the tests run); both follow the same rule.

    Args:
        data: the graph, a :class:`~torch_geometric.data.Data` (or what PyG's loader accepts, with pyg-lib).
        num_neighbors: a list of ints, one per hop: incoming edges to sample per node; ``-1`` takes all.
        input_nodes: seed nodes, as indices (``LongTensor`` or list) or a boolean mask ``[N]``; ``None``: all.
        replace: sample with replacement.
        subgraph_type: as in PyG's ``NeighborLoader``, and so are ``disjoint``, ``temporal_strategy``,
            ``time_attr``, ``weight_attr``, ``input_time``, ``transform``, ``transform_sampler_output``,
            ``is_sorted``, ``filter_per_worker``, ``neighbor_sampler`` and ``directed``.
        **kwargs: ``torch.utils.data.DataLoader`` arguments: ``batch_size``, ``shuffle``, ``generator``,
            ``num_workers``, ...

    Shapes:
        - per batch: ``x``: ``[N', F]``, ``edge_index``: ``[2, E']`` (local ids), ``n_id``: ``[N']``,
          ``e_id``: ``[E']``, ``input_id``: ``[batch_size]``

    Raises:
        TypeError: ``num_neighbors`` is not a list of ints (homogeneous ``data``).
        ValueError: ``input_nodes`` holds an index outside ``[0, N)``, or a mask whose length is not ``N``.
        NotImplementedError: (plain sampler only) heterogeneous or remote ``data``, ``disjoint=True``,
            ``subgraph_type="induced"``, ``time_attr``, ``weight_attr``.
    """

    def __init__(
        self,
        data: Any,
        num_neighbors: list[int] | Any,
        input_nodes: Tensor | Sequence[int] | Any = None,
        input_time: Tensor | None = None,
        replace: bool = False,
        subgraph_type: SubgraphType | str = "directional",
        disjoint: bool = False,
        temporal_strategy: str = "uniform",
        time_attr: str | None = None,
        weight_attr: str | None = None,
        transform: Callable | None = None,
        transform_sampler_output: Callable | None = None,
        is_sorted: bool = False,
        filter_per_worker: bool | None = None,
        neighbor_sampler: NeighborSampler | None = None,
        directed: bool = True,
        **kwargs: Any,
    ) -> None:
        if isinstance(data, Data):
            _check_num_neighbors(num_neighbors)
            _check_input_nodes(input_nodes, data.num_nodes)
        if neighbor_sampler is None and not has_compiled_sampler():
            if not directed:  # PyG's deprecated spelling of subgraph_type="induced"
                subgraph_type = SubgraphType.induced
            neighbor_sampler = TorchNeighborSampler(
                data, num_neighbors, subgraph_type=subgraph_type, replace=replace,
                generator=kwargs.get("generator"), disjoint=disjoint, temporal_strategy=temporal_strategy,
                time_attr=time_attr, weight_attr=weight_attr, is_sorted=is_sorted,
                share_memory=kwargs.get("num_workers", 0) > 0,
            )
        super().__init__(
            data, num_neighbors, input_nodes=input_nodes, input_time=input_time, replace=replace,
            subgraph_type=subgraph_type, disjoint=disjoint, temporal_strategy=temporal_strategy,
            time_attr=time_attr, weight_attr=weight_attr, transform=transform,
            transform_sampler_output=transform_sampler_output, is_sorted=is_sorted,
            filter_per_worker=filter_per_worker, neighbor_sampler=neighbor_sampler, directed=directed, **kwargs,
        )


# ------------------------------------------------------------------------------------------ validation


def _check_num_neighbors(num_neighbors: Any) -> None:
    values = num_neighbors.values if isinstance(num_neighbors, NumNeighbors) else num_neighbors
    if not isinstance(values, (list, tuple)) or not all(
        isinstance(k, int) and not isinstance(k, bool) for k in values
    ):
        raise TypeError(
            f"`num_neighbors` must be a list of ints, one per hop (-1 for all neighbours), e.g. [10, 10]; "
            f"got {num_neighbors!r} (a dict per edge type needs heterogeneous data)"
        )
    if any(k < -1 for k in values):
        raise ValueError(f"`num_neighbors` entries must be >= 0, or -1 for all neighbours; got {list(values)}")


def _check_input_nodes(input_nodes: Any, num_nodes: int) -> None:
    if input_nodes is None:
        return
    nodes = input_nodes if isinstance(input_nodes, Tensor) else torch.as_tensor(input_nodes)
    if nodes.dtype == torch.bool:
        if nodes.dim() != 1 or nodes.numel() != num_nodes:
            raise ValueError(
                f"`input_nodes` as a boolean mask needs shape [num_nodes] = [{num_nodes}]; got {list(nodes.shape)}"
            )
        return
    if nodes.is_floating_point() or nodes.is_complex():
        raise TypeError(f"`input_nodes` must hold node indices (integers) or a boolean mask; got {nodes.dtype}")
    if nodes.numel() and (int(nodes.min()) < 0 or int(nodes.max()) >= num_nodes):
        raise ValueError(
            f"`input_nodes` must lie in [0, {num_nodes}) (the graph has {num_nodes} nodes); "
            f"got indices from {int(nodes.min())} to {int(nodes.max())}"
        )


def _check_plain_sampler_arguments(data: Any, subgraph_type: SubgraphType | str = "directional",
                                   disjoint: bool = False, time_attr: str | None = None,
                                   weight_attr: str | None = None, **_: Any) -> None:
    hint = "; install pyg-lib (https://github.com/pyg-team/pyg-lib) to use PyG's compiled sampler"
    if not isinstance(data, Data):
        raise NotImplementedError(
            f"`data` must be a homogeneous torch_geometric.data.Data for graphformer's plain-torch sampler; "
            f"got {type(data).__name__}{hint}"
        )
    if disjoint:
        raise NotImplementedError(f"`disjoint=True` is not supported by graphformer's plain-torch sampler{hint}")
    names = [member.value for member in SubgraphType]
    if str(getattr(subgraph_type, "value", subgraph_type)) not in names:
        raise ValueError(f"`subgraph_type` must be one of {names}; got {subgraph_type!r}")
    if SubgraphType(subgraph_type) == SubgraphType.induced:
        raise NotImplementedError(
            f"`subgraph_type` must be 'directional' or 'bidirectional' for graphformer's plain-torch sampler; "
            f"got 'induced' (or directed=False){hint}"
        )
    for name, value in (("time_attr", time_attr), ("weight_attr", weight_attr)):
        if value is not None:
            raise NotImplementedError(
                f"`{name}` (temporal / weighted sampling) is not supported by graphformer's plain-torch "
                f"sampler; got {value!r}{hint}"
            )
