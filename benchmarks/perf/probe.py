"""What the benchmark observes: one timed SSE stream, the server's own per-stage log records, CPU and memory."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


@dataclass
class StreamTiming:
    """Client-side times (s from sending the request) of one analysis and what it returned."""

    started: float = float("nan")
    first_completed: float = float("nan")
    finished: float = float("nan")
    errors: list[str] = field(default_factory=list)
    correlation_ids: list[str] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


def stream_once(client: httpx.Client, base: str, body: bytes, models: str) -> StreamTiming:
    """POST one file and time the ``started``, first ``completed`` and ``finished`` events."""
    timing = StreamTiming()
    t0 = time.perf_counter()
    with client.stream("POST", f"{base}/v1/analysis/stream", params={"models": models}, content=body) as r:
        if r.status_code != 200:
            r.read()
            timing.errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
            return timing
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            now = time.perf_counter() - t0
            status = event["status"]
            if status == "started":
                timing.started = now
            elif status == "completed":
                if not timing.correlation_ids:
                    timing.first_completed = now
                result = event["result"]
                timing.correlation_ids.append(result["correlation_id"])
                timing.results[result["model_name"]] = result["results"]
            elif status == "error":
                timing.errors.append(event.get("error", "?"))
            elif status == "finished":
                timing.finished = now
    return timing


def ray_log_records(correlation_ids: set[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The server's own ``model_run`` records for these runs and the ``request`` records they belong to.

    In Ray mode each replica's JSON log lines land in the session's log directory; the benchmark reads
    them there instead of adding timing fields to the public event contract.
    """
    import ray

    logs = Path(ray._private.worker.global_worker.node.get_logs_dir_path())
    runs, requests = [], {}
    for path in logs.rglob("*"):
        if not path.is_file() or path.suffix not in (".err", ".out", ".log"):
            continue
        with path.open(errors="replace") as f:
            for line in f:
                if '"event": "' not in line:
                    continue
                start = line.find("{")
                try:
                    record = json.loads(line[start:])
                except ValueError:
                    continue
                if record.get("event") == "model_run" and record.get("correlation_id") in correlation_ids:
                    runs.append(record)
                elif record.get("event") == "request":
                    requests[record["request_id"]] = record
    wanted = {r["request_id"] for r in runs}
    return runs, [requests[i] for i in wanted if i in requests]


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    fields = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def cpu_busy_between(before: tuple[float, float], after: tuple[float, float]) -> float:
    """Fraction of all cores busy between two ``cpu_times`` samples."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return busy / total if total else float("nan")


def _descendants(root: int) -> list[int]:
    """``root``'s descendant pids (not ``root`` itself), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def server_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process's descendants: the Ray instance it started.

    Unlike /proc/stat this ignores other work on a shared machine, so "the server keeps both cores busy"
    can be checked even when the machine is not quiet. Descendants that exit between samples are lost.
    """
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in _descendants(os.getpid()):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total


def tree_rss_mb(root: int) -> float:
    """Resident memory (MB) of ``root`` and all its descendants (a Ray instance's raylet, GCS, replicas...)."""
    total = 0.0
    for pid in [root, *_descendants(root)]:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS"))) / 1024
        except (OSError, StopIteration):
            continue
    return total
