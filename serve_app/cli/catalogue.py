"""``mirstream models``: the catalogue as a table (a running server's, or this install's registry); and the one
place the CLI loads the registry (``load``), for the sub-commands that run models themselves."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from serve_app.cli.output import print_plain
from serve_app.config import Settings

if TYPE_CHECKING:
    from serve_app.registry import Registry


def load(settings: Settings, resolve: bool = True) -> Registry:
    """Load the registry or exit with its validation message.

    ``resolve`` withholds the entries this machine cannot serve (weights not installed, non-commercial
    weights turned off), as the servers do; ``models fetch`` wants them all.
    """
    from serve_app.registry import RegistryError, load_registry

    try:
        registry = load_registry(settings.registry_path)
    except RegistryError as exc:
        sys.exit(f"mirstream: invalid model registry: {exc}")
    if not resolve:
        return registry
    from serve_app.registry.availability import resolve_availability

    try:
        return resolve_availability(registry, settings)
    except RegistryError as exc:  # e.g. MIRSTREAM_WARM names a model the registry lacks
        sys.exit(f"mirstream: {exc}")


def _models_table(models: list[dict[str, Any]]) -> Any:
    """The catalogue as a rich Table: name:version, default, availability, runtime/input, licence, description."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"mirstream catalogue: {len(models)} models", title_justify="left", header_style="bold")
    table.add_column("model", no_wrap=True, style="bold")
    table.add_column("default", justify="center")
    table.add_column("available")
    table.add_column("runtime / input")
    table.add_column("licence")
    table.add_column("description", ratio=1)
    for m in models:
        reason = m.get("unavailable_reason") or m.get("reason") or ""
        available = "[green]yes[/]" if m.get("available", True) else f"[red]no[/] {escape(str(reason))}".strip()
        inp = m.get("input") or {}
        rate = inp.get("sample_rate", "?")
        runtime = [str(m["runtime"])] if m.get("runtime") else []
        runtime.append(f"{rate} Hz" if isinstance(rate, int) else str(rate))
        runtime.append(str(inp.get("channels", "?")))
        licence = "\n".join(f"{k}: {v}" for k, v in (m.get("license") or {}).items())
        table.add_row(
            escape(f"{m['name']}:{m['version']}"),
            "[green]✓[/]" if m.get("default") else "",
            available,
            escape(" · ".join(runtime)),
            escape(licence),
            escape(str(m.get("description", ""))),
        )
    return table


def models_command(args: argparse.Namespace, settings: Settings) -> int:
    """Print the catalogue (from $MIRSTREAM_URL when set, else the local registry)."""
    url = os.environ.get("MIRSTREAM_URL")
    if url:  # the catalogue of a running server: works with the base install
        from serve_app.client import Client, MirstreamError

        try:
            with Client(url) as client:
                models = [m.raw for m in client.models()]
        except MirstreamError as exc:
            sys.exit(f"mirstream: {exc}")
    else:
        models = load(settings).listing()
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    from rich.console import Console

    print_plain(Console(width=None if sys.stdout.isatty() else 200, highlight=False), _models_table(models))
    return 0
