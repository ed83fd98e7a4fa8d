"""Run registry models on the harness's files the way a replica would, with a results cache.

Each model is built from its registry entry (class + params) and fed the decoded file in the representation
its class declares (``inputs``; the registry's ``input:`` for a class that does not declare one yet). The
registry is read as plain YAML so the harness does not depend on the server's loader. Results are cached
under ``CACHE/results``, keyed by model name, params, the source of the class's module and the file's
size/mtime: editing a model re-runs it, nothing else does.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.accuracy.datasets import CACHE
from models.base import Analyzer, AudioInput, InputSpec

ROOT = Path(__file__).resolve().parents[2]
REGISTRY_PATHS = (ROOT / "serve_app" / "model_registry.yaml", ROOT / "model_registry.yaml")
TEMPOCNN_GRAPHS = (
    ROOT / "models" / "weights" / "mtg" / "deeptemp_k16.pb",
    Path(os.environ.get("MIRSTREAM_MODELS_DIR", Path.home() / ".cache" / "mirstream" / "models")) / "deeptemp_k16.pb",
    Path("/work/shared/weights/mtg/essentia-models/tempocnn/deeptemp_k16.pb"),  # harness only, never the product
)
TEMPOCNN_FALLBACK = {"name": "tempocnn", "class": "models.tempocnn.TempoCNNAnalyzer",
                     "params": {"aggregation": "majority", "patch_hop_size": 128}}  # fmt: skip
TIMES: dict[str, list[float]] = defaultdict(list)


@functools.cache
def registry() -> dict[str, dict[str, Any]]:
    """Registry entries by name (the default version), from the first registry file that exists."""
    path = next(p for p in REGISTRY_PATHS if p.exists())
    entries = yaml.safe_load(path.read_text())["models"]
    by_name: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if entry.get("default", True) or entry["name"] not in by_name:
            by_name[entry["name"]] = entry
    return by_name


def entry(name: str) -> dict[str, Any]:
    """The registry entry of ``name`` (TempoCNN's planned entry until the registry has one)."""
    found = registry().get(name)
    if found is None and name == "tempocnn":
        return TEMPOCNN_FALLBACK
    if found is None:
        raise KeyError(f"{name} is not in the registry")
    return found


def _class(name: str) -> type[Analyzer]:
    """The analyzer class an entry names."""
    import importlib

    module, _, cls = entry(name)["class"].rpartition(".")
    return getattr(importlib.import_module(module), cls)


def tempocnn_graph() -> Path:
    """The first deeptemp_k16.pb found (installed weights first)."""
    for path in TEMPOCNN_GRAPHS:
        if path.exists():
            return path
    raise FileNotFoundError("deeptemp_k16.pb not found: mirstream models fetch tempocnn (or set MIRSTREAM_MODELS_DIR)")


def params(name: str) -> dict[str, Any]:
    """The entry's params, with the weight files a downloaded-weights model needs."""
    out = dict(entry(name).get("params") or {})
    if "tempocnn" in entry(name)["class"].lower():
        out["weight_files"] = {"graph": str(tempocnn_graph())}
    return out


def audio_spec(name: str) -> InputSpec:
    """The representation the class declares (``inputs``), else the registry's ``input:`` section."""
    declared = [v for v in getattr(_class(name), "inputs", {}).values() if isinstance(v, AudioInput)]
    if declared:
        return declared[0].spec
    raw = entry(name)["input"]
    rate = raw.get("sample_rate")
    return InputSpec(None if rate == "native" else int(rate), raw.get("channels", "mono"))


@functools.cache
def analyzer(name: str) -> Analyzer:
    """The analyzer, built once, exactly as a replica builds it."""
    return _class(name)(**params(name))


@functools.cache
def _fingerprint(name: str) -> str:
    """Hash of what determines a model's output: class path, params and its module's source."""
    cls = _class(name)
    shown = {k: v for k, v in params(name).items() if k != "weight_files"}
    text = json.dumps([entry(name)["class"], shown], sort_keys=True) + inspect.getsource(inspect.getmodule(cls))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=2)
def _decoded(path: Path) -> Any:
    """The file decoded the way the server decodes uploads."""
    from serve_app.ingress.decode import decode

    return decode(path.read_bytes(), 7200)


def timed(label: str, fn: Callable[[], Any]) -> Any:
    """Call fn, recording its wall time in TIMES under label."""
    start = time.perf_counter()
    out = fn()
    TIMES[label].append(time.perf_counter() - start)
    return out


def results(name: str, path: Path) -> dict[str, Any]:
    """``name``'s results on one file (cached with the wall time it took, which TIMES collects)."""
    stat = path.stat()
    key = hashlib.sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:20]
    cached = CACHE / "results" / name / _fingerprint(name) / f"{key}.json"
    if cached.exists():
        stored = json.loads(cached.read_text())
        TIMES[name].append(stored["seconds"])
        return stored["results"]
    from serve_app.ingress.decode import representation

    audio = representation(_decoded(path), audio_spec(name))
    start = time.perf_counter()
    try:
        out = analyzer(name).analyze(audio)
    except Exception as exc:  # noqa: BLE001 - a model that refuses a file scores as wrong, with the reason kept
        out = {"error": f"{type(exc).__name__}: {exc}"}
    seconds = time.perf_counter() - start
    TIMES[name].append(seconds)
    out = json.loads(json.dumps(out, default=lambda o: o.tolist() if hasattr(o, "tolist") else float(o)))
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps({"results": out, "seconds": seconds}))
    return out


SOFTMAX_FIELD = "bpm_probabilities"  # the additive tempocnn output the tempo ensemble asks for (see ensembles)


@functools.cache
def _tempocnn_predict() -> Any:
    """Essentia's TensorflowPredictTempoCNN on the same graph: the per-patch 256-class softmax."""
    from models.essentia_runtime import essentia_standard

    return essentia_standard().TensorflowPredictTempoCNN(graphFilename=str(tempocnn_graph()), output="output")


def tempocnn_with_probabilities(path: Path) -> dict[str, Any]:
    """tempocnn's results plus ``bpm_probabilities`` (the patch-mean softmax over 30..285 BPM) when the model
    does not give it yet: computed here from the same 11025 Hz input and graph, cached like any result."""
    out = dict(results("tempocnn", path))
    if SOFTMAX_FIELD in out or "error" in out:
        return out
    stat = path.stat()
    key = hashlib.sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:20]
    cached = CACHE / "results" / "tempocnn_softmax" / f"{key}.json"
    if not cached.exists():
        from serve_app.ingress.decode import representation

        audio = representation(_decoded(path), audio_spec("tempocnn"))
        softmax = np.asarray(_tempocnn_predict()(audio.samples), dtype=np.float64)
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps([round(float(p), 6) for p in softmax.mean(axis=0)]))
    out[SOFTMAX_FIELD] = json.loads(cached.read_text())
    return out
