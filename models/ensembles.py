"""Ensembles: key and tempo decided from other models' results (the model graph), not from the audio.

Both are naive-Bayes combinations of classifiers through their confusion statistics (Xu, Krzyzak & Suen,
"Methods of combining multiple classifiers", IEEE SMC 1992; Kuncheva, "Combining Pattern Classifiers",
2004, ch. 4): each upstream's answer is a piece of evidence whose likelihood, given a candidate answer, is
how often that upstream gives that *kind* of answer (right, a fifth off, relative, parallel; the same tempo,
double, half, ...) on a tuning set. Upstreams are not independent (the Essentia key profiles share one
chromagram), so their log-likelihoods are tempered by a weight. The tables and weights are registry params;
their defaults are the values chosen on the tuning split of benchmarks/accuracy (never the held-out one) by
leave-one-source-out cross-validation; benchmarks/accuracy/RESULTS.md shows the search and the scores.

- key: madmom's 24 probabilities (Korzeniowski & Widmer 2018) times the Essentia profiles' votes. Profile
  methods mostly err by a fifth, madmom by relative/parallel mode, so the votes resolve each other's errors.
- tempo: candidates are every upstream's tempo and its metrical relatives (x2, /2, x3, /3); each candidate is
  scored by how each upstream's answer relates to it (per tempo band), a log-normal tempo prior (cf. Klapuri,
  Eronen & Astola 2006), the onsets per beat the candidate implies (cf. the octave rule of bpm_octave) and,
  optionally, TempoCNN's class probabilities near it (Schreiber & Müller 2018; weight 0 as tuned).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from models.base import Analyzer, AnalyzerError, Input, ModelInput

PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")  # the `key` model's spelling
_PC = {name: i for i, name in enumerate(PITCH_CLASSES)} | {"Db": 1, "D#": 3, "Gb": 6, "G#": 8, "A#": 10, "Cb": 11}
KEY_RELATIONS = ("same", "fifth_up", "fifth_down", "relative", "parallel", "other")
TEMPO_RELATIONS = {"same": 1.0, "double": 2.0, "half": 0.5, "triple": 3.0, "third": 1 / 3}  # estimate / tempo


# --- key ---------------------------------------------------------------------------------------------------


def key_index(key: str, scale: str) -> int:
    """0-23: tonic pitch class, +12 for minor ('A', 'minor' -> 21)."""
    return _PC[key] + (12 if scale == "minor" else 0)


def key_name(index: int) -> tuple[str, str]:
    """(tonic, scale) of a key index."""
    return PITCH_CLASSES[index % 12], "minor" if index >= 12 else "major"


def key_relation(answer: int, truth: int) -> str:
    """How an answered key relates to the true key (the MIREX categories; fifths split up/down)."""
    tonic_a, minor_a, tonic_t, minor_t = answer % 12, answer >= 12, truth % 12, truth >= 12
    if answer == truth:
        return "same"
    if minor_a == minor_t and (tonic_a - tonic_t) % 12 == 7:
        return "fifth_up"
    if minor_a == minor_t and (tonic_a - tonic_t) % 12 == 5:
        return "fifth_down"
    if minor_a != minor_t and (tonic_a - tonic_t) % 12 == (9 if minor_a else 3):
        return "relative"
    if minor_a != minor_t and tonic_a == tonic_t:
        return "parallel"
    return "other"


def answer_likelihood(answer: int, confusion: Mapping[str, float]) -> np.ndarray:
    """P(this answer | true key k) for all 24 k, from relation frequencies ('other' spread over 19 keys)."""
    out = np.empty(24)
    for truth in range(24):
        relation = key_relation(answer, truth)
        out[truth] = confusion[relation] / (19 if relation == "other" else 1)
    return out


def key_posterior(
    probabilities: np.ndarray | None,
    answers: Sequence[int],
    confusions: Sequence[Mapping[str, float]],
    network_weight: float,
    vote_weight: float,
) -> np.ndarray:
    """Normalised posterior over 24 keys: probabilities^network_weight x prod(P(answer_i | k))^vote_weight."""
    log_post = np.zeros(24)
    if probabilities is not None:
        log_post += network_weight * np.log(np.clip(np.asarray(probabilities, dtype=float), 1e-6, None))
    for answer, confusion in zip(answers, confusions, strict=True):
        log_post += vote_weight * np.log(answer_likelihood(answer, confusion))
    post = np.exp(log_post - log_post.max())
    return post / post.sum()


def key_confusion(answers: Sequence[int], truths: Sequence[int], smoothing: float = 1.0) -> dict[str, float]:
    """How often an upstream's answer is the same / a fifth up / ... of the truth (add-``smoothing``, Laplace)."""
    counts = {r: smoothing for r in KEY_RELATIONS}
    for answer, truth in zip(answers, truths, strict=True):
        counts[key_relation(answer, truth) if answer >= 0 else "other"] += 1  # -1: the upstream refused
    total = sum(counts.values())
    return {r: round(c / total, 4) for r, c in counts.items()}


def madmom_vector(probabilities: Mapping[str, float]) -> np.ndarray:
    """key_madmom's {'C major': p, ...} as a 24-vector in key_index order."""
    out = np.zeros(24)
    for label, p in probabilities.items():
        tonic, scale = label.split(" ")
        out[key_index(tonic, scale)] = p
    return out


# --- tempo -------------------------------------------------------------------------------------------------


def tempo_relation(estimate: float, tempo: float, tolerance: float = 0.04) -> str:
    """Which metrical relative of ``tempo`` an estimate is (within ``tolerance``), else 'other'."""
    for name, ratio in TEMPO_RELATIONS.items():
        if abs(estimate - ratio * tempo) <= tolerance * ratio * tempo:
            return name
    return "other"


def tempo_candidates(estimates: Sequence[float], low: float, high: float) -> list[float]:
    """Every estimate and its metrical relatives inside [low, high], near-duplicates (4 %) merged."""
    raw = sorted(e / r for e in estimates if e > 0 for r in TEMPO_RELATIONS.values() if low <= e / r <= high)
    merged: list[float] = []
    for t in raw:
        if not merged or t > merged[-1] * 1.04:
            merged.append(t)
    return merged


def tempo_confusions(
    estimates: Sequence[float], truths: Sequence[float], edges: Sequence[float], smoothing: float = 1.0
) -> list[dict[str, float]]:
    """Per tempo band (of the true tempo), how often an upstream says the same / double / half / ... tempo."""
    relations = (*TEMPO_RELATIONS, "other")
    tables = []
    for band in range(len(edges) + 1):
        counts = {r: smoothing for r in relations}
        for estimate, truth in zip(estimates, truths, strict=True):
            if tempo_band(truth, edges) == band:
                counts[tempo_relation(estimate, truth)] += 1
        total = sum(counts.values())
        tables.append({r: round(c / total, 4) for r, c in counts.items()})
    return tables


def log_normal(x: float, centre: float, octaves: float) -> float:
    """Log of an un-normalised Gaussian in log2(x / centre) with width ``octaves``."""
    return float(-0.5 * (np.log2(x / centre) / octaves) ** 2)


def tempo_band(tempo: float, edges: Sequence[float]) -> int:
    """Index of the tempo band (edges in BPM, ascending) a candidate falls in."""
    return int(np.searchsorted(np.asarray(edges, dtype=float), tempo, side="right"))


CNN_LOW_BPM = 30  # TempoCNN's class i is 30 + i BPM (256 classes)


def class_mass(probabilities: Sequence[float], tempo: float, tolerance: float = 0.04) -> float:
    """TempoCNN's probability that the tempo is within ``tolerance`` of ``tempo`` (its 1-BPM classes summed)."""
    p = np.asarray(probabilities, dtype=float)
    lo = max(int(np.ceil(tempo * (1 - tolerance))) - CNN_LOW_BPM, 0)
    hi = min(int(np.floor(tempo * (1 + tolerance))) - CNN_LOW_BPM, p.size - 1)
    return float(p[lo : hi + 1].sum()) if hi >= lo else 0.0


@dataclass(frozen=True)
class TempoEvidence:
    """What one track offers the tempo decision: upstream tempi, TempoCNN's class probabilities, onset rate."""

    estimates: Mapping[str, float]
    cnn_probabilities: Sequence[float] | None = None
    onset_rate: float | None = None


@dataclass(frozen=True)
class TempoModel:
    """The decision's parameters (all chosen on the tuning set): relation tables per upstream and tempo band,
    the weights of the votes and of TempoCNN's probabilities, the log-normal priors (centre, octaves)."""

    confusions: Mapping[str, Sequence[Mapping[str, float]]]
    edges: Sequence[float] = (150.0,)
    vote_weight: float = 1.0
    cnn_weight: float = 0.0
    prior: tuple[float, float] = (120.0, 1.0)
    onset_prior: tuple[float, float] | None = None


def tempo_score(tempo: float, evidence: TempoEvidence, model: TempoModel) -> float:
    """Log score of one candidate: log-normal tempo prior + tempered log P(each answer's relation | band)
    + tempered log TempoCNN mass near it + log-normal likelihood of the onsets per beat it implies."""
    band = tempo_band(tempo, model.edges)
    score = log_normal(tempo, *model.prior)
    for name, estimate in evidence.estimates.items():
        score += model.vote_weight * float(np.log(model.confusions[name][band][tempo_relation(estimate, tempo)]))
    if model.cnn_weight and evidence.cnn_probabilities is not None:
        score += model.cnn_weight * float(np.log(class_mass(evidence.cnn_probabilities, tempo) + 1e-3))
    if evidence.onset_rate and model.onset_prior:
        score += log_normal(evidence.onset_rate * 60.0 / tempo, *model.onset_prior)
    return score


def refine_tempo(tempo: float, estimates: Mapping[str, float]) -> float:
    """The median of the estimates that name ``tempo`` or a metrical relative of it, mapped onto it."""
    mapped = [e / TEMPO_RELATIONS[r] for e in estimates.values() if (r := tempo_relation(e, tempo)) != "other"]
    return float(np.median(mapped)) if mapped else tempo


def decide_tempo(
    evidence: TempoEvidence, model: TempoModel, bounds: tuple[float, float] = (40.0, 250.0)
) -> tuple[float, list[tuple[float, float]]]:
    """(tempo, [(candidate, log score), ...] best first) over the candidates the upstream tempi imply."""
    valid = {k: float(v) for k, v in evidence.estimates.items() if v and v > 0}
    seeds = list(valid.values())
    if model.cnn_weight and evidence.cnn_probabilities is not None and len(evidence.cnn_probabilities):
        seeds.append(float(CNN_LOW_BPM + int(np.argmax(evidence.cnn_probabilities))))
    candidates = tempo_candidates(seeds, *bounds)
    if not candidates:
        raise AnalyzerError("no upstream found a tempo")
    evidence = TempoEvidence(valid, evidence.cnn_probabilities, evidence.onset_rate)
    scored = sorted(((t, tempo_score(t, evidence, model)) for t in candidates), key=lambda ts: -ts[1])
    return refine_tempo(scored[0][0], valid) if valid else scored[0][0], scored


def retime_beats(beats: Sequence[float], factor: float, onsets: Sequence[float] = ()) -> list[float]:
    """Beats at ``factor`` x their tempo: midpoints inserted (x2), or every other beat (/2) on the phase with
    more onsets within 70 ms; unchanged for any other factor."""
    b = np.asarray(beats, dtype=float)
    if len(b) < 2 or not (abs(factor - 2) < 0.1 or abs(factor - 0.5) < 0.05):
        return [round(float(t), 3) for t in b]
    if factor > 1:
        mids = (b[:-1] + b[1:]) / 2
        return [round(float(t), 3) for t in np.sort(np.concatenate([b, mids]))]
    o = np.asarray(onsets, dtype=float)
    hits = [int(np.sum(np.min(np.abs(o[:, None] - b[p::2][None, :]), axis=0) < 0.07)) if o.size else 0 for p in (0, 1)]
    return [round(float(t), 3) for t in b[int(np.argmax(hits)) :: 2]]


# --- the values chosen on the tuning sets (benchmarks/accuracy: `python -m benchmarks.accuracy.run` re-derives
# them and says in RESULTS.md whether they still match) ------------------------------------------------------

KEY_CONFUSIONS: dict[str, dict[str, float]] = {
    "bgate": {
        "same": 0.8344,
        "fifth_up": 0.0446,
        "fifth_down": 0.0064,
        "relative": 0.0255,
        "parallel": 0.0637,
        "other": 0.0255,
    },
    "edma": {
        "same": 0.8217,
        "fifth_up": 0.0955,
        "fifth_down": 0.0127,
        "relative": 0.0191,
        "parallel": 0.0255,
        "other": 0.0255,
    },
    "temperley": {
        "same": 0.7898,
        "fifth_up": 0.0064,
        "fifth_down": 0.0064,
        "relative": 0.1019,
        "parallel": 0.051,
        "other": 0.0446,
    },
    "krumhansl": {
        "same": 0.8471,
        "fifth_up": 0.0892,
        "fifth_down": 0.0127,
        "relative": 0.0191,
        "parallel": 0.0255,
        "other": 0.0064,
    },
}
KEY_VOTE_WEIGHT = 1.0
TEMPO_CONFUSIONS: dict[str, list[dict[str, float]]] = {
    "degara": [
        {"same": 0.8471, "double": 0.0764, "half": 0.0064, "triple": 0.0064, "third": 0.0064, "other": 0.0573},
        {"same": 0.2714, "double": 0.0143, "half": 0.5, "triple": 0.0143, "third": 0.0143, "other": 0.1857},
    ],
    "madmom": [
        {"same": 0.8153, "double": 0.0828, "half": 0.0255, "triple": 0.0064, "third": 0.0064, "other": 0.0637},
        {"same": 0.4714, "double": 0.0143, "half": 0.4571, "triple": 0.0143, "third": 0.0286, "other": 0.0143},
    ],
    "octave": [
        {"same": 0.8153, "double": 0.0955, "half": 0.0064, "triple": 0.0064, "third": 0.0064, "other": 0.0701},
        {"same": 0.7571, "double": 0.0143, "half": 0.1857, "triple": 0.0143, "third": 0.0143, "other": 0.0143},
    ],
    "tempocnn": [
        {"same": 0.8408, "double": 0.051, "half": 0.0127, "triple": 0.0064, "third": 0.0064, "other": 0.0828},
        {"same": 0.5286, "double": 0.0143, "half": 0.4, "triple": 0.0143, "third": 0.0143, "other": 0.0286},
    ],
}
TEMPO_EDGES: tuple[float, ...] = (150.0,)
TEMPO_VOTE_WEIGHT = 0.5
TEMPO_CNN_WEIGHT = 0.0
TEMPO_PRIOR = (120.0, 1.0)
TEMPO_ONSET_PRIOR: tuple[float, float] | None = (1.879, 0.5323)


# --- analyzers ---------------------------------------------------------------------------------------------

KEY_PROFILES = ("bgate", "edma", "temperley", "krumhansl")  # the Essentia key models, as input names
TEMPO_VOTERS = ("degara", "madmom", "octave", "tempocnn")


class KeyEnsemble(Analyzer):
    """Key from key_madmom's 24 probabilities and the four Essentia profiles' answers (tempered naive Bayes)."""

    inputs: ClassVar[Mapping[str, Input]] = {
        "madmom": ModelInput(requires=("probabilities",)),
        **{p: ModelInput(requires=("key", "scale")) for p in KEY_PROFILES},
    }

    def __init__(
        self, vote_weight: float | None = None, confusions: Mapping[str, Mapping[str, float]] | None = None
    ) -> None:
        self.vote_weight = KEY_VOTE_WEIGHT if vote_weight is None else float(vote_weight)
        self.confusions = {k: dict(v) for k, v in (confusions or KEY_CONFUSIONS).items()}
        missing = [p for p in KEY_PROFILES if set(self.confusions.get(p, {})) != set(KEY_RELATIONS)]
        if missing:
            raise ValueError(f"confusions needs a table over {KEY_RELATIONS} for {', '.join(missing)}")

    def analyze(  # type: ignore[override]
        self,
        madmom: Mapping[str, Any],
        bgate: Mapping[str, Any],
        edma: Mapping[str, Any],
        temperley: Mapping[str, Any],
        krumhansl: Mapping[str, Any],
    ) -> dict[str, Any]:
        """The most probable key under the combined evidence, with the posterior over all 24."""
        upstream = {"madmom": madmom, "bgate": bgate, "edma": edma, "temperley": temperley, "krumhansl": krumhansl}
        answers = [key_index(upstream[p]["key"], upstream[p]["scale"]) for p in KEY_PROFILES]
        post = key_posterior(
            madmom_vector(upstream["madmom"]["probabilities"]),
            answers,
            [self.confusions[p] for p in KEY_PROFILES],
            1.0,
            self.vote_weight,
        )
        best = int(np.argmax(post))
        key, scale = key_name(best)
        return {
            "key": key,
            "scale": scale,
            "strength": round(float(post[best]), 4),
            "probabilities": {" ".join(key_name(i)): round(float(p), 4) for i, p in enumerate(post)},
            "votes": {p: " ".join(key_name(a)) for p, a in zip(KEY_PROFILES, answers, strict=True)}
            | {"madmom": f"{upstream['madmom']['key']} {upstream['madmom']['scale']}"},
        }


class TempoEnsemble(Analyzer):
    """Tempo (and its octave) from bpm_degara, beats_madmom, bpm_octave and TempoCNN, with madmom's beats
    re-timed to the chosen octave (onsets pick the phase when halving)."""

    inputs: ClassVar[Mapping[str, Input]] = {
        "degara": ModelInput(requires=("bpm", "beats")),
        "madmom": ModelInput(requires=("bpm", "beats")),
        "octave": ModelInput(requires=("bpm",)),
        "tempocnn": ModelInput(requires=("bpm",)),  # + bpm_probabilities, used only when cnn_weight > 0
        "onsets": ModelInput(requires=("onsets", "onset_rate")),
    }

    def __init__(
        self,
        vote_weight: float | None = None,
        cnn_weight: float | None = None,
        edges: Sequence[float] | None = None,
        prior: Sequence[float] | None = None,
        onset_prior: Sequence[float] | None = None,
        confusions: Mapping[str, Sequence[Mapping[str, float]]] | None = None,
    ) -> None:
        chosen = onset_prior if onset_prior is not None else TEMPO_ONSET_PRIOR
        self.model = TempoModel(
            confusions={k: [dict(t) for t in v] for k, v in (confusions or TEMPO_CONFUSIONS).items()},
            edges=tuple(float(e) for e in (TEMPO_EDGES if edges is None else edges)),
            vote_weight=TEMPO_VOTE_WEIGHT if vote_weight is None else float(vote_weight),
            cnn_weight=TEMPO_CNN_WEIGHT if cnn_weight is None else float(cnn_weight),
            prior=tuple(float(v) for v in (prior or TEMPO_PRIOR)),  # type: ignore[arg-type]
            onset_prior=tuple(float(v) for v in chosen) if chosen else None,  # type: ignore[arg-type]
        )
        bands = len(self.model.edges) + 1
        missing = [v for v in TEMPO_VOTERS if len(self.model.confusions.get(v, ())) != bands]
        if missing:
            raise ValueError(f"confusions needs {bands} band tables for {', '.join(missing)}")

    def analyze(  # type: ignore[override]
        self,
        degara: Mapping[str, Any],
        madmom: Mapping[str, Any],
        octave: Mapping[str, Any],
        tempocnn: Mapping[str, Any],
        onsets: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Score every candidate tempo, keep the best, re-time the beats to it."""
        upstream = {"degara": degara, "madmom": madmom, "octave": octave, "tempocnn": tempocnn}
        estimates = {v: float(upstream[v].get("bpm") or 0.0) for v in TEMPO_VOTERS}
        evidence = TempoEvidence(estimates, tempocnn.get("bpm_probabilities"), onsets.get("onset_rate"))
        bpm, scored = decide_tempo(evidence, self.model)
        beats, source = [], "none"
        for name in ("madmom", "degara"):
            relation = tempo_relation(estimates[name], bpm)
            if relation in ("same", "double", "half"):
                factor = 1.0 / TEMPO_RELATIONS[relation]
                beats, source = retime_beats(upstream[name]["beats"], factor, onsets.get("onsets", ())), name
                break
        return {
            "bpm": round(bpm, 3),
            "beats": beats,
            "beat_count": len(beats),
            "beats_from": source,
            "votes": {k: round(v, 3) for k, v in estimates.items()},
            "candidates": [{"bpm": round(t, 2), "log_score": round(sc, 3)} for t, sc in scored[:4]],
        }
