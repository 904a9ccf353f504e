"""A PyG transform that computes shortest-path distances (and paths) once per graph and stores them on ``Data``."""

from __future__ import annotations

import copy
from typing import Any

from torch_geometric.transforms import BaseTransform

from graphformer.structural.paths import shortest_paths


class ShortestPathDistance(BaseTransform):
    r"""Store all-pairs shortest-path distances of a graph as a flat ``[L * L]`` attribute (Graphormer's
    :math:`\phi(v_j, v_i)`).

    ``data.<attr>`` is :func:`~graphformer.structural.shortest_paths` of the graph: row-major ``[L, L]`` (rows =
    targets ``i``, columns = sources ``j``), flattened, ``-1`` for unreachable pairs (or farther than
    ``max_distance``). PyG's ``Batch`` concatenates it (concatenation dimension 0, no offset), which is exactly the
    flat pair layout of the batch (:mod:`graphformer.graphs.pairs`): ``SpatialBias(...)(batch.spd, batch)``.

    With ``paths=True`` it also stores ``data.<attr>_path`` ``[L * L, max_distance]``: the edge ids of one
    shortest path from ``j`` to ``i`` (ids of the graph's *own* ``edge_index`` columns), ``-1``-padded. PyG
    concatenates these without an offset too; :func:`~graphformer.structural.batch_path_edges` turns a batch's
    into ids of the batch's ``edge_index`` (equal to ``shortest_paths`` of the batch). ``max_distance`` is then
    required, so that every graph's paths have the same width.

    The input ``Data`` is never modified: the transform returns a shallow copy with the new attributes.

    Args:
        max_distance: stop the search after this many edges (``None``: full distances).
        paths: also store the path edge ids.
        attr: attribute name (default ``"spd"``; the paths go to ``attr + "_path"``).

    Example (needs a dataset, so it is not run as a doctest):

    .. code-block:: python

        dataset = MyDataset(root, pre_transform=ShortestPathDistance(max_distance=20))
        batch = next(iter(DataLoader(dataset, batch_size=32)))
        bias = SpatialBias(num_heads=8, max_distance=20)(batch.spd, batch)
    """

    def __init__(self, max_distance: int | None = None, paths: bool = False, attr: str = "spd") -> None:
        if max_distance is not None and (not isinstance(max_distance, int) or max_distance < 0):
            raise ValueError(f"`max_distance` must be a non-negative int or None, got {max_distance!r}")
        if paths and max_distance is None:
            raise ValueError("`paths=True` needs `max_distance` (the width of the stored paths, equal for all graphs)")
        if "index" in attr or "batch" in attr:
            raise ValueError(f"`attr` must not contain 'index' or 'batch' (PyG would offset it in a batch): {attr!r}")
        self.max_distance, self.paths, self.attr = max_distance, paths, attr

    def forward(self, data: Any) -> Any:
        data = copy.copy(data)  # a shallow copy: the caller's Data keeps its attributes
        num_nodes = data.num_nodes
        result = shortest_paths(
            data.edge_index, num_nodes=num_nodes, max_distance=self.max_distance, return_paths=self.paths
        )
        if self.paths:
            distance, path = result
            data[self.attr] = distance
            data[self.attr + "_path"] = path
        else:
            data[self.attr] = result
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_distance={self.max_distance}, paths={self.paths}, attr={self.attr!r})"
