"""Sphinx configuration for graphformer's documentation.

Why Sphinx: the package's docstrings are numpy/Google style (``Args:``, ``Shapes:``) with ``:math:`` roles and
``:class:``/``:func:`` cross-references throughout; ``autodoc`` + ``napoleon`` read them as they are and
``mathjax`` renders the math. PyTorch and PyG document themselves with Sphinx, so the layout is familiar.

Build (from the repository root; no network needed, MathJax is loaded by the reader's browser)::

    pip install -e ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # the checkout's graphformer, also when it is not installed
sys.path.insert(0, str(DOCS / "_ext"))
os.environ.setdefault("MPLBACKEND", "Agg")

import graphformer  # noqa: E402

project = "graphformer"
author = "graphformer contributors"
copyright = "graphformer contributors, MIT licence"
release = version = graphformer.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_parser",  # the benchmark tables are Markdown files written by benchmarks/run.py
    "apigen",  # docs/_ext/apigen.py: writes docs/api/*.rst for every public module
    "results",  # docs/_ext/results.py: tables from examples/results/*.json
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "README.md", "_ext"]

# -- autodoc / napoleon -----------------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}
# Methods that override torch.nn.Module / PyG MessagePassing (forward, reset_parameters, extra_repr, ...) without
# a docstring of their own would otherwise show torch's / PyG's text, written in their own markup (and they make
# Sphinx warn). Only what graphformer writes is documented; inherited members are not listed either.
autodoc_inherit_docstrings = False
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = True
napoleon_custom_sections = ["Shapes", "Shape"]  # PyG-style bullet lists of tensor shapes
napoleon_use_rtype = False

# -- MyST (Markdown includes) -----------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3
suppress_warnings = [
    # benchmarks/results/*.md start at "###" headings (they are sections of a README-sized report); MyST warns
    # about the jump from the including page's level. Documented noise of including generated Markdown.
    "myst.header",
]

# -- HTML -------------------------------------------------------------------------------------------------
try:
    import furo  # noqa: F401

    html_theme = "furo"
except ImportError:  # the built-in theme: the build never needs more than sphinx itself
    html_theme = "alabaster"
html_title = f"graphformer {release}"
html_static_path: list[str] = []
# sphinx.ext.mathjax points the pages at MathJax on a CDN (the default mathjax_path): the build itself never
# touches the network.
