"""Write the API reference pages (``docs/api/*.rst``) from the package itself, at the start of every build.

Every public module of ``graphformer`` (found with :func:`pkgutil.walk_packages`; a name part starting with ``_``
is private) gets a section, so a new module appears without editing the docs. One page per top-level module or
subpackage. A subpackage's page documents its ``__all__`` under the package's name (``graphformer.graphs.window``,
the name users import and the docstrings cross-reference), then each submodule: its docstring and the public
objects it defines that the package does not re-export. The generated files are not committed (``.gitignore``).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

PACKAGE = "graphformer"


def public_modules(package: str = PACKAGE) -> list[str]:
    """Names of ``package`` and all its public submodules, sorted."""
    root = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(root.__path__, prefix=package + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def _title(text: str, char: str) -> str:
    return f"{text}\n{char * len(text)}\n"


def _reexported(modname: str) -> set[str]:
    """Names that ``modname``'s parent package re-exports in its ``__all__`` (documented on the package)."""
    if modname.count(".") < 2:  # graphformer.X: the root package's re-exports get no page of their own
        return set()
    parent = importlib.import_module(modname.rsplit(".", 1)[0])
    module = importlib.import_module(modname)
    return {name for name in getattr(parent, "__all__", ()) if getattr(module, name, None) is getattr(parent, name)}


def _module_block(modname: str, heading: str | None, members: bool = True) -> str:
    lines = [_title(heading, "-"), ""] if heading else []
    lines.append(f".. automodule:: {modname}")
    if members:
        lines.append("   :members:")
        excluded = sorted(_reexported(modname))
        if excluded:
            lines.append("   :exclude-members: " + ", ".join(excluded))
    else:
        lines.append("   :no-members:")
    lines.append("")
    return "\n".join(lines) + "\n"


def generate(outdir: Path) -> list[str]:
    """Write one ``.rst`` page per top-level module into ``outdir``; return the page names."""
    outdir.mkdir(parents=True, exist_ok=True)
    modules = public_modules()
    pages: dict[str, list[str]] = {}
    for name in modules[1:]:
        top = ".".join(name.split(".")[:2])
        pages.setdefault(top, []).append(name)
    written = []
    for top, names in sorted(pages.items()):
        text = [_title(f"``{top}``", "="), ""]
        is_package = hasattr(importlib.import_module(top), "__path__")
        # the package (or module) itself: for a package, its __all__ under the package's name
        text.append(_module_block(top, None))
        for name in names[1:] if is_package else []:
            text.append(_module_block(name, f"``{name}``"))
        page = outdir / f"{top}.rst"
        content = "\n".join(text)
        if not page.exists() or page.read_text() != content:  # unchanged pages keep their mtime
            page.write_text(content)
        written.append(top)
    for stale in set(p.stem for p in outdir.glob("*.rst")) - set(written):
        (outdir / f"{stale}.rst").unlink()
    return written


def setup(app):
    generate(Path(app.srcdir) / "api")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
