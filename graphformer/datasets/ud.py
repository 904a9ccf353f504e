"""Universal Dependencies treebanks (CoNLL-U) as lists of sentences: words, UPOS tags, dependency heads.

Parsing is done by the `conllu <https://pypi.org/project/conllu/>`_ package. Only the syntactic words of the
basic tree are kept: multiword-token ranges (ids like ``1-2``, e.g. "didn't") and empty nodes of enhanced
graphs (ids like ``3.1``) are skipped, so a sentence's ``heads`` index its ``words`` directly.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

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


#: UD English EWT as released in UniversalDependencies/UD_English-EWT at tag ``r2.16``: split -> (URL, SHA-256).
#: The shared offline copies (``../shared/data/ud_english_ewt``) hash to the same values.
EWT_RELEASE = "r2.16"
EWT_FILES: dict[str, tuple[str, str]] = {
    split: (f"https://raw.githubusercontent.com/UniversalDependencies/UD_English-EWT/{EWT_RELEASE}/"
            f"en_ewt-ud-{split}.conllu", digest)
    for split, digest in (
        ("train", "3fb78e2b55482c8ee00caa653af436c88c9e5bc9a73ce26e4ae3ddc79d2b7e7b"),
        ("dev", "531a54ff90d6ab12201c5a50c3e78e6ddac4de69abc4bce5d275d3cd29efe2b6"),
        ("test", "e266e515a0a7547657ed3d90d9ba46487d6bd251f27ad4269d4e8a427c8555cd"),
    )
}


def default_cache() -> Path:
    """Where downloads go: ``$GRAPHFORMER_CACHE`` or ``~/.cache/graphformer``."""
    return Path(os.environ.get("GRAPHFORMER_CACHE", Path.home() / ".cache" / "graphformer")).expanduser()


def sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ud_english_ewt(split: str, roots: Sequence[str | os.PathLike[str]] = (), *,
                   cache: str | os.PathLike[str] | None = None, download: bool = True) -> Path:
    """The path of UD English EWT's ``split`` file (``"train"``, ``"dev"`` or ``"test"``), downloading it if needed.

    Looks for ``en_ewt-ud-<split>.conllu`` in each of ``roots`` (e.g. a read-only shared data folder), then in
    ``cache / "ud_english_ewt"``; otherwise downloads the pinned release file (:data:`EWT_FILES`) into the cache,
    checks its SHA-256 and only then moves it into place, so a failed or corrupted download leaves nothing behind.

    Raises:
        ValueError: ``split`` is not one of the three.
        FileNotFoundError: not found and ``download`` is False.
        OSError: the downloaded file's checksum differs from the pinned one.
    """
    if split not in EWT_FILES:
        raise ValueError(f"`split` must be one of {sorted(EWT_FILES)}, got {split!r}")
    name = f"en_ewt-ud-{split}.conllu"
    for root in roots:
        if (Path(root) / name).is_file():
            return Path(root) / name
    folder = Path(cache).expanduser() if cache is not None else default_cache()
    target = folder / "ud_english_ewt" / name
    if target.is_file():
        return target
    if not download:
        raise FileNotFoundError(f"{name} is not in {[str(r) for r in roots] + [str(target.parent)]} and "
                                "download=False")
    url, expected = EWT_FILES[split]
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=target.parent, prefix=name, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310
            shutil.copyfileobj(response, out)
        actual = sha256(partial)
        if actual != expected:
            raise OSError(f"checksum mismatch for {url}: expected sha256 {expected}, got {actual}")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return target
