"""Input checks shared by every layer.

Each check raises a ``TypeError`` (wrong kind of object or dtype) or a ``ValueError`` (wrong shape or
values) whose message names the argument, says what was received and what was expected.
"""

from __future__ import annotations

import torch
from torch import Tensor

_INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def check_node_features(x: object, name: str = "x", channels: int | None = None) -> Tensor:
    """Check that ``x`` is a floating ``[N, F]`` tensor (with ``F == channels`` when given)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of node features [N, F], got {type(x).__name__}")
    if not (x.is_floating_point() or x.is_complex()):
        raise TypeError(
            f"`{name}` must be a floating-point tensor, got dtype {x.dtype}; convert it with `{name}.float()`"
        )
    if x.dim() != 2:
        raise ValueError(f"`{name}` must have shape [num_nodes, num_features], got shape {tuple(x.shape)}")
    if channels is not None and x.size(1) != channels:
        raise ValueError(
            f"`{name}` has {x.size(1)} features per node but the layer expects {channels} "
            f"(shape {tuple(x.shape)}); check the layer's in_channels / d_model"
        )
    return x


def check_index(index: object, name: str, length: int | None = None) -> Tensor:
    """Check that ``index`` is a 1-D integer tensor (of ``length`` entries when given); return it as int64."""
    if not isinstance(index, Tensor):
        raise TypeError(f"`{name}` must be a 1-D integer torch.Tensor, got {type(index).__name__}")
    if index.dtype not in _INTEGER_DTYPES:
        raise TypeError(f"`{name}` must have an integer dtype (torch.long), got {index.dtype}")
    if index.dim() != 1:
        raise ValueError(f"`{name}` must be 1-D, got shape {tuple(index.shape)}")
    if length is not None and index.numel() != length:
        raise ValueError(f"`{name}` has {index.numel()} entries but {length} were expected")
    return index.long()


def check_index_range(index: Tensor, bound: int, name: str) -> None:
    """Raise a ``ValueError`` unless ``0 <= index < bound`` everywhere.

    The check reads values (a host sync), so it is skipped while ``torch.compile`` / ``torch.export`` trace:
    a compiled model checks shapes and dtypes only; run it eagerly once to validate a new graph.
    """
    if index.numel() == 0 or torch.compiler.is_compiling():
        return
    lo, hi = int(index.min()), int(index.max())
    if lo < 0:
        raise ValueError(f"`{name}` contains a negative index ({lo}); indices must lie in [0, {bound})")
    if hi >= bound:
        raise ValueError(
            f"`{name}` contains index {hi} but there are only {bound} nodes; indices must lie in [0, {bound})"
        )


def check_edge_index(edge_index: object, num_nodes: int, name: str = "edge_index") -> Tensor:
    """Check a PyG-style ``edge_index`` ``[2, E]`` (row 0 = source j, row 1 = target i) against ``num_nodes``.

    Returns it as an int64 tensor. Raises ``TypeError`` for a non-tensor or non-integer dtype and
    ``ValueError`` for a wrong shape or an index outside ``[0, num_nodes)``.
    """
    if not isinstance(edge_index, Tensor):
        raise TypeError(
            f"`{name}` must be a LongTensor of shape [2, num_edges] or a graphformer graph structure, "
            f"got {type(edge_index).__name__}"
        )
    if edge_index.dtype not in _INTEGER_DTYPES:
        raise TypeError(f"`{name}` must have an integer dtype (torch.long), got {edge_index.dtype}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(
            f"`{name}` must have shape [2, num_edges] (row 0 = sources, row 1 = targets), "
            f"got shape {tuple(edge_index.shape)}; if you have [num_edges, 2], pass `{name}.t()`"
        )
    check_index_range(edge_index, num_nodes, name)
    return edge_index.long()


def check_edge_attr(edge_attr: object, num_edges: int, edge_dim: int | None, name: str = "edge_attr") -> Tensor:
    """Check per-edge features ``[E, edge_dim]`` (a 1-D ``[E]`` tensor is read as ``[E, 1]``)."""
    if edge_dim is None:
        raise ValueError(f"`{name}` was given but the layer was built without `edge_dim`; pass edge_dim=...")
    if not isinstance(edge_attr, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor [num_edges, edge_dim], got {type(edge_attr).__name__}")
    if not edge_attr.is_floating_point():
        raise TypeError(f"`{name}` must be floating point, got dtype {edge_attr.dtype}")
    if edge_attr.dim() == 1:
        edge_attr = edge_attr.unsqueeze(-1)
    if edge_attr.dim() != 2 or edge_attr.size(0) != num_edges or edge_attr.size(1) != edge_dim:
        raise ValueError(
            f"`{name}` must have shape [num_edges={num_edges}, edge_dim={edge_dim}], got {tuple(edge_attr.shape)}"
        )
    return edge_attr
