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


def _documented_commands() -> list[tuple[str, list[str]]]:
    """(script, arguments) of every ``python examples/<name>.py ...`` line of the README's bash blocks."""
    import shlex

    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            match = re.search(r"(examples/\w+\.py)(.*)$", line)
            if match and "pytest" not in line:
                commands.append((match.group(1), shlex.split(match.group(2).split("#")[0])))
    return commands


def test_readme_example_commands_use_existing_options():
    """Every example command the README prints parses with that example's own argument parser (no drift)."""
    import importlib.util

    commands = _documented_commands()
    assert any(script == "examples/sentence_as_graph.py" for script, _ in commands)
    modules = {}
    for script, argv in commands:
        if script not in modules:
            spec = importlib.util.spec_from_file_location(Path(script).stem, README.parent / script)
            modules[script] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(modules[script])
        parse = modules[script].parse_args
        if parse.__code__.co_argcount == 0:  # quickstart: no options
            assert argv == [], f"{script} takes no options, the README passes {argv}"
            continue
        parse(argv)  # argparse exits (SystemExit) on an unknown or malformed option
