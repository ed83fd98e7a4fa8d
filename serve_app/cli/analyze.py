"""``mirstream analyze``: files, globs and URLs through a server (``--url`` / ``$MIRSTREAM_URL``, the client
only) or in-process (the same stream and model graph as the server, no Ray), with live progress on stderr."""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serve_app.cli.output import print_plain
from serve_app.config import Settings

_URL_PREFIXES = ("http://", "https://")


def _expand_sources(patterns: list[str]) -> tuple[list[str], list[str]]:
    """Files, glob matches (sorted, ``**`` recursive) and URLs in order, each once; and what matched nothing."""
    found: list[str] = []
    problems: list[str] = []
    for pattern in patterns:
        if pattern.lower().startswith(_URL_PREFIXES) or Path(pattern).exists():
            matches = [pattern]
        elif any(c in pattern for c in "*?["):
            matches = sorted(m for m in glob.glob(os.path.expanduser(pattern), recursive=True) if Path(m).is_file())
        else:
            matches = []
        if not matches:
            problems.append(f"{pattern}: no such file" + (" matches" if any(c in pattern for c in "*?[") else ""))
        found.extend(m for m in matches if m not in found)
    return found, problems


class _FileFailed(Exception):
    """This source could not be analysed at all (unreadable file, HTTP error); ``fatal`` stops the whole run."""

    def __init__(self, message: str, fatal: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.fatal = fatal
        self.status = status


def _read_source(source: str) -> bytes | None:
    """The bytes of a local file (None for a URL), or _FileFailed saying why not."""
    if source.lower().startswith(_URL_PREFIXES):
        return None
    path = Path(source)
    if path.is_dir():
        raise _FileFailed(f"{source} is a directory; pass files or a glob such as '{source}/**/*.mp3'")
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise _FileFailed(f"cannot read {source}: {exc.strerror or exc}") from None
    if not body:
        raise _FileFailed(f"{source} is empty")
    return body


async def _server_events(client: Any, source: str, models: str) -> AsyncIterator[Any]:
    """Stream one source from the server through the Python client; HTTP errors become _FileFailed."""
    from serve_app.client import MirstreamConnectionError, MirstreamHTTPError, MirstreamProtocolError

    body = _read_source(source)
    try:
        async for event in client.stream(body if body is not None else source, models, filename=Path(source).name):
            yield event
    except MirstreamHTTPError as exc:  # a bad key or model spec fails every file alike: stop at the first
        raise _FileFailed(str(exc), fatal=exc.status in (400, 401, 403, 404, 409), status=exc.status) from None
    except MirstreamConnectionError as exc:
        raise _FileFailed(str(exc), fatal=True) from None
    except MirstreamProtocolError as exc:
        raise _FileFailed(str(exc)) from None


class _LocalSession:
    """In-process analysis without a server: one process pool per model, shared by every file of the run."""

    def __init__(self, models: str, settings: Settings) -> None:
        from serve_app.cli.catalogue import load
        from serve_app.ingress.request import RequestError, parse_models
        from serve_app.observability.metrics import PrometheusMetrics
        from serve_app.runners.in_process import ProcessPoolRunner

        registry = load(settings)
        try:
            self.entries = parse_models(models, registry)
        except RequestError as exc:
            raise _FileFailed(exc.detail, fatal=True, status=exc.status) from None
        self.settings = settings
        self.metrics = PrometheusMetrics()
        self.registry = registry
        self.runner = ProcessPoolRunner(registry)

    def close(self) -> None:
        """Stop the worker processes."""
        self.runner.close()


async def _local_events(session: _LocalSession, source: str) -> AsyncIterator[Any]:
    """Run the shared stream in-process and yield each event, typed as the client types them."""
    from serve_app.client import parse_event
    from serve_app.ingress.request import AnalysisJob
    from serve_app.ingress.stream import analysis_events

    body = _read_source(source)
    job = AnalysisJob(models=session.entries, body=body, audio_url=source if body is None else None)
    async for frame in analysis_events(job, session.registry, session.runner, session.settings, session.metrics):
        if frame.startswith("data: "):
            yield parse_event(json.loads(frame[len("data: ") :]))


def _fmt_value(value: Any) -> str:
    """A scalar result as short text."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _summary(results: dict[str, Any], limit: int = 8) -> str:
    """The scalar fields of one model's results (lists and objects are in --json), and the top tag if any."""
    parts = [f"{k}={_fmt_value(v)}" for k, v in results.items() if isinstance(v, str | int | float | bool) or v is None]
    top = results.get("top")
    if isinstance(top, list) and top and isinstance(top[0], dict) and "label" in top[0]:
        parts.insert(0, f"top={top[0]['label']} ({_fmt_value(top[0].get('score'))})")
    more = len(parts) - limit
    return "  ".join(parts[:limit]) + (f"  (+{more} more, see --json)" if more > 0 else "")


@dataclass
class _ModelRow:
    """One model's line in the progress view and the final report."""

    model: str
    state: str = "queued"  # queued → running → completed | error; skipped when the file failed
    elapsed_s: float | None = None
    event: Any = None


@dataclass
class _FileRun:
    """Everything known about one source so far; renders itself for rich's Live display."""

    source: str
    models: list[str]
    started_at: float = field(default_factory=time.monotonic)
    rows: dict[str, _ModelRow] = field(default_factory=dict)
    total_models: int = 0
    error: str | None = None  # the audio error or why the file could not be analysed
    failed: bool = False
    spinner: Any = None

    def __post_init__(self) -> None:
        from rich.spinner import Spinner

        self.spinner = Spinner("dots", style="cyan")
        for m in self.models:
            self.rows[m] = _ModelRow(m)

    def _row_for(self, name: str, version: str) -> _ModelRow:
        """The row of ``name:version`` (rows are canonical names; an unexpected model gets a new row)."""
        key = f"{name}:{version}"
        return self.rows.setdefault(key, _ModelRow(key))

    def add(self, event: Any) -> None:
        """Fold one typed event in."""
        from serve_app.client import AudioError, Completed, ModelError, Started

        now = time.monotonic() - self.started_at
        if isinstance(event, Started):
            self.total_models = event.total_models
            for row in self.rows.values():
                row.state = "running"
        elif isinstance(event, AudioError):
            self.error, self.failed = event.error, True
            for row in self.rows.values():
                row.state = "skipped"
        elif isinstance(event, Completed | ModelError):
            row = self._row_for(event.model_name, event.model_version)
            row.state = "completed" if isinstance(event, Completed) else "error"
            row.elapsed_s, row.event = now, event
            self.failed |= row.state == "error"

    def fail(self, message: str) -> None:
        """The file could not be analysed at all."""
        self.error, self.failed = message, True
        for row in self.rows.values():
            if row.state in ("queued", "running"):
                row.state = "skipped"

    def lines(self, live: bool) -> Any:
        """A rich Table: the source, then one line per model (spinner while running, time when done)."""
        from rich.console import Group
        from rich.markup import escape
        from rich.padding import Padding
        from rich.table import Table
        from rich.text import Text

        table = Table.grid(padding=(0, 1))
        table.add_column(width=1)
        table.add_column(no_wrap=True)
        table.add_column(justify="right", no_wrap=True)
        table.add_column()
        for row in self.rows.values():
            if row.state == "completed":
                mark, text = Text("✓", style="green"), escape(_summary(row.event.results))
            elif row.state == "error":
                mark, text = Text("✗", style="bold red"), "[red]" + escape(row.event.error) + "[/]"
            elif row.state == "running" and live:
                mark, text = self.spinner, "[cyan]running[/]"
            else:
                mark, text = Text("·", style="dim"), f"[dim]{row.state}[/]"
            took = f"{row.elapsed_s:.1f} s" if row.elapsed_s is not None else ""
            table.add_row(mark, escape(row.model), took, text)
        title = Text(self.source, style="bold red" if self.failed else "bold")
        parts: list[Any] = [title, Padding(table, (0, 0, 0, 2))]
        if self.error:
            parts.append(Padding(Text("✗ " + self.error, style="red"), (0, 0, 0, 2)))
        return Group(*parts)

    def __rich__(self) -> Any:
        return self.lines(live=True)

    def document(self) -> dict[str, Any]:
        """The --json document of this source."""
        from serve_app.client import Completed

        models = []
        for row in self.rows.values():
            took = None if row.elapsed_s is None else round(row.elapsed_s, 3)
            item: dict[str, Any] = {"model": row.model, "status": row.state, "elapsed_s": took}
            if row.event is not None:
                item.update(model_name=row.event.model_name, model_version=row.event.model_version)
                item["correlation_id"] = row.event.correlation_id
                if isinstance(row.event, Completed):
                    item["results"] = row.event.results
                else:
                    item["error"] = row.event.error
            models.append(item)
        return {
            "source": self.source,
            "ok": not self.failed,
            "total_models": self.total_models,
            "error": self.error,
            "models": models,
        }


async def _canonical_models(client: Any, spec: str) -> list[str]:
    """``name:version`` of each requested model as the server will name it (aliases, '-'/'_', default version).

    Only labels the progress rows: anything not found is left as typed and the server's answer decides.
    """
    from serve_app.client import MirstreamError

    def norm(name: str) -> str:
        return name.strip().lower().replace("-", "_")

    try:
        catalogue = await client.models()
    except MirstreamError:
        catalogue = []
    rows: list[str] = []
    for item in (i.strip() for i in spec.split(",")):
        if not item:
            continue
        name, _, version = (p.strip() for p in item.partition(":"))
        hits = [m for m in catalogue if norm(name) in [norm(m.name)] + [norm(a) for a in m.raw.get("aliases", [])]]
        hits = [m for m in hits if m.version == version] if version else [m for m in hits if m.default] or hits[:1]
        label = hits[0].model if hits else item
        if label not in rows:
            rows.append(label)
    return rows


def _print_event(event: Any, source: str) -> None:
    """--jsonl: one event as received (plus the ``source`` it belongs to) on one line, at once."""
    print(json.dumps({"source": source, **event.raw}), flush=True)


async def _analyze_one(run: _FileRun, events: AsyncIterator[Any], jsonl: bool) -> bool:
    """Consume one source's events into ``run`` (Live redraws it on its own); False if the batch must stop."""
    try:
        async for event in events:
            run.add(event)
            if jsonl:
                _print_event(event, run.source)
    except _FileFailed as exc:
        run.fail(str(exc))
        if jsonl:
            print(json.dumps({"source": run.source, "status": "error", "error": str(exc)}), flush=True)
        return not exc.fatal
    return True


def analyze_command(args: argparse.Namespace, settings: Settings) -> int:
    """Analyse every source in turn with live progress on stderr; exit 1 if any file or model failed."""
    from rich.console import Console
    from rich.live import Live
    from rich.markup import escape

    out = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 240, highlight=False)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    sources, missing = _expand_sources(args.sources)
    for problem in missing:
        err.print(f"[red]mirstream: {escape(problem)}[/]")
    url = args.url or os.environ.get("MIRSTREAM_URL")
    show_progress = err.is_terminal and not args.no_progress

    async def run_all() -> bool:
        ok = not missing
        rows: list[str] = []
        session: _LocalSession | None = None
        client = None
        try:
            if url:
                from serve_app.client import AsyncClient

                client = AsyncClient(url, api_key=args.api_key)
                rows = await _canonical_models(client, args.models)
            elif sources:
                session = _LocalSession(args.models, settings)
                rows = [f"{e.name}:{e.version}" for e in session.entries]
            for source in sources:
                run = _FileRun(source, rows)
                events = _server_events(client, source, args.models) if client else _local_events(session, source)
                if show_progress:
                    with Live(run, console=err, transient=True, refresh_per_second=12):
                        go_on = await _analyze_one(run, events, args.jsonl)
                else:
                    go_on = await _analyze_one(run, events, args.jsonl)
                ok &= not run.failed
                if args.json:
                    print(json.dumps(run.document()), flush=True)
                elif not args.jsonl:
                    print_plain(out, run.lines(live=False))
                if run.error and (args.json or args.jsonl):
                    err.print(f"[red]mirstream: {escape(run.source)}: {escape(run.error)}[/]")
                if not go_on:
                    remaining = len(sources) - sources.index(source) - 1
                    if remaining:
                        err.print(f"[red]mirstream: stopped; {remaining} more file(s) not analysed[/]")
                    break
            return ok
        except _FileFailed as exc:  # the model spec is wrong before any file (in-process mode)
            err.print(f"[red]mirstream: {escape(str(exc))}[/]")
            return False
        finally:
            if client is not None:
                await client.aclose()
            if session is not None:
                session.close()

    return 0 if asyncio.run(run_all()) else 1
