"""Performance benchmark (issues 6 and 14): the server side by side with a sequential Essentia script, on this machine.

    .venv/bin/python -m benchmarks.perf.run            # ~15 min; writes benchmarks/RESULTS.md
    .venv/bin/python -m benchmarks.perf.run --quick    # 2 repeats, 1 fan-out round, short throughput windows

Sections, each skippable for development (``--no-serve``, ``--no-cold``, ``--no-fan-out``, ``--no-decode``,
``--no-loudness``, ``--no-latency``, ``--no-throughput``): the default ``mirstream serve`` as a fresh install runs
it (fresh_serve.py: time to /healthz, memory, cold starts per runtime, every model answering, every model on one
4-minute track, shutdown); decode; loudness implementations; the seed trio through the server vs the script on
the quiet render and the loud master; throughput. Every ratio is measured in the same run with the two sides
interleaved (A, B, A, B...) and reported as medians, because this machine is shared and noisy. Needs Debian mma,
fluidsynth and fluid-soundfont-gm to render the 4-minute song once (cached, see corpus.py).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pickle
import platform
import pstats
import random
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.perf import fresh_serve, probe
from benchmarks.perf.baseline import BaselineProcess
from benchmarks.perf.corpus import Track, masters, tracks
from benchmarks.perf.report import SPEEDUP_TRACKS, TRIO_KEYS, median, report

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
TRIO = "key,bpm_degara,loudness-ebur128"
PORT = 8791
LATENCY_TRACKS = ("full.mp3", "loud.mp3", "preview.mp3")


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
            try:
                theirs = baseline.call("load", track.path)
            except RuntimeError as exc:  # Essentia's loader can segfault on a codec it lacks (seen with opus)
                print(f"  {exc}", flush=True)
                theirs = {"error": "Essentia's loader crashed (the process died) on this file"}
                baseline = BaselineProcess()
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
    user: dict[str, list[float]] = {name: [] for name in impls}
    system: dict[str, list[float]] = {name: [] for name in impls}
    names = list(impls)
    order = random.Random(7)
    for name in names:  # warm-up: the first call of each pays first-touch page faults for its buffers
        run(impls[name], x, rate)
    for _ in range(repeats):
        order.shuffle(names)  # no implementation always follows the same one (allocator state carries over)
        for name in names:
            t, c = time.perf_counter(), probe.own_cpu()
            run(impls[name], x, rate)
            times[name].append(time.perf_counter() - t)
            used = probe.cpu_split(c)
            user[name].append(used[0])
            system[name].append(used[1])
    for name, impl in impls.items():
        passed = 0
        for _case, _desc, signal_, expect in cases:
            result = run(impl, signal_, EBU_RATE)
            measured = {k: v for k, v in expect.items() if k != "TP" or result.get("true_peak") is not None}
            passed += all(ok for _, ok in check(measured, result).values())
        rows.append(
            {
                "impl": name,
                "seconds": median(times[name]),
                "user": median(user[name]),
                "system": median(system[name]),
                "ebu": f"{passed}/{len(cases)}",
            }
        )
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
    """Per track: sequential Essentia script vs the server (default and 'before' loudness backend), interleaved.

    One deployment per variant ('before' = Essentia's LoudnessEBUR128 inside the server); within it every track gets
    a warm-up request, then ``repeats`` rounds of script, server.
    """
    script = BaselineProcess()
    samples: dict[str, dict[str, list[Any]]] = {
        name: {"script": [], "server": [], "before": [], "stages": [], "replica_cpu": []} for name in LATENCY_TRACKS
    }
    script_results: dict[str, Any] = {}
    with httpx.Client(timeout=300) as client:
        for variant in ("before", "server"):
            redeploy(trio_registry("essentia" if variant == "before" else "bs1770"))
            for name in LATENCY_TRACKS:
                track = corpus[name]
                body = track.path.read_bytes()
                probe.stream_once(client, base, body, TRIO)  # warm-up: first call pays lazy imports
                for _ in range(repeats):
                    script_results[name], stages = script.call("script", track.path)
                    samples[name]["script"].append(stages["total"])
                    samples[name]["stages"].append(stages)
                    before = probe.replica_cpu(os.getpid())
                    timing = probe.stream_once(client, base, body, TRIO)
                    after = probe.replica_cpu(os.getpid())
                    if timing.errors:
                        raise RuntimeError(f"server errors on {name}: {timing.errors}")
                    samples[name][variant].append(timing)
                    if variant == "server":
                        samples[name]["replica_cpu"].append(
                            {k: (after[k][0] - v[0], after[k][1] - v[1]) for k, v in before.items() if k in after}
                        )
    script.close()
    rows, stage_rows = [], {}
    for name in LATENCY_TRACKS:
        timings: list[probe.StreamTiming] = samples[name]["server"]
        runs, requests = probe.ray_log_records({c for t in timings for c in t.correlation_ids})
        compute = {k: median([r["compute_s"] for r in runs if r["model"] == k]) for k in TRIO_KEYS}
        wall = {k: median([r["wall_s"] for r in runs if r["model"] == k]) for k in TRIO_KEYS}
        finished = median([t.finished for t in timings])
        stages = samples[name]["stages"]
        rows.append(
            {
                "track": name,
                "script": median(samples[name]["script"]),
                "server": finished,
                "before": median([t.finished for t in samples[name]["before"]]),
                "started": median([t.started for t in timings]),
                "first": median([t.first_completed for t in timings]),
                "slowest_compute": max(compute.values()),
                "script_stages": {k: median([s[k] for s in stages]) for k in stages[0]},
            }
        )
        stage_rows[name] = {
            "decode": median([r["decode_s"] for r in requests]),
            "fetch": median([r["fetch_s"] for r in requests]),
            "compute": compute,
            "wall": wall,
            "server_total": median([r["total_s"] for r in requests]),
            "client_finished": finished,
            "results": timings[-1].results,
            "script_results": script_results[name],
            "replica_cpu": {
                d: (
                    median([r[d][0] for r in samples[name]["replica_cpu"] if d in r]),
                    median([r[d][1] for r in samples[name]["replica_cpu"] if d in r]),
                    max((r[d][1] for r in samples[name]["replica_cpu"] if d in r), default=float("nan")),
                )
                for d in samples[name]["replica_cpu"][0]
            },
        }
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


def trio_alone(corpus: dict[str, Track], repeats: int) -> dict[str, dict[str, float]]:
    """Per 4-minute track, user CPU seconds of the decode and of each trio model alone in this process (no server,
    no other model sharing the cores), and the system seconds each model added: the floor of each stage."""
    from serve_app.ingress.decode import decode, representation

    entries = {e.key: e for e in trio_registry().entries}
    analyzers = {k: e.load_class()(**e.params) for k, e in entries.items()}
    out = {}
    for name in SPEEDUP_TRACKS:
        body = corpus[name].path.read_bytes()
        cpu: dict[str, list[float]] = {
            "decode": [],
            **{k: [] for k in analyzers},
            **{f"{k} sys": [] for k in analyzers},
        }
        for i in range(repeats + 1):  # the first round is a warm-up
            c = probe.own_cpu()
            decoded = decode(body, 3600)
            inputs = {k: representation(decoded, entries[k].input) for k in analyzers}
            if i:
                cpu["decode"].append(sum(probe.cpu_split(c)))
            for key, analyzer in analyzers.items():
                c = probe.own_cpu()
                analyzer.analyze(inputs[key])
                if i:
                    user, system = probe.cpu_split(c)
                    cpu[key].append(user)
                    cpu[f"{key} sys"].append(system)
        out[name] = {k: median(v) for k, v in cpu.items()}
    return out


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


def server_parts(data: dict[str, Any], corpus: dict[str, Track], args: argparse.Namespace) -> None:
    """The seed trio's latency and the throughput, on a Ray instance started here (after the CLI server stopped)."""
    from serve_app.config import settings_from_env
    from serve_app.ops import launcher

    settings = replace(settings_from_env(), port=args.port, max_concurrent_streams=32, log_level="INFO")
    settings = launcher.start_ray(replace(settings, log_format="json", address=None))
    base = f"http://127.0.0.1:{args.port}"
    try:
        if not args.no_latency:
            print("latency...", flush=True)
            data["latency"], data["stages"] = bench_latency(
                corpus, data["repeats"], base, lambda r: launcher.deploy(r, settings)
            )
        if not args.no_throughput:
            launcher.deploy(trio_registry(), settings)
            preview = corpus["preview.mp3"].path.read_bytes()
            data["throughput"] = []
            for clients in (1, 2, 4, 8):
                print(f"throughput {clients}...", flush=True)
                data["throughput"].append(bench_throughput(base, preview, clients, args.window))
            data["replicas"] = []
            for n in (1, 2):
                launcher.deploy(trio_registry(replicas=n), settings)
                data["replicas"].append((n, bench_throughput(base, preview, 8, args.window)))
    finally:
        launcher.shutdown(settings)


def parse_args() -> argparse.Namespace:
    """Command-line options: repeat counts, output, and one flag per section to skip."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 repeats, 1 fan-out round, 8 s throughput windows")
    p.add_argument("--repeats", type=int, default=5, help="repeats per latency/decode/loudness figure (medians)")
    p.add_argument("--fan-repeats", type=int, default=2, help="rounds of every model on the 4-minute track")
    p.add_argument("--window", type=float, default=20.0, help="seconds per throughput measurement")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--port", type=int, default=PORT, help="port of the latency/throughput server")
    p.add_argument("--serve-port", type=int, default=fresh_serve.PORT, help="port of the `mirstream serve` run")
    p.add_argument("--no-serve", "--no-startup", action="store_true", help="skip the `mirstream serve` part (1 and 3)")
    p.add_argument("--no-cold", action="store_true", help="skip the cold starts per runtime")
    p.add_argument("--no-fan-out", action="store_true", help="skip every model on the 4-minute track")
    p.add_argument("--no-decode", action="store_true", help="skip the decode comparison")
    p.add_argument("--no-loudness", action="store_true", help="skip the loudness implementations and the profile")
    p.add_argument("--no-latency", action="store_true", help="skip the seed trio vs the script")
    p.add_argument("--no-throughput", action="store_true", help="skip the throughput windows")
    p.add_argument("--render", type=Path, help="only write the report from a run's saved measurements (a .pickle)")
    args = p.parse_args()
    if args.quick:
        args.repeats, args.fan_repeats, args.window = 2, 1, 8.0
    return args


def main() -> None:
    """Run every section not skipped, then write benchmarks/RESULTS.md."""
    args = parse_args()
    if args.render:
        write(pickle.loads(args.render.read_bytes()), args.out)
        return
    t0 = time.perf_counter()
    data: dict[str, Any] = {
        "machine": machine(),
        "repeats": args.repeats,
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "command": " ".join([".venv/bin/python -m benchmarks.perf.run", *sys.argv[1:]]),
    }
    corpus = {**tracks(), **masters()}
    if not args.no_serve:
        print("mirstream serve (fresh install)...", flush=True)
        data["serve"] = fresh_serve.run(
            corpus["preview.mp3"],
            corpus["full.mp3"],
            args.fan_repeats,
            port=args.serve_port,
            cold=not args.no_cold,
            fan=not args.no_fan_out,
        )
    if not args.no_decode:
        print("decode...", flush=True)
        data["decode"] = bench_decode(corpus, args.repeats)
    if not args.no_loudness:
        print("loudness...", flush=True)
        data["loudness"] = bench_loudness(corpus["full.wav"], args.repeats)
        data["trio_alone"] = trio_alone(corpus, args.repeats)
        data["profile_before"] = profile_pipeline(corpus["full.mp3"], "essentia")
        data["profile_after"] = profile_pipeline(corpus["full.mp3"], "bs1770")
    if not (args.no_latency and args.no_throughput):
        server_parts(data, corpus, args)
    data["load_end"] = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    data["elapsed_min"] = (time.perf_counter() - t0) / 60
    saved = Path(tempfile.gettempdir()) / f"mirstream-perf-{time.strftime('%Y%m%d-%H%M%S')}.pickle"
    saved.write_bytes(pickle.dumps(data))
    print(f"measurements saved in {saved} (re-render with --render {saved})", flush=True)
    write(data, args.out)


def write(data: dict[str, Any], out: Path) -> None:
    """Render the report from the measurements and write it."""
    text = report(data)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
