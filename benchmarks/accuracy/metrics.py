"""Metrics: mir_eval for key, tempo, beats, onsets and chords; Gouyon's Accuracy1/Accuracy2 for tempo."""

from __future__ import annotations

import numpy as np


def key_label(key: str, scale: str) -> str:
    """Essentia's ('Bb', 'minor') as mir_eval's 'Bb minor'."""
    return f"{key} {scale}"


def key_scores(reference: list[str], estimated: list[str]) -> dict[str, float]:
    """MIREX weighted key score (mean) and the share of each error category, via mir_eval.key."""
    import mir_eval

    cats = {"correct": 1.0, "fifth": 0.5, "relative": 0.3, "parallel": 0.2, "other": 0.0}
    scores = [mir_eval.key.weighted_score(r, e) for r, e in zip(reference, estimated, strict=True)]
    out = {"weighted": float(np.mean(scores))}
    for name, value in cats.items():
        out[name] = float(np.mean([s == value for s in scores]))
    return out


def tempo_scores(reference: float, estimated: float) -> dict[str, float]:
    """P-score (mir_eval.tempo.detection, single reference tempo, 8 %), Accuracy1 (4 %), Accuracy2 (x2, x3, /2, /3)."""
    import mir_eval

    ref = np.array([reference, reference])
    p_score, _, _ = mir_eval.tempo.detection(ref, 1.0, np.array([estimated, estimated]), tol=0.08)
    acc1 = abs(estimated - reference) <= 0.04 * reference
    acc2 = any(abs(estimated * f - reference) <= 0.04 * reference for f in (1, 2, 3, 0.5, 1 / 3))
    return {"p_score": float(p_score), "acc1": float(acc1), "acc2": float(acc2)}


def beat_f(reference: list[float], estimated: list[float]) -> float:
    """Beat F-measure (70 ms window) after mir_eval's standard 5 s trim."""
    import mir_eval

    ref = mir_eval.beat.trim_beats(np.asarray(reference, dtype=float))
    est = mir_eval.beat.trim_beats(np.asarray(estimated, dtype=float))
    return float(mir_eval.beat.f_measure(ref, est))


def onset_f(reference: list[float], estimated: list[float], window: float = 0.05) -> float:
    """Onset F-measure (50 ms window), mir_eval.onset."""
    import mir_eval

    return float(mir_eval.onset.f_measure(np.asarray(reference), np.asarray(estimated), window=window)[0])


def chord_label(name: str) -> str:
    """'Am' / 'F#' (Essentia, MMA) as mir_eval's 'A:min' / 'F#:maj'."""
    return f"{name[:-1]}:min" if name.endswith("m") else f"{name}:maj"


def chord_majmin(reference: list[list], estimated: list[dict], duration: float) -> float:
    """Duration-weighted major/minor chord overlap (mir_eval.chord.majmin), MIREX style."""
    import mir_eval

    ref_int = np.array([[s, e] for s, e, _ in reference], dtype=float)
    ref_lab = [chord_label(c) for _, _, c in reference]
    est_int = np.array([[seg["start"], seg["end"]] for seg in estimated], dtype=float)
    est_lab = [chord_label(seg["chord"]) for seg in estimated]
    end = min(duration, ref_int[-1, 1])
    est_int, est_lab = mir_eval.util.adjust_intervals(est_int, est_lab, 0.0, end, "N", "N")
    ref_int, ref_lab = mir_eval.util.adjust_intervals(ref_int, ref_lab, 0.0, end, "N", "N")
    intervals, ref_l, est_l = mir_eval.util.merge_labeled_intervals(ref_int, ref_lab, est_int, est_lab)
    durations = mir_eval.util.intervals_to_durations(intervals)
    return float(mir_eval.chord.weighted_accuracy(mir_eval.chord.majmin(ref_l, est_l), durations))


def bootstrap_ci(scores: list[float], n: int = 2000, seed: int = 15) -> tuple[float, float, float]:
    """(mean, low, high): the mean of per-item scores with a percentile-bootstrap 95 % interval (Efron 1979)."""
    x = np.asarray(scores, dtype=float)
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n, x.size))].mean(axis=1)
    return float(x.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def paired_difference_ci(a: list[float], b: list[float], n: int = 2000, seed: int = 15) -> tuple[float, float, float]:
    """Mean of a - b over the same items, with a paired percentile-bootstrap 95 % interval."""
    return bootstrap_ci([x - y for x, y in zip(a, b, strict=True)], n, seed)


def key_item_score(reference: str, estimated: str) -> float:
    """MIREX weighted score of one key estimate (mir_eval.key)."""
    import mir_eval

    return float(mir_eval.key.weighted_score(reference, estimated))
