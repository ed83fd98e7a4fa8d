"""Weights that are downloaded, not shipped: registry section, availability, `mirstream models fetch`, end to end.

Downloads go to a loopback HTTP server started here that serves generated TensorFlow graphs and metadata
(tests/tf_graphs.py): a Discogs-EffNet-like backbone and a head on it, as two registry entries of the model
graph, plus broken variants: 404, a truncated body, an HTML page instead of a graph, a metadata file that
contradicts its graph. Every failure must leave the models directory without a partial file. The end-to-end
test fetches with the real CLI (a head brings its backbone), then starts one in-process server.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from models.tf_graph import graph_node_names
from serve_app.config import DEFAULT_REGISTRY, Settings, default_models_dir, settings_from_env
from serve_app.ingress.request import RequestError, parse_models
from serve_app.ops.weights import FetchError, fetch_entry, make_client
from serve_app.registry import RegistryError, load_registry, parse_registry
from serve_app.registry.availability import PACKAGED_WEIGHTS, resolve_availability
from tests import tf_graphs
from tests.audio_factory import c_major_cadence, encode
from tests.conftest import free_port, make_settings, running_local_server
from tests.sse import post

MODEL = tf_graphs.tiny_model("discogs-effnet", ("happy", "non_happy", "meh"), seed=5)
BROKEN_META = json.dumps({**json.loads(MODEL.files["metadata"]), "classes": ["only", "two"]}).encode()
OTHER_NODES = tf_graphs.metadata(MODEL.classes, "model/Placeholder", "model/NoSuchNode", dims=8)
BACKBONE_META = (PACKAGED_WEIGHTS / "mtg" / "discogs-effnet-bsdynamic-1.json").read_bytes()  # MTG's node names
FILES = {
    "/m/emb.pb": MODEL.files["embedding"],
    "/m/emb.json": BACKBONE_META,
    "/m/head.pb": MODEL.files["head"],
    "/m/head.json": MODEL.files["metadata"],
    "/m/broken.json": BROKEN_META,
    "/m/other-nodes.json": OTHER_NODES,
    "/m/page.pb": b"<!doctype html><html><body>Welcome to the hotel wifi</body></html>",
}


class _Handler(BaseHTTPRequestHandler):
    """Serves FILES; /redirect/X → X; /truncated/X announces X's length but sends half; /nolength/X has no length."""

    hits: Counter[str] = Counter()

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        _Handler.hits[self.path] += 1
        if self.path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", self.path[len("/redirect") :])
            self.end_headers()
        elif self.path.startswith("/truncated/"):
            body = FILES[self.path[len("/truncated") :]]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
        elif self.path.startswith("/nolength/"):  # no Content-Length: the body ends when the connection closes
            self.send_response(200)
            self.end_headers()
            self.wfile.write(FILES[self.path[len("/nolength") :]])
            self.close_connection = True
        elif self.path in FILES:
            self.send_response(200)
            self.send_header("Content-Length", str(len(FILES[self.path])))
            self.end_headers()
            self.wfile.write(FILES[self.path])
        else:
            self.send_response(404)
            self.send_header("Content-Length", "9")
            self.end_headers()
            self.wfile.write(b"not here\n")


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    """The loopback 'essentia.upf.edu' for this module."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


LICENSE = {"code": "AGPL-3.0", "weights": "CC-BY-NC-SA-4.0 (test)", "noncommercial": True}


def _backbone_data(base: str) -> dict[str, Any]:
    """The tiny Discogs-EffNet-like backbone served at ``base``: a downloaded graph and its metadata."""
    return {
        "name": "tiny_backbone",
        "version": "1",
        "default": True,
        "class": "models.effnet.EffnetBackbone",
        "description": "Tiny generated backbone for tests.",
        "resources": {"num_cpus": 0.1},
        "license": dict(LICENSE),
        "weights": [
            {"role": "graph", "url": f"{base}/m/emb.pb", "path": "t/emb.pb"},
            {"role": "metadata", "url": f"{base}/m/emb.json", "path": "t/emb.json"},
        ],
        "output_schema": {"type": "object", "required": ["embeddings"], "properties": {"embeddings": {}}},
    }


def _entry_data(name: str, base: str, **changes: str | dict[str, Any]) -> dict[str, Any]:
    """A head on the tiny backbone served at ``base`` (``changes`` replace weight fields by role)."""
    weights = {
        "head": {"role": "head", "url": f"{base}/m/head.pb", "path": f"t/{name}/head.pb"},
        "metadata": {"role": "metadata", "url": f"{base}/m/head.json", "path": f"t/{name}/head.json"},
    }
    for role, change in changes.items():
        weights[role] = {**weights[role], **change} if isinstance(change, dict) else {**weights[role], "url": change}
    return {
        "name": name,
        "version": "1",
        "default": True,
        "class": "models.heads.ClassifierHead",
        "inputs": {"backbone": "tiny_backbone:1"},
        "description": "Tiny generated head for tests.",
        "params": {"top_n": 3},
        "resources": {"num_cpus": 0.1},
        "license": dict(LICENSE),
        "weights": list(weights.values()),
        "output_schema": {"type": "object", "required": ["top", "labels", "activations"]},
    }


def _registry(*entries: dict[str, Any]) -> Any:
    """A registry made of ``entries`` (with the tiny backbone they stand on, served from the same origin)."""
    base = next(w["url"] for e in entries for w in e["weights"]).split("/m/")[0].split("/redirect")[0]
    return parse_registry({"models": [_backbone_data(base), *entries]}, "test registry")


def _head(registry: Any) -> Any:
    """The first head of a registry built by ``_registry``."""
    return next(e for e in registry.catalogue() if e.name != "tiny_backbone")


def _files_under(folder: Path) -> set[str]:
    """Relative paths of every file under ``folder`` (temp files included)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def _fetch(entry_data: dict[str, Any], models_dir: Path) -> list[str]:
    """Fetch one head (after its backbone); return 'role:status' per file of the head."""
    registry = _registry(entry_data)
    entry = _head(registry)
    seen: list[str] = []
    with make_client() as client:
        fetch_entry(registry.find("tiny_backbone", None), models_dir, client, lambda o: None)  # what the CLI does too
        fetch_entry(entry, models_dir, client, lambda o: seen.append(f"{o.weight.role}:{o.status}"))
    return seen


# --- registry and settings ---------------------------------------------------------------------------------


def test_weights_section_is_parsed_and_listed_without_local_paths(origin: str) -> None:
    """Roles, URLs, default paths (host/url path), sizes and the non-commercial flag come through; describe()
    shows them but never the absolute paths the server injects."""
    data = _entry_data("tiny", origin)
    del data["weights"][0]["path"]
    data["weights"][0]["size"] = len(MODEL.files["head"])
    entry = _head(_registry(data))
    assert [w.role for w in entry.weights] == ["head", "metadata"]
    assert entry.weights[0].path == "127.0.0.1/m/head.pb" and entry.weights[0].size == len(MODEL.files["head"])
    assert entry.noncommercial and entry.license["noncommercial"] is True
    served = _head(resolve_availability(_registry(data), Settings(models_dir=Path("/nowhere"))))
    described = json.dumps(served.describe())
    assert "weight_files" not in described and "/nowhere" not in described
    assert served.describe()["weights"][0] == {
        "role": "head",
        "url": f"{origin}/m/head.pb",
        "path": "127.0.0.1/m/head.pb",
        "size": len(MODEL.files["head"]),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"url": "ftp://example.org/x.pb"}, "must be an https:// URL"),
        ({"packaged": "mtg/x.pb"}, "exactly one of 'url'"),
        ({"sha256": "ABC"}, "64 lower-case hex digits"),
        ({"path": "/etc/passwd"}, "path must be relative"),
        ({"path": "../../outside.pb"}, "path must be relative"),
        ({"role": "Head!"}, "lower-case identifier"),
        ({"size": 0}, "size: must be an integer >= 1"),
        ({"colour": "red"}, "unknown key(s) ['colour']"),
    ],
)
def test_bad_weight_fields_are_named(origin: str, change: dict[str, Any], message: str) -> None:
    """Every malformed weights field fails registry validation with a message naming it."""
    data = _entry_data("tiny", origin)
    data["weights"][0].update(change)
    with pytest.raises(RegistryError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        _registry(data)


def test_registry_rejects_duplicate_roles_bad_licence_flag_and_injected_param(origin: str) -> None:
    """Roles are unique, noncommercial is a boolean, weight_files is the server's, and the class must take it."""
    data = _entry_data("tiny", origin)
    data["weights"][1]["role"] = "head"
    with pytest.raises(RegistryError, match="each role may appear once"):
        _registry(data)
    data = _entry_data("tiny", origin)
    data["license"]["noncommercial"] = "yes"
    with pytest.raises(RegistryError, match="noncommercial: must be true or false"):
        _registry(data)
    data = _entry_data("tiny", origin)
    data["params"]["weight_files"] = {"head": "/tmp/x.pb"}
    with pytest.raises(RegistryError, match="set by the server"):
        _registry(data)
    data = _entry_data("tiny", origin)
    data["class"], data["params"] = "models.key.KeyAnalyzer", {}
    del data["inputs"]
    with pytest.raises(RegistryError, match="weight_files"):
        _registry(data)


def test_settings_models_dir_and_noncommercial_switch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """MIRSTREAM_MODELS_DIR (default under XDG_CACHE_HOME or ~/.cache) and MIRSTREAM_NONCOMMERCIAL (default on)."""
    monkeypatch.delenv("MIRSTREAM_MODELS_DIR", raising=False)
    monkeypatch.delenv("MIRSTREAM_NONCOMMERCIAL", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert settings_from_env().models_dir == tmp_path / "mirstream" / "models" == default_models_dir()
    assert settings_from_env().allow_noncommercial is True
    monkeypatch.setenv("MIRSTREAM_MODELS_DIR", str(tmp_path / "w"))
    monkeypatch.setenv("MIRSTREAM_NONCOMMERCIAL", "False")
    settings = settings_from_env()
    assert settings.models_dir == tmp_path / "w" and settings.allow_noncommercial is False
    monkeypatch.setenv("MIRSTREAM_NONCOMMERCIAL", "maybe")
    with pytest.raises(ValueError, match="MIRSTREAM_NONCOMMERCIAL='maybe' must be true or false"):
        settings_from_env()


# --- availability -------------------------------------------------------------------------------------------


def test_downloadable_entries_are_unavailable_until_fetched_and_shipped_ones_serve(tmp_path: Path) -> None:
    """With an empty models dir the Discogs-EffNet models and the DEAM head are withheld with their fetch command;
    the MTG heads that ship with mirstream answer to their bare names; the classic ones stay."""
    registry = resolve_availability(load_registry(DEFAULT_REGISTRY), Settings(models_dir=tmp_path))
    withheld = {w.entry.key: w for w in registry.withheld}
    for name in ("genre_discogs_400", "genre_mtgjamendo", "timbre", "mood_acoustic"):
        assert f"{name}:discogs-effnet-1" in withheld, name
    backbone = withheld["discogs_effnet:bs64-1"]
    assert "mirstream models fetch discogs_effnet" in backbone.reason and not backbone.by_policy
    assert "discogs_effnet:bs64-1" in withheld["mood_happy:discogs-effnet-1"].reason
    assert "arousal_valence:deam-msd-musicnn-2" in withheld
    for name in (
        "mood_happy",
        "mood_sad",
        "mood_relaxed",
        "mood_aggressive",
        "danceability",
        "arousal_valence",
        "bpm_tempocnn",
        "genre_dortmund",
        "key",
    ):
        assert registry.find(name, None) in registry.entries, name
    assert registry.find("danceability_dsp", None).name == "danceability_dsp"
    assert registry.find("danceability", None).name == "danceability"  # the ML head, no clash with the DSP one
    assert registry.find("acousticness", None).name == "mood_acoustic"
    listing = {f"{m['name']}:{m['version']}": m for m in registry.listing()}
    assert listing["key:1"]["available"] is True and "reason" not in listing["key:1"]
    timbre = listing["timbre:discogs-effnet-1"]
    assert timbre["available"] is False and "mirstream models fetch" in timbre["reason"]
    assert str(tmp_path) not in json.dumps(registry.listing())  # no server paths in what clients see
    assert all(m["license"]["noncommercial"] is True for k, m in listing.items() if k in withheld)


def test_requests_for_withheld_models_get_409_or_403_before_any_audio(origin: str, tmp_path: Path) -> None:
    """Absent weights: 409 naming the fetch command. Non-commercial turned off: 403 naming the setting, even
    with the weights installed. Both are decided from the model list alone."""
    data = _entry_data("tiny", origin)
    absent = resolve_availability(_registry(data), Settings(models_dir=tmp_path))
    with pytest.raises(RequestError) as info:
        parse_models("tiny", absent)
    assert info.value.status == 409 and "`mirstream models fetch tiny`" in info.value.detail
    _fetch(data, tmp_path)
    present = resolve_availability(_registry(data), Settings(models_dir=tmp_path))
    assert [e.name for e in parse_models("tiny", present)] == ["tiny"]
    assert _head(present).params["weight_files"]["head"] == str((tmp_path / "t/tiny/head.pb").resolve())
    policy = resolve_availability(_registry(data), Settings(models_dir=tmp_path, allow_noncommercial=False))
    with pytest.raises(RequestError) as info:
        parse_models("tiny", policy)
    assert info.value.status == 403 and "MIRSTREAM_NONCOMMERCIAL=false" in info.value.detail
    assert all(m["available"] is False for m in policy.listing()) and policy.defaults() == []


def test_default_version_skips_an_unavailable_one(origin: str, tmp_path: Path) -> None:
    """Name without version: the marked default when served; else the first served version of that name."""
    v1 = _entry_data("tiny", origin, head={"path": "t/never/head.pb"})
    v2 = {**copy.deepcopy(_entry_data("tiny", origin)), "version": "2", "default": False}
    _fetch({**v2, "default": True}, tmp_path)  # fetched on its own, where it is the only version
    registry = resolve_availability(_registry(v1, v2), Settings(models_dir=tmp_path))
    assert registry.find("tiny", None).key == "tiny:2"
    with pytest.raises(RequestError) as info:
        parse_models("tiny:1", registry)
    assert info.value.status == 409


# --- fetch ---------------------------------------------------------------------------------------------------


def test_fetch_downloads_verifies_and_then_skips(origin: str, tmp_path: Path) -> None:
    """First fetch downloads both (via a redirect for one); the second finds them verified and skips them."""
    data = _entry_data("tiny", origin, metadata=f"{origin}/redirect/m/head.json")
    sha = hashlib.sha256(MODEL.files["head"]).hexdigest()
    data["weights"][0]["sha256"] = sha
    assert _fetch(data, tmp_path) == ["head:downloaded", "metadata:downloaded"]
    assert (tmp_path / "t/tiny/head.pb").read_bytes() == MODEL.files["head"]
    before = sum(_Handler.hits.values())
    assert _fetch(data, tmp_path) == ["head:present", "metadata:present"]
    assert sum(_Handler.hits.values()) == before
    assert _files_under(tmp_path) == {"t/emb.pb", "t/emb.json", "t/tiny/head.pb", "t/tiny/head.json"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"head": {"sha256": "0" * 64}}, "checksum mismatch"),
        ({"head": "/m/missing.pb"}, "HTTP 404"),
        ({"head": "/truncated/m/head.pb"}, "truncated|incomplete|peer closed"),
        ({"head": "/m/page.pb"}, "not a TensorFlow GraphDef"),
        ({"metadata": "/m/broken.json"}, "bad metadata: output 'model/Softmax' has 3 values but 'classes' lists 2"),
        ({"metadata": "/m/other-nodes.json"}, "no node.*model/NoSuchNode"),
        ({"head": {"size": 100}}, r"announces \d+ bytes, more than the 100 allowed"),
        ({"head": {"url": "/nolength/m/head.pb", "size": 100}}, "more than the 100 bytes allowed; download stopped"),
        ({"head": "http://example.invalid/head.pb"}, "only https:// URLs are allowed"),
    ],
)
def test_fetch_failures_are_clear_and_leave_nothing_behind(
    origin: str, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    """Checksum mismatch, 404, truncated body, an HTML page, contradictory metadata, an oversized file, plain
    HTTP: each raises FetchError with the reason and no partial or unverified file is left in the models dir."""
    role, value = next(iter(change.items()))
    if isinstance(value, str) and value.startswith("/"):
        value = origin + value
    if isinstance(value, dict) and value.get("url", "").startswith("/"):
        value = {**value, "url": origin + value["url"]}
    data = _entry_data("tiny", origin, **{role: value})
    with pytest.raises(FetchError, match=message):
        _fetch(data, tmp_path)
    left = _files_under(tmp_path)
    assert not [f for f in left if f.endswith(".part")]
    if "no node" not in message:  # single-file failures: the bad file never lands
        assert f"t/tiny/{'head.pb' if role == 'head' else 'head.json'}" not in left


def test_damaged_file_is_downloaded_again(origin: str, tmp_path: Path) -> None:
    """A present file that no longer verifies (e.g. overwritten by a half copy) is replaced."""
    data = _entry_data("tiny", origin)
    _fetch(data, tmp_path)
    (tmp_path / "t/tiny/head.pb").write_bytes(b"\x0a\x05junk")
    assert _fetch(data, tmp_path)[0] == "head:downloaded"
    assert (tmp_path / "t/tiny/head.pb").read_bytes() == MODEL.files["head"]


def test_graph_reader_finds_node_names_and_rejects_junk() -> None:
    """The GraphDef check reads node names from the wire format (of a real TF-frozen graph too: the packaged
    MSD-MusiCNN one); random bytes and text are refused."""
    names = graph_node_names(MODEL.files["head"])
    assert {"model/Placeholder", "model/dense/BiasAdd", "model/Softmax"} <= names
    real = graph_node_names((PACKAGED_WEIGHTS / "musicnn/msd-musicnn-1.pb").read_bytes())
    assert {"model/Placeholder", "model/dense/BiasAdd", "model/Sigmoid"} <= real and len(real) > 100
    for junk in (b"", b"hello world", bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8))):
        with pytest.raises(ValueError):
            graph_node_names(junk)


# --- CLI and end to end -----------------------------------------------------------------------------------


def _cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``mirstream`` as users do."""
    return subprocess.run(
        [sys.executable, "-m", "serve_app.cli", *args],
        env={**os.environ, "MIRSTREAM_URL": "", **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.server
def test_fetch_then_serve_end_to_end(origin: str, tmp_path: Path) -> None:
    """`mirstream models` shows a model unavailable; `mirstream models fetch` installs it and its backbone from the
    loopback origin (exit 0), an unknown name exits 2 and a failing one 1; then one in-process server streams the
    fetched head's known answer through the graph, lists the never-fetched one as unavailable and answers a
    request for it with 409."""
    import yaml

    models_dir = tmp_path / "models"
    registry_file = tmp_path / "registry.yaml"
    ready = _entry_data("tiny", origin)
    absent = _entry_data("tiny_absent", origin, head=f"{origin}/m/missing.pb")
    registry_file.write_text(yaml.safe_dump({"models": [_backbone_data(origin), ready, absent]}))
    env = {"MIRSTREAM_REGISTRY": str(registry_file), "MIRSTREAM_MODELS_DIR": str(models_dir)}

    listed = _cli(["models", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    assert [m["available"] for m in json.loads(listed.stdout)] == [False, False, False]
    done = _cli(["models", "fetch", "tiny", "--print-checksums"], env)
    assert done.returncode == 0, done.stderr
    assert (
        "tiny_backbone:1: ready" in done.stdout
        and "tiny:1: ready" in done.stdout
        and hashlib.sha256(MODEL.files["head"]).hexdigest() in done.stdout
    )
    assert "non-commercial use only" in done.stdout
    assert _cli(["models", "fetch", "nope"], env).returncode == 2
    failed = _cli(["models", "fetch", "tiny_absent", "--models-dir", str(tmp_path / "elsewhere")], env)
    assert failed.returncode == 1 and "HTTP 404" in failed.stderr
    assert not (tmp_path / "elsewhere" / "t" / "tiny_absent").exists() or not any(
        (tmp_path / "elsewhere" / "t" / "tiny_absent").iterdir()
    )

    audio = encode(c_major_cadence(seconds_per_chord=1.5, repeats=1, sample_rate=44100), 44100, "flac")
    settings = make_settings(free_port(), models_dir=models_dir)
    with running_local_server(_registry(ready, absent), settings) as base:
        catalogue = {m["name"]: m for m in httpx.get(f"{base}/v1/models", timeout=10).json()["models"]}
        assert catalogue["tiny"]["available"] is True and catalogue["tiny_backbone"]["available"] is True
        assert catalogue["tiny_absent"]["available"] is False
        assert "mirstream models fetch tiny_absent" in catalogue["tiny_absent"]["reason"]
        refused = post(base, "tiny,tiny_absent", audio)
        assert refused.status == 409 and "mirstream models fetch tiny_absent" in refused.body.decode()
        stream = post(base, "tiny", audio)
        assert stream.statuses() == ["started", "completed", "finished"], stream.events
        results = stream.by_model()["tiny"]["result"]["results"]
        np.testing.assert_allclose(results["activations"], MODEL.expected, rtol=1e-6, atol=1e-7)
        assert results["labels"] == list(MODEL.classes)
