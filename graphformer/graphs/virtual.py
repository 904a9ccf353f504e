r"""Virtual nodes as explicit edges: ``k`` extra nodes per graph joined to every node of their graph.

Exphormer's attention graph is the union of the local graph, an expander (:func:`~graphformer.graphs.expander`)
and virtual ("global") nodes, each attending to and attended by every node of its graph. :func:`with_virtual_nodes`
renumbers a graph over the real nodes into the extended node set and adds the star edges, so that the whole
attention graph is one explicit ``edge_index`` for the sparse attention path:

.. code-block:: python

    graph = with_virtual_nodes(union(edge_index, expander(4, ptr=ptr), num_nodes=N), ptr=ptr)
    out = layer(graph.extend(x, token), graph.edge_index)[graph.node_index]   # [N, D]: the real nodes

**Node layout**: the virtual nodes of graph ``g`` come first, then its real nodes: real node ``n`` of graph ``g``
becomes ``n + k (g + 1)``, virtual node ``v`` of graph ``g`` is ``ptr[g] + k g + v``. With ``k = 1`` this is the
layout of :func:`~graphformer.nn.add_virtual_node` (and ``node_index[edge_index]`` is its
:func:`~graphformer.nn.shift_edge_index`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from graphformer.graphs.sequence import _sort_edges, sentence_ptr
from graphformer.graphs.validation import check_edge_index


@dataclass
class VirtualNodes:
    """A batch extended with ``num_virtual`` virtual nodes per graph, and the edges over the extended nodes.

    Attributes:
        edge_index: ``[2, E']`` over the extended nodes, sorted by target then source (duplicates of the input
            kept).
        ptr: ``[B + 1]`` offsets of the extended graphs (``ptr[g] + k g``).
        node_index: ``[N]`` the extended index of every real node (``out[node_index]`` reads the real nodes).
        virtual_index: ``[B, k]`` the extended indices of every graph's virtual nodes (the readout).
        num_nodes: ``N + k B``.
    """

    edge_index: Tensor
    ptr: Tensor
    node_index: Tensor
    virtual_index: Tensor
    num_nodes: int

    @property
    def num_virtual(self) -> int:
        return self.virtual_index.size(1)

    @property
    def batch(self) -> Tensor:
        """``[N + k B]`` graph id of every extended node (sorted)."""
        graphs = torch.arange(self.ptr.numel() - 1, device=self.ptr.device)
        return torch.repeat_interleave(graphs, self.ptr.diff())

    def extend(self, x: Tensor, tokens: Tensor) -> Tensor:
        """Features ``[N + k B, F]`` of the extended nodes: ``x`` ``[N, F]`` for the real nodes and ``tokens``
        ``[k, F]`` (``[F]`` when ``k = 1``; usually a learned parameter) for the virtual nodes of every graph.
        Differentiable in both."""
        num_real, num_virtual = self.node_index.numel(), self.num_virtual
        if x.dim() != 2 or x.size(0) != num_real:
            raise ValueError(f"`x` must have shape [num_nodes={num_real}, F], got {tuple(x.shape)}")
        features = x.size(1)
        if tokens.numel() != num_virtual * features:
            raise ValueError(
                f"`tokens` must have shape [num_virtual={num_virtual}, {features}] like `x`, got {tuple(tokens.shape)}"
            )
        tokens = tokens.reshape(1, num_virtual, features).to(x.dtype).expand(self.virtual_index.size(0), -1, -1)
        out = x.new_zeros(self.num_nodes, features)
        out = out.index_copy(0, self.node_index, x)
        return out.index_copy(0, self.virtual_index.reshape(-1), tokens.reshape(-1, features))  # [N + k B, F]


def with_virtual_nodes(
    edge_index: Tensor | None = None,
    batch: Tensor | Any | None = None,
    *,
    ptr: Tensor | None = None,
    num_nodes: int | None = None,
    num_virtual: int = 1,
    self_loops: bool = True,
) -> VirtualNodes:
    r"""Add ``num_virtual`` virtual nodes to every graph, joined in both directions to every real node of it.

    The edges are ``edge_index`` renumbered into the extended node set, plus for every real node :math:`n` of graph
    :math:`g` and virtual node :math:`u` of :math:`g`: :math:`n \to u` and :math:`u \to n`; with ``self_loops``
    also :math:`u \to u` (a virtual node then attends to itself as well, as with
    :func:`~graphformer.nn.add_virtual_node` on ``fully_connected``). Virtual nodes of one graph are not joined
    to each other; a graph without nodes keeps its virtual nodes alone.

    Args:
        edge_index: ``[2, E]`` over the ``N`` real nodes (e.g. ``union(local, expander(...))``), or None.
        batch / ptr / num_nodes: the batch of graphs (sorted ``batch`` ``[N]`` or a PyG ``Data``/``Batch``,
            offsets ``ptr`` ``[B + 1]``, or ``num_nodes`` of one graph).
        num_virtual: virtual nodes per graph ``k``.
        self_loops: add :math:`u \to u` for every virtual node.

    Returns:
        A :class:`VirtualNodes` (the extended ``edge_index``, ``ptr``, where the real and virtual nodes are, and
        :meth:`VirtualNodes.extend` for the features).
    """
    if isinstance(num_virtual, bool) or not isinstance(num_virtual, int) or num_virtual < 1:
        raise ValueError(f"`num_virtual` must be a positive int, got {num_virtual!r}")
    ptr = sentence_ptr(batch, ptr=ptr, num_nodes=num_nodes)
    device, num_real, k = ptr.device, int(ptr[-1]), num_virtual
    sizes = ptr.diff()
    num_graphs = sizes.numel()
    graph = torch.repeat_interleave(torch.arange(num_graphs, device=device), sizes)  # [N]
    node_index = torch.arange(num_real, device=device) + k * (graph + 1)  # [N]
    extended_ptr = ptr + k * torch.arange(num_graphs + 1, device=device)  # [B + 1]
    virtual_index = extended_ptr[:-1].unsqueeze(1) + torch.arange(k, device=device)  # [B, k]
    parts = []
    if edge_index is not None:
        edge_index = check_edge_index(edge_index, num_real, "edge_index")
        if edge_index.device != device:
            raise ValueError(f"`edge_index` is on {edge_index.device} but the batch is on {device}")
        parts.append(node_index[edge_index])
    real = node_index.unsqueeze(1).expand(num_real, k).reshape(-1)  # [N k]
    virtual = virtual_index[graph].reshape(-1)  # [N k]
    parts += [torch.stack([real, virtual]), torch.stack([virtual, real])]
    if self_loops:
        loops = virtual_index.reshape(-1)
        parts.append(torch.stack([loops, loops]))
    total = num_real + k * num_graphs
    return VirtualNodes(_sort_edges(torch.cat(parts, dim=1), total), extended_ptr, node_index, virtual_index, total)
