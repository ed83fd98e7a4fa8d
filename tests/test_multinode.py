"""Beyond one machine: mirstream on a real multi-node Ray cluster on this machine (the slow ``cluster`` tier).

One cluster for the module (benchmarks/autoscaling.py's harness): a head started with ``ray start --head`` (0 CPUs:
the GCS, the Serve controller and a proxy) and worker nodes joined with ``ray start --address``, each a process tree
of its own that can be lost at once (SIGKILL to every process of the node): cpu1 and cpu2 (2 CPUs, 2 GB of Ray
memory) and gpu1 (1 CPU, one fake GPU, 256 MB). ``mirstream serve --address`` deploys the app onto it. In order:
placement by the registry's resources, autoscaling under load, a node lost while streams are open, stopping the
server (only its app goes), moving a default version while streams are open, and ``mirstream batch`` losing a node.
Measured timelines of the same scenarios: benchmarks/autoscaling_results.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from benchmarks.autoscaling import (
    SCALER_MAX,
    Harness,
    Stream,
    autoscale,
    cluster_registry,
    in_background,
    lose_a_node,
    mirstream_on_cluster,
    read_stream,
    server_env,
    wait_for,
    where_entry,
)
from serve_app.ops import k8s_render as kr
from serve_app.registry import parse_registry
from tests.audio_factory import encode, sine

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]
DEADLINE = 180.0  # generous bounds for anything that waits on the cluster (a loaded 2-core machine)


def _wav(seconds: float) -> bytes:
    """A 16 kHz mono sine: the fixtures sleep per second of audio, so its length sets how long each call runs."""
    return encode(sine(440.0, -20.0, seconds, 16000, 1), 16000, "wav")


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """The cluster, its observer and ``mirstream serve --address`` on it, for the whole module."""
    with mirstream_on_cluster(tmp_path_factory.mktemp("cluster"), timeout=300) as h:
        yield h
        leftover = h.cluster
    assert leftover.leftovers() == [], "processes of the cluster survived its teardown"


def _ids(h: Harness) -> dict[str, str]:
    """Node name → Ray node id (alive nodes)."""
    return h.observer.node_ids()


def _results(stream: Stream, model: str) -> dict[str, Any]:
    """The results of one model's completed event."""
    event = stream.by_model()[model]
    assert event["status"] == "completed", stream.events
    return event["result"]["results"]


def test_serve_address_places_each_entry_by_its_resources(harness: Harness) -> None:
    """The GPU entry runs on the GPU node only and is given its GPU; CPU entries and the two ingress replicas run on
    the CPU nodes (their memory reservation does not fit the GPU node); the head (0 CPUs) runs no replica; every node
    with a replica runs a Serve proxy that serves the app."""
    ids = _ids(harness)
    stream = read_stream(harness.server.base, "where_cpu,where_gpu", _wav(1.0), Stream(via="head"))
    assert stream.complete, (stream.events, stream.cut)
    gpu, cpu = _results(stream, "where_gpu"), _results(stream, "where_cpu")
    assert gpu["node_id"] == ids["gpu1"] and gpu["gpu_ids"] == ["0"], gpu
    assert cpu["node_id"] in (ids["cpu1"], ids["cpu2"]) and cpu["gpu_ids"] == [], cpu

    placement = harness.placement()
    assert placement["where_gpu-v1"] == ["gpu1"], placement
    assert sorted(placement["ingress"]) == ["cpu1", "cpu2"], placement  # two replicas, spread over two nodes
    for deployment in ("where_cpu-v1", "scaler-v1"):
        assert set(placement[deployment]) <= {"cpu1", "cpu2"}, placement
    assert not any("head" in nodes for nodes in placement.values()), placement

    proxies = harness.observer.call("serve")["proxies"]
    assert set(proxies) == {ids[n] for n in ("head", "cpu1", "cpu2", "gpu1")}, proxies
    assert set(proxies.values()) == {"HEALTHY"}, proxies
    for node in ("cpu1", "cpu2", "gpu1"):
        assert httpx.get(f"{harness.proxy(node)}/livez", timeout=10).status_code == 200, node


def test_autoscaling_scales_up_under_load_and_back_down(harness: Harness) -> None:
    """scaler (1..3 replicas, 2 ongoing requests each) under 6 back-to-back clients reaches 3 replicas, and returns to
    1 after the load (MIRSTREAM_IDLE_SECONDS = 5 s downscale delay); no request of the load fails."""
    run = autoscale(harness, "scaler", _wav(2.0), quiet_s=3.0, hold_s=4.0, timeout=DEADLINE)
    counts = [n for _, n in run.counts()]
    assert counts[0] == 1 and max(counts) == SCALER_MAX and counts[-1] == 1, run.counts()
    assert run.at_peak is not None and run.back_down is not None and run.back_down > run.stopped
    assert all(w.calls > 0 and w.failed == 0 for w in run.windows if w.seconds > 0), run.windows
    print("replicas over time (s since the load began, count):", run.counts())


def test_a_node_lost_mid_stream(harness: Harness) -> None:
    """Kill the node running where_cpu and one ingress replica while streams are open:
    - streams held by the other node's ingress get where_cpu's error event, where_gpu's result and ``finished``;
    - a stream whose connection went through the lost node's proxy is cut (no ``finished``);
    - the endpoint stays up (the head's proxy and the other ingress replica answer every /livez);
    - /healthz reports the lost deployments, then 200 once Serve has replaced them on the surviving node;
    - the next request succeeds, where_cpu now running on the survivor."""
    ids = _ids(harness)
    loss = lose_a_node(harness, _wav(20.0), _wav(1.0), timeout=DEADLINE)
    print(f"lost {loss.victim}; survivor {loss.survivor}; timeline (s after the kill): {loss.timeline()}")

    for stream in loss.streams:
        assert stream.complete and len(stream.events) == 4, (stream.events, stream.cut)
        assert {m: e["status"] for m, e in stream.by_model().items()} == {
            "where_cpu": "error",
            "where_gpu": "completed",
        }
        assert "replica died" in stream.by_model()["where_cpu"]["error"], stream.events
        assert _results(stream, "where_gpu")["node_id"] == ids["gpu1"]
    cut = loss.through_victim
    assert cut.status == 200 and cut.cut is not None and "finished" not in cut.statuses(), (cut.events, cut.cut)

    after_kill = [p for p in loss.livez if p.t >= loss.killed_at]
    assert after_kill and all(p.status == 200 for p in after_kill), [
        (p.t - loss.killed_at, p.status) for p in after_kill
    ]
    unready = [p for p in loss.health if p.t >= loss.killed_at and p.status != 200]
    assert unready and all(p.status == 503 for p in unready), [(p.t, p.status) for p in unready]
    lost = {"ingress", "where_cpu-v1"}
    assert any(lost & {d for d, state in p.states.items() if state != "HEALTHY"} for p in unready), unready
    assert loss.ready_again() is not None and loss.health[-1].status == 200

    assert set(loss.replaced) >= lost, loss.replaced
    assert all(loss.victim not in nodes for nodes in loss.after.values()), loss.after
    assert len(loss.after["ingress"]) == 2 and loss.after["where_cpu-v1"] == [loss.survivor], loss.after
    nxt = loss.next_request
    assert nxt.complete, (nxt.events, nxt.cut)
    assert _results(nxt, "where_cpu")["node_id"] == ids[loss.survivor]

    # like KubeRay replacing the pod: a new CPU node joins, for the tests that follow
    harness.cluster.add_node("cpu3", 2, 0, 2048, timeout=DEADLINE)


def test_stopping_the_server_deletes_only_its_app(harness: Harness) -> None:
    """Another application on the same cluster ("other") and the cluster itself outlive ``mirstream serve --address``
    stopping: SIGTERM drains and deletes the mirstream app only."""
    harness.observer.call("run_other", timeout=DEADLINE)
    assert httpx.get(f"{harness.server.base}/other", timeout=10).text == "other app"
    assert harness.server.stop(timeout=DEADLINE) == 0, harness.server.tail()
    serve = harness.observer.call("serve")
    assert "mirstream" not in serve["apps"] and serve["apps"].get("other") == "RUNNING", serve["apps"]
    assert httpx.get(f"{harness.server.base}/other", timeout=10).text == "other app"  # Serve and its proxy stay
    assert {"head", "gpu1", "cpu3"} <= set(_ids(harness)), _ids(harness)
    harness.observer.call("delete", names=["other"], timeout=DEADLINE)


def _rollout_config(port: int, default: str) -> dict[str, Any]:
    """The rendered Serve config (what KubeRay applies) for where_cpu:1 and where_cpu:2 with ``default`` default."""
    data = {
        "ingress": cluster_registry()["ingress"],
        "models": [
            where_entry("where_cpu", "1", "v1", 0.5, default=default == "1"),
            where_entry("where_cpu", "2", "v2", 0.5, default=default == "2"),
        ],
    }
    options = kr.RenderOptions(http_host="127.0.0.1", http_port=port)
    return kr.serve_config(data, parse_registry(data, "rollout registry"), options)


def _default_of(base: str, name: str) -> str | None:
    """The default version of ``name`` in GET /v1/models (None while the app is not answering)."""
    try:
        models = httpx.get(f"{base}/v1/models", timeout=10).json()["models"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None
    return next((m["version"] for m in models if m["name"] == name and m["default"]), None)


def test_moving_a_default_while_streams_are_open(harness: Harness) -> None:
    """The rendered Serve config (KubeRay's path) on the cluster, its two ingress replicas on two nodes: with three
    streams open, applying the config that moves where_cpu's default from 1 to 2 reconfigures the ingress replicas in
    place (same processes); the open streams finish on version 1, the next request gets version 2."""
    if harness.server.process is not None and harness.server.process.poll() is None:
        harness.server.stop(timeout=DEADLINE)  # this test deploys the app from the rendered config instead
    base = harness.server.base
    harness.observer.call("deploy", config=_rollout_config(harness.server.port, "1"), timeout=DEADLINE)
    try:
        wait_for("rendered app serving where_cpu:1 by default", lambda: _default_of(base, "where_cpu") == "1", DEADLINE)
        ingress = wait_for("two ingress replicas", lambda: _two(harness.placement().get("ingress", [])), DEADLINE)
        assert len(set(ingress)) == 2, ingress
        pids = _running_pids(harness, "ingress")
        open_streams = [Stream(via="head") for _ in range(3)]
        joins = [in_background(lambda s=s: read_stream(base, "where_cpu", _wav(8.0), s)) for s in open_streams]
        wait_for("streams started", lambda: all(s.events for s in open_streams), DEADLINE)
        harness.observer.call("deploy", config=_rollout_config(harness.server.port, "2"), timeout=DEADLINE)
        wait_for("where_cpu:2 is the default", lambda: _default_of(base, "where_cpu") == "2", DEADLINE)
        after = read_stream(base, "where_cpu", _wav(1.0), Stream(via="head"))
        for join in joins:
            join(DEADLINE)
        assert _running_pids(harness, "ingress") == pids  # reconfigured, not replaced
    finally:
        harness.observer.call("delete", names=["mirstream"], timeout=DEADLINE)
    for stream in open_streams:
        assert stream.complete, (stream.events, stream.cut)
        assert stream.by_model()["where_cpu"]["result"]["model_version"] == "1", stream.events
    assert after.complete and after.by_model()["where_cpu"]["result"]["model_version"] == "2", after.events
    assert _results(after, "where_cpu")["label"] == "v2"


def _two(nodes: list[str]) -> list[str] | None:
    """``nodes`` once it names two replicas."""
    return nodes if len(nodes) == 2 else None


def _running_pids(harness: Harness, deployment: str) -> set[int]:
    """The processes of a deployment's running replicas."""
    return {r["pid"] for r in harness.observer.replicas().get(deployment, []) if r["state"] == "RUNNING"}


def test_batch_finishes_with_a_node_lost_mid_run(harness: Harness, tmp_path: Path) -> None:
    """``mirstream batch --address`` on the cluster; the node running a model actor is killed mid-run; Ray Data
    restarts the actor and retries its work elsewhere: the run completes (a rerun resumes if it could not) and every
    (track, model) row is stored exactly once, all ok."""
    tracks = tmp_path / "tracks"
    tracks.mkdir()
    for i in range(12):
        (tracks / f"t{i:02d}.wav").write_bytes(encode(sine(200.0 + 25 * i, -20.0, 2.0, 16000, 1), 16000, "wav"))
    registry = tmp_path / "registry.yaml"
    registry.write_text(yaml.safe_dump(cluster_registry(), sort_keys=False))
    out = tmp_path / "out"
    args = [str(tracks), "--models", "where_cpu", "--out", str(out), "--format", "jsonl"]
    args += ["--address", harness.cluster.address, "--concurrency", "2"]
    env = {**server_env(harness.cluster), "MIRSTREAM_REGISTRY": str(registry)}
    log = tmp_path / "batch.log"
    with log.open("wb") as sink:
        run = subprocess.Popen(
            [sys.executable, "-m", "serve_app.cli", "batch", *args], env=env, stdout=sink, stderr=sink
        )
    try:
        names = {v: k for k, v in _ids(harness).items()}
        victim = wait_for("a model actor on a CPU node", lambda: _actor_node(harness, names), DEADLINE)
        time.sleep(1.0)  # let it work on a track
        assert run.poll() is None, log.read_text(errors="replace")[-3000:]  # still running: the loss is mid-run
        harness.cluster.kill(victim)
        code = run.wait(timeout=DEADLINE)
    finally:
        if run.poll() is None:
            run.kill()
    if code == 3:  # the run stopped; the documented answer is to rerun the same command, which resumes
        with log.open("ab") as sink:
            rerun = [sys.executable, "-m", "serve_app.cli", "batch", *args]
            code = subprocess.run(rerun, env=env, stdout=sink, stderr=sink, timeout=DEADLINE).returncode
    assert code == 0, log.read_text(errors="replace")[-3000:]
    rows = [json.loads(line) for f in sorted(out.glob("part-*.jsonl")) for line in f.read_text().splitlines()]
    pairs = Counter((r["track"], r["model"]) for r in rows)
    assert len(pairs) == 12 and set(pairs.values()) == {1}, pairs
    assert {r["status"] for r in rows} == {"ok"}, [r["error"] for r in rows if r["status"] != "ok"]
    print("rows per node:", Counter(names.get(json.loads(r["results"])["node_id"], "?") for r in rows))


def _actor_node(harness: Harness, names: dict[str, str]) -> str | None:
    """The CPU node that runs a Ray Data actor of the batch's model stage (None until one runs)."""
    for actor in harness.observer.call("actors"):
        node = names.get(actor["node_id"], "")
        if "ModelStage" in actor["class_name"] and node.startswith("cpu"):
            return node
    return None
