"""Layer 5 of graphformer: kernels and the dispatch that picks one (see :mod:`graphformer.ops.attention`).

Linear global attention per graph of a batch (Performer, SGFormer; :math:`O(N)` memory, no padding) lives in
:mod:`graphformer.ops.linear`: :func:`linear_attention`, :func:`simple_attention` and their plain
references.

The sparse path's kernel (fused Triton or PyTorch) is chosen by :mod:`graphformer.ops.backend`:
:func:`set_sparse_backend`, :func:`sparse_backend`, ``GRAPHFORMER_SPARSE_BACKEND``, and
:func:`last_sparse_backend` reports which one ran."""

from graphformer.ops.attention import dot_product_attention, dot_product_scores
from graphformer.ops.backend import (
    SparseBackendWarning,
    get_sparse_backend,
    last_sparse_backend,
    set_sparse_backend,
    sparse_backend,
)
from graphformer.ops.bias import PairBias
from graphformer.ops.dense import block_attention
from graphformer.ops.linear import (
    linear_attention,
    linear_attention_reference,
    orthogonal_matrix,
    performer_features,
    simple_attention,
    simple_attention_reference,
)

__all__ = [
    "PairBias",
    "SparseBackendWarning",
    "block_attention",
    "dot_product_attention",
    "dot_product_scores",
    "get_sparse_backend",
    "last_sparse_backend",
    "linear_attention",
    "linear_attention_reference",
    "orthogonal_matrix",
    "performer_features",
    "set_sparse_backend",
    "simple_attention",
    "simple_attention_reference",
    "sparse_backend",
]
