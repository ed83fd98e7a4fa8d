"""The model graph: a model may take other models' results; each node runs once per request, in both modes.

Fixtures (tests/fixture_registry.yaml): fx_backbone counts its runs and hands a numpy array to two heads
(fx_head:1, fx_head:2); fx_after_fail follows the always-failing model; fx_after_slow follows the slow one.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
import yaml

from serve_app.registry import RegistryError, parse_registry
from tests.conftest import REPO, registry_data
from tests.sse import post


def _results(stream: Any) -> dict[str, dict[str, Any]]:
    """Completed results keyed by name:version."""
    return {
        f"{e['result']['model_name']}:{e['result']['model_version']}": e["result"]["results"]
        for e in stream.events
        if e["status"] == "completed"
    }


def test_shared_backbone_runs_once_for_all_its_heads(server: str, audio: dict[str, bytes]) -> None:
    """Two heads requested together get one backbone run (the same run id, its array intact) and no event of it."""
    first = post(server, "fx_head:1,fx_head:2", audio["cadence.wav"])
    assert first.statuses() == ["started", "completed", "completed", "finished"], first.events
    assert first.events[0]["total_models"] == 2 and first.events[-1]["total_models"] == 2
    heads = _results(first)
    assert set(heads) == {"fx_head:1", "fx_head:2"}  # the backbone, not requested, sends no event
    assert heads["fx_head:1"]["upstream_run"] == heads["fx_head:2"]["upstream_run"]
    assert all(h["is_array"] for h in heads.values())  # numpy arrays reach the heads as arrays


def test_backbone_run_is_counted_once_per_request(server: str, audio: dict[str, bytes]) -> None:
    """Requested with both heads, the backbone's own run counter rises by exactly one per request."""
    body = audio["cadence.wav"]
    runs = []
    for _ in range(2):
        got = _results(post(server, "fx_backbone,fx_head:1,fx_head:2", body))
        backbone = got["fx_backbone:1"]
        assert got["fx_head:1"]["upstream_run"] == got["fx_head:2"]["upstream_run"] == backbone["run"]
        runs.append(backbone["runs"])
    assert runs[1] == runs[0] + 1


def test_upstream_failure_is_an_error_event_on_each_dependent(server: str, audio: dict[str, bytes]) -> None:
    """A failed upstream fails its dependents with a message naming it; the dependent never runs."""
    both = post(server, "fail,fx_after_fail", audio["cadence.wav"])
    assert both.statuses() == ["started", "error", "error", "finished"], both.events
    errors = {e["model_name"]: e for e in both.events if e["status"] == "error"}
    assert errors["fail"]["error"] == "fixture model failed on purpose"
    dependent = errors["fx_after_fail"]
    assert "fail:1" in dependent["error"] and "fixture model failed on purpose" in dependent["error"], dependent
    assert dependent["model_version"] == "1" and dependent["correlation_id"]
    alone = post(server, "fx_after_fail", audio["cadence.wav"])  # the failing upstream was not requested
    assert alone.statuses() == ["started", "error", "finished"]
    assert "fail:1" in alone.events[1]["error"]


def test_disconnect_cancels_every_node_of_the_graph(server: str, audio: dict[str, bytes]) -> None:
    """Hanging up while a hidden upstream runs stops it (its cancelled count grows) and its dependent never runs."""
    body = audio["cadence.wav"]
    before = _results(post(server, "slow:1,fx_after_slow", body))
    with httpx.Client(timeout=30) as client:
        with client.stream(
            "POST", f"{server}/v1/analysis/stream", params={"models": "fx_after_slow"}, content=body
        ) as r:
            for line in r.iter_lines():
                if line.startswith(": keep-alive"):  # the slow upstream is running
                    break
    deadline = time.monotonic() + 20
    while True:  # the cancelled run is counted once the upstream notices the flag
        after = _results(post(server, "slow:1,fx_after_slow", body))
        if after["slow:1"]["cancelled"] > before["slow:1"]["cancelled"] or time.monotonic() > deadline:
            break
    assert after["slow:1"]["cancelled"] == before["slow:1"]["cancelled"] + 1
    assert after["slow:1"]["runs"] == before["slow:1"]["runs"] + 1  # only this request's run finished
    assert after["fx_after_slow:1"]["runs"] == before["fx_after_slow:1"]["runs"] + 1  # the cancelled one never ran


def test_catalogue_shows_each_models_inputs(server: str) -> None:
    """/v1/models says what feeds each model: the audio (rate, channels, minimum) or another model."""
    models = {f"{m['name']}:{m['version']}": m for m in httpx.get(f"{server}/v1/models").json()["models"]}
    assert models["fx_head:1"]["inputs"] == {"backbone": {"model": "fx_backbone:1"}}
    assert models["fx_head:1"]["input"] is None
    key = models["key:1"]["inputs"]["audio"]["audio"]
    assert key == {"sample_rate": 44100, "channels": "mono", "min_seconds": 1.0}


# --- start-up checks of the graph (no server) ------------------------------------------------------------


def _with(extra: list[dict[str, Any]]) -> dict[str, Any]:
    """The test registry plus extra entries."""
    data = registry_data()
    data["models"] = data["models"] + extra
    return data


def _node(name: str, upstream: str, cls: str = "tests.fixture_models.AfterAnything") -> dict[str, Any]:
    """A registry entry for a graph node bound to ``upstream``."""
    return {
        "name": name,
        "version": "1",
        "default": True,
        "class": cls,
        "inputs": {"upstream" if cls.endswith("AfterAnything") else "backbone": upstream},
        "description": "test node",
        "license": {"code": "AGPL-3.0"},
        "output_schema": {"type": "object"},
    }


def test_a_cycle_is_refused_at_start_up_naming_its_entries() -> None:
    """a:1 → b:1 → a:1 cannot run; the error names the cycle."""
    with pytest.raises(RegistryError, match=r"cycle: (a:1 -> b:1 -> a:1|b:1 -> a:1 -> b:1)"):
        parse_registry(_with([_node("a", "b:1"), _node("b", "a:1")]))


def test_a_missing_upstream_is_refused_naming_both_entries() -> None:
    """An input bound to an entry that does not exist names the entry and the missing upstream."""
    with pytest.raises(RegistryError, match=r"model orphan:1: input 'upstream' is bound to ghost:7, which is not"):
        parse_registry(_with([_node("orphan", "ghost:7")]))


def test_an_upstream_without_the_required_fields_is_refused() -> None:
    """A head that needs 'run' and 'frames' cannot hang off a model whose schema lacks them."""
    with pytest.raises(RegistryError, match=r"requires result field\(s\) \['run', 'frames'\] that key:1"):
        parse_registry(_with([_node("head_on_key", "key:1", "tests.fixture_models.EchoHead")]))


def test_every_model_input_must_be_bound_and_nothing_else() -> None:
    """The class's model inputs are bound one to one by the registry's ``inputs``."""
    unbound = _node("lonely", "fx_backbone:1")
    del unbound["inputs"]
    with pytest.raises(RegistryError, match=r"takes model input\(s\) \['upstream'\]"):
        parse_registry(_with([unbound]))
    extra = _node("extra", "fx_backbone:1")
    extra["inputs"]["other"] = "key:1"
    with pytest.raises(RegistryError, match=r"unknown key\(s\) \['other'\]"):
        parse_registry(_with([extra]))


def test_the_registry_may_restate_the_class_audio_input_but_not_contradict_it() -> None:
    """A class declares its input once; a registry restatement that disagrees is an error naming both values."""
    data = yaml.safe_load((REPO / "model_registry.yaml").read_text())
    key = next(m for m in data["models"] if m["name"] == "key")
    parse_registry({"models": [{**key, "input": {"sample_rate": 44100, "channels": "mono"}}]})
    with pytest.raises(RegistryError, match=r"input.sample_rate: the registry says 16000 but the class declares 44100"):
        parse_registry({"models": [{**key, "input": {"sample_rate": 16000}}]})


def test_the_graph_runs_the_same_in_the_in_process_runner_under_concurrency(
    local_server: str, audio: dict[str, bytes]
) -> None:
    """Two overlapping requests each get their own single backbone run (no sharing across requests)."""
    body = audio["cadence.wav"]
    out: list[dict[str, dict[str, Any]]] = []
    threads = [
        threading.Thread(target=lambda: out.append(_results(post(local_server, "fx_head:1,fx_head:2", body))))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    runs = [r["fx_head:1"]["upstream_run"] for r in out]
    assert all(r["fx_head:1"]["upstream_run"] == r["fx_head:2"]["upstream_run"] for r in out)
    assert len(set(runs)) == 2
