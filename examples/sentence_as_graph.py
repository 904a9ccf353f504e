"""Sentences as graphs: one transformer, many graph shapes, on Universal Dependencies English EWT (UPOS tagging).

The UD protocol: train on the train split, select the epoch (early stopping) on the dev split, and, when
``--test`` is given, score the held-out file once at the end with the model selected on dev. Without ``--test``
every number is dev accuracy (of the epoch chosen on dev), and the outputs say so.

The tagger, built from graphformer's parts: each word is a character-level CNN over its spelling (start and
end markers, width-3 convolution, max over the characters) + a lower-cased word embedding (the unknown-word
scheme: words seen once in training have no vector of their own, they share the unknown vector, and in
training 5 % of known words are dropped to it) + 2- and 3-letter suffix and spelling-shape embeddings +
sinusoidal positions -> a pre-norm
``GraphTransformer`` over the sentence graph -> a linear tagger. The same model and hyper-parameters run on
every graph shape of a sentence:

  complete    every word attends to every word (= nn.TransformerEncoder), implicit structure, dense path
  causal      every word attends to itself and the words before it (a left-to-right language model's mask)
  chain       previous / next word (+ self)
  window      |i - j| <= --window
  dilated     offsets 0, +-1, +-d, +-2d (chain + dilated window radius 2, dilation --dilation)
  bptree      binary partition tree (BP-Transformer): log-depth span nodes, each word sees ~log2 L spans
  tree        the gold dependency tree from the CoNLL-U HEAD column, both directions (+ self)
  tree+chain  the union of tree and chain

``--relative K`` adds a learned per-head bias of the clipped relative distance (one table per layer);
``--aggr sum|mean|max`` replaces softmax attention by a plain aggregation of the value vectors (the essay's
"do we need attention at all?"). Each (graph, aggregation, bias) row reports dev (and test) accuracy, edges
per sentence and seconds per epoch (table, JSON, PNG). ``--throughput`` measures training tokens / s of the
encoder on every graph shape against ``nn.TransformerEncoder`` with the same weights on padded batches.
``--analysis`` asks what the heads of the complete-graph model attend to against the dependency tree, and
``--stability`` sweeps post-norm vs pre-norm with and without warm-up.

Run from the repository root (the README prints the commands of its tables)::

    PYTHONPATH=. python examples/sentence_as_graph.py --graph chain --seeds 0

Data: ``--train`` / ``--dev`` default to ``../shared/data/ud_english_ewt``; where that folder does not exist the
pinned UD release files (``graphformer.datasets.EWT_FILES``: URL + SHA-256) are downloaded once into
``--cache``. ``--test ewt`` does the same for the EWT test split; any other value is a CoNLL-U path.

Note: ``tree`` and ``tree+chain`` read the *gold* dependency heads at test time too (an oracle input); they
answer "how much does knowing the syntax tree help", not "how well can a tagger do from raw text".
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections import Counter
from pathlib import Path

import matplotlib
import matplotlib.patches  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from graphformer import GraphTransformer  # noqa: E402
from graphformer.analysis import attention_weights, head_importance, top_k_edges  # noqa: E402
from graphformer.datasets import UPOS_TAGS, Sentence, read_conllu, ud_english_ewt  # noqa: E402
from graphformer.encodings import RelativePositionBias, SinusoidalPositionalEncoding, positions  # noqa: E402
from graphformer.graphs import (  # noqa: E402
    BlockStructure,
    PartitionTree,
    binary_partition_tree,
    causal,
    chain,
    dependency_tree,
    dilated,
    fully_connected,
    union,
    window,
)

GRAPHS = ("complete", "causal", "chain", "window", "dilated", "bptree", "tree", "tree+chain")
AGGREGATIONS = ("attention", "sum", "mean", "max")
SHARED_UD = Path(__file__).resolve().parents[2] / "shared" / "data" / "ud_english_ewt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=Path, default=None,
                        help=f"CoNLL-U training file (default: EWT train from {SHARED_UD}, else downloaded)")
    parser.add_argument("--dev", type=Path, default=None,
                        help="CoNLL-U dev file for model selection / early stopping (default: EWT dev, as --train)")
    parser.add_argument("--test", default=None,
                        help="held-out CoNLL-U file scored once at the end with the model selected on dev "
                             "('ewt': the pinned EWT test split, downloaded into --cache when missing)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="download folder (default: $GRAPHFORMER_CACHE or ~/.cache/graphformer)")
    parser.add_argument("--graph", nargs="+", default=["chain"], choices=(*GRAPHS, "all", "none"),
                        help="graph shapes to compare ('none': skip the comparison, e.g. to run only --stability)")
    parser.add_argument("--aggr", nargs="+", default=["attention"], choices=AGGREGATIONS,
                        help="neighbourhood aggregation of every layer: softmax attention or a plain sum / mean / "
                             "max of the value vectors (one row per graph x aggregation)")
    parser.add_argument("--relative", type=int, nargs="+", default=[0], metavar="K",
                        help="learned per-head attention bias of the relative distance clipped to +-K, one table "
                             "per layer (0: off); several values give one row each (attention rows only)")
    parser.add_argument("--epochs", type=int, default=12, help="maximum epochs over the training file")
    parser.add_argument("--patience", type=int, default=3, help="stop after this many epochs without a better dev "
                                                                "accuracy")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--norm-first", action=argparse.BooleanOptionalAction, default=True,
                        help="pre-norm (default) or post-norm layers")
    parser.add_argument("--warmup", type=int, default=200, help="linear learning-rate warm-up steps (then linear "
                                                                "decay to 0 at the last epoch)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per step")
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dim-feedforward", type=int, default=256)
    parser.add_argument("--dropout", type=float, default=0.1, help="dropout inside the transformer layers")
    parser.add_argument("--input-dropout", type=float, default=0.25, help="dropout on the word representation")
    parser.add_argument("--word-dropout", type=float, default=0.05,
                        help="training: probability of replacing a known word by the unknown word")
    parser.add_argument("--min-count", type=int, default=2, help="training count for a word to get its own vector")
    parser.add_argument("--char-dim", type=int, default=32, help="character embedding size")
    parser.add_argument("--char-channels", type=int, default=64, help="channels of the character CNN")
    parser.add_argument("--max-chars", type=int, default=16,
                        help="characters read per word (longer words: the first and last half of this)")
    parser.add_argument("--window", type=int, default=2, help="radius of the window graph")
    parser.add_argument("--dilation", type=int, default=2, help="dilation of the dilated graph")
    parser.add_argument("--max-sentences", type=int, default=None,
                        help="use only the first N training and dev sentences (smoke)")
    parser.add_argument("--throughput", action="store_true",
                        help="measure training tokens / s of the encoder on every --graph shape against "
                             "nn.TransformerEncoder with the same weights on padded, length-sorted dev batches")
    parser.add_argument("--throughput-repeats", type=int, default=3, help="passes over the timed batches")
    parser.add_argument("--analysis", action="store_true",
                        help="heads vs syntax and head importance of the complete-graph model (trained if needed)")
    parser.add_argument("--stability", action="store_true",
                        help="also run the post-/pre-norm x warm-up sweep on the complete graph")
    parser.add_argument("--stability-lr", type=float, nargs="+", default=[2e-3, 1e-2, 3e-2],
                        help="learning rates of the sweep")
    parser.add_argument("--stability-layers", type=int, default=4, help="layers of the sweep's model")
    parser.add_argument("--stability-epochs", type=int, default=2, help="epochs of each sweep run")
    parser.add_argument("--from-json", type=Path, nargs="+", default=[], metavar="PATH",
                        help="add the runs of earlier --json files (same hyper-parameters, checked) to this run's "
                             "table, e.g. rows trained in parallel processes")
    parser.add_argument("--json", type=Path, default=Path("examples/results/sentence_as_graph.json"),
                        help="results JSON; PNGs are written beside it")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    for name in ("epochs", "patience", "batch_size", "d_model", "heads", "layers", "dim_feedforward", "min_count",
                 "char_dim", "char_channels", "max_chars", "throughput_repeats", "stability_epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.d_model % args.heads:
        parser.error(f"--d-model ({args.d_model}) must be divisible by --heads ({args.heads})")
    if any(k < 0 for k in args.relative):
        parser.error(f"--relative must be >= 0, got {args.relative}")
    for name in ("dropout", "input_dropout", "word_dropout"):
        if not 0.0 <= getattr(args, name) < 1.0:
            parser.error(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(args, name)}")
    return args


#: options that choose rows, outputs or extra analyses; every other option must agree between merged --json files
ROW_OPTIONS = {"graph", "aggr", "relative", "seeds", "json", "from_json", "throughput", "throughput_repeats",
               "analysis", "stability", "stability_lr", "stability_layers", "stability_epochs", "threads", "cache",
               "test"}


def earlier_runs(paths: list[Path], args: argparse.Namespace) -> list[dict]:
    """The runs of earlier ``--json`` files, after checking they were trained with this run's hyper-parameters."""
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ROW_OPTIONS}
    runs = []
    for path in paths:
        try:
            saved = json.loads(Path(path).read_text())
            their, their_runs = saved["config"], saved["runs"]
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"--from-json: cannot read runs from {path}: {error}") from error
        for key, value in config.items():
            if their.get(key) != value:
                raise ValueError(f"--from-json: {path} was trained with {key}={their.get(key)!r}, this run has "
                                 f"{value!r}")
        runs.extend(their_runs)
    return runs


# -- data ------------------------------------------------------------------------------------------------------
def resolve(path: Path | str | None, split: str, cache: Path | None) -> Path:
    """A CoNLL-U path: the given one (which must exist), else the shared EWT copy, else the pinned download."""
    if path is not None and str(path) != "ewt":
        if not Path(path).is_file():
            raise FileNotFoundError(f"--{'dev' if split == 'dev' else split}: no such file: {path}")
        return Path(path)
    return ud_english_ewt(split, [SHARED_UD], cache=cache)


def shape(word: str) -> int:
    """A small id for the word's spelling: capitalised / all caps / has digit / has letter / has hyphen."""
    flags = (word[:1].isupper(), word.isupper(), any(c.isdigit() for c in word), any(c.isalpha() for c in word),
             "-" in word)
    return sum(int(flag) << k for k, flag in enumerate(flags))


class Vocabulary:
    """Training-set vocabularies: lower-cased words seen ``min_count`` times (0 = unknown), lower-cased 2- and
    3-letter suffixes seen twice (0 = unknown), characters seen twice (0 = padding, 1 = unknown character, 2 / 3 =
    start / end of the word), tags. Every distinct word form gets a row of character ids in ``chars``
    (``[F, max_chars + 2]``: start marker, the characters — a longer word keeps its first and last
    ``max_chars // 2`` — end marker)."""

    num_shapes = 32

    def __init__(self, sentences: list[Sentence], min_count: int = 2, max_chars: int = 16) -> None:
        words = Counter(w.lower() for s in sentences for w in s.words)
        characters = Counter(c for s in sentences for w in s.words for c in w)
        self.words = {w: k + 1 for k, w in enumerate(sorted(w for w, c in words.items() if c >= min_count))}
        suffixes = Counter(x for s in sentences for w in s.words for x in (w.lower()[-3:], "~" + w.lower()[-2:]))
        self.suffixes = {x: k + 1 for k, x in enumerate(sorted(x for x, n in suffixes.items() if n >= 2))}
        self.characters = {c: k + 4 for k, c in enumerate(sorted(c for c, n in characters.items() if n >= 2))}
        self.tags = {t: k for k, t in enumerate(UPOS_TAGS)}
        self.max_chars = max_chars
        self.forms: dict[str, int] = {}
        self.char_rows: list[list[int]] = []
        self._cache: dict[int, dict[str, Tensor]] = {}

    @property
    def chars(self) -> Tensor:
        """``[F, max_chars + 2]`` character ids of every form encoded so far (0-padded)."""
        if len(self._chars) != len(self.char_rows):
            table = torch.zeros(len(self.char_rows), self.max_chars + 2, dtype=torch.long)
            for k, row in enumerate(self.char_rows):
                table[k, : len(row)] = torch.tensor(row)
            self._chars = table
        return self._chars

    _chars = torch.zeros(0, 0, dtype=torch.long)

    def form(self, word: str) -> int:
        if word not in self.forms:
            half = self.max_chars // 2
            text = word if len(word) <= self.max_chars else word[:half] + word[-(self.max_chars - half):]
            self.forms[word] = len(self.char_rows)
            self.char_rows.append([2, *(self.characters.get(c, 1) for c in text), 3])
        return self.forms[word]

    def encode_one(self, sentence: Sentence) -> dict[str, Tensor]:
        """One sentence's ids (cached: a sentence is encoded once, whatever the number of epochs)."""
        key = id(sentence)
        if key not in self._cache:
            words = sentence.words
            self._cache[key] = {
                "words": torch.tensor([self.words.get(w.lower(), 0) for w in words]),
                "forms": torch.tensor([self.form(w) for w in words]),
                "suffixes": torch.tensor([self.suffixes.get(w.lower()[-3:], 0) for w in words]),
                "suffixes2": torch.tensor([self.suffixes.get("~" + w.lower()[-2:], 0) for w in words]),
                "shapes": torch.tensor([shape(w) for w in words]),
                "tags": torch.tensor([self.tags[t] for t in sentence.upos]),
                "heads": torch.tensor(sentence.heads),
            }
        return self._cache[key]

    def encode(self, sentences: list[Sentence]) -> dict[str, Tensor]:
        """Concatenate a batch of sentences into PyG-style tensors (words, forms, shapes, tags, heads, ptr)."""
        parts = [self.encode_one(s) for s in sentences]
        lengths = torch.tensor([len(s) for s in sentences])
        batch = {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
        batch["ptr"] = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        return batch


def build_graph(kind: str, batch: dict[str, Tensor], args: argparse.Namespace):
    """The graph of a batch of sentences: a block structure, an edge_index, or a PartitionTree."""
    ptr = batch["ptr"]
    num_nodes = int(ptr[-1])
    if kind == "complete":
        return fully_connected(ptr=ptr)
    if kind == "causal":
        return causal(ptr=ptr)
    if kind == "chain":
        return chain(ptr=ptr)
    if kind == "window":
        return window(radius=args.window, ptr=ptr)
    if kind == "dilated":
        return union(chain(ptr=ptr), dilated(radius=2, dilation=args.dilation, ptr=ptr), num_nodes=num_nodes)
    if kind == "bptree":
        return binary_partition_tree(ptr=ptr)
    if kind == "tree":
        return dependency_tree(batch["heads"], ptr=ptr)
    if kind == "tree+chain":
        return union(dependency_tree(batch["heads"], ptr=ptr), chain(ptr=ptr), num_nodes=num_nodes)
    raise ValueError(f"unknown graph {kind!r}; choose from {GRAPHS}")


def num_edges(graph) -> int:
    if isinstance(graph, PartitionTree):
        return graph.edge_index.size(1)
    if isinstance(graph, Tensor):
        return graph.size(1)
    return graph.num_edges


# -- model -----------------------------------------------------------------------------------------------------
class CharCNN(nn.Module):
    r"""A word from its characters: ``h_w = W_o max_t relu(W [c_{t-1}; c_t; c_{t+1}] + b)`` over the characters
    ``c_t`` (embeddings ``[*, char_dim]``, zero-padded at both ends) — a width-3 convolution written as one matmul.

    Shapes: ``chars [U, T]`` (0 = padding) -> ``[U, d_model]``.
    """

    def __init__(self, num_chars: int, char_dim: int, channels: int, d_model: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.conv = nn.Linear(3 * char_dim, channels)
        self.out = nn.Linear(channels, d_model)

    def forward(self, chars: Tensor) -> Tensor:
        e = F.pad(self.embed(chars), (0, 0, 1, 1))  # [U, T + 2, C]
        windows = torch.cat([e[:, :-2], e[:, 1:-1], e[:, 2:]], dim=-1)  # [U, T, 3C]
        h = F.relu(self.conv(windows)).masked_fill((chars == 0).unsqueeze(-1), 0.0)  # [U, T, channels]
        return self.out(h.amax(dim=1))


class Tagger(nn.Module):
    """Char-CNN + word + suffix + shape embeddings + sinusoidal positions -> GraphTransformer -> tag logits."""

    def __init__(self, vocab: Vocabulary, args: argparse.Namespace, norm_first: bool, num_layers: int,
                 aggr: str = "attention", relative: int = 0) -> None:
        super().__init__()
        d = args.d_model
        self.vocab = vocab
        self.word = nn.Embedding(len(vocab.words) + 1, d)
        nn.init.normal_(self.word.weight, std=0.05)  # rare words' vectors start near zero, not as noise
        self.chars = CharCNN(len(vocab.characters) + 4, args.char_dim, args.char_channels, d)
        self.suffix = nn.Embedding(len(vocab.suffixes) + 1, d)
        nn.init.normal_(self.suffix.weight, std=0.05)
        self.shape = nn.Embedding(vocab.num_shapes, d)
        nn.init.normal_(self.shape.weight, std=0.05)
        self.position = SinusoidalPositionalEncoding(d)
        self.relative = relative
        self.word_dropout = args.word_dropout
        # one learned table of per-head scores per clipped distance and layer (Shaw et al. / T5 style)
        self.relative_bias = nn.ModuleList(
            RelativePositionBias(args.heads, relative) for _ in range(num_layers if relative else 0)
        )
        self.encoder = GraphTransformer(d, args.heads, num_layers, args.dim_feedforward, args.dropout,
                                        norm_first=norm_first, final_norm=norm_first, aggr=aggr)
        self.classifier = nn.Linear(d, len(UPOS_TAGS))
        self.dropout = nn.Dropout(args.input_dropout)

    def embed(self, batch: dict[str, Tensor]) -> Tensor:
        words = batch["words"]
        if self.training and self.word_dropout > 0:
            words = words.masked_fill(torch.rand(words.shape) < self.word_dropout, 0)
        forms, inverse = batch["forms"].unique(return_inverse=True)  # each distinct form's CNN runs once
        x = self.word(words) + self.chars(self.vocab.chars[forms])[inverse] + self.shape(batch["shapes"])
        x = x + self.suffix(batch["suffixes"]) + self.suffix(batch["suffixes2"])
        return self.dropout(x + self.position(ptr=batch["ptr"]))  # [N, D]

    def encoder_inputs(self, batch: dict[str, Tensor], graph) -> tuple[Tensor, Tensor | BlockStructure, list | None]:
        """(node features, graph, attention bias per layer) for the encoder; span nodes of a PartitionTree come
        last. On a block structure the relative bias is a PairBias (dense path, no materialised edges)."""
        x = self.embed(batch)
        position = positions(ptr=batch["ptr"])  # [N]
        if isinstance(graph, PartitionTree):  # a span sits at the position of its first word
            x, position, graph = graph.extend(x), position[graph.span_start], graph.edge_index
        attn_bias = None
        if self.relative:  # clipped distance i - j per pair -> learned per-head bias, one table per layer
            where = None if isinstance(graph, BlockStructure) else position
            attn_bias = [bias(graph, where) for bias in self.relative_bias]
        return x, graph, attn_bias

    def forward(self, batch: dict[str, Tensor], graph) -> Tensor:
        num_words = batch["words"].numel()
        x, graph, attn_bias = self.encoder_inputs(batch, graph)
        return self.classifier(self.encoder(x, graph, attn_bias=attn_bias)[:num_words])  # [N, 17]


def batches(sentences: list[Sentence], size: int, shuffle: bool, rng: random.Random) -> list[list[Sentence]]:
    order = list(range(len(sentences)))
    if shuffle:
        rng.shuffle(order)
    return [[sentences[k] for k in order[i : i + size]] for i in range(0, len(order), size)]


def evaluate(model: Tagger, data: list[dict[str, Tensor]], graphs: list) -> tuple[float, float]:
    """(mean token cross-entropy, token accuracy) on pre-encoded batches."""
    model.eval()
    loss, correct, total = 0.0, 0, 0
    with torch.no_grad():
        for batch, graph in zip(data, graphs):
            logits = model(batch, graph)
            loss += float(F.cross_entropy(logits, batch["tags"], reduction="sum"))
            correct += int((logits.argmax(-1) == batch["tags"]).sum())
            total += batch["tags"].numel()
    return loss / total, correct / total


class Evaluation:
    """A fixed evaluation set: encoded batches and their graphs, built once per graph shape."""

    def __init__(self, sentences: list[Sentence], vocab: Vocabulary, args: argparse.Namespace) -> None:
        self.sentences = sentences
        self.batches = [vocab.encode(b) for b in batches(sentences, 64, False, random.Random(0))]
        self.args = args
        self._graphs: dict[str, list] = {}

    def graphs(self, kind: str) -> list:
        if kind not in self._graphs:
            self._graphs[kind] = [build_graph(kind, b, self.args) for b in self.batches]
        return self._graphs[kind]

    def __call__(self, model: Tagger, kind: str) -> tuple[float, float]:
        return evaluate(model, self.batches, self.graphs(kind))


def train(kind: str, seed: int, vocab: Vocabulary, train_set: list[Sentence], dev: Evaluation,
          args: argparse.Namespace, *, norm_first: bool, warmup: int, lr: float, num_layers: int, epochs: int,
          patience: int, aggr: str = "attention", relative: int = 0, desc: str = "") -> tuple[Tagger, dict]:
    """Train one model, keep the epoch with the best dev accuracy (stop after ``patience`` epochs without a
    better one); return the selected model and its record (per-epoch dev loss / accuracy / time, step losses)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = Tagger(vocab, args, norm_first, num_layers, aggr=aggr, relative=relative)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * math.ceil(len(train_set) / args.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / max(warmup, 1)) * max(0.0, 1.0 - step / steps))
    record = {"graph": kind, "aggr": aggr, "relative": relative, "seed": seed, "norm_first": norm_first,
              "warmup": warmup, "lr": lr, "num_layers": num_layers, "epochs": [], "step_loss": []}
    best, best_state, since = -1.0, None, 0
    for epoch in range(epochs):
        model.train()
        start = time.perf_counter()
        last = f", dev {record['epochs'][-1]['dev_accuracy']:.4f}" if record["epochs"] else ""
        for sentences in tqdm(batches(train_set, args.batch_size, True, rng),
                              desc=f"{desc} epoch {epoch + 1}/{epochs}{last}", leave=False):
            batch = vocab.encode(sentences)
            loss = F.cross_entropy(model(batch, build_graph(kind, batch, args)), batch["tags"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            value = loss.item()
            record["step_loss"].append(value if math.isfinite(value) else None)
        seconds = time.perf_counter() - start
        dev_loss, dev_acc = dev(model, kind)
        record["epochs"].append({"epoch": epoch + 1, "seconds": seconds, "dev_loss": dev_loss,
                                 "dev_accuracy": dev_acc})
        if dev_acc > best:
            best, since = dev_acc, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            since += 1
            if since >= patience:
                break
    model.load_state_dict(best_state)
    chosen = max(record["epochs"], key=lambda e: e["dev_accuracy"])
    record["best_epoch"] = chosen["epoch"]
    record["accuracy"] = chosen["dev_accuracy"]
    record["dev_loss"] = chosen["dev_loss"]
    record["seconds_per_epoch"] = sum(e["seconds"] for e in record["epochs"]) / len(record["epochs"])
    record["edges_per_sentence"] = sum(num_edges(g) for g in dev.graphs(kind)) / len(dev.sentences)
    return model, record


# -- throughput ------------------------------------------------------------------------------------------------
def throughput(kinds: list[str], vocab: Vocabulary, sentences: list[Sentence], args: argparse.Namespace) -> list[dict]:
    """Training tokens / s (forward + backward) of the encoder alone on each graph shape, and of
    ``nn.TransformerEncoder`` with the same weights on the same batches padded to ``[B, L_max, D]`` with
    ``src_key_padding_mask``; both in train mode (dropout on). Batches of 64 sentences sorted by length (little
    padding: torch's best case). Median over ``--throughput-repeats`` passes."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(args.d_model, args.heads, args.dim_feedforward, args.dropout,
                                       batch_first=True, norm_first=True)
    reference = nn.TransformerEncoder(layer, args.layers, norm=nn.LayerNorm(args.d_model),
                                      enable_nested_tensor=False)
    ours = GraphTransformer.from_torch(reference)
    ordered = sorted(sentences, key=len)
    data = [vocab.encode(ordered[i : i + 64]) for i in range(0, len(ordered), 64)]
    tokens = sum(int(b["ptr"][-1]) for b in data)
    inputs = [torch.randn(int(b["ptr"][-1]), args.d_model) for b in data]

    def timed(step) -> float:
        times = []
        for _ in range(args.throughput_repeats):
            start = time.perf_counter()
            for k in range(len(data)):
                step(k)
            times.append(time.perf_counter() - start)
        return tokens / sorted(times)[len(times) // 2]

    def torch_step(k: int) -> None:
        lengths = data[k]["ptr"].diff()
        mask = torch.arange(int(lengths.max())) >= lengths.unsqueeze(1)  # [B, L_max], True = padding
        padded = inputs[k].new_zeros(len(lengths), int(lengths.max()), args.d_model)
        padded[~mask] = inputs[k]
        out = reference(padded.requires_grad_(), src_key_padding_mask=mask)
        out[~mask].sum().backward()

    reference.train()
    rows = [{"graph": "nn.TransformerEncoder (padded)", "tokens_per_second": timed(torch_step)}]
    ours.train()
    for kind in kinds:
        graphs = [build_graph(kind, b, args) for b in data]

        def step(k: int, graphs=graphs) -> None:
            graph, x = graphs[k], inputs[k].detach().requires_grad_()
            if isinstance(graph, PartitionTree):
                x, graph = graph.extend(x), graph.edge_index
            ours(x, graph)[: inputs[k].size(0)].sum().backward()

        rows.append({"graph": kind, "tokens_per_second": timed(step)})
    for row in rows:
        row["ratio_to_torch"] = row["tokens_per_second"] / rows[0]["tokens_per_second"]
    return rows


# -- attention vs syntax ---------------------------------------------------------------------------------------
def syntax_agreement(model: Tagger, vocab: Vocabulary, sentences: list[Sentence], args: argparse.Namespace) -> dict:
    """How often each head's most-attended other word is the word's syntactic head / a dependent.

    Baselines: the previous word, the next word, and (in expectation) a uniformly random other word of the
    sentence. Counted over all words of sentences with >= 2 words.
    """
    sentences = [s for s in sentences if len(s) >= 2]
    model.eval()
    hits: dict[str, Tensor] = {}
    totals = {"words": 0}
    base = Counter()
    for chunk in batches(sentences, args.batch_size, False, random.Random(0)):
        batch = vocab.encode(chunk)
        ptr, heads = batch["ptr"], batch["heads"]
        n = heads.numel()
        graph_id = torch.repeat_interleave(torch.arange(len(chunk)), ptr.diff())
        head_node = torch.where(heads > 0, ptr[graph_id] + heads - 1, torch.full_like(heads, -1))  # [N]
        related = torch.zeros(n, n, dtype=torch.bool)  # related[i, j]: j is i's head or dependent
        dependents = torch.nonzero(head_node >= 0).view(-1)
        related[dependents, head_node[dependents]] = True
        related[head_node[dependents], dependents] = True
        is_head = torch.zeros(n, n, dtype=torch.bool)
        is_head[dependents, head_node[dependents]] = True
        x, graph, attn_bias = model.encoder_inputs(batch, fully_connected(ptr=ptr))
        attention = attention_weights(model.encoder, x, graph, attn_bias=attn_bias)
        nodes = torch.arange(n)
        position = nodes - ptr[graph_id]
        length = ptr.diff()[graph_id]
        prev_ok, next_ok = position > 0, position < length - 1
        base["prev"] += int(related[nodes[prev_ok], nodes[prev_ok] - 1].sum())
        base["next"] += int(related[nodes[next_ok], nodes[next_ok] + 1].sum())
        base["prev_is_head"] += int(is_head[nodes[prev_ok], nodes[prev_ok] - 1].sum())
        base["next_is_head"] += int(is_head[nodes[next_ok], nodes[next_ok] + 1].sum())
        totals["words"] += n
        others = (length - 1).double()  # a uniformly random other word of the sentence
        base["random_related"] += float((related.sum(1).double() / others).sum())
        base["random_adjacent"] += float(((prev_ok.double() + next_ok.double()) / others).sum())
        for layer, (edge_index, weights) in enumerate(attention):
            top, _ = top_k_edges(edge_index, weights, 1, n, exclude_self_loops=True)
            top = top[:, 0, :]  # [N, H] most-attended other word
            for key, table in (("related", related), ("head", is_head)):
                hit = table[nodes.unsqueeze(-1).expand_as(top), top].sum(0)  # [H]
                name = f"{key}_{layer}"
                hits[name] = hits.get(name, torch.zeros_like(hit)) + hit
            adjacent = ((top - nodes.unsqueeze(-1)).abs() == 1).sum(0)
            hits[f"adjacent_{layer}"] = hits.get(f"adjacent_{layer}", torch.zeros_like(adjacent)) + adjacent
    words = totals["words"]
    layers = len(model.encoder.layers)
    result = {
        "words": words,
        "sentences": len(sentences),
        "baseline_prev_word_related": base["prev"] / words,
        "baseline_next_word_related": base["next"] / words,
        "baseline_prev_word_is_head": base["prev_is_head"] / words,
        "baseline_next_word_is_head": base["next_is_head"] / words,
        "baseline_random_word_related": base["random_related"] / words,
        "baseline_random_word_adjacent": base["random_adjacent"] / words,
        "per_layer": [],
    }
    for layer in range(layers):
        result["per_layer"].append({
            "layer": layer,
            "related": (hits[f"related_{layer}"] / words).tolist(),
            "is_head": (hits[f"head_{layer}"] / words).tolist(),
            "attends_adjacent": (hits[f"adjacent_{layer}"] / words).tolist(),
        })
    return result


def draw_attention_vs_tree(model: Tagger, vocab: Vocabulary, sentence: Sentence, layer: int, head: int,
                           path: Path) -> None:
    """One sentence: its dependency arcs (top) and one head's attention arcs (bottom)."""
    batch = vocab.encode([sentence])
    x, graph, attn_bias = model.encoder_inputs(batch, fully_connected(ptr=batch["ptr"]))
    attention = attention_weights(model.encoder, x, graph, attn_bias=attn_bias)
    edge_index, weights = attention[layer]
    top, top_weight = top_k_edges(edge_index, weights[:, head], 1, len(sentence), exclude_self_loops=True)
    n = len(sentence)
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.9 * n), 6), sharex=True)

    def arcs(ax, pairs, title, color, widths):
        for (source, target), width in zip(pairs, widths):
            mid, span = (source + target) / 2, abs(target - source)
            arc = matplotlib.patches.Arc((mid, 0), span, span * 0.8, theta1=0, theta2=180, color=color,
                                         linewidth=width)
            ax.add_patch(arc)
            ax.annotate("", xy=(target, 0.02), xytext=(target + 0.08 * (1 if source > target else -1), 0.12),
                        arrowprops={"arrowstyle": "->", "color": color})
        ax.set_xlim(-0.8, n - 0.2)
        ax.set_ylim(-0.6, max(1.0, n * 0.42))
        ax.set_yticks([])
        for k, word in enumerate(sentence.words):
            ax.text(k, -0.25, word, ha="center", va="top", fontsize=9, rotation=30)
        ax.set_title(title, fontsize=10)
        for spine in ax.spines.values():
            spine.set_visible(False)

    tree = [(h - 1, d) for d, h in enumerate(sentence.heads) if h > 0]  # head -> dependent
    arcs(axes[0], tree, "gold dependency tree (head -> dependent)", "tab:blue", [1.5] * len(tree))
    pairs = [(int(top[i]), i) for i in range(n)]  # most-attended word -> word
    widths = [0.5 + 3 * float(top_weight[i]) for i in range(n)]
    arcs(axes[1], pairs, f"complete-graph model, layer {layer} head {head}: each word's most-attended other word "
         "(width = weight)", "tab:red", widths)
    axes[1].set_xticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- plots -----------------------------------------------------------------------------------------------------
def row_name(row: dict) -> str:
    name = row["graph"]
    if row.get("aggr", "attention") != "attention":
        name += f" [{row['aggr']}]"
    if row.get("relative"):
        name += f" +rel{row['relative']}"
    return name


def plot_graphs(summary: list[dict], path: Path) -> None:
    names = [row_name(row) for row in summary]
    fig, axes = plt.subplots(1, 3, figsize=(max(14, 0.7 * len(names) * 3), 4.5))
    for ax, key, label in zip(axes, ("accuracy", "edges_per_sentence", "seconds_per_epoch"),
                              ("dev token accuracy (epoch chosen on dev)", "edges per sentence",
                               "seconds per training epoch")):
        values = [row[key] for row in summary]
        ax.bar(names, values, color="tab:blue")
        if key == "accuracy":
            ax.errorbar(names, values, yerr=[row["accuracy_std"] for row in summary], fmt="none", color="k")
            ax.set_ylim(min(values) - 0.01, min(1.0, max(values) + 0.005))
        ax.set_title(label)
        ax.tick_params(axis="x", rotation=60)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_throughput(rows: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(9, 4))
    names = [row["graph"] for row in rows]
    ax.bar(names, [row["tokens_per_second"] for row in rows],
           color=["tab:gray"] + ["tab:blue"] * (len(rows) - 1))
    ax.set_ylabel("training tokens / s (forward + backward)")
    ax.set_title("encoder training throughput, dev batches sorted by length (same weights)")
    ax.tick_params(axis="x", rotation=35)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_stability(records: list[dict], path: Path) -> None:
    """Training loss and dev accuracy per learning rate; one colour per (norm, warm-up), a line per seed."""
    rates = sorted({r["lr"] for r in records})
    configs = sorted({(r["norm_first"], r["warmup"]) for r in records})
    colours = dict(zip(configs, ("tab:red", "tab:orange", "tab:blue", "tab:green", "tab:purple", "tab:brown")))
    fig, grid = plt.subplots(len(rates), 2, figsize=(12, 4 * len(rates)), squeeze=False)
    labelled = set()
    for record in records:
        axes = grid[rates.index(record["lr"])]
        config = (record["norm_first"], record["warmup"])
        key = (record["lr"], config)
        label = None if key in labelled else f"{'pre' if config[0] else 'post'}-norm, warm-up {config[1]}"
        labelled.add(key)
        losses = [x if x is not None else float("nan") for x in record["step_loss"]]
        smooth = [sum(losses[max(0, k - 19) : k + 1]) / len(losses[max(0, k - 19) : k + 1])
                  for k in range(len(losses))]
        axes[0].plot(smooth, color=colours[config], label=label, linewidth=1, alpha=0.8)
        axes[1].plot([e["epoch"] for e in record["epochs"]], [e["dev_accuracy"] for e in record["epochs"]],
                     marker="o", markersize=3, color=colours[config], label=label, alpha=0.8)
    for lr, axes in zip(rates, grid):
        axes[0].set_title(f"lr {lr:g}: training loss (20-step moving average), one line per seed")
        axes[0].set_xlabel("step")
        axes[0].set_yscale("log")
        axes[1].set_title(f"lr {lr:g}: dev token accuracy")
        axes[1].set_xlabel("epoch")
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarise(records: list[dict], keys: tuple[str, ...]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        groups.setdefault(tuple(record[k] for k in keys), []).append(record)
    rows = []
    for key, group in groups.items():
        row = {**dict(zip(keys, key)), "seeds": len(group)}
        for name in ("accuracy", "test_accuracy"):
            if all(name in r for r in group):
                values = torch.tensor([r[name] for r in group], dtype=torch.float64)
                row[name] = float(values.mean())
                row[f"{name}_std"] = float(values.std()) if len(group) > 1 else 0.0
        row["dev_loss"] = sum(r["dev_loss"] for r in group) / len(group)
        row["best_epoch"] = sum(r["best_epoch"] for r in group) / len(group)
        row["edges_per_sentence"] = group[0]["edges_per_sentence"]
        row["seconds_per_epoch"] = sum(r["seconds_per_epoch"] for r in group) / len(group)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    kinds = list(GRAPHS) if "all" in args.graph else [k for k in dict.fromkeys(args.graph) if k != "none"]
    paths = {"train": resolve(args.train, "train", args.cache), "dev": resolve(args.dev, "dev", args.cache)}
    if args.test is not None:
        paths["test"] = resolve(args.test, "test", args.cache)
    data = {split: read_conllu(path) for split, path in paths.items()}
    if args.max_sentences is not None:
        data["train"], data["dev"] = data["train"][: args.max_sentences], data["dev"][: args.max_sentences]
    for split, sentences in data.items():
        if not sentences:
            raise ValueError(f"--{split}: {paths[split]} holds no sentences")
        unknown = sorted({t for s in sentences for t in s.upos} - set(UPOS_TAGS))
        if unknown:
            raise ValueError(f"--{split}: {paths[split]} has UPOS tags outside UD's 17: {unknown}")
    train_set = data["train"]
    vocab = Vocabulary(train_set, args.min_count, args.max_chars)
    vocab.encode([s for sentences in data.values() for s in sentences])  # every form's characters, once
    dev = Evaluation(data["dev"], vocab, args)
    test = Evaluation(data["test"], vocab, args) if "test" in data else None
    scored = "dev accuracy of the epoch chosen on dev" + (f"; {paths['test']} scored once" if test else
                                                          " (no --test: no held-out score)")
    print(f"{len(train_set)} training sentences ({paths['train']}), {len(dev.sentences)} dev ({paths['dev']})"
          + (f", {len(test.sentences)} test ({paths['test']})" if test else "")
          + f"; {len(vocab.words)} words, {len(vocab.characters)} characters in the vocabulary; {scored}")

    def fit(kind: str, seed: int, aggr: str = "attention", relative: int = 0) -> tuple[Tagger, dict]:
        name = f"{kind}{'' if aggr == 'attention' else ' [' + aggr + ']'}{' +rel' + str(relative) if relative else ''}"
        model, record = train(kind, seed, vocab, train_set, dev, args, norm_first=args.norm_first,
                              warmup=args.warmup, lr=args.lr, num_layers=args.layers, epochs=args.epochs,
                              patience=args.patience, aggr=aggr, relative=relative, desc=f"{name} seed {seed}")
        if test is not None:
            record["test_loss"], record["test_accuracy"] = test(model, kind)
        print(f"{name:>22} seed {seed}: dev accuracy {record['accuracy']:.4f} (epoch {record['best_epoch']})"
              + (f", test {record['test_accuracy']:.4f}" if test is not None else "")
              + f", {record['edges_per_sentence']:.1f} edges/sentence, {record['seconds_per_epoch']:.1f} s/epoch")
        return model, record

    records, models = [], {}
    for kind in kinds:
        for aggr in args.aggr:
            for relative in args.relative:
                if relative and aggr != "attention":  # a bias of attention scores means nothing to sum / mean / max
                    continue
                for seed in args.seeds:
                    model, record = fit(kind, seed, aggr, relative)
                    records.append(record)
                    models.setdefault((kind, aggr, relative), model)
    records = earlier_runs(args.from_json, args) + records
    summary = summarise(records, ("graph", "aggr", "relative"))
    if summary:
        print("\n| graph | dev accuracy (mean ± std over seeds) | seeds |"
              + (" test accuracy |" if test else "") + " edges / sentence | s / epoch |")
        print("|---|---|---|" + ("---|" if test else "") + "---|---|")
    for row in summary:
        print(f"| {row_name(row)} | {100 * row['accuracy']:.2f} ± {100 * row['accuracy_std']:.2f} | {row['seeds']} | "
              + ((f"{100 * row['test_accuracy']:.2f} ± {100 * row['test_accuracy_std']:.2f} | "
                  if "test_accuracy" in row else "– | ") if test else "")
              + f"{row['edges_per_sentence']:.1f} | {row['seconds_per_epoch']:.1f} |")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    stem = args.json.with_suffix("")
    if summary:
        plot_graphs(summary, Path(f"{stem}_graphs.png"))
    output = {
        "config": {k: ([str(p) for p in v] if k == "from_json" else str(v) if isinstance(v, Path) else v)
                   for k, v in vars(args).items()},
        "scored": scored,
        "data": {split: {"path": str(paths[split]), "sentences": len(data[split]),
                         "tokens": sum(map(len, data[split]))} for split in data},
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "graphs": summary,
        "runs": [{k: v for k, v in r.items() if k != "step_loss"} for r in records],
    }

    if args.throughput:
        rows = throughput(kinds or list(GRAPHS), vocab, dev.sentences, args)
        print("\n| encoder on | training tokens / s | ratio to nn.TransformerEncoder |\n|---|---|---|")
        for row in rows:
            print(f"| {row['graph']} | {row['tokens_per_second']:.0f} | {row['ratio_to_torch']:.2f} |")
        plot_throughput(rows, Path(f"{stem}_throughput.png"))
        output["throughput"] = rows

    if args.analysis:
        model = models.get(("complete", "attention", 0))
        if model is None:
            model, _ = fit("complete", args.seeds[0])
        agreement = syntax_agreement(model, vocab, dev.sentences, args)
        best = max(((layer["layer"], h, v) for layer in agreement["per_layer"] for h, v in enumerate(layer["related"])),
                   key=lambda t: t[2])
        agreement["best_head"] = {"layer": best[0], "head": best[1], "related": best[2]}
        print("\nattention vs syntax (complete graph, dev): share of words whose most-attended other word is its "
              "syntactic head or a dependent")
        print(f"  baseline previous word {agreement['baseline_prev_word_related']:.3f}, "
              f"next word {agreement['baseline_next_word_related']:.3f}, "
              f"random other word {agreement['baseline_random_word_related']:.3f}")
        for layer in agreement["per_layer"]:
            shares = ", ".join(f"head {h} {v:.3f} (adjacent {a:.3f})"
                               for h, (v, a) in enumerate(zip(layer["related"], layer["attends_adjacent"])))
            print(f"  layer {layer['layer']}: {shares}")
        baseline, importance = head_importance(model, lambda m: dev(m, "complete")[0])
        agreement["head_importance"] = {"baseline_loss": baseline, "loss_increase": importance.tolist()}
        print(f"  head importance (dev loss increase when zeroed; baseline {baseline:.4f}):")
        for layer, row in enumerate(importance.tolist()):
            print(f"  layer {layer}: " + ", ".join(f"head {h} {v:+.4f}" for h, v in enumerate(row)))
        output["attention_vs_syntax"] = agreement
        example = next((s for s in dev.sentences if 8 <= len(s) <= 14), dev.sentences[0])
        agreement["drawn_sentence"] = " ".join(example.words)
        draw_attention_vs_tree(model, vocab, example, best[0], best[1], Path(f"{stem}_attention.png"))

    if args.stability:
        sweep = []
        for lr in args.stability_lr:
            for norm_first in (False, True):
                for warmup in (0, args.warmup):
                    for seed in args.seeds:
                        name = f"lr {lr:g} {'pre' if norm_first else 'post'}-norm warmup {warmup} seed {seed}"
                        _, record = train("complete", seed, vocab, train_set, dev, args, norm_first=norm_first,
                                          warmup=warmup, lr=lr, num_layers=args.stability_layers,
                                          epochs=args.stability_epochs, patience=args.stability_epochs, desc=name)
                        sweep.append(record)
                        print(f"{name}: dev accuracy {record['accuracy']:.4f}, dev loss {record['dev_loss']:.4f}")
        plot_stability(sweep, Path(f"{stem}_stability.png"))
        table = summarise(sweep, ("lr", "norm_first", "warmup"))
        print(f"\n| lr | norm | warm-up steps | dev accuracy ({args.stability_layers} layers, mean ± std) | dev loss |")
        print("|---|---|---|---|---|")
        for row in table:
            print(f"| {row['lr']:g} | {'pre' if row['norm_first'] else 'post'} | {row['warmup']} | "
                  f"{row['accuracy']:.4f} ± {row['accuracy_std']:.4f} | {row['dev_loss']:.4f} |")
        output["stability"] = {"table": table, "runs": [
            {**{k: v for k, v in r.items() if k != "step_loss"},
             "step_loss_every_10": r["step_loss"][::10]} for r in sweep]}

    with open(args.json, "w") as handle:
        json.dump(output, handle, indent=1)
    print(f"\nwrote {args.json} and {stem}_*.png")
    return output


if __name__ == "__main__":
    main()
