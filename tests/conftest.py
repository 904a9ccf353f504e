"""Shared fixtures: random graphs with isolated nodes, padded/unpadded sentence batches, and a small
hand-written CoNLL-U sample (multiword token, empty node, two documents)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

#: The shared offline data: read-only by contract, whatever its permission bits say (root may write anyway).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_FIRST_PATH = {"os.mkdir", "os.remove", "os.rmdir", "os.truncate", "os.chmod", "os.chown", "os.utime", "shutil.rmtree"}
_SECOND_PATH = {"shutil.copyfile", "shutil.copytree", "shutil.copymode", "shutil.copystat", "os.link", "os.symlink"}
_BOTH_PATHS = {"os.rename", "shutil.move"}  # os.replace raises "os.rename"


def _written_paths(event: str, args: tuple) -> tuple:
    """The paths an audit event writes to (empty for reads and for events that write nothing)."""
    if event == "open":
        path, mode, flags = args
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & _WRITE_FLAGS)
        return (path,) if writing else ()
    if event in _FIRST_PATH:
        return args[:1]
    if event in _SECOND_PATH:
        return args[1:2]
    if event in _BOTH_PATHS:
        return args[:2]
    return ()


@pytest.fixture(scope="session", autouse=True)
def _shared_data_is_read_only():
    """Fail any write of this test process into ``../shared/data`` where it happens (an audit hook aborts it).

    Subprocesses are not covered; ``tests/test_shared_data.py`` runs their data code paths in-process."""
    root = os.path.realpath(SHARED_DATA)

    def guard(event: str, args: tuple) -> None:
        for path in _written_paths(event, args):
            if isinstance(path, (str, bytes, os.PathLike)):
                resolved = os.path.realpath(os.fsdecode(path))
                if resolved == root or resolved.startswith(root + os.sep):
                    raise PermissionError(f"{event} would write {resolved}: ../shared/data is read-only by contract")

    if SHARED_DATA.is_dir() and not getattr(sys, "_graphformer_shared_data_guard", False):
        sys.addaudithook(guard)  # hooks cannot be removed; the flag keeps a second session from adding another
        sys._graphformer_shared_data_guard = True
    yield


def random_graph(num_nodes: int, num_edges: int, seed: int = 0, isolated: int = 2) -> torch.Tensor:
    """Random ``edge_index`` over ``num_nodes`` nodes whose last ``isolated`` nodes receive no edge."""
    gen = torch.Generator().manual_seed(seed)
    source = torch.randint(0, num_nodes, (num_edges,), generator=gen)
    target = torch.randint(0, max(num_nodes - isolated, 1), (num_edges,), generator=gen)
    return torch.stack([source, target])


def sentence_batch(lengths: list[int], d_model: int, seed: int = 0):
    """``(padded [B, L, D], padding_mask [B, L], tokens [N, D], batch [N])`` for sequences of ``lengths``."""
    gen = torch.Generator().manual_seed(seed)
    padded = torch.randn(len(lengths), max(lengths), d_model, generator=gen)
    padding_mask = torch.arange(max(lengths))[None] >= torch.tensor(lengths)[:, None]
    padded = padded.masked_fill(padding_mask.unsqueeze(-1), 0.0)
    tokens = padded[~padding_mask]
    batch = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    return padded, padding_mask, tokens, batch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(12345)


SAMPLE_CONLLU = """# newdoc id = sample
# sent_id = s1
# text = I didn't go.
1\tI\tI\tPRON\tPRP\tCase=Nom\t4\tnsubj\t4:nsubj\t_
2-3\tdidn't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdid\tdo\tAUX\tVBD\tMood=Ind\t4\taux\t4:aux\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t4:advmod\t_
4\tgo\tgo\tVERB\tVB\tVerbForm=Inf\t0\troot\t0:root\tSpaceAfter=No
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t4:punct\t_

# sent_id = s2
# text = Sue likes tea and Bill coffee.
1\tSue\tSue\tPROPN\tNNP\t_\t2\tnsubj\t2:nsubj\t_
2\tlikes\tlike\tVERB\tVBZ\t_\t0\troot\t0:root\t_
3\ttea\ttea\tNOUN\tNN\t_\t2\tobj\t2:obj\t_
4\tand\tand\tCCONJ\tCC\t_\t5\tcc\t5:cc\t_
5\tBill\tBill\tPROPN\tNNP\t_\t2\tconj\t2:conj|5.1:nsubj\t_
5.1\tlikes\tlike\tVERB\tVBZ\t_\t_\t_\t2:conj\tCopyOf=2
6\tcoffee\tcoffee\tNOUN\tNN\t_\t5\torphan\t5.1:obj\tSpaceAfter=No
7\t.\t.\tPUNCT\t.\t_\t2\tpunct\t2:punct\t_

# sent_id = s3
# text = Hello!
1\tHello\thello\tINTJ\tUH\t_\t0\troot\t0:root\tSpaceAfter=No
2\t!\t!\tPUNCT\t.\t_\t1\tpunct\t1:punct\t_

"""

#: What the reader must return for SAMPLE_CONLLU: (sent_id, words, upos, heads).
SAMPLE_EXPECTED = [
    ("s1", ["I", "did", "n't", "go", "."], ["PRON", "AUX", "PART", "VERB", "PUNCT"], [4, 4, 4, 0, 4]),
    ("s2", ["Sue", "likes", "tea", "and", "Bill", "coffee", "."],
     ["PROPN", "VERB", "NOUN", "CCONJ", "PROPN", "NOUN", "PUNCT"], [2, 0, 2, 5, 2, 5, 2]),
    ("s3", ["Hello", "!"], ["INTJ", "PUNCT"], [0, 1]),
]


@pytest.fixture
def conllu_sample() -> str:
    return SAMPLE_CONLLU


@pytest.fixture
def conllu_expected() -> list:
    return SAMPLE_EXPECTED
