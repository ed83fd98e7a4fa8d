"""The README's two set-up commands are the product's front door: CI runs the test one verbatim, and both
install what the code they start imports (the server extra since the base install became the client)."""

from __future__ import annotations

import re

from tests.conftest import REPO


def _bash_blocks() -> list[str]:
    """The bash code blocks of the README's set-up section, in order."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Set-up: the two commands", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_there_are_exactly_two_commands_serve_then_test() -> None:
    serve, test = _bash_blocks()
    assert serve.endswith("mirstream serve") and "'.[server]'" in serve
    assert test.endswith("python -m pytest") and "'.[server,test]'" in test


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1] == _bash_blocks()[1]
