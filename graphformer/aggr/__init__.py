"""Layer 2 of graphformer: aggregation of per-edge messages into per-node outputs.

``Sum``, ``Mean``, ``Max``, ``Min`` reduce messages ``[E, *]`` by target index; ``Attention`` normalises
per-edge scores ``[E, H]`` with a softmax over each target's incoming edges and sums values ``[E, H, C]``.
All follow PyG's calling contract ``aggr(x, index, dim_size=N)``, give zeros to targets with no incoming
edge, and any ``torch_geometric.nn.aggr.Aggregation`` is accepted wherever an aggregator is.
"""

from graphformer.aggr.attention import Attention, segment_softmax
from graphformer.aggr.base import Aggregator, ScoreAggregator
from graphformer.aggr.basic import Max, Mean, Min, Sum
from graphformer.aggr.registry import PyGAggregation, available, register, resolve

__all__ = [
    "Aggregator",
    "Attention",
    "Max",
    "Mean",
    "Min",
    "PyGAggregation",
    "ScoreAggregator",
    "Sum",
    "available",
    "register",
    "resolve",
    "segment_softmax",
]
