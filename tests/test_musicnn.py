"""MusiCNN taggers and embeddings (models/musicnn.py) with the committed frozen graphs, on real signals.

Known cases: the synthesised rock clip in tests/data (see its README) tags as rock on both models and gives
exactly what a direct essentia.standard.TensorflowPredictMusiCNN run gives; a pure tone reads as 'flute'
and white noise as 'loud'/'fast' on MTT; short audio is refused; one local server streams all three.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml

from models.base import AnalyzerError, Audio, InputSpec
from models.essentia_runtime import essentia_standard
from models.musicnn import (
    WEIGHTS_DIR,
    ModelFilesError,
    MusiCNNEmbeddings,
    MusiCNNTagger,
    configure_tensorflow,
    verify_checksum,
    weights_file,
)
from models.placement import Placement
from serve_app.decode import decode, representation
from serve_app.registry import Registry, parse_registry
from tests.audio_factory import encode, sine
from tests.conftest import REPO, free_port, make_settings, running_local_server
from tests.sse import post

MUSICNN_DIR = WEIGHTS_DIR / "musicnn"
ROCK_CLIP = REPO / "tests" / "data" / "rock_clip.opus"
NAMES = ("tags_msd_musicnn", "tags_mtt_musicnn", "embeddings_msd_musicnn")
SR = 16000


def _sums() -> dict[str, str]:
    """SHA256SUMS as {file name: digest}."""
    lines = (MUSICNN_DIR / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split("  ", 1) for line in lines)}


def _registry_entries() -> list[dict]:
    """The three MusiCNN entries as written in model_registry.yaml."""
    data = yaml.safe_load((REPO / "model_registry.yaml").read_text())
    return [m for m in data["models"] if m["name"] in NAMES]


@pytest.fixture(scope="module")
def rock_bytes() -> bytes:
    """The committed rock clip (Ogg Opus)."""
    return ROCK_CLIP.read_bytes()


@pytest.fixture(scope="module")
def rock(rock_bytes: bytes) -> Audio:
    """The rock clip as the server hands it to MusiCNN: decoded with PyAV, mono, soxr to 16 kHz."""
    return representation(decode(rock_bytes, 600.0), InputSpec(SR, "mono"))


@pytest.fixture(scope="module")
def msd() -> MusiCNNTagger:
    """The MSD tagger with the registry's params."""
    return MusiCNNTagger(**_params("tags_msd_musicnn"))


@pytest.fixture(scope="module")
def mtt() -> MusiCNNTagger:
    """The MTT tagger with the registry's params."""
    return MusiCNNTagger(**_params("tags_mtt_musicnn"))


@pytest.fixture(scope="module")
def embedder() -> MusiCNNEmbeddings:
    """The MSD embedding extractor with the registry's params."""
    return MusiCNNEmbeddings(**_params("embeddings_msd_musicnn"))


def _params(name: str) -> dict:
    """Registry params of one entry."""
    return next(m["params"] for m in _registry_entries() if m["name"] == name)


def _direct_essentia(audio: Audio, graph: str, output: str) -> np.ndarray:
    """Reference: Essentia's algorithm with its defaults (patchHopSize 93, batchSize 64), one row per patch."""
    es = essentia_standard()
    algo = es.TensorflowPredictMusiCNN(graphFilename=str(MUSICNN_DIR / graph), output=output)
    return np.asarray(algo(audio.samples))


# ---- committed files ---------------------------------------------------------------------------------


def test_committed_weights_match_sha256sums() -> None:
    """Every file in models/weights/musicnn is listed in SHA256SUMS with its true digest, and nothing else."""
    sums = _sums()
    on_disk = {p.name for p in MUSICNN_DIR.iterdir() if p.is_file()} - {"SHA256SUMS"}
    assert (
        set(sums)
        == on_disk
        == {
            "msd-musicnn-1.pb",
            "mtt-musicnn-1.pb",
            "msd-musicnn-1.json",
            "mtt-musicnn-1.json",
            "LICENSE",
        }
    )
    for name, digest in sums.items():
        assert hashlib.sha256((MUSICNN_DIR / name).read_bytes()).hexdigest() == digest, name


def test_metadata_describes_the_graphs() -> None:
    """MTG-style JSON: 50 classes, Essentia's node names, 16 kHz; its graph_sha256 is the graph's digest."""
    sums = _sums()
    for stem, first in (("msd-musicnn-1", ["rock", "pop", "alternative"]), ("mtt-musicnn-1", ["guitar", "classical"])):
        meta = json.loads((MUSICNN_DIR / f"{stem}.json").read_text())
        assert len(meta["classes"]) == 50 and meta["classes"][: len(first)] == first
        assert meta["inference"] == {"sample_rate": 16000, "algorithm": "TensorflowPredictMusiCNN"}
        assert [i["name"] for i in meta["schema"]["inputs"]] == ["model/Placeholder"]
        purposes = {o["output_purpose"]: o["name"] for o in meta["schema"]["outputs"]}
        assert purposes["predictions"] == "model/Sigmoid" and purposes["embeddings"] == "model/dense/BiasAdd"
        assert meta["source"]["graph_sha256"] == sums[f"{stem}.pb"]


def test_licence_is_musicnn_isc_notice() -> None:
    """The ISC notice of the musicnn package, kept verbatim."""
    text = (MUSICNN_DIR / "LICENSE").read_text()
    assert text.startswith("Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019.")
    assert "Permission to use, copy, modify, and/or distribute this software for any purpose" in text


def test_altered_graph_is_refused(tmp_path: Path) -> None:
    """One flipped byte: a clear error naming the file and both digests."""
    for name in ("msd-musicnn-1.pb", "SHA256SUMS"):
        shutil.copy(MUSICNN_DIR / name, tmp_path / name)
    graph = tmp_path / "msd-musicnn-1.pb"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(ModelFilesError, match="was altered or corrupted"):
        verify_checksum(graph)
    assert verify_checksum(MUSICNN_DIR / "msd-musicnn-1.pb") == _sums()["msd-musicnn-1.pb"]


def test_graph_param_stays_inside_the_weights_folder() -> None:
    """A path escaping models/weights or naming a missing file fails at load with a message."""
    with pytest.raises(ModelFilesError, match="outside the weights folder"):
        weights_file("../base.py")
    with pytest.raises(ModelFilesError, match="missing"):
        MusiCNNTagger(graph="musicnn/nope.pb")
    with pytest.raises(ModelFilesError, match="no output node"):
        MusiCNNTagger(graph="musicnn/msd-musicnn-1.pb", output="model/Softmax")


# ---- registry ----------------------------------------------------------------------------------------


def test_registry_entries_load() -> None:
    """Three default entries at 16 kHz mono with the agreed licences; their params fit the classes."""
    registry = parse_registry({"models": _registry_entries()}, "musicnn entries")
    assert [e.name for e in registry.entries] == list(NAMES)
    for entry in registry.entries:
        assert entry.default and entry.input == InputSpec(16000, "mono")
        assert entry.license == {"code": "ISC (musicnn) / AGPL-3.0 (Essentia)", "weights": "ISC (musicnn checkpoints)"}
        assert entry.resources.memory_mb is not None
        assert weights_file(entry.params["graph"]).parent == MUSICNN_DIR


# ---- known cases -------------------------------------------------------------------------------------


def test_rock_clip_msd_tags(msd: MusiCNNTagger, rock: Audio) -> None:
    """'rock' is the top MSD tag, rock-family tags lead the non-rock genres, and the schema holds."""
    result = msd.analyze(rock)
    top = [t["label"] for t in result["top"]]
    assert top[0] == "rock", result["top"]
    assert {"classic rock", "hard rock", "indie rock", "alternative rock"} & set(top[:3]), result["top"]
    scores = dict(zip(result["labels"], result["activations"], strict=True))
    assert scores["rock"] > 0.25
    assert all(scores["rock"] > 2 * scores[g] for g in ("jazz", "Hip-Hop", "House", "electronic", "soul", "country"))
    entry = parse_registry({"models": _registry_entries()}, "x").find("tags_msd_musicnn", None)
    jsonschema.validate(result, entry.output_schema)
    assert result["patches"] == 12  # 19.3 s: patches start every 1.488 s and must fit whole


def test_tags_equal_a_direct_essentia_run(msd: MusiCNNTagger, mtt: MusiCNNTagger, rock: Audio) -> None:
    """The served activations are Essentia's own on the same 16 kHz audio (batch size only reorders work)."""
    for tagger, graph in ((msd, "msd-musicnn-1.pb"), (mtt, "mtt-musicnn-1.pb")):
        result = tagger.analyze(rock)
        patches = _direct_essentia(rock, graph, "model/Sigmoid")
        direct = patches.mean(axis=0)
        assert result["patches"] == patches.shape[0]
        np.testing.assert_allclose(result["activations"], direct, rtol=0, atol=1e-5)
        assert [t["label"] for t in result["top"]] == [result["labels"][i] for i in np.argsort(-direct)[:10]]


def test_rock_clip_mtt_tags(mtt: MusiCNNTagger, rock: Audio) -> None:
    """MagnaTagATune: 'rock' and 'guitar' are the top two tags; classical/quiet tags stay low."""
    result = mtt.analyze(rock)
    assert {t["label"] for t in result["top"][:2]} == {"rock", "guitar"}, result["top"]
    scores = dict(zip(result["labels"], result["activations"], strict=True))
    assert all(scores[t] < 0.1 for t in ("classical", "quiet", "opera", "harpsichord", "choral"))


def test_mtt_tells_a_pure_tone_from_noise(mtt: MusiCNNTagger) -> None:
    """A 440 Hz sine reads as 'flute' (solo, quiet); full-band white noise as 'fast' and 'loud'."""
    tone = mtt.analyze(Audio(sine(440.0, -12.0, 15.0, SR, 1)[0], SR))
    assert tone["top"][0]["label"] == "flute", tone["top"]
    noise = 0.3 * np.random.default_rng(0).standard_normal(15 * SR).astype(np.float32)
    loud = mtt.analyze(Audio(noise, SR))
    assert {t["label"] for t in loud["top"][:2]} == {"fast", "loud"}, loud["top"]
    scores = dict(zip(loud["labels"], loud["activations"], strict=True))
    assert scores["flute"] < 0.05 and scores["loud"] > 0.3


def test_embeddings_shape_determinism_and_essentia(
    embedder: MusiCNNEmbeddings, msd: MusiCNNTagger, rock: Audio
) -> None:
    """200-d, one frame per tagger patch, the mean of the frames, bit-identical on a rerun, Essentia's values."""
    first = embedder.analyze(rock)
    again = embedder.analyze(rock)
    assert first == again
    assert first["dimensions"] == 200 and len(first["embedding"]) == 200
    assert len(first["frames"]) == msd.analyze(rock)["patches"]
    assert all(len(f) == 200 for f in first["frames"])
    assert first["frame_hop_s"] == pytest.approx(93 * 256 / 16000)
    np.testing.assert_allclose(first["embedding"], np.mean(first["frames"], axis=0), rtol=0, atol=1e-5)
    direct = _direct_essentia(rock, "msd-musicnn-1.pb", "model/dense/BiasAdd")
    np.testing.assert_allclose(first["frames"], direct, rtol=0, atol=1e-4)
    assert np.std(first["embedding"]) > 0.1  # a real activation pattern, not a constant


def test_short_audio_is_refused(msd: MusiCNNTagger, embedder: MusiCNNEmbeddings) -> None:
    """Under one 3 s patch: AnalyzerError saying how long the audio is and what is needed (no padding)."""
    short = Audio(sine(440.0, -12.0, 2.5, SR, 1)[0], SR)
    for analyzer in (msd, embedder):
        with pytest.raises(AnalyzerError, match=r"audio is 2\.50 s long; MusiCNN \(one 3 s patch\) needs at least 3 s"):
            analyzer.analyze(short)
    assert msd.analyze(Audio(sine(440.0, -12.0, 3.0, SR, 1)[0], SR))["patches"] == 1


# ---- runtime placement ----------------------------------------------------------------------------------

_THREAD_PROBE = """
import os, sys
from models import placement
placement.configure(float(sys.argv[1]))
from models.musicnn import MusiCNNTagger
MusiCNNTagger(graph="musicnn/msd-musicnn-1.pb")
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
    """The in-process server with just the three MusiCNN entries (one pool process each)."""
    registry: Registry = parse_registry({"models": _registry_entries()}, "musicnn")
    with running_local_server(registry, make_settings(free_port())) as base:
        yield base


def test_server_streams_musicnn_results(
    musicnn_server: str, rock_bytes: bytes, rock: Audio, msd: MusiCNNTagger, embedder: MusiCNNEmbeddings
) -> None:
    """Rock clip: three completed events matching their schemas and the in-process results; 2 s: three errors."""
    stream = post(musicnn_server, ",".join(NAMES), rock_bytes, timeout=300)
    assert stream.status == 200, stream.body
    events = stream.by_model()
    assert set(events) == set(NAMES) and all(e["status"] == "completed" for e in events.values()), events
    entries = {m["name"]: m for m in _registry_entries()}
    for name, event in events.items():
        jsonschema.validate(event["result"]["results"], entries[name]["output_schema"])
    served = events["tags_msd_musicnn"]["result"]["results"]
    assert served["top"][0]["label"] == "rock"
    np.testing.assert_allclose(served["activations"], msd.analyze(rock)["activations"], rtol=0, atol=1e-6)
    mtt_top = events["tags_mtt_musicnn"]["result"]["results"]["top"]
    assert {t["label"] for t in mtt_top[:2]} == {"rock", "guitar"}
    served_embedding = events["embeddings_msd_musicnn"]["result"]["results"]["embedding"]
    np.testing.assert_allclose(served_embedding, embedder.analyze(rock)["embedding"], rtol=0, atol=1e-5)

    short = post(musicnn_server, ",".join(NAMES), encode(sine(440.0, -12.0, 2.0, 44100, 1), 44100, "wav"))
    assert short.status == 200
    errors = short.by_model()
    assert set(errors) == set(NAMES)
    for event in errors.values():
        assert event["status"] == "error"
        assert "needs at least 3 s" in event["error"], event
