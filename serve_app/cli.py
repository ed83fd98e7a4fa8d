"""The ``mirstream`` command: serve (Ray or in-process), analyze a file/URL, list the models."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator
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
    a = sub.add_parser("analyze", help="analyse a file or URL; uses $MIRSTREAM_URL when set, else runs in-process")
    a.add_argument("source", help="audio file path or http(s) URL")
    a.add_argument("--models", required=True, help="e.g. key:1,bpm_degara,loudness-ebur128")
    a.add_argument("--json", action="store_true", help="print each event as one JSON line")
    a.add_argument("--registry", type=Path, help="model registry YAML for in-process runs")
    m = sub.add_parser("models", help="list the model catalogue")
    m.add_argument("--registry", type=Path, help="model registry YAML")
    m.add_argument("--json", action="store_true", help="print the catalogue as JSON")
    return p


def _settings(args: argparse.Namespace) -> Settings:
    """Environment settings with CLI flags on top."""
    return settings_from_env().with_overrides(
        host=getattr(args, "host", None), port=getattr(args, "port", None), registry_path=args.registry
    )


def _registry(settings: Settings) -> Registry:
    """Load the registry or exit with its validation message."""
    try:
        return load_registry(settings.registry_path)
    except RegistryError as exc:
        sys.exit(f"mirstream: invalid model registry: {exc}")


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


def _server_events(url: str, source: str, models: str) -> Iterator[str]:
    """POST to a running server and yield each event's JSON text."""
    import httpx

    endpoint = url.rstrip("/") + "/v1/analysis/stream"
    headers = {"Accept": "text/event-stream"}
    is_url = source.startswith(("http://", "https://"))
    if is_url:
        from urllib.parse import quote

        headers["audio-url"] = quote(source, safe="")
        content: bytes | None = None
    else:
        content = Path(source).read_bytes()
        headers["filename"] = Path(source).name
    with httpx.stream("POST", endpoint, params={"models": models}, headers=headers, content=content, timeout=None) as r:
        if r.status_code != 200:
            r.read()
            raise SystemExit(f"mirstream: server answered {r.status_code}: {r.text}")
        for line in r.iter_lines():
            if line.startswith("data: "):
                yield line[len("data: ") :]


async def _local_events(source: str, models: str, settings: Settings) -> AsyncIterator[str]:
    """Run the shared stream in-process (process pool, no server) and yield each event's JSON text."""
    from serve_app.local_app import ProcessPoolRunner
    from serve_app.metrics import PrometheusMetrics
    from serve_app.request import AnalysisJob, RequestError, parse_models
    from serve_app.stream import analysis_events

    registry = _registry(settings)
    try:
        entries = parse_models(models, registry)
    except RequestError as exc:
        raise SystemExit(f"mirstream: {exc.detail}") from None
    is_url = source.startswith(("http://", "https://"))
    body = None if is_url else Path(source).read_bytes()
    job = AnalysisJob(models=entries, body=body, audio_url=source if is_url else None)
    sub = Registry(entries=entries, ingress=registry.ingress)
    runner = ProcessPoolRunner(sub)
    try:
        async for frame in analysis_events(job, runner, settings, PrometheusMetrics()):
            if frame.startswith("data: "):
                yield frame[len("data: ") :].strip()
    finally:
        runner.close()


def _print_event(text: str, as_json: bool) -> bool:
    """Print one event; return False if it reports an error."""
    event: dict[str, Any] = json.loads(text)
    if as_json:
        print(text, flush=True)
    elif event["status"] == "completed":
        r = event["result"]
        shown = {k: v for k, v in r["results"].items() if not isinstance(v, list)}
        print(f"{r['model_name']}:{r['model_version']}  {json.dumps(shown)}", flush=True)
    elif event["status"] == "error":
        who = f"{event['model_name']}:{event['model_version']}  " if "model_name" in event else ""
        print(f"{who}ERROR {event['error']}", flush=True)
    return event["status"] != "error"


def analyze_command(args: argparse.Namespace, settings: Settings) -> int:
    """Print the events of one analysis; exit 1 if any model failed."""
    ok = True
    url = os.environ.get("MIRSTREAM_URL")
    if url:
        for text in _server_events(url, args.source, args.models):
            ok &= _print_event(text, args.json)
    else:

        async def consume() -> bool:
            good = True
            async for text in _local_events(args.source, args.models, settings):
                good &= _print_event(text, args.json)
            return good

        ok = asyncio.run(consume())
    return 0 if ok else 1


def models_command(args: argparse.Namespace, settings: Settings) -> int:
    """Print the catalogue (from $MIRSTREAM_URL when set, else the local registry)."""
    url = os.environ.get("MIRSTREAM_URL")
    if url:
        import httpx

        models = httpx.get(url.rstrip("/") + "/v1/models", timeout=30).json()["models"]
    else:
        models = [e.describe() for e in _registry(settings).entries]
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    print(f"{'name:version':28} {'default':8} {'input':16} description")
    for m in models:
        inp = f"{m['input']['sample_rate']}/{m['input']['channels']}"
        print(f"{m['name'] + ':' + m['version']:28} {'yes' if m['default'] else '':8} {inp:16} {m['description'][:70]}")
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
    else:
        sys.exit(models_command(args, settings))


if __name__ == "__main__":
    main()
