"""Positional information for sentences as graphs: absolute encodings per node, relative distance per edge.

A graph has no order; a sentence does. Three ways to give a graph transformer the order back:

* :class:`SinusoidalPositionalEncoding`: Vaswani et al.'s fixed sin/cos of the position within each graph;
* :class:`LearnedPositionalEncoding`: a learned embedding of the position within each graph;
* :class:`RelativePositionBias` / :func:`relative_distance_features`: the clipped signed distance
  ``i - j`` of every pair, as an additive per-head attention score (a :class:`~graphformer.ops.PairBias` on an
  implicit structure, so "complete graph + relative bias" stays on the dense path; ``[E, H]`` on explicit
  edges) or as one-hot edge features for any layer with ``edge_dim`` (e.g.
  :class:`~graphformer.nn.AttentionConv`, whose ``edge_proj`` then *is* a learned per-head bias table).

Positions come from the PyG ``batch`` vector or ``ptr`` offsets: node ``n`` of graph ``g`` has position
``n - ptr[g]``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from graphformer.graphs.pairs import PairCodes, pair_nodes
from graphformer.graphs.sequence import sentence_ptr
from graphformer.graphs.structure import BlockStructure
from graphformer.graphs.validation import check_edge_index, check_index
from graphformer.ops.bias import PairBias


def positions(
    batch: Tensor | Any | None = None,
    *,
    ptr: Tensor | None = None,
    lengths: Tensor | None = None,
    num_nodes: int | None = None,
) -> Tensor:
    """Position of every node within its own graph: ``pos[n] = n - ptr[batch[n]]``.

    Shapes:
        - batch: ``[N]`` sorted (or ``ptr`` ``[B + 1]``, ``lengths`` ``[B]``, a PyG ``Data``/``Batch``)
        - output: ``[N]`` int64
    """
    ptr = sentence_ptr(batch, ptr=ptr, lengths=lengths, num_nodes=num_nodes)
    sizes = ptr.diff()
    graph = torch.repeat_interleave(torch.arange(sizes.numel(), device=ptr.device), sizes)
    return torch.arange(int(ptr[-1]), device=ptr.device) - ptr[graph]


def _position_argument(position: Tensor | None, batch: Any, ptr: Tensor | None) -> Tensor:
    if position is not None:
        if batch is not None or ptr is not None:
            raise ValueError("give `position`, or `batch`/`ptr` to compute it, not both")
        position = check_index(position, "position")
        if position.numel() > 0 and int(position.min()) < 0:
            raise ValueError(f"`position` must be non-negative, got {int(position.min())}")
        return position
    return positions(batch, ptr=ptr)


class SinusoidalPositionalEncoding(nn.Module):
    r"""Fixed sinusoidal encoding of each node's position within its graph (Vaswani et al., 2017).

    .. math::
        PE_{p, 2k} = \sin\!\left(p / 10000^{2k/D}\right), \qquad PE_{p, 2k+1} = \cos\!\left(p / 10000^{2k/D}\right)

    No parameters; any position works (no maximum length).

    Args:
        d_model: encoding size ``D`` (any positive int; odd ``D`` drops the last cosine).
        base: the wavelength base (``10000``).

    Shapes:
        - forward(batch=None, ptr=None, position=None): ``batch`` ``[N]`` or ``ptr`` ``[B + 1]`` or explicit
          ``position`` ``[N]``
        - output: ``[N, D]`` float32 (add it to the token embeddings)
    """

    frequency: Tensor  # buffer [ceil(D / 2)]

    def __init__(self, d_model: int, base: float = 10000.0) -> None:
        super().__init__()
        if d_model < 1:
            raise ValueError(f"`d_model` must be positive, got {d_model}")
        self.d_model, self.base = d_model, base
        frequency = torch.exp(-math.log(base) * torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
        self.register_buffer("frequency", frequency.float(), persistent=False)  # [ceil(D / 2)]

    def forward(
        self, batch: Tensor | Any | None = None, ptr: Tensor | None = None, position: Tensor | None = None
    ) -> Tensor:
        position = _position_argument(position, batch, ptr).to(self.frequency.device)
        angle = position.unsqueeze(-1).float() * self.frequency  # [N, ceil(D / 2)]
        encoding = torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(1)  # [N, 2 ceil(D / 2)]
        return encoding[:, : self.d_model]

    def extra_repr(self) -> str:
        return f"{self.d_model}, base={self.base:g}"


class LearnedPositionalEncoding(nn.Module):
    r"""Learned absolute position embedding: :math:`PE_p = E[p]`, a trainable table of ``max_len`` rows.

    Args:
        max_len: number of positions; a node at position ``>= max_len`` raises ``ValueError``.
        d_model: encoding size ``D``.

    Shapes:
        - forward(batch=None, ptr=None, position=None): as :class:`SinusoidalPositionalEncoding`
        - output: ``[N, D]``
    """

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        if max_len < 1 or d_model < 1:
            raise ValueError(f"`max_len` and `d_model` must be positive, got {max_len} and {d_model}")
        self.max_len, self.d_model = max_len, d_model
        self.embedding = nn.Embedding(max_len, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(
        self, batch: Tensor | Any | None = None, ptr: Tensor | None = None, position: Tensor | None = None
    ) -> Tensor:
        position = _position_argument(position, batch, ptr).to(self.embedding.weight.device)
        if position.numel() > 0 and int(position.max()) >= self.max_len:
            raise ValueError(
                f"a node sits at position {int(position.max())} but `max_len` is {self.max_len}; "
                "build the encoding with a larger max_len"
            )
        return self.embedding(position)

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, d_model={self.d_model}"


def relative_distance(edge_index: Tensor, position: Tensor) -> Tensor:
    """Signed distance ``pos[i] - pos[j]`` of every edge ``j -> i`` (target minus source).

    Shapes:
        - edge_index: ``[2, E]``; position: ``[N]`` (e.g. :func:`positions`)
        - output: ``[E]`` int64
    """
    position = check_index(position, "position")
    edge_index = check_edge_index(edge_index, position.numel())
    return position[edge_index[1]] - position[edge_index[0]]


def relative_distance_features(edge_index: Tensor, position: Tensor, max_distance: int) -> Tensor:
    r"""One-hot edge features of the clipped distance :math:`\mathrm{clip}(i - j, -K, K)`, ``K = max_distance``.

    Feed them to a layer built with ``edge_dim = 2 K + 1``: :class:`~graphformer.nn.AttentionConv` projects
    them with ``edge_proj`` to an additive score per head, i.e. a learned bias table :math:`b^h_{i-j}`
    (Shaw et al. 2018 / T5 style).

    Shapes:
        - edge_index: ``[2, E]``; position: ``[N]``
        - output: ``[E, 2 K + 1]`` float32; column ``d + K`` is distance ``d``.
    """
    if not isinstance(max_distance, int) or max_distance < 0:
        raise ValueError(f"`max_distance` must be a non-negative int, got {max_distance!r}")
    distance = relative_distance(edge_index, position).clamp(-max_distance, max_distance) + max_distance
    return nn.functional.one_hot(distance, 2 * max_distance + 1).float()


class RelativePositionBias(nn.Module):
    r"""Learned per-head attention bias of the clipped relative distance of each pair of nodes.

    .. math::
        b_{ij}^h = B\left[\mathrm{clip}(\mathrm{pos}_i - \mathrm{pos}_j, -K, K) + K,\; h\right]

    On an implicit structure (``fully_connected(ptr=...)``, ``causal``, ``window``, ...) it returns a
    :class:`~graphformer.ops.PairBias`: one code per pair (``sum_g L_g^2`` integers), expanded per head only
    inside attention, so the dense path keeps running (no materialised edges). On an explicit ``edge_index`` it
    returns ``[E, H]``. Pass either as ``attn_bias`` to :class:`~graphformer.nn.AttentionConv` /
    :class:`~graphformer.GraphTransformerLayer`, or use :func:`relative_distance_features` with a layer's
    ``edge_dim`` (same model, different parameterisation).

    Args:
        num_heads: ``H``.
        max_distance: ``K``; farther pairs share the bias of distance ``+-K``.

    Shapes:
        - forward(graph, position=None): ``graph`` a block structure (positions default to each node's place in
          its graph) or ``edge_index`` ``[2, E]`` with ``position`` ``[N]`` (e.g. :func:`positions`)
        - output: :class:`~graphformer.ops.PairBias` on a block structure, ``[E, H]`` on explicit edges
    """

    def __init__(self, num_heads: int, max_distance: int) -> None:
        super().__init__()
        if num_heads < 1 or max_distance < 0:
            raise ValueError(f"need num_heads >= 1 and max_distance >= 0, got {num_heads} and {max_distance}")
        self.num_heads, self.max_distance = num_heads, max_distance
        self.bias = nn.Embedding(2 * max_distance + 1, num_heads)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.bias.weight)

    def codes(self, structure: BlockStructure, position: Tensor | None = None) -> PairCodes:
        """The clipped distance of every pair of nodes of the same graph of ``structure``, as codes ``0..2K``."""
        target, source = pair_nodes(structure.ptr)  # [P], [P]
        if position is None:
            distance = target - source  # nodes of a graph are contiguous: local positions differ as node ids
        else:
            position = check_index(position, "position", structure.num_nodes).to(target.device)
            distance = position[target] - position[source]
        codes = distance.clamp(-self.max_distance, self.max_distance) + self.max_distance
        return PairCodes(codes, ptr=structure.ptr, num_codes=2 * self.max_distance + 1)

    def forward(self, graph: Tensor | BlockStructure, position: Tensor | None = None) -> Tensor | PairBias:
        if isinstance(graph, BlockStructure):
            return PairBias.from_codes(self.codes(graph, position), self.bias.weight)
        if position is None:
            raise ValueError("`position` is required with an explicit edge_index (e.g. positions(batch))")
        distance = relative_distance(graph, position).to(self.bias.weight.device)
        return self.bias(distance.clamp(-self.max_distance, self.max_distance) + self.max_distance)  # [E, H]

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, max_distance={self.max_distance}"
