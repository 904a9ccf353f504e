"""Layer 1 of graphformer: how "who talks to whom" is described.

* explicit: a PyG-style ``edge_index`` LongTensor ``[2, E]`` (row 0 = source ``j``, row 1 = target ``i``);
* implicit: :class:`BlockStructure` subclasses such as :func:`fully_connected`, :func:`causal`, :func:`window`
  and :func:`dilated`, which
  stand for ``sum_g L_g^2`` edges without storing them and materialise on demand with ``.to_edge_index()``.

* sentence builders (:mod:`graphformer.graphs.sequence`): :func:`chain`, :func:`dependency_tree`,
  :func:`binary_partition_tree` (BP-Transformer span nodes) and :func:`union`.

* global attention as a sparse graph (Exphormer): :func:`expander` (a random ``d``-regular expander per graph of
  a batch) and :func:`with_virtual_nodes` (virtual nodes joined to every node of their graph, returning
  :class:`VirtualNodes`); ``with_virtual_nodes(union(local, expander(d, ptr=ptr), num_nodes=N), ptr=ptr)`` is
  Exphormer's attention graph.

* per-pair codes (:mod:`graphformer.graphs.pairs`): :class:`PairCodes`, one integer per ordered pair of nodes of
  the same graph (shortest-path distance, relative position, ...), the input of structural attention biases.

Every layer that takes an ``edge_index`` also takes an implicit structure.
"""

from graphformer.graphs.convert import as_graph, batch_from_networkx, from_networkx, to_networkx
from graphformer.graphs.expanders import expander
from graphformer.graphs.pairs import PairCodes, padded_pair_index, pair_index
from graphformer.graphs.sequence import (
    Dilated,
    PartitionTree,
    binary_partition_tree,
    chain,
    dependency_tree,
    dilated,
    lengths_to_ptr,
    sentence_ptr,
    union,
)
from graphformer.graphs.structure import (
    Banded,
    BlockStructure,
    Causal,
    FullyConnected,
    SlidingWindow,
    causal,
    fully_connected,
    window,
)
from graphformer.graphs.validation import check_edge_index
from graphformer.graphs.virtual import VirtualNodes, with_virtual_nodes

__all__ = [
    "Banded",
    "BlockStructure",
    "Causal",
    "Dilated",
    "FullyConnected",
    "PairCodes",
    "PartitionTree",
    "SlidingWindow",
    "VirtualNodes",
    "as_graph",
    "batch_from_networkx",
    "binary_partition_tree",
    "causal",
    "chain",
    "check_edge_index",
    "dependency_tree",
    "dilated",
    "expander",
    "from_networkx",
    "fully_connected",
    "lengths_to_ptr",
    "pair_index",
    "padded_pair_index",
    "sentence_ptr",
    "to_networkx",
    "union",
    "window",
    "with_virtual_nodes",
]
