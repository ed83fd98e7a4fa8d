"""Does Serve's dynamic batching (@serve.batch) raise pitch_crepe's throughput here? Measured, not assumed.

N tracks are sent to one pitch_crepe replica at once (as N concurrent streams would), with and without the
registry's ``batching:`` section, at 1 and 2 torch threads; each configuration is timed over several runs
after a warm-up. A direct in-process row (``analyze`` in turn vs one ``analyze_batch``) separates the
model-level effect from Serve's.

    .venv/bin/python -m benchmarks.batching --tracks 8 --seconds 10 --runs 5

writes benchmarks/batching_results.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

RESULTS = Path(__file__).resolve().parent / "batching_results.md"
REPO = Path(__file__).resolve().parent.parent
SR = 16000


@dataclass(frozen=True)
class Config:
    """One deployment variant: batching on/off (max batch size, wait) and the replica's CPU share."""

    label: str
    num_cpus: float
    batching: dict[str, Any] | None


@dataclass
class Measured:
    """Wall time of each run, the per-request latencies of all runs, and (in-process only) CPU time per run."""

    walls: list[float]
    latencies: list[float]
    cpus: list[float] = field(default_factory=list)


def tracks(count: int, seconds: float) -> list[Any]:
    """Distinct harmonic tones (different f0 per track) as 16 kHz mono Audio."""
    from models.base import Audio

    t = np.arange(int(SR * seconds)) / SR
    out = []
    for i in range(count):
        f0 = 110.0 * 2 ** (i / 7)
        out.append(Audio(sum(0.4 / k * np.sin(2 * np.pi * f0 * k * t) for k in (1, 2, 3)).astype(np.float32), SR))
    return out


def pitch_entry_data(config: Config, max_ongoing: int) -> dict[str, Any]:
    """The real pitch_crepe registry item, with this config's CPU share and batching."""
    data = yaml.safe_load((REPO / "model_registry.yaml").read_text())
    item = dict(next(m for m in data["models"] if m["name"] == "pitch_crepe"))
    item.pop("batching", None)
    item["resources"] = {"num_cpus": config.num_cpus}
    item["max_ongoing_requests"] = max_ongoing
    if config.batching:
        item["batching"] = config.batching
    return item


def deploy_variant(config: Config, app_name: str, max_ongoing: int) -> Any:
    """Deploy one variant as its own Serve app (one warm replica, the deployment build_app makes); its handle."""
    from dataclasses import replace

    from ray import serve

    from serve_app.config import Settings
    from serve_app.registry import parse_registry
    from serve_app.registry.availability import resolve_availability
    from serve_app.runners.ray_serve import model_deployment

    registry = resolve_availability(parse_registry({"models": [pitch_entry_data(config, max_ongoing)]}), Settings())
    entry = replace(registry.entries[0], warm=True)
    return serve.run(model_deployment(entry, Settings()), name=app_name, route_prefix=None)


def measure_serve(configs: list[Config], audios: list[Any], runs: int) -> list[Measured]:
    """All variants deployed side by side; rounds interleaved (A, B, C, D, A, ...) so drifting load hits all alike.

    Each round sends every track at once to one variant; only that variant's replica is busy meanwhile.
    """
    import ray
    from ray import serve

    max_ongoing = max([len(audios)] + [(c.batching or {}).get("max_batch_size", 1) for c in configs])
    handles = [deploy_variant(c, f"batching-bench-{i}", max_ongoing) for i, c in enumerate(configs)]
    refs = [ray.put(a) for a in audios]

    async def one_round(handle: Any) -> tuple[float, list[float]]:
        started = time.perf_counter()

        async def call(ref: Any) -> float:
            await handle.analyze.remote({"audio": ref})
            return time.perf_counter() - started

        latencies = await asyncio.gather(*(call(r) for r in refs))
        return time.perf_counter() - started, list(latencies)

    try:
        for handle in handles:
            asyncio.run(one_round(handle))  # warm-up: first forward passes, allocator, thread pools
        results = [Measured([], []) for _ in configs]
        for _ in range(runs):
            for handle, measured in zip(handles, results, strict=True):
                wall, lat = asyncio.run(one_round(handle))
                measured.walls.append(wall)
                measured.latencies += lat
        return results
    finally:
        for i in range(len(configs)):
            serve.delete(f"batching-bench-{i}")


def measure_direct(audios: list[Any], runs: int, threads: int) -> tuple[Measured, Measured]:
    """In-process: ``analyze`` on each track in turn vs one ``analyze_batch`` over all (no Serve, no Ray)."""
    from models import placement
    from models.pitch import CrepePitchAnalyzer

    placement.configure(cpus=float(threads))
    crepe = CrepePitchAnalyzer()
    crepe.analyze_batch(audios[:2])  # warm-up
    loop, batch = Measured([], []), Measured([], [])
    for _ in range(runs):
        started, cpu = time.perf_counter(), time.process_time()
        for a in audios:
            crepe.analyze(a)
        loop.walls.append(time.perf_counter() - started)
        loop.cpus.append(time.process_time() - cpu)
        started, cpu = time.perf_counter(), time.process_time()
        crepe.analyze_batch(audios)
        batch.walls.append(time.perf_counter() - started)
        batch.cpus.append(time.process_time() - cpu)
    return loop, batch


def machine() -> str:
    """CPU model, cores, load and library versions for the results header."""
    import torch

    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{model}, {os.cpu_count()} cores visible, {platform.system()} {platform.release()}; "
        f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}; "
        f"load average at start {load} (the machine is shared with other jobs)"
    )


def row(label: str, m: Measured, n: int, seconds: float) -> str:
    """A markdown table row: median wall, throughput, latency percentiles, spread."""
    wall = statistics.median(m.walls)
    lat = sorted(m.latencies)
    p50 = f"{statistics.median(lat):.2f}" if lat else "-"
    p95 = f"{lat[min(len(lat) - 1, int(0.95 * len(lat)))]:.2f}" if lat else "-"
    spread = f"{min(m.walls):.2f}-{max(m.walls):.2f}"
    cpu = f"{statistics.median(m.cpus):.2f}" if m.cpus else "-"
    return f"| {label} | {wall:.2f} | {n / wall:.2f} | {n * seconds / wall:.1f} | {p50} | {p95} | {spread} | {cpu} |"


def main() -> None:
    """Run every variant and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=8, help="concurrent requests per round")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each track")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds per variant (median reported)")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--wait", type=float, default=0.05, help="batch_wait_timeout_s")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    os.environ.setdefault("PYTHONPATH", str(REPO))
    import ray
    from ray import serve

    header = machine()
    audios = tracks(args.tracks, args.seconds)
    batching = {"max_batch_size": args.max_batch, "batch_wait_timeout_s": args.wait}
    configs = [
        Config("Serve, unbatched, 1 thread (num_cpus 0.25)", 0.25, None),
        Config(f"Serve, batched ≤{args.max_batch}, 1 thread (num_cpus 0.25)", 0.25, batching),
        Config("Serve, unbatched, 2 threads (num_cpus 2)", 2.0, None),
        Config(f"Serve, batched ≤{args.max_batch}, 2 threads (num_cpus 2)", 2.0, batching),
    ]
    rows = []
    for threads in (1, 2):
        loop, batch = measure_direct(audios, args.runs, threads)
        rows.append(
            row(f"in-process, `analyze` x{args.tracks} in turn, {threads} thread(s)", loop, args.tracks, args.seconds)
        )
        rows.append(row(f"in-process, one `analyze_batch`, {threads} thread(s)", batch, args.tracks, args.seconds))
        print(rows[-2], rows[-1], sep="\n", flush=True)
    # logical CPUs: all four variants are deployed at once (2 + 2 + 0.25 + 0.25), but only one computes at a time
    ray.init(address="local", num_cpus=5, object_store_memory=300 * 2**20, include_dashboard=False, log_to_driver=False)
    serve.start(proxy_location="Disabled")
    try:
        for config, measured in zip(configs, measure_serve(configs, audios, args.runs), strict=True):
            rows.append(row(config.label, measured, args.tracks, args.seconds))
            print(rows[-1], flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()

    table = "\n".join(
        [
            "| variant | median wall s | tracks/s | audio s/s | p50 latency s | p95 latency s | wall range | CPU s |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    args.out.write_text(
        f"# pitch_crepe dynamic batching: throughput with and without `@serve.batch`\n\n"
        f"Machine: {header}.\n\n"
        f"Each round sends {args.tracks} tracks of {args.seconds:g} s (16 kHz harmonic tones, "
        f"{1 + int(args.seconds * 100)} CREPE frames each) at once to one replica; median of {args.runs} rounds "
        f"after a warm-up round, the variants' rounds interleaved. "
        f"Batched = registry `batching: {{max_batch_size: {args.max_batch}, "
        f"batch_wait_timeout_s: {args.wait:g}}}`. Latency = time from the round's start to each request's result; "
        f"CPU s = process CPU time of an in-process round (less sensitive to other jobs than wall time).\n\n"
        f"Command: `.venv/bin/python -m benchmarks.batching --tracks {args.tracks} --seconds {args.seconds:g} "
        f"--runs {args.runs}`\n\n{table}\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
