"""The CoNLL-U reader on a hand-written sample (multiword tokens and empty nodes skipped)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from graphformer.datasets import UPOS_TAGS, read_conllu, ud

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


# -- the pinned EWT release: found locally, cached, or downloaded and checked (no network: urlopen is replaced) --
class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _serve(monkeypatch, payload: bytes) -> list[str]:
    requested = []

    def urlopen(url, timeout=None):
        requested.append(url)
        return _Response(payload)

    monkeypatch.setattr(ud.urllib.request, "urlopen", urlopen)
    return requested


def test_ewt_files_are_pinned_release_urls_with_checksums():
    assert set(ud.EWT_FILES) == {"train", "dev", "test"}
    for split, (url, digest) in ud.EWT_FILES.items():
        assert url.startswith("https://") and ud.EWT_RELEASE in url and url.endswith(f"en_ewt-ud-{split}.conllu")
        assert len(digest) == 64 and int(digest, 16) >= 0


def test_ewt_prefers_a_local_root_then_the_cache(tmp_path, monkeypatch):
    requested = _serve(monkeypatch, b"never used")
    root = tmp_path / "shared"
    root.mkdir()
    (root / "en_ewt-ud-dev.conllu").write_text("x")
    found = ud.ud_english_ewt("dev", [tmp_path / "missing", root], cache=tmp_path / "cache")
    assert found == root / "en_ewt-ud-dev.conllu"
    cached = tmp_path / "cache" / "ud_english_ewt" / "en_ewt-ud-train.conllu"
    cached.parent.mkdir(parents=True)
    cached.write_text("y")
    assert ud.ud_english_ewt("train", [root], cache=tmp_path / "cache") == cached
    assert requested == []


def test_ewt_download_checks_the_checksum_and_moves_into_place(tmp_path, monkeypatch):
    payload = b"# sent_id = 1\n1\tHi\thi\tINTJ\t_\t_\t0\troot\t_\t_\n\n"
    monkeypatch.setitem(ud.EWT_FILES, "test", ("https://example.invalid/test.conllu",
                                                hashlib.sha256(payload).hexdigest()))
    requested = _serve(monkeypatch, payload)
    path = ud.ud_english_ewt("test", cache=tmp_path)
    assert requested == ["https://example.invalid/test.conllu"]
    assert path == tmp_path / "ud_english_ewt" / "en_ewt-ud-test.conllu" and path.read_bytes() == payload
    assert [s.words for s in read_conllu(path)] == [["Hi"]]
    assert sorted(p.name for p in path.parent.iterdir()) == ["en_ewt-ud-test.conllu"]  # no partial file left
    assert ud.ud_english_ewt("test", cache=tmp_path) == path and len(requested) == 1  # cached now


def test_ewt_corrupted_download_leaves_nothing(tmp_path, monkeypatch):
    _serve(monkeypatch, b"not the release file")
    with pytest.raises(OSError, match="checksum mismatch"):
        ud.ud_english_ewt("dev", cache=tmp_path)
    assert list((tmp_path / "ud_english_ewt").iterdir()) == []


def test_ewt_bad_split_and_no_download(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHFORMER_CACHE", str(tmp_path))
    assert ud.default_cache() == tmp_path
    with pytest.raises(ValueError, match="`split`"):
        ud.ud_english_ewt("validation")
    with pytest.raises(FileNotFoundError, match="download=False"):
        ud.ud_english_ewt("dev", download=False)


def test_shared_ewt_copies_match_the_pinned_checksums():
    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "ud_english_ewt"
    if not shared.is_dir():
        pytest.skip("no shared data folder")
    for split in ("train", "dev"):
        assert ud.sha256(shared / f"en_ewt-ud-{split}.conllu") == ud.EWT_FILES[split][1]
