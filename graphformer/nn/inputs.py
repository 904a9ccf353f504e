"""Argument handling shared by the layers: PyG ``Data`` unpacking and feature/graph checks."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from graphformer.aggr import Aggregator, Attention, ScoreAggregator, resolve
from graphformer.debug import check_finite
from graphformer.graphs.convert import Graph, as_graph
from graphformer.graphs.structure import BlockStructure
from graphformer.graphs.validation import check_edge_index, check_index_range, check_node_features


def resolve_attention(aggr: Any, dropout: float) -> Aggregator:
    """An attention layer's ``aggr=``: the name ``"attention"`` (any case) gives softmax :class:`Attention` with the
    layer's ``dropout``; anything else goes through :func:`~graphformer.aggr.resolve`."""
    if isinstance(aggr, str) and aggr.lower() == "attention":
        return Attention(dropout=dropout)
    return resolve(aggr)


def score_aggregator(aggr: Any, dropout: float, layer: str) -> ScoreAggregator:
    """An attention layer's ``aggr=``: :func:`resolve_attention`, which must give a score aggregator."""
    attention = resolve_attention(aggr, dropout)
    if not isinstance(attention, ScoreAggregator):
        raise ValueError(f"`aggr` of {layer} must be a score aggregator (e.g. Attention), got {attention!r}")
    return attention


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


def check_features(module: nn.Module, x: Any, channels: int | None, name: str = "x") -> Tensor:
    """Check node features against a layer: ``[N, channels]``, floating, parameters' device and dtype.

    With :func:`graphformer.debug.set_debug` ``(check_finite=True)`` also rejects NaN / inf in ``x``.
    """
    x = check_node_features(x, name, channels)
    check_finite(x, name)
    weight = next((p for p in module.parameters() if not isinstance(p, nn.parameter.UninitializedParameter)), None)
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


def split_pair(x: Any, name: str = "x") -> tuple[Any, Any, bool]:
    """``(x_src, x_dst, bipartite)``: a tensor is both (``bipartite=False``); a pair ``(x_src, x_dst)`` is split.

    ``x_dst`` may be None in a pair (PyG's ``(x, None)``: targets without features of their own).
    """
    if isinstance(x, (tuple, list)):
        if len(x) != 2:
            raise TypeError(
                f"`{name}` must be a torch.Tensor of node features [N, F] or a pair (x_src, x_dst), "
                f"got a {type(x).__name__} of {len(x)} items"
            )
        if x[0] is None:
            raise ValueError(f"`{name}[0]` (the source nodes' features) must be a tensor, got None")
        return x[0], x[1], True
    return x, x, False


class GraphInput(NamedTuple):
    """A layer's graph argument in one form: explicit ``edge_index`` (or a block structure) and sizes.

    ``values`` are the entries of a sparse adjacency (edge weights or features) or None; ``layout`` says what
    the caller passed, so attention weights can be returned in the same form (``None``: an ``edge_index``).
    """

    edge_index: Graph
    values: Tensor | None
    num_src: int
    num_dst: int
    layout: Any


def _sparse_size(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"`{name}` must be a non-negative int or None, got {value!r}")
    return value


def read_graph(edge_index: Any, x_src: Tensor, x_dst: Tensor | None, size: Any, bipartite: bool,
               name: str = "edge_index") -> GraphInput:
    """Bring every graph form PyG accepts to an int64 ``edge_index`` ``[2, E]`` (or a block structure).

    Accepted: ``edge_index`` ``[2, E]`` (also PyG's ``EdgeIndex``), a ``torch.sparse`` adjacency ``adj_t``
    ``[num_dst, num_src]`` in COO / CSR / CSC layout (any value dtype: a float sparse tensor is an adjacency),
    a ``torch_sparse.SparseTensor`` ``adj_t`` where torch-sparse is installed, or a graphformer block structure.
    ``size = (num_src, num_dst)`` as in PyG; when absent the sizes come from the adjacency or the features.
    Errors name the argument that does not fit.
    """
    from torch_geometric import EdgeIndex
    from torch_geometric.typing import SparseTensor
    from torch_geometric.utils import to_edge_index

    if size is not None:
        if not isinstance(size, (tuple, list)) or len(size) != 2:
            raise TypeError(f"`size` must be a pair (num_src, num_dst), got {size!r}")
        size = (_sparse_size(size[0], "size[0]"), _sparse_size(size[1], "size[1]"))
    values: Tensor | None = None
    layout: str | torch.layout | None = None  # "SparseTensor" or the torch.sparse layout
    known: tuple[int | None, int | None] = size if size is not None else (None, None)
    if isinstance(edge_index, BlockStructure):
        if bipartite:
            raise ValueError(f"`{name}` is a block structure, which needs one node set; got a bipartite pair `x`")
        return GraphInput(as_graph(edge_index, x_src.size(0), x_src.device, name), None, x_src.size(0),
                          x_src.size(0), None)
    if SparseTensor is not object and isinstance(edge_index, SparseTensor):  # torch-sparse installed
        row, col, values = edge_index.coo()
        known = (size or (None, None))[0] or edge_index.size(1), (size or (None, None))[1] or edge_index.size(0)
        edge_index, layout = torch.stack([col, row]), "SparseTensor"
    elif isinstance(edge_index, Tensor) and edge_index.layout != torch.strided:
        if edge_index.dim() < 2:
            raise ValueError(f"`{name}` as a sparse adjacency must be 2-D [num_dst, num_src], got {edge_index.dim()}-D")
        layout = edge_index.layout
        num_dst, num_src = edge_index.size(0), edge_index.size(1)
        indices, values = to_edge_index(edge_index)  # [row = target, col = source]
        edge_index = indices.flip(0)
        known = (num_src, num_dst)
    elif isinstance(edge_index, EdgeIndex):
        rows, cols = edge_index.sparse_size()
        known = (known[0] if known[0] is not None else rows, known[1] if known[1] is not None else cols)
        edge_index = edge_index.as_tensor()
    elif isinstance(edge_index, Tensor) and edge_index.is_floating_point() and edge_index.dim() == 2 \
            and edge_index.size(0) != 2:
        raise TypeError(
            f"`{name}` is a dense float matrix of shape {tuple(edge_index.shape)}; pass an edge_index [2, E] or a "
            f"sparse adjacency, e.g. `{name}.to_sparse_csr()`"
        )
    num_src = known[0] if known[0] is not None else x_src.size(0)
    if x_src.size(0) != num_src:
        raise ValueError(
            f"`x` has {x_src.size(0)} source nodes but `size[0]` / the adjacency says {num_src}; they must agree"
        )
    if x_dst is not None and bipartite:
        num_dst = known[1] if known[1] is not None else x_dst.size(0)
        if x_dst.size(0) != num_dst:
            raise ValueError(
                f"`x[1]` (targets) has {x_dst.size(0)} rows but `size[1]` / the adjacency says {num_dst}; "
                "a bipartite pair (x_src, x_dst) needs size = (x_src.size(0), x_dst.size(0))"
            )
    else:
        num_dst = known[1] if known[1] is not None else num_src
        if x_dst is not None and x_dst.size(0) != num_dst:
            raise ValueError(
                f"`size` says {num_dst} targets but `x` has {x_dst.size(0)} rows; give a pair (x_src, x_dst)"
            )
    if isinstance(edge_index, Tensor) and edge_index.device != x_src.device:
        raise ValueError(f"`{name}` is on {edge_index.device} but `x` is on {x_src.device}; move both to one device")
    edge_index = check_edge_index(edge_index, max(num_src, num_dst), name)
    if num_src != num_dst and edge_index.numel() > 0 and not torch.compiler.is_compiling():
        check_index_range(edge_index[0], num_src, f"{name}[0] (sources)")
        check_index_range(edge_index[1], num_dst, f"{name}[1] (targets)")
    return GraphInput(edge_index, values, num_src, num_dst, layout)


def read_inputs(module: nn.Module, x: Any, edge_index: Any, size: Any, channels: tuple[int, int],
                needs_targets: bool = False) -> tuple[Tensor, Tensor | None, GraphInput]:
    """A layer's ``(x, edge_index, size)`` as PyG accepts them -> ``(x_src, x_dst, graph)``, checked.

    ``x`` is a tensor or a pair (:func:`split_pair`), features are checked against ``channels``
    (:func:`check_pair_features`), and the graph is read by :func:`read_graph`. ``needs_targets``: the layer
    computes from the targets' own features, so ``(x_src, None)`` is refused.
    """
    if edge_index is None:
        raise ValueError("`edge_index` is required: an edge_index [2, E], a sparse adj_t, or a structure")
    x_src, x_dst, bipartite = split_pair(x)
    if needs_targets and x_dst is None:
        raise ValueError(
            f"{type(module).__name__} needs target features: `x` must be a tensor or a pair (x_src, x_dst)"
        )
    x_src, x_dst = check_pair_features(module, x_src, x_dst, channels)
    return x_src, x_dst, read_graph(edge_index, x_src, x_dst if bipartite else None, size, bipartite)


def edge_features_of(graph: GraphInput) -> Tensor | None:
    """A sparse adjacency's values as edge features, where PyG reads them so: vector values of a ``torch.sparse``
    adjacency, any values of a ``SparseTensor`` (scalar ``torch.sparse`` values are edge weights only)."""
    if graph.values is None or (graph.values.dim() == 1 and graph.layout != "SparseTensor"):
        return None
    return graph.values


def weights_like(graph: GraphInput, edge_index: Tensor, weights: Tensor) -> Any:
    """Attention weights ``[E, H]`` in the form the caller passed the graph (PyG's return forms).

    ``edge_index`` input: ``(edge_index, weights)``; a ``torch.sparse`` adjacency: ``(adj, weights)`` with ``adj`` a
    sparse ``[num_dst, num_src, H]`` tensor of the same layout; a ``SparseTensor``: a ``SparseTensor`` of the weights.
    """
    if graph.layout is None:
        return edge_index, weights
    if graph.layout == "SparseTensor":
        from torch_geometric.typing import SparseTensor

        return SparseTensor(row=edge_index[1], col=edge_index[0], value=weights,
                            sparse_sizes=(graph.num_dst, graph.num_src))
    from torch_geometric.utils import to_torch_coo_tensor, to_torch_csc_tensor, to_torch_csr_tensor

    build = {torch.sparse_csr: to_torch_csr_tensor, torch.sparse_csc: to_torch_csc_tensor}.get(
        graph.layout, to_torch_coo_tensor)
    return build(edge_index.flip(0), weights, size=(graph.num_dst, graph.num_src)), weights  # [N_dst, N_src, H]


def check_in_channels(in_channels: Any, name: str = "in_channels") -> tuple[int, int]:
    """``(source, target)`` input widths from an int or a pair; ``-1`` means lazy (inferred at the first call)."""
    pair = in_channels if isinstance(in_channels, (tuple, list)) else (in_channels, in_channels)
    if len(pair) != 2:
        raise ValueError(f"`{name}` must be an int or a pair (source, target), got {in_channels!r}")
    for value in pair:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"`{name}` must be an int (or -1 for lazy), or a pair of them; got {in_channels!r}")
        if value < 1 and value != -1:
            raise ValueError(f"`{name}` must be at least 1, or -1 for lazy initialisation; got {in_channels!r}")
    return int(pair[0]), int(pair[1])


def check_pair_features(module: nn.Module, x_src: Any, x_dst: Any, channels: tuple[int, int]) -> tuple[Tensor, Any]:
    """:func:`check_features` for a source / target pair (``-1``: lazy width, not checked; ``x_dst`` may be None)."""
    x_src = check_features(module, x_src, channels[0] if channels[0] > 0 else None, "x")
    if x_dst is not None and x_dst is not x_src:
        x_dst = check_features(module, x_dst, channels[1] if channels[1] > 0 else None, "x[1]")
    return x_src, x_dst
