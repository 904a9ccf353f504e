"""Structural encodings of whole-graph transformers (Graphormer, Ying et al. 2021; GraphGPS).

* :func:`shortest_paths`: all-pairs shortest-path distances (and edge paths) of a batch in the flat pair layout
  of :mod:`graphformer.graphs.pairs`, by one vectorised BFS; :class:`ShortestPathDistance`, the PyG transform that
  caches them per graph (batched by concatenation; :func:`batch_path_edges` offsets stored paths);
* attention biases (:class:`~graphformer.ops.PairBias`, ``attn_bias=`` of the attention layers):
  :class:`SpatialBias` (a learned bias per distance and head) and :class:`EdgePathBias` (edge features along the
  shortest path);
* node encodings added to the features: :class:`DegreeEncoding` (centrality) and :class:`LaplacianPE`
  (projected Laplacian eigenvectors from PyG's ``AddLaplacianEigenvectorPE``; PyG's ``AddRandomWalkPE`` gives RWSE).

Example (needs a dataset, so it is not run as a doctest):

.. code-block:: python

    dataset = MyDataset(root, pre_transform=ShortestPathDistance(max_distance=5, paths=True))
    spatial, edges = SpatialBias(8, max_distance=5), EdgePathBias(edge_dim=16, num_heads=8, max_path_length=5)
    bias = spatial(batch.spd, batch) + edges(batch.edge_attr, batch_path_edges(batch.spd_path, batch), batch)
    out = layer(x + degree(batch.edge_index, batch.num_nodes), fully_connected(batch), attn_bias=bias)
"""

from graphformer.structural.degree import DegreeEncoding
from graphformer.structural.edge_path import EdgePathBias
from graphformer.structural.laplacian import LaplacianPE
from graphformer.structural.paths import UNREACHABLE, batch_path_edges, shortest_paths
from graphformer.structural.spatial import SpatialBias
from graphformer.structural.transforms import ShortestPathDistance

__all__ = [
    "UNREACHABLE",
    "DegreeEncoding",
    "EdgePathBias",
    "LaplacianPE",
    "ShortestPathDistance",
    "SpatialBias",
    "batch_path_edges",
    "shortest_paths",
]
