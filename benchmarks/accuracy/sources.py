"""Ground-truth sets for the ensembles (issue 15), all from material nobody on the team wrote.

- Debian packages fetched with ``apt-get download`` (never installed): game/demo MIDI files whose own meta
  events give the tempo (``set_tempo``) and key (``key_signature``), rendered with fluidsynth; LMMS demo
  projects (``lmms-common``) rendered by ``lmms render``, tempo from the project header; Hydrogen demo songs
  (``hydrogen-data``) rendered by ``h2cli``, tempo from the song file; Frets on Fire song packs, real
  recordings whose note charts (``notes.mid``) carry the tempo the charter synchronised to the audio.
- music21's corpus beyond the Bach chorales: classical scores (key = the one key signature plus the final
  bass note) and O'Neill's 1850 Irish tunes (key = the ABC ``K:`` field plus the final note).

Labels never come from an audio algorithm. Each builder returns its items and a stats dict (why files were
dropped); everything rendered is cached under ``CACHE`` and a manifest makes reruns free.
"""

from __future__ import annotations

import gzip
import io
import re
import subprocess
import wave
import zlib
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np

from benchmarks.accuracy.audio_io import render_midi, require, write_wav
from benchmarks.accuracy.datasets import CACHE, KEYS, BuildCache, Item

TEMPO_SECONDS = 120.0  # MIDI renders are cut here: long game loops add time, not information
MIN_SECONDS = 12.0
SAMPLE_RATE = 44100


# --- Debian packages ------------------------------------------------------------------------------------------


def debian_package(package: str) -> tuple[Path, str]:
    """(extracted root, .deb file name) of a Debian package, downloaded with apt-get and unpacked once."""
    debs = CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        subprocess.run(["apt-get", "download", package], cwd=debs, check=True, capture_output=True, timeout=600)
        found = sorted(debs.glob(f"{package}_*.deb"))
    root = debs / "x" / package
    if not root.exists():
        root.mkdir(parents=True)
        subprocess.run(["dpkg-deb", "-x", str(found[-1]), str(root)], check=True, timeout=300)
    return root, found[-1].name


def _midi_bytes(path: Path) -> bytes:
    """A MIDI file's bytes (gunzipped for ``.mid.gz``)."""
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def midi_facts(data: bytes) -> dict[str, Any]:
    """Tempi, time and key signatures, pitched/drum note onsets (ticks) and the length of a Standard MIDI File."""
    import mido

    mf = mido.MidiFile(file=io.BytesIO(data))
    tempos, sigs, keys, notes = [], [], [], []
    for track in mf.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                tempos.append((tick, mido.tempo2bpm(msg.tempo)))
            elif msg.type == "time_signature":
                sigs.append((tick, msg.numerator, msg.denominator))
            elif msg.type == "key_signature":
                keys.append((tick, msg.key))
            elif msg.type == "note_on" and msg.velocity > 0:
                notes.append((tick, msg.channel, msg.note))
    return {"tpb": mf.ticks_per_beat, "tempos": tempos, "sigs": sigs, "keys": keys, "notes": notes,
            "seconds": mf.length}  # fmt: skip


def constant_tempo(facts: dict[str, Any]) -> tuple[float | None, str]:
    """(BPM, 'kept') for one tempo throughout and a quarter-note beat, else (None, why not)."""
    bpms = {round(b, 2) for _, b in facts["tempos"]}
    if not bpms:
        return None, "no set_tempo event"
    if len(bpms) > 1:
        return None, "tempo changes"
    if any(den != 4 or num not in (2, 3, 4, 5) for _, num, den in facts["sigs"]):
        return None, "metre not 2/4-5/4"
    if facts["seconds"] < MIN_SECONDS:
        return None, f"shorter than {MIN_SECONDS:g} s"
    return bpms.pop(), "kept"


def _final_bass(notes: list[tuple[int, int, int]], window: int) -> int | None:
    """Lowest pitched (non-drum) MIDI note among the onsets of the last ``window`` ticks."""
    pitched = [(t, n) for t, ch, n in notes if ch != 9]
    if not pitched:
        return None
    last = max(t for t, _ in pitched)
    return min(n for t, n in pitched if t >= last - window)


def midi_key(facts: dict[str, Any]) -> tuple[str | None, str]:
    """('Bb minor', 'kept') when the file states one key and its final bass note is that key's tonic."""
    stated = {k for _, k in facts["keys"]}
    if not stated:
        return None, "no key_signature event"
    if len(stated) > 1:
        return None, "key signature changes"
    name = stated.pop()
    minor = name.endswith("m")
    tonic = _pitch_class(name[:-1] if minor else name)
    bass = _final_bass(facts["notes"], facts["tpb"] // 2)
    if bass is None or bass % 12 != tonic:
        return None, "final bass is not the stated tonic"
    return f"{KEYS[tonic]} {'minor' if minor else 'major'}", "kept"


def _pitch_class(name: str) -> int:
    """'F#' / 'Gb' / 'Cb' -> 6 / 6 / 11."""
    base = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}[name[0]]
    return (base + name[1:].count("#") - name[1:].count("b")) % 12


def trim_wav(path: Path, seconds: float) -> float:
    """Cut a 16-bit WAV to its first ``seconds`` (in place); returns the resulting duration."""
    with wave.open(str(path), "rb") as w:
        params, rate = w.getparams(), w.getframerate()
        if w.getnframes() <= seconds * rate:
            return w.getnframes() / rate
        frames = w.readframes(int(seconds * rate))
    with wave.open(str(path), "wb") as w:
        w.setparams(params)
        w.writeframes(frames)
    return seconds


def beat_grid(bpm: float, seconds: float, start: float = 0.0) -> list[float]:
    """Beat times every 60/bpm s from ``start`` up to ``seconds`` (the constant-tempo truth)."""
    period = 60.0 / bpm
    return [round(start + k * period, 4) for k in range(int((seconds - start) / period) + 1)]


def _tally(stats: dict[str, Any], reason: str, count: int = 1) -> None:
    """Count one more file kept or dropped for ``reason``."""
    stats["reasons"][reason] = stats["reasons"].get(reason, 0) + count


def _relative(path: Path, root: Path) -> str:
    """Path inside the package, for the manifest."""
    return str(path.relative_to(root))


def _midi_files(root: Path) -> list[Path]:
    """Every MIDI file in an unpacked package (.mid, .midi, .kar, .mid.gz), sorted."""
    pattern = re.compile(r"\.(mid|midi|kar)(\.gz)?$", re.IGNORECASE)
    return sorted(p for p in root.rglob("*") if p.is_file() and pattern.search(p.name))


def build_debian_midi(packages: tuple[str, ...], task: str) -> tuple[list[Item], dict[str, Any]]:
    """MIDI files of ``packages`` with a tempo (task='tempo') or key (task='key') label, rendered by fluidsynth.

    Tempo items are cut to TEMPO_SECONDS; key items keep the whole piece (the label is the global key).
    """
    cache = BuildCache.named(f"debian_midi_{task}")
    out = cache.out
    cached = cache.load()
    if cached is not None and cached[1].get("packages") == list(packages):
        return cached
    items: list[Item] = []
    stats: dict[str, Any] = {"packages": list(packages), "debs": {}, "reasons": {}}
    for package in packages:
        root, deb = debian_package(package)
        stats["debs"][package] = deb
        for path in _midi_files(root):
            try:
                facts = midi_facts(_midi_bytes(path))
            except Exception as exc:  # noqa: BLE001 - an unreadable file is a reason, not a crash
                label, reason = None, f"unreadable ({type(exc).__name__})"
            else:
                label, reason = constant_tempo(facts) if task == "tempo" else midi_key(facts)
            _tally(stats, reason)
            if label is None:
                continue
            slug = re.sub(r"[^A-Za-z0-9]+", "_", f"{package}_{path.name}").strip("_")
            wav = out / f"{slug}.wav"
            if not wav.exists():
                midi = out / f"{slug}.mid"
                midi.write_bytes(_midi_bytes(path))
                render_midi(midi, wav, SAMPLE_RATE)
            truth: dict[str, Any] = {"source": f"{package}:{_relative(path, root)}", "set": package}
            if task == "tempo":
                seconds = trim_wav(wav, TEMPO_SECONDS)
                truth.update(tempo=label, beats=beat_grid(float(label), min(seconds, facts["seconds"])))
            else:
                truth["key"] = label
            items.append(Item(wav, truth))
    cache.save(items, stats)
    return items, stats


# --- LMMS demo projects ---------------------------------------------------------------------------------------


def lmms_project(path: Path) -> ElementTree.Element:
    """The XML of an LMMS project (.mmpz is Qt's qCompress: 4-byte length + zlib)."""
    raw = path.read_bytes()
    return ElementTree.fromstring(zlib.decompress(raw[4:]) if path.suffix == ".mmpz" else raw)


def lmms_facts(root: ElementTree.Element) -> tuple[float, float]:
    """(bpm, song length in beats) from the project header and the end of its song-level tracks."""
    head = root.find("head")
    assert head is not None
    bpm = float(head.get("bpm") or head.find("bpm").get("value"))  # type: ignore[union-attr]
    end = 0
    container = root.find("song/trackcontainer")
    for track in container.findall("track") if container is not None else []:
        for part in track:
            if part.tag in ("pattern", "bbtco", "sampletco"):
                end = max(end, int(part.get("pos", 0)) + int(part.get("len", 0) or 0))
            if part.tag == "pattern":
                ends = [int(n.get("pos", 0)) + int(n.get("len", 0)) for n in part.findall("note")]
                end = max(end, int(part.get("pos", 0)) + max(ends, default=0))
    return bpm, end / 48.0  # LMMS: 48 ticks per beat


def build_lmms() -> tuple[list[Item], dict[str, Any]]:
    """Every LMMS demo/shorties project rendered by ``lmms render``; tempo = the project's bpm.

    A render is kept only when its length matches the project length at that bpm (1 s shorter to 12 s longer:
    effect tails): proof that the header tempo, not an automation, drove the render. LMMS counts its bpm in
    quarter notes whatever the time signature.
    """
    lmms = require("lmms", "lmms")
    cache = BuildCache.named("lmms")
    out = cache.out
    cached = cache.load()
    if cached is not None:
        return cached
    root, deb = debian_package("lmms-common")
    projects = root / "usr/share/lmms/projects"
    items, stats = [], {"debs": {"lmms-common": deb}, "reasons": {}}
    for path in sorted([*projects.glob("demos/**/*.mmp*"), *projects.glob("shorties/*.mmp*")]):
        bpm, beats = lmms_facts(lmms_project(path))
        slug = re.sub(r"[^A-Za-z0-9]+", "_", path.stem)
        wav = out / f"{slug}.wav"
        if not wav.exists():
            cmd = [lmms, "--allowroot", "render", str(path), "-f", "wav", "-o", str(wav)]
            env = {"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"}
            subprocess.run(cmd, check=True, capture_output=True, timeout=1800, env=env)
        seconds = _wav_seconds(wav)
        expected = beats * 60.0 / bpm
        reason = "kept" if expected - 1 <= seconds <= expected + 12 else "render length does not match the header tempo"
        _tally(stats, reason)
        if reason == "kept":
            truth = {"tempo": bpm, "beats": beat_grid(bpm, min(seconds, expected)), "set": "lmms",
                     "source": f"lmms-common:{_relative(path, root)}"}  # fmt: skip
            items.append(Item(wav, truth))
    cache.save(items, stats)
    return items, stats


def _wav_seconds(path: Path) -> float:
    """Duration of a WAV file."""
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


# --- Hydrogen demo songs ----------------------------------------------------------------------------------------


def hydrogen_facts(path: Path) -> tuple[float, float, bool]:
    """(bpm, song length in beats, every pattern a 4/4 bar) of an .h2song (48 ticks per beat)."""
    root = ElementTree.parse(path).getroot()
    bpm = float(root.findtext("bpm") or 0)
    sizes = {p.findtext("name"): int(p.findtext("size") or 0) for p in root.find("patternList") or []}
    total = 0
    for group in root.find("patternSequence") or []:
        ids = [e.text for e in group.findall("patternID")]
        total += max((sizes[i] for i in ids), default=0)
    return bpm, total / 48.0, set(sizes.values()) <= {192}


def build_hydrogen() -> tuple[list[Item], dict[str, Any]]:
    """Hydrogen's demo songs (drum machine) rendered by ``h2cli``; tempo = the song's bpm."""
    h2cli = require("h2cli", "hydrogen")
    cache = BuildCache.named("hydrogen")
    out = cache.out
    cached = cache.load()
    if cached is not None:
        return cached
    root, deb = debian_package("hydrogen-data")
    items, stats = [], {"debs": {"hydrogen-data": deb}, "reasons": {}}
    for path in sorted((root / "usr/share/hydrogen/data/demo_songs").glob("*.h2song")):
        bpm, beats, four_four = hydrogen_facts(path)
        wav = out / f"{path.stem}.wav"
        if not wav.exists():  # h2cli needs the drumkits of the installed `hydrogen` package
            subprocess.run([h2cli, "-s", str(path), "-o", str(wav)], check=True, capture_output=True, timeout=900)
        seconds = min(_wav_seconds(wav), beats * 60.0 / bpm)
        reason = "kept" if four_four else "pattern not a 4/4 bar"
        _tally(stats, reason)
        if four_four:
            truth = {"tempo": bpm, "beats": beat_grid(bpm, seconds), "set": "hydrogen",
                     "source": f"hydrogen-data:{_relative(path, root)}"}  # fmt: skip
            items.append(Item(wav, truth))
    cache.save(items, stats)
    return items, stats


# --- Frets on Fire song packs (real recordings) ---------------------------------------------------------------

FOF_PACKAGES = ("fretsonfire-songs-sectoid", "fretsonfire-songs-muldjord")


def build_fretsonfire() -> tuple[list[Item], dict[str, Any]]:
    """Frets on Fire songs (recorded metal/rock): the stems mixed to one WAV; tempo from the chart's MIDI.

    The chart's beat grid starts at the audio's t=0 (song.ini gives no delay for these songs).
    """
    from models.essentia_runtime import essentia_standard

    es = essentia_standard()
    cache = BuildCache.named("fretsonfire")
    out = cache.out
    cached = cache.load()
    if cached is not None:
        return cached
    items, stats = [], {"debs": {}, "reasons": {}}
    for package in FOF_PACKAGES:
        root, deb = debian_package(package)
        stats["debs"][package] = deb
        for chart in sorted(root.rglob("notes.mid")):
            facts = midi_facts(chart.read_bytes())
            bpm, reason = constant_tempo(facts)
            ini = (chart.parent / "song.ini").read_text(errors="replace")
            if re.search(r"^\s*delay\s*=\s*[1-9]", ini, re.MULTILINE):
                bpm, reason = None, "song.ini shifts the chart (delay)"
            _tally(stats, reason)
            if bpm is None:
                continue
            slug = re.sub(r"[^A-Za-z0-9]+", "_", chart.parent.name)
            wav = out / f"{slug}.wav"
            if not wav.exists():
                stems = [es.AudioLoader(filename=str(p))()[0] for p in sorted(chart.parent.glob("*.ogg"))]
                n = min(len(s) for s in stems)
                mix = np.sum([s[:n] for s in stems], axis=0).T
                write_wav(wav, mix / max(1.0, float(np.max(np.abs(mix)))), SAMPLE_RATE, bits=16)
            seconds = _wav_seconds(wav)
            truth = {"tempo": bpm, "beats": beat_grid(bpm, seconds), "set": "fretsonfire",
                     "source": f"{package}:{_relative(chart.parent, root)}"}  # fmt: skip
            items.append(Item(wav, truth))
    cache.save(items, stats)
    return items, stats


# --- music21 corpus beyond the chorales -------------------------------------------------------------------------

CLASSICAL_COMPOSERS = ("beethoven", "mozart", "haydn", "schubert", "schumann_robert", "schumann_clara", "chopin",
                       "joplin", "handel", "corelli", "cpebach", "weber", "verdi", "beach", "liliuokalani",
                       "johnson_j_r")  # fmt: skip


def score_key_label(score: Any) -> tuple[str | None, str]:
    """('Eb major', 'kept') when the score keeps one key signature and its final bass note is the tonic of the
    major key or of the relative minor that signature stands for; otherwise (None, why not)."""
    from music21 import key as m21key

    sharps = {ks.sharps for ks in score.recurse().getElementsByClass(m21key.KeySignature)}
    if len(sharps) != 1:
        return None, "no key signature" if not sharps else "key signature changes"
    notes = [n for n in score.flatten().notes if getattr(n, "pitches", ())]
    if not notes:
        return None, "no notes"
    end = max(float(n.offset + n.quarterLength) for n in notes)
    last = max(float(n.offset) for n in notes)
    final = [n for n in notes if float(n.offset + n.quarterLength) >= end - 1e-6 or float(n.offset) >= last - 1e-6]
    bass = min((p for n in final for p in n.pitches), key=lambda p: p.ps).pitchClass
    major = (7 * sharps.pop()) % 12
    if bass == major:
        return f"{KEYS[major]} major", "kept"
    if bass == (major + 9) % 12:
        return f"{KEYS[(major + 9) % 12]} minor", "kept"
    return None, "final bass is neither tonic of the signature"


def _render_score(score: Any, stem: Path) -> tuple[Path | None, str]:
    """(WAV, 'kept') for a music21 score written as MIDI and rendered, else (None, why not)."""
    midi, wav = stem.with_suffix(".mid"), stem.with_suffix(".wav")
    if wav.exists():
        return wav, "kept"
    try:
        score.write("midi", fp=str(midi))
    except Exception:  # noqa: BLE001 - a few ABC tunes trip music21's MIDI export; they are skipped
        return None, "music21 MIDI export failed"
    render_midi(midi, wav, SAMPLE_RATE)
    return wav, "kept"


def build_classical() -> tuple[list[Item], dict[str, Any]]:
    """Every single-key movement of music21's classical (non-Bach) scores, rendered by fluidsynth."""
    from music21 import corpus

    cache = BuildCache.named("classical")
    out = cache.out
    cached = cache.load()
    if cached is not None:
        return cached
    items, stats = [], {"composers": list(CLASSICAL_COMPOSERS), "reasons": {}}
    seen: set[str] = set()
    for composer in CLASSICAL_COMPOSERS:
        paths = sorted(corpus.getComposer(composer), key=lambda p: (p.with_suffix("").as_posix(), p.suffix != ".mxl"))
        for path in paths:
            rel = path.as_posix().split("/corpus/")[-1]
            if rel.rsplit(".", 1)[0] in seen:  # the same movement in two encodings: keep the first (.mxl)
                continue
            seen.add(rel.rsplit(".", 1)[0])
            score = corpus.parse(path)
            label, reason = (None, "not a single score") if not hasattr(score, "parts") else score_key_label(score)
            wav = None
            if label is not None:
                wav, reason = _render_score(score, out / re.sub(r"[^A-Za-z0-9]+", "_", rel))
            _tally(stats, reason)
            if wav is None:
                continue
            items.append(Item(wav, {"key": label, "source": f"music21:{rel}", "set": "classical"}))
    cache.save(items, stats)
    return items, stats


def tune_key_label(score: Any) -> tuple[str | None, str]:
    """('G major', 'kept') when a tune's ABC K: field is one major/minor key and its last note is that tonic."""
    from music21 import key as m21key

    keys = {(k.tonic.name.replace("-", "b"), k.mode) for k in score.recurse().getElementsByClass(m21key.Key)}
    notes = [n for n in score.flatten().notes if getattr(n, "pitches", ())]
    if len(keys) != 1:
        return None, "no K: field" if not keys else "key changes"
    tonic, mode = keys.pop()
    if mode not in ("major", "minor"):
        return None, "modal K: (not major/minor)"
    if not notes or notes[-1].pitches[0].pitchClass != _pitch_class(tonic):
        return None, "last note is not the tonic"
    return f"{KEYS[_pitch_class(tonic)]} {mode}", "kept"


def build_oneills(limit: int) -> tuple[list[Item], dict[str, Any]]:
    """The first ``limit`` O'Neill's 1850 tunes (corpus order) that pass ``tune_key_label``, rendered."""
    from music21 import corpus

    cache = BuildCache.named("oneills")
    out = cache.out
    cached = cache.load()
    if cached is not None and len(cached[0]) >= limit:
        return cached[0][:limit], cached[1]
    items, stats = [], {"reasons": {}}
    for path in sorted(corpus.getComposer("oneills1850")):
        for score in corpus.parse(path).scores:
            if len(items) >= limit:
                break
            label, reason = tune_key_label(score)
            number = score.metadata.number if score.metadata else len(items)
            wav = None
            if label is not None:
                wav, reason = _render_score(score, out / f"oneills_{path.stem}_{number}")
            _tally(stats, reason)
            if wav is not None:
                source = f"music21:oneills1850/{path.name}#{number}"
                items.append(Item(wav, {"key": label, "source": source, "set": "oneills"}))
        if len(items) >= limit:
            break
    cache.save(items, stats)
    return items, stats


# --- MMA dance/rock grooves (the Casio, Zoom and Alexis libraries Debian's mma ships) ---------------------------

DANCE_GROOVES = ("Dance1", "DancePop1", "8BeatDance", "House", "Techno", "Trance1", "Rave", "Hip-Hop", "DiscoSoul",
                 "Funk1", "DigitalRock", "HeavyMetal", "DANC01", "HOUS01", "TECH01", "DnB01", "PUNK01", "MTL01",
                 "TeamTechno", "Trance")  # fmt: skip


def build_mma_dance(per_groove: int = 3, seconds: float = 30.0) -> list[Item]:
    """Each dance/rock groove at ``per_groove`` tempi drawn log-uniformly from 85-200 BPM (seeded), rendered."""
    from benchmarks.accuracy.datasets import PROGRESSIONS, _chord_names

    mma = require("mma", "mma")
    cache = BuildCache.named("mma_dance")
    out = cache.out
    cached = cache.items()
    if cached is not None:
        return cached
    rng = np.random.default_rng(15)
    items = []
    for g_index, groove in enumerate(DANCE_GROOVES):
        for tempo in sorted({int(round(85 * (200 / 85) ** u)) for u in rng.uniform(0, 1, per_groove)}):
            tonic = int(rng.integers(12))
            bars = int(np.ceil(seconds * tempo / 240.0))
            names = _chord_names(tonic, PROGRESSIONS[g_index % len(PROGRESSIONS)])
            slug = f"{re.sub(r'[^A-Za-z0-9]+', '', groove).lower()}_{tempo}"
            src, midi, wav = out / f"{slug}.mma", out / f"{slug}.mid", out / f"{slug}.wav"
            src.write_text(
                "\n".join([f"Tempo {tempo}", f"Groove {groove}"] + [f"{b + 1} {names[b % 4]}" for b in range(bars)])
                + "\n"
            )
            subprocess.run([mma, str(src), "-f", str(midi)], check=True, capture_output=True, timeout=120)
            render_midi(midi, wav, SAMPLE_RATE)
            truth = {"tempo": tempo, "beats": beat_grid(tempo, bars * 240.0 / tempo - 1e-6), "set": "mma_dance",
                     "source": f"mma:{groove}"}  # fmt: skip
            items.append(Item(wav, truth))
    cache.save(items)
    return items
