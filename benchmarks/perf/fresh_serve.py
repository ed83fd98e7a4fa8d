"""The default ``mirstream serve`` as a fresh install runs it, measured from outside (issue 14, parts 1 and 3).

The real CLI in a subprocess: the default registry, an empty models directory, no MIRSTREAM_* settings. Measured:
time to /healthz 200; idle PSS of its process tree and Ray session (benchmarks/memory.py); per runtime, the cold
start of one scaled-to-zero model; that every served model answers; every served model on the 4-minute track in as
few requests as the per-request cap allows (how well the fan-out packs the cores); PSS with every model loaded; and
the time from SIGTERM until every process of the tree and the Ray session is gone.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from benchmarks import memory
from benchmarks.perf import probe
from benchmarks.perf.corpus import Track

ROOT = Path(__file__).resolve().parents[2]
PORT = 8792
HEALTH_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 120.0
IDLE_WINDOW_S = 10.0  # how long the loaded server's idle CPU is sampled
WARM_REPEATS = 2  # warm requests after each cold one: their median is the baseline
COLD = (  # (runtime, model timed from cold, models started first so that only this one is cold)
    ("Essentia DSP", "onsets", ()),
    ("essentia-tensorflow network (MusiCNN backbone)", "musicnn_msd", ()),
    ("onnxruntime head (on the warm MusiCNN backbone)", "mood_happy", ("musicnn_msd",)),
    ("onnxruntime madmom", "key_madmom", ()),
    ("onnxruntime basic-pitch", "transcription_basic_pitch", ()),
    ("torch CREPE", "pitch_crepe", ()),
)
RUNTIME_OF_MODULE = {
    "models.musicnn": "essentia-tensorflow",
    "models.tempocnn": "essentia-tensorflow",
    "models.heads": "onnxruntime head",
    "models.madmom_models": "onnxruntime madmom",
    "models.transcription": "onnxruntime basic-pitch",
    "models.pitch": "torch",
    "models.ensembles": "ensemble of other models' results",
}


@dataclass
class CliServer:
    """``mirstream serve`` running in its own session, with the fresh models directory it was given."""

    proc: subprocess.Popen[bytes]
    port: int
    started: float
    models_dir: Path
    log: Path
    pids: set[int] = field(default_factory=set)  # every process seen in its tree or Ray session

    @property
    def base(self) -> str:
        """The server's URL."""
        return f"http://127.0.0.1:{self.port}"


def runtime(entry: Any) -> str:
    """Which runtime an entry's analyzer runs on (Essentia DSP unless its module is a network's)."""
    return RUNTIME_OF_MODULE.get(entry.class_path.rpartition(".")[0], "Essentia DSP")


def port_free(port: int) -> bool:
    """Whether nothing listens on ``port``."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def fresh_env(port: int, models_dir: Path) -> dict[str, str]:
    """This environment without any mirstream or Ray setting, plus the port and an empty models directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIRSTREAM_", "RAY_")) and k != "PORT"}
    return {**env, "PORT": str(port), "MIRSTREAM_MODELS_DIR": str(models_dir)}


def start(port: int = PORT, argv: list[str] | None = None, env: dict[str, str] | None = None) -> CliServer:
    """Start ``.venv/bin/mirstream serve`` as a fresh install would run it (output kept in a temp file); ``argv``
    and ``env`` replace the command and add settings, for benchmarks that compare a variant side by side."""
    if not port_free(port):
        raise RuntimeError(f"port {port} is taken; pass another with --serve-port")
    models_dir = Path(tempfile.mkdtemp(prefix="mirstream-fresh-models-"))
    log = models_dir.with_name(models_dir.name + ".log")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv or [str(ROOT / ".venv" / "bin" / "mirstream"), "serve"],
            env={**fresh_env(port, models_dir), **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tempfile.gettempdir(),
            start_new_session=True,
        )
    return CliServer(proc, port, time.perf_counter(), models_dir, log)


def wait_healthy(server: CliServer, timeout_s: float = HEALTH_TIMEOUT_S) -> float:
    """Seconds from the command's start until GET /healthz answers 200 (polled every 0.1 s)."""
    with httpx.Client(timeout=2) as client:
        while time.perf_counter() - server.started < timeout_s:
            if server.proc.poll() is not None:
                raise RuntimeError(f"mirstream serve exited ({server.proc.returncode}): {tail(server.log)}")
            try:
                if client.get(f"{server.base}/healthz").status_code == 200:
                    return time.perf_counter() - server.started
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"/healthz not 200 after {timeout_s:.0f} s: {tail(server.log)}")


def tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def session_dir(server: CliServer) -> Path | None:
    """The Ray session directory of the server's embedded Ray."""
    return probe.session_dir_of(server.proc.pid)


def memory_now(server: CliServer) -> memory.MemoryReport:
    """PSS/RSS of the server's process tree and Ray session now (and remember every pid for the stop check)."""
    where = session_dir(server)
    report = memory.measure(root_pid=server.proc.pid, session_dir=str(where) if where else None)
    server.pids |= {r.pid for r in report.rows}
    return report


def served_registry(server: CliServer) -> Any:
    """The catalogue this server serves: the default registry resolved against its (empty) models directory."""
    from serve_app.config import Settings
    from serve_app.registry import load_registry
    from serve_app.registry.availability import resolve_availability

    settings = replace(Settings(), models_dir=server.models_dir)
    return resolve_availability(load_registry(settings.registry_path), settings)


def cold_starts(server: CliServer, registry: Any, body: bytes) -> list[dict[str, Any]]:
    """Per runtime: the first request needing one scaled-to-zero model, then ``WARM_REPEATS`` warm ones; the cold
    start is the cold request's time to that model's ``completed`` event minus the warm median."""
    rows = []
    logs = (session_dir(server) or Path("/nonexistent")) / "logs"
    with httpx.Client(timeout=900) as client:
        for label, name, first in COLD:
            key = registry.find(name, None).key
            for other in first:
                probe.stream_safely(client, server.base, body, other)
            timings = [probe.stream_safely(client, server.base, body, name) for _ in range(1 + WARM_REPEATS)]
            cold, warm = timings[0], timings[1:]
            runs, _ = probe.ray_log_records(set(cold.correlation_ids), logs)
            run = next((r for r in runs if r["model"] == key), {})
            warm_at = finite_median([t.completed_at.get(key, float("nan")) for t in warm])
            rows.append(
                {
                    "runtime": label,
                    "model": key,
                    "cold_completed": cold.completed_at.get(key, float("nan")),
                    "warm_completed": warm_at,
                    "cold_start": cold.completed_at.get(key, float("nan")) - warm_at,
                    "server_queue": run.get("queue_s") or float("nan"),
                    "errors": cold.errors + [e for t in warm for e in t.errors],
                }
            )
            print(f"  cold {key}: {rows[-1]['cold_start']:.1f} s", flush=True)
    return rows


def finite_median(values: list[float]) -> float:
    """Median of the non-NaN values (NaN when none)."""
    kept = [v for v in values if v == v]
    return statistics.median(kept) if kept else float("nan")


def request_groups(registry: Any, cap: int) -> list[list[str]]:
    """Every served entry's key in as few requests of at most ``cap`` models as possible, each model graph (a
    backbone and its consumers) kept in one request so that no request recomputes another's backbone."""
    entries = {e.key: e for e in registry.entries}
    root: dict[str, str] = {}

    def find(key: str) -> str:
        while root.get(key, key) != key:
            key = root[key]
        return key

    for entry in entries.values():
        for upstream in entry.upstream.values():
            if upstream in entries:
                root[find(entry.key)] = find(upstream)
    components: dict[str, list[str]] = {}
    for key in entries:
        components.setdefault(find(key), []).append(key)
    groups: list[list[str]] = []
    for component in sorted(components.values(), key=len, reverse=True):  # first fit, largest first
        target = next((g for g in groups if len(g) + len(component) <= cap), None)
        if target is None:
            groups.append([])
            target = groups[-1]
        target.extend(component)
    return groups


def concurrent_requests(server: CliServer, body: bytes, groups: list[list[str]]) -> tuple[float, list[Any]]:
    """Send one request per group at the same moment; end-to-end seconds (until the last ``finished``), timings."""
    timings: list[Any] = [None] * len(groups)
    barrier = threading.Barrier(len(groups) + 1)

    def send(i: int) -> None:
        with httpx.Client(timeout=1800) as client:
            barrier.wait()
            timings[i] = probe.stream_safely(client, server.base, body, ",".join(groups[i]))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(groups))]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, timings


def answers(server: CliServer, registry: Any, body: bytes, cap: int) -> dict[str, Any]:
    """Every served model on one track (the groups sent together): each model's outcome and time to its event."""
    groups = request_groups(registry, cap)
    wall, timings = concurrent_requests(server, body, groups)
    outcome = {}
    for group, timing in zip(groups, timings, strict=True):
        for key in group:
            if key in timing.completed_at:
                outcome[key] = ("completed", timing.completed_at[key], "")
            else:
                error = timing.failed.get(key) or "; ".join(timing.errors) or "no event"
                outcome[key] = ("error", float("nan"), error)
    return {"groups": groups, "wall": wall, "outcome": outcome}


def fan_out(server: CliServer, registry: Any, body: bytes, cap: int, repeats: int) -> list[dict[str, Any]]:
    """Every served model on the track, ``repeats`` times (warm): end-to-end, per-model compute_s and replica CPU."""
    groups = request_groups(registry, cap)
    logs = (session_dir(server) or Path("/nonexistent")) / "logs"
    deployment_of = {e.deployment_name: e.key for e in registry.entries}
    out = []
    for round_ in range(repeats):
        before, machine0 = probe.process_cpu(server.proc.pid), probe.cpu_times()
        wall, timings = concurrent_requests(server, body, groups)
        cpu = probe.cpu_by_role(before, probe.process_cpu(server.proc.pid))
        machine_busy = probe.cpu_busy_between(machine0, probe.cpu_times())
        ids = {c for t in timings for c in t.correlation_ids}
        records = probe.graph_records(ids, logs)
        runs = {run["model"]: run for nodes, _ in records.values() for run in nodes}
        model_cpu = {deployment_of[n.split(":")[-1]]: s for n, s in cpu.items() if n.split(":")[-1] in deployment_of}
        out.append(
            {
                "wall": wall,
                "requests": len(groups),
                "compute": {k: runs[k]["compute_s"] for k in runs if runs[k]["compute_s"] is not None},
                "queue": {k: runs[k]["queue_s"] for k in runs if runs[k]["queue_s"] is not None},
                "outcomes": {k: runs[k]["outcome"] for k in runs},
                "decode": [req.get("decode_s", float("nan")) for _, req in records.values()],
                "model_cpu": model_cpu,
                "ingress_cpu": sum(s for n, s in cpu.items() if n.endswith(":ingress")),
                "total_cpu": sum(cpu.values()),
                "machine_busy": machine_busy,
                "errors": [e for t in timings for e in t.errors],
                "completed_at": {k: v for t in timings for k, v in t.completed_at.items()},
            }
        )
        print(f"  fan-out round {round_ + 1}: {wall:.1f} s, {len(runs)} model runs", flush=True)
    return out


def idle_cpu(server: CliServer, seconds: float = IDLE_WINDOW_S) -> dict[str, float]:
    """CPU seconds per second that the server's processes use while no request runs, by kind of process."""
    before = probe.process_cpu(server.proc.pid)
    time.sleep(seconds)
    used = probe.cpu_by_role(before, probe.process_cpu(server.proc.pid))
    replicas = sum(v for k, v in used.items() if k.startswith("ServeReplica:"))
    total = sum(used.values())
    count = sum(1 for k in used if k.startswith("ServeReplica:"))
    return {"replicas": replicas / seconds, "rest": (total - replicas) / seconds, "replica_roles": count}


def stop(server: CliServer) -> dict[str, Any]:
    """SIGTERM the command; seconds until every process seen in its tree or Ray session is gone (then SIGKILL
    what is left, so the benchmark never leaves a server behind)."""
    memory_now(server)  # the latest set of pids
    t0 = time.perf_counter()
    server.proc.send_signal(signal.SIGTERM)
    left = set(server.pids)
    while left and time.perf_counter() - t0 < STOP_TIMEOUT_S:
        server.proc.poll()  # reap the command itself
        left = {p for p in left if alive(p)}
        time.sleep(0.05)
    gone = time.perf_counter() - t0 if not left else float("nan")
    roles = sorted(memory.role(p) for p in left)
    if left:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    try:
        server.proc.wait(10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
    return {"sigterm_to_gone": gone, "left": roles, "processes": len(server.pids), "exit": server.proc.returncode}


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def run(
    preview: Track, full: Track, fan_repeats: int, port: int = PORT, cold: bool = True, fan: bool = True
) -> dict[str, Any]:
    """The whole part, in order; the server is always stopped (and killed if it must be) at the end."""
    from serve_app.config import Settings

    cap = Settings().max_models_per_request
    data: dict[str, Any] = {"cap": cap}
    server = start(port)
    try:
        print("  waiting for /healthz...", flush=True)
        data["healthz_s"] = wait_healthy(server)
        time.sleep(3)  # let the replicas finish settling before reading memory
        data["idle_memory"] = memory_now(server)
        data["idle_cpu"] = idle_cpu(server)
        registry = served_registry(server)
        listing = httpx.get(f"{server.base}/v1/models", timeout=30).json()["models"]
        data["listed"] = len(listing)
        data["available"] = sorted(f"{m['name']}:{m['version']}" for m in listing if m["available"])
        data["served"] = [e.key for e in registry.entries]
        data["runtimes"] = {e.key: runtime(e) for e in registry.entries}
        data["deployments"] = {e.deployment_name: e.key for e in registry.entries}
        data["warm"] = [e.key for e in registry.entries if e.warm]
        preview_body = preview.path.read_bytes()
        data["cold"] = cold_starts(server, registry, preview_body) if cold else []
        print("  every served model...", flush=True)
        data["answers"] = answers(server, registry, preview_body, cap)
        data["answers"]["track"] = preview.name
        if fan:  # every deployment is warm now: the answers above started each one and ran it once
            print("  fan-out on the 4-minute track...", flush=True)
            data["fan_out"] = fan_out(server, registry, full.path.read_bytes(), cap, fan_repeats)
            data["fan_track"] = full.name
        data["loaded_memory"] = memory_now(server)
        data["loaded_idle_cpu"] = idle_cpu(server)
    finally:
        data["stop"] = stop(server)
        data["server_log_tail"] = tail(server.log, 20)
        server.log.unlink(missing_ok=True)
        shutil.rmtree(server.models_dir, ignore_errors=True)
    return data
