"""Argument handling shared by the layers: PyG ``Data`` unpacking and feature/graph checks."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from graphformer.aggr import Aggregator, Attention, resolve
from graphformer.debug import check_finite
from graphformer.graphs.convert import Graph, as_graph
from graphformer.graphs.validation import check_node_features


def resolve_attention(aggr: Any, dropout: float) -> Aggregator:
    """An attention layer's ``aggr=``: the name ``"attention"`` (any case) gives softmax :class:`Attention` with the
    layer's ``dropout``; anything else goes through :func:`~graphformer.aggr.resolve`."""
    if isinstance(aggr, str) and aggr.lower() == "attention":
        return Attention(dropout=dropout)
    return resolve(aggr)


def check_sizes(**sizes: Any) -> None:
    """Raise ``TypeError`` unless every size is a positive ``int`` (``bool`` and ``float`` rejected), naming it."""
    for name, value in sizes.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"`{name}` must be an int, got {type(value).__name__} {value!r}")
        if value < 1:
            raise ValueError(f"`{name}` must be at least 1, got {value}")


def unpack(x: Any, edge_index: Any, edge_attr: Any = None, take_edge_attr: bool = True) -> tuple[Any, Any, Any]:
    """Accept ``layer(data)`` or ``layer(data, graph)`` for a PyG ``Data``/``Batch``; never modifies it.

    ``data.edge_attr`` is used only when ``take_edge_attr`` (a layer built with ``edge_dim``); a layer without
    edge features ignores it, as PyG's layers do.
    """
    if isinstance(x, Tensor) or not hasattr(x, "x"):
        return x, edge_index, edge_attr
    data = x
    if edge_index is None:
        edge_index = getattr(data, "edge_index", None)
        if edge_index is None:
            raise ValueError("the Data object has no `edge_index`; pass a graph, e.g. fully_connected(data)")
        if edge_attr is None and take_edge_attr:
            edge_attr = getattr(data, "edge_attr", None)
    return data.x, edge_index, edge_attr


def check_features(module: nn.Module, x: Any, channels: int, name: str = "x") -> Tensor:
    """Check node features against a layer: ``[N, channels]``, floating, parameters' device and dtype.

    With :func:`graphformer.debug.set_debug` ``(check_finite=True)`` also rejects NaN / inf in ``x``.
    """
    x = check_node_features(x, name, channels)
    check_finite(x, name)
    weight = next(module.parameters(), None)
    if weight is not None:
        if x.device != weight.device:
            raise ValueError(f"`{name}` is on {x.device} but the layer's parameters are on {weight.device}")
        autocast = torch.is_autocast_enabled(x.device.type)
        if x.dtype != weight.dtype and not autocast:
            raise TypeError(
                f"`{name}` has dtype {x.dtype} but the layer's parameters are {weight.dtype}; "
                f"convert one of them (e.g. `{name}.to({weight.dtype})`) or run under torch.autocast"
            )
    return x


def prepare(
    module: nn.Module, x: Any, edge_index: Any, channels: int, name: str = "x"
) -> tuple[Tensor, Graph]:
    """Check node features against the layer (:func:`check_features`) and validate the graph."""
    if edge_index is None:
        raise ValueError("`edge_index` is required: an edge_index [2, E] or a structure such as fully_connected")
    x = check_features(module, x, channels, name)
    return x, as_graph(edge_index, x.size(0), x.device)
