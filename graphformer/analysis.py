"""What attention learned: per-edge per-head weights, top-k incoming edges, head importance and pruning.

* :func:`attention_weights`: ``[(edge_index, weights [E, H])]`` per attention layer of any graphformer
  attention module (``AttentionConv``, ``GATConv``, ``GraphTransformerLayer``, ``GraphTransformer``), via
  ``return_attention=True`` (no hidden state, no hooks).
* :func:`top_k_edges`: for every node and head, the ``k`` incoming edges with the largest weight.
* :func:`head_mask`: a context manager that zeroes chosen heads' outputs before each ``out_proj``;
  :func:`head_importance` measures the loss change of zeroing each head; :func:`prune_heads_` zeroes heads
  for good (the ``out_proj`` columns that read them).

Heads are addressed per attention layer in module order (``model.modules()``): layer ``l`` is the ``l``-th
:class:`~graphformer.nn.AttentionConv` of the model (see :func:`attention_layers`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

from graphformer.graphs.validation import check_edge_index
from graphformer.nn.attention_conv import AttentionConv

AttentionList = list[tuple[Tensor, Tensor]]


def attention_weights(
    model: nn.Module, x: Tensor | Any, edge_index: Any = None, edge_attr: Tensor | None = None, **kwargs: Any
) -> AttentionList:
    """Run ``model(x, edge_index, edge_attr, return_attention=True, **kwargs)`` and return its attention as a list.

    ``kwargs`` reach the model as they are (e.g. ``attn_bias=``).

    Works for any module following graphformer's contract: a single layer returns
    ``(out, (edge_index, weights))``, a stack ``(out, [(edge_index, weights), ...])``. Runs under
    ``torch.no_grad()``; the model's train/eval mode is left as it is (call ``model.eval()`` first for
    dropout-free weights).

    Shapes:
        - output: one ``(edge_index [2, E], weights [E, H])`` per attention layer; weights sum to 1 over each
          node's incoming edges.
    """
    with torch.no_grad():
        if edge_attr is None:
            result = model(x, edge_index, return_attention=True, **kwargs)
        else:
            result = model(x, edge_index, edge_attr, return_attention=True, **kwargs)
    if not isinstance(result, tuple) or len(result) != 2:
        raise TypeError(f"{type(model).__name__} did not return (out, attention) with return_attention=True")
    attention = result[1]
    if isinstance(attention, tuple):
        return [attention]
    return list(attention)


def top_k_edges(
    edge_index: Tensor,
    weights: Tensor,
    k: int,
    num_nodes: int | None = None,
    exclude_self_loops: bool = False,
) -> tuple[Tensor, Tensor]:
    """The ``k`` incoming edges of largest weight of every node, per head.

    Ties are broken by edge order (the earlier edge first). Nodes with fewer than ``k`` incoming edges are
    padded with source ``-1`` and weight ``0``.

    Args:
        edge_index: ``[2, E]`` (row 0 = source j, row 1 = target i).
        weights: ``[E, H]`` (or ``[E]`` for one head) attention weights.
        k: how many edges per node.
        num_nodes: ``N``; default ``edge_index.max() + 1``.
        exclude_self_loops: ignore ``i -> i`` edges ("which *other* word does the head look at").

    Shapes:
        - output: ``(sources [N, k, H] int64, weights [N, k, H])``, sorted by decreasing weight.
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"`k` must be a positive int, got {k!r}")
    if num_nodes is None:
        num_nodes = int(edge_index.max()) + 1 if edge_index.numel() > 0 else 0
    edge_index = check_edge_index(edge_index, num_nodes)
    squeeze = weights.dim() == 1
    if squeeze:
        weights = weights.unsqueeze(-1)
    if weights.dim() != 2 or weights.size(0) != edge_index.size(1):
        raise ValueError(f"`weights` must have shape [E={edge_index.size(1)}, H], got {tuple(weights.shape)}")
    if exclude_self_loops:
        keep = edge_index[0] != edge_index[1]
        edge_index, weights = edge_index[:, keep], weights[keep]
    source, target = edge_index[0], edge_index[1]
    heads = weights.size(1)
    top_source = torch.full((num_nodes, k, heads), -1, dtype=torch.long, device=weights.device)
    top_weight = weights.new_zeros(num_nodes, k, heads)
    counts = torch.bincount(target, minlength=num_nodes)
    first = torch.cumsum(counts, 0) - counts  # [N] start of each node's run after sorting by target
    for h in range(heads):
        order = torch.argsort(weights[:, h], descending=True, stable=True)
        order = order[torch.argsort(target[order], stable=True)]  # by target, then decreasing weight
        rank = torch.arange(order.numel(), device=order.device) - first[target[order]]
        keep = rank < k
        chosen = order[keep]
        top_source[target[chosen], rank[keep], h] = source[chosen]
        top_weight[target[chosen], rank[keep], h] = weights[chosen, h]
    if squeeze:
        return top_source[..., 0], top_weight[..., 0]
    return top_source, top_weight


def attention_layers(model: nn.Module) -> list[AttentionConv]:
    """The :class:`~graphformer.nn.AttentionConv` modules of ``model`` in module order (layer 0 first)."""
    layers = [module for module in model.modules() if isinstance(module, AttentionConv)]
    if not layers:
        raise ValueError(f"{type(model).__name__} contains no AttentionConv layer")
    return layers


def _mask_tensor(model: nn.Module, mask: Tensor | dict[int, Any]) -> tuple[list[AttentionConv], Tensor]:
    layers = attention_layers(model)
    heads = layers[0].num_heads
    if any(layer.num_heads != heads for layer in layers):
        raise ValueError("head masks need the same number of heads in every attention layer")
    if isinstance(mask, dict):
        dense = torch.ones(len(layers), heads)
        for layer, chosen in mask.items():
            if not 0 <= layer < len(layers):
                raise ValueError(f"layer {layer} does not exist; the model has {len(layers)} attention layers")
            dense[layer, torch.as_tensor(chosen, dtype=torch.long)] = 0.0
        mask = dense
    if not isinstance(mask, Tensor) or mask.shape != (len(layers), heads):
        shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(
            f"`mask` must be a [num_layers={len(layers)}, num_heads={heads}] tensor or a dict, got {shape}"
        )
    return layers, mask


@contextmanager
def head_mask(model: nn.Module, mask: Tensor | dict[int, Any]) -> Iterator[None]:
    r"""Multiply every head's output by ``mask[layer, head]`` inside the ``with`` block.

    :math:`h_i' = W_O \,\Vert_h\, m_{l,h}\, \mathrm{AGG}^h_{j \to i}(\dots)`: a forward pre-hook on each
    ``AttentionConv.out_proj`` scales the concatenated head outputs ``[N, H, C]`` before the output
    projection (``m = 0`` removes the head). The hooks are removed on exit, even after an exception; the
    model's weights are never touched.

    Args:
        model: any module containing :class:`~graphformer.nn.AttentionConv` layers.
        mask: ``[num_layers, H]`` multipliers, or ``{layer: [heads to zero]}``.

    Example::

        >>> model = gf.GraphTransformer(16, 4, num_layers=2, dim_feedforward=32).eval()
        >>> x, graph = torch.randn(5, 16), gf.fully_connected(num_nodes=5)
        >>> with head_mask(model, {0: [1, 3]}):  # zero heads 1 and 3 of the first attention layer
        ...     masked = model(x, graph)
        >>> torch.allclose(masked, model(x, graph))  # the hooks are gone after the block
        False
    """
    layers, dense = _mask_tensor(model, mask)
    handles = []
    try:
        for layer, row in zip(layers, dense):
            def scale(
                module: nn.Module, args: tuple[Tensor, ...], row: Tensor = row, layer: AttentionConv = layer
            ) -> tuple[Tensor]:
                (heads_out,) = args
                shaped = heads_out.reshape(-1, layer.num_heads, layer.head_dim)  # [N, H, C]
                row_ = row.to(device=shaped.device, dtype=shaped.dtype).view(1, -1, 1)
                return ((shaped * row_).reshape(heads_out.shape),)

            handles.append(layer.out_proj.register_forward_pre_hook(scale))
        yield
    finally:
        for handle in handles:
            handle.remove()


def prune_heads_(model: nn.Module, mask: Tensor | dict[int, Any]) -> nn.Module:
    """Zero heads for good, in place: scale the ``out_proj`` weight columns that read each head by ``mask``.

    Equal to running under :func:`head_mask` with the same mask (the output bias is kept). Returns ``model``.
    """
    layers, dense = _mask_tensor(model, mask)
    with torch.no_grad():
        for layer, row in zip(layers, dense):
            columns = row.to(layer.out_proj.weight).repeat_interleave(layer.head_dim)  # [D]
            layer.out_proj.weight.mul_(columns)
    return model


def head_importance(model: nn.Module, evaluate: Callable[[nn.Module], float]) -> tuple[float, Tensor]:
    r"""Importance of every head: the change of a loss when that head alone is zeroed.

    :math:`I_{l,h} = \mathcal{L}(\text{model with head } (l, h) \text{ zeroed}) - \mathcal{L}(\text{model})`
    (Michel et al., 2019, "Are Sixteen Heads Really Better than One?", by ablation). A large positive value
    means the model relies on the head; near zero means it can be pruned.

    Args:
        model: a module with :class:`~graphformer.nn.AttentionConv` layers (put it in eval mode first).
        evaluate: ``evaluate(model) -> loss`` on held-out data (called ``1 + num_layers * H`` times).

    Returns:
        ``(baseline_loss, importance [num_layers, H])``.
    """
    layers = attention_layers(model)
    heads = layers[0].num_heads
    with torch.no_grad():
        baseline = float(evaluate(model))
        importance = torch.zeros(len(layers), heads)
        for layer in range(len(layers)):
            for head in range(heads):
                with head_mask(model, {layer: [head]}):
                    importance[layer, head] = float(evaluate(model)) - baseline
    return baseline, importance


def pruning_curve(model: nn.Module, evaluate: Callable[[nn.Module], float], order: Tensor) -> list[float]:
    """Loss after zeroing the first ``0, 1, ..., len(order)`` heads of ``order`` (cumulatively).

    Args:
        order: ``[P, 2]`` (layer, head) pairs, e.g. least important first from :func:`head_importance`.

    Returns:
        ``P + 1`` losses; entry ``p`` has the first ``p`` heads of ``order`` zeroed.
    """
    layers = attention_layers(model)
    mask = torch.ones(len(layers), layers[0].num_heads)
    losses = []
    with torch.no_grad():
        losses.append(float(evaluate(model)))
        for layer, head in order.tolist():
            mask[layer, head] = 0.0
            with head_mask(model, mask.clone()):
                losses.append(float(evaluate(model)))
    return losses
