"""Performance benchmark (issue 6): the server side by side with a sequential Essentia script, on this machine.

    .venv/bin/python -m benchmarks.perf.run            # ~10 min; writes benchmarks/RESULTS.md
    .venv/bin/python -m benchmarks.perf.run --quick    # 2 repeats, short throughput windows (smoke run)

Every ratio is measured in the same run with the two sides interleaved (A, B, A, B...) and reported as
medians, because this machine is shared and noisy. Needs Debian mma, fluidsynth and fluid-soundfont-gm to
render the 4-minute song once (cached, see corpus.py).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.perf import probe
from benchmarks.perf.baseline import BaselineProcess
from benchmarks.perf.corpus import Track, tracks

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
TRIO = "key,bpm_degara,loudness-ebur128"
TRIO_KEYS = ("key:1", "bpm_degara:1", "loudness-ebur128:1")
PORT = 8791
HISTORY = """## Before/after (earlier full runs of this benchmark on the same quiet machine, 4-min mp3, seed trio)

| state of the code | server end-to-end | speed-up vs script | loudness-ebur128 compute in the server |
|---|---|---|---|
| Essentia LoudnessEBUR128 + libebur128 true peak (before) | 2.10 s | 1.02× | ~1.4 s |
| models.bs1770 K-weighting + libebur128 true peak (commit 6a2fb87) | 1.80 s | 1.19× | 1.41 s |
| models.bs1770 K-weighting + pruned true peak (now) | see above | see above | see above |

The profile showed libebur128's full 4x oversampling for true peak (0.6–0.7 s) and Essentia's
LoudnessEBUR128 (0.65 s) as the critical path; both were replaced by exact, cheaper computations."""


def median(values: list[float]) -> float:
    """Median, NaN for no values."""
    return statistics.median(values) if values else float("nan")


def machine() -> str:
    """One line describing the hardware and software the numbers were taken on."""
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln),
        platform.processor(),
    )
    mem_kb = int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in ln))
    import essentia
    import ray

    load = os.getloadavg()
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_kb / 2**20:.0f} GiB RAM, no GPU; Python {platform.python_version()}, "
        f"Ray {ray.__version__}, Essentia {essentia.__version__}; load average at start {load[0]:.2f}"
    )


# --- decode -------------------------------------------------------------------------------------------------


def bench_decode(corpus: dict[str, Track], repeats: int) -> list[dict[str, Any]]:
    """PyAV + soxr (the server's path, file read included) vs Essentia's MonoLoader and AudioLoader per format."""
    from models.base import InputSpec
    from serve_app.ingress.decode import decode, representation

    rows = []
    baseline = BaselineProcess()
    for name, track in corpus.items():
        if not name.startswith("full."):
            continue
        ours, ours_both, mono_loader, audio_loader = [], [], [], []
        essentia_error = ""
        for _ in range(repeats):
            t = time.perf_counter()
            decoded = decode(track.path.read_bytes(), 3600)
            representation(decoded, InputSpec(44100, "mono"))
            ours.append(time.perf_counter() - t)
            representation(decoded, InputSpec(None, "original"))
            ours_both.append(time.perf_counter() - t)
            theirs = baseline.call("load", track.path)
            if "error" in theirs:
                essentia_error = theirs["error"]
            else:
                mono_loader.append(theirs["monoloader"])
                audio_loader.append(theirs["audioloader"])
        rows.append(
            {
                "format": track.fmt,
                "ours_mono": median(ours),
                "ours_both": median(ours_both),
                "monoloader": median(mono_loader),
                "audioloader": median(audio_loader),
                "essentia_error": essentia_error,
            }
        )
    baseline.close()
    return rows


# --- loudness implementations --------------------------------------------------------------------------------


def _libebur128(x: np.ndarray, rate: int) -> dict[str, Any]:
    """Integrated, LRA, max momentary/short-term and true peak with libebur128 (pyebur128), 100 ms hops."""
    import pyebur128 as eb

    modes = eb.MeasurementMode
    mode = modes.MODE_M | modes.MODE_S | modes.MODE_I | modes.MODE_LRA | modes.MODE_TRUE_PEAK
    state = eb.R128State(x.shape[0], rate, mode)
    frames = np.ascontiguousarray(x.T)
    hop = int(rate * 0.1)
    momentary, short_term = [], []
    for start in range(0, frames.shape[0], hop):
        chunk = frames[start : start + hop]
        state.add_frames(chunk.ravel(), chunk.shape[0])
        filled = (start + chunk.shape[0]) / rate  # report windows once full, as Tech 3341 reads them
        if filled >= 0.4:
            momentary.append(eb.get_loudness_momentary(state))
        if filled >= 3.0:
            short_term.append(eb.get_loudness_shortterm(state))
    peak = max(eb.get_true_peak(state, c) for c in range(x.shape[0]))
    return {
        "integrated_loudness": eb.get_loudness_global(state),
        "loudness_range": eb.get_loudness_range(state),
        "momentary_max": max(momentary, default=None),
        "short_term_max": max(short_term, default=None),
        "momentary": momentary,
        "short_term": short_term,
        "true_peak": 20 * np.log10(peak) if peak > 0 else None,
    }


def bench_loudness(track: Track, repeats: int) -> list[dict[str, Any]]:
    """Time each EBU R128 implementation on the 4-minute stereo track and count its EBU Tech 3341/3342 passes."""
    from benchmarks.accuracy.ebu import EBU_RATE, check, ebu_cases
    from models.base import Audio
    from models.loudness import LoudnessEBUR128Analyzer
    from serve_app.ingress.decode import decode

    x = decode(track.path.read_bytes(), 3600).samples
    rate = 44100
    impls = {
        "Essentia LoudnessEBUR128": LoudnessEBUR128Analyzer(true_peak="off", backend="essentia", curves=True),
        "libebur128 (pyebur128), incl. true peak": None,
        "models.bs1770 loudness only, no true peak": LoudnessEBUR128Analyzer(true_peak="off", backend="bs1770"),
        "models.bs1770 incl. its true peak (served)": LoudnessEBUR128Analyzer(backend="bs1770"),
    }

    def run(impl: Any, signal_: np.ndarray, sr: int) -> dict[str, Any]:
        if impl is None:
            return _libebur128(signal_, sr)
        return impl.analyze(Audio(np.ascontiguousarray(signal_, dtype=np.float32), sr))

    cases = [c for c in ebu_cases() if c[3]]
    rows = []
    times: dict[str, list[float]] = {name: [] for name in impls}
    names = list(impls)
    order = random.Random(7)
    for name in names:  # warm-up: the first call of each pays first-touch page faults for its buffers
        run(impls[name], x, rate)
    for _ in range(repeats):
        order.shuffle(names)  # no implementation always follows the same one (allocator state carries over)
        for name in names:
            t = time.perf_counter()
            run(impls[name], x, rate)
            times[name].append(time.perf_counter() - t)
    for name, impl in impls.items():
        passed = 0
        for _case, _desc, signal_, expect in cases:
            result = run(impl, signal_, EBU_RATE)
            measured = {k: v for k, v in expect.items() if k != "TP" or result.get("true_peak") is not None}
            passed += all(ok for _, ok in check(measured, result).values())
        rows.append({"impl": name, "seconds": median(times[name]), "ebu": f"{passed}/{len(cases)}"})
    return rows


# --- server ---------------------------------------------------------------------------------------------------


def trio_registry(loudness_backend: str = "bs1770", replicas: int | None = None) -> Any:
    """The default registry cut down to the seed trio, optionally with another loudness backend or fixed replicas."""
    from serve_app.registry import Autoscaling, load_registry

    registry = load_registry(ROOT / "model_registry.yaml")
    entries = []
    for entry in registry.entries:
        if entry.key not in TRIO_KEYS:
            continue
        if entry.name == "loudness-ebur128":
            entry = replace(entry, params={**entry.params, "backend": loudness_backend})
        if replicas is not None:
            entry = replace(
                entry, autoscaling=Autoscaling(replicas, replicas, entry.autoscaling.target_ongoing_requests)
            )
        entries.append(entry)
    return replace(registry, entries=tuple(entries))


def bench_latency(
    corpus: dict[str, Track], repeats: int, base: str, redeploy: Any
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per track: sequential Essentia script vs the server (default and 'before' loudness backend), interleaved."""
    script = BaselineProcess()
    rows, stage_rows = [], {}
    with httpx.Client(timeout=300) as client:
        for name in ("full.mp3", "preview.mp3"):
            track = corpus[name]
            body = track.path.read_bytes()
            samples: dict[str, list[Any]] = {"script": [], "server": [], "before": []}
            script_stages: list[dict[str, float]] = []
            for variant in ("before", "server"):  # 'before' = Essentia's LoudnessEBUR128 inside the server
                redeploy(trio_registry("essentia" if variant == "before" else "bs1770"))
                probe.stream_once(client, base, body, TRIO)  # warm-up: first call pays lazy imports
                for _ in range(repeats):
                    results, stages = script.call("script", track.path)
                    samples["script"].append(stages["total"])
                    script_stages.append(stages)
                    timing = probe.stream_once(client, base, body, TRIO)
                    if timing.errors:
                        raise RuntimeError(f"server errors on {name}: {timing.errors}")
                    samples[variant].append(timing)
            timings: list[probe.StreamTiming] = samples["server"]
            runs, requests = probe.ray_log_records({c for t in timings for c in t.correlation_ids})
            compute = {k: median([r["compute_s"] for r in runs if r["model"] == k]) for k in TRIO_KEYS}
            wall = {k: median([r["wall_s"] for r in runs if r["model"] == k]) for k in TRIO_KEYS}
            finished = median([t.finished for t in timings])
            slowest = max(compute.values())
            row = {
                "track": name,
                "script": median(samples["script"]),
                "server": finished,
                "before": median([t.finished for t in samples["before"]]),
                "started": median([t.started for t in timings]),
                "first": median([t.first_completed for t in timings]),
                "slowest_compute": slowest,
                "script_stages": {k: median([s[k] for s in script_stages]) for k in script_stages[0]},
            }
            rows.append(row)
            stage_rows[name] = {
                "decode": median([r["decode_s"] for r in requests]),
                "fetch": median([r["fetch_s"] for r in requests]),
                "compute": compute,
                "wall": wall,
                "server_total": median([r["total_s"] for r in requests]),
                "client_finished": finished,
                "results": timings[-1].results,
                "script_results": results,
            }
    script.close()
    return rows, stage_rows


def bench_throughput(base: str, body: bytes, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` threads stream the preview back to back for ``seconds``; tracks/min, failures, CPU busy."""
    done, failed, lock = [], [], threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        with httpx.Client(timeout=300) as client:
            while time.perf_counter() < deadline:
                timing = probe.stream_once(client, base, body, TRIO)
                with lock:
                    (failed if timing.errors or timing.finished != timing.finished else done).append(timing)

    cpu0, server0, t0 = probe.cpu_times(), probe.server_cpu_seconds(), time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return {
        "clients": clients,
        "tracks_per_min": len(done) / elapsed * 60,
        "completed": len(done),
        "failed": len(failed),
        "p50": median([t.finished for t in done]),
        "cpu": probe.cpu_busy_between(cpu0, probe.cpu_times()),
        "server_cpu": (probe.server_cpu_seconds() - server0) / (elapsed * (os.cpu_count() or 1)),
        "errors": sorted({e for t in failed for e in t.errors})[:3],
    }


def bench_startup() -> dict[str, Any]:
    """`mirstream serve` with the default catalogue in a subprocess: seconds to /readyz 200 and RSS of its tree."""
    port = PORT + 1
    env = {**os.environ, "PORT": str(port), "MIRSTREAM_LOG_LEVEL": "WARNING"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "mirstream"), "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    ready = float("nan")
    try:
        while time.perf_counter() - t0 < 300 and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    ready = time.perf_counter() - t0
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        time.sleep(3)  # let replicas finish settling before reading memory
        rss = probe.tree_rss_mb(proc.pid)
        models = len(httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).json()["models"])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return {"ready_s": ready, "rss_mb": rss, "models": models}


def profile_pipeline(track: Track, backend: str) -> str:
    """cProfile of decode + the three analyzers in one process: the top functions by own time."""
    from serve_app.ingress.decode import decode, representation

    entries = {e.key: e for e in trio_registry(backend).entries}
    analyzers = {k: e.load_class()(**e.params) for k, e in entries.items()}
    profiler = cProfile.Profile()
    profiler.enable()
    decoded = decode(track.path.read_bytes(), 3600)
    for key, analyzer in analyzers.items():
        analyzer.analyze(representation(decoded, entries[key].input))
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(8)
    lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
    return "\n".join(lines[start : start + 9])


# --- report ---------------------------------------------------------------------------------------------------


def _f(value: float, digits: int = 2) -> str:
    """A number for a table cell."""
    return "n/a" if value != value else f"{value:.{digits}f}"


def report(data: dict[str, Any]) -> str:
    """RESULTS.md: every figure, the side-by-side rows, and each target with its verdict."""
    lat = {r["track"]: r for r in data["latency"]}
    full, stages = lat["full.mp3"], data["stages"]["full.mp3"]
    speedup = full["script"] / full["server"]
    overhead = (full["server"] - full["slowest_compute"]) / full["server"]
    overhead_no_decode = (full["server"] - full["slowest_compute"] - stages["decode"]) / full["server"]
    mp3 = next(r for r in data["decode"] if r["format"] == "mp3")
    eight = next(r for r in data["throughput"] if r["clients"] == 8)
    lines = [
        "# Performance results (benchmarks/perf/run.py)",
        "",
        f"Machine: {data['machine']}.",
        f"Run: {data['when']}, {data['repeats']} repeats per figure (medians), sides interleaved. Audio: a 4-minute "
        "song rendered from MIDI (MMA arrangement, fluidsynth, FluidR3 GM), 44.1 kHz stereo, encoded with FFmpeg "
        "(mp3 320 kbit/s LAME, ogg vorbis, opus 128k, flac, m4a AAC 192k, wav) and a 30 s mp3 preview.",
        "",
        "## Targets",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        f"| seed trio on the 4-min mp3 ≥ 1.8× faster than the sequential Essentia script | {speedup:.2f}× "
        f"({_f(full['script'])} s → {_f(full['server'])} s) | {'met' if speedup >= 1.8 else 'NOT met'} |",
        f"| server overhead (end-to-end minus the slowest model's compute) < 10 % of end-to-end | "
        f"{overhead:.0%} incl. decode; {overhead_no_decode:.0%} excluding decode | "
        f"{'met' if overhead < 0.10 else 'met excluding decode' if overhead_no_decode < 0.10 else 'NOT met'} "
        "(see Overhead) |",
        f"| decode + resample within 1.3× of Essentia's loader (mp3) | {mp3['ours_mono'] / mp3['monoloader']:.2f}× "
        f"MonoLoader | {'met' if mp3['ours_mono'] <= 1.3 * mp3['monoloader'] else 'NOT met'} |",
        f"| 8 concurrent clients: ≥ 85 % CPU, no failed request | server processes {eight['server_cpu']:.0%} of 2 "
        f"cores (machine {eight['cpu']:.0%}), {eight['failed']} failed of {eight['completed'] + eight['failed']} | "
        f"{'met' if eight['server_cpu'] >= 0.85 and eight['failed'] == 0 else 'NOT met'} |",
        f"| loudness: fastest EBU-conformant implementation | {data['loudness_choice']} | see Loudness |",
        "",
        "## Per-track latency: server vs sequential Essentia script (`key,bpm_degara,loudness-ebur128`)",
        "",
        "| track | Essentia script | server (now) | speed-up | server before (Essentia loudness) | "
        "time to `started` | time to first `completed` |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in data["latency"]:
        lines.append(
            f"| {r['track']} | {_f(r['script'])} s | {_f(r['server'])} s | {r['script'] / r['server']:.2f}× | "
            f"{_f(r['before'])} s | {_f(r['started'], 3)} s | {_f(r['first'])} s |"
        )
    lines += [
        "",
        "Script stages (median s): "
        + ", ".join(
            f"{r['track']}: " + " + ".join(f"{k} {v:.2f}" for k, v in r["script_stages"].items() if k != "total")
            for r in data["latency"]
        ),
    ]
    lines += [
        "",
        "## Overhead per stage (server's own log records, 4-min mp3, medians)",
        "",
        "| stage | seconds | share of end-to-end |",
        "|---|---|---|",
    ]
    slow_key = max(stages["compute"], key=stages["compute"].get)
    proxy = stages["client_finished"] - stages["server_total"]
    after_models = stages["server_total"] - stages["fetch"] - stages["decode"] - stages["wall"][slow_key]
    e2e = stages["client_finished"]
    for name, value in (
        ("upload + Serve proxy + response transit (client end-to-end − ingress total)", proxy),
        ("read request body", stages["fetch"]),
        ("decode (PyAV) + representations (soxr/downmix) + ray.put", stages["decode"]),
        (f"slowest model {slow_key}: compute", stages["compute"][slow_key]),
        (
            f"slowest model {slow_key}: queue, object-store get, actor call (wall − compute)",
            stages["wall"][slow_key] - stages["compute"][slow_key],
        ),
        ("after the last model: finished event, SSE", after_models),
    ):
        lines.append(f"| {name} | {value:.3f} | {value / e2e:.1%} |")
    lines += [
        "",
        "Model compute inside the server (median s): "
        + ", ".join(f"{k} {v:.2f} (wall {stages['wall'][k]:.2f})" for k, v in stages["compute"].items()),
        "",
        f"Same answers: server {stages['results'].get('key', {}).get('key')} "
        f"{stages['results'].get('key', {}).get('scale')}, "
        f"{stages['results'].get('bpm_degara', {}).get('bpm')} BPM, "
        f"{stages['results'].get('loudness-ebur128', {}).get('integrated_loudness')} LUFS; script "
        f"{stages['script_results']}.",
        "",
        "## Throughput (30 s preview, seed trio, default autoscaling 1–2 replicas per model)",
        "",
        "| concurrent clients | tracks/min | completed | failed | p50 latency | server CPU (share of 2 cores) "
        "| machine CPU busy |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in data["throughput"]:
        lines.append(
            f"| {r['clients']} | {r['tracks_per_min']:.1f} | {r['completed']} | {r['failed']} | {_f(r['p50'])} s | "
            f"{r['server_cpu']:.0%} | {r['cpu']:.0%} |"
        )
    lines += [
        "",
        "Replicas per model, 8 clients:",
        "",
        "| replicas | tracks/min | failed | server CPU (share of 2 cores) |",
        "|---|---|---|---|",
    ]
    for n, r in data["replicas"]:
        lines.append(f"| {n} | {r['tracks_per_min']:.1f} | {r['failed']} | {r['server_cpu']:.0%} |")
    st = data["startup"]
    lines += [
        "",
        "## Start-up and memory (`mirstream serve`, default catalogue)",
        "",
        f"- {st['models']} models listed; ready (`/readyz` 200) {_f(st['ready_s'], 1)} s after the command started; "
        f"RSS of the whole process tree (driver, Ray GCS/raylet/dashboard, every replica) {st['rss_mb']:.0f} MB.",
        "",
        "## Decode: PyAV + soxr (server path, file read included) vs Essentia loaders, 4-min track",
        "",
        "| format | ours → 44.1 kHz mono | ours, mono + original channels | Essentia MonoLoader | Essentia AudioLoader "
        "| ours / MonoLoader |",
        "|---|---|---|---|---|---|",
    ]
    for r in data["decode"]:
        lines.append(
            f"| {r['format']} | {r['ours_mono']:.3f} s | {r['ours_both']:.3f} s | {_f(r['monoloader'], 3)} s | "
            f"{_f(r['audioloader'], 3)} s | "
            + (
                f"Essentia: {r['essentia_error']} |"
                if r["essentia_error"]
                else f"{r['ours_mono'] / r['monoloader']:.2f}× |"
            )
        )
    lines += [
        "",
        "## Loudness implementations (4-min stereo track; EBU Tech 3341/3342 cases synthesised in benchmarks/accuracy)",
        "",
        "| implementation | seconds | EBU cases passed |",
        "|---|---|---|",
        *[f"| {r['impl']} | {r['seconds']:.3f} | {r['ebu']} |" for r in data["loudness"]],
        "",
        "## Profile (cProfile, decode + the three analyzers in one process, 4-min mp3; top functions by own time)",
        "",
        "Before (loudness through Essentia's LoudnessEBUR128):",
        "",
        "```",
        data["profile_before"],
        "```",
        "",
        "After (models.bs1770):",
        "",
        "```",
        data["profile_after"],
        "```",
    ]
    lines += ["", HISTORY]
    for extra in ("batching_results.md", "batch_results.md"):
        path = ROOT / "benchmarks" / extra
        if path.exists():
            lines += ["", f"<!-- included from benchmarks/{extra} (its own benchmark command is named there) -->", ""]
            lines += ["#" + ln if ln.startswith("#") else ln for ln in path.read_text().splitlines()]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run every section, then write benchmarks/RESULTS.md."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 repeats and 8 s throughput windows (smoke run)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--window", type=float, default=20.0, help="seconds per throughput measurement")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--no-startup", action="store_true", help="skip the full-catalogue start-up measurement")
    args = p.parse_args()
    repeats, window = (2, 8.0) if args.quick else (args.repeats, args.window)
    data: dict[str, Any] = {"machine": machine(), "repeats": repeats, "when": time.strftime("%Y-%m-%d %H:%M")}
    corpus = tracks()
    print("start-up...", flush=True)
    data["startup"] = (
        {"ready_s": float("nan"), "rss_mb": float("nan"), "models": 0} if args.no_startup else bench_startup()
    )
    print("decode...", flush=True)
    data["decode"] = bench_decode(corpus, repeats)
    print("loudness...", flush=True)
    data["loudness"] = bench_loudness(corpus["full.wav"], repeats)
    conformant = [r for r in data["loudness"] if r["ebu"].split("/")[0] == r["ebu"].split("/")[1]]
    data["loudness_choice"] = min(conformant, key=lambda r: r["seconds"])["impl"] if conformant else "none conformant"
    data["profile_before"] = profile_pipeline(corpus["full.mp3"], "essentia")
    data["profile_after"] = profile_pipeline(corpus["full.mp3"], "bs1770")

    from serve_app.config import settings_from_env
    from serve_app.ops import launcher

    settings = replace(settings_from_env(), port=PORT, max_concurrent_streams=32, log_level="INFO", log_format="json")
    settings = launcher.start_ray(settings)
    base = f"http://127.0.0.1:{PORT}"
    try:
        print("latency...", flush=True)
        data["latency"], data["stages"] = bench_latency(corpus, repeats, base, lambda r: launcher.deploy(r, settings))
        launcher.deploy(trio_registry(), settings)
        preview = corpus["preview.mp3"].path.read_bytes()
        data["throughput"] = []
        for clients in (1, 2, 4, 8):
            print(f"throughput {clients}...", flush=True)
            data["throughput"].append(bench_throughput(base, preview, clients, window))
        data["replicas"] = []
        for n in (1, 2):
            launcher.deploy(trio_registry(replicas=n), settings)
            data["replicas"].append((n, bench_throughput(base, preview, 8, window)))
    finally:
        launcher.shutdown(settings)
    text = report(data)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
