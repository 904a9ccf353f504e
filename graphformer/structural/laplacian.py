"""Laplacian eigenvector positional encoding as a module: project precomputed eigenvectors, flipping signs."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from graphformer.structural.paths import batch_ptr


class LaplacianPE(nn.Module):
    r"""Project the ``k`` Laplacian eigenvectors of each node to ``channels``: :math:`p_i = W\,(s \odot u_i) + b`.

    The eigenvectors come from PyG's ``AddLaplacianEigenvectorPE(k)`` transform (``data.laplacian_eigenvector_pe``,
    ``[N, k]``); random-walk encodings (``AddRandomWalkPE``, ``data.random_walk_pe``) need no such module (a plain
    ``nn.Linear`` on them does). An eigenvector's sign is arbitrary, so in training each graph's eigenvectors are
    multiplied by independent random signs :math:`s \in \{\pm 1\}^k` (Dwivedi et al., 2020; per graph when
    ``batch`` is given, else one draw for the whole input); in eval mode :math:`s = 1`. NaN entries (padding of
    graphs with fewer than ``k + 1`` nodes, in some pipelines) are read as ``0``.

    Args:
        k: number of eigenvectors.
        channels: output size.
        sign_flip: flip signs at random in training.

    Shapes:
        - forward(eigenvectors [N, k], batch=None): ``batch`` a PyG ``batch`` vector or ``Batch``
        - output: ``[N, channels]``
    """

    def __init__(self, k: int, channels: int, sign_flip: bool = True) -> None:
        super().__init__()
        if not isinstance(k, int) or k < 1 or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"`k` and `channels` must be positive ints, got {k!r} and {channels!r}")
        self.k, self.channels, self.sign_flip = k, channels, sign_flip
        self.linear = nn.Linear(k, channels)

    def reset_parameters(self) -> None:
        self.linear.reset_parameters()

    def forward(self, eigenvectors: Tensor, batch: Tensor | Any | None = None) -> Tensor:
        if not isinstance(eigenvectors, Tensor) or eigenvectors.dim() != 2 or eigenvectors.size(1) != self.k:
            got = tuple(eigenvectors.shape) if isinstance(eigenvectors, Tensor) else type(eigenvectors).__name__
            raise ValueError(f"`eigenvectors` must be [N, k={self.k}], got {got}")
        eigenvectors = torch.nan_to_num(eigenvectors, nan=0.0)
        if self.training and self.sign_flip:
            if batch is None:
                sign = torch.randint(0, 2, (1, self.k), device=eigenvectors.device)  # [1, k]
            else:
                ptr = batch_ptr(batch, num_nodes=None if not isinstance(batch, Tensor) else batch.numel())
                graphs = torch.randint(0, 2, (ptr.numel() - 1, self.k), device=eigenvectors.device)  # [B, k]
                sign = torch.repeat_interleave(graphs, ptr.diff().to(eigenvectors.device), dim=0)  # [N, k]
            eigenvectors = eigenvectors * (2 * sign - 1).to(eigenvectors.dtype)
        return self.linear(eigenvectors)

    def extra_repr(self) -> str:
        return f"k={self.k}, channels={self.channels}, sign_flip={self.sign_flip}"
