"""Sentences as graphs: one transformer, many graph shapes, on Universal Dependencies English EWT (UPOS tagging).

The same model (word + suffix + spelling-shape embeddings + sinusoidal positions -> GraphTransformer -> linear
tagger) and the same hyper-parameters run on every graph shape of a sentence:

  complete    every word attends to every word (= nn.TransformerEncoder), implicit structure, dense path
  chain       previous / next word (+ self)
  window      |i - j| <= --window
  dilated     offsets 0, +-1, +-d, +-2d (chain + dilated window radius 2, dilation --dilation)
  bptree      binary partition tree (BP-Transformer): log-depth span nodes, each word sees ~log2 L spans
  tree        the gold dependency tree from the CoNLL-U HEAD column, both directions (+ self)
  tree+chain  the union of tree and chain

It reports token accuracy, edges per sentence and time per epoch (table, JSON, PNG), analyses what the heads
of the complete-graph model attend to against the dependency tree (and the adjacent-word baseline), ranks
heads by ablation, and (with --stability) sweeps post-norm vs pre-norm with and without warm-up.

Run from the repository root::

    PYTHONPATH=. python examples/sentence_as_graph.py --graph all --epochs 6 --seeds 0 1 --stability \
        --json examples/results/sentence_as_graph.json

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
from graphformer.datasets import UPOS_TAGS, Sentence, read_conllu  # noqa: E402
from graphformer.encodings import RelativePositionBias, SinusoidalPositionalEncoding, positions  # noqa: E402
from graphformer.graphs import (  # noqa: E402
    BlockStructure,
    PartitionTree,
    binary_partition_tree,
    chain,
    dependency_tree,
    dilated,
    fully_connected,
    union,
    window,
)

GRAPHS = ("complete", "chain", "window", "dilated", "bptree", "tree", "tree+chain")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ud_english_ewt" / "en_ewt-ud-dev.conllu"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=Path, default=DEFAULT_DATA, help="CoNLL-U training file")
    parser.add_argument("--test", type=Path, default=None,
                        help="CoNLL-U test file; without it --train is split into train / validation")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="validation share when no --test")
    parser.add_argument("--graph", nargs="+", default=["all"], choices=(*GRAPHS, "all", "none"),
                        help="graph shapes to compare ('none': skip the comparison, e.g. to run only --stability)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--norm-first", action=argparse.BooleanOptionalAction, default=True,
                        help="pre-norm (default) or post-norm layers")
    parser.add_argument("--warmup", type=int, default=100, help="linear learning-rate warm-up steps")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dim-feedforward", type=int, default=128)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--window", type=int, default=2, help="radius of the window graph")
    parser.add_argument("--dilation", type=int, default=2, help="dilation of the dilated graph")
    parser.add_argument("--relative", type=int, default=0, metavar="K",
                        help="add a learned per-head attention bias of the relative distance clipped to +-K (0: off)")
    parser.add_argument("--max-sentences", type=int, default=None, help="use only the first N sentences (smoke)")
    parser.add_argument("--stability", action="store_true",
                        help="also run the post-/pre-norm x warm-up sweep on the complete graph")
    parser.add_argument("--stability-lr", type=float, nargs="+", default=[2e-3, 1e-2, 3e-2],
                        help="learning rates of the sweep")
    parser.add_argument("--stability-layers", type=int, default=4, help="layers of the sweep's model")
    parser.add_argument("--json", type=Path, default=Path("examples/results/sentence_as_graph.json"),
                        help="results JSON; PNGs are written beside it")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return parser.parse_args(argv)


# -- data ------------------------------------------------------------------------------------------------------
def shape(word: str) -> int:
    """A small id for the word's spelling: capitalised / all caps / has digit / has letter / has hyphen."""
    flags = (word[:1].isupper(), word.isupper(), any(c.isdigit() for c in word), any(c.isalpha() for c in word),
             "-" in word)
    return sum(int(flag) << k for k, flag in enumerate(flags))


class Vocabulary:
    """Lower-cased words and 2-/3-letter suffixes seen at least twice in training (index 0 = unknown)."""

    num_shapes = 32

    def __init__(self, sentences: list[Sentence]) -> None:
        words = Counter(w.lower() for s in sentences for w in s.words)
        suffixes = Counter(x for s in sentences for w in s.words for x in (w.lower()[-3:], "~" + w.lower()[-2:]))
        self.words = {w: k + 1 for k, w in enumerate(sorted(w for w, c in words.items() if c >= 2))}
        self.suffixes = {w: k + 1 for k, w in enumerate(sorted(w for w, c in suffixes.items() if c >= 2))}
        self.tags = {t: k for k, t in enumerate(UPOS_TAGS)}

    def encode(self, sentences: list[Sentence]) -> dict[str, Tensor]:
        """Concatenate a batch of sentences into PyG-style tensors (words, suffixes, tags, heads, ptr)."""
        flat = [w for s in sentences for w in s.words]
        lengths = torch.tensor([len(s) for s in sentences])
        return {
            "words": torch.tensor([self.words.get(w.lower(), 0) for w in flat]),
            "suffixes": torch.tensor([self.suffixes.get(w.lower()[-3:], 0) for w in flat]),
            "suffixes2": torch.tensor([self.suffixes.get("~" + w.lower()[-2:], 0) for w in flat]),
            "shapes": torch.tensor([shape(w) for w in flat]),
            "tags": torch.tensor([self.tags[t] for s in sentences for t in s.upos]),
            "heads": torch.tensor([h for s in sentences for h in s.heads]),
            "ptr": torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]),
        }


def build_graph(kind: str, batch: dict[str, Tensor], args: argparse.Namespace):
    """The graph of a batch of sentences: a block structure, an edge_index, or a PartitionTree."""
    ptr = batch["ptr"]
    num_nodes = int(ptr[-1])
    if kind == "complete":
        return fully_connected(ptr=ptr)
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
class Tagger(nn.Module):
    """Word + suffix + shape embeddings + sinusoidal positions -> GraphTransformer on the graph -> tag logits."""

    def __init__(self, vocab: Vocabulary, args: argparse.Namespace, norm_first: bool, num_layers: int) -> None:
        super().__init__()
        d = args.d_model
        self.word = nn.Embedding(len(vocab.words) + 1, d)
        self.suffix = nn.Embedding(len(vocab.suffixes) + 1, d)
        self.shape = nn.Embedding(vocab.num_shapes, d)
        self.position = SinusoidalPositionalEncoding(d)
        self.relative = args.relative
        # one learned table of per-head scores per clipped distance and layer (Shaw et al. / T5 style)
        self.relative_bias = nn.ModuleList(
            RelativePositionBias(args.heads, args.relative) for _ in range(num_layers if args.relative else 0)
        )
        self.encoder = GraphTransformer(d, args.heads, num_layers, args.dim_feedforward, args.dropout,
                                        norm_first=norm_first, final_norm=norm_first)
        self.classifier = nn.Linear(d, len(UPOS_TAGS))
        self.dropout = nn.Dropout(args.dropout)

    def embed(self, batch: dict[str, Tensor]) -> Tensor:
        x = self.word(batch["words"]) + self.suffix(batch["suffixes"]) + self.suffix(batch["suffixes2"])
        x = x + self.shape(batch["shapes"]) + self.position(ptr=batch["ptr"])
        return self.dropout(x)  # [N, D]

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


def train(kind: str, seed: int, vocab: Vocabulary, train_set: list[Sentence], eval_set: list[Sentence],
          args: argparse.Namespace, norm_first: bool, warmup: int, lr: float, num_layers: int,
          desc: str) -> tuple[Tagger, dict]:
    """Train one model; return it and its record (per-epoch loss/accuracy/time, step losses)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = Tagger(vocab, args, norm_first, num_layers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(warmup, 1)))
    eval_batches = [vocab.encode(b) for b in batches(eval_set, args.batch_size, False, rng)]
    eval_graphs = [build_graph(kind, b, args) for b in eval_batches]
    record = {"graph": kind, "seed": seed, "norm_first": norm_first, "warmup": warmup, "lr": lr,
              "num_layers": num_layers, "epochs": [], "step_loss": []}
    for epoch in range(args.epochs):
        model.train()
        start = time.perf_counter()
        epoch_batches = batches(train_set, args.batch_size, True, rng)
        for sentences in tqdm(epoch_batches, desc=f"{desc} epoch {epoch + 1}/{args.epochs}", leave=False):
            batch = vocab.encode(sentences)
            graph = build_graph(kind, batch, args)
            loss = F.cross_entropy(model(batch, graph), batch["tags"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            value = loss.item()
            record["step_loss"].append(value if math.isfinite(value) else None)
        seconds = time.perf_counter() - start
        val_loss, val_acc = evaluate(model, eval_batches, eval_graphs)
        record["epochs"].append({"epoch": epoch + 1, "seconds": seconds, "eval_loss": val_loss,
                                 "eval_accuracy": val_acc})
    record["accuracy"] = record["epochs"][-1]["eval_accuracy"]
    record["eval_loss"] = record["epochs"][-1]["eval_loss"]
    record["seconds_per_epoch"] = sum(e["seconds"] for e in record["epochs"]) / len(record["epochs"])
    record["edges_per_sentence"] = sum(num_edges(g) for g in eval_graphs) / len(eval_set)
    return model, record


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
def plot_graphs(summary: list[dict], path: Path) -> None:
    names = [row["graph"] for row in summary]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, key, label in zip(axes, ("accuracy", "edges_per_sentence", "seconds_per_epoch"),
                              ("validation token accuracy", "edges per sentence", "seconds per epoch")):
        values = [row[key] for row in summary]
        ax.bar(names, values, color="tab:blue")
        if key == "accuracy":
            ax.errorbar(names, values, yerr=[row["accuracy_std"] for row in summary], fmt="none", color="k")
            ax.set_ylim(min(values) - 0.02, min(1.0, max(values) + 0.01))
        ax.set_title(label)
        ax.tick_params(axis="x", rotation=35)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_stability(records: list[dict], path: Path) -> None:
    """Training loss and validation accuracy per learning rate; one colour per (norm, warm-up), a line per seed."""
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
        axes[1].plot([e["epoch"] for e in record["epochs"]], [e["eval_accuracy"] for e in record["epochs"]],
                     marker="o", markersize=3, color=colours[config], label=label, alpha=0.8)
    for lr, axes in zip(rates, grid):
        axes[0].set_title(f"lr {lr:g}: training loss (20-step moving average), one line per seed")
        axes[0].set_xlabel("step")
        axes[0].set_yscale("log")
        axes[1].set_title(f"lr {lr:g}: validation token accuracy")
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
        accuracy = torch.tensor([r["accuracy"] for r in group], dtype=torch.float64)
        rows.append({
            **dict(zip(keys, key)),
            "seeds": len(group),
            "accuracy": float(accuracy.mean()),
            "accuracy_std": float(accuracy.std()) if len(group) > 1 else 0.0,
            "eval_loss": sum(r["eval_loss"] for r in group) / len(group),
            "edges_per_sentence": group[0]["edges_per_sentence"],
            "seconds_per_epoch": sum(r["seconds_per_epoch"] for r in group) / len(group),
        })
    return rows


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    kinds = list(GRAPHS) if "all" in args.graph else [k for k in dict.fromkeys(args.graph) if k != "none"]
    sentences = read_conllu(args.train)
    if args.max_sentences is not None:
        sentences = sentences[: args.max_sentences]
    if args.test is None:
        shuffled = sentences[:]
        random.Random(1234).shuffle(shuffled)
        cut = int(round(len(shuffled) * (1 - args.val_fraction)))
        train_set, eval_set, eval_name = shuffled[:cut], shuffled[cut:], "validation split of --train"
    else:
        train_set, eval_set, eval_name = sentences, read_conllu(args.test), str(args.test)
    vocab = Vocabulary(train_set)
    print(f"{len(train_set)} training / {len(eval_set)} evaluation sentences ({eval_name}); "
          f"{len(vocab.words)} words, {len(vocab.suffixes)} suffixes in the vocabulary")

    records, models = [], {}
    for kind in kinds:
        for seed in args.seeds:
            model, record = train(kind, seed, vocab, train_set, eval_set, args, args.norm_first, args.warmup,
                                  args.lr, args.layers, desc=f"{kind} seed {seed}")
            records.append(record)
            models.setdefault(kind, model)
            print(f"{kind:>10} seed {seed}: accuracy {record['accuracy']:.4f}, "
                  f"{record['edges_per_sentence']:.1f} edges/sentence, {record['seconds_per_epoch']:.1f} s/epoch")
    summary = summarise(records, ("graph",))
    if summary:
        print(f"\n| graph | token accuracy (mean ± std over {len(args.seeds)} seeds) | edges / sentence | s / epoch |")
        print("|---|---|---|---|")
    for row in summary:
        print(f"| {row['graph']} | {row['accuracy']:.4f} ± {row['accuracy_std']:.4f} | "
              f"{row['edges_per_sentence']:.1f} | {row['seconds_per_epoch']:.1f} |")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    stem = args.json.with_suffix("")
    if summary:
        plot_graphs(summary, Path(f"{stem}_graphs.png"))
    output = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "data": {"train_sentences": len(train_set), "eval_sentences": len(eval_set), "eval": eval_name,
                 "train_tokens": sum(map(len, train_set)), "eval_tokens": sum(map(len, eval_set))},
        "graphs": summary,
        "runs": [{k: v for k, v in r.items() if k != "step_loss"} for r in records],
    }

    if "complete" in models:
        model = models["complete"]
        agreement = syntax_agreement(model, vocab, eval_set, args)
        best = max(((layer["layer"], h, v) for layer in agreement["per_layer"] for h, v in enumerate(layer["related"])),
                   key=lambda t: t[2])
        agreement["best_head"] = {"layer": best[0], "head": best[1], "related": best[2]}
        print("\nattention vs syntax (complete graph): share of words whose most-attended other word is its "
              "syntactic head or a dependent")
        print(f"  baseline previous word {agreement['baseline_prev_word_related']:.3f}, "
              f"next word {agreement['baseline_next_word_related']:.3f}, "
              f"random other word {agreement['baseline_random_word_related']:.3f}")
        for layer in agreement["per_layer"]:
            shares = ", ".join(f"head {h} {v:.3f} (adjacent {a:.3f})"
                               for h, (v, a) in enumerate(zip(layer["related"], layer["attends_adjacent"])))
            print(f"  layer {layer['layer']}: {shares}")
        eval_batches = [vocab.encode(b) for b in batches(eval_set, args.batch_size, False, random.Random(0))]
        eval_graphs = [build_graph("complete", b, args) for b in eval_batches]
        baseline, importance = head_importance(model, lambda m: evaluate(m, eval_batches, eval_graphs)[0])
        agreement["head_importance"] = {"baseline_loss": baseline, "loss_increase": importance.tolist()}
        print(f"  head importance (validation loss increase when zeroed; baseline {baseline:.4f}):")
        for layer, row in enumerate(importance.tolist()):
            print(f"  layer {layer}: " + ", ".join(f"head {h} {v:+.4f}" for h, v in enumerate(row)))
        output["attention_vs_syntax"] = agreement
        example = next((s for s in eval_set if 8 <= len(s) <= 14), eval_set[0])
        agreement["drawn_sentence"] = " ".join(example.words)
        draw_attention_vs_tree(model, vocab, example, best[0], best[1], Path(f"{stem}_attention.png"))

    if args.stability:
        sweep = []
        for lr in args.stability_lr:
            for norm_first in (False, True):
                for warmup in (0, args.warmup):
                    for seed in args.seeds:
                        name = f"lr {lr:g} {'pre' if norm_first else 'post'}-norm warmup {warmup} seed {seed}"
                        _, record = train("complete", seed, vocab, train_set, eval_set, args, norm_first, warmup,
                                          lr, args.stability_layers, desc=name)
                        sweep.append(record)
                        print(f"{name}: accuracy {record['accuracy']:.4f}, eval loss {record['eval_loss']:.4f}")
        plot_stability(sweep, Path(f"{stem}_stability.png"))
        table = summarise(sweep, ("lr", "norm_first", "warmup"))
        print(f"\n| lr | norm | warm-up steps | accuracy ({args.stability_layers} layers, mean ± std) | eval loss |")
        print("|---|---|---|---|---|")
        for row in table:
            print(f"| {row['lr']:g} | {'pre' if row['norm_first'] else 'post'} | {row['warmup']} | "
                  f"{row['accuracy']:.4f} ± {row['accuracy_std']:.4f} | {row['eval_loss']:.4f} |")
        output["stability"] = {"table": table, "runs": [
            {**{k: v for k, v in r.items() if k != "step_loss"},
             "step_loss_every_10": r["step_loss"][::10]} for r in sweep]}

    with open(args.json, "w") as handle:
        json.dump(output, handle, indent=1)
    print(f"\nwrote {args.json} and {stem}_*.png")
    return output


if __name__ == "__main__":
    main()
