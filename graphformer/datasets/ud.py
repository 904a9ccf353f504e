"""Universal Dependencies treebanks (CoNLL-U) as lists of sentences: words, UPOS tags, dependency heads.

Parsing is done by the `conllu <https://pypi.org/project/conllu/>`_ package. Only the syntactic words of the
basic tree are kept: multiword-token ranges (ids like ``1-2``, e.g. "didn't") and empty nodes of enhanced
graphs (ids like ``3.1``) are skipped, so a sentence's ``heads`` index its ``words`` directly.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field

#: The 17 universal part-of-speech tags of UD v2, in the order of the UD documentation.
UPOS_TAGS: tuple[str, ...] = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)


@dataclass
class Sentence:
    """One sentence of a treebank.

    Attributes:
        words: the ``FORM`` column, one entry per syntactic word.
        upos: the ``UPOS`` column.
        heads: the ``HEAD`` column: 1-based index of each word's head in ``words``, ``0`` for the root.
        deprels: the ``DEPREL`` column.
        sent_id: the ``# sent_id`` comment, if any.
    """

    words: list[str]
    upos: list[str]
    heads: list[int]
    deprels: list[str]
    sent_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.words)


def read_conllu(source: str | os.PathLike[str] | io.TextIOBase) -> list[Sentence]:
    """Read a CoNLL-U file (a path, an open text file, or the text itself when it contains a newline).

    Multiword-token ranges and empty nodes are skipped; sentences left without words are dropped.

    Raises:
        ValueError: when a word has no integer ``HEAD`` or a head points outside its sentence.
    """
    import conllu

    if isinstance(source, io.TextIOBase):
        text = source.read()
    elif isinstance(source, str) and "\n" in source:
        text = source
    else:
        with open(source, encoding="utf-8") as handle:
            text = handle.read()
    sentences = []
    for token_list in conllu.parse(text):
        words, upos, heads, deprels = [], [], [], []
        for token in token_list:
            if not isinstance(token["id"], int):  # (1, '-', 2) multiword range or (3, '.', 1) empty node
                continue
            if not isinstance(token["head"], int):
                raise ValueError(
                    f"word {token['id']} ({token['form']!r}) of sentence {token_list.metadata.get('sent_id')!r} "
                    f"has HEAD {token['head']!r}; expected an integer"
                )
            words.append(token["form"])
            upos.append(token["upos"])
            heads.append(token["head"])
            deprels.append(token["deprel"])
        if not words:
            continue
        if max(heads) > len(words):
            raise ValueError(
                f"sentence {token_list.metadata.get('sent_id')!r} has a HEAD {max(heads)} beyond its "
                f"{len(words)} words"
            )
        metadata = dict(token_list.metadata)
        sentences.append(Sentence(words, upos, heads, deprels, metadata.get("sent_id"), metadata))
    return sentences
