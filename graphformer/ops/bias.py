r"""Attention bias for any graph: per-head additive scores :math:`b_{ij}^h` for pairs of nodes of the same graph.

.. math:: s_{ij}^h = \frac{q_i^h \cdot k_j^h}{\sqrt{C}} + b_{ij}^h

A :class:`PairBias` is stored compactly and expanded per head only where attention needs it:

* a *code term* is a :class:`~graphformer.graphs.pairs.PairCodes` (one integer per pair, ``[P]``) and a table
  ``[K, H]`` of learned scores per code and head: :math:`b_{ij}^h = T[c_{ij}, h]` (shortest-path distance,
  relative position, ...);
* a *value term* is a float ``[P, H]`` per pair and head (e.g. Graphormer's edge-path encoding).

Terms add up (``bias_a + bias_b``). The dispatch (:func:`graphformer.ops.dot_product_attention`) alone decides
how the bias reaches the kernel: :meth:`PairBias.dense` ``[B, H, L, L]`` as the float mask of
``scaled_dot_product_attention`` per padded block for an implicit structure (no ``sum L^2`` edge list), and
:meth:`PairBias.on_edges` ``[E, H]`` on the sparse and reference paths for explicit edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from graphformer.graphs.pairs import PairCodes, padded_pair_index, pair_index


@dataclass(frozen=True)
class _Term:
    codes: Tensor | None  # [P] int64 (a code term) ...
    table: Tensor | None  # [K, H] ...
    values: Tensor | None  # ... or [P, H] (a value term)

    def gather(self, index: Tensor) -> Tensor:
        """Scores ``[*index.shape, H]`` at flat pair positions ``index`` (position ``P`` reads zeros)."""
        if self.values is not None:
            values = torch.cat([self.values, self.values.new_zeros(1, self.values.size(1))])  # [P + 1, H]
            return values[index]
        assert self.codes is not None and self.table is not None
        table = torch.cat([self.table, self.table.new_zeros(1, self.table.size(1))])  # [K + 1, H]: K = padding
        codes = torch.cat([self.codes, self.codes.new_full((1,), self.table.size(0))])  # [P + 1]
        return table[codes[index]]


class PairBias:
    """Per-head additive attention scores for every ordered pair of nodes of the same graph of a batch.

    Build one with :meth:`from_codes` or :meth:`from_values` (usually a module of :mod:`graphformer.encodings`
    does it), add biases with ``+``, and pass it as ``attn_bias=`` to :class:`~graphformer.nn.AttentionConv`,
    :class:`~graphformer.GraphTransformerLayer` or :func:`~graphformer.ops.dot_product_attention`, on an implicit
    structure (``fully_connected(batch)``, ``causal``, ``window``, ...) or on an explicit ``edge_index`` whose
    edges stay within graphs.

    Shapes:
        - ``dense(length)``: ``[B, H, L, L]`` (zeros in the padding)
        - ``on_edges(edge_index [2, E])``: ``[E, H]``
    """

    def __init__(self, ptr: Tensor, num_heads: int, terms: tuple[_Term, ...]) -> None:
        self.ptr, self.num_heads, self.terms = ptr, num_heads, terms

    # -- construction ------------------------------------------------------------------------------------------
    @classmethod
    def from_codes(cls, codes: PairCodes, table: Tensor) -> PairBias:
        r""":math:`b_{ij}^h = T[c_{ij}, h]` for codes ``[P]`` and a table ``T`` ``[K, H]`` (e.g. an ``nn.Embedding``'s
        weight); ``K`` must cover ``codes.num_codes``."""
        if not isinstance(codes, PairCodes):
            raise TypeError(f"`codes` must be a graphformer.graphs.PairCodes, got {type(codes).__name__}")
        if not isinstance(table, Tensor) or table.dim() != 2 or not table.is_floating_point():
            raise ValueError(f"`table` must be a float [num_codes, num_heads] tensor, got {_describe(table)}")
        if table.size(0) < codes.num_codes:
            raise ValueError(f"`table` has {table.size(0)} rows but the codes need {codes.num_codes}")
        codes = codes.to(table.device)
        return cls(codes.ptr, table.size(1), (_Term(codes.codes, table, None),))

    @classmethod
    def from_values(cls, values: Tensor, batch: Tensor | None = None, *, ptr: Tensor | None = None) -> PairBias:
        """A bias given per pair and head: ``values`` ``[P, H]`` in the flat pair layout of
        :mod:`graphformer.graphs.pairs`, for the batch given by ``batch`` or ``ptr`` (one graph if neither)."""
        if not isinstance(values, Tensor) or values.dim() != 2 or not values.is_floating_point():
            raise ValueError(f"`values` must be a float [num_pairs, num_heads] tensor, got {_describe(values)}")
        shape = PairCodes(torch.zeros(values.size(0), dtype=torch.long, device=values.device), batch, ptr=ptr)
        return cls(shape.ptr, values.size(1), (_Term(None, None, values),))

    def __add__(self, other: PairBias) -> PairBias:
        if not isinstance(other, PairBias):
            return NotImplemented
        if other.num_heads != self.num_heads:
            raise ValueError(f"cannot add pair biases with {self.num_heads} and {other.num_heads} heads")
        if not _same_batch(self.ptr, other.ptr):
            raise ValueError("cannot add pair biases built for different batches (their graph sizes differ)")
        return PairBias(self.ptr, self.num_heads, self.terms + other.terms)

    # -- views -------------------------------------------------------------------------------------------------
    @property
    def num_graphs(self) -> int:
        return self.ptr.numel() - 1

    @property
    def num_nodes(self) -> int:
        return int(self.ptr[-1])

    @property
    def dtype(self) -> torch.dtype:
        term = self.terms[0]
        return (term.values if term.values is not None else term.table).dtype  # type: ignore[union-attr]

    def dense(self, length: int | None = None, graphs: Tensor | None = None) -> Tensor:
        """``[B, H, L, L]`` scores per padded block (rows = targets), zeros in the padding; ``graphs`` (``[B']``
        graph ids) keeps only those graphs' blocks, in that order."""
        index = padded_pair_index(self.ptr, length, graphs)  # [B, L, L]
        out = sum(term.gather(index) for term in self.terms)  # [B, L, L, H]
        return out.permute(0, 3, 1, 2)  # type: ignore[union-attr]

    def on_edges(self, edge_index: Tensor) -> Tensor:
        """``[E, H]`` score of every edge ``j -> i`` (every edge must join nodes of the same graph)."""
        index = pair_index(edge_index.to(self.ptr.device), self.ptr)  # [E]
        return sum(term.gather(index) for term in self.terms)  # type: ignore[return-value]

    def check(self, ptr: Tensor | None, num_nodes: int, num_heads: int, name: str = "attn_bias") -> None:
        """Raise ``ValueError`` naming ``name`` unless this bias fits a graph of ``num_nodes`` nodes (batched as
        ``ptr`` when known) and ``num_heads`` heads."""
        if num_heads != self.num_heads:
            raise ValueError(f"`{name}` has {self.num_heads} heads but the layer has {num_heads}")
        if self.num_nodes != num_nodes:
            raise ValueError(
                f"`{name}` was built for a batch of {self.num_nodes} nodes but the graph has {num_nodes}; "
                "build the bias from the same batch as the structure"
            )
        if ptr is not None and not _same_batch(self.ptr, ptr):
            raise ValueError(
                f"`{name}` was built for a batch with other graph sizes than the structure's; "
                "build the bias from the same batch as the structure"
            )

    def __repr__(self) -> str:
        kinds = ", ".join("codes" if t.values is None else "values" for t in self.terms)
        return f"PairBias(num_graphs={self.num_graphs}, num_heads={self.num_heads}, terms=[{kinds}])"


def _same_batch(a: Tensor, b: Tensor) -> bool:
    return a.numel() == b.numel() and bool(torch.equal(a.cpu(), b.cpu()))


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"{x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__
