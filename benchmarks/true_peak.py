"""True peak side by side (issue 14, item 4): the cost of each implementation on quiet and loud 4-minute masters.

    .venv/bin/python -m benchmarks.true_peak               # ~2 min; writes benchmarks/true_peak_results.md
    .venv/bin/python -m benchmarks.true_peak --repeats 2   # a smoke run

Material (benchmarks/perf/corpus.py, 16-bit WAV, 44.1 kHz stereo, 240 s): the quiet MMA/fluidsynth render, its
limited master (``loud``, about -9 LUFS) and its hard-clipped master (``clipped``, about -8 LUFS). Implementations:

- pruned: models.bs1770 before this change (commit 2038a4e), kept below: libebur128's interpolator evaluated
  only in blocks whose neighbourhood peak x gain could beat the best so far; cheap only on quiet material;
- bs1770: models.bs1770.true_peaks now: every output by chunked banded float32 products, exact re-evaluation
  of the few outputs that could change the float32 answer;
- libebur128: pyebur128 (libebur128 1.2.6) in MODE_TRUE_PEAK, fed interleaved float32 as models.loudness does;
- essentia: TruePeakDetector (oversamplingFactor 4, version 4) per channel, as models.loudness does.

Every implementation runs once per round in the same order, rounds repeated, medians reported (the machine is
shared); Essentia, 100x slower, only in the first round. Differences are against libebur128 on the same samples,
in linear full-scale units and in dB. Last, the memory bound: bs1770 on 30 minutes of stereo under tracemalloc.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyebur128 as eb

from benchmarks.perf.corpus import FULL_SECONDS, _read_wav, _song_wav, masters
from models import bs1770
from models.essentia_runtime import essentia_standard

RESULTS = Path(__file__).resolve().parent / "true_peak_results.md"
LONG_MINUTES = 30


# --- models.bs1770 true peak before this change (commit 2038a4e), verbatim but for the names --------------------


def _pruned_interpolator(factor: int, taps: int = 49) -> list[np.ndarray]:
    """Polyphase branches of a Hann-windowed sinc interpolator (the design libebur128 uses for true peak)."""
    j = np.arange(taps)
    m = j - (taps - 1) / 2
    arg = m * np.pi / factor
    h = np.where(m == 0, 1.0, np.sin(arg) / np.where(m == 0, 1.0, arg))
    h *= 0.5 * (1.0 - np.cos(2.0 * np.pi * j / (taps - 1)))
    return [h[p::factor].astype(np.float32) for p in range(factor)]


def _pruned_channel(channel: np.ndarray, phases: list[np.ndarray], block: int = 2048) -> float:
    """Max |x| of one channel oversampled by ``phases``, evaluated only where it can beat the best so far.

    An interpolated value is at most gain x max|x| over its filter's reach (gain = the largest sum of
    |coefficients| of a branch), and the answer is at least the sample peak (branch 0 passes samples
    through), so blocks whose neighbourhood maximum x gain cannot exceed the current best are skipped.
    Exact: the same value as oversampling everything, usually over a few percent of the blocks.
    """
    magnitude = np.abs(channel)
    if magnitude.size == 0:
        return 0.0
    best = float(magnitude.max())
    gain = max(float(np.abs(p).sum()) for p in phases)
    reach = max(p.size for p in phases)
    blocks = -(-magnitude.size // block)
    padded = np.zeros(blocks * block, dtype=magnitude.dtype)
    padded[: magnitude.size] = magnitude
    local = padded.reshape(blocks, block).max(axis=1)
    around = local.copy()  # a block's filter reaches into its neighbours
    around[1:] = np.maximum(around[1:], local[:-1])
    around[:-1] = np.maximum(around[:-1], local[1:])
    last = blocks - 1
    for b in np.argsort(-around):
        if around[b] * gain <= best:
            break
        # outputs t in [b*block, (b+1)*block) (to the end of the filter tail for the last block) need
        # samples t-reach+1..t: take exactly those, so no output sees an artificial edge
        start = max(0, b * block - (reach - 1))
        stop = min(channel.size, (b + 1) * block)
        first = b * block - start
        for branch in phases:
            out = np.convolve(channel[start:stop], branch)
            kept = out[first:] if b == last else out[first : first + block]
            if kept.size:
                best = max(best, float(np.abs(kept).max()))
    return best


def pruned_true_peaks(x: np.ndarray, sample_rate: int) -> list[float]:
    """Linear true peak of each channel of ``x`` (channels, n): BS.1770-4 Annex 2 oversampling (4x below
    96 kHz, 2x below 192 kHz, none above), with libebur128's 49-tap interpolator; equals its values."""
    factor = 4 if sample_rate < 96000 else 2 if sample_rate < 192000 else 1
    if factor == 1:
        return [float(np.abs(c).max()) if c.size else 0.0 for c in x]
    phases = _pruned_interpolator(factor)
    return [_pruned_channel(np.ascontiguousarray(c, dtype=np.float32), phases) for c in x]


# --- the other implementations -----------------------------------------------------------------------------------


def libebur128_true_peaks(x: np.ndarray, rate: int) -> list[float]:
    """pyebur128's per-channel true peak, fed as models.loudness feeds it (interleaved float32)."""
    state = eb.R128State(x.shape[0], rate, eb.MeasurementMode.MODE_TRUE_PEAK)
    state.add_frames(np.ascontiguousarray(x.T, dtype=np.float32).ravel(), x.shape[1])
    return [eb.get_true_peak(state, c) for c in range(x.shape[0])]


def essentia_true_peaks(x: np.ndarray, rate: int) -> list[float]:
    """Essentia's TruePeakDetector per channel (4x, BS.1770-4 version), as models.loudness calls it."""
    detector = essentia_standard().TruePeakDetector(sampleRate=float(rate), oversamplingFactor=4, version=4)
    peaks = []
    for channel in x:
        detector.reset()
        peaks.append(float(np.max(np.abs(detector(np.ascontiguousarray(channel, dtype=np.float32))[1]))))
    return peaks


IMPLEMENTATIONS: dict[str, Callable[[np.ndarray, int], list[float]]] = {
    "pruned (before)": pruned_true_peaks,
    "bs1770 (now)": bs1770.true_peaks,
    "libebur128": libebur128_true_peaks,
    "essentia": essentia_true_peaks,
}
ONCE = {"essentia"}  # timed in one round: it alone would take minutes per round


# --- harness -----------------------------------------------------------------------------------------------------


def materials() -> dict[str, tuple[np.ndarray, int]]:
    """The three 4-minute masters as float32 (channels, n) with their rate."""
    song, rate = _read_wav(_song_wav())
    made = {"quiet": (np.ascontiguousarray(song[:, : int(FULL_SECONDS * rate)]), rate)}
    loud = masters()
    for stem in ("loud", "clipped"):
        made[stem] = _read_wav(loud[f"{stem}.wav"].path)
    return made


def describe(x: np.ndarray, rate: int) -> str:
    """Integrated loudness, sample peak and libebur128 true peak of a master."""
    m = bs1770.measure(x, rate)
    peak = max(libebur128_true_peaks(x, rate))
    return f"{m.integrated:.1f} LUFS, sample peak {_db(float(np.abs(x).max()))} dBFS, true peak {_db(peak)} dBTP"


def _db(linear: float) -> str:
    """A linear level in dB, 2 decimals."""
    return f"{20.0 * math.log10(linear):+.2f}" if linear > 0 else "-inf"


def time_all(material: dict[str, tuple[np.ndarray, int]], repeats: int) -> tuple[dict, dict]:
    """Seconds per (material, implementation) over ``repeats`` rounds (Essentia's, 15-25 s a track here, in the
    first round only), and each one's per-channel values; every implementation warmed up on 1 s first."""
    seconds: dict[tuple[str, str], list[float]] = {}
    values: dict[tuple[str, str], list[float]] = {}
    for fn in IMPLEMENTATIONS.values():
        x, rate = material["loud"]
        fn(np.ascontiguousarray(x[:, :rate]), rate)
    for round_ in range(repeats):
        for name, (x, rate) in material.items():
            for impl, fn in IMPLEMENTATIONS.items():
                if impl in ONCE and round_:
                    continue
                start = time.perf_counter()
                values[name, impl] = fn(x, rate)
                seconds.setdefault((name, impl), []).append(time.perf_counter() - start)
    return seconds, values


def long_run(x: np.ndarray, rate: int) -> tuple[float, float, int]:
    """(seconds, peak traced bytes, input bytes) of bs1770.true_peaks on the loud master tiled to 30 minutes."""
    long = np.tile(x, (1, -(-LONG_MINUTES * 60 * rate // x.shape[1])))[:, : LONG_MINUTES * 60 * rate]
    tracemalloc.start()
    start = time.perf_counter()
    bs1770.true_peaks(long, rate)
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return elapsed, peak, long.nbytes


def machine() -> str:
    """One line: CPU, cores, RAM, versions, BLAS threads and load."""
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln),
        platform.processor(),
    )
    mem_kb = int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in ln))
    import essentia
    import scipy

    threads = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "default"
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_kb / 2**20:.0f} GiB RAM; Python {platform.python_version()}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}, Essentia {essentia.__version__}, pyebur128 "
        f"(libebur128 {eb.get_libebur128_version()}); BLAS threads {threads}; "
        f"load average at start {os.getloadavg()[0]:.2f} (shared machine)"
    )


def report(material: dict, seconds: dict, values: dict, repeats: int, long: tuple[float, float, int], host: str) -> str:
    """The results page: timings, differences against libebur128, the 30-minute memory bound."""
    lines = [
        "# True peak: cost and agreement (benchmarks/true_peak.py)",
        "",
        f"Machine: {host}.",
        "",
        "Material: 240 s of 44.1 kHz stereo, 16-bit WAV (benchmarks/perf/corpus.py):",
        "",
    ]
    lines += [f"- {name}: {describe(x, rate)}" for name, (x, rate) in material.items()]
    names = list(material)
    lines += ["", f"## Seconds per 4-minute stereo track (median of {repeats} interleaved rounds)", ""]
    lines += ["| implementation | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for impl in IMPLEMENTATIONS:
        cells = [f"{statistics.median(seconds[name, impl]):.3f}" for name in names]
        lines.append(f"| {impl}{' (1 round)' if impl in ONCE else ''} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "All four run on one thread: libebur128 and Essentia are sequential C/C++, and bs1770's matrix products are",
        "sized under OpenBLAS's multithreading threshold. On this shared machine absolute times float with the load",
        "(compare the rows of one run); bs1770 computes every output on every material, and re-evaluates exactly",
        "only the few chunks (of 64k samples) whose outputs could still raise the answer.",
    ]
    lines += ["", "## Max |difference| from libebur128 over channels (linear full scale; dB)", ""]
    lines += ["| implementation | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for impl in IMPLEMENTATIONS:
        if impl == "libebur128":
            continue
        cells = []
        for name in names:
            ours, ref = np.array(values[name, impl]), np.array(values[name, "libebur128"])
            diff_db = np.max(np.abs(20 * np.log10(ours) - 20 * np.log10(ref)))
            cells.append(f"{np.max(np.abs(ours - ref)):.3g}; {diff_db:.3g} dB")
        lines.append(f"| {impl} | " + " | ".join(cells) + " |")
    elapsed, peak, size = long
    lines += [
        "",
        "bs1770 reproduces libebur128's float32 values to the bit; the pruned version summed in float32 (np.convolve)",
        "where libebur128 sums in double, hence its one-ulp differences; Essentia resamples differently altogether.",
        "",
        f"## Memory: {LONG_MINUTES} minutes of stereo (the loud master tiled)",
        "",
        f"bs1770.true_peaks took {elapsed:.2f} s; its peak traced allocation was {peak / 2**20:.1f} MiB "
        f"(tracemalloc), beside the {size / 2**20:.0f} MiB float32 input it reads chunk by chunk.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    """Run the comparison and write benchmarks/true_peak_results.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    host = machine()
    material = materials()
    seconds, values = time_all(material, args.repeats)
    page = report(material, seconds, values, args.repeats, long_run(*material["loud"]), host)
    RESULTS.write_text(page)
    print(page)


if __name__ == "__main__":
    main()
