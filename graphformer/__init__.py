"""graphformer: a transformer is a graph neural network.

Message passing with sum / mean / max / attention aggregation, layered so that multi-head attention on a
fully-connected graph plus residual, LayerNorm and a feed-forward network *is*
``torch.nn.TransformerEncoderLayer``, and the same module runs on any sparse graph.

Layers of the package (each uses only the ones before it): :mod:`graphformer.graphs` (who talks to whom),
:mod:`graphformer.aggr` (aggregation), :mod:`graphformer.nn` (message-passing layers),
:mod:`graphformer.transformer`, :mod:`graphformer.ops` (how attention runs).
"""

from graphformer import aggr, debug, graphs, ops
from graphformer.graphs import causal, fully_connected
from graphformer.nn import AttentionConv, GATConv, GraphConv
from graphformer.transformer import GraphTransformer, GraphTransformerLayer

__version__ = "0.1.0"

__all__ = [
    "AttentionConv",
    "GATConv",
    "GraphConv",
    "GraphTransformer",
    "GraphTransformerLayer",
    "__version__",
    "aggr",
    "causal",
    "debug",
    "fully_connected",
    "graphs",
    "ops",
]
