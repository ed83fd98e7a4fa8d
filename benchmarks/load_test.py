"""Load test: N concurrent clients stream real audio for a bounded time; every answer must be a complete,
well-formed stream or a clean 429/503. Reports requests/s, p50/p95 latency and server RSS.

    .venv/bin/python -m benchmarks.load_test --clients 16 --seconds 30   # starts its own Ray server

writes benchmarks/load_results.md. tests/test_load.py runs the same code, smaller, in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

RESULTS = Path(__file__).resolve().parent / "load_results.md"


@dataclass
class LoadReport:
    """What the clients saw."""

    clients: int
    seconds: float
    outcomes: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def completed_per_second(self) -> float:
        """Complete streams per second over the run."""
        return self.outcomes["complete"] / self.seconds

    def percentile(self, q: float) -> float:
        """Latency percentile (s) of complete streams."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _check_stream(text: str, models: int) -> str | None:
    """None if ``text`` is a contract-conforming stream for ``models`` models, else what is wrong."""
    blocks = [b for b in text.split("\n\n") if b and not b.startswith(":")]
    try:
        events = [json.loads(b.removeprefix("data: ")) for b in blocks]
    except json.JSONDecodeError as exc:
        return f"bad JSON: {exc}"
    statuses = [e.get("status") for e in events]
    if statuses[:1] != ["started"] or statuses[-1:] != ["finished"]:
        return f"bad framing: {statuses}"
    if len(events) != models + 2 or not all(s in ("completed", "error") for s in statuses[1:-1]):
        return f"wrong model events: {statuses}"
    return None


def run_load(base: str, body: bytes, models: str, clients: int, seconds: float) -> LoadReport:
    """Hammer ``base`` with ``clients`` threads for ``seconds``; classify every response."""
    report = LoadReport(clients=clients, seconds=seconds)
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    n_models = len(models.split(","))

    def client() -> None:
        with httpx.Client(timeout=120) as http:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    r = http.post(f"{base}/v1/analysis/stream", params={"models": models}, content=body)
                except httpx.HTTPError as exc:
                    with lock:
                        report.outcomes["transport error"] += 1
                        report.problems.append(repr(exc))
                    continue
                elapsed = time.perf_counter() - started
                with lock:
                    if r.status_code == 200:
                        problem = _check_stream(r.text, n_models)
                        if problem is None:
                            report.outcomes["complete"] += 1
                            report.latencies.append(elapsed)
                        else:
                            report.outcomes["malformed"] += 1
                            report.problems.append(problem)
                    elif r.status_code in (429, 503) and "retry-after" in r.headers and "detail" in r.json():
                        report.outcomes[str(r.status_code)] += 1
                    else:
                        report.outcomes[f"unexpected {r.status_code}"] += 1
                        report.problems.append(r.text[:200])
                if r.status_code in (429, 503):
                    time.sleep(0.05)  # a polite client would honour Retry-After; this one only backs off a bit

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return report


def _descendants(root: int) -> set[int]:
    """Every process below ``root`` (the embedded Ray instance's raylet and workers are our descendants)."""
    children: dict[int, list[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(pid))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def process_rss_mb(match: str) -> dict[int, float]:
    """Resident memory (MB) of each process started by this one whose command line contains ``match``."""
    found: dict[int, float] = {}
    for pid in _descendants(os.getpid()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if match in cmd:
                status = Path(f"/proc/{pid}/status").read_text()
                kb = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS")))
                found[pid] = kb / 1024
        except (OSError, StopIteration):
            continue
    return found


def main() -> None:
    """Start a Ray server with the default catalogue, run the load, write load_results.md."""
    from dataclasses import replace

    from serve_app.config import settings_from_env
    from serve_app.ops import launcher
    from serve_app.registry import load_registry
    from tests.audio_factory import c_major_cadence, click_track, encode

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--max-streams", type=int, default=4)
    p.add_argument("--models", default="key,bpm_degara,loudness-ebur128")
    args = p.parse_args()
    settings = replace(settings_from_env(), port=8765, max_concurrent_streams=args.max_streams)
    registry = load_registry(settings.registry_path)
    settings = launcher.start_ray(settings)
    launcher.deploy(registry, settings)
    base = f"http://127.0.0.1:{settings.port}"
    music = c_major_cadence(seconds_per_chord=2.5, repeats=3)
    body = encode(0.8 * music + 0.5 * click_track(120.0, len(music) / 44100)[: len(music)], 44100, "mp3")
    rss_before = process_rss_mb("ServeReplica:mirstream")
    report = run_load(base, body, args.models, args.clients, args.seconds)
    rss_after = process_rss_mb("ServeReplica:mirstream")
    launcher.shutdown(settings)
    lines = [
        "# Load test (benchmarks/load_test.py)",
        "",
        f"Machine: {platform.node()} {os.cpu_count()} CPUs, {platform.python_version()}; Ray Serve, default catalogue.",
        f"{args.clients} clients, {args.seconds:.0f} s, MIRSTREAM_MAX_CONCURRENT_STREAMS={args.max_streams}, "
        f"models `{args.models}`, 30 s mp3 (C-major cadence + 120 BPM clicks).",
        "",
        "| outcome | count |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(report.outcomes.items())],
        "",
        f"- complete streams/s: {report.completed_per_second:.2f}",
        f"- latency of complete streams: p50 {report.percentile(0.5):.2f} s, p95 {report.percentile(0.95):.2f} s, "
        f"mean {statistics.fmean(report.latencies) if report.latencies else float('nan'):.2f} s",
        f"- replica processes: {len(rss_before)} before, {len(rss_after)} after (autoscaling); "
        f"total RSS {sum(rss_before.values()):.0f} MB before, {sum(rss_after.values()):.0f} MB after; "
        f"largest replica {max(rss_before.values()):.0f} MB before, {max(rss_after.values()):.0f} MB after",
        f"- problems: {report.problems[:5] or 'none'}",
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
