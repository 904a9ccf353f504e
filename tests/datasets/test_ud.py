"""The CoNLL-U reader on a hand-written sample (multiword tokens and empty nodes skipped)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from graphformer.datasets import UPOS_TAGS, read_conllu

EWT_DEV = Path(__file__).resolve().parents[3] / "shared" / "data" / "ud_english_ewt" / "en_ewt-ud-dev.conllu"


def plain_parse(text: str) -> list[tuple[str, list[str], list[str], list[int]]]:
    """Oracle: a plain line-by-line reading of the 10-column format."""
    sentences, current, sent_id = [], [], None
    for line in text.splitlines() + [""]:
        if line.startswith("# sent_id = "):
            sent_id = line.split("= ", 1)[1]
        elif not line.strip():
            if current:
                sentences.append((sent_id, [c[1] for c in current], [c[3] for c in current],
                                  [int(c[6]) for c in current]))
            current = []
        elif not line.startswith("#"):
            columns = line.split("\t")
            if columns[0].isdigit():
                current.append(columns)
    return sentences


@pytest.mark.parametrize("form", ["text", "path", "file"])
def test_read_sample(conllu_sample, conllu_expected, tmp_path, form):
    if form == "text":
        source = conllu_sample
    elif form == "path":
        source = tmp_path / "sample.conllu"
        source.write_text(conllu_sample, encoding="utf-8")
    else:
        source = io.StringIO(conllu_sample)
    sentences = read_conllu(source)
    got = [(s.sent_id, s.words, s.upos, s.heads) for s in sentences]
    assert got == conllu_expected == plain_parse(conllu_sample)
    assert sentences[1].deprels == ["nsubj", "root", "obj", "cc", "conj", "orphan", "punct"]
    assert sentences[0].metadata["text"] == "I didn't go."
    assert all(len(s) == len(s.heads) for s in sentences)


def test_bad_head_is_reported():
    text = "# sent_id = bad\n1\ta\ta\tDET\t_\t_\t3\tdet\t_\t_\n2\tb\tb\tNOUN\t_\t_\t0\troot\t_\t_\n\n"
    with pytest.raises(ValueError, match="'bad'.*HEAD 3"):
        read_conllu(text)


@pytest.mark.skipif(not EWT_DEV.exists(), reason="UD English EWT dev file not available")
def test_ewt_dev_sentences_are_trees_with_universal_tags():
    sentences = read_conllu(EWT_DEV)
    text = EWT_DEV.read_text(encoding="utf-8")
    assert [(s.sent_id, s.words, s.upos, s.heads) for s in sentences] == plain_parse(text)
    for sentence in sentences:
        assert set(sentence.upos) <= set(UPOS_TAGS)
        assert sentence.heads.count(0) == 1
        for word in range(len(sentence)):  # following heads reaches the root without a cycle
            seen, node = set(), word + 1
            while node != 0:
                assert node not in seen
                seen.add(node)
                node = sentence.heads[node - 1]
