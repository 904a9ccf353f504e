r"""Linear global attention per graph of a batch: every node attends to every node of its own graph in
:math:`O(N)` memory, without padding and without an ``[N, N]`` (or ``[L, L]``) tensor.

Softmax attention needs the scores of all :math:`L_g^2` pairs of a graph. Linear attention replaces the score
:math:`\exp(q_i \cdot k_j)` by a product of node features :math:`\phi(q_i) \cdot \phi(k_j)`, so the sum over a
graph's nodes factorises through two per-graph sums that are computed once:

.. math::
    h_i = \frac{\sum_{j \in g} (\phi(q_i) \cdot \phi(k_j))\, v_j}{\sum_{j \in g} \phi(q_i) \cdot \phi(k_j)}
        = \frac{\phi(q_i)^\top S_g}{\phi(q_i)^\top z_g}, \quad
    S_g = \sum_{j \in g} \phi(k_j)\, v_j^\top \in \mathbb{R}^{M \times D}, \quad
    z_g = \sum_{j \in g} \phi(k_j) \in \mathbb{R}^{M}

for the graph :math:`g` of node :math:`i`, per head. Two kernels:

* :func:`linear_attention`: the formula above on given non-negative features (Performer, Choromanski et al.
  2021, with :func:`performer_features`, the FAVOR+ map of PyG's ``PerformerAttention``);
* :func:`simple_attention`: SGFormer's simple global attention (Wu et al. 2023),
  :math:`h_i = (\hat q_i^\top \hat K_g^\top V_g + L_g v_i) / (\hat q_i^\top \hat K_g^\top \mathbf{1} + L_g)`.

**How a batch runs.** Nodes are PyG-batched (``x [N, ...]`` with a sorted ``batch`` ``[N]`` or offsets ``ptr``
``[B + 1]``). Graphs are grouped by size (:func:`size_groups`, one host sync, cached per ``batch`` / ``ptr``
tensor): after one permutation of the nodes (none when sizes never decrease along the batch), the graphs of
equal size :math:`L` are a copy-free view ``[b, L, H, C]`` of real nodes only, and each per-graph sum is a batched
matrix product per group. Memory: the node tensors ``[N, H, M]``, ``[N, H, D]`` and the per-graph sums
``[B, H, M, D]``; nothing grows with :math:`L_g^2`. Half-precision inputs are computed in float32 (a sum over
thousands of nodes would overflow float16) and returned in their own dtype.

:func:`linear_attention_reference` and :func:`simple_attention_reference` compute the same outputs the plain way,
one ``[L_g, L_g]`` matrix per graph, for tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from graphformer.graphs.structure import FullyConnected
from graphformer.ops.sparse import cached_on

#: PyG's ``generalized_kernel`` adds this to every random feature, so that the normaliser is never zero.
PERFORMER_EPSILON = 1e-3
#: PyG's ``SGFormerAttention`` replaces exact zeros of ``q`` and ``k`` by this before the per-node norm.
SGFORMER_EPSILON = 1e-6

_NORMALIZE = ("graph", "node")


class SizeGroups(NamedTuple):
    """The graphs of a batch grouped by size (see :func:`size_groups`)."""

    perm: Tensor | None  # [N] node order with graphs sorted by size (stable); None: the batch is in that order
    inverse: Tensor | None  # [N] position of every node in that order
    counts: tuple[int, ...]  # graphs per group
    lengths: tuple[int, ...]  # nodes per graph of the group (increasing)


def size_groups(ptr: Tensor) -> SizeGroups:
    """Group the graphs described by ``ptr`` ``[B + 1]`` by size, for per-graph batched matrix products.

    Graphs are sorted by size (stable); the graphs of size ``lengths[k]`` then occupy ``counts[k] * lengths[k]``
    consecutive rows of ``x[perm]``, a view ``[counts[k], lengths[k], ...]`` with no padding. Cached per ``ptr``
    tensor (one host sync to build).
    """

    def build() -> SizeGroups:
        sizes = ptr.diff()  # [B]
        order = torch.argsort(sizes, stable=True)  # [B]
        lengths, counts = torch.unique_consecutive(sizes[order], return_counts=True)
        perm = inverse = None
        if sizes.numel() > 1 and not bool((sizes[1:] >= sizes[:-1]).all()):
            sorted_sizes = sizes[order]
            new_start = torch.cumsum(sorted_sizes, 0) - sorted_sizes  # [B] first row of each graph after sorting
            shift = torch.repeat_interleave(ptr[:-1][order] - new_start, sorted_sizes)  # [N]
            perm = torch.arange(shift.numel(), device=ptr.device) + shift
            inverse = torch.empty_like(perm)
            inverse[perm] = torch.arange(perm.numel(), device=ptr.device)
        return SizeGroups(perm, inverse, tuple(counts.tolist()), tuple(lengths.tolist()))

    return cached_on(ptr, "size_groups", build)


def _per_graph(fn: Callable[..., Tensor], tensors: list[Tensor], groups: SizeGroups) -> Tensor:
    """``fn`` applied to stacks ``[b, L, ...]`` of equal-size graphs; the results ``[b, L, ...]`` reassembled to
    ``[N, ...]`` in the batch's node order."""
    if groups.perm is not None:
        tensors = [t.index_select(0, groups.perm) for t in tensors]
    outs, start = [], 0
    for count, length in zip(groups.counts, groups.lengths):
        stop = start + count * length
        if length > 0:
            stacks = [t[start:stop].reshape(count, length, *t.shape[1:]) for t in tensors]  # [b, L, H, *]
            outs.append(fn(*stacks).flatten(0, 1))
        start = stop
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    return out if groups.inverse is None else out.index_select(0, groups.inverse)


def _graph_ptr(batch: Tensor | None, ptr: Tensor | None, num_nodes: int, device: torch.device) -> Tensor:
    """Checked offsets ``[B + 1]`` from ``batch`` or ``ptr`` (neither: one graph of ``num_nodes`` nodes).

    The structure built from a ``batch`` tensor is cached on it, so a stack of layers checks it once."""
    if batch is not None and ptr is not None:
        raise ValueError("give either `batch` or `ptr`, not both")
    if batch is None and ptr is None:
        return torch.tensor([0, num_nodes], device=device)
    given, name = (batch, "batch") if batch is not None else (ptr, "ptr")
    if isinstance(given, Tensor) and given.device != device:
        raise ValueError(f"`{name}` is on {given.device} but the features are on {device}; move both to one device")
    if isinstance(batch, Tensor):
        return cached_on(batch, ("ptr", num_nodes), lambda: FullyConnected(batch, num_nodes=num_nodes).ptr)
    return FullyConnected(batch, ptr=ptr, num_nodes=num_nodes).ptr  # checks `batch` / `ptr`, naming them


def _check_heads(query: Any, key: Any, value: Any) -> None:
    """``query``, ``key`` ``[N, H, M]`` and ``value`` ``[N, H, D]`` floating tensors of matching sizes."""
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        if not isinstance(tensor, Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor [N, H, C], got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise TypeError(f"`{name}` must be a floating-point tensor, got dtype {tensor.dtype}")
        if tensor.dim() != 3:
            raise ValueError(f"`{name}` must have shape [num_nodes, heads, channels], got {tuple(tensor.shape)}")
    if key.shape[:2] != query.shape[:2] or value.shape[:2] != query.shape[:2]:
        raise ValueError(
            f"`query`, `key` and `value` must agree on [num_nodes, heads]; got {tuple(query.shape)}, "
            f"{tuple(key.shape)} and {tuple(value.shape)}"
        )
    if key.size(2) != query.size(2):
        raise ValueError(
            f"`query` and `key` must have the same features per head, got {query.size(2)} and {key.size(2)}"
        )
    if not (query.dtype == key.dtype == value.dtype):
        raise TypeError(f"`query`, `key` and `value` must share a dtype, got {query.dtype}, {key.dtype}, {value.dtype}")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half-precision inputs (per-graph sums overflow float16), the input dtype otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def orthogonal_matrix(
    num_rows: int,
    num_cols: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Random projection ``[num_rows, num_cols]`` made of stacked orthogonal ``[num_cols, num_cols]`` blocks.

    Each block is ``Q^T`` of the QR decomposition of a standard normal matrix (the rows of a block are orthonormal),
    the last block cut to the remaining rows: PyG's ``orthogonal_matrix`` (its rows are unit vectors; Performer's
    paper also rescales them by chi-distributed norms, PyG does not). Deterministic given ``generator``.
    """
    if isinstance(num_rows, bool) or not isinstance(num_rows, int) or num_rows < 1:
        raise ValueError(f"`num_rows` must be a positive int, got {num_rows!r}")
    if isinstance(num_cols, bool) or not isinstance(num_cols, int) or num_cols < 1:
        raise ValueError(f"`num_cols` must be a positive int, got {num_cols!r}")
    source = generator.device if generator is not None else torch.device("cpu")
    blocks = []
    for _ in range(math.ceil(num_rows / num_cols)):
        gaussian = torch.randn(num_cols, num_cols, generator=generator, device=source)
        q, _ = torch.linalg.qr(gaussian.cpu(), mode="reduced")
        blocks.append(q.t())
    return torch.cat(blocks)[:num_rows].to(device if device is not None else source)


def performer_features(
    x: Tensor,
    projection_matrix: Tensor,
    kernel: Callable[[Tensor], Tensor] = F.relu,
    epsilon: float = PERFORMER_EPSILON,
) -> Tensor:
    r"""Performer's random features (FAVOR+ with a generalized kernel): :math:`\phi(x) = f(W x) + \epsilon`.

    :math:`W` is ``projection_matrix`` ``[M, C]`` (random orthogonal rows, :func:`orthogonal_matrix`) and
    :math:`f` the ``kernel`` (ReLU by default): exactly PyG's ``generalized_kernel``, so that :math:`\phi \ge
    \epsilon > 0` and the normaliser of :func:`linear_attention` never vanishes. (The paper's softmax kernel uses
    :math:`\exp(Wx - \|x\|^2/2)` instead; the generalized ReLU kernel is the one PyG ships.)

    Shapes:
        - x: ``[..., C]``; projection_matrix: ``[M, C]``
        - output: ``[..., M]``
    """
    if projection_matrix.dim() != 2 or projection_matrix.size(1) != x.size(-1):
        raise ValueError(
            f"`projection_matrix` must have shape [num_features, {x.size(-1)}] for `x` with {x.size(-1)} channels, "
            f"got {tuple(projection_matrix.shape)}"
        )
    return kernel(x @ projection_matrix.t().to(x.dtype)) + epsilon


def linear_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    batch: Tensor | None = None,
    *,
    ptr: Tensor | None = None,
) -> Tensor:
    r"""Kernelised attention within each graph: :math:`h_i = \phi(q_i)^\top S_g / \phi(q_i)^\top z_g`.

    .. math::
        S_g = \sum_{j \in g} \phi(k_j)\, v_j^\top, \qquad z_g = \sum_{j \in g} \phi(k_j)

    per head, for the graph :math:`g` of node :math:`i` (every node attends to every node of its graph, itself
    included). ``query`` and ``key`` are the features :math:`\phi(q)`, :math:`\phi(k)` already (e.g.
    :func:`performer_features`) and must be positive. Per graph this is PyG's ``linear_attention``; the batch runs
    without padding in :math:`O(N)` memory (see the module docstring).

    Args:
        query, key: features ``[N, H, M]``.
        value: values ``[N, H, D]``.
        batch: sorted graph id of every node ``[N]``; or
        ptr: offsets ``[B + 1]`` of the graphs (PyG's ``Batch.ptr``). Neither: one graph.

    Shapes:
        - output: ``[N, H, D]`` in the dtype of ``value``
    """
    _check_heads(query, key, value)
    num_nodes = query.size(0)
    ptr = _graph_ptr(batch, ptr, num_nodes, query.device)
    if num_nodes == 0:
        return value.new_zeros(value.shape)
    compute = _compute_dtype(value.dtype)

    def per_graph(q: Tensor, k: Tensor, v: Tensor) -> Tensor:  # [b, L, H, M], [b, L, H, M], [b, L, H, D]
        kv = torch.einsum("blhm,blhd->bhmd", k, v)  # [b, H, M, D] = S_g
        normaliser = torch.einsum("blhm,bhm->blh", q, k.sum(1))  # [b, L, H] = phi(q_i) . z_g
        return torch.einsum("blhm,bhmd->blhd", q, kv) / normaliser.unsqueeze(-1)  # [b, L, H, D]

    tensors = [t.to(compute) for t in (query, key, value)]
    return _per_graph(per_graph, tensors, size_groups(ptr)).to(value.dtype)


def _check_normalize(normalize: str) -> None:
    if normalize not in _NORMALIZE:
        raise ValueError(f"`normalize` must be one of {list(_NORMALIZE)}, got {normalize!r}")


def _node_normalized(x: Tensor) -> Tensor:
    """PyG ``SGFormerAttention``'s normalisation: zeros -> epsilon, then each node's head vector to unit norm."""
    x = torch.where(x == 0, torch.full_like(x, SGFORMER_EPSILON), x)
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)


def simple_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    batch: Tensor | None = None,
    *,
    ptr: Tensor | None = None,
    normalize: str = "graph",
) -> Tensor:
    r"""SGFormer's simple global attention within each graph (Wu et al., NeurIPS 2023), per head.

    .. math::
        h_i = \frac{\hat q_i^\top \big(\sum_{j \in g} \hat k_j v_j^\top\big) + L_g\, v_i}
                   {\hat q_i^\top \big(\sum_{j \in g} \hat k_j\big) + L_g}

    for the graph :math:`g` of node :math:`i` with :math:`L_g` nodes: attention with the linear score
    :math:`\hat q_i \cdot \hat k_j` plus a self-loop of weight :math:`L_g`. ``normalize`` chooses
    :math:`\hat q, \hat k`:

    * ``"graph"`` (the paper and its official code, ``TransConvLayer``): :math:`\hat Q_g = Q_g / \|Q_g\|_F`, the
      Frobenius norm over all nodes, heads and channels of the graph (same for :math:`K`);
    * ``"node"`` (PyG 2.8's ``SGFormerAttention``): every node's head vector to unit norm, exact zeros first
      replaced by ``1e-6``.

    The heads are returned side by side; SGFormer averages them (:class:`~graphformer.nn.SimpleGlobalAttention`).

    Args:
        query, key: ``[N, H, M]``.
        value: ``[N, H, D]``.
        batch: sorted graph id of every node ``[N]``; or
        ptr: offsets ``[B + 1]`` of the graphs. Neither: one graph.
        normalize: ``"graph"`` or ``"node"``.

    Shapes:
        - output: ``[N, H, D]`` in the dtype of ``value``
    """
    _check_heads(query, key, value)
    _check_normalize(normalize)
    num_nodes = query.size(0)
    ptr = _graph_ptr(batch, ptr, num_nodes, query.device)
    if num_nodes == 0:
        return value.new_zeros(value.shape)
    compute = _compute_dtype(value.dtype)

    def per_graph(q: Tensor, k: Tensor, v: Tensor) -> Tensor:  # [b, L, H, M], [b, L, H, M], [b, L, H, D]
        length = q.size(1)
        if normalize == "graph":  # one Frobenius norm per graph (a graph of zeros stays zeros)
            q = q / torch.linalg.vector_norm(q, dim=(1, 2, 3), keepdim=True).clamp_min(torch.finfo(q.dtype).tiny)
            k = k / torch.linalg.vector_norm(k, dim=(1, 2, 3), keepdim=True).clamp_min(torch.finfo(k.dtype).tiny)
        else:
            q, k = _node_normalized(q), _node_normalized(k)
        kv = torch.einsum("blhm,blhd->bhmd", k, v)  # [b, H, M, D]
        numerator = torch.einsum("blhm,bhmd->blhd", q, kv) + length * v  # [b, L, H, D]
        normaliser = torch.einsum("blhm,bhm->blh", q, k.sum(1)) + length  # [b, L, H]
        return numerator / normaliser.unsqueeze(-1)

    tensors = [t.to(compute) for t in (query, key, value)]
    return _per_graph(per_graph, tensors, size_groups(ptr)).to(value.dtype)


# -- the plain O(L^2) references ---------------------------------------------------------------------------------
def _graphs(batch: Tensor | None, ptr: Tensor | None, num_nodes: int, device: torch.device) -> list[tuple[int, int]]:
    bounds = _graph_ptr(batch, ptr, num_nodes, device).tolist()
    return list(zip(bounds[:-1], bounds[1:]))


def linear_attention_reference(
    query: Tensor, key: Tensor, value: Tensor, batch: Tensor | None = None, *, ptr: Tensor | None = None
) -> Tensor:
    r""":func:`linear_attention` the plain way: per graph, the attention matrix
    :math:`A_{ij} = \phi(q_i) \cdot \phi(k_j)` ``[H, L, L]``, then :math:`h = A V / A \mathbf{1}`."""
    _check_heads(query, key, value)
    out = value.new_zeros(value.shape)
    for start, stop in _graphs(batch, ptr, query.size(0), query.device):
        q, k, v = query[start:stop], key[start:stop], value[start:stop]
        scores = torch.einsum("ihm,jhm->hij", q, k)  # [H, L, L]
        out[start:stop] = (torch.einsum("hij,jhd->ihd", scores, v) / scores.sum(-1).t().unsqueeze(-1))
    return out


def simple_attention_reference(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    batch: Tensor | None = None,
    *,
    ptr: Tensor | None = None,
    normalize: str = "graph",
) -> Tensor:
    r""":func:`simple_attention` the plain way: per graph, :math:`A = \hat Q \hat K^\top + L\, I` ``[H, L, L]``
    (the score of every pair plus a self-loop of weight :math:`L`), then :math:`h = A V / A \mathbf{1}`."""
    _check_heads(query, key, value)
    _check_normalize(normalize)
    out = value.new_zeros(value.shape)
    for start, stop in _graphs(batch, ptr, query.size(0), query.device):
        q, k, v = query[start:stop], key[start:stop], value[start:stop]
        if normalize == "graph":
            q, k = q / q.norm().clamp_min(torch.finfo(q.dtype).tiny), k / k.norm().clamp_min(torch.finfo(k.dtype).tiny)
        else:
            q, k = _node_normalized(q), _node_normalized(k)
        length = stop - start
        self_loops = length * torch.eye(length, dtype=q.dtype, device=q.device)  # [L, L]
        scores = torch.einsum("ihm,jhm->hij", q, k) + self_loops  # [H, L, L]
        out[start:stop] = torch.einsum("hij,jhd->ihd", scores, v) / scores.sum(-1).t().unsqueeze(-1)
    return out
