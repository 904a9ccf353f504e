"""Layer 3 of graphformer: message-passing layers.

``GraphConv`` (``h_i' = W1 h_i + W2 AGG_j h_j``), ``GATConv`` (additive attention) and ``AttentionConv``
(scaled dot-product multi-head attention, the transformer's MHA as a GNN layer) and PyG's ``TransformerConv``.
All are PyG ``MessagePassing`` layers with PyG's arguments and a fast path (see :class:`MessagePassing`).

Whole-graph models: ``GPSLayer`` (a local conv and global attention side by side, GraphGPS), the linear global
attention layers ``PerformerAttention`` and ``SimpleGlobalAttention`` (SGFormer), every node to every node of its
graph in :math:`O(N)` memory, and the readouts ``GlobalPool``, ``AttentionReadout`` and :func:`add_virtual_node`
(a ``[CLS]`` node per graph).
"""

from graphformer.nn.attention_conv import AttentionConv
from graphformer.nn.gat_conv import GATConv
from graphformer.nn.global_attention import PerformerAttention, PerformerProjection, SimpleGlobalAttention
from graphformer.nn.gps import GPSLayer
from graphformer.nn.graph_conv import GraphConv
from graphformer.nn.message_passing import MessagePassing
from graphformer.nn.readout import AttentionReadout, GlobalPool, VirtualNode, add_virtual_node, shift_edge_index
from graphformer.nn.transformer_conv import TransformerConv

__all__ = [
    "AttentionConv",
    "AttentionReadout",
    "GATConv",
    "GPSLayer",
    "GlobalPool",
    "GraphConv",
    "MessagePassing",
    "PerformerAttention",
    "PerformerProjection",
    "SimpleGlobalAttention",
    "TransformerConv",
    "VirtualNode",
    "add_virtual_node",
    "shift_edge_index",
]
