"""Terminal output shared by the sub-commands."""

from __future__ import annotations

import sys
from typing import Any


def print_plain(console: Any, renderable: Any) -> None:
    """Print to stdout; in a pipe without the padding rich adds after each table row."""
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
    sys.stdout.flush()
