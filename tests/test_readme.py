"""The README's code examples run as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - our own README
    assert "PowerMean" in namespace and namespace["layer"] is not None


def test_readme_names_the_commands_ci_runs():
    text = README.read_text()
    assert "bash scripts/setup.sh test && python3 -m pytest -q" in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert "bash scripts/setup.sh test && python3 -m pytest -q" in ci
