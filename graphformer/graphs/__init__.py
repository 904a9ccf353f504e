"""Layer 1 of graphformer: how "who talks to whom" is described.

* explicit: a PyG-style ``edge_index`` LongTensor ``[2, E]`` (row 0 = source ``j``, row 1 = target ``i``);
* implicit: :class:`BlockStructure` subclasses such as :func:`fully_connected` and :func:`causal`, which
  stand for ``sum_g L_g^2`` edges without storing them and materialise on demand with ``.to_edge_index()``.

Every layer that takes an ``edge_index`` also takes an implicit structure.
"""

from graphformer.graphs.convert import as_graph, from_networkx
from graphformer.graphs.structure import (
    BlockStructure,
    Causal,
    FullyConnected,
    SlidingWindow,
    causal,
    fully_connected,
    window,
)
from graphformer.graphs.validation import check_edge_index

__all__ = [
    "BlockStructure",
    "Causal",
    "FullyConnected",
    "SlidingWindow",
    "as_graph",
    "causal",
    "check_edge_index",
    "from_networkx",
    "fully_connected",
    "window",
]
