"""The ``mirstream`` command: serve (Ray or in-process), analyze a file/URL, list the models."""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serve_app.config import Settings, settings_from_env
from serve_app.logs import configure_logging
from serve_app.registry import Registry, RegistryError, load_registry


def _parser() -> argparse.ArgumentParser:
    """Argument parser for every sub-command."""
    p = argparse.ArgumentParser(prog="mirstream", description="Music-audio analysis server (SSE).")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="start the server (embedded Ray by default)")
    s.add_argument("--host", help="bind address (default 127.0.0.1, env MIRSTREAM_HOST)")
    s.add_argument("--port", type=int, help="port (default 8000, env PORT)")
    s.add_argument("--registry", type=Path, help="model registry YAML (env MIRSTREAM_REGISTRY)")
    s.add_argument("--local", action="store_true", help="no Ray: run models in a local process pool")
    a = sub.add_parser(
        "analyze", help="analyse files, globs or URLs; uses --url / $MIRSTREAM_URL when set, else runs in-process"
    )
    a.add_argument("sources", nargs="+", metavar="SOURCE", help="audio file, glob ('music/**/*.mp3') or http(s) URL")
    a.add_argument("--models", required=True, help="e.g. key:1,bpm_degara,loudness-ebur128")
    out = a.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON document per file (one line each) at its end")
    out.add_argument("--jsonl", action="store_true", help="stream every event as one JSON line (with its 'source')")
    a.add_argument("--url", help="server base URL (default $MIRSTREAM_URL; neither = run in-process)")
    a.add_argument("--api-key", help="API key sent as 'Authorization: Bearer' (default $MIRSTREAM_API_KEY)")
    a.add_argument("--no-progress", action="store_true", help="no live progress on stderr (off anyway without a TTY)")
    a.add_argument("--registry", type=Path, help="model registry YAML for in-process runs")
    m = sub.add_parser("models", help="list the model catalogue (with availability), or fetch model weights")
    m.add_argument("--registry", type=Path, help="model registry YAML")
    m.add_argument("--json", action="store_true", help="print the catalogue as JSON")
    m_sub = m.add_subparsers(dest="models_action", metavar="{fetch}")
    f = m_sub.add_parser("fetch", help="download and verify the weights of models (into MIRSTREAM_MODELS_DIR)")
    f.add_argument("names", nargs="*", metavar="NAME", help="model names (or name:version) to fetch")
    f.add_argument("--all", action="store_true", help="every model in the registry that has downloadable weights")
    f.add_argument("--models-dir", type=Path, help="where weights go (default $MIRSTREAM_MODELS_DIR)")
    f.add_argument("--registry", type=Path, default=argparse.SUPPRESS, help="model registry YAML")
    f.add_argument("--print-checksums", action="store_true", help="print each file's sha256 for the registry")
    b = sub.add_parser("batch", help="analyse a catalogue (folder, list file, s3://...) on Ray Data into Parquet/JSONL")
    b.add_argument(
        "input", help="folder (recursive), text file of paths/URIs, or prefix (s3://bucket/prefix, gs://...)"
    )
    b.add_argument("--models", required=True, help="e.g. key,bpm_degara,loudness-ebur128")
    b.add_argument("--out", required=True, help="result folder (local or s3://...); rerunning on it resumes")
    b.add_argument("--format", choices=("parquet", "jsonl"), default="parquet", help="result format (default parquet)")
    b.add_argument("--address", help="Ray cluster address (default $RAY_ADDRESS, else a local Ray)")
    b.add_argument("--registry", type=Path, help="model registry YAML")
    b.add_argument("--concurrency", type=int, help="max actors per model (default: the cluster's CPU count)")
    b.add_argument("--no-retry-errors", action="store_true", help="on resume keep earlier error rows, do not retry")
    k = sub.add_parser("k8s", help="Kubernetes (KubeRay) manifests generated from the model registry")
    k8s_sub = k.add_subparsers(dest="k8s_action", required=True)
    from serve_app.k8s_render import add_arguments as add_k8s_render_arguments

    add_k8s_render_arguments(
        k8s_sub.add_parser("render", help="write k8s/rayservice.yaml and k8s/serve_config.yaml from the registry")
    )
    return p


def _settings(args: argparse.Namespace) -> Settings:
    """Environment settings with CLI flags on top."""
    return settings_from_env().with_overrides(
        host=getattr(args, "host", None), port=getattr(args, "port", None), registry_path=args.registry
    )


def _registry(settings: Settings, resolve: bool = True) -> Registry:
    """Load the registry or exit with its validation message.

    ``resolve`` withholds the entries this machine cannot serve (weights not installed, non-commercial
    weights turned off), as the servers do; ``models fetch`` wants them all.
    """
    try:
        registry = load_registry(settings.registry_path)
    except RegistryError as exc:
        sys.exit(f"mirstream: invalid model registry: {exc}")
    if not resolve:
        return registry
    from serve_app.weights import resolve_availability

    return resolve_availability(registry, settings)


def serve_command(settings: Settings, local: bool) -> None:
    """Run until SIGINT/SIGTERM."""
    registry = _registry(settings)
    if local:
        import uvicorn

        from serve_app.local_app import create_local_app

        app, _runner = create_local_app(registry, settings)
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level="info",
            timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        )
        return
    from serve_app import launcher

    try:
        settings = launcher.start_ray(settings)
    except launcher.StartupError as exc:
        sys.exit(f"mirstream: cannot start: {exc}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which installs its own SIGTERM handler
        signal.signal(sig, lambda *_: stop.set())
    try:
        launcher.deploy(registry, settings)
        print(
            f"mirstream: serving {len(registry.entries)} models on http://{settings.host}:{settings.port} "
            f"(Prometheus metrics on port {settings.metrics_port})",
            flush=True,
        )
        stop.wait()
    except launcher.StartupError as exc:
        print(f"mirstream: cannot start: {exc}", file=sys.stderr, flush=True)
        launcher.shutdown()
        sys.exit(1)
    launcher.shutdown()


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
        from serve_app.local_app import ProcessPoolRunner
        from serve_app.metrics import PrometheusMetrics
        from serve_app.request import RequestError, parse_models

        registry = _registry(settings)
        try:
            self.entries = parse_models(models, registry)
        except RequestError as exc:
            raise _FileFailed(exc.detail, fatal=True, status=exc.status) from None
        self.settings = settings
        self.metrics = PrometheusMetrics()
        self.runner = ProcessPoolRunner(Registry(entries=self.entries, ingress=registry.ingress))

    def close(self) -> None:
        """Stop the worker processes."""
        self.runner.close()


async def _local_events(session: _LocalSession, source: str) -> AsyncIterator[Any]:
    """Run the shared stream in-process and yield each event, typed as the client types them."""
    from serve_app.client import parse_event
    from serve_app.request import AnalysisJob
    from serve_app.stream import analysis_events

    body = _read_source(source)
    job = AnalysisJob(models=session.entries, body=body, audio_url=source if body is None else None)
    async for frame in analysis_events(job, session.runner, session.settings, session.metrics):
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


def _print_plain(console: Any, renderable: Any) -> None:
    """Print to stdout; in a pipe without the padding rich adds after each table row."""
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
    sys.stdout.flush()


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
                    _print_plain(out, run.lines(live=False))
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
    if url:
        from serve_app.client import Client, MirstreamError

        try:
            with Client(url) as client:
                models = [m.raw for m in client.models()]
        except MirstreamError as exc:
            sys.exit(f"mirstream: {exc}")
    else:
        models = _registry(settings).listing()
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    from rich.console import Console

    _print_plain(Console(width=None if sys.stdout.isatty() else 200, highlight=False), _models_table(models))
    return 0


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``mirstream`` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ValueError as exc:  # a malformed MIRSTREAM_* variable
        sys.exit(f"mirstream: {exc}")
    if args.command == "serve":
        configure_logging(settings.log_level, settings.log_format)
    else:  # analyze/models print results; logs only when asked for
        configure_logging(os.environ.get("MIRSTREAM_LOG_LEVEL", "WARNING"), "text")
    if args.command == "serve":
        serve_command(settings, args.local)
    elif args.command == "analyze":
        sys.exit(analyze_command(args, settings))
    elif args.command == "k8s":
        from serve_app.k8s_render import render_command

        sys.exit(render_command(args, settings.registry_path))
    elif args.command == "batch":
        from serve_app.batch import batch_command

        sys.exit(batch_command(args, settings, _registry(settings)))
    elif getattr(args, "models_action", None) == "fetch":
        from serve_app.weights import fetch_cli

        registry = _registry(settings, resolve=False)
        sys.exit(fetch_cli(registry, settings, args.names, args.all, args.models_dir, args.print_checksums))
    else:
        sys.exit(models_command(args, settings))


if __name__ == "__main__":
    main()
