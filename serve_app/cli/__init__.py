"""The ``mirstream`` command: ``serve`` (Ray or in-process), ``analyze`` files or URLs, ``models`` (list, fetch),
``batch`` (catalogues on Ray Data) and ``k8s render``.

Each sub-command lives in its own module and is imported only when it runs, so ``mirstream analyze --url``
works with the base install (the client alone: no Ray, no model runtimes).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from serve_app.config import Settings, parse_warm, settings_from_env
from serve_app.observability.logs import configure_logging


def _parser() -> argparse.ArgumentParser:
    """Argument parser for every sub-command."""
    p = argparse.ArgumentParser(prog="mirstream", description="Music-audio analysis server (SSE).")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="start the server (embedded Ray by default)")
    s.add_argument("--host", help="bind address (default 127.0.0.1, env MIRSTREAM_HOST)")
    s.add_argument("--port", type=int, help="port (default 8000, env PORT)")
    s.add_argument("--registry", type=Path, help="model registry YAML (env MIRSTREAM_REGISTRY)")
    s.add_argument("--local", action="store_true", help="no Ray: run models in a local process pool")
    s.add_argument(
        "--warm",
        help="models kept running, comma-separated (name, name:version, 'all' or 'none'; env MIRSTREAM_WARM); "
        "the others start on first use and stop after MIRSTREAM_IDLE_SECONDS idle (default: the registry's warm set)",
    )
    s.add_argument(
        "--address",
        help="deploy onto this existing Ray cluster (e.g. ray://head:10001 or head:6379; env RAY_ADDRESS) "
        "instead of starting an embedded one",
    )
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
    from serve_app.ops.k8s_options import add_arguments as add_k8s_render_arguments  # standard library only

    add_k8s_render_arguments(
        k8s_sub.add_parser("render", help="write k8s/rayservice.yaml and k8s/serve_config.yaml from the registry")
    )
    return p


def _settings(args: argparse.Namespace) -> Settings:
    """Environment settings with CLI flags on top."""
    warm = getattr(args, "warm", None)
    return settings_from_env().with_overrides(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        registry_path=getattr(args, "registry", None),
        warm=parse_warm(warm) if warm is not None else None,
        address=getattr(args, "address", None) if args.command == "serve" else None,
    )


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
        from serve_app.cli.serve import serve_command

        serve_command(settings, args.local)
    elif args.command == "analyze":
        from serve_app.cli.analyze import analyze_command

        sys.exit(analyze_command(args, settings))
    elif args.command == "k8s":
        from serve_app.ops.k8s_render import render_command

        sys.exit(render_command(args, settings.registry_path))
    elif args.command == "batch":
        from serve_app.cli.catalogue import load
        from serve_app.ops.batch import batch_command

        sys.exit(batch_command(args, settings, load(settings)))
    elif getattr(args, "models_action", None) == "fetch":
        from serve_app.cli.catalogue import load
        from serve_app.ops.weights import fetch_cli

        registry = load(settings, resolve=False)
        sys.exit(fetch_cli(registry, settings, args.names, args.all, args.models_dir, args.print_checksums))
    else:
        from serve_app.cli.catalogue import models_command

        sys.exit(models_command(args, settings))


if __name__ == "__main__":
    main()
