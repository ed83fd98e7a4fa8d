"""What the benchmark observes: one timed SSE stream, the server's own per-stage log records, CPU and memory."""

from __future__ import annotations

import json
import os
import re
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

SESSION_DIR = re.compile(r"/[^\s=]*/session_\d{4}-\d\d-\d\d_[\d_-]+")  # in Ray daemons' command lines


@dataclass
class StreamTiming:
    """Client-side times (s from sending the request) of one analysis and what it returned."""

    started: float = float("nan")
    first_completed: float = float("nan")
    finished: float = float("nan")
    errors: list[str] = field(default_factory=list)
    correlation_ids: list[str] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    completed_at: dict[str, float] = field(default_factory=dict)  # "name:version" → s to its completed event
    failed: dict[str, str] = field(default_factory=dict)  # "name:version" → its error event's message


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
                timing.completed_at[f"{result['model_name']}:{result['model_version']}"] = now
            elif status == "error":
                timing.errors.append(event.get("error", "?"))
                if event.get("model_name"):
                    timing.failed[f"{event['model_name']}:{event.get('model_version')}"] = event.get("error", "?")
                    timing.correlation_ids.append(event.get("correlation_id", ""))
            elif status == "finished":
                timing.finished = now
    return timing


def stream_safely(client: httpx.Client, base: str, body: bytes, models: str) -> StreamTiming:
    """``stream_once``, with a transport failure (refused, cut, timed out) recorded as an error instead of raised."""
    try:
        return stream_once(client, base, body, models)
    except httpx.HTTPError as exc:
        return StreamTiming(errors=[f"{type(exc).__name__}: {exc}"])


def logs_dir() -> Path:
    """This process's Ray session log directory (the Ray instance ``ray.init`` started here)."""
    import ray

    return Path(ray._private.worker.global_worker.node.get_logs_dir_path())


def session_dir_of(root: int) -> Path | None:
    """The Ray session directory of the Ray instance that process ``root`` started (from its children's
    command lines: Ray's daemons name it), or None when there is none yet."""
    for pid in _descendants(root):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found = SESSION_DIR.search(cmd)
        if found:
            return Path(found.group(0))
    return None


def log_records(logs: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every ``model_run`` record (requested nodes and the backbones they needed) and every ``request`` record
    (by request id) that the server's processes wrote under ``logs``.

    In Ray mode each replica's JSON log lines land in the session's log directory; the benchmark reads
    them there instead of adding timing fields to the public event contract.
    """
    runs, requests = [], {}
    for path in logs.rglob("*"):
        if not path.is_file() or path.suffix not in (".err", ".out", ".log"):
            continue
        with path.open(errors="replace") as f:
            for line in f:
                if '"event": "' not in line:
                    continue
                try:
                    record = json.loads(line[line.find("{") :])
                except ValueError:
                    continue
                if record.get("event") == "model_run":
                    runs.append(record)
                elif record.get("event") == "request":
                    requests[record["request_id"]] = record
    return runs, requests


def ray_log_records(
    correlation_ids: set[str], logs: Path | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``model_run`` records of these runs (requested models only) and the ``request`` records they belong to."""
    all_runs, requests = log_records(logs or logs_dir())
    runs = [r for r in all_runs if r.get("correlation_id") in correlation_ids]
    wanted = {r["request_id"] for r in runs}
    return runs, [requests[i] for i in wanted if i in requests]


def graph_records(
    correlation_ids: set[str], logs: Path | None = None
) -> dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]:
    """Per request that produced one of these events: every node it ran (upstreams nobody asked for included,
    e.g. the shared backbone) and its ``request`` record ({} if not written yet)."""
    all_runs, requests = log_records(logs or logs_dir())
    ids = {r["request_id"] for r in all_runs if r.get("correlation_id") in correlation_ids}
    return {i: ([r for r in all_runs if r["request_id"] == i], requests.get(i, {})) for i in ids}


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


def process_cpu(root: int) -> dict[int, tuple[str, float]]:
    """pid → (role, CPU seconds so far) for ``root``'s descendants (a Ray instance and its workers)."""
    from benchmarks.memory import role

    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in _descendants(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = (role(pid), (int(fields[11]) + int(fields[12])) / tick)
        except (OSError, IndexError, ValueError):
            continue
    return out


def cpu_by_role(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds each role used between two ``process_cpu`` snapshots (processes born in between count
    from zero; those that exited in between are lost)."""
    used: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        used[name] = used.get(name, 0.0) + cpu - before.get(pid, (name, 0.0))[1]
    return used


def own_cpu() -> tuple[float, float]:
    """(user, system) CPU seconds this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def cpu_split(before: tuple[float, float]) -> tuple[float, float]:
    """(user, system) CPU seconds this process used since ``own_cpu()`` returned ``before``."""
    user, system = own_cpu()
    return user - before[0], system - before[1]


def replica_cpu(root: int) -> dict[str, tuple[float, float]]:
    """Deployment name → (user, system) CPU seconds so far of its Serve replica processes under ``root``."""
    from benchmarks.memory import role

    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, tuple[float, float]] = {}
    for pid in _descendants(root):
        name = role(pid)
        if not name.startswith("ServeReplica:"):
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        user, system = out.get(name.split(":")[-1], (0.0, 0.0))
        out[name.split(":")[-1]] = (user + int(fields[11]) / tick, system + int(fields[12]) / tick)
    return out
