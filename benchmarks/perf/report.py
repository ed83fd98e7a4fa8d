"""RESULTS.md from one run's measurements (benchmarks/perf/run.py): every figure, side by side, with the verdicts.

Each section is one function returning its lines; a section whose measurement was skipped says so.
"""

from __future__ import annotations

import math
import os
import statistics
from pathlib import Path
from typing import Any

from benchmarks.perf import fresh_serve

ROOT = Path(__file__).resolve().parents[2]
TRIO_KEYS = ("key:1", "bpm_degara:1", "loudness-ebur128:1")
SPEEDUP_TRACKS = ("full.mp3", "loud.mp3")  # the 4-minute quiet render and its loud master
SPEEDUP_TARGET = 2.2
IDLE_S = 300.0  # MIRSTREAM_IDLE_SECONDS' default: how long a cold model's replicas stay up without work
CORES = os.cpu_count() or 1
HISTORY = """## Before/after (earlier full runs of this benchmark on the same quiet machine, 4-min mp3, seed trio)

| state of the code | server end-to-end | speed-up vs script | loudness-ebur128 compute in the server |
|---|---|---|---|
| Essentia LoudnessEBUR128 + libebur128 true peak (before) | 2.10 s | 1.02× | ~1.4 s |
| models.bs1770 K-weighting + libebur128 true peak (commit 6a2fb87) | 1.80 s | 1.19× | 1.41 s |
| models.bs1770 K-weighting + pruned true peak (commit 1155eee) | 1.06 s | 2.00× | 0.58 s |
| now | see "Seed trio" above | see above | see above |

The profile showed libebur128's full 4x oversampling for true peak (0.6–0.7 s) and Essentia's
LoudnessEBUR128 (0.65 s) as the critical path; both were replaced by exact, cheaper computations."""


def median(values: list[float]) -> float:
    """Median of the values that are numbers, NaN for none."""
    kept = [v for v in values if not math.isnan(v)]
    return statistics.median(kept) if kept else float("nan")


def _f(value: float, digits: int = 2) -> str:
    """A number for a table cell."""
    return "n/a" if value != value else f"{value:.{digits}f}"


def skipped(title: str, flag: str) -> list[str]:
    """A section that this run did not measure."""
    return [f"## {title}", "", f"Not measured in this run (`{flag}`).", ""]


def intro(data: dict[str, Any]) -> list[str]:
    """What was measured, how, and on which machine."""
    return [
        "# Performance results (benchmarks/perf/run.py)",
        "",
        f"Machine: {data['machine']}; load average at the end {data.get('load_end', 'n/a')}.",
        "",
        f"Run: {data['when']}, `{data['command']}`, {data['repeats']} repeats per latency figure (medians), the server "
        f"and the script interleaved; the whole run took {data.get('elapsed_min', float('nan')):.1f} min. Audio: a "
        "4-minute song rendered from MIDI (MMA arrangement, fluidsynth, FluidR3 GM), 44.1 kHz stereo at about "
        "-29 LUFS (`full.*`: mp3 320 kbit/s LAME, ogg vorbis, opus 128k, flac, m4a AAC 192k, wav), its loud master "
        "(`loud.mp3`: compressed and brickwall-limited to about -9 LUFS, true peaks above 0 dBTP) and a 30 s mp3 "
        "preview. Everything below comes from this one run, so the ratios compare like with like; absolute "
        "seconds move with the machine's other work (this VM is shared: see the load averages).",
        "",
        "How: the default server is the real `mirstream serve` in a subprocess, as a fresh install runs it (default "
        "registry, an empty `MIRSTREAM_MODELS_DIR`, no other `MIRSTREAM_*` setting), measured from outside over "
        "HTTP, /proc (memory by PSS, `benchmarks/memory.py`; CPU by process) and its own JSON log records "
        "(`model_run`: each model's `compute_s`; `request`: decode). The latency and throughput sections deploy the "
        "seed trio through `launcher.start_ray` + `launcher.deploy`. The sequential Essentia script is "
        "`benchmarks/perf/baseline.py` (MonoLoader → KeyExtractor, RhythmExtractor2013 degara; AudioLoader → "
        "LoudnessEBUR128), run warm in its own process.",
        "",
    ]


def targets(data: dict[str, Any]) -> list[str]:
    """Each target with the measured value and the verdict."""
    lines = ["## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    lat = {r["track"]: r for r in data.get("latency", [])}
    for name in SPEEDUP_TRACKS:
        if name in lat:
            r = lat[name]
            speedup = r["script"] / r["server"]
            lines.append(
                f"| seed trio on `{name}` ≥ {SPEEDUP_TARGET}× faster than the sequential Essentia script | "
                f"{speedup:.2f}× ({_f(r['script'])} s → {_f(r['server'])} s) | "
                f"{'met' if speedup >= SPEEDUP_TARGET else 'NOT met'} |"
            )
    if "full.mp3" in lat:
        full, stages = lat["full.mp3"], data["stages"]["full.mp3"]
        overhead = (full["server"] - full["slowest_compute"]) / full["server"]
        no_decode = (full["server"] - full["slowest_compute"] - stages["decode"]) / full["server"]
        verdict = "met" if overhead < 0.10 else "met excluding decode" if no_decode < 0.10 else "NOT met"
        lines.append(
            "| server overhead (end-to-end minus the slowest model's compute) < 10 % of end-to-end, `full.mp3` | "
            f"{overhead:.0%} incl. decode; {no_decode:.0%} excluding decode | {verdict} (see Overhead) |"
        )
    if data.get("decode"):
        mp3 = next(r for r in data["decode"] if r["format"] == "mp3")
        ratio = mp3["ours_mono"] / mp3["monoloader"]
        lines.append(
            f"| decode + resample within 1.3× of Essentia's loader (mp3) | {ratio:.2f}× MonoLoader | "
            f"{'met' if ratio <= 1.3 else 'NOT met'} |"
        )
    if data.get("throughput"):
        eight = next(r for r in data["throughput"] if r["clients"] == 8)
        ok = eight["server_cpu"] >= 0.85 and eight["failed"] == 0
        lines.append(
            f"| 8 concurrent clients: ≥ 85 % CPU, no failed request | server processes {eight['server_cpu']:.0%} of "
            f"{CORES} cores (machine {eight['cpu']:.0%}), {eight['failed']} failed of "
            f"{eight['completed'] + eight['failed']} | {'met' if ok else 'NOT met'} |"
        )
    if data.get("loudness"):
        best = loudness_choice(data["loudness"])
        name = best["impl"] if best else "none conformant"
        verdict = "met" if "(served)" in name else "NOT met"
        lines.append(
            f"| loudness with true peak: the served one is the fastest EBU-conformant (user CPU) | {name} | "
            f"{verdict} (see Loudness) |"
        )
    serve = data.get("serve")
    if serve:
        outcome = serve["answers"]["outcome"]
        ok = sum(1 for o in outcome.values() if o[0] == "completed")
        lines.append(
            f"| every served model of the default catalogue answers | {ok} of {len(serve['served'])} completed "
            f"| {'met' if ok == len(serve['served']) else 'NOT met'} |"
        )
        lines.append(
            f"| default `mirstream serve`: ready, idle memory, stop | /healthz 200 after {serve['healthz_s']:.1f} s; "
            f"idle PSS {serve['idle_memory'].pss_mb:.0f} MB; SIGTERM → all gone "
            f"{_f(serve['stop']['sigterm_to_gone'], 1)} s | measured (no target) |"
        )
        if serve.get("fan_out"):
            fan = fan_summary(serve)
            lines.append(
                f"| every served model on one 4-min track: end-to-end vs Σ compute_s / {CORES} cores | "
                f"{fan['wall']:.1f} s vs {fan['compute'] / CORES:.1f} s (Σ CPU of the server / {CORES}: "
                f"{fan['total_cpu'] / CORES:.1f} s) | measured (see Fan-out) |"
            )
    return lines + [""]


def loudness_choice(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The fastest implementation (user CPU) among those measuring what the server serves (loudness and true peak)
    and passing every EBU case."""
    full = [r for r in rows if "incl." in r["impl"] and r["ebu"].split("/")[0] == r["ebu"].split("/")[1]]
    return min(full, key=lambda r: r.get("user", r["seconds"])) if full else None


def memory_rows(report: Any) -> list[str]:
    """A per-process memory table, largest PSS first, with the total."""
    lines = ["| process (role) | PSS MB | USS MB | RSS MB |", "|---|---|---|---|"]
    for r in sorted(report.rows, key=lambda r: -(r.pss_mb if r.pss_mb == r.pss_mb else 0.0)):
        name = r.role if not r.role.startswith("/") else "`mirstream serve` (the driver)"
        lines.append(f"| {name} | {_f(r.pss_mb, 1)} | {_f(r.uss_mb, 1)} | {_f(r.rss_mb, 1)} |")
    lines.append(
        f"| **total ({len(report.rows)} processes)** | **{report.pss_mb:.0f}** | {report.uss_mb:.0f} | "
        f"{report.rss_mb:.0f} (counts shared pages once per process) |"
    )
    return lines


def memory_by_kind(report: Any, serve: dict[str, Any]) -> list[str]:
    """Memory grouped: Ray and Serve's own processes, the ingress, and model replicas per runtime."""
    runtime_of = {name: serve["runtimes"][key] for name, key in serve["deployments"].items()}
    groups: dict[str, list[Any]] = {}
    for r in report.rows:
        deployment = r.role.split(":")[-1] if r.role.startswith("ServeReplica:") else ""
        kind = (
            "ingress"
            if deployment == "ingress"
            else f"model replicas: {runtime_of[deployment]}"
            if deployment in runtime_of
            else "Ray + Serve system processes and the driver"
        )
        groups.setdefault(kind, []).append(r)
    lines = ["| kind | processes | PSS MB | PSS MB per process | of which anonymous |", "|---|---|---|---|---|"]
    for kind, rows in sorted(groups.items(), key=lambda kv: -sum(r.pss_mb for r in kv[1])):
        pss = sum(r.pss_mb for r in rows)
        anon = sum(r.pss_anon_mb for r in rows)
        lines.append(f"| {kind} | {len(rows)} | {pss:.0f} | {pss / len(rows):.0f} | {anon:.0f} |")
    lines.append(f"| **total** | {len(report.rows)} | **{report.pss_mb:.0f}** | | |")
    return lines


def serve_section(data: dict[str, Any]) -> list[str]:
    """Part 1: the default `mirstream serve` from start to stop."""
    serve = data.get("serve")
    if not serve:
        return skipped("Default `mirstream serve` (fresh install)", "--no-serve")
    withheld = serve["listed"] - len(serve["served"])
    lines = [
        "## Default `mirstream serve` (fresh install)",
        "",
        f"`mirstream serve` with an empty models directory: {serve['listed']} models catalogued, "
        f"{len(serve['served'])} served ({withheld} withheld until `mirstream models fetch`), "
        f"{len(serve['warm'])} kept warm ({', '.join(serve['warm'])}); the others scale from zero. "
        f"`GET /v1/models` lists {len(serve['available'])} as available.",
        "",
        f"- **Ready**: `/healthz` answered 200 **{serve['healthz_s']:.1f} s** after the command started (Ray, Serve's "
        "controller and proxy, the ingress and the warm replicas all up).",
        f"- **Idle memory** ({serve['idle_memory'].pss_mb:.0f} MB PSS in all), 3 s after ready:",
        "",
        *memory_rows(serve["idle_memory"]),
        "",
    ]
    if serve["cold"]:
        lines += [
            "### Cold start per runtime (first request needing a scaled-to-zero model, 30 s preview)",
            "",
            "Each model in turn (models in brackets were started first, so only the named one is cold). Cold start = "
            "the first request's time to that model's `completed` event minus the median of "
            f"{fresh_serve.WARM_REPEATS} warm repeats of the same request; 'waited' is the server's own record of "
            "the cold run's wait for a replica (`model_run` wall − compute).",
            "",
            "| runtime | model | first request: to `completed` | warm: to `completed` | cold start | waited for "
            "a replica (server) |",
            "|---|---|---|---|---|---|",
        ]
        for r in serve["cold"]:
            first = dict((m, f) for _, m, f in fresh_serve.COLD).get(r["model"].split(":")[0], ())
            model = r["model"] + (f" (after {', '.join(first)})" if first else "")
            lines.append(
                f"| {r['runtime']} | {model} | {_f(r['cold_completed'])} s | {_f(r['warm_completed'])} s | "
                f"**{_f(r['cold_start'])} s** | {_f(r['server_queue'])} s |"
            )
        lines.append("")
    else:
        lines += ["Cold starts: not measured in this run (`--no-cold`).", ""]
    answers = serve["answers"]
    outcome = answers["outcome"]
    ok = sum(1 for o in outcome.values() if o[0] == "completed")
    lines += [
        f"### Every served model answers ({ok} of {len(serve['served'])} completed)",
        "",
        f"All {len(serve['served'])} served models on `{answers['track']}` in {len(answers['groups'])} requests sent "
        f"together (at most {serve['cap']} models per request, `MIRSTREAM_MAX_MODELS_PER_REQUEST`; each model graph "
        f"kept in one request). Most of them started cold here, all at once: the last event came "
        f"{answers['wall']:.1f} s after sending.",
        "",
        "| model | runtime | outcome | s to its event |",
        "|---|---|---|---|",
    ]
    for key in serve["served"]:
        state, at, error = outcome.get(key, ("missing", float("nan"), "no event"))
        lines.append(f"| {key} | {serve['runtimes'][key]} | {state}{': ' + error if error else ''} | {_f(at, 1)} |")
    loaded, stop = serve["loaded_memory"], serve["stop"]
    idle, start_idle = serve["loaded_idle_cpu"], serve["idle_cpu"]
    lines += [
        "",
        f"### With every model loaded: {loaded.pss_mb:.0f} MB PSS ({len(loaded.rows)} processes)",
        "",
        *memory_by_kind(loaded, serve),
        "",
        f"Idle CPU (sampled {fresh_serve.IDLE_WINDOW_S:.0f} s, no request): with every model loaded the "
        f"{idle['replica_roles']} replica processes use {idle['replicas']:.3f} CPU-s/s together and the rest of Ray "
        f"and Serve {idle['rest']:.3f} CPU-s/s; just after start ({start_idle['replica_roles']} replica processes) "
        f"{start_idle['replicas']:.3f} + {start_idle['rest']:.3f} CPU-s/s. That is Ray's and Serve's own background "
        f"work; it stops with the replicas when models scale back to zero (after {IDLE_S:.0f} s without a request).",
        "",
        "<details><summary>Per process</summary>",
        "",
        *memory_rows(loaded),
        "",
        "</details>",
        "",
        f"- **Stop**: SIGTERM to the command → every one of its {stop['processes']} processes (tree and Ray session) "
        f"gone in **{_f(stop['sigterm_to_gone'], 1)} s**, with every model loaded; exit code {stop['exit']}"
        + (
            f"; still running after {fresh_serve.STOP_TIMEOUT_S:.0f} s: {', '.join(stop['left'])}"
            if stop["left"]
            else ""
        )
        + ".",
        "",
    ]
    return lines


def fan_summary(serve: dict[str, Any]) -> dict[str, Any]:
    """Medians over the fan-out rounds, per round totals first."""
    rounds = serve["fan_out"]
    models = sorted({k for r in rounds for k in r["compute"]})
    per_model = {
        k: {
            "cpu": median([r["model_cpu"].get(k, float("nan")) for r in rounds]),
            "compute": median([r["compute"].get(k, float("nan")) for r in rounds]),
            "done": median([r["completed_at"].get(k, float("nan")) for r in rounds]),
        }
        for k in models
    }
    return {
        "walls": [r["wall"] for r in rounds],
        "wall": median([r["wall"] for r in rounds]),
        "compute": median([sum(r["compute"].values()) for r in rounds]),
        "model_cpu": median([sum(r["model_cpu"].values()) for r in rounds]),
        "ingress_cpu": median([r["ingress_cpu"] for r in rounds]),
        "total_cpu": median([r["total_cpu"] for r in rounds]),
        "machine_busy": median([r["machine_busy"] for r in rounds]),
        "decode": median([d for r in rounds for d in r["decode"]]),
        "errors": sorted({e for r in rounds for e in r["errors"]}),
        "failed": sorted({k for r in rounds for k, o in r["outcomes"].items() if o != "completed"}),
        "per_model": per_model,
        "requests": rounds[0]["requests"],
    }


def fan_section(data: dict[str, Any]) -> list[str]:
    """Part 3: every served model on one 4-minute track: how well the fan-out packs the cores, what limits it."""
    serve = data.get("serve")
    if not serve or not serve.get("fan_out"):
        return skipped("Fan-out: every served model on one 4-minute track", "--no-serve / --no-fan-out")
    fan = fan_summary(serve)
    per = fan["per_model"]
    longest = max(per, key=lambda k: per[k]["cpu"])
    ray_busy = fan["total_cpu"] / (fan["wall"] * CORES)
    done = sorted((p["done"], k) for k, p in per.items() if p["done"] == p["done"])
    last, runner_up = done[-1], done[-2]
    lines = [
        "## Fan-out: every served model on one 4-minute track",
        "",
        f"The {len(per)} served models on `{serve['fan_track']}` in {fan['requests']} requests sent together (the "
        f"per-request cap is {serve['cap']}), every deployment warm (each had started and answered above); "
        f"{len(fan['walls'])} round(s): {', '.join(f'{w:.1f} s' for w in fan['walls'])} end-to-end. Same server as "
        "above.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| end-to-end (both requests sent → last `finished`), median | **{fan['wall']:.1f} s** |",
        f"| Σ compute_s over the models (server log records) / {CORES} cores | {fan['compute'] / CORES:.1f} s "
        f"(Σ {fan['compute']:.1f} s) |",
        f"| Σ CPU of the model replicas / {CORES} cores | {fan['model_cpu'] / CORES:.1f} s (Σ {fan['model_cpu']:.1f} "
        "CPU-s) |",
        f"| Σ CPU of every server process (replicas, ingress {fan['ingress_cpu']:.1f} CPU-s, proxy, Ray) / "
        f"{CORES} cores | {fan['total_cpu'] / CORES:.1f} s |",
        f"| packing: (Σ CPU of the server / cores) / end-to-end | {fan['total_cpu'] / CORES / fan['wall']:.0%} |",
        f"| server's share of the {CORES} cores during the run | {ray_busy:.0%} (the whole machine, other jobs "
        f"included: {fan['machine_busy']:.0%}) |",
        f"| longest single model (one thread per replica): {longest} | {per[longest]['cpu']:.1f} CPU-s, its "
        f"`completed` at {per[longest]['done']:.1f} s |",
        f"| decode per request (ingress) | {fan['decode']:.2f} s |",
        f"| failed models / error events | {', '.join(fan['failed']) or 'none'} / {len(fan['errors'])} |",
        "",
        "What limits it:",
        "",
        f"- compute_s is each analyzer's wall time inside its replica, so with {len(per)} models sharing {CORES} "
        f"cores it counts every model's wait for a core: Σ compute_s / cores ({fan['compute'] / CORES:.0f} s) "
        "overstates the work. The replicas' own CPU time is the work: "
        f"{fan['model_cpu']:.0f} CPU-s, {fan['model_cpu'] / CORES:.0f} s on {CORES} perfectly packed cores.",
        f"- The server's processes kept {ray_busy:.0%} of the {CORES} cores busy while the machine as a whole was "
        f"{fan['machine_busy']:.0%} busy"
        + (
            ": the cores were full, so other work on this shared machine took the difference, and the end-to-end "
            "time here is an upper bound."
            if fan["machine_busy"] > 0.9 and ray_busy < 0.85
            else ": the fan-out keeps the cores busy; beyond that only less CPU per model helps."
            if ray_busy >= 0.85
            else ": cores stayed idle for part of the run; the tail is one long model (below)."
        ),
        f"- Each replica runs its model on one thread (num_cpus 0.03 → 1 thread), so the longest single model, "
        f"{longest} at {per[longest]['cpu']:.0f} CPU-s, is a floor for the end-to-end time however many cores there "
        "are. The cores are shared fairly, so the longest model gets no more than the others while they run and "
        f"finishes last: after the second-to-last model ({runner_up[1]}) completed at {runner_up[0]:.1f} s, only "
        f"{last[1]} was left, on one thread, for {last[0] - runner_up[0]:.1f} s of the {fan['wall']:.1f} s "
        f"({CORES - 1} of {CORES} cores free for the server then).",
        "",
        "| model | runtime | replica CPU s | compute_s (wall inside the analyzer) | `completed` at s |",
        "|---|---|---|---|---|",
    ]
    for key in sorted(per, key=lambda k: -per[k]["cpu"] if per[k]["cpu"] == per[k]["cpu"] else 0.0):
        p = per[key]
        lines.append(
            f"| {key} | {serve['runtimes'].get(key, '?')} | {_f(p['cpu'])} | {_f(p['compute'])} | {_f(p['done'], 1)} |"
        )
    return lines + [""]


def overhead(stages: dict[str, Any]) -> list[tuple[str, float, str]]:
    """Where the server's end-to-end time goes: (stage, seconds, note) from the client's and the server's clocks."""
    slow = max(stages["compute"], key=stages["compute"].get)
    e2e = stages["client_finished"]
    after = stages["server_total"] - stages["fetch"] - stages["decode"] - stages["wall"][slow]
    return [
        (
            "upload + Serve proxy + response transit (client end-to-end − ingress total)",
            e2e - stages["server_total"],
            "",
        ),
        ("read request body", stages["fetch"], ""),
        ("decode (PyAV) + representations (soxr/downmix) + ray.put", stages["decode"], ""),
        ("slowest model: compute", stages["compute"][slow], f" {slow}"),
        (
            "slowest model: queue, object-store get, actor call (wall − compute)",
            stages["wall"][slow] - stages["compute"][slow],
            "",
        ),
        ("after the last model: finished event, SSE", after, ""),
    ]


def latency_section(data: dict[str, Any]) -> list[str]:
    """Part 2: the seed trio through the server vs the script, per track, and where the server's time goes."""
    if not data.get("latency"):
        return skipped("Seed trio: server vs sequential Essentia script", "--no-latency")
    lines = [
        "## Seed trio: server vs sequential Essentia script (`key,bpm_degara,loudness-ebur128`)",
        "",
        "| track | Essentia script | server (now) | speed-up | server before (Essentia loudness) | "
        "time to `started` | time to first `completed` |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in data["latency"]:
        lines.append(
            f"| {r['track']} | {_f(r['script'])} s | {_f(r['server'])} s | **{r['script'] / r['server']:.2f}×** | "
            f"{_f(r['before'])} s | {_f(r['started'], 3)} s | {_f(r['first'])} s |"
        )
    lines += [
        "",
        "Script stages (median s): "
        + "; ".join(
            f"{r['track']}: " + " + ".join(f"{k} {v:.2f}" for k, v in r["script_stages"].items() if k != "total")
            for r in data["latency"]
        ),
        "",
        "### Overhead per stage (server's own log records, medians)",
        "",
        "| stage | " + " | ".join(f"`{n}` s (share)" for n in SPEEDUP_TRACKS) + " |",
        "|---|" + "---|" * len(SPEEDUP_TRACKS),
    ]
    rows: dict[str, list[str]] = {}
    for name in SPEEDUP_TRACKS:
        e2e = data["stages"][name]["client_finished"]
        for label, value, note in overhead(data["stages"][name]):
            rows.setdefault(label, []).append(f"{value:.3f} ({value / e2e:.0%}){note}")
    for label, cells in rows.items():
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += where_time_goes(data)
    for name in SPEEDUP_TRACKS:
        stages = data["stages"][name]
        res = stages["results"]
        lines += [
            f"`{name}`: model compute inside the server (median s) "
            + ", ".join(f"{k} {v:.2f} (wall {stages['wall'][k]:.2f})" for k, v in stages["compute"].items())
            + f". Same answers: server {res.get('key', {}).get('key')} {res.get('key', {}).get('scale')}, "
            f"{_f(res.get('bpm_degara', {}).get('bpm', float('nan')))} BPM, "
            f"{res.get('loudness-ebur128', {}).get('integrated_loudness')} LUFS "
            f"(true peak {res.get('loudness-ebur128', {}).get('true_peak')} dBTP); script {stages['script_results']}.",
            "",
        ]
    return lines


def where_time_goes(data: dict[str, Any]) -> list[str]:
    """The server's critical path against the same work alone in one process, and what 2.2x would need."""
    alone = data.get("trio_alone")
    if not alone:
        return ["(The in-process floor per stage needs the loudness section: not run, `--no-loudness`.)", ""]
    lat = {r["track"]: r for r in data["latency"]}
    lines = [
        "Where the time goes: the server's critical path is decode (one thread, before any model starts), then the "
        "slowest model while the other two share the cores with it. The same stages alone in one process "
        f"(user CPU s, medians of {data['repeats']}, no server) give the floor on {CORES} cores: decode + "
        f"max(slowest model, Σ models / {CORES}). 'In the server' is each model replica's own user / system CPU per "
        "request (/proc; median, and the largest system time seen).",
        "",
        "| track | decode alone | key alone | bpm_degara alone | loudness-ebur128 alone | floor on "
        f"{CORES} cores | server now (decode + slowest model's wall) | server needed for {SPEEDUP_TARGET}× |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in SPEEDUP_TRACKS:
        a, st = alone[name], data["stages"][name]
        models = [a[k] for k in TRIO_KEYS]
        floor = a["decode"] + max(max(models), sum(models) / CORES)
        slow = max(st["compute"], key=st["compute"].get)
        lines.append(
            f"| {name} | {a['decode']:.2f} | {a['key:1']:.2f} | {a['bpm_degara:1']:.2f} | "
            f"{a['loudness-ebur128:1']:.2f} (+{a['loudness-ebur128:1 sys']:.2f} sys) | {floor:.2f} s | "
            f"{st['decode']:.2f} + {st['wall'][slow]:.2f} s | ≤ {lat[name]['script'] / SPEEDUP_TARGET:.2f} s "
            "end-to-end |"
        )
    lines += ["", "| track | " + " | ".join(f"{k} in the server: user / system (max system)" for k in TRIO_KEYS) + " |"]
    lines.append("|---|" + "---|" * len(TRIO_KEYS))
    for name in SPEEDUP_TRACKS:
        cpu = data["stages"][name].get("replica_cpu", {})
        cells = []
        for key in TRIO_KEYS:
            deployment = key.replace(":", "-v")
            user, system, worst = cpu.get(deployment, (float("nan"),) * 3)
            cells.append(f"{_f(user)} / {_f(system)} ({_f(worst)})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def throughput_section(data: dict[str, Any]) -> list[str]:
    """Tracks per minute with 1-8 clients, and with 1 or 2 replicas per model."""
    if not data.get("throughput"):
        return skipped("Throughput", "--no-throughput")
    lines = [
        "## Throughput (30 s preview, seed trio, default autoscaling 1–2 replicas per model)",
        "",
        f"| concurrent clients | tracks/min | completed | failed | p50 latency | server CPU (share of {CORES} cores) "
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
        f"| replicas | tracks/min | failed | server CPU (share of {CORES} cores) |",
        "|---|---|---|---|",
    ]
    for n, r in data["replicas"]:
        lines.append(f"| {n} | {r['tracks_per_min']:.1f} | {r['failed']} | {r['server_cpu']:.0%} |")
    return lines + [""]


def decode_section(data: dict[str, Any]) -> list[str]:
    """PyAV + soxr vs Essentia's loaders per format."""
    if not data.get("decode"):
        return skipped("Decode", "--no-decode")
    lines = [
        "## Decode: PyAV + soxr (server path, file read included) vs Essentia loaders, 4-min track",
        "",
        "| format | ours → 44.1 kHz mono | ours, mono + original channels | Essentia MonoLoader | Essentia AudioLoader "
        "| ours / MonoLoader |",
        "|---|---|---|---|---|---|",
    ]
    for r in data["decode"]:
        last = f"Essentia: {r['essentia_error']}" if r["essentia_error"] else f"{r['ours_mono'] / r['monoloader']:.2f}×"
        lines.append(
            f"| {r['format']} | {r['ours_mono']:.3f} s | {r['ours_both']:.3f} s | {_f(r['monoloader'], 3)} s | "
            f"{_f(r['audioloader'], 3)} s | {last} |"
        )
    return lines + [""]


def loudness_section(data: dict[str, Any]) -> list[str]:
    """EBU R128 implementations and the cProfile of the trio."""
    if not data.get("loudness"):
        return skipped("Loudness implementations and profile", "--no-loudness")
    return [
        "## Loudness implementations (4-min stereo track; EBU Tech 3341/3342 cases synthesised in benchmarks/accuracy)",
        "",
        "| implementation | seconds | user CPU s | system CPU s | EBU cases passed |",
        "|---|---|---|---|---|",
        *[
            f"| {r['impl']} | {r['seconds']:.3f} | {r['user']:.3f} | {r['system']:.3f} | {r['ebu']} |"
            for r in data["loudness"]
        ],
        "",
        "Medians over shuffled rounds. System time is the kernel's share (page faults and huge-page work for the "
        "implementation's large temporary arrays); it depends on what ran just before in the process, so the "
        "implementations are compared on user CPU.",
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
        "",
    ]


def report(data: dict[str, Any]) -> str:
    """RESULTS.md: every figure, the side-by-side rows, and each target with its verdict."""
    lines = intro(data) + targets(data) + serve_section(data) + fan_section(data) + latency_section(data)
    lines += throughput_section(data) + decode_section(data) + loudness_section(data) + [HISTORY]
    for extra in ("graph_sharing_results.md", "batching_results.md", "batch_results.md"):
        path = ROOT / "benchmarks" / extra
        if path.exists():
            lines += ["", f"<!-- included from benchmarks/{extra} (its own benchmark command is named there) -->", ""]
            lines += ["#" + ln if ln.startswith("#") else ln for ln in path.read_text().splitlines()]
    return "\n".join(lines) + "\n"
