"""Load and compute time of the onnxruntime models (basic-pitch, madmom) at 1 and 2 CPU threads.

    .venv/bin/python -m benchmarks.onnx_models [--repeats 3] [--out benchmarks/onnx_models_results.md]

Each model runs in a fresh subprocess per thread count (so the load time is cold and the peak RSS is the
model's own) on the benchmark song (benchmarks/perf/corpus.py: a 4-minute MMA/fluidsynth rendering, and
its 30 s preview), resampled to the model's input rate as the server would. Times are medians.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "transcription_basic_pitch": ("models.transcription.BasicPitchTranscriber", {}, 22050),
    "transcription_basic_pitch_midi": ("models.transcription.BasicPitchTranscriber", {"midi": True}, 22050),
    "beats_madmom": ("models.madmom_models.MadmomBeatTracker", {}, 44100),
    "downbeats_madmom": ("models.madmom_models.MadmomDownbeatTracker", {}, 44100),
    "key_madmom": ("models.madmom_models.MadmomKeyRecognizer", {}, 44100),
    "chords_madmom": ("models.madmom_models.MadmomChordRecognizer", {}, 44100),
}


def _song(rate: int) -> dict[str, object]:
    """The benchmark song's mono mix at ``rate``: the full 4 minutes and a 30 s excerpt from 0:30."""
    import numpy as np
    import soxr

    from benchmarks.perf.corpus import CACHE, _read_wav, tracks

    tracks()  # renders the song once if it is not cached
    x, sr = _read_wav(CACHE / "song" / "song.wav")
    mono = x.mean(axis=0)[: int(240 * sr)]
    if sr != rate:
        mono = soxr.resample(mono, sr, rate, quality="HQ")
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    return {"30 s": mono[30 * rate : 60 * rate], "4 min": mono}


def child(name: str, threads: int, repeats: int) -> dict[str, object]:
    """Runs inside the subprocess: load once, analyse each clip ``repeats`` times."""
    import importlib

    from models import placement
    from models.base import Audio

    class_path, params, rate = MODELS[name]
    clips = _song(rate)
    placement.configure(float(threads))
    module, cls = class_path.rsplit(".", 1)
    started = time.perf_counter()
    analyzer = getattr(importlib.import_module(module), cls)(**params)
    load_s = time.perf_counter() - started
    out: dict[str, object] = {"load_s": load_s}
    for label, samples in clips.items():
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            analyzer.analyze(Audio(samples, rate))
            times.append(time.perf_counter() - started)
        out[label] = statistics.median(times)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    """Run every model at 1 and 2 threads and write a Markdown table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "onnx_models_results.md")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "THREADS"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.repeats)))
        return
    rows = [
        "| model | threads | load (s) | 30 s track (s) | 4 min track (s) | 4 min x realtime | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in MODELS:
        for threads in (1, 2):
            cmd = [sys.executable, "-m", "benchmarks.onnx_models", "--repeats", str(args.repeats)]
            cmd += ["--child", name, str(threads)]
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True, env=os.environ.copy())
            r = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(
                f"| {name} | {threads} | {r['load_s']:.2f} | {r['30 s']:.2f} | {r['4 min']:.2f} | "
                f"{240 / r['4 min']:.0f}x | {r['peak_rss_mb']:.0f} |"
            )
            print(rows[-1], flush=True)
    load = os.getloadavg()
    header = (
        f"# onnxruntime models: load and compute time\n\n{os.cpu_count()} cores shared with other work "
        f"(load average {load[0]:.1f} at the end), medians of {args.repeats} runs, "
        "`python -m benchmarks.onnx_models`.\n\n"
    )
    args.out.write_text(header + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
