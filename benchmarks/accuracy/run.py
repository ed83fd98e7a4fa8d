"""One command: build the ground-truth sets (cached), run every analyzer and Essentia directly, write RESULTS.md.

    .venv/bin/python -m benchmarks.accuracy.run [--chorales 80]

Our rows go through the server's own path (PyAV decode -> registry input representation -> registry class
with registry params); the "Essentia direct" rows load the same file with Essentia's own loader and call the
algorithm with its defaults, so a wrapper bug (sample rate, downmix, parameters) shows as a difference.
"""

from __future__ import annotations

import argparse
import functools
import platform
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from benchmarks.accuracy import ensembles_eval, metrics
from benchmarks.accuracy.datasets import CACHE, FAST_TEMPI, NORMAL_TEMPI, Item, build_chorales, build_ebu, build_mma
from benchmarks.accuracy.ebu import check
from models.base import Analyzer, Audio
from models.essentia_runtime import essentia_standard
from models.loudness import LoudnessEBUR128Analyzer
from models.tempo import OctaveTempoAnalyzer
from serve_app.config import DEFAULT_REGISTRY
from serve_app.ingress.decode import decode, representation
from serve_app.registry import load_registry

HERE = Path(__file__).resolve().parent
SR = 44100
es = essentia_standard()
REGISTRY = load_registry(DEFAULT_REGISTRY)
TIMES: dict[str, list[float]] = defaultdict(list)


def timed(label: str, fn: Callable[[], Any]) -> Any:
    """Call fn, recording its wall time under label."""
    start = time.perf_counter()
    out = fn()
    TIMES[label].append(time.perf_counter() - start)
    return out


def per_track(label: str) -> str:
    """Mean seconds per call of label."""
    return f"{np.mean(TIMES[label]):.2f}" if TIMES[label] else "-"


@functools.cache
def ours(name: str) -> tuple[Any, Analyzer]:
    """(registry entry, analyzer built exactly as a replica builds it)."""
    entry = REGISTRY.find(name, None)
    assert entry is not None, name
    return entry, entry.load_class()(**entry.params)


@functools.lru_cache(maxsize=4)
def decoded(path: Path) -> Any:
    """The file decoded the way the server decodes uploads."""
    return decode(path.read_bytes(), 7200)


def run_ours(name: str, path: Path, label: str | None = None) -> dict[str, Any]:
    """Our model on one file, through decode -> representation -> analyze."""
    entry, analyzer = ours(name)
    audio = representation(decoded(path), entry.input)
    return timed(label or name, lambda: analyzer.analyze(audio))


@functools.lru_cache(maxsize=2)
def mono_direct(path: Path) -> np.ndarray:
    """Essentia's own MonoLoader at 44.1 kHz (its (L+R)/2 downmix)."""
    return es.MonoLoader(filename=str(path), sampleRate=SR)()


def pct(x: float) -> str:
    """0.8123 -> '81.2 %'."""
    return f"{100 * x:.1f} %"


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --- loudness -----------------------------------------------------------------------------------------------


def libebur128_direct(x: np.ndarray, rate: int) -> dict[str, Any]:
    """pyebur128 on (channels, n): I, LRA, true peak, and M/S maxima polled every 100 ms."""
    import pyebur128 as p

    mode = p.MeasurementMode
    state = p.R128State(x.shape[0], rate, mode.MODE_I | mode.MODE_LRA | mode.MODE_M | mode.MODE_S | mode.MODE_TRUE_PEAK)
    hop = rate // 10
    m_max = s_max = -np.inf
    m_curve, s_curve = [], []
    for start in range(0, x.shape[1], hop):
        block = np.ascontiguousarray(x[:, start : start + hop].T, dtype=np.float32)
        state.add_frames(block.ravel(), block.shape[0])
        if start + hop >= 0.4 * rate:
            m_curve.append(p.get_loudness_momentary(state))
        if start + hop >= 3 * rate:
            s_curve.append(p.get_loudness_shortterm(state))
    m_max, s_max = max(m_curve, default=m_max), max(s_curve, default=s_max)
    return {
        "integrated_loudness": p.get_loudness_global(state),
        "loudness_range": p.get_loudness_range(state),
        "momentary_max": m_max,
        "short_term_max": s_max,
        "momentary": [round(v, 3) for v in m_curve],
        "short_term": [round(v, 3) for v in s_curve],
        "true_peak": 20 * np.log10(max(p.get_true_peak(state, c) for c in range(x.shape[0]))),
    }


def essentia_loudness_direct(path: Path) -> dict[str, Any] | None:
    """AudioLoader + LoudnessEBUR128 + TruePeakDetector per channel, Essentia defaults (stereo only)."""
    try:
        audio, rate, channels, *_ = es.AudioLoader(filename=str(path))()
    except RuntimeError as exc:
        if "more than 2 channels" in str(exc):
            return None
        raise
    momentary, short, integrated, lra = es.LoudnessEBUR128(sampleRate=rate)(audio)
    peaks = [np.max(np.abs(es.TruePeakDetector(sampleRate=rate)(np.ascontiguousarray(audio[:, c]))[1])) for c in (0, 1)]
    return {
        "integrated_loudness": float(integrated),
        "loudness_range": float(lra),
        "momentary_max": float(np.max(momentary)),
        "short_term_max": float(np.max(short)),
        "momentary": [float(v) for v in momentary],
        "short_term": [float(v) for v in short],
        "true_peak": float(20 * np.log10(max(peaks))),
    }


def _verdict(expect: dict, result: dict[str, Any] | None) -> tuple[str, bool | None]:
    """'value(s)' and overall pass for one row of one case."""
    if result is None:
        return "n/a: stereo only", None
    verdicts = check(expect, result)
    text = ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} null" for k, (v, _) in verdicts.items())
    return text, all(ok for _, ok in verdicts.values())


def loudness_section(items: list[Item]) -> str:
    """EBU Tech 3341/3342 pass/fail per case, ours vs Essentia direct vs libebur128, and the true-peak speed race."""
    rows, passes = [], defaultdict(int)
    essentia_peak = LoudnessEBUR128Analyzer(curves=True, true_peak="essentia")
    for item in items:
        truth = item.truth
        try:
            result = run_ours("loudness-ebur128", item.path)
        except Exception as exc:  # noqa: BLE001 - the error text is the result (5.0 case)
            result, error = None, str(exc)
        else:
            error = ""
        ours_text, ours_ok = _verdict(truth["expect"], result)
        if error:
            ours_text = f"error: {error}"
        ess_tp = None
        if "TP" in truth["expect"]:
            ess_tp = essentia_peak.analyze(representation(decoded(item.path), ours("loudness-ebur128")[0].input))
        tp_text, tp_ok = _verdict(truth["expect"], ess_tp) if ess_tp else ("", None)
        direct_text, direct_ok = _verdict(truth["expect"], essentia_loudness_direct(item.path))
        x = decoded(item.path)
        lib_text, lib_ok = _verdict(truth["expect"], libebur128_direct(x.samples, x.sample_rate))
        for name, ok in (("ours", ours_ok), ("tp_essentia", tp_ok), ("direct", direct_ok), ("libebur128", lib_ok)):
            passes[name] += bool(ok)
        expect = ", ".join(f"{k} {v}" for k, v in truth["expect"].items())
        mark = {True: "pass", False: "**FAIL**", None: "-"}
        rows.append(
            [truth["case"], truth["description"], expect, ours_text, mark[ours_ok], tp_text, mark[tp_ok],
             direct_text, mark[direct_ok], lib_text, mark[lib_ok]]
        )  # fmt: skip
    header = ["case", "signal", "expected", "loudness-ebur128 (ours)", "", "ours, true_peak=essentia", "",
              "Essentia direct", "", "libebur128 (pyebur128) direct", ""]  # fmt: skip
    n_tp = sum("TP" in it.truth["expect"] for it in items)
    summary = (
        f"Passes: ours {passes['ours']}/{len(items)}, Essentia direct {passes['direct']}/{len(items)}, "
        f"libebur128 direct {passes['libebur128']}/{len(items)}; true-peak cases with the Essentia backend "
        f"{passes['tp_essentia']}/{n_tp}."
    )
    return "\n\n".join(["## Loudness: EBU Tech 3341 / 3342", summary, table(header, rows), true_peak_race()])


def true_peak_race() -> str:
    """Seconds for true peak on 4 min of 44.1 kHz stereo noise: Essentia TruePeakDetector vs libebur128."""
    rng = np.random.default_rng(0)
    x = (0.25 * rng.standard_normal((2, SR * 240))).astype(np.float32)
    rows = []
    for backend in ("libebur128", "essentia"):
        analyzer = LoudnessEBUR128Analyzer(curves=False, true_peak=backend)
        start = time.perf_counter()
        peaks = analyzer.channel_true_peaks(x, SR)
        tp_time = time.perf_counter() - start
        start = time.perf_counter()
        analyzer.analyze(Audio(x, SR))
        total = time.perf_counter() - start
        rows.append([backend, f"{tp_time:.2f}", f"{total:.2f}", f"{20 * np.log10(max(peaks)):.3f}"])
    header = ["true-peak backend", "true peak only (s)", "whole loudness-ebur128 (s)", "dBTP measured"]
    return "### True peak: Essentia vs libebur128 on 4 min of stereo 44.1 kHz noise\n\n" + table(header, rows)


# --- tempo, beats, onsets, chords (MMA) ---------------------------------------------------------------------

TEMPO_MODELS = ("bpm_degara", "bpm_multifeature", "bpm_percival", "bpm_octave", "beats")
DIRECT_TEMPO = {
    "bpm_degara": ("RhythmExtractor2013(method='degara') direct", lambda x: es.RhythmExtractor2013(method="degara")(x)),
    "bpm_multifeature": (
        "RhythmExtractor2013(method='multifeature') direct",
        lambda x: es.RhythmExtractor2013(method="multifeature")(x),
    ),
    "bpm_percival": ("PercivalBpmEstimator() direct", lambda x: (es.PercivalBpmEstimator()(x),)),
}
OCTAVE_SENSITIVITY = (2.0, 3.0)


def mma_section(items: list[Item]) -> tuple[str, dict[str, list[dict]]]:
    """Tempo (P-score, Acc1, Acc2 per subset), beat F-measure, onsets F, chord majmin, plus direct rows."""
    est: dict[str, list[dict]] = defaultdict(list)
    for n, item in enumerate(items):
        print(f"  mma {n + 1}/{len(items)} {item.path.name}", flush=True)
        for name in (*TEMPO_MODELS, "onsets", "chords", "danceability_dsp", "dynamic_complexity", "spectral"):
            est[name].append(run_ours(name, item.path))
        x = mono_direct(item.path)
        for label, fn in DIRECT_TEMPO.values():
            out = timed(label, lambda fn=fn, x=x: fn(x))
            est[label].append({"bpm": float(out[0]), "beats": [float(t) for t in out[1]] if len(out) > 1 else []})
        for th in OCTAVE_SENSITIVITY:
            label = f"bpm_octave, max_onsets_per_beat={th} (harness variant)"
            variant = OctaveTempoAnalyzer(prefer_range=(60, 200), max_onsets_per_beat=th)
            est[label].append(timed(label, lambda v=variant, x=x: v.analyze(Audio(x, SR))))
        onsets = timed("OnsetRate() direct", lambda x=x: es.OnsetRate()(x))
        est["OnsetRate() direct"].append({"onsets": [float(t) for t in onsets[0]]})
        extractor = es.TonalExtractor()
        tonal = timed("TonalExtractor() direct", lambda x=x, t=extractor: dict(zip(t.outputNames(), t(x), strict=True)))
        est["TonalExtractor() direct"].append({"progression": list(tonal["chords_progression"])})
        est["Danceability() direct"].append({"danceability": float(es.Danceability()(x)[0])})
        est["DynamicComplexity() direct"].append({"dynamic_complexity": float(es.DynamicComplexity()(x)[0])})
    return "\n\n".join([tempo_table(items, est), beats_table(items, est), onsets_chords_table(items, est)]), est


def _subset(items: list[Item], which: str) -> list[int]:
    """Indices of all / normal (80-140) / fast (170-190) items."""
    return [i for i, it in enumerate(items) if which == "all" or (which == "fast") == it.truth["fast"]]


def _identical(a: list[dict], b: list[dict], key: str = "bpm") -> str:
    """Share of items where two rows agree to 1e-3 (the faithfulness check)."""
    same = [abs(x[key] - y[key]) <= 1e-3 for x, y in zip(a, b, strict=True)]
    return pct(float(np.mean(same)))


def tempo_table(items: list[Item], est: dict[str, list[dict]]) -> str:
    """P-score / Accuracy1 / Accuracy2 for all, normal and fast tracks, every tempo row side by side."""
    labels = [*TEMPO_MODELS, *[d[0] for d in DIRECT_TEMPO.values()], *[k for k in est if "harness variant" in k]]
    direct_of = {v[0]: k for k, v in DIRECT_TEMPO.items()}
    rows = []
    for label in labels:
        scores = [metrics.tempo_scores(it.truth["tempo"], e["bpm"]) for it, e in zip(items, est[label], strict=True)]
        row = [f"`{label}`" if label in TEMPO_MODELS else label]
        for which in ("all", "normal", "fast"):
            idx = _subset(items, which)
            row += [f"{np.mean([scores[i][m] for i in idx]):.3f}" for m in ("p_score", "acc1", "acc2")]
        if label in DIRECT_TEMPO:
            row.append(_identical(est[label], est[DIRECT_TEMPO[label][0]]))
        elif label in direct_of:
            row.append("(reference)")
        else:
            row.append("-")
        row.append(per_track(label))
        rows.append(row)
    header = ["model", "P all", "Acc1 all", "Acc2 all", "P normal", "Acc1 normal", "Acc2 normal", "P fast",
              "Acc1 fast", "Acc2 fast", "= Essentia direct", "s/track"]  # fmt: skip
    n_fast = len(_subset(items, "fast"))
    intro = (
        f"## Tempo: MMA grooves ({len(items)} tracks: {len(items) - n_fast} normal at {NORMAL_TEMPI} BPM, "
        f"{n_fast} fast at {FAST_TEMPI} BPM)\n\nP = MIREX P-score (mir_eval.tempo.detection, one reference "
        "tempo, 8 %), Acc1 = within 4 %, Acc2 = within 4 % after x2, x3, /2 or /3 (Gouyon et al. 2006)."
    )
    return intro + "\n\n" + table(header, rows)


def beats_table(items: list[Item], est: dict[str, list[dict]]) -> str:
    """Beat F-measure per subset for the beat trackers and their direct rows."""
    rows = []
    for label in (
        "bpm_degara",
        "bpm_multifeature",
        "beats",
        *[DIRECT_TEMPO[k][0] for k in ("bpm_degara", "bpm_multifeature")],
    ):
        f = [metrics.beat_f(it.truth["beats"], e["beats"]) for it, e in zip(items, est[label], strict=True)]
        row = [f"`{label}`" if label in TEMPO_MODELS else label]
        row += [f"{np.mean([f[i] for i in _subset(items, w)]):.3f}" for w in ("all", "normal", "fast")]
        rows.append(row)
    return "## Beats: F-measure (mir_eval, 70 ms, first 5 s trimmed)\n\n" + table(
        ["model", "F all", "F normal", "F fast"], rows
    )


def onsets_chords_table(items: list[Item], est: dict[str, list[dict]]) -> str:
    """Onset F-measure against MIDI note-ons, chord majmin overlap against MMA's chord symbols."""
    onset_rows = []
    for label in ("onsets", "OnsetRate() direct"):
        f = [metrics.onset_f(it.truth["onsets"], e["onsets"]) for it, e in zip(items, est[label], strict=True)]
        same = (
            "(reference)" if label != "onsets" else _identical_lists(est["onsets"], est["OnsetRate() direct"], "onsets")
        )
        onset_rows.append([f"`{label}`" if label == "onsets" else label, f"{np.mean(f):.3f}", same, per_track(label)])
    durations = [decoded_duration(it.path) for it in items]
    chord_scores = [
        metrics.chord_majmin(it.truth["chords"], e["segments"], d)
        for it, e, d in zip(items, est["chords"], durations, strict=True)
    ]
    same_chords = np.mean(
        [
            _expand(e["segments"]) == d["progression"][: len(_expand(e["segments"]))]
            for e, d in zip(est["chords"], est["TonalExtractor() direct"], strict=True)
        ]
    )
    chord_rows = [["`chords`", f"{np.mean(chord_scores):.3f}", pct(float(same_chords)), per_track("chords")]]
    return "\n\n".join(
        [
            "## Onsets: F-measure against the MIDI note-ons (mir_eval.onset, 50 ms; drums included)",
            table(["model", "F", "= Essentia direct", "s/track"], onset_rows),
            "## Chords: major/minor overlap with MMA's chord symbols (mir_eval.chord.majmin, duration-weighted)",
            table(["model", "majmin", "frame labels = TonalExtractor direct", "s/track"], chord_rows),
        ]
    )


def decoded_duration(path: Path) -> float:
    """Duration of a file in seconds."""
    return decoded(path).duration


def _expand(segments: list[dict]) -> list[str]:
    """Segments back to per-frame labels (hop 2048 at 44.1 kHz)."""
    return [s["chord"] for s in segments for _ in range(round((s["end"] - s["start"]) * SR / 2048))][:-1] or [""]


def _identical_lists(a: list[dict], b: list[dict], key: str) -> str:
    """Share of items whose lists agree element-wise to 1e-3."""
    same = [len(x[key]) == len(y[key]) and np.allclose(x[key], y[key], atol=1e-3) for x, y in zip(a, b, strict=True)]
    return pct(float(np.mean(same)))


# --- key and tuning (chorales) ------------------------------------------------------------------------------

KEY_MODELS = ("key", "key_edma", "key_temperley", "key_krumhansl")
TUNING_CENTS = (-40, -25, -10, 0, 10, 25, 40)


def key_section(items: list[Item], stats: dict[str, int]) -> str:
    """MIREX weighted key score per profile, ours vs KeyExtractor direct, on the labelled chorales."""
    refs = [it.truth["key"] for it in items]
    est: dict[str, list[str]] = defaultdict(list)
    for n, item in enumerate(items):
        print(f"  chorale {n + 1}/{len(items)} {item.path.name}", flush=True)
        x = mono_direct(item.path)
        for name in KEY_MODELS:
            r = run_ours(name, item.path)
            est[name].append(metrics.key_label(r["key"], r["scale"]))
            profile = ours(name)[0].params["profile"]
            label = f"KeyExtractor(profileType='{profile}') direct"
            k, s, _ = timed(label, lambda p=profile, x=x: es.KeyExtractor(profileType=p)(x))
            est[label].append(metrics.key_label(k, s))
    rows = []
    for name in KEY_MODELS:
        profile = ours(name)[0].params["profile"]
        for label in (name, f"KeyExtractor(profileType='{profile}') direct"):
            s = metrics.key_scores(refs, est[label])
            same = pct(np.mean([a == b for a, b in zip(est[name], est[label], strict=True)])) if label != name else "-"
            rows.append(
                [f"`{label}`" if label == name else label, f"{s['weighted']:.3f}", pct(s["correct"]), pct(s["fifth"]),
                 pct(s["relative"]), pct(s["parallel"]), pct(s["other"]), same, per_track(label)]
            )  # fmt: skip
    kept = stats.get("kept", 0)
    intro = (
        f"## Key: Bach chorales (music21 corpus) rendered with fluidsynth, {len(items)} items\n\n"
        f"Label = the key the score ends in, kept only where the last key signature, music21's own key analysis "
        f"and the final bass note agree. Selection over the corpus so far: {stats} ({kept} kept). "
        f"MIREX weighted score via mir_eval.key (1 correct, 0.5 fifth, 0.3 relative, 0.2 parallel)."
    )
    header = ["model", "weighted", "correct", "fifth", "relative", "parallel", "other", "= Essentia direct", "s/track"]
    return intro + "\n\n" + table(header, rows)


def tuning_section(items: list[Item]) -> str:
    """Tuning error in cents on chorales pitch-shifted by a known amount (resampling), ours vs direct."""
    entry, analyzer = ours("tuning")
    errors: dict[str, list[float]] = defaultdict(list)
    same = []
    for item in items:
        base = representation(decoded(item.path), entry.input).samples
        for cents in TUNING_CENTS:
            ratio = 2 ** (cents / 1200)
            shifted = soxr.resample(base, SR, SR / ratio, quality="HQ").astype(np.float32) if cents else base
            r = timed("tuning", lambda s=shifted: analyzer.analyze(Audio(s, SR)))
            d = float(
                timed("TuningFrequencyExtractor() direct", lambda s=shifted: es.TuningFrequencyExtractor()(s)[-1])
            )
            errors["tuning"].append(r["tuning_cents"] - cents)
            errors["direct"].append(1200 * np.log2(d / 440) - cents)
            same.append(abs(r["essentia_frequency"] - d) < 1e-3)
    rows = []
    for label, key in (("`tuning`", "tuning"), ("TuningFrequencyExtractor() direct", "direct")):
        e = np.abs(errors[key])
        rows.append([label, f"{np.mean(e):.2f}", f"{np.median(e):.2f}", f"{np.max(e):.2f}", pct(np.mean(e <= 5)),
                     pct(np.mean(same)) if key == "tuning" else "(reference)",
                     per_track("tuning" if key == "tuning" else "TuningFrequencyExtractor() direct")])  # fmt: skip
    intro = (
        f"## Tuning: {len(items)} chorales x shifts {TUNING_CENTS} cents (soxr resampling of the 440 Hz rendering; "
        "truth = 440 * 2^(c/1200)). Essentia answers in about [-35, 65) cents, so -40 reads +62 (an error of 102 "
        "cents that is the same tuning one semitone away); `tuning` folds to [-50, 50)."
    )
    header = [
        "model",
        "mean abs err (cents)",
        "median",
        "max",
        "within 5 cents",
        "essentia_frequency = direct",
        "s/call",
    ]
    return intro + "\n\n" + table(header, rows)


def descriptors_section(mma: list[Item], est: dict[str, list[dict]], ebu: list[Item]) -> str:
    """Models without external ground truth: faithfulness, typical values, and known-answer checks."""
    by_case = {it.truth["case"]: it for it in ebu}
    rg = {c: run_ours("replay_gain", by_case[c].path)["replay_gain"] for c in ("3341-1", "3341-2")}
    dc = {
        c: run_ours("dynamic_complexity", by_case[c].path)["dynamic_complexity"] for c in ("3341-1", "3342-1", "3342-3")
    }
    spec = run_ours("spectral", by_case["3341-1"].path)
    dance = [e["danceability"] for e in est["danceability_dsp"]]
    steps = f"3341-1 steady sine {dc['3341-1']:.2f} dB; 3342-1 (10 dB step) {dc['3342-1']:.2f}; "
    steps += f"3342-3 (20 dB step) {dc['3342-3']:.2f}"
    rows = [
        ["`danceability_dsp`", f"mean {np.mean(dance):.3f} (min {np.min(dance):.3f}, max {np.max(dance):.3f}) on MMA",
         _identical(est["danceability_dsp"], est["Danceability() direct"], "danceability"),
         per_track("danceability_dsp")],
        ["`dynamic_complexity`", steps,
         _identical(est["dynamic_complexity"], est["DynamicComplexity() direct"], "dynamic_complexity"),
         per_track("dynamic_complexity")],
        ["`replay_gain`", f"3341-1 (-23 dBFS) {rg['3341-1']:.2f} dB, 3341-2 (-33 dBFS) {rg['3341-2']:.2f} dB: "
         f"difference {rg['3341-2'] - rg['3341-1']:.3f} (expected 10)", "-", per_track("replay_gain")],
        ["`spectral`", f"1 kHz sine: centroid median {spec['spectral_centroid']['median']:.0f} Hz, roll-off median "
         f"{spec['spectral_rolloff']['median']:.0f} Hz", "frame values = LowLevelSpectralExtractor (tests)",
         per_track("spectral")],
    ]  # fmt: skip
    return "## Descriptors without an external ground truth\n\n" + table(
        ["model", "known-answer check / typical values", "= Essentia direct (MMA)", "s/track"], rows
    )


def environment() -> str:
    """Versions the numbers were produced with."""
    import importlib.metadata as md

    pkgs = ("essentia-tensorflow", "pyebur128", "mir_eval", "music21", "av", "soxr", "numpy")
    versions = ", ".join(f"{p} {md.version(p)}" for p in pkgs)
    return f"Python {platform.python_version()} on {platform.machine()}; {versions}. Cache: `{CACHE}`."


def main(argv: list[str] | None = None) -> None:
    """Build, evaluate, write RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chorales", type=int, default=80, help="labelled chorales to use (default 80)")
    parser.add_argument("--tuning-chorales", type=int, default=12, help="chorales used for the tuning shifts")
    parser.add_argument("--oneills", type=int, default=60, help="O'Neill's tunes in the key tuning set (default 60)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    print("issue 15: tuning / held-out sets, every key/tempo/beat model, the ensembles", flush=True)
    split_text = ensembles_eval.section(args.chorales, args.oneills)
    print("building EBU signals", flush=True)
    ebu = build_ebu()
    loud = loudness_section(ebu)
    print("building MMA grooves", flush=True)
    mma = build_mma()
    mma_text, mma_est = mma_section(mma)
    print("building chorales", flush=True)
    chorales, stats = build_chorales(args.chorales)
    key_text = key_section(chorales, stats)
    tuning_text = tuning_section(chorales[: args.tuning_chorales])
    desc_text = descriptors_section(mma, mma_est, ebu)
    elapsed = time.perf_counter() - start
    head = (
        "# Accuracy results\n\nWritten by `.venv/bin/python -m benchmarks.accuracy.run` "
        f"({elapsed / 60:.1f} min on {platform.node() and 'this machine'}); do not edit by hand. {environment()}"
    )
    notes = (HERE / "NOTES.md").read_text() if (HERE / "NOTES.md").exists() else ""
    sections = [head, notes, split_text, key_text, mma_text, tuning_text, loud, desc_text]
    args.out.write_text("\n\n".join(sections).rstrip() + "\n")
    print(f"wrote {args.out} in {elapsed:.0f} s")


if __name__ == "__main__":
    main()
