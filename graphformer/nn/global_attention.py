r"""Linear global attention layers: every node attends to every node of its own graph in :math:`O(N)` memory.

* :class:`PerformerAttention`: Performer (Choromanski et al. 2021), softmax-like attention through positive
  orthogonal random features; PyG's ``PerformerAttention`` (same arguments, parameter names and feature map, so the
  two load each other's ``state_dict``) computed per graph of a PyG batch without padding;
* :class:`SimpleGlobalAttention`: SGFormer's simple global attention (Wu et al. 2023), one linear attention whose
  heads are averaged; PyG's ``SGFormerAttention`` is ``normalize="node"``.

Both take node features ``x [N, F]`` and the batch as a sorted ``batch`` ``[N]`` or offsets ``ptr`` ``[B + 1]``
(PyG's conventions) and run on :mod:`graphformer.ops.linear`. Either can be the global part of
:class:`~graphformer.nn.GPSLayer` (``attn_type="performer"`` / ``"sgformer"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from graphformer.nn.inputs import check_features, check_sizes
from graphformer.ops.linear import (
    PERFORMER_EPSILON,
    linear_attention,
    orthogonal_matrix,
    performer_features,
    simple_attention,
)


def _check_heads_divide(channels: int, heads: int) -> None:
    check_sizes(channels=channels, heads=heads)
    if channels % heads != 0:
        raise ValueError(f"`channels` ({channels}) must be divisible by `heads` ({heads})")


class PerformerProjection(nn.Module):
    r"""Performer's feature map and the linear attention it gives (PyG's ``PerformerProjection``).

    :math:`\phi(x) = f(W x) + \epsilon` with a random projection :math:`W` ``[M, C]`` of orthogonal blocks
    (``projection_matrix``, a buffer: saved in the ``state_dict``, moved by ``.to()``, not trained),
    :math:`M = \lfloor C \ln C \rfloor` random features (at least 1) as in PyG, and the kernel :math:`f` (ReLU).
    ``forward(q, k, v, ...)`` is :func:`~graphformer.ops.linear_attention` on
    :math:`\phi(q), \phi(k)` per graph.

    Args:
        num_cols: channels per head ``C``.
        kernel: the kernel :math:`f` (default ``nn.ReLU()``).
        generator: draws the projection (default: torch's global generator, as PyG).

    Shapes:
        - q, k: ``[N, H, C]``; v: ``[N, H, D]``; batch ``[N]`` or ptr ``[B + 1]``
        - output: ``[N, H, D]``
    """

    projection_matrix: Tensor

    def __init__(
        self, num_cols: int, kernel: Callable[[Tensor], Tensor] | None = None, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        check_sizes(num_cols=num_cols)
        self.num_cols = num_cols
        self.num_rows = max(1, int(num_cols * math.log(num_cols)))
        self.kernel = kernel if kernel is not None else nn.ReLU()
        self.register_buffer("projection_matrix", orthogonal_matrix(self.num_rows, num_cols, generator))

    @torch.no_grad()
    def redraw_projection_matrix(self, generator: torch.Generator | None = None) -> None:
        """Draw a new random projection (the paper redraws it periodically during training)."""
        new = orthogonal_matrix(self.num_rows, self.num_cols, generator)
        self.projection_matrix.copy_(new.to(self.projection_matrix.device))

    def features(self, x: Tensor) -> Tensor:
        r""":math:`\phi(x)` ``[..., M]`` of ``x`` ``[..., C]``."""
        return performer_features(x, self.projection_matrix, self.kernel, PERFORMER_EPSILON)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, batch: Tensor | None = None, *,
                ptr: Tensor | None = None) -> Tensor:
        dtype = v.dtype
        if dtype in (torch.float16, torch.bfloat16):  # features and sums in float32, the output in half
            q, k, v = q.float(), k.float(), v.float()
        return linear_attention(self.features(q), self.features(k), v, batch, ptr=ptr).to(dtype)

    def extra_repr(self) -> str:
        return f"num_cols={self.num_cols}, num_rows={self.num_rows}"


class PerformerAttention(nn.Module):
    r"""Performer attention within each graph of a batch (Choromanski et al., "Rethinking Attention with
    Performers", ICLR 2021), in :math:`O(N)` memory.

    .. math::
        q_i^h = W_Q^h x_i, \quad k_j^h = W_K^h x_j, \quad v_j^h = W_V^h x_j, \quad
        \phi(x) = \mathrm{ReLU}(W x) + \epsilon

    .. math::
        h_i = \mathrm{Dropout}\Big(W_O \big\Vert_{h=1}^{H}
              \frac{\sum_{j \in g} \phi(q_i^h)^\top \phi(k_j^h)\, v_j^h}{\sum_{j \in g} \phi(q_i^h)^\top \phi(k_j^h)}
              \Big)

    over the nodes :math:`j` of the graph :math:`g` of node :math:`i` (itself included), computed as
    :math:`\phi(q_i)^\top S_g / \phi(q_i)^\top z_g` with per-graph sums (no ``[L, L]`` matrix, no padding). The
    arguments, parameter names (``q``, ``k``, ``v``, ``attn_out``, ``fast_attn.projection_matrix``) and feature map
    are those of PyG's ``torch_geometric.nn.attention.PerformerAttention``; on one graph, with the same weights and
    projection, the two agree. On a padded batch PyG's padding nodes keep their keys (only their values are
    zeroed), so each adds :math:`\phi(k_{\mathrm{pad}}) \ge \epsilon` to the normaliser of its graph: PyG's output
    then depends on the padding unless all graphs have the same size. Here a graph only sees its own nodes.

    Args:
        channels: input and output features per node ``F``.
        heads: attention heads ``H`` (``F`` must be divisible by ``H``, as in PyG).
        head_channels: channels per head ``C`` (PyG's default 64, whatever ``F``; None: ``F / H``).
        kernel: the feature kernel (default ``nn.ReLU()``).
        qkv_bias: biases in the Q/K/V projections.
        attn_out_bias: bias in the output projection.
        dropout: dropout on the output (after ``attn_out``), as PyG.

    Shapes:
        - x: ``[N, F]``; batch: ``[N]`` sorted graph id of every node, or ptr: ``[B + 1]`` (neither: one graph)
        - output: ``[N, F]``
    """

    def __init__(
        self,
        channels: int,
        heads: int,
        head_channels: int | None = 64,
        kernel: Callable[[Tensor], Tensor] | None = None,
        qkv_bias: bool = False,
        attn_out_bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_heads_divide(channels, heads)
        head_channels = channels // heads if head_channels is None else head_channels
        check_sizes(head_channels=head_channels)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout}")
        self.channels, self.heads, self.head_channels = channels, heads, head_channels
        self.kernel = kernel if kernel is not None else nn.ReLU()
        self.fast_attn = PerformerProjection(head_channels, self.kernel)
        inner_channels = heads * head_channels
        self.q = nn.Linear(channels, inner_channels, bias=qkv_bias)
        self.k = nn.Linear(channels, inner_channels, bias=qkv_bias)
        self.v = nn.Linear(channels, inner_channels, bias=qkv_bias)
        self.attn_out = nn.Linear(inner_channels, channels, bias=attn_out_bias)
        self.dropout = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        """New weights and a new random projection (PyG's ``_reset_parameters``)."""
        for linear in (self.q, self.k, self.v, self.attn_out):
            linear.reset_parameters()
        self.redraw_projection_matrix()

    def redraw_projection_matrix(self, generator: torch.Generator | None = None) -> None:
        """Draw a new random projection (deterministic given ``generator``)."""
        self.fast_attn.redraw_projection_matrix(generator)

    def forward(self, x: Tensor, batch: Tensor | None = None, *, ptr: Tensor | None = None) -> Tensor:
        x = check_features(self, x, self.channels)
        num_nodes, heads, channels = x.size(0), self.heads, self.head_channels
        q = self.q(x).view(num_nodes, heads, channels)  # [N, H, C]
        k = self.k(x).view(num_nodes, heads, channels)  # [N, H, C]
        v = self.v(x).view(num_nodes, heads, channels)  # [N, H, C]
        out = self.fast_attn(q, k, v, batch, ptr=ptr)  # [N, H, C]
        return self.dropout(self.attn_out(out.reshape(num_nodes, heads * channels)))  # [N, F]

    def extra_repr(self) -> str:
        return (f"{self.channels}, heads={self.heads}, head_channels={self.head_channels}, "
                f"num_features={self.fast_attn.num_rows}, dropout={self.dropout.p}")


class SimpleGlobalAttention(nn.Module):
    r"""SGFormer's simple global attention within each graph of a batch (Wu et al., "SGFormer: Simplifying and
    Empowering Transformers for Large-Graph Representations", NeurIPS 2023), in :math:`O(N)` memory.

    .. math::
        h_i = \frac{1}{H} \sum_{h=1}^{H}
              \frac{\hat q_i^{h\top} \big(\sum_{j \in g} \hat k_j^h v_j^{h\top}\big) + L_g\, v_i^h}
                   {\hat q_i^{h\top} \big(\sum_{j \in g} \hat k_j^h\big) + L_g},
        \quad q^h = W_Q^h x, \ k^h = W_K^h x, \ v^h = W_V^h x

    for the graph :math:`g` of node :math:`i` with :math:`L_g` nodes: linear scores :math:`\hat q_i \cdot \hat
    k_j` and a self-loop of weight :math:`L_g`, heads averaged (no output projection). ``normalize="graph"``
    divides :math:`Q_g, K_g` by their Frobenius norms over the graph (the paper's official ``TransConvLayer``);
    ``"node"`` normalises every node's head vector (PyG 2.8's ``SGFormerAttention``, whose parameter names ``q``,
    ``k``, ``v`` and arguments this layer shares). See :func:`~graphformer.ops.simple_attention`.

    Args:
        channels: input features per node ``F``.
        heads: attention heads ``H`` (``F`` must be divisible by ``H``, as in PyG).
        head_channels: channels per head ``C``, also the output width (None: ``F``; PyG's default is 64).
        qkv_bias: biases in the Q/K/V projections (PyG's default False; the paper's code uses biases).
        normalize: ``"graph"`` or ``"node"``.

    Shapes:
        - x: ``[N, F]``; batch: ``[N]`` sorted graph id of every node, or ptr: ``[B + 1]`` (neither: one graph)
        - output: ``[N, C]``
    """

    def __init__(
        self,
        channels: int,
        heads: int = 1,
        head_channels: int | None = None,
        qkv_bias: bool = False,
        normalize: str = "graph",
    ) -> None:
        super().__init__()
        _check_heads_divide(channels, heads)
        head_channels = channels if head_channels is None else head_channels
        check_sizes(head_channels=head_channels)
        if normalize not in ("graph", "node"):
            raise ValueError(f"`normalize` must be 'graph' or 'node', got {normalize!r}")
        self.channels, self.heads, self.head_channels, self.normalize = channels, heads, head_channels, normalize
        inner_channels = heads * head_channels
        self.q = nn.Linear(channels, inner_channels, bias=qkv_bias)
        self.k = nn.Linear(channels, inner_channels, bias=qkv_bias)
        self.v = nn.Linear(channels, inner_channels, bias=qkv_bias)

    def reset_parameters(self) -> None:
        for linear in (self.q, self.k, self.v):
            linear.reset_parameters()

    def forward(self, x: Tensor, batch: Tensor | None = None, *, ptr: Tensor | None = None) -> Tensor:
        x = check_features(self, x, self.channels)
        num_nodes, heads, channels = x.size(0), self.heads, self.head_channels
        q = self.q(x).view(num_nodes, heads, channels)  # [N, H, C]
        k = self.k(x).view(num_nodes, heads, channels)  # [N, H, C]
        v = self.v(x).view(num_nodes, heads, channels)  # [N, H, C]
        out = simple_attention(q, k, v, batch, ptr=ptr, normalize=self.normalize)  # [N, H, C]
        return out.mean(dim=1)  # [N, C]

    def extra_repr(self) -> str:
        return f"{self.channels}, heads={self.heads}, head_channels={self.head_channels}, normalize={self.normalize!r}"
