"""GPSLayer: a local message-passing layer and global attention side by side (GraphGPS, Rampášek et al. 2022).

The global attention is softmax multi-head attention (``attn_type="multihead"``), or linear attention in
:math:`O(N)` memory: Performer (``"performer"``, as PyG's ``GPSConv``) or SGFormer's simple global attention
(``"sgformer"``, a graphformer extension); see :mod:`graphformer.nn.global_attention`.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn.inits import reset
from torch_geometric.nn.resolver import activation_resolver, normalization_resolver

from graphformer.graphs.structure import FullyConnected, fully_connected
from graphformer.graphs.validation import check_index
from graphformer.nn.attention_conv import AttentionConv
from graphformer.nn.global_attention import PerformerAttention, SimpleGlobalAttention
from graphformer.nn.inputs import check_features, check_sizes
from graphformer.ops.sparse import cached_on

# `attn_kwargs` accepted per `attn_type`: for "multihead" the nn.MultiheadAttention arguments (GPSConv's) that
# AttentionConv has a counterpart for; for "performer" those of PyG's PerformerAttention (GPSConv passes them on)
_ATTN_KWARGS = {
    "multihead": ("dropout", "bias"),
    "performer": ("head_channels", "kernel", "qkv_bias", "attn_out_bias", "dropout"),
    "sgformer": ("qkv_bias", "normalize"),
}


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


def _copy_module(target: nn.Module, source: nn.Module, prefix: str) -> None:
    """Copy every parameter and buffer of ``source`` into ``target`` (same names), with a shape check each."""
    mine, theirs = target.state_dict(keep_vars=True), source.state_dict(keep_vars=True)
    if mine.keys() != theirs.keys():
        raise ValueError(f"cannot copy `{prefix}`: tensors {sorted(theirs)} into {sorted(mine)}")
    for name, tensor in mine.items():
        _copy(tensor, theirs[name], f"{prefix}.{name}")


def _structure_of(batch: Tensor | None, num_nodes: int, device: torch.device) -> FullyConnected:
    """``fully_connected(batch)``, checked against ``num_nodes``; built once per ``batch`` tensor (cached on it,
    like the sparse path's CSR order), so a stack of layers and repeated steps on one batch share it."""
    if batch is None:
        return fully_connected(ptr=torch.tensor([0, num_nodes], device=device))
    batch = check_index(batch, "batch", num_nodes)
    if batch.device != device:
        raise ValueError(f"`batch` is on {batch.device} but `x` is on {device}; move both to one device")
    return cached_on(batch, "fully_connected", lambda: fully_connected(batch))


class GPSLayer(nn.Module):
    r"""The GPS layer of GraphGPS: a local message-passing layer and global multi-head attention in parallel.

    .. math::
        h^{\mathrm{local}} &= \mathrm{Norm}_1\big(x + \mathrm{Dropout}(\mathrm{Conv}(x, A))\big) \\
        h^{\mathrm{global}} &= \mathrm{Norm}_2\big(x + \mathrm{Dropout}(\mathrm{Attn}_{j \to i}(x))\big) \\
        h &= h^{\mathrm{local}} + h^{\mathrm{global}} \\
        h' &= \mathrm{Norm}_3\big(h + \mathrm{MLP}(h)\big), \quad
        \mathrm{MLP} = \mathrm{Dropout} \circ W_2 \circ \mathrm{Dropout} \circ \sigma \circ W_1

    ``Conv`` is any graphformer layer or PyG ``MessagePassing``, called as ``conv(x, edge_index, **kwargs)`` (or
    None: no local part, :math:`h = h^{\mathrm{global}}`). ``Attn`` is :class:`~graphformer.nn.AttentionConv`
    (``nn.MultiheadAttention`` as a GNN layer) on :func:`~graphformer.graphs.fully_connected` ``(batch)``: every
    node attends to every node of its own graph, itself included. It runs on graphformer's dense block path
    (``scaled_dot_product_attention`` per graph), never padding ``x`` itself. :math:`W_1` is ``[channels,
    2 channels]``. The constructor and ``forward`` are those of PyG's ``GPSConv``; :meth:`from_pyg` copies one, and
    ``load_state_dict`` accepts a ``GPSConv``'s state_dict (its stacked ``in_proj`` is split into Q/K/V).

    ``attn_type`` picks ``Attn``. ``"multihead"``: softmax attention as above. ``"performer"``:
    :class:`~graphformer.nn.PerformerAttention` (PyG's ``PerformerAttention``, kernelised with random features), as
    in ``GPSConv``, but per graph without padding: PyG pads the batch and its padding nodes add to each graph's
    normaliser, so the two agree when all graphs have one size (see the class). ``"sgformer"`` (a graphformer
    extension): :class:`~graphformer.nn.SimpleGlobalAttention` with ``heads`` averaged heads of ``D`` channels.
    Both linear kinds take :math:`O(N)` memory (no ``[L, L]`` scores) and no ``attn_bias``.

    Args:
        channels: features per node ``D``.
        conv: the local message-passing layer (input and output width ``D``), or None.
        heads: attention heads ``H`` (``D`` must be divisible by ``H``).
        dropout: dropout on the local and global outputs and inside the MLP.
        act, act_kwargs: the MLP's activation, a name or module resolved by PyG's ``activation_resolver``.
        norm, norm_kwargs: the normalisation, a name (``"batch_norm"``, ``"layer_norm"``, ``"graph_norm"``,
            ...) resolved by PyG's ``normalization_resolver``, or None. A norm whose ``forward`` takes ``batch``
            gets it (PyG's ``LayerNorm`` then normalises per graph). A module instance is copied for each of
            the three norms.
        attn_type: ``"multihead"`` (softmax attention), ``"performer"`` or ``"sgformer"`` (linear attention).
        attn_kwargs: arguments of the attention. ``"multihead"``: the ``nn.MultiheadAttention`` arguments with a
            counterpart here, ``dropout`` (on the attention weights) and ``bias``. ``"performer"``: those of
            :class:`~graphformer.nn.PerformerAttention` (``head_channels`` (default 64), ``kernel``, ``qkv_bias``,
            ``attn_out_bias``, ``dropout`` on its output), as PyG's ``GPSConv``. ``"sgformer"``: ``qkv_bias`` and
            ``normalize`` of :class:`~graphformer.nn.SimpleGlobalAttention`.

    Shapes:
        - x: ``[N, D]``; edge_index: whatever ``conv`` takes (``[2, E]``, a sparse adjacency, a structure);
          batch: ``[N]`` sorted graph id of every node (None: one graph); attn_bias: additive attention scores
          passed on to ``AttentionConv`` (``"multihead"`` only)
        - output: ``[N, D]``
    """

    def __init__(
        self,
        channels: int,
        conv: nn.Module | None,
        heads: int = 1,
        dropout: float = 0.0,
        act: str | Callable[..., Any] = "relu",
        act_kwargs: dict[str, Any] | None = None,
        norm: str | nn.Module | None = "batch_norm",
        norm_kwargs: dict[str, Any] | None = None,
        attn_type: str = "multihead",
        attn_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_sizes(channels=channels, heads=heads)
        if channels % heads != 0:
            raise ValueError(f"`channels` ({channels}) must be divisible by `heads` ({heads})")
        if conv is not None and not isinstance(conv, nn.Module):
            raise TypeError(f"`conv` must be a message-passing layer (an nn.Module) or None, got {type(conv).__name__}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout}")
        if attn_type not in _ATTN_KWARGS:
            raise ValueError(f"`attn_type` must be one of {list(_ATTN_KWARGS)}, got {attn_type!r}")
        attn_kwargs = dict(attn_kwargs or {})
        unknown = sorted(set(attn_kwargs) - set(_ATTN_KWARGS[attn_type]))
        if unknown:
            raise ValueError(
                f"`attn_kwargs` {unknown} have no counterpart in graphformer's attention for attn_type={attn_type!r}; "
                f"supported: {list(_ATTN_KWARGS[attn_type])}"
            )
        self.channels, self.heads, self.dropout, self.attn_type = channels, heads, dropout, attn_type
        self.conv = conv
        self.attn: AttentionConv | PerformerAttention | SimpleGlobalAttention
        if attn_type == "multihead":
            self.attn = AttentionConv(channels, heads, **attn_kwargs)
        elif attn_type == "performer":
            self.attn = PerformerAttention(channels, heads, **attn_kwargs)
        else:  # the heads are averaged: each keeps the layer's width
            self.attn = SimpleGlobalAttention(channels, heads, head_channels=channels, **attn_kwargs)
        self.mlp = nn.Sequential(
            nn.Linear(channels, channels * 2),
            activation_resolver(act, **(act_kwargs or {})),
            nn.Dropout(dropout),
            nn.Linear(channels * 2, channels),
            nn.Dropout(dropout),
        )
        norm_kwargs = norm_kwargs or {}
        norms = [normalization_resolver(norm, channels, **norm_kwargs) for _ in range(3)]
        if isinstance(norm, nn.Module):  # one instance given: each position gets its own copy
            norms = [copy.deepcopy(norm) for _ in range(3)]
        self.norm1, self.norm2, self.norm3 = norms
        self._set_norm_arguments()

    def _set_norm_arguments(self) -> None:
        """Which of ``batch`` / ``batch_size`` the norms' ``forward`` accepts (as GPSConv's ``norm_with_batch``)."""
        parameters = inspect.signature(self.norm1.forward).parameters if self.norm1 is not None else {}
        self.norm_with_batch = "batch" in parameters
        self._norm_with_batch_size = "batch_size" in parameters

    def reset_parameters(self) -> None:
        if self.conv is not None:
            reset(self.conv)  # its reset_parameters(), or its children's (any nn.Module may be given)
        self.attn.reset_parameters()
        reset(self.mlp)
        for norm in (self.norm1, self.norm2, self.norm3):
            if norm is not None:
                norm.reset_parameters()

    def forward(
        self,
        x: Tensor,
        edge_index: Any,
        batch: Tensor | None = None,
        attn_bias: Tensor | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Returns ``out [N, D]``; ``kwargs`` go to the local ``conv``, ``attn_bias`` to the global attention."""
        x = check_features(self.attn, x, self.channels)  # the attention's parameters have the layer's dtype
        structure = _structure_of(batch, x.size(0), x.device)
        norm_kwargs: dict[str, Any] = {}
        if self.norm_with_batch:
            norm_kwargs["batch"] = batch
            if self._norm_with_batch_size and batch is not None:
                norm_kwargs["batch_size"] = structure.num_graphs  # known already: no host sync in the norm
        hs = []
        if self.conv is not None:  # local message passing
            h = self.conv(x, edge_index, **kwargs)
            h = F.dropout(h, p=self.dropout, training=self.training) + x
            hs.append(self._norm(self.norm1, h, norm_kwargs))
        if isinstance(self.attn, AttentionConv):  # global attention within each graph
            attn_kwargs: dict[str, Any] = {}
            if attn_bias is not None:
                attn_kwargs["attn_bias"] = attn_bias
            h = self.attn(x, structure, **attn_kwargs)
        else:  # linear attention: per-graph sums, no pairs, so no bias
            if attn_bias is not None:
                raise ValueError(
                    f"`attn_bias` needs attn_type='multihead'; linear attention (attn_type={self.attn_type!r}) "
                    "forms no per-pair scores to add it to"
                )
            h = self.attn(x, ptr=structure.ptr)
        h = F.dropout(h, p=self.dropout, training=self.training) + x
        hs.append(self._norm(self.norm2, h, norm_kwargs))
        out = hs[0] if len(hs) == 1 else hs[0] + hs[1]
        out = out + self.mlp(out)
        return self._norm(self.norm3, out, norm_kwargs)

    @staticmethod
    def _norm(norm: nn.Module | None, x: Tensor, kwargs: dict[str, Any]) -> Tensor:
        return x if norm is None else norm(x, **kwargs)

    # -- weight exchange with PyG ------------------------------------------------------------------------
    @classmethod
    def from_pyg(cls, layer: nn.Module) -> GPSLayer:
        """A layer with the configuration of PyG's ``GPSConv`` ``layer`` and a copy of its weights.

        The local ``conv`` module is reused as it is (shared with ``layer``); the attention's stacked
        ``in_proj`` is split into the Q/K/V projections (``attn_type="performer"``: PyG's ``PerformerAttention``
        is copied tensor by tensor, its random ``projection_matrix`` included); the MLP and the norms (buffers
        included: BatchNorm's running statistics) are copied tensor by tensor.
        """
        from torch_geometric.nn import GPSConv

        if not isinstance(layer, GPSConv):
            raise TypeError(f"`layer` must be a torch_geometric.nn.GPSConv, got {type(layer).__name__}")
        attn = layer.attn
        if layer.attn_type == "performer":
            return cls._from_pyg_performer(layer)
        if not isinstance(attn, nn.MultiheadAttention):
            raise ValueError(
                f"`layer`: only a GPSConv with attn_type='multihead' (nn.MultiheadAttention) or 'performer' can be "
                f"copied; this one has attn_type={layer.attn_type!r} and attn {type(attn).__name__}"
            )
        if not attn._qkv_same_embed_dim or attn.bias_k is not None or attn.add_zero_attn:
            raise ValueError("kdim / vdim / add_bias_kv / add_zero_attn have no graph counterpart and cannot be copied")
        weight = attn.in_proj_weight
        new = cls(
            layer.channels, layer.conv, heads=layer.heads, dropout=layer.dropout, act=copy.deepcopy(layer.mlp[1]),
            norm=None, attn_type=layer.attn_type,
            attn_kwargs={"dropout": attn.dropout, "bias": attn.in_proj_bias is not None},
        ).to(device=weight.device, dtype=weight.dtype)
        mine = new.attn
        assert isinstance(mine, AttentionConv)  # attn_type="multihead"
        in_bias = attn.in_proj_bias.chunk(3) if attn.in_proj_bias is not None else (None, None, None)
        for proj, w, b, name in zip((mine.q_proj, mine.k_proj, mine.v_proj), weight.chunk(3), in_bias, "qkv"):
            _copy(proj.weight, w, f"attn.{name}_proj.weight")
            _copy(proj.bias, b, f"attn.{name}_proj.bias")
        for name in ("weight", "bias"):
            _copy(getattr(mine.out_proj, name), getattr(attn.out_proj, name), f"attn.out_proj.{name}")
        return new._copy_rest_from(layer)

    @classmethod
    def _from_pyg_performer(cls, layer: Any) -> GPSLayer:
        """:meth:`from_pyg` for ``attn_type='performer'``: PyG's ``PerformerAttention`` has our names, so its
        tensors (the random projection included) are copied one by one."""
        attn = layer.attn
        weight = attn.q.weight
        attn_kwargs = {
            "head_channels": attn.head_channels, "kernel": copy.deepcopy(attn.kernel),
            "qkv_bias": attn.q.bias is not None, "attn_out_bias": attn.attn_out.bias is not None,
            "dropout": attn.dropout.p,
        }
        new = cls(
            layer.channels, layer.conv, heads=layer.heads, dropout=layer.dropout, act=copy.deepcopy(layer.mlp[1]),
            norm=None, attn_type="performer", attn_kwargs=attn_kwargs,
        ).to(device=weight.device, dtype=weight.dtype)
        _copy_module(new.attn, attn, "attn")
        return new._copy_rest_from(layer)

    def _copy_rest_from(self, layer: Any) -> GPSLayer:
        """Copy the MLP and the norms of PyG's ``GPSConv`` ``layer`` and its training mode; returns self."""
        _copy_module(self.mlp, layer.mlp, "mlp")
        # norms: PyG's resolver forgets the name and arguments, so copy the modules (then each tensor is theirs)
        self.norm1, self.norm2, self.norm3 = (copy.deepcopy(n) for n in (layer.norm1, layer.norm2, layer.norm3))
        for name in ("norm1", "norm2", "norm3"):
            if getattr(self, name) is not None:
                _copy_module(getattr(self, name), getattr(layer, name), name)
        self._set_norm_arguments()
        self.train(layer.training)
        return self

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        """Also load a PyG ``GPSConv``'s state_dict: its ``nn.MultiheadAttention`` stacks Q/K/V in ``in_proj``."""
        for name in ("weight", "bias"):
            stacked = state_dict.pop(f"{prefix}attn.in_proj_{name}", None)
            if stacked is not None:
                for proj, part in zip("qkv", stacked.chunk(3)):
                    state_dict[f"{prefix}attn.{proj}_proj.{name}"] = part
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"{self.channels}, heads={self.heads}, dropout={self.dropout}, attn_type={self.attn_type}"
