"""Readers for real data used by the examples (no downloads: files are read from disk)."""

from graphformer.datasets.ud import UPOS_TAGS, Sentence, read_conllu

__all__ = ["UPOS_TAGS", "Sentence", "read_conllu"]
