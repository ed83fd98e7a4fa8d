"""MusiCNN through the model graph (models/musicnn.py: one backbone pass, tag and embedding views), on real signals.

Known cases: the synthesised rock clip in tests/data (see its README) tags as rock on both models; a pure tone
reads as 'flute' and white noise as 'loud'/'fast' on MTT; short audio is refused by the host; one local server
streams the backbone's consumers (tags, embeddings, MTG's heads) from a single MusiCNN pass.
Equality with Essentia's TensorflowPredictMusiCNN and with the previous one-analyzer-per-output results is in
tests/test_mtg_models.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from models.base import AnalyzerError, Audio
from models.essentia_runtime import configure_tensorflow, essentia_standard
from models.placement import Placement
from serve_app.ingress.decode import decode, representation
from serve_app.registry import ModelEntry, Registry
from serve_app.registry.availability import PACKAGED_WEIGHTS
from serve_app.registry.graph import order
from serve_app.runners.host import AnalyzerHost
from tests.audio_factory import encode, sine
from tests.conftest import REPO, catalogue_entry, free_port, make_settings, running_local_server
from tests.sse import post

MUSICNN_DIR = PACKAGED_WEIGHTS / "musicnn"
ROCK_CLIP = REPO / "tests" / "data" / "rock_clip.opus"
SR = 16000
# every model the MSD-MusiCNN backbone feeds: one pass serves them all
CONSUMERS = (
    "tags_msd_musicnn",
    "embeddings_msd_musicnn",
    "mood_happy",
    "mood_sad",
    "mood_relaxed",
    "mood_aggressive",
    "danceability",
    "arousal_valence",
)


@pytest.fixture(scope="module")
def rock_bytes() -> bytes:
    """The committed rock clip (Ogg Opus)."""
    return ROCK_CLIP.read_bytes()


@pytest.fixture(scope="module")
def rock(rock_bytes: bytes) -> Audio:
    """The rock clip as the server hands it to MusiCNN: decoded with PyAV, mono, soxr to 16 kHz."""
    return representation(decode(rock_bytes, 600.0), catalogue_entry("musicnn_msd").input)


class Pipeline:
    """A backbone host and a view host, run the way the graph runs them (the backbone once, the view on it)."""

    def __init__(self, backbone: str, view: str) -> None:
        self.backbone = AnalyzerHost(catalogue_entry(backbone))
        self.view = AnalyzerHost(catalogue_entry(view))
        self.view_entry: ModelEntry = self.view.entry

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """The view's results for one track."""
        out = self.backbone.run({"audio": audio})
        return self.view.run({"backbone": out}).results


@pytest.fixture(scope="module")
def msd() -> Pipeline:
    """MSD tags: musicnn_msd:1 → tags_msd_musicnn:1."""
    return Pipeline("musicnn_msd", "tags_msd_musicnn")


@pytest.fixture(scope="module")
def mtt() -> Pipeline:
    """MTT tags: musicnn_mtt:1 → tags_mtt_musicnn:1."""
    return Pipeline("musicnn_mtt", "tags_mtt_musicnn")


# ---- committed files ---------------------------------------------------------------------------------


def test_the_registry_records_the_committed_files() -> None:
    """Each backbone's graph and metadata are packaged with the SHA-256 the host checks at load (one record); the
    freeze tool's SHA256SUMS, its reproducibility manifest, agrees."""
    sums = dict(reversed(line.split("  ", 1)) for line in (MUSICNN_DIR / "SHA256SUMS").read_text().splitlines())
    for name, stem in (("musicnn_msd", "msd-musicnn-1"), ("musicnn_mtt", "mtt-musicnn-1")):
        files = {w.packaged: w.sha256 for w in catalogue_entry(name).weights}
        assert set(files) == {f"musicnn/{stem}.pb", f"musicnn/{stem}.json"}
        for packaged, digest in files.items():
            assert hashlib.sha256((PACKAGED_WEIGHTS / packaged).read_bytes()).hexdigest() == digest
            assert sums[Path(packaged).name] == digest


def test_metadata_describes_the_graphs() -> None:
    """MTG-style JSON: 50 classes, Essentia's node names, 16 kHz; its graph_sha256 is the graph's digest."""
    for stem, first in (("msd-musicnn-1", ["rock", "pop", "alternative"]), ("mtt-musicnn-1", ["guitar", "classical"])):
        meta = json.loads((MUSICNN_DIR / f"{stem}.json").read_text())
        assert len(meta["classes"]) == 50 and meta["classes"][: len(first)] == first
        assert meta["inference"] == {"sample_rate": 16000, "algorithm": "TensorflowPredictMusiCNN"}
        assert [i["name"] for i in meta["schema"]["inputs"]] == ["model/Placeholder"]
        purposes = {o["output_purpose"]: o["name"] for o in meta["schema"]["outputs"]}
        assert purposes["predictions"] == "model/Sigmoid" and purposes["embeddings"] == "model/dense/BiasAdd"
        graph = hashlib.sha256((MUSICNN_DIR / f"{stem}.pb").read_bytes()).hexdigest()
        assert meta["source"]["graph_sha256"] == graph


def test_licence_is_musicnn_isc_notice() -> None:
    """The ISC notice of the musicnn package, kept verbatim."""
    text = (MUSICNN_DIR / "LICENSE").read_text()
    assert text.startswith("Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019.")
    assert "Permission to use, copy, modify, and/or distribute this software for any purpose" in text


def test_the_graph_wires_every_msd_consumer_to_one_backbone() -> None:
    """Tags, embeddings and the six default MTG heads all take musicnn_msd:1: one request runs MusiCNN once."""
    for name in CONSUMERS:
        entry = catalogue_entry(name)
        assert entry.upstream == {"backbone": "musicnn_msd:1"} and entry.input is None, name
    backbone = catalogue_entry("musicnn_msd")
    plan = order(
        [catalogue_entry(n) for n in CONSUMERS], {e.key: e for e in (backbone, *map(catalogue_entry, CONSUMERS))}
    )
    assert [e.key for e in plan].count("musicnn_msd:1") == 1 and plan[0].key == "musicnn_msd:1"


# ---- known cases -------------------------------------------------------------------------------------


def test_rock_clip_msd_tags(msd: Pipeline, rock: Audio) -> None:
    """'rock' is the top MSD tag, rock-family tags lead the non-rock genres, and the schema holds."""
    result = msd.analyze(rock)
    top = [t["label"] for t in result["top"]]
    assert top[0] == "rock", result["top"]
    assert {"classic rock", "hard rock", "indie rock", "alternative rock"} & set(top[:3]), result["top"]
    scores = dict(zip(result["labels"], result["activations"], strict=True))
    assert scores["rock"] > 0.25
    assert all(scores["rock"] > 2 * scores[g] for g in ("jazz", "Hip-Hop", "House", "electronic", "soul", "country"))
    jsonschema.validate(result, msd.view_entry.output_schema)
    assert result["patches"] == 12  # 19.3 s: patches start every 1.488 s and must fit whole


def test_rock_clip_mtt_tags(mtt: Pipeline, rock: Audio) -> None:
    """MagnaTagATune: 'rock' and 'guitar' are the top two tags; classical/quiet tags stay low."""
    result = mtt.analyze(rock)
    assert {t["label"] for t in result["top"][:2]} == {"rock", "guitar"}, result["top"]
    scores = dict(zip(result["labels"], result["activations"], strict=True))
    assert all(scores[t] < 0.1 for t in ("classical", "quiet", "opera", "harpsichord", "choral"))


def test_mtt_tells_a_pure_tone_from_noise(mtt: Pipeline) -> None:
    """A 440 Hz sine reads as 'flute' (solo, quiet); full-band white noise as 'fast' and 'loud'."""
    tone = mtt.analyze(Audio(sine(440.0, -12.0, 15.0, SR, 1)[0], SR))
    assert tone["top"][0]["label"] == "flute", tone["top"]
    noise = 0.3 * np.random.default_rng(0).standard_normal(15 * SR).astype(np.float32)
    loud = mtt.analyze(Audio(noise, SR))
    assert {t["label"] for t in loud["top"][:2]} == {"fast", "loud"}, loud["top"]
    scores = dict(zip(loud["labels"], loud["activations"], strict=True))
    assert scores["flute"] < 0.05 and scores["loud"] > 0.3


def test_short_audio_is_refused_by_the_host(msd: Pipeline) -> None:
    """Under one 3 s patch: AnalyzerError saying how long the audio is and what is needed (no padding)."""
    with pytest.raises(AnalyzerError, match=r"audio is 2\.50 s long; musicnn_msd:1 needs at least 3 s"):
        msd.backbone.run({"audio": Audio(sine(440.0, -12.0, 2.5, SR, 1)[0], SR)})
    assert msd.analyze(Audio(sine(440.0, -12.0, 3.0, SR, 1)[0], SR))["patches"] == 1


# ---- runtime placement ----------------------------------------------------------------------------------

_THREAD_PROBE = """
import os, sys
from models import placement
placement.configure(float(sys.argv[1]))
from models.musicnn import MusiCNNBackbone
d = "models/weights/musicnn/"
MusiCNNBackbone(weight_files={"graph": d + "msd-musicnn-1.pb", "metadata": d + "msd-musicnn-1.json"})
env = os.environ
print(len(os.listdir("/proc/self/task")), env["TF_NUM_INTRAOP_THREADS"], repr(env["CUDA_VISIBLE_DEVICES"]))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir() or (os.cpu_count() or 1) < 2, reason="needs Linux, 2 cores")
def test_tensorflow_threads_follow_the_placement() -> None:
    """A fresh replica process with 2 CPUs has exactly 2 more TF threads (intra + inter pool) than with 1."""
    counts = []
    for cpus in ("1", "2"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TF_NUM_")}
        out = subprocess.run(
            [sys.executable, "-c", _THREAD_PROBE, cpus], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr[-2000:]
        threads, intra, cuda = out.stdout.split()
        assert intra == cpus and cuda == "''"  # no GPU in the placement: GPUs hidden from TF
        counts.append(int(threads))
    assert counts[1] - counts[0] == 2, counts


def test_configure_tensorflow_is_a_no_op_once_essentia_is_loaded() -> None:
    """After essentia.standard is imported the pools exist, so the function says it is too late."""
    essentia_standard()
    assert configure_tensorflow(Placement(cpus=1.0)) is False


# ---- end to end ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def musicnn_server() -> Iterator[str]:
    """The in-process server with the MSD backbone, its consumers and the MTT pair (one pool process each)."""
    names = ("musicnn_msd", "musicnn_mtt", "tags_mtt_musicnn", *CONSUMERS)
    registry = Registry(entries=tuple(catalogue_entry(n) for n in names))
    with running_local_server(registry, make_settings(free_port())) as base:
        yield base


def test_server_streams_every_msd_consumer_from_one_pass(
    musicnn_server: str, rock_bytes: bytes, msd: Pipeline, rock: Audio
) -> None:
    """Rock clip: one completed event per requested model (none for the backbone), schemas hold, served tags equal
    the in-process pipeline's; 2 s of audio: each model's error names the backbone's minimum."""
    models = ",".join((*CONSUMERS[:4], "tags_mtt_musicnn"))
    stream = post(musicnn_server, models, rock_bytes, timeout=300)
    assert stream.status == 200, stream.body
    events = stream.by_model()
    assert set(events) == {*CONSUMERS[:4], "tags_mtt_musicnn"}, events
    assert all(e["status"] == "completed" for e in events.values()), events
    for name, event in events.items():
        jsonschema.validate(event["result"]["results"], catalogue_entry(name).output_schema)
    served = events["tags_msd_musicnn"]["result"]["results"]
    assert served["top"][0]["label"] == "rock"
    np.testing.assert_allclose(served["activations"], msd.analyze(rock)["activations"], rtol=0, atol=1e-6)
    mtt_top = events["tags_mtt_musicnn"]["result"]["results"]["top"]
    assert {t["label"] for t in mtt_top[:2]} == {"rock", "guitar"}
    assert len(events["embeddings_msd_musicnn"]["result"]["results"]["embedding"]) == 200
    assert events["mood_happy"]["result"]["model_version"] == "msd-musicnn-1"  # the bare name's default

    short = post(musicnn_server, "tags_msd_musicnn,mood_happy", encode(sine(440.0, -12.0, 2.0, 44100, 1), 44100, "wav"))
    errors = short.by_model()
    assert set(errors) == {"tags_msd_musicnn", "mood_happy"}
    for event in errors.values():
        assert event["status"] == "error" and "musicnn_msd:1" in event["error"], event
        assert "needs at least 3 s" in event["error"], event
