"""Layer 5 of graphformer: kernels and the dispatch that picks one (see :mod:`graphformer.ops.attention`)."""

from graphformer.ops.attention import dot_product_attention, dot_product_scores
from graphformer.ops.bias import PairBias
from graphformer.ops.dense import block_attention

__all__ = ["PairBias", "block_attention", "dot_product_attention", "dot_product_scores"]
