"""``mirstream serve``: the embedded Ray instance (or an existing cluster with ``--address``) and the Serve app,
or with ``--local`` the in-process server; runs until SIGINT/SIGTERM, then drains and stops."""

from __future__ import annotations

import signal
import sys
import threading

from serve_app.cli.catalogue import load
from serve_app.config import Settings


def serve_command(settings: Settings, local: bool) -> None:
    """Run until SIGINT/SIGTERM."""
    registry = load(settings)
    if local:
        import uvicorn

        from serve_app.runners.in_process import create_local_app

        app, _runner = create_local_app(registry, settings)
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level="info",
            timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        )
        return
    from serve_app.ops import launcher

    try:
        settings = launcher.start_ray(settings)
    except launcher.StartupError as exc:
        sys.exit(f"mirstream: cannot start: {exc}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which installs its own SIGTERM handler
        signal.signal(sig, lambda *_: stop.set())
    try:
        launcher.deploy(registry, settings)
        warm = sum(e.warm for e in registry.entries)
        metrics = f"port {settings.metrics_port}" if settings.metrics_port is not None else "each node's metrics port"
        print(
            f"mirstream: serving {len(registry.entries)} models on http://{settings.host}:{settings.port} "
            f"({warm} kept warm, the others start on first use and stop after {settings.idle_seconds:g} s idle; "
            f"Prometheus metrics on {metrics})",
            flush=True,
        )
        stop.wait()
    except launcher.StartupError as exc:
        print(f"mirstream: cannot start: {exc}", file=sys.stderr, flush=True)
        launcher.shutdown(settings)
        sys.exit(1)
    launcher.shutdown(settings)
