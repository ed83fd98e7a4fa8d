"""Catalogue throughput: ``mirstream batch`` (Ray Data) vs the HTTP path (Ray Serve + concurrent clients), same tracks.

    .venv/bin/python -m benchmarks.batch_bench --tracks 40 --seconds 30 --repeats 3

Generates N stereo mp3 tracks (a C-major cadence over clicks at a different tempo per track), measures
the per-track CPU cost of decode + each model directly (time.process_time, one process), then runs the
whole set R times through each path on the same number of CPUs and reports the median tracks/minute.
Writes benchmarks/batch_results.md, including the 10 M-track scaling estimate computed from these numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import statistics
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import yaml

RESULTS = Path(__file__).resolve().parent / "batch_results.md"
REPO = Path(__file__).resolve().parent.parent
TRIO = ("key", "bpm_degara", "loudness-ebur128")


def make_tracks(folder: Path, count: int, seconds: float) -> list[Path]:
    """``count`` stereo 44.1 kHz mp3 files: cadence on the left, cadence + clicks (80-158 BPM) on the right."""
    from tests.audio_factory import c_major_cadence, click_track, encode

    music = c_major_cadence(seconds_per_chord=seconds / 12, repeats=3)
    paths = []
    for i in range(count):
        clicks = click_track(80.0 + 2 * (i % 40), len(music) / 44100)[: len(music)]
        stereo = np.stack([0.8 * music, 0.7 * music + 0.5 * clicks])
        path = folder / f"track{i:04d}.mp3"
        path.write_bytes(encode(stereo, 44100, "mp3"))
        paths.append(path)
    return paths


def cpu_per_track(paths: list[Path], registry: object) -> dict[str, float]:
    """CPU seconds per track of decode (+ both representations) and of each model, measured in this process."""
    from serve_app.ingress.decode import decode, representation
    from serve_app.runners.host import AnalyzerHost

    entries = [registry.find(name, None) for name in TRIO]  # type: ignore[attr-defined]
    hosts = {e.key: AnalyzerHost(e) for e in entries}
    cost = {"decode": 0.0, **{e.key: 0.0 for e in entries}}
    for path in paths:
        t = time.process_time()
        decoded = decode(path.read_bytes(), 3600)
        reps = {spec: representation(decoded, spec) for spec in {e.input for e in entries}}
        cost["decode"] += time.process_time() - t
        for e in entries:
            t = time.process_time()
            hosts[e.key].run(reps[e.input])
            cost[e.key] += time.process_time() - t
    return {k: v / len(paths) for k, v in cost.items()}


def bench_registry(cores: int, folder: Path) -> Path:
    """The trio from model_registry.yaml with replicas pinned to ``cores`` (no autoscaling lag in the HTTP runs)."""
    data = yaml.safe_load((REPO / "model_registry.yaml").read_text())
    data["models"] = [m for m in data["models"] if m["name"] in TRIO]
    for m in data["models"]:
        m["autoscaling"] = {"min_replicas": cores, "max_replicas": cores, "target_ongoing_requests": 2}
    data["ingress"] = {"resources": {"num_cpus": 0.25}, "autoscaling": {"min_replicas": cores, "max_replicas": cores}}
    path = folder / "registry.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def http_pass(base: str, paths: list[Path], clients: int) -> float:
    """Stream every track through the server with ``clients`` concurrent clients; seconds for the whole set."""
    work: queue.Queue[Path] = queue.Queue()
    for p in paths:
        work.put(p)
    failures: list[str] = []
    models = ",".join(TRIO)

    def client() -> None:
        with httpx.Client(timeout=600) as http:
            while True:
                try:
                    path = work.get_nowait()
                except queue.Empty:
                    return
                r = http.post(f"{base}/v1/analysis/stream", params={"models": models}, content=path.read_bytes())
                done = r.text.count('"status": "completed"')
                if r.status_code != 200 or done != len(TRIO):
                    failures.append(f"{path.name}: HTTP {r.status_code}, {done} completed")

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"HTTP path failed: {failures[:3]}")
    return time.perf_counter() - started


def run_http(paths: list[Path], cores: int, clients: int, repeats: int) -> list[float]:
    """Tracks/minute of each HTTP pass (Ray Serve started once, warmed up with one request first)."""
    from serve_app.config import settings_from_env
    from serve_app.ops import launcher
    from serve_app.registry import load_registry
    from tests.conftest import free_port, wait_healthy

    registry_path = bench_registry(cores, paths[0].parent.parent)
    settings = replace(settings_from_env(), port=free_port(), ray_num_cpus=cores, registry_path=registry_path)
    settings = launcher.start_ray(settings)
    rates = []
    try:
        launcher.deploy(load_registry(registry_path), settings)
        base = f"http://127.0.0.1:{settings.port}"
        wait_healthy(base)
        http_pass(base, paths[:1], 1)
        for _ in range(repeats):
            rates.append(len(paths) / http_pass(base, paths, clients) * 60)
    finally:
        launcher.shutdown(settings)
    return rates


def run_batch_mode(folder: Path, cores: int, repeats: int) -> tuple[list[float], list[float], list[float], dict]:
    """Per batch run: end-to-end tracks/minute (Ray started once; every run starts its own actor pools), seconds
    until the first track came out (actor start-up), steady tracks/minute after that; plus the output size."""
    import ray

    from serve_app.ingress.request import parse_models
    from serve_app.ops.batch import BatchConfig, load_results, run_batch
    from serve_app.registry import load_registry

    registry = load_registry(REPO / "model_registry.yaml")
    models = parse_models(",".join(TRIO), registry)
    ray.init(address="local", num_cpus=cores, object_store_memory=1024 * 2**20, include_dashboard=False)
    rates, firsts, steady, size = [], [], [], {}
    try:
        for i in range(repeats):
            out = folder.parent / f"batch-out-{i}"
            marks: list[tuple[float, int]] = []
            t0 = time.perf_counter()
            summary = run_batch(
                BatchConfig(source=str(folder), models=models, out=str(out), concurrency=cores),
                progress=lambda done, _total, _errors, m=marks, t=t0: m.append((time.perf_counter() - t, done)),
            )
            assert summary.complete and summary.errors == 0, summary
            rates.append(summary.tracks_processed / summary.wall_s * 60)
            (t_first, n_first), (t_last, n_last) = next(m for m in marks if m[1] > 0), marks[-1]
            firsts.append(t_first)
            steady.append((n_last - n_first) / max(t_last - t_first, 1e-9) * 60)
            table = load_results(str(out))
            size = {
                "parquet_bytes": sum(p.stat().st_size for p in out.glob("part-*.parquet")),
                "rows": table.num_rows,
                "results_json_bytes": sum(len(r) for r in table.column("results").to_pylist()),
                "audio_seconds": sum(table.column("duration_s").to_pylist()) / len(TRIO),
                # float32 mono + original channels at 44.1 kHz: what decode hands the model stages per track
                "bytes_per_track": 4 * 44100 * 3 * sum(table.column("duration_s").to_pylist()) / table.num_rows,
            }
            shutil.rmtree(out)
    finally:
        ray.shutdown()
    return rates, firsts, steady, size


def machine() -> str:
    """CPU model, cores, memory and load: the context every number here needs."""
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    mem = next((int(ln.split()[1]) / 2**20 for ln in open("/proc/meminfo") if ln.startswith("MemTotal")), 0)
    return f"{platform.node()}: {cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}"


def scaling_plan(cpu: dict[str, float], seconds: float, size: dict[str, float], steady_rate: float, cores: int) -> list:
    """The 10 M-track paper estimate, every step shown, from this run's measurements.

    Two bounds: compute only (the analyzers' and decoder's CPU, at 80 % node efficiency) and as measured
    (the core-seconds per track the batch pipeline really used here in steady state, overhead included,
    scaled linearly with duration, which overstates the per-block part of the overhead).
    """
    avg_len, node_cores, eff, n = 240.0, 32, 0.8, 10e6  # a 4-minute average track; 32-core nodes
    per_track = sum(cpu.values())
    measured = cores * 60 / steady_rate  # core-s per track the pipeline really took here (steady state)
    low = per_track / seconds * avg_len * n / eff  # core-s for 10 M tracks, compute only
    high = measured / seconds * avg_len * n  # core-s for 10 M tracks, as measured
    rows = []
    for nodes in (1, 10, 50, 100):
        c = nodes * node_cores
        rows.append(
            f"| {nodes} | {c} | {low / c / 3600:,.1f} h | {high / c / 3600:,.1f} h | "
            f"{n / (low / c):,.0f} - {n / (high / c):,.0f} |"
        )
    tps_100 = n / (low / (100 * node_cores))  # the fast end at 100 nodes sizes storage and driver
    mb_per_track = avg_len * 256e3 / 8 / 1e6  # 256 kbit/s mp3/AAC
    out_per_audio_s = size["parquet_bytes"] / size["audio_seconds"]
    out_total = out_per_audio_s * avg_len * n
    return [
        "## Scaling plan: 10 M tracks (paper estimate from the numbers above)",
        "",
        f"- Compute: CPU per {seconds:g}-s track, measured here in one process (time.process_time): decode "
        f"{cpu['decode']:.3f} s + "
        + " + ".join(f"{k} {v:.3f} s" for k, v in cpu.items() if k != "decode")
        + f" = **{per_track:.3f} CPU-s** = {per_track / seconds * 1000:.2f} CPU-ms per audio second "
        "(all three scale linearly with duration).",
        f"- As measured: the batch pipeline in steady state used {cores} cores x 60 s / {steady_rate:.1f} "
        f"tracks/min = **{measured:.2f} core-s per track** = {measured / seconds * 1000:.2f} ms per audio second, "
        f"i.e. compute is {per_track / measured:.0%} of it; the rest is Ray Data overhead (each track's decoded "
        f"audio, {size['bytes_per_track'] / 1e6:.1f} MB per {seconds:g} s as float32 mono + original, crosses "
        "the object store between stages; per-block task scheduling; Ray's own processes) on a 2-core VM "
        "that other jobs kept at load 10+. Dedicated nodes land between the two bounds.",
        f"- Work for 10 M tracks x {avg_len:.0f} s (a 4-minute average): compute only "
        f"{per_track / seconds:.5f} x {avg_len:.0f} x 10 M / {eff} efficiency = {low:,.0f} core-s "
        f"({low / 3600:,.0f} core-hours); as measured {measured / seconds:.5f} x {avg_len:.0f} x 10 M = "
        f"{high:,.0f} core-s ({high / 3600:,.0f} core-hours).",
        f"- Wall time = core-s / (nodes x {node_cores} cores):",
        "",
        "| nodes | cores | wall, compute at 80 % | wall, as measured | tracks/s from storage |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"- Storage reads: a 4-min track at 256 kbit/s is {mb_per_track:.1f} MB, so 10 M tracks = "
        f"{mb_per_track * n / 1e6:,.0f} TB read once. The fast end at 100 nodes needs {tps_100:,.0f} tracks/s x "
        f"{mb_per_track:.1f} MB = {tps_100 * mb_per_track / 1e3:,.2f} GB/s aggregate, "
        f"{tps_100 * mb_per_track * 8 / 100 / 1e3:.2f} Gbit/s per node (S3 serves ~5,500 GET/s per prefix: "
        "spread the catalogue over prefixes).",
        f"- Output: this run wrote {size['parquet_bytes'] / 1e3:,.0f} kB of zstd Parquet for {size['rows']} rows "
        f"over {size['audio_seconds']:.0f} s of audio = {out_per_audio_s:,.0f} B per audio second for the three "
        f"models (beat lists and the 10 Hz loudness curves dominate); x {avg_len:.0f} s x 10 M = "
        f"{out_total / 1e9:,.0f} GB. Only these rows go back to the driver: "
        f"{out_total / n * tps_100 / 1e6:,.1f} MB/s at the fast end, fine for one driver.",
        "- GPU models: the learned heads (EffNet/MusiCNN embeddings + heads) are `num_gpus: 0` in the registry "
        "today. The pipeline gives each model's actor pool the entry's `num_gpus`, so a GPU entry gets a GPU pool "
        "sized by the GPU count while CPU decode tasks feed it. No GPU was lent to this run, so their cost is not "
        "measured here: GPU-hours = 10 M / (tracks per GPU-second, measured by this script on a GPU node) / 3600.",
    ]


def main() -> None:
    """Run both paths, write batch_results.md."""
    from serve_app.registry import load_registry

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tracks", type=int, default=40)
    p.add_argument("--seconds", type=float, default=30.0, help="track length")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cores", type=int, default=os.cpu_count() or 2, help="Ray CPUs for both paths")
    p.add_argument("--clients", type=int, default=0, help="HTTP clients (default 2 x cores)")
    args = p.parse_args()
    clients = args.clients or 2 * args.cores
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    work = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    try:
        folder = work / "tracks"
        folder.mkdir()
        load_before = os.getloadavg()
        paths = make_tracks(folder, args.tracks, args.seconds)
        cpu = cpu_per_track(paths[: min(5, len(paths))], load_registry(REPO / "model_registry.yaml"))
        http_rates = run_http(paths, args.cores, clients, args.repeats)
        batch_rates, firsts, steady, size = run_batch_mode(folder, args.cores, args.repeats)
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med_http, med_batch = statistics.median(http_rates), statistics.median(batch_rates)
    command = (
        f".venv/bin/python -m benchmarks.batch_bench --tracks {args.tracks} --seconds {args.seconds:g} "
        f"--repeats {args.repeats} --cores {args.cores}"
    )
    lines = [
        "# Catalogue batch mode vs the HTTP path (benchmarks/batch_bench.py)",
        "",
        f"Machine: {machine()}. Load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
        "(a shared VM with other agents' jobs running: treat these as a loaded-machine floor; the lead re-runs "
        "it in a quiet window with the command below).",
        "",
        f"    {command}",
        "",
        f"{args.tracks} stereo 44.1 kHz mp3 tracks of {args.seconds:g} s; models `{','.join(TRIO)}`; "
        f"{args.cores} Ray CPUs for each path; {args.repeats} runs each, medians.",
        "",
        "| path | setup | tracks/min (median) | runs |",
        "|---|---|---|---|",
        f"| batch (Ray Data), end to end | `mirstream batch`, actor pool of up to {args.cores} per model, "
        f"incl. actor start | **{med_batch:.1f}** | {', '.join(f'{r:.1f}' for r in batch_rates)} |",
        f"| batch (Ray Data), steady | same runs, after the first track came out | "
        f"**{statistics.median(steady):.1f}** | {', '.join(f'{r:.1f}' for r in steady)} |",
        f"| HTTP (Ray Serve) | {clients} concurrent clients, {args.cores} replicas per model, warm | "
        f"**{med_http:.1f}** | {', '.join(f'{r:.1f}' for r in http_rates)} |",
        "",
        f"Batch end-to-end / HTTP = {med_batch / med_http:.2f}; batch steady / HTTP = "
        f"{statistics.median(steady) / med_http:.2f}. The first batch track came out after "
        f"{', '.join(f'{t:.1f}' for t in firsts)} s (Ray Data starting one actor pool per model, each actor "
        "importing Essentia and building its analyzer); the HTTP server paid that once, before timing.",
        "",
        f"Per-track CPU (direct, one process): {json.dumps({k: round(v, 4) for k, v in cpu.items()})}",
        "",
        *scaling_plan(cpu, args.seconds, size, statistics.median(steady), args.cores),
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
