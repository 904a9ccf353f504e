"""graphformer: a transformer is a graph neural network.

Message passing with sum / mean / max / attention aggregation, layered so that multi-head attention on a
fully-connected graph plus residual, LayerNorm and a feed-forward network *is*
``torch.nn.TransformerEncoderLayer``, and the same module runs on any sparse graph.

Layers of the package (each uses only the ones before it): :mod:`graphformer.graphs` (who talks to whom),
:mod:`graphformer.aggr` (aggregation), :mod:`graphformer.nn` (message-passing layers),
:mod:`graphformer.transformer`, :mod:`graphformer.ops` (how attention runs), and
:mod:`graphformer.encodings` / :mod:`graphformer.analysis` (positions; what attention learned). Beside them,
:mod:`graphformer.loader` samples mini-batches of neighbourhoods (PyG's ``NeighborLoader`` without pyg-lib).
"""

from graphformer import aggr, analysis, datasets, debug, encodings, graphs, loader, ops, structural
from graphformer.graphs import causal, fully_connected
from graphformer.nn import (
    AttentionConv,
    AttentionReadout,
    GATConv,
    GlobalPool,
    GPSLayer,
    GraphConv,
    PerformerAttention,
    SimpleGlobalAttention,
    TransformerConv,
    VirtualNode,
    add_virtual_node,
    shift_edge_index,
)
from graphformer.structural import DegreeEncoding, EdgePathBias, ShortestPathDistance, SpatialBias, shortest_paths
from graphformer.transformer import GraphTransformer, GraphTransformerLayer

__version__ = "0.2.0"

__all__ = [
    "AttentionConv",
    "DegreeEncoding",
    "EdgePathBias",
    "AttentionReadout",
    "GATConv",
    "GPSLayer",
    "GlobalPool",
    "GraphConv",
    "GraphTransformer",
    "GraphTransformerLayer",
    "PerformerAttention",
    "ShortestPathDistance",
    "SimpleGlobalAttention",
    "SpatialBias",
    "TransformerConv",
    "VirtualNode",
    "__version__",
    "add_virtual_node",
    "aggr",
    "analysis",
    "causal",
    "datasets",
    "debug",
    "encodings",
    "fully_connected",
    "graphs",
    "loader",
    "ops",
    "shortest_paths",
    "structural",
    "shift_edge_index",
]
