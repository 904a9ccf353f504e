"""``.. results-table:: examples/results/<name>.json``: a table read from an example's committed results file.

The examples write JSON (and PNG) results, not Markdown; this directive renders the JSON's rows at build time so
the documentation shows the committed numbers and never a hand-copied version of them. The path is relative to
the repository root. The layout is chosen from the file's content:

* ``results`` (``examples/sparse_graph.py``): model, test accuracy mean ± std, seeds, seconds per epoch;
* ``graphs`` (``examples/sentence_as_graph.py``): graph (+ aggregation, relative bias), edges per sentence, dev
  accuracy (and test accuracy when the file has one), seconds per epoch;
* ``throughput`` (``sentence_as_graph.py --throughput``): encoder, training tokens / s, ratio to torch;
* ``stability`` (``sentence_as_graph.py --stability``): lr, norm, warm-up, dev accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive, directives


def _pm(mean: float, std: float, scale: float = 1.0) -> str:
    return f"{mean * scale:.1f} ± {std * scale:.1f}"


def rows_of(data: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table for one results file."""
    if "results" in data:
        header = ["model", "test acc. (%)", "seeds", "s / epoch"]
        rows = [[r["model"], _pm(r["test_acc_mean"], r["test_acc_std"]), str(r["seeds"]),
                 f"{r['seconds_per_epoch']:.3f}"] for r in data["results"]]
    elif data.get("stability"):
        header = ["lr", "norm", "warm-up steps", "dev accuracy (%)", "seeds"]
        rows = [[f"{r['lr']:g}", "pre-norm" if r["norm_first"] else "post-norm", str(r["warmup"]),
                 _pm(r["accuracy"], r["accuracy_std"], 100), str(r["seeds"])] for r in data["stability"]["table"]]
    elif data.get("graphs"):
        tested = all("test_accuracy" in r for r in data["graphs"])
        header = ["graph", "aggregation", "relative bias", "edges / sentence", "dev accuracy (%)",
                  *(["test accuracy (%)"] if tested else []), "seeds", "s / epoch"]
        rows = [[r["graph"], r.get("aggr", "attention"), f"±{r['relative']}" if r.get("relative") else "–",
                 f"{r['edges_per_sentence']:.1f}", _pm(r["accuracy"], r["accuracy_std"], 100),
                 *([_pm(r["test_accuracy"], r["test_accuracy_std"], 100)] if tested else []),
                 str(r["seeds"]), f"{r['seconds_per_epoch']:.1f}"] for r in data["graphs"]]
    elif data.get("throughput"):
        header = ["encoder on", "training tokens / s", "ratio to nn.TransformerEncoder"]
        rows = [[r["graph"], f"{r['tokens_per_second']:.0f}", f"{r['ratio_to_torch']:.2f}"]
                for r in data["throughput"]]
    else:
        raise ValueError(f"unknown results layout with keys {sorted(data)}")
    return header, rows


class ResultsTable(Directive):
    required_arguments = 1
    option_spec = {"caption": directives.unchanged}

    def run(self):
        env = self.state.document.settings.env
        root = Path(env.srcdir).parent
        path = root / self.arguments[0]
        env.note_dependency(str(path))  # rebuild the page when the results change
        try:
            header, rows = rows_of(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError) as error:
            raise self.error(f"results-table: cannot read {self.arguments[0]}: {error}") from error
        table = nodes.table()
        group = nodes.tgroup(cols=len(header))
        table += group
        group.extend(nodes.colspec(colwidth=1) for _ in header)

        def row(cells):
            node = nodes.row()
            for cell in cells:
                entry = nodes.entry()
                entry += nodes.paragraph(text=cell)
                node += entry
            return node

        head = nodes.thead()
        head += row(header)
        body = nodes.tbody()
        body.extend(row(r) for r in rows)
        group += head
        group += body
        caption = self.options.get("caption", f"from ``{self.arguments[0]}``")
        title = nodes.title()
        title += self.state.inline_text(caption, self.lineno)[0]
        table.insert(0, title)
        return [table]


def setup(app):
    app.add_directive("results-table", ResultsTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
