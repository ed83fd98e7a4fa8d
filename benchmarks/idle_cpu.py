"""Idle CPU of a server with every model loaded, by Serve's autoscaling-metrics interval (issue 14's open question).

``mirstream serve`` with ``MIRSTREAM_WARM=all`` (every deployment holds a replica, as after a full fan-out, with no
request in flight) is started once per ``metrics_interval_s`` value, in turn, in one run; after it settles, the CPU
its process tree and Ray session use is sampled, split into replica processes and the rest (Ray, Serve controller,
proxy, ingress). The interval is changed in the command's own process, where the deployments' options are built.
Writes ``benchmarks/idle_cpu_results.md``.

    .venv/bin/python -m benchmarks.idle_cpu [--intervals 0.5,2,10] [--settle 30] [--window 30]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.perf import fresh_serve

RESULTS = Path(__file__).with_name("idle_cpu_results.md")
LAUNCH = (
    "import sys, serve_app.registry.deployment as d; d.METRICS_INTERVAL_S = {interval}; "
    "sys.argv = ['mirstream', 'serve']; from serve_app.cli import main; main()"
)


def measure(interval: float, settle_s: float, window_s: float, port: int) -> dict[str, Any]:
    """Start the all-warm server with this interval, wait, sample its idle CPU twice, stop it."""
    argv = [sys.executable, "-c", LAUNCH.format(interval=interval)]
    server = fresh_serve.start(port, argv=argv, env={"MIRSTREAM_WARM": "all"})
    try:
        ready = fresh_serve.wait_healthy(server, timeout_s=600)
        time.sleep(settle_s)
        samples = [fresh_serve.idle_cpu(server, window_s) for _ in range(2)]
    finally:
        stopped = fresh_serve.stop(server)
        server.log.unlink(missing_ok=True)
    return {"interval": interval, "ready_s": ready, "samples": samples, "stop": stopped}


def report(rows: list[dict[str, Any]], settle_s: float, window_s: float) -> str:
    """The results file: one line per interval, every sample shown."""
    lines = [
        "# Idle CPU of an all-warm server by autoscaling-metrics interval",
        "",
        f"`python -m benchmarks.idle_cpu`, one run, intervals in turn on the same machine (2 cores). Each server is "
        f"`mirstream serve` with `MIRSTREAM_WARM=all`, no request; after /healthz 200 and {settle_s:g} s more, two "
        f"{window_s:g} s windows of CPU-s/s (user+system) over its process tree and Ray session.",
        "",
        "| metrics_interval_s | replica processes | replicas CPU-s/s | rest (Ray, Serve, ingress) CPU-s/s | total |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        for s in row["samples"]:
            total = s["replicas"] + s["rest"]
            lines.append(
                f"| {row['interval']:g} | {s['replica_roles']:.0f} | {s['replicas']:.3f} | {s['rest']:.3f} | "
                f"{total:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Measure every interval in turn and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", default="0.5,2,10")
    parser.add_argument("--settle", type=float, default=30.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--port", type=int, default=fresh_serve.PORT)
    args = parser.parse_args()
    rows = []
    for interval in (float(v) for v in args.intervals.split(",")):
        print(f"metrics_interval_s={interval:g}...", flush=True)
        rows.append(measure(interval, args.settle, args.window, args.port))
        print(f"  {rows[-1]['samples']}", flush=True)
    RESULTS.write_text(report(rows, args.settle, args.window))
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
