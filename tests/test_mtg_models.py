"""MTG's real weights, offline: the one-pass MusiCNN backbone, its views, the ONNX heads, TempoCNN, Dortmund, CREPE.

Everything runs on the files vendored in models/weights/mtg (built by tools/mtg/convert.py) and
models/weights/musicnn; nothing here reads MTG's originals. Known answers: the backbone's per-patch outputs are
exactly TensorflowPredictMusiCNN's; each ONNX head equals an independent numpy evaluation of MTG's TF.js graph
(and the emomusic ONNX equals MTG's emomusic .pb run by Essentia) on real embeddings; a synthetic metal track
and a soft string piece move the mood heads the plausible way; click tracks give their tempo.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import soxr

from models.base import AnalyzerError, Audio, AudioInput, ModelInput
from models.essentia_runtime import essentia_standard
from models.heads import ClassifierHead, Head, RegressionHead
from models.musicnn import MusiCNNBackbone, MusiCNNClassifier, MusiCNNEmbeddingsView, MusiCNNTags
from models.onnx_runtime import create_session
from models.tempocnn import TempoCNNAnalyzer
from tests.audio_factory import click_track

REPO = Path(__file__).resolve().parents[1]
MTG = REPO / "models" / "weights" / "mtg"
MUSICNN = REPO / "models" / "weights" / "musicnn"
SR = 16000
MSD_HEADS = ("mood_happy", "mood_sad", "mood_relaxed", "mood_aggressive", "danceability")
LABELS = {  # output order; sources in models/weights/mtg/README.md
    "mood_happy": ["happy", "non_happy"],
    "mood_sad": ["non_sad", "sad"],
    "mood_relaxed": ["non_relaxed", "relaxed"],
    "mood_aggressive": ["aggressive", "not_aggressive"],
    "danceability": ["danceable", "not_danceable"],
    "emomusic": ["valence", "arousal"],
}
EFFNET_HEADS = {
    "approachability_regression": 1,
    "danceability": 2,
    "engagement_regression": 1,
    "mood_aggressive": 2,
    "mood_happy": 2,
    "mood_relaxed": 2,
    "mood_sad": 2,
}


# ---- signals ------------------------------------------------------------------------------------------------


def decode_16k(path: Path) -> np.ndarray:
    """Decode with PyAV, mono = mean of channels, soxr HQ to 16 kHz (the server's representation)."""
    with av.open(str(path)) as container:
        rate = container.streams.audio[0].rate
        x = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1).astype(np.float32)
    mono = x.mean(axis=0) if x.shape[0] > 1 else x[0]
    return soxr.resample(mono, rate, SR, quality="HQ").astype(np.float32)


def metal(seconds: float = 20.0, bpm: float = 180.0) -> np.ndarray:
    """A distorted fast track: 16th-note double kick, snare every other beat, hard-clipped detuned square riffs."""
    rng = np.random.default_rng(3)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    out = np.zeros(n)
    sixteenth = 60.0 / bpm / 4
    for k in range(int(seconds / sixteenth)):
        i = int(k * sixteenth * SR)
        tt = np.arange(min(n - i, int(0.12 * SR))) / SR
        out[i : i + tt.size] += np.sin(2 * np.pi * (45 + 90 * np.exp(-tt * 40)) * tt) * np.exp(-tt * 25) * 0.9
        out[i : i + tt.size] += rng.standard_normal(tt.size) * np.exp(-tt * 80) * 0.25
        if k % 8 == 4:
            out[i : i + tt.size] += rng.standard_normal(tt.size) * np.exp(-tt * 15)
    riff = [41.2, 41.2, 43.65, 41.2, 49.0, 46.25, 41.2, 55.0]
    step = 60.0 / bpm / 2
    guitar = np.zeros(n)
    for j, start in enumerate(np.arange(0, seconds, step)):
        i0, i1 = int(start * SR), min(n, int((start + step) * SR))
        f = 2 * riff[j % len(riff)]
        guitar[i0:i1] = sum(np.sign(np.sin(2 * np.pi * f * r * d * t[i0:i1])) for r in (1, 1.5, 2) for d in (1, 1.006))
    out += np.tanh(10 * (guitar + 0.3 * rng.standard_normal(n))) * 0.8
    return (0.95 * out / np.abs(out).max()).astype(np.float32)


def soft_strings(seconds: float = 20.0) -> np.ndarray:
    """A soft slow string piece: C-Am-F-G, 4 s per chord, swelling harmonic tones with vibrato, peak -20 dBFS."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    out = np.zeros(n)
    chords = [[60, 64, 67, 72], [57, 60, 64, 69], [53, 57, 60, 65], [55, 59, 62, 67]]
    for j, start in enumerate(np.arange(0, seconds, 4.0)):
        i0, i1 = int(start * SR), min(n, int((start + 5.0) * SR))
        tt = t[i0:i1] - start
        envelope = np.sin(np.pi * np.clip(tt / 5.0, 0, 1)) ** 2
        for m in chords[j % 4]:
            f = 440 * 2 ** ((m - 69) / 12)
            phase = 2 * np.pi * f * tt + 0.004 * f / 5.5 * np.sin(2 * np.pi * 5.5 * tt)
            out[i0:i1] += envelope * sum(np.sin(h * phase) / h**1.5 for h in range(1, 8))
    return (0.1 * out / np.abs(out).max()).astype(np.float32)


# ---- fixtures -----------------------------------------------------------------------------------------------


def backbone(stem: str, folder: Path = MUSICNN) -> MusiCNNBackbone:
    """A backbone on a vendored graph and its metadata."""
    return MusiCNNBackbone(weight_files={"graph": str(folder / f"{stem}.pb"), "metadata": str(folder / f"{stem}.json")})


def head(stem: str) -> Head:
    """The vendored ONNX head ``stem`` as the class its metadata calls for."""
    files = {"head": str(MTG / f"{stem}.onnx"), "metadata": str(MTG / f"{stem}.json")}
    kind = json.loads((MTG / f"{stem}.json").read_text())["type"]
    return RegressionHead([1, 9], weight_files=files) if kind == "regression" else ClassifierHead(weight_files=files)


@pytest.fixture(scope="module")
def signals() -> dict[str, np.ndarray]:
    """The rock clip (tests/data) and the two synthetic contrasts, 16 kHz mono."""
    return {"rock": decode_16k(REPO / "tests/data/rock_clip.opus"), "metal": metal(), "soft": soft_strings()}


@pytest.fixture(scope="module")
def msd() -> MusiCNNBackbone:
    """The MSD backbone (musicnn 0.1.0 graph, ISC), as the registry would load it."""
    return backbone("msd-musicnn-1")


@pytest.fixture(scope="module")
def msd_results(msd: MusiCNNBackbone, signals: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """One backbone pass per signal."""
    return {name: msd.analyze(Audio(x, SR)) for name, x in signals.items()}


def tensorflow_predict_musicnn(graph: Path, output: str, samples: np.ndarray) -> np.ndarray:
    """Reference: Essentia's TensorflowPredictMusiCNN, batch 1 (what the previous analyzers served)."""
    algo = essentia_standard().TensorflowPredictMusiCNN(graphFilename=str(graph), output=output, batchSize=1)
    return np.asarray(algo(samples))


# ---- vendored files -----------------------------------------------------------------------------------------


def test_vendored_files_match_sha256sums() -> None:
    """SHA256SUMS lists every vendored file (README aside) with its true digest."""
    lines = (MTG / "SHA256SUMS").read_text().splitlines()
    sums = {name: digest for digest, name in (line.split("  ", 1) for line in lines)}
    on_disk = {str(p.relative_to(MTG)) for p in MTG.rglob("*") if p.is_file()} - {"SHA256SUMS", "README.md"}
    assert set(sums) == on_disk and len(on_disk) == 48
    for name, digest in sums.items():
        assert hashlib.sha256((MTG / name).read_bytes()).hexdigest() == digest, name


def test_metadata_records_the_originals_and_labels() -> None:
    """Each head's metadata names its MTG source files; vendored originals still have those digests; labels are
    MTG's in output order."""
    for task, labels in LABELS.items():
        meta = json.loads((MTG / f"{task}-msd-musicnn-1.json").read_text())
        assert meta["classes"] == labels
        for source in meta["sources"]:
            assert source["repository"] == "MTG/essentia.js" and source["license"] == "CC BY-NC-ND 4.0"
            copy = MTG / "tfjs" / f"{task}-msd-musicnn-1" / Path(source["path"]).name
            assert hashlib.sha256(copy.read_bytes()).hexdigest() == source["sha256"]
    for task in EFFNET_HEADS:
        meta = json.loads((MTG / f"{task}-discogs-effnet-1.json").read_text())
        assert meta["classes"] == LABELS.get(task, [task.split("_")[0]])
    assert json.loads((MTG / "genre_dortmund_musicnn_msd.json").read_text())["classes"][-1] == "rock"


def test_licences_are_the_non_commercial_ones() -> None:
    """Both MTG licence files are vendored verbatim: essentia.js CC BY-NC-ND 4.0, essentia-models CC BY-NC-SA 4.0."""
    assert "Attribution-NonCommercial-NoDerivatives 4.0" in (MTG / "LICENSE-essentia.js").read_text()
    assert "Attribution-NonCommercial-ShareAlike 4.0" in (MTG / "LICENSE-essentia-models").read_text()


# ---- converter equivalence ----------------------------------------------------------------------------------


def tfjs_reference(folder: Path, x: np.ndarray) -> np.ndarray:
    """Independent float64 evaluation of a TF.js head: weights read from the shard by manifest order, nodes run
    in file order (the ops MTG's heads use: fused/plain MatMul, Mul/Add, Softmax, dynamic flatten)."""
    doc = json.loads((folder / "model.json").read_text())
    blob = (folder / "group1-shard1of1.bin").read_bytes()
    values: dict[str, Any] = {}
    offset = 0
    for w in doc["weightsManifest"][0]["weights"]:
        count = int(np.prod(w["shape"]))
        values[w["name"]] = np.frombuffer(blob, np.dtype(w["dtype"]).newbyteorder("<"), count, offset).reshape(
            w["shape"]
        )
        offset += 4 * count
    for node in doc["modelTopology"]["node"]:
        a = [values.get(i) for i in node.get("input", [])]
        op, name = node["op"], node["name"]
        if op == "Placeholder":
            values[name] = x.astype(np.float64)
        elif op == "_FusedMatMul":
            y = a[0] @ a[1].astype(np.float64) + a[2]
            relu = [s for s in node["attr"]["fused_ops"]["list"]["s"] if s == "UmVsdQ=="]  # base64 "Relu"
            values[name] = np.maximum(y, 0) if relu else y
        elif op in ("MatMul", "Mul", "Add", "AddV2"):
            fn = {"MatMul": np.matmul, "Mul": np.multiply}.get(op, np.add)
            values[name] = fn(a[0], np.asarray(a[1], np.float64))
        elif op == "Softmax":
            e = np.exp(a[0] - a[0].max(axis=1, keepdims=True))
            values[name] = e / e.sum(axis=1, keepdims=True)
        elif op == "Shape":
            values[name] = np.array(a[0].shape)
        elif op == "StridedSlice":
            values[name] = a[0][int(a[1][0])]
        elif op == "Pack":
            values[name] = np.array([int(a[0]), int(a[1])])
        elif op == "Reshape":
            values[name] = a[0].reshape(a[1])
        elif op != "Const":
            raise AssertionError(f"unexpected op {op}")
    consumed = {i for n in doc["modelTopology"]["node"] for i in n.get("input", [])}
    (out,) = [n["name"] for n in doc["modelTopology"]["node"] if n["name"] not in consumed and n["op"] != "Const"]
    return values[out]


def test_onnx_heads_equal_numpy_evaluation_of_the_tfjs_graphs(msd_results: dict[str, dict[str, Any]]) -> None:
    """On real embeddings (36 patches of rock, metal and strings) every converted head gives MTG's TF.js outputs."""
    embeddings = np.concatenate([r["embeddings"] for r in msd_results.values()])
    assert embeddings.shape == (36, 200)
    for task in LABELS:
        stem = f"{task}-msd-musicnn-1"
        folder = MTG / "tfjs" / stem
        x = embeddings[:, None, :] if task == "emomusic" else embeddings
        want = tfjs_reference(folder, x)
        got = head(stem).per_patch(embeddings)
        assert got.shape == want.shape == (36, 2)
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * max(1.0, np.abs(want).max()), err_msg=task)


def test_emomusic_onnx_equals_mtg_pb_in_essentia(msd_results: dict[str, dict[str, Any]]) -> None:
    """The emomusic ONNX (converted from TF.js) equals MTG's emomusic .pb run by TensorflowPredict2D."""
    embeddings = np.concatenate([r["embeddings"] for r in msd_results.values()])
    pb = essentia_standard().TensorflowPredict2D(
        graphFilename=str(MTG / "emomusic-msd-musicnn-1.pb"), input="flatten_in_input", output="dense_out"
    )
    want = np.asarray(pb(embeddings))
    got = head("emomusic-msd-musicnn-1").per_patch(embeddings)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    assert 1.0 < want.min() and want.max() < 9.0  # on emoMusic's 1-9 scale


# ---- the one-pass backbone and its views ----------------------------------------------------------------------


@pytest.mark.parametrize("stem", ["msd-musicnn-1", "mtt-musicnn-1"])
def test_backbone_equals_tensorflow_predict_musicnn(stem: str, signals: dict[str, np.ndarray]) -> None:
    """One pass gives exactly the tags and embeddings of two TensorflowPredictMusiCNN runs, patch for patch."""
    result = backbone(stem).analyze(Audio(signals["rock"], SR))
    graph = MUSICNN / f"{stem}.pb"
    tags = tensorflow_predict_musicnn(graph, "model/Sigmoid", signals["rock"])
    embeddings = tensorflow_predict_musicnn(graph, "model/dense/BiasAdd", signals["rock"])
    assert result["patches"] == tags.shape[0] == embeddings.shape[0] == 12  # 19.3 s, a patch every 1.488 s
    assert result["patch_hop_s"] == pytest.approx(93 * 256 / 16000)
    assert result["activations"].shape == (12, 50) and result["embeddings"].shape == (12, 200)
    np.testing.assert_allclose(result["activations"], tags, rtol=0, atol=1e-6)
    np.testing.assert_allclose(result["embeddings"], embeddings, rtol=0, atol=1e-5)


def test_views_give_the_previous_tags_and_embeddings(
    msd: MusiCNNBackbone, msd_results: dict[str, dict[str, Any]], signals: dict[str, np.ndarray]
) -> None:
    """MusiCNNTags / MusiCNNEmbeddingsView return what tags_msd_musicnn / embeddings_msd_musicnn returned."""
    rock = msd_results["rock"]
    tags = MusiCNNTags(top_n=10).analyze(rock)
    direct = tensorflow_predict_musicnn(MUSICNN / "msd-musicnn-1.pb", "model/Sigmoid", signals["rock"]).mean(axis=0)
    assert set(tags) == {"top", "labels", "activations", "patches", "patch_hop_s"}
    assert tags["labels"][:3] == ["rock", "pop", "alternative"] and len(tags["activations"]) == 50
    np.testing.assert_allclose(tags["activations"], direct, rtol=0, atol=1e-6)
    assert [t["label"] for t in tags["top"]] == [tags["labels"][i] for i in np.argsort(-direct, kind="stable")[:10]]
    assert tags["top"][0]["label"] == "rock" and tags["patches"] == 12
    view = MusiCNNEmbeddingsView().analyze(rock)
    assert set(view) == {"embedding", "dimensions", "frames", "frame_hop_s"}
    assert view["dimensions"] == 200 and len(view["frames"]) == 12 and view["frame_hop_s"] == tags["patch_hop_s"]
    frames = tensorflow_predict_musicnn(MUSICNN / "msd-musicnn-1.pb", "model/dense/BiasAdd", signals["rock"])
    np.testing.assert_allclose(view["frames"], frames, rtol=0, atol=1e-4)
    np.testing.assert_allclose(view["embedding"], frames.mean(axis=0), rtol=0, atol=1e-5)
    json.dumps([tags, view], allow_nan=False)
    assert msd.analyze(Audio(signals["rock"], SR))["activations"].tobytes() == rock["activations"].tobytes()


def test_mtt_tags_view(signals: dict[str, np.ndarray]) -> None:
    """The MTT graph through the same backbone class and tags view: rock and guitar lead on the rock clip."""
    tags = MusiCNNTags(top_n=5).analyze(backbone("mtt-musicnn-1").analyze(Audio(signals["rock"], SR)))
    assert {t["label"] for t in tags["top"][:2]} == {"rock", "guitar"}, tags["top"]


def test_declared_inputs_and_short_audio(msd: MusiCNNBackbone) -> None:
    """Backbone on audio (16 kHz mono, 3 s), views and heads on the backbone's results; under one patch: an error."""
    assert MusiCNNBackbone.inputs == {"audio": AudioInput(16000, "mono", 3.0)}
    assert MusiCNNTags.inputs["backbone"] == ModelInput(requires=("activations", "labels", "patch_hop_s"))
    assert ClassifierHead.inputs == RegressionHead.inputs == {"backbone": ModelInput(requires=("embeddings",))}
    assert msd.analyze(Audio(np.full(3 * SR, 0.01, np.float32), SR))["patches"] == 1
    with pytest.raises(AnalyzerError, match="needs one 3 s patch"):
        msd.analyze(Audio(np.full(int(2.9 * SR), 0.01, np.float32), SR))


def test_importing_the_modules_loads_no_runtime() -> None:
    """Reading class declarations (what the registry does) imports neither Essentia/TF, onnxruntime nor torch."""
    code = (
        "import sys, models.musicnn, models.heads, models.tempocnn\n"
        "print(sorted(m for m in ('essentia', 'tensorflow', 'onnxruntime', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-2000:]


# ---- heads on contrasting audio -------------------------------------------------------------------------------


def test_heads_move_the_plausible_way(msd_results: dict[str, dict[str, Any]]) -> None:
    """Synthetic metal vs soft strings (measured: aggressive 0.99 vs 0.005, relaxed 0.01 vs 1.0, danceable 1.0 vs
    0.09, sad 0.0 vs 0.97, arousal 5.6 vs 3.3); only the robust directions are asserted."""
    scores = {}
    for task in MSD_HEADS:
        h = head(f"{task}-msd-musicnn-1")
        for name, result in msd_results.items():
            out = h.analyze(result)
            assert out["labels"] == LABELS[task] and out["patches"] == 12
            assert sum(out["activations"]) == pytest.approx(1.0, abs=1e-5)
            assert out["top"][0]["score"] == max(out["activations"])
            scores[task, name] = dict(zip(out["labels"], out["activations"], strict=True))
    assert (
        scores["mood_aggressive", "metal"]["aggressive"] > 0.8 > 0.2 > scores["mood_aggressive", "soft"]["aggressive"]
    )
    assert scores["mood_relaxed", "soft"]["relaxed"] > 0.8 > 0.2 > scores["mood_relaxed", "metal"]["relaxed"]
    assert scores["mood_sad", "soft"]["sad"] > 0.5 > 0.2 > scores["mood_sad", "metal"]["sad"]
    assert scores["danceability", "metal"]["danceable"] > scores["danceability", "soft"]["danceable"] + 0.5
    assert scores["mood_happy", "rock"]["happy"] > scores["mood_happy", "soft"]["happy"] + 0.5
    emo = {name: head("emomusic-msd-musicnn-1").analyze(r) for name, r in msd_results.items()}
    assert all(set(e) == {"values", "range"} and e["range"] == [1.0, 9.0] for e in emo.values())
    assert list(emo["soft"]["values"]) == ["valence", "arousal"]
    assert emo["metal"]["values"]["arousal"] > emo["soft"]["values"]["arousal"] + 1.0
    assert emo["rock"]["values"]["arousal"] > emo["soft"]["values"]["arousal"] + 1.0


def test_effnet_onnx_heads_run_on_1280_d_embeddings() -> None:
    """MTG's seven Discogs-EffNet ONNX heads: input 'embeddings' [n, 1280] → 'activations' [n, C]; softmax rows
    sum to 1; the regressions give one value per patch."""
    x = np.random.default_rng(0).normal(0, 1, (3, 1280)).astype(np.float32)
    for task, width in EFFNET_HEADS.items():
        h = head(f"{task}-discogs-effnet-1")
        session = create_session(MTG / f"{task}-discogs-effnet-1.onnx")
        (inp,), (out,) = session.get_inputs(), session.get_outputs()
        assert (inp.name, inp.shape[1], inp.type, out.name, out.shape[1]) == (
            "embeddings",
            1280,
            "tensor(float)",
            "activations",
            width,
        )
        y = h.per_patch(x)
        assert y.shape == (3, width) and np.isfinite(y).all()
        if width == 2:
            np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(AnalyzerError, match="1280-d embeddings"):
        head("mood_happy-discogs-effnet-1").per_patch(x[:, :200])


def test_check_weight_hooks(tmp_path: Path) -> None:
    """Format checks for downloads: good files pass, an HTML error page or bad metadata is refused."""
    Head.check_weight("head", MTG / "mood_happy-msd-musicnn-1.onnx")
    Head.check_weight("metadata", MTG / "mood_happy-msd-musicnn-1.json")
    MusiCNNBackbone.check_weight("metadata", MTG / "genre_dortmund_musicnn_msd.json")
    TempoCNNAnalyzer.check_weight("graph", MTG / "deeptemp_k16.pb")
    page = tmp_path / "x.onnx"
    page.write_bytes(b"<html>502 Bad Gateway</html>")
    with pytest.raises(ValueError, match="not an ONNX model"):
        Head.check_weight("head", page)
    with pytest.raises(ValueError, match="not a TensorFlow GraphDef"):
        TempoCNNAnalyzer.check_weight("graph", page)
    bad = tmp_path / "bad.json"
    bad.write_text('{"classes": ["a"]}')
    with pytest.raises(ValueError):
        Head.check_weight("metadata", bad)
    with pytest.raises(ValueError, match="predictions"):
        MusiCNNBackbone.check_weight("metadata", bad)


# ---- TempoCNN, genre Dortmund, CREPE ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tempocnn() -> TempoCNNAnalyzer:
    """TempoCNN with MTG's deeptemp_k16 graph."""
    return TempoCNNAnalyzer(weight_files={"graph": str(MTG / "deeptemp_k16.pb")})


def test_tempocnn_click_tracks(tempocnn: TempoCNNAnalyzer) -> None:
    """30 s click tracks at 11025 Hz: 120 and 150 BPM exactly; 90 BPM at its double (179, the octave ambiguity)."""
    for bpm, expected in ((120, 120), (150, 150), (90, 179)):
        result = tempocnn.analyze(Audio(click_track(bpm, 30.0, 11025), 11025))
        assert result["bpm"] == expected, result
        assert result["local_bpm"] == [expected] * 4 and len(result["local_probabilities"]) == 4
        assert all(0.4 < p <= 1.0 for p in result["local_probabilities"])
        np.testing.assert_allclose(np.diff(result["local_times"]), 128 * 512 / 11025, atol=1e-3)
        assert result["local_times"][0] == pytest.approx(127.5 * 512 / 11025, abs=1e-3)
    assert TempoCNNAnalyzer.inputs["audio"] == AudioInput(11025, "mono", 11.9)
    one = tempocnn.analyze(Audio(click_track(120, 11.9, 11025), 11025))
    assert len(one["local_bpm"]) == 1


def test_tempocnn_rock_clip(tempocnn: TempoCNNAnalyzer) -> None:
    """The 132 BPM rock clip (19.3 s: two patches 5.9 s apart) reads 132 ± 2 BPM."""
    with av.open(str(REPO / "tests/data/rock_clip.opus")) as container:
        rate = container.streams.audio[0].rate
        x = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1).mean(axis=0)
    result = tempocnn.analyze(Audio(soxr.resample(x.astype(np.float32), rate, 11025, quality="HQ"), 11025))
    assert abs(result["bpm"] - 132) <= 2, result


def test_genre_dortmund_is_its_own_network(signals: dict[str, np.ndarray]) -> None:
    """genre_dortmund_musicnn_msd.pb (all layers fine-tuned, so not a head on msd-musicnn-1) reads the rock clip
    as rock, with TensorflowPredictMusiCNN's own mean activations."""
    classifier = MusiCNNClassifier(
        top_n=3,
        weight_files={
            "graph": str(MTG / "genre_dortmund_musicnn_msd.pb"),
            "metadata": str(MTG / "genre_dortmund_musicnn_msd.json"),
        },
    )
    result = classifier.analyze(Audio(signals["rock"], SR))
    assert result["top"][0]["label"] == "rock" and len(result["labels"]) == 9
    direct = tensorflow_predict_musicnn(MTG / "genre_dortmund_musicnn_msd.pb", "model/Sigmoid", signals["rock"])
    np.testing.assert_allclose(result["activations"], direct.mean(axis=0), rtol=0, atol=1e-6)


def test_essentia_crepe_tiny_equals_the_torch_crepe() -> None:
    """MTG's crepe-tiny-1.pb (PitchCREPE) and pitch_crepe's torch CREPE tiny agree frame by frame on a glide."""
    from models.crepe_torch import CrepeTracker

    t = np.arange(3 * SR) / SR
    f0 = 150.0 * 6.0 ** (t / t[-1])
    x = (0.5 * np.sin(2 * np.pi * np.cumsum(f0) / SR)).astype(np.float32)
    times, freq, confidence, _ = essentia_standard().PitchCREPE(graphFilename=str(MTG / "crepe-tiny-1.pb"), hopSize=10)(
        x
    )
    tracker = CrepeTracker("tiny", REPO / "models/weights/crepe/tiny.pth", 160, 128, 1, False)
    cents, conf_torch, _ = tracker.track([x], lambda: None)[0].T
    idx = np.round(np.asarray(times) / 0.01).astype(int)
    assert len(times) == len(cents) and (idx == np.arange(len(times))).all()
    diff = np.abs(1200 * np.log2(np.asarray(freq) / (10.0 * 2.0 ** (cents / 1200.0))))
    assert np.median(diff) < 0.01 and diff.max() < 0.1
    np.testing.assert_allclose(confidence, conf_torch, rtol=0, atol=1e-5)
