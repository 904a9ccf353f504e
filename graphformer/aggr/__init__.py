"""Layer 2 of graphformer: aggregation of per-edge messages into per-node outputs.

Every aggregator is a ``torch_geometric.nn.aggr.Aggregation`` called with PyG's contract
``aggr(x, index=None, ptr=None, dim_size=None, dim=-2)``. PyG's basic aggregations under PyG's names
(``SumAggregation``, ``MeanAggregation``, ``MaxAggregation``, ``MinAggregation``, ``MulAggregation``,
``VarAggregation``, ``StdAggregation``, ``SoftmaxAggregation``, ``PowerMeanAggregation``; ``Sum``, ``Mean``,
``Max``, ``Min`` are short names) reduce messages ``[*, E, F]`` by target index, and ``Multi`` concatenates
several. ``Attention`` normalises per-edge scores ``[E, H]`` with a softmax over each target's incoming edges
and sums values ``[E, H, C]`` (edges first: ``dim=0``). Targets with no incoming edge get zeros (PyG's empty
product 1 for ``MulAggregation``), and any PyG ``Aggregation`` is accepted wherever an aggregator is.
"""

from graphformer.aggr.attention import Attention, segment_softmax
from graphformer.aggr.base import Aggregator, ScoreAggregator
from graphformer.aggr.basic import (
    Max,
    MaxAggregation,
    Mean,
    MeanAggregation,
    Min,
    MinAggregation,
    MulAggregation,
    PowerMeanAggregation,
    SoftmaxAggregation,
    StdAggregation,
    Sum,
    SumAggregation,
    VarAggregation,
)
from graphformer.aggr.multi import Multi
from graphformer.aggr.registry import PyGAggregation, available, register, resolve

__all__ = [
    "Aggregator",
    "Attention",
    "Max",
    "MaxAggregation",
    "Mean",
    "MeanAggregation",
    "Min",
    "MinAggregation",
    "MulAggregation",
    "Multi",
    "PowerMeanAggregation",
    "PyGAggregation",
    "ScoreAggregator",
    "SoftmaxAggregation",
    "StdAggregation",
    "Sum",
    "SumAggregation",
    "VarAggregation",
    "available",
    "register",
    "resolve",
    "segment_softmax",
]
