"""Memory and time of the madmom analyzers: construction per replica, long tracks, and a beat-accuracy check.

    .venv/bin/python -m benchmarks.madmom_memory construct [--repeats 3] [--source OLD.py]
    .venv/bin/python -m benchmarks.madmom_memory tracks [--minutes 4 10 20] [--source OLD.py]
    .venv/bin/python -m benchmarks.madmom_memory accuracy [--source OLD.py]

Every measurement runs in a fresh subprocess, so a replica's memory is its own. ``--source`` measures another
version of models/madmom_models.py (e.g. ``git show HEAD~1:models/madmom_models.py > /tmp/old.py``) for a
before/after table. Memory is read from /proc: RSS (VmRSS), peak RSS (VmHWM, reset before each analysis) and
PSS (smaps_rollup: shared pages split between the processes that map them).

- construct: RSS/PSS after ``import models.madmom_models`` and after constructing each analyzer, the
  construction time and how many onnxruntime sessions were built.
- tracks: beats_madmom and downbeats_madmom on the benchmark song (benchmarks/perf/corpus.py, 124 BPM)
  tiled to 4, 10 and 20 minutes: peak RSS, time, tempo and the spread of the inter-beat intervals.
- accuracy: MMA grooves with syncopation rendered by fluidsynth at known tempi (cached next to the corpus):
  each tracker's tempo, the F-measure (70 ms) of its beats against the MIDI beat grid, and between the two
  trackers.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ANALYZERS = ("MadmomBeatTracker", "MadmomDownbeatTracker", "MadmomKeyRecognizer", "MadmomChordRecognizer")
TRACKERS = ("MadmomBeatTracker", "MadmomDownbeatTracker")
RATE = 44100
# name: (tempo, MMA grooves, one per 24 bars, seconds)
SONGS = {
    "rock95": (95, ("60sRock", "BasicRock", "JazzRock", "8Beat"), 224),
    "funk100": (100, ("BVFunk", "DSoul", "BVFunk", "60sRock"), 240),
    "ballad72": (72, ("PopBallad", "RockBallad", "PopBallad", "RockBallad"), 240),
    "shuffle132": (132, ("ShuffleBoggie", "Ska", "Jive", "ShuffleBoggie"), 240),
    "rock124": (124, ("60sRock", "BasicRock", "8Beat", "FolkRock"), 240),
    "latin104": (104, ("BossaNova", "Samba", "Mambo", "Salsa"), 240),
}
PROGRESSION = ("Am", "F", "C", "G")


def memory_mb() -> dict[str, float]:
    """This process's RSS, peak RSS and PSS in MB."""
    status = Path("/proc/self/status").read_text()
    rollup = Path("/proc/self/smaps_rollup").read_text()

    def kb(pattern: str, text: str) -> float:
        match = re.search(pattern + r":\s+(\d+) kB", text)
        return int(match.group(1)) / 1024 if match else float("nan")

    return {"rss": kb("VmRSS", status), "peak": kb("VmHWM", status), "pss": kb("Pss", rollup)}


def reset_peak() -> None:
    """Make VmHWM start again from the current RSS (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def load_module(source: str | None) -> Any:
    """models.madmom_models, or the file ``source`` imported under that name."""
    if not source:
        return importlib.import_module("models.madmom_models")
    spec = importlib.util.spec_from_file_location("models.madmom_models", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules["models.madmom_models"] = module
    spec.loader.exec_module(module)
    return module


def count_sessions() -> list[str]:
    """Record every onnxruntime.InferenceSession built from now on (their model paths)."""
    import onnxruntime as ort

    built: list[str] = []
    base = ort.InferenceSession

    class Counting(base):  # type: ignore[misc, valid-type]
        def __init__(self, model: Any, *args: Any, **kwargs: Any) -> None:
            built.append(str(model)[-40:])
            super().__init__(model, *args, **kwargs)

    ort.InferenceSession = Counting
    return built


def child_construct(name: str, source: str | None, sessions: bool) -> dict[str, Any]:
    """Inside the subprocess: memory before/after importing the module and constructing one analyzer."""
    import numpy as np  # noqa: F401 - part of the baseline every replica has

    from models import base, placement  # noqa: F401

    placement.configure(1.0)
    out: dict[str, Any] = {"baseline": memory_mb()}
    built = count_sessions() if sessions else []
    started = time.perf_counter()
    module = load_module(source)
    out["import_s"] = time.perf_counter() - started
    out["imported"] = memory_mb()
    started = time.perf_counter()
    getattr(module, name)()
    out["construct_s"] = time.perf_counter() - started
    out["constructed"] = memory_mb()
    out["sessions"] = len(built)
    return out


def song(seconds: float) -> Any:
    """The benchmark song's mono mix (44.1 kHz float32), tiled to ``seconds``."""
    import numpy as np

    from benchmarks.perf.corpus import CACHE, _read_wav, tracks

    tracks()  # renders the song once if it is not cached
    x, rate = _read_wav(CACHE / "song" / "song.wav")
    assert rate == RATE, rate
    mono = x.mean(axis=0)
    reps = int(np.ceil(seconds * RATE / mono.size))
    return np.ascontiguousarray(np.tile(mono, reps)[: int(seconds * RATE)], dtype=np.float32)


def spread(beats: list[float]) -> float:
    """Largest deviation (%) of a 4-beat-averaged inter-beat interval from the median interval."""
    import numpy as np

    b = np.asarray(beats)
    if len(b) < 6:
        return float("nan")
    ibi = (b[4:] - b[:-4]) / 4
    return float(100 * np.max(np.abs(ibi / np.median(np.diff(b)) - 1)))


def child_track(name: str, minutes: float, source: str | None) -> dict[str, Any]:
    """Inside the subprocess: one tracker on ``minutes`` of the tiled benchmark song."""
    from models import placement
    from models.base import Audio

    placement.configure(1.0)
    analyzer = getattr(load_module(source), name)()
    audio = Audio(song(60 * minutes), RATE)
    before = memory_mb()
    reset_peak()
    started = time.perf_counter()
    result = analyzer.analyze(audio)
    elapsed = time.perf_counter() - started
    after = memory_mb()
    return {
        "seconds": elapsed,
        "rss_before": before["rss"],
        "peak": after["peak"],
        "bpm": result["bpm"],
        "beats": len(result["beats"]),
        "spread_pct": spread(result["beats"]),
        "beats_per_bar": result.get("beats_per_bar"),
    }


def render_song(name: str) -> Path:
    """An MMA arrangement of SONGS[name] rendered by fluidsynth (cached .npy, 44.1 kHz mono)."""
    import numpy as np

    from benchmarks.accuracy.audio_io import render_midi, require
    from benchmarks.perf.corpus import CACHE, _read_wav

    out = CACHE / "madmom" / f"{name}.npy"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tempo, grooves, seconds = SONGS[name]
    lines = [f"Tempo {tempo}"]
    for bar in range(int(np.ceil(seconds * tempo / 240)) + 1):
        if bar % 24 == 0:
            lines.append(f"Groove {grooves[(bar // 24) % len(grooves)]}")
        lines.append(f"{bar + 1} {PROGRESSION[bar % 4]}")
    mma, midi, wav = (out.with_suffix(s) for s in (".mma", ".mid", ".wav"))
    mma.write_text("\n".join(lines) + "\n")
    subprocess.run([require("mma", "mma"), str(mma), "-f", str(midi)], check=True, capture_output=True, timeout=120)
    render_midi(midi, wav)
    x, rate = _read_wav(wav)
    mono = x.mean(axis=0)[: int(seconds * rate)]
    np.save(out, (0.9 * mono / np.abs(mono).max()).astype(np.float32))
    wav.unlink()
    return out


def child_accuracy(name: str, source: str | None) -> dict[str, Any]:
    """Inside the subprocess: both trackers on one rendered song, against its MIDI beat grid and each other."""
    import mir_eval
    import numpy as np

    from models import placement
    from models.base import Audio

    placement.configure(1.0)
    madmom_models = load_module(source)
    tempo = SONGS[name][0]
    samples = np.load(render_song(name))
    grid = np.arange(0.0, samples.size / RATE, 60.0 / tempo)
    out: dict[str, Any] = {"tempo": tempo}
    found = {}
    for cls in TRACKERS:
        started = time.perf_counter()
        result = getattr(madmom_models, cls)().analyze(Audio(samples, RATE))
        beats = np.asarray(result["beats"])
        found[cls] = beats
        out[cls] = {
            "seconds": time.perf_counter() - started,
            "bpm": result["bpm"],
            "spread_pct": spread(result["beats"]),
            "f_grid": mir_eval.beat.f_measure(grid, beats, 0.07),
            "beats_per_bar": result.get("beats_per_bar"),
        }
    out["f_between"] = mir_eval.beat.f_measure(found[TRACKERS[0]], found[TRACKERS[1]], 0.07)
    return out


def run_child(args: list[str]) -> dict[str, Any]:
    """Run this module as a subprocess with ``args``; its last stdout line is JSON."""
    cmd = [sys.executable, "-m", "benchmarks.madmom_memory", *args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=os.environ.copy())
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def construct(repeats: int, source: str | None) -> None:
    """Print a Markdown table: per analyzer, medians over ``repeats`` fresh processes."""
    extra = ["--source", source] if source else []
    print(
        "| analyzer | sessions | import (s) | construct (s), median / min | RSS imported (MB) | RSS built (MB) "
        "| peak RSS (MB) | PSS built (MB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in ANALYZERS:
        runs = [run_child(["child-construct", name, *extra]) for _ in range(repeats)]
        sessions = run_child(["child-construct", name, "--sessions", *extra])["sessions"]

        def med(key: str, sub: str | None = None, runs: list[dict[str, Any]] = runs) -> float:
            return statistics.median(r[key][sub] if sub else r[key] for r in runs)

        print(
            f"| {name} | {sessions} | {med('import_s'):.2f} | {med('construct_s'):.2f} / "
            f"{min(r['construct_s'] for r in runs):.2f} | "
            f"{med('imported', 'rss'):.0f} | {med('constructed', 'rss'):.0f} | {med('constructed', 'peak'):.0f} | "
            f"{med('constructed', 'pss'):.0f} |",
            flush=True,
        )
    baseline = runs[0]["baseline"]
    print(f"\nbaseline (python + numpy + models.base): RSS {baseline['rss']:.0f} MB, PSS {baseline['pss']:.0f} MB")


def tracks(minutes: list[float], source: str | None) -> None:
    """Print a Markdown table: both trackers on the tiled benchmark song at each length."""
    extra = ["--source", source] if source else []
    print("| analyzer | minutes | time (s) | RSS before (MB) | peak RSS (MB) | bpm | beats | IBI spread (%) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in TRACKERS:
        for m in minutes:
            r = run_child(["child-tracks", name, str(m), *extra])
            print(
                f"| {name} | {m:g} | {r['seconds']:.1f} | {r['rss_before']:.0f} | {r['peak']:.0f} | {r['bpm']} | "
                f"{r['beats']} | {r['spread_pct']:.1f} |",
                flush=True,
            )


def accuracy(source: str | None) -> None:
    """Print a Markdown table: both trackers on each rendered song."""
    extra = ["--source", source] if source else []
    print(
        "| song | tempo | beats bpm | downbeats bpm | F beats/grid | F downbeats/grid | F beats/downbeats | "
        "IBI spread beats/downbeats (%) | beats per bar |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in SONGS:
        r = run_child(["child-accuracy", name, *extra])
        b, d = r[TRACKERS[0]], r[TRACKERS[1]]
        print(
            f"| {name} | {r['tempo']} | {b['bpm']} | {d['bpm']} | {b['f_grid']:.3f} | {d['f_grid']:.3f} | "
            f"{r['f_between']:.3f} | {b['spread_pct']:.1f} / {d['spread_pct']:.1f} | {d['beats_per_bar']} |",
            flush=True,
        )


def main() -> None:
    """Parse the command line; ``child-*`` commands run inside the measuring subprocess."""
    parser = argparse.ArgumentParser()
    commands = ("construct", "tracks", "accuracy")
    parser.add_argument("command", choices=[*commands, *(f"child-{c}" for c in commands)])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--minutes", type=float, nargs="+", default=[4, 10, 20])
    parser.add_argument("--source")
    parser.add_argument("--sessions", action="store_true")
    args = parser.parse_args()
    if args.command == "construct":
        construct(args.repeats, args.source)
    elif args.command == "tracks":
        tracks(args.minutes, args.source)
    elif args.command == "accuracy":
        accuracy(args.source)
    elif args.command == "child-construct":
        print(json.dumps(child_construct(args.args[0], args.source, args.sessions)))
    elif args.command == "child-tracks":
        print(json.dumps(child_track(args.args[0], float(args.args[1]), args.source)))
    else:
        print(json.dumps(child_accuracy(args.args[0], args.source)))


if __name__ == "__main__":
    main()
