"""Layer 4 of graphformer: the transformer layer as a graph neural network.

``GraphTransformerLayer`` = attention aggregation (:class:`~graphformer.nn.AttentionConv`) + residual +
LayerNorm + position-wise feed-forward network (+ residual + LayerNorm), with the constructor of
``torch.nn.TransformerEncoderLayer``. On :func:`~graphformer.graphs.fully_connected` it computes exactly what
``nn.TransformerEncoderLayer`` computes on the padded batch; on any other graph it is a graph transformer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphformer.aggr import Attention
from graphformer.graphs.structure import BlockStructure
from graphformer.nn.attention_conv import AttentionConv
from graphformer.nn.inputs import check_features, check_sizes, unpack
from graphformer.ops.bias import PairBias

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"relu": F.relu, "gelu": F.gelu}

AttentionList = list[tuple[Tensor, Tensor]]


def _activation(activation: str | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    if isinstance(activation, str):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; use one of {sorted(_ACTIVATIONS)} or a callable")
        return _ACTIVATIONS[activation]
    if not callable(activation):
        raise TypeError(f"`activation` must be 'relu', 'gelu' or a callable, got {type(activation).__name__}")
    return activation


def _activation_name(activation: Any) -> str | Callable[[Tensor], Tensor]:
    """Map torch's stored activation (function or module) back to a name where it is relu/gelu."""
    if activation is F.relu or type(activation) is nn.ReLU:
        return "relu"
    if activation is F.gelu or (type(activation) is nn.GELU and activation.approximate == "none"):
        return "gelu"
    return activation


def _copy(target: Tensor | None, source: Tensor | None, name: str) -> None:
    """Copy one tensor, failing loudly on a missing tensor or a shape mismatch."""
    if (target is None) != (source is None):
        raise ValueError(f"cannot copy `{name}`: present on one side only (check `bias`)")
    if target is None or source is None:
        return
    if target.shape != source.shape:
        raise ValueError(f"cannot copy `{name}`: shape {tuple(source.shape)} into {tuple(target.shape)}")
    with torch.no_grad():
        target.copy_(source)


class GraphTransformerLayer(nn.Module):
    r"""A transformer encoder layer whose self-attention is attention aggregation over a graph.

    Post-norm (``norm_first=False``, the original transformer):

    .. math::
        h_i &= \mathrm{LN}_1\left(x_i + \mathrm{Attn}_{j \to i}(x)\right) \\
        h_i' &= \mathrm{LN}_2\left(h_i + W_2\, \sigma(W_1 h_i + b_1) + b_2\right)

    Pre-norm (``norm_first=True``):
    :math:`h_i = x_i + \mathrm{Attn}_{j \to i}(\mathrm{LN}_1(x))`,
    :math:`h_i' = h_i + \mathrm{FFN}(\mathrm{LN}_2(h_i))`.

    ``Attn`` is :class:`~graphformer.nn.AttentionConv`: softmax attention over each node's incoming edges by
    default; ``aggr="sum"`` / ``"mean"`` / ``"max"`` / a custom aggregator swaps it for a simpler one (the
    same block as a plain GNN). Dropout sits where ``nn.TransformerEncoderLayer`` has it.

    Args:
        d_model: features per node ``D``.
        nhead: attention heads ``H`` (``D`` must be divisible by ``H``).
        dim_feedforward: hidden size of the FFN.
        dropout: dropout probability (attention weights, after attention, inside and after the FFN).
        activation: ``"relu"``, ``"gelu"`` or a callable.
        layer_norm_eps: LayerNorm epsilon.
        norm_first: pre-norm instead of post-norm.
        bias: biases in all linear layers and LayerNorms.
        edge_dim: size of edge features (additive attention bias per head), if any.
        aggr: aggregation of :class:`~graphformer.nn.AttentionConv`.

    Shapes:
        - x: ``[N, D]``; edge_index: ``[2, E]`` or a block structure such as ``fully_connected(batch)``
        - output: ``[N, D]``

    Example::

        >>> torch_layer = nn.TransformerEncoderLayer(64, 4, batch_first=True).eval()
        >>> layer = GraphTransformerLayer.from_torch(torch_layer)
        >>> tokens, batch = torch.randn(10, 64), torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])  # 2 sentences
        >>> out = layer(tokens, gf.fully_connected(batch))  # == torch_layer(padded, src_key_padding_mask=...)
        >>> out.shape
        torch.Size([10, 64])
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Callable[[Tensor], Tensor] = "relu",
        layer_norm_eps: float = 1e-5,
        norm_first: bool = False,
        bias: bool = True,
        edge_dim: int | None = None,
        aggr: str | Any = "attention",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_sizes(d_model=d_model, nhead=nhead, dim_feedforward=dim_feedforward, edge_dim=edge_dim)
        if d_model % nhead != 0:
            raise ValueError(f"`d_model` ({d_model}) must be divisible by `nhead` ({nhead})")
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.d_model, self.nhead, self.dim_feedforward = d_model, nhead, dim_feedforward
        self.norm_first, self.dropout_p = norm_first, dropout
        self.activation = _activation(activation)
        self.activation_name = activation if isinstance(activation, str) else getattr(activation, "__name__", "custom")
        self.self_attn = AttentionConv(
            d_model, nhead, dropout=dropout, bias=bias, edge_dim=edge_dim, aggr=aggr, **factory
        )
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias, **factory)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias, **factory)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        for module in (self.self_attn, self.linear1, self.linear2, self.norm1, self.norm2):
            module.reset_parameters()

    def forward(
        self,
        x: Tensor | Any,
        edge_index: Tensor | BlockStructure | None = None,
        edge_attr: Tensor | None = None,
        return_attention: bool = False,
        attn_bias: Tensor | PairBias | None = None,
    ) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
        """Returns ``out [N, D]``, or ``(out, (edge_index, weights [E, H]))`` with ``return_attention=True``.

        ``attn_bias``: additive attention scores (see :class:`~graphformer.nn.AttentionConv`)."""
        x, edge_index, edge_attr = unpack(x, edge_index, edge_attr, self.self_attn.edge_dim is not None)
        attention: Any = None  # (edge_index, weights) in the form the graph was given
        if self.norm_first:
            if edge_index is None:
                raise ValueError("`edge_index` is required: an edge_index [2, E] or a structure like fully_connected")
            x = check_features(self, x, self.d_model)  # before norm1, so bad input gets graphformer's errors
            attended = self.self_attn(self.norm1(x), edge_index, edge_attr, return_attention, attn_bias=attn_bias)
            if return_attention:
                attended, attention = attended
            x = x + self.dropout1(attended)
            x = x + self._feed_forward(self.norm2(x))
        else:
            attended = self.self_attn(x, edge_index, edge_attr, return_attention, attn_bias=attn_bias)
            if return_attention:
                attended, attention = attended
            x = self.norm1(x + self.dropout1(attended))
            x = self.norm2(x + self._feed_forward(x))
        return (x, attention) if return_attention else x

    def _feed_forward(self, x: Tensor) -> Tensor:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    # -- weight exchange with torch ----------------------------------------------------------------------
    @classmethod
    def from_torch(cls, layer: nn.TransformerEncoderLayer) -> GraphTransformerLayer:
        """A layer with the same configuration and a copy of the weights of ``layer``.

        ``batch_first`` only changes torch's input layout, not its weights, so either value is accepted;
        compare against torch with ``batch_first=True`` inputs ``[B, L, D]``.
        """
        if not isinstance(layer, nn.TransformerEncoderLayer):
            raise TypeError(f"`layer` must be an nn.TransformerEncoderLayer, got {type(layer).__name__}")
        attn = layer.self_attn
        if not attn._qkv_same_embed_dim:
            raise ValueError("only self-attention with kdim == vdim == d_model can be copied")
        if attn.bias_k is not None or attn.add_zero_attn:
            raise ValueError("add_bias_kv / add_zero_attn have no graph counterpart and cannot be copied")
        weight = attn.in_proj_weight
        new = cls(
            d_model=attn.embed_dim,
            nhead=attn.num_heads,
            dim_feedforward=layer.linear1.out_features,
            dropout=layer.dropout.p,
            activation=_activation_name(layer.activation),
            layer_norm_eps=layer.norm1.eps,
            norm_first=layer.norm_first,
            bias=layer.linear1.bias is not None,
            device=weight.device,
            dtype=weight.dtype,
        )
        assert new.self_attn.attention is not None  # built with the default aggr="attention"
        new.self_attn.attention.dropout = attn.dropout
        mine = new.self_attn
        in_bias = attn.in_proj_bias.chunk(3) if attn.in_proj_bias is not None else (None, None, None)
        for proj, w, b, name in zip((mine.q_proj, mine.k_proj, mine.v_proj), weight.chunk(3), in_bias, "qkv"):
            _copy(proj.weight, w, f"self_attn.{name}_proj.weight")
            _copy(proj.bias, b, f"self_attn.{name}_proj.bias")
        for name in ("weight", "bias"):
            _copy(getattr(mine.out_proj, name), getattr(attn.out_proj, name), f"self_attn.out_proj.{name}")
            for module in ("linear1", "linear2", "norm1", "norm2"):
                _copy(getattr(getattr(new, module), name), getattr(getattr(layer, module), name), f"{module}.{name}")
        new.train(layer.training)
        return new

    def to_torch(self) -> nn.TransformerEncoderLayer:
        """An ``nn.TransformerEncoderLayer`` (``batch_first=True``) with a copy of this layer's weights."""
        mine = self.self_attn
        if type(mine.attention) is not Attention or mine.edge_proj is not None:
            raise ValueError("only softmax attention without edge features has a torch counterpart")
        weight = mine.q_proj.weight
        bias = mine.q_proj.bias is not None
        layer = nn.TransformerEncoderLayer(
            self.d_model, self.nhead, self.dim_feedforward, self.dropout_p, activation=self.activation,
            layer_norm_eps=self.norm1.eps, batch_first=True, norm_first=self.norm_first, bias=bias,
            device=weight.device, dtype=weight.dtype,
        )
        attn = layer.self_attn
        _copy(attn.in_proj_weight, torch.cat([p.weight for p in (mine.q_proj, mine.k_proj, mine.v_proj)]),
              "self_attn.in_proj_weight")
        if bias:
            _copy(attn.in_proj_bias, torch.cat([p.bias for p in (mine.q_proj, mine.k_proj, mine.v_proj)]),
                  "self_attn.in_proj_bias")
        for name in ("weight", "bias"):
            _copy(getattr(attn.out_proj, name), getattr(mine.out_proj, name), f"self_attn.out_proj.{name}")
            for module in ("linear1", "linear2", "norm1", "norm2"):
                _copy(getattr(getattr(layer, module), name), getattr(getattr(self, module), name), f"{module}.{name}")
        layer.self_attn.dropout = mine.attention.dropout  # the attention dropout may differ from the layer's
        layer.train(self.training)
        return layer

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, nhead={self.nhead}, dim_feedforward={self.dim_feedforward}, "
            f"dropout={self.dropout_p}, activation={self.activation_name}, norm_first={self.norm_first}"
        )


class GraphTransformer(nn.Module):
    r"""A stack of :class:`GraphTransformerLayer`\ s, optionally followed by a final LayerNorm.

    Layers are built in a loop (each with its own initialisation), not deep-copied from one layer.

    Args:
        d_model: as in :class:`GraphTransformerLayer`, shared by every layer, and so are ``nhead``,
            ``dim_feedforward``, ``dropout``, ``activation``, ``layer_norm_eps``, ``norm_first``, ``bias``,
            ``edge_dim`` and ``aggr``.
        num_layers: number of layers.
        final_norm: apply a LayerNorm after the last layer (as ``nn.TransformerEncoder(norm=...)``; usual
            with ``norm_first=True``).

    Shapes:
        - x: ``[N, D]``; edge_index: ``[2, E]`` or a block structure
        - output: ``[N, D]``
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        num_layers: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Callable[[Tensor], Tensor] = "relu",
        layer_norm_eps: float = 1e-5,
        norm_first: bool = False,
        bias: bool = True,
        edge_dim: int | None = None,
        aggr: str | Any = "attention",
        final_norm: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_sizes(num_layers=num_layers)
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.layers = nn.ModuleList(
            GraphTransformerLayer(
                d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, norm_first, bias,
                edge_dim=edge_dim, aggr=aggr, **factory,
            )
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory) if final_norm else None

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def _layers(self) -> list[GraphTransformerLayer]:
        return cast("list[GraphTransformerLayer]", list(self.layers))  # typed: a ModuleList yields nn.Module

    def reset_parameters(self) -> None:
        for layer in self._layers:
            layer.reset_parameters()
        if self.norm is not None:
            self.norm.reset_parameters()

    def forward(
        self,
        x: Tensor | Any,
        edge_index: Tensor | BlockStructure | None = None,
        edge_attr: Tensor | None = None,
        return_attention: bool = False,
        attn_bias: Tensor | PairBias | Sequence[Tensor | PairBias | None] | None = None,
    ) -> Tensor | tuple[Tensor, AttentionList]:
        """Returns ``out [N, D]``, or ``(out, [(edge_index, weights [E, H]) per layer])``.

        ``attn_bias``: one additive attention bias shared by every layer (as Graphormer shares its structural
        bias), or a list with one per layer."""
        x, edge_index, edge_attr = unpack(x, edge_index, edge_attr, self._layers[0].self_attn.edge_dim is not None)
        if isinstance(attn_bias, (list, tuple)):
            if len(attn_bias) != len(self.layers):
                raise ValueError(
                    f"`attn_bias` is a list of {len(attn_bias)} biases but the stack has {len(self.layers)} layers"
                )
            biases = list(attn_bias)
        else:
            biases = [attn_bias] * len(self.layers)
        attentions: AttentionList = []
        for layer, bias in zip(self.layers, biases):
            x = layer(x, edge_index, edge_attr, return_attention, attn_bias=bias)
            if return_attention:
                x, attention = x
                attentions.append(attention)
        if self.norm is not None:
            x = self.norm(x)
        return (x, attentions) if return_attention else x

    @classmethod
    def from_torch(cls, encoder: nn.TransformerEncoder) -> GraphTransformer:
        """A stack with a copy of every layer (and the final norm) of an ``nn.TransformerEncoder``."""
        if not isinstance(encoder, nn.TransformerEncoder):
            raise TypeError(f"`encoder` must be an nn.TransformerEncoder, got {type(encoder).__name__}")
        layers = [GraphTransformerLayer.from_torch(layer) for layer in encoder.layers]
        first = layers[0]
        new = cls(
            first.d_model, first.nhead, len(layers), first.dim_feedforward, first.dropout_p, first.activation,
            first.norm1.eps, first.norm_first, bias=first.linear1.bias is not None,
            final_norm=encoder.norm is not None,
            device=first.linear1.weight.device, dtype=first.linear1.weight.dtype,
        )
        new.layers = nn.ModuleList(layers)
        if encoder.norm is not None:
            assert new.norm is not None
            for name in ("weight", "bias"):
                _copy(getattr(new.norm, name), getattr(encoder.norm, name), f"norm.{name}")
        new.train(encoder.training)
        return new

    def to_torch(self) -> nn.TransformerEncoder:
        """An ``nn.TransformerEncoder`` (``batch_first=True``) with a copy of every layer's weights."""
        layers = [layer.to_torch() for layer in self._layers]
        norm = None
        if self.norm is not None:
            norm = nn.LayerNorm(self.norm.normalized_shape, eps=self.norm.eps, bias=self.norm.bias is not None,
                                device=self.norm.weight.device, dtype=self.norm.weight.dtype)
            norm.load_state_dict(self.norm.state_dict())
        encoder = nn.TransformerEncoder(layers[0], len(layers), norm=norm, enable_nested_tensor=False)
        for mine, theirs in zip(encoder.layers, layers):  # replace the deep copies with the real weights
            mine.load_state_dict(theirs.state_dict())
        encoder.train(self.training)
        return encoder
