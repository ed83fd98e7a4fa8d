"""mirstream on a real multi-node Ray cluster on this machine: autoscaling under a bounded load, a node lost mid-stream.

Every Ray node is a ``ray start --block`` process of its own (the head with 0 CPUs, as in the KubeRay render, plus
worker nodes with their own CPUs, fake GPUs and memory), each carrying a marker in its environment, so killing a
node is SIGKILL to every process of that node at once: its raylet, agents, Serve proxy and replicas. The server is
the real CLI, ``mirstream serve --address``, and the cluster is inspected from a Ray driver in a subprocess
(``Observer``), so the caller never joins the cluster itself.

    .venv/bin/python -m benchmarks.autoscaling          # a few minutes; starts and removes its own cluster

writes benchmarks/autoscaling_results.md. tests/test_multinode.py drives the same harness (LocalCluster, Observer,
ServerProcess) and asserts what this measures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "autoscaling_results.md"
RAY = str(Path(sys.executable).with_name("ray"))
NODE_VAR = "MIRSTREAM_TEST_RAY_NODE"  # every process of a node carries <cluster id>.<node name> in its environment
# Node death is noticed by the GCS's health checks. With Ray's defaults Serve had replaced a lost node's replicas only
# ~50 s after the kill (benchmarks/autoscaling_results.md); the test cluster checks every 0.5 s and gives up after 3
# misses, so a lost node is declared dead within ~2 s and its replicas are back in ~10 s.
FAST_FAILURE_DETECTION = {"health_check_period_ms": 500, "health_check_failure_threshold": 3}


def free_port() -> int:
    """An unused loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pids_with(needle: str) -> list[int]:
    """Live processes whose environment contains ``needle`` (a node's or a server's marker)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if needle.encode() in (proc / "environ").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def kill_pids(pids: list[int], sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to each of ``pids`` (ignoring ones already gone)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


# ------------------------------------------------------------------------------------------------------ the cluster


@dataclass
class RayNode:
    """One ``ray start --block`` process and what it offers."""

    name: str
    process: subprocess.Popen[bytes]
    marker: str
    proxy_port: int | None
    num_cpus: int
    num_gpus: int


@dataclass
class LocalCluster:
    """A head and worker nodes on this machine, each a ``ray start`` of its own; ``kill`` loses a node abruptly."""

    workdir: Path
    system_config: dict[str, Any] = field(default_factory=lambda: dict(FAST_FAILURE_DETECTION))
    cluster_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    nodes: dict[str, RayNode] = field(default_factory=dict)
    address: str = ""

    def env(self, marker: str) -> dict[str, str]:
        """The environment of a node's processes (and of the drivers joining it): this repository importable, no
        usage stats, no token authentication (a throwaway cluster on this machine), and its marker."""
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        env[NODE_VAR] = marker
        env.pop("RAY_ADDRESS", None)
        return env

    def start_head(self, timeout: float, object_store_mb: int = 100) -> None:
        """The head: GCS and the Serve controller's home; 0 CPUs, so no replica is ever placed there."""

        def args() -> list[str]:
            port = free_port()
            self.address = f"127.0.0.1:{port}"
            config = f"--system-config={json.dumps(self.system_config)}"
            return [
                "--head",
                f"--port={port}",
                "--include-dashboard=false",
                f"--ray-client-server-port={free_port()}",
                config,
            ]

        self._start("head", args, 0, 0, None, object_store_mb, timeout)

    def add_node(
        self,
        name: str,
        num_cpus: int,
        num_gpus: int = 0,
        memory_mb: int | None = None,
        timeout: float = 300.0,
        object_store_mb: int = 100,
    ) -> RayNode:
        """A worker node, once it runs; its Serve proxy (if it gets one) listens on a port of its own."""
        join = [f"--address={self.address}"]
        return self._start(name, lambda: join, num_cpus, num_gpus, memory_mb, object_store_mb, timeout)

    def _start(
        self,
        name: str,
        args: Callable[[], list[str]],
        num_cpus: int,
        num_gpus: int,
        memory_mb: int | None,
        object_store_mb: int,
        timeout: float,
        attempts: int = 3,
    ) -> RayNode:
        """``ray start --block`` for one node in its own session (log: workdir/<name>.log) until it runs; a start
        that gives up (Ray allows a raylet 30 s to register, too short on a loaded machine) is retried."""
        marker = f"{self.cluster_id}.{name}"
        env = self.env(marker)
        proxy_port = None if name == "head" else free_port()
        if proxy_port is not None:  # worker proxies bind their own port (Serve's per-node override), not the head's
            env["RAY_SERVE_WORKER_PROXY_HTTP_PORT"] = str(proxy_port)
        common = [
            "--block",
            "--disable-usage-stats",
            f"--num-cpus={num_cpus}",
            f"--num-gpus={num_gpus}",
            f"--object-store-memory={object_store_mb * 2**20}",
            "--min-worker-port=0",
            "--max-worker-port=0",
            f"--labels=mirstream-node={name}",
        ]
        if memory_mb is not None:
            common.append(f"--memory={memory_mb * 2**20}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / f"{name}.log"
        for _ in range(attempts):
            offset = log.stat().st_size if log.exists() else 0
            command = [RAY, "start", *args(), *common, f"--dashboard-agent-listen-port={free_port()}"]
            with log.open("ab") as sink:
                process = subprocess.Popen(command, env=env, stdout=sink, stderr=sink, start_new_session=True)
            node = RayNode(name, process, marker, proxy_port, num_cpus, num_gpus)
            if _started(process, log, offset, timeout):
                self.nodes[name] = node
                return node
            kill_pids(pids_with(f"{NODE_VAR}={marker}\0"))  # whatever this attempt left behind
            process.wait(timeout=10)
        raise RuntimeError(
            f"node {name} did not start in {attempts} attempts: {log.read_text(errors='replace')[-2000:]}"
        )

    def kill(self, name: str) -> float:
        """Lose a node: SIGKILL every process of it at once (raylet, agents, proxy, replicas); returns the time."""
        node = self.nodes.pop(name)
        at = time.monotonic()
        for _ in range(3):  # a worker may be forking while we kill; sweep until none is left
            kill_pids(pids_with(f"{NODE_VAR}={node.marker}\0"))
            time.sleep(0.1)
        node.process.wait(timeout=10)
        return at

    def close(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL whatever of this cluster is left after 5 s)."""
        for node in self.nodes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for node in self.nodes.values():
            try:
                node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for _ in range(3):
            kill_pids(pids_with(f"{NODE_VAR}={self.cluster_id}."))
            time.sleep(0.2)
        self.nodes.clear()
        self._forget_address()

    def _forget_address(self) -> None:
        """Remove the address file ``ray start --head`` leaves for ``ray.init()`` without an address (if it is ours),
        so that nothing started later in this temp dir tries to join a cluster that is gone."""
        import tempfile

        address_file = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        port = self.address.rsplit(":", 1)[-1]
        with contextlib.suppress(OSError):
            if port and address_file.read_text().strip().endswith(f":{port}"):
                address_file.unlink()

    def leftovers(self) -> list[int]:
        """Processes of this cluster still alive (empty after ``close``)."""
        return pids_with(f"{NODE_VAR}={self.cluster_id}.")


def _started(process: subprocess.Popen[bytes], log: Path, offset: int, timeout: float) -> bool:
    """Whether ``ray start`` reports the node running (in its log after ``offset``) before it exits or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with log.open("rb") as f:
            f.seek(offset)
            if b"Ray runtime started" in f.read():
                return True
        if process.poll() is not None:
            return False
        time.sleep(0.5)
    return False


# ----------------------------------------------------------------------------------------- looking at the cluster

REPLY = "@@observer "


class Observer:
    """A Ray driver in a subprocess, asked JSON questions on stdin: nodes, Serve's replicas and proxies, actors; it
    also deploys Serve configs and a second app. (The caller may already be a driver of another Ray instance.)"""

    def __init__(self, address: str, env: dict[str, str], log: Path) -> None:
        with log.open("ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.autoscaling", "--observe", address],
                env=env,
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        self._lines: list[str] = []
        self._ready = threading.Condition()
        self._one_at_a_time = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        """Collect the replies (Ray may print other lines on stdout too)."""
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode(errors="replace")
            if line.startswith(REPLY):
                with self._ready:
                    self._lines.append(line[len(REPLY) :])
                    self._ready.notify_all()

    def call(self, op: str, timeout: float = 60.0, **args: Any) -> Any:
        """One request and its reply (one at a time across threads); raises RuntimeError with the driver's message
        when the request failed."""
        assert self.process.stdin is not None
        with self._one_at_a_time:
            self.process.stdin.write((json.dumps({"op": op, "args": args}) + "\n").encode())
            self.process.stdin.flush()
            with self._ready:
                if not self._ready.wait_for(lambda: self._lines or self.process.poll() is not None, timeout=timeout):
                    raise TimeoutError(f"observer: no reply to {op} within {timeout} s")
                if not self._lines:
                    raise RuntimeError(f"observer exited ({self.process.returncode}) before answering {op}")
                reply = json.loads(self._lines.pop(0))
        if not reply["ok"]:
            raise RuntimeError(f"observer {op}: {reply['error']}")
        return reply["result"]

    def node_ids(self) -> dict[str, str]:
        """Node name (its ``mirstream-node`` label) → Ray node id, for the nodes alive now."""
        return {n["name"]: n["node_id"] for n in self.call("nodes") if n["alive"]}

    def replicas(self, app: str = "mirstream") -> dict[str, list[dict[str, Any]]]:
        """Deployment → its replicas ({state, node_id, pid}) of ``app``."""
        return self.call("serve")["replicas"].get(app, {})

    def running(self, deployment: str, app: str = "mirstream") -> list[str]:
        """Node ids of the RUNNING replicas of one deployment."""
        return [r["node_id"] for r in self.replicas(app).get(deployment, []) if r["state"] == "RUNNING"]

    def close(self) -> None:
        """End the driver."""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _observe(address: str) -> None:
    """The observer's body: join the cluster as a driver and answer one JSON request per stdin line."""
    import logging

    import ray

    ray.init(address=address, namespace="mirstream-observer", log_to_driver=False, logging_level=logging.ERROR)
    ops: dict[str, Callable[..., Any]] = {
        "nodes": _op_nodes,
        "serve": _op_serve,
        "deploy": _op_deploy,
        "run_other": _op_run_other,
        "delete": _op_delete,
        "actors": _op_actors,
    }
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = {"ok": True, "result": ops[request["op"]](**request["args"])}
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller as text
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print(REPLY + json.dumps(reply, default=str), flush=True)


def _op_nodes() -> list[dict[str, Any]]:
    """Every node the GCS knows: its name label, id, liveness and resources."""
    import ray

    return [
        {
            "name": n.get("Labels", {}).get("mirstream-node", ""),
            "node_id": n["NodeID"],
            "alive": n["Alive"],
            "resources": n.get("Resources", {}),
        }
        for n in ray.nodes()
    ]


def _op_serve() -> dict[str, Any]:
    """Applications' and deployments' statuses, every replica's state and node, and the proxies."""
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return {"apps": {}, "deployments": {}, "replicas": {}, "proxies": {}}
    details = client.get_serve_details()
    apps = details.get("applications", {})
    return {
        "apps": {name: app["status"] for name, app in apps.items()},
        "deployments": {name: {d: v["status"] for d, v in app["deployments"].items()} for name, app in apps.items()},
        "replicas": {
            name: {
                d: [{"state": r["state"], "node_id": r.get("node_id"), "pid": r.get("pid")} for r in v["replicas"]]
                for d, v in app["deployments"].items()
            }
            for name, app in apps.items()
        },
        "proxies": {node: p["status"] for node, p in details.get("proxies", {}).items()},
    }


def _op_deploy(config: dict[str, Any]) -> str:
    """Apply a Serve config (what ``serve deploy`` sends to the dashboard), without waiting."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    _get_global_client().deploy_apps(ServeDeploySchema.model_validate(config))
    return "applied"


def _op_run_other(route_prefix: str = "/other") -> str:
    """A second, unrelated Serve application ("other") deployed imperatively, as another team's app would be."""
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0.01})
    def other() -> str:
        return "other app"

    serve.run(other.bind(), name="other", route_prefix=route_prefix, blocking=False)
    return "deployed"


def _op_delete(names: list[str]) -> str:
    """Delete Serve applications (blocking)."""
    from ray import serve

    for name in names:
        serve.delete(name, _blocking=True)
    return "deleted"


def _op_actors() -> list[dict[str, Any]]:
    """Alive actors: class name and node (from the GCS; no dashboard needed)."""
    import ray

    table = ray._private.state.actors()
    return [
        {"class_name": a.get("ActorClassName", ""), "node_id": a.get("Address", {}).get("NodeID", "")}
        for a in table.values()
        if a.get("State") == "ALIVE"
    ]


# ------------------------------------------------------------------------------------------------------ the server


@dataclass
class ServerProcess:
    """``mirstream serve --address`` in a subprocess, serving ``registry`` through the head node's Serve proxy."""

    address: str
    registry: Path
    port: int
    log: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        """The head proxy's URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the CLI; returns at once (``wait_ready`` waits)."""
        env = {**self.env, "PORT": str(self.port), "MIRSTREAM_REGISTRY": str(self.registry)}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "serve_app.cli", "serve", "--address", self.address],
                env=env,
                cwd=REPO,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float) -> None:
        """Until /healthz answers 200 (the CLI exiting early fails at once with its log)."""
        deadline = time.monotonic() + timeout
        while not healthy(self.base):
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"mirstream serve exited {self.process.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"mirstream serve not healthy after {timeout} s: {self.tail()}")
            time.sleep(0.5)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (drain, delete this app, disconnect) and wait; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise

    def tail(self) -> str:
        """The end of the server's log."""
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def healthy(base: str) -> bool:
    """Whether GET /healthz answers 200 now."""
    try:
        return httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.25) -> Any:
    """Poll ``check`` until it returns something truthy (returned); fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(every)


# ------------------------------------------------------------------------------------------- streams and health


@dataclass
class Stream:
    """One SSE stream as the client saw it: each event with the time it arrived, and how the connection ended."""

    via: str
    status: int | None = None
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    cut: str | None = None  # the transport error when the connection ended before ``finished``
    opened_at: float = 0.0
    ended_at: float = 0.0

    def statuses(self) -> list[str]:
        """The ``status`` of every event, in order."""
        return [e["status"] for _, e in self.events]

    def by_model(self) -> dict[str, dict[str, Any]]:
        """Each model's event (completed or error) by model name."""
        out = {}
        for _, e in self.events:
            if e["status"] == "completed":
                out[e["result"]["model_name"]] = e
            elif e["status"] == "error" and "model_name" in e:
                out[e["model_name"]] = e
        return out

    def at(self, model: str) -> float | None:
        """When the event of ``model`` arrived."""
        for t, e in self.events:
            name = e.get("result", {}).get("model_name") if e["status"] == "completed" else e.get("model_name")
            if name == model:
                return t
        return None

    @property
    def complete(self) -> bool:
        """A well-formed stream: 200, started first, finished last, connection ended cleanly."""
        return (
            self.status == 200
            and self.cut is None
            and self.statuses()[:1] == ["started"]
            and (self.statuses()[-1:] == ["finished"])
        )


def read_stream(base: str, models: str, body: bytes, into: Stream | None = None, timeout: float = 120.0) -> Stream:
    """POST to the stream endpoint at ``base`` and record every event as it arrives in ``into`` (never raises)."""
    stream = into if into is not None else Stream(via=base)
    stream.opened_at = time.monotonic()
    try:
        with httpx.Client(timeout=timeout) as client:
            url = f"{base}/v1/analysis/stream"
            with client.stream("POST", url, params={"models": models}, content=body) as response:
                stream.status = response.status_code
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        stream.events.append((time.monotonic(), json.loads(line[len("data: ") :])))
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        stream.cut = f"{type(exc).__name__}: {exc}"
    stream.ended_at = time.monotonic()
    return stream


def in_background(target: Callable[[], Any]) -> Callable[[float], Any]:
    """Run ``target`` in a thread; returns ``join(timeout)`` that gives its result (or raises what it raised)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = target()
        except BaseException as exc:  # noqa: BLE001 - handed to the joiner
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join(timeout: float) -> Any:
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"background call still running after {timeout} s")
        if "error" in box:
            raise box["error"]
        return box["value"]

    return join


@dataclass
class Probe:
    """What one GET answered: HTTP status (or the connection error) and, for /healthz, the deployment states."""

    t: float  # sent
    status: int | str
    states: dict[str, str] = field(default_factory=dict)
    answered: float = 0.0


class Poller:
    """GETs a URL every ``every`` seconds in a thread until stopped, keeping every answer (a request that takes longer
    than ``timeout`` counts as a timeout)."""

    def __init__(self, url: str, every: float = 0.25, timeout: float = 30.0) -> None:
        self.url = url
        self.every = every
        self.timeout = timeout
        self.probes: list[Probe] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """Poll until stopped."""
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stop.is_set():
                t = time.monotonic()
                try:
                    r = client.get(self.url)
                    states = (
                        r.json().get("deployments", {})
                        if r.headers.get("content-type", "").startswith("application/json")
                        else {}
                    )
                    self.probes.append(Probe(t, r.status_code, states, time.monotonic()))
                except (httpx.HTTPError, ValueError) as exc:
                    self.probes.append(Probe(t, type(exc).__name__, answered=time.monotonic()))
                self._stop.wait(self.every)

    def stop(self) -> list[Probe]:
        """Stop polling; every probe taken."""
        self._stop.set()
        self._thread.join(timeout=10)
        return self.probes


# ------------------------------------------------------------------------------------- the served registry and nodes

# Worker nodes of the test cluster (the head has 0 CPUs): name, CPUs, fake GPUs, Ray memory (MB). The GPU node's
# small memory keeps every entry that reserves memory (the ingress, the CPU fixtures) off it; num_gpus pins the GPU
# entry to it.
NODES = (("cpu1", 2, 0, 2048), ("cpu2", 2, 0, 2048), ("gpu1", 1, 1, 256))
REPLICA_MB = 300  # the memory the ingress and the CPU fixtures reserve per replica
SCALER_MAX = 3


def where_entry(name: str, version: str, label: str, per_audio_second: float, **extra: Any) -> dict[str, Any]:
    """A registry entry for tests.fixture_models.WhereAnalyzer (reports node, GPUs and pid after sleeping)."""
    entry: dict[str, Any] = {
        "name": name,
        "version": version,
        "warm": True,
        "class": "tests.fixture_models.WhereAnalyzer",
        "description": f"Test fixture that reports where it ran ({label}).",
        "params": {"per_audio_second": per_audio_second, "label": label},
        "resources": {"num_cpus": 0.05, "memory_mb": REPLICA_MB},
        "autoscaling": {"min_replicas": 1, "max_replicas": 1},
        "max_ongoing_requests": 8,
        "license": {"code": "AGPL-3.0"},
        "output_schema": {"type": "object", "required": ["node_id", "gpu_ids"]},
    }
    entry.update(extra)
    return entry


def cluster_registry() -> dict[str, Any]:
    """Two ingress replicas; where_cpu (CPU nodes), where_gpu (the GPU node only), and scaler (1 to 3 replicas,
    aiming at two ongoing requests each). The fixtures sleep per second of audio (one call at a time per replica),
    so the caller picks how long a call runs."""
    return {
        "ingress": {
            "resources": {"num_cpus": 0.1, "memory_mb": REPLICA_MB},
            "autoscaling": {"min_replicas": 2, "max_replicas": 2, "target_ongoing_requests": 8},
        },
        "models": [
            where_entry("where_cpu", "1", "cpu", 0.5, default=True),
            where_entry("where_gpu", "1", "gpu", 0.1, default=True, resources={"num_cpus": 0.05, "num_gpus": 1}),
            where_entry(
                "scaler",
                "1",
                "scaler",
                0.5,
                default=True,
                autoscaling={"min_replicas": 1, "max_replicas": SCALER_MAX, "target_ongoing_requests": 2},
                max_ongoing_requests=2,
            ),
        ],
    }


def server_env(cluster: LocalCluster) -> dict[str, str]:
    """The CLI's environment: the cluster's, a 5 s downscale delay (MIRSTREAM_IDLE_SECONDS), a short drain."""
    env = cluster.env(f"{cluster.cluster_id}.server")
    env.update(MIRSTREAM_IDLE_SECONDS="5", MIRSTREAM_SHUTDOWN_GRACE_SECONDS="3", MIRSTREAM_KEEPALIVE_SECONDS="1")
    env.update(MIRSTREAM_LOG_FORMAT="text", MIRSTREAM_STARTUP_TIMEOUT_SECONDS="300")
    return env


@dataclass
class Harness:
    """A running cluster, its observer and ``mirstream serve --address`` on it."""

    cluster: LocalCluster
    observer: Observer
    server: ServerProcess

    def proxy(self, node: str) -> str:
        """The URL of a node's Serve proxy (the head's is the server's own port)."""
        port = self.cluster.nodes[node].proxy_port
        return self.server.base if node == "head" else f"http://127.0.0.1:{port}"

    def names(self) -> dict[str, str]:
        """Ray node id → node name, for every node the cluster has known (dead ones too)."""
        return {n["node_id"]: n["name"] for n in self.observer.call("nodes")}

    def placement(self, app: str = "mirstream") -> dict[str, list[str]]:
        """Deployment → the node names of its RUNNING replicas."""
        names = self.names()
        return {
            d: sorted(names.get(r["node_id"], "?") for r in replicas if r["state"] == "RUNNING")
            for d, replicas in self.observer.replicas(app).items()
        }


def start_cluster(
    workdir: Path, timeout: float = 300.0, system_config: dict[str, Any] | None = None
) -> tuple[LocalCluster, Observer]:
    """The head and NODES, and an observer once every node has joined (``system_config`` None: fast detection)."""
    cluster = LocalCluster(workdir, dict(FAST_FAILURE_DETECTION if system_config is None else system_config))
    try:
        cluster.start_head(timeout)  # workers started before the GCS answers give up after a while
        observer = Observer(cluster.address, cluster.env(f"{cluster.cluster_id}.observer"), workdir / "observer.log")
        for name, cpus, gpus, memory in NODES:  # one at a time: nodes starting together on one machine race
            cluster.add_node(name, cpus, gpus, memory, timeout)
        wanted = {"head", *(n[0] for n in NODES)}
        wait_for("every node joined", lambda: wanted <= set(observer.node_ids()), timeout, every=1.0)
    except BaseException:
        cluster.close()
        raise
    return cluster, observer


@contextlib.contextmanager
def mirstream_on_cluster(
    workdir: Path, timeout: float = 300.0, system_config: dict[str, Any] | None = None
) -> Iterator[Harness]:
    """Cluster, observer and server (cluster_registry) for the block; everything is torn down after it."""
    cluster, observer = start_cluster(workdir, timeout, system_config)
    registry = workdir / "registry.yaml"
    registry.write_text(yaml.safe_dump(cluster_registry(), sort_keys=False))
    server = ServerProcess(cluster.address, registry, free_port(), workdir / "server.log", server_env(cluster))
    try:
        server.start()
        server.wait_ready(timeout)
        yield Harness(cluster, observer, server)
    finally:
        try:
            if server.process is not None:
                server.stop()
        finally:
            observer.close()
            cluster.close()


# -------------------------------------------------------------------------------------------------- a node is lost


@dataclass
class NodeLoss:
    """A worker node lost while streams were open, as the clients and Serve saw it (times are monotonic)."""

    victim: str
    survivor: str
    before: dict[str, list[str]]  # deployment → nodes of its running replicas, before the kill
    killed_at: float
    streams: list[Stream]  # through the surviving node's proxy: its ingress replica lives on
    through_victim: Stream  # through the lost node's own proxy
    health: list[Probe]  # GET /healthz through the head node's proxy, every 0.25 s
    livez: list[Probe]
    replaced: dict[str, float]  # deployment → when it had all its replicas running again, none on the victim
    after: dict[str, list[str]]
    next_request: Stream

    def since_kill(self, t: float | None) -> float | None:
        """Seconds from the kill to ``t``."""
        return None if t is None else round(t - self.killed_at, 2)

    def first_unready(self) -> float | None:
        """When /healthz first answered something else than 200 after the kill."""
        return min((p.answered for p in self.health if p.t >= self.killed_at and p.status != 200), default=None)

    def timeline(self) -> dict[str, float | None]:
        """Seconds after the kill: error events, the cut, /healthz unready and ready again, replicas replaced."""
        errors = [s.at("where_cpu") for s in self.streams]
        out = {
            "error events": self.since_kill(max((t for t in errors if t is not None), default=None)),
            "stream through the lost node cut": self.since_kill(self.through_victim.ended_at),
            "/healthz first 503": self.since_kill(self.first_unready()),
        }
        out.update({f"{d} replaced": self.since_kill(t) for d, t in sorted(self.replaced.items())})
        out["/healthz 200 again"] = self.since_kill(self.ready_again())
        last_bad = self.last_unready()
        out["/healthz last non-200"] = self.since_kill(last_bad.answered if last_bad else None)
        out["slowest /livez answer (s)"] = self.slowest(self.livez)
        out["slowest /healthz answer (s)"] = self.slowest(self.health)
        return out

    def last_unready(self) -> Probe | None:
        """The last /healthz answer after the kill that was not 200 (its states say which deployment)."""
        bad = [p for p in self.health if p.t >= self.killed_at and p.status != 200]
        return bad[-1] if bad else None

    def ready_again(self) -> float | None:
        """When /healthz answered 200 again for good (after its last non-200 answer)."""
        last_bad = max((i for i, p in enumerate(self.health) if p.status != 200), default=None)
        if last_bad is None or last_bad + 1 >= len(self.health):
            return None
        return self.health[last_bad + 1].answered

    def slowest(self, probes: list[Probe]) -> float:
        """The longest a probe sent after the kill waited for its answer (s)."""
        return round(max((p.answered - p.t for p in probes if p.t >= self.killed_at), default=0.0), 2)


def lose_a_node(
    h: Harness, body: bytes, next_body: bytes, models: str = "where_cpu,where_gpu", timeout: float = 180.0
) -> NodeLoss:
    """Kill the CPU node that runs where_cpu (and one of the two ingress replicas) while two streams (``body``) are
    open through the other CPU node's proxy and one through the doomed node's own; then wait until Serve has replaced
    what was lost and a new request (``next_body``) succeeds through the head's proxy."""
    before = h.placement()
    victim = _single(before["where_cpu-v1"], "where_cpu-v1")
    survivors = [n for n in before["ingress"] if n != victim]
    if victim not in before["ingress"] or len(survivors) != 1:
        raise RuntimeError(f"expected the two ingress replicas on where_cpu's node and one other node: {before}")
    survivor = survivors[0]
    health = Poller(f"{h.server.base}/healthz")
    livez = Poller(f"{h.server.base}/livez")
    streams = [Stream(via=survivor), Stream(via=survivor)]
    through_victim = Stream(via=victim)
    joins = [in_background(lambda s=s: read_stream(h.proxy(survivor), models, body, s)) for s in streams]
    joins.append(in_background(lambda: read_stream(h.proxy(victim), models, body, through_victim)))
    wait_for("every stream started", lambda: all(s.events for s in [*streams, through_victim]), 60)
    time.sleep(0.5)  # every model call is running now
    killed_at = h.cluster.kill(victim)
    for join in joins:
        join(timeout)
    replaced = _replaced(h, before, victim, timeout)
    wait_for("/healthz 200 again", lambda: healthy(h.server.base), timeout)
    next_request = read_stream(h.server.base, models, next_body, Stream(via="head"))
    return NodeLoss(
        victim=victim,
        survivor=survivor,
        before=before,
        killed_at=killed_at,
        streams=streams,
        through_victim=through_victim,
        health=health.stop(),
        livez=livez.stop(),
        replaced=replaced,
        after=h.placement(),
        next_request=next_request,
    )


def _single(nodes: list[str], deployment: str) -> str:
    """The one node of a one-replica deployment."""
    if len(nodes) != 1:
        raise RuntimeError(f"{deployment} should run one replica, runs {nodes}")
    return nodes[0]


def _replaced(h: Harness, before: dict[str, list[str]], victim: str, timeout: float) -> dict[str, float]:
    """Poll until every deployment that lost a replica has as many running as before, none on ``victim``; returns
    when each got there."""
    lost = {d for d, nodes in before.items() if victim in nodes}
    done: dict[str, float] = {}

    def check() -> bool:
        now = h.placement()
        for d in lost - set(done):
            nodes = now.get(d, [])
            if len(nodes) >= len(before[d]) and victim not in nodes:
                done[d] = time.monotonic()
        return set(done) == lost

    wait_for(f"replicas lost on {victim} replaced", check, timeout, every=0.5)
    return done


# ------------------------------------------------------------------------------------------------------ autoscaling


@dataclass(frozen=True)
class Call:
    """One request of the load: when it started and ended, and whether its stream completed with the model's result."""

    started: float
    ended: float
    ok: bool


@dataclass(frozen=True)
class Window:
    """Latency and throughput of the calls of one stretch of the run."""

    name: str
    clients: int
    replicas: str
    seconds: float
    calls: int
    failed: int
    per_second: float
    p50_s: float
    p95_s: float


def window(name: str, clients: int, replicas: str, calls: list[Call], start: float, end: float) -> Window:
    """Calls that started in [start, end): completions per second over the stretch, and latency percentiles."""
    inside = [c for c in calls if start <= c.started < end]
    good = sorted(c.ended - c.started for c in inside if c.ok)
    span = max(end - start, 1e-9)

    def pct(q: float) -> float:
        return round(good[min(len(good) - 1, int(q * len(good)))], 2) if good else float("nan")

    return Window(
        name=name,
        clients=clients,
        replicas=replicas,
        seconds=round(span, 1),
        calls=len(inside),
        failed=len(inside) - len(good),
        per_second=round(len(good) / span, 2),
        p50_s=pct(0.5),
        p95_s=pct(0.95),
    )


class Load:
    """``clients`` threads streaming one model back to back until stopped, recording every call."""

    def __init__(self, base: str, model: str, body: bytes, clients: int) -> None:
        self.calls: list[Call] = []
        self._stop = threading.Event()
        self._args = (base, model, body)
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]
        for t in self._threads:
            t.start()

    def _client(self) -> None:
        """Back-to-back streams until stopped."""
        base, model, body = self._args
        while not self._stop.is_set():
            s = read_stream(base, model, body, Stream(via="head"), timeout=60)
            ok = s.complete and s.by_model().get(model, {}).get("status") == "completed"
            self.calls.append(Call(s.opened_at, s.ended_at, ok))

    def stop(self, timeout: float = 60.0) -> list[Call]:
        """Stop after the calls in flight; every call made."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        return self.calls


class ReplicaSampler:
    """Counts a deployment's RUNNING replicas every ``every`` seconds (through the observer) until stopped."""

    def __init__(self, observer: Observer, deployment: str, every: float = 0.5) -> None:
        self.samples: list[tuple[float, int]] = []
        self._observer = observer
        self._deployment = deployment
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """Sample until stopped."""
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), len(self._observer.running(self._deployment))))
            self._stop.wait(self._every)

    def now(self) -> int:
        """The latest count (-1 before the first sample)."""
        return self.samples[-1][1] if self.samples else -1

    def stop(self) -> list[tuple[float, int]]:
        """Stop sampling; every sample."""
        self._stop.set()
        self._thread.join(timeout=30)
        return self.samples


@dataclass
class Autoscale:
    """A deployment under a bounded load: its replica count over time and the load's latency and throughput."""

    deployment: str
    peak: int
    clients: int
    samples: list[tuple[float, int]]
    windows: list[Window]
    started: float  # the load began
    at_peak: float | None  # the first sample with ``peak`` replicas running
    stopped: float  # the load ended
    back_down: float | None  # the first sample back at one replica after the load

    def counts(self) -> list[tuple[float, int]]:
        """(seconds since the load began, replicas) whenever the count changed."""
        out: list[tuple[float, int]] = []
        for t, n in self.samples:
            if not out or out[-1][1] != n:
                out.append((round(t - self.started, 1), n))
        return out


def autoscale(
    h: Harness,
    model: str,
    body: bytes,
    peak: int = SCALER_MAX,
    clients: int = 6,
    quiet_s: float = 6.0,
    hold_s: float = 8.0,
    timeout: float = 120.0,
) -> Autoscale:
    """One client alone (1 replica), ``clients`` at once until ``peak`` replicas run plus ``hold_s``, nothing until
    it is back at one replica, then one client alone again; bounded by ``timeout`` per stretch."""
    deployment = f"{model}-v1"
    sampler = ReplicaSampler(h.observer, deployment)
    try:
        wait_for(f"{deployment} at one replica", lambda: sampler.now() == 1, timeout)
        first = time.monotonic()
        alone = Load(h.server.base, model, body, 1)
        time.sleep(quiet_s)
        calls = alone.stop()
        started = time.monotonic()
        load = Load(h.server.base, model, body, clients)
        try:
            wait_for(f"{deployment} at {peak} replicas", lambda: sampler.now() >= peak, timeout)
            at_peak = next(t for t, n in sampler.samples if n >= peak)
            time.sleep(hold_s)
        finally:
            stopped = time.monotonic()
            calls += load.stop()
        wait_for(f"{deployment} back at one replica", lambda: sampler.now() == 1, timeout)
        back_down = next(t for t, n in sampler.samples if t > stopped and n == 1)
        again = time.monotonic()
        alone = Load(h.server.base, model, body, 1)
        time.sleep(quiet_s)
        calls += alone.stop()
        done = time.monotonic()
    finally:
        samples = sampler.stop()
    windows = [
        window("one client, before the load", 1, "1", calls, first, started),
        window(f"{clients} clients, scaling up", clients, f"1 → {peak}", calls, started, at_peak),
        window(f"{clients} clients, scaled up", clients, str(peak), calls, at_peak, stopped),
        window("one client, after the scale-down", 1, "1", calls, again, done),
    ]
    return Autoscale(deployment, peak, clients, samples, windows, started, at_peak, stopped, back_down)


# ---------------------------------------------------------------------------------------------- the benchmark run


def _wav(seconds: float) -> bytes:
    """A 16 kHz mono sine of ``seconds`` (the fixtures sleep per second of audio)."""
    from tests.audio_factory import encode, sine

    return encode(sine(440.0, -20.0, seconds, 16000, 1), 16000, "wav")


def _machine() -> str:
    """CPU count, memory and Python of this machine."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.node() or 'vm'}: {os.cpu_count()} cores, {memory:.0f} GiB RAM, Python {platform.python_version()}"
    )


def _load() -> str:
    """The 1-minute load average."""
    return f"{os.getloadavg()[0]:.1f}"


def _autoscale_md(run: Autoscale) -> list[str]:
    """The autoscaling section."""
    lines = [
        f"## Autoscaling: `{run.deployment}` from 1 to {run.peak} replicas and back",
        "",
        "`scaler` (WhereAnalyzer sleeping 1 s per call, one call at a time per replica): `autoscaling: "
        f"{{min_replicas: 1, max_replicas: {run.peak}, target_ongoing_requests: 2}}`, `max_ongoing_requests: 2`; "
        "Serve's autoscaler as `serve_app/registry/deployment.py` sets it (metrics every 0.5 s, 5 s look-back, no "
        "upscale delay, downscale delay = MIRSTREAM_IDLE_SECONDS, 5 s here). Load: one client alone, then "
        f"{run.clients} clients back to back through the head's proxy until {run.peak} replicas run plus a hold, "
        "then nothing until it is back at one replica, then one client alone again.",
        "",
        "Replica count (RUNNING replicas, sampled every 0.5 s from the Serve controller), seconds since the load "
        "began:",
        "",
        "| t (s) | replicas |",
        "|---|---|",
    ]
    lines += [f"| {t:+.1f} | {n} |" for t, n in run.counts()]
    assert run.at_peak is not None and run.back_down is not None
    lines += [
        "",
        f"- {run.peak} replicas running {run.at_peak - run.started:.1f} s after the load began; the load stopped at "
        f"{run.stopped - run.started:.1f} s; back at one replica {run.back_down - run.stopped:.1f} s after it stopped.",
        "",
        "| stretch | clients | replicas | seconds | calls | failed | completed/s | p50 latency (s) | p95 latency (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {w.name} | {w.clients} | {w.replicas} | {w.seconds} | {w.calls} | {w.failed} | {w.per_second} | "
        f"{w.p50_s} | {w.p95_s} |"
        for w in run.windows
    ]
    return lines


def _loss_md(runs: list[tuple[str, NodeLoss]]) -> list[str]:
    """The node-loss section: one timeline column per run, then what each run's clients saw."""
    lines = [
        "## A node lost while streams are open",
        "",
        "Each run on a fresh cluster: killed the CPU node running `where_cpu`'s replica (and one of the two ingress "
        "replicas, and its Serve proxy) 0.5 s after three streams of `where_cpu,where_gpu` (20 s of audio: where_cpu "
        "runs 10 s, where_gpu 2 s) had started: two through the other CPU node's proxy, one through the doomed node's "
        "own. Failure detection: *fast* = GCS health checks every "
        f"{FAST_FAILURE_DETECTION['health_check_period_ms']} ms, node dead after "
        f"{FAST_FAILURE_DETECTION['health_check_failure_threshold']} misses (the test cluster's setting); *Ray "
        "default* = no `--system-config`. /healthz and /livez polled through the head's proxy every 0.25 s (30 s "
        "client timeout).",
        "",
        "| seconds after the kill | " + " | ".join(label for label, _ in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    keys = list(dict.fromkeys(k for _, loss in runs for k in loss.timeline()))
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(_cell(loss.timeline().get(key)) for _, loss in runs) + " |")
    lines += [
        "| /livez answers after the kill | "
        + " | ".join(_tally(loss.livez, loss.killed_at) for _, loss in runs)
        + " |",
        "| /healthz answers after the kill | "
        + " | ".join(_tally(loss.health, loss.killed_at) for _, loss in runs)
        + " |",
        "",
    ]
    for label, loss in runs:
        nxt = loss.next_request
        lines += [
            f"{label}: lost `{loss.victim}`, survivor `{loss.survivor}`.",
            "- Streams through the survivor's proxy: " + "; ".join(_events(s, loss.killed_at) for s in loss.streams),
            f"- Through the lost node's proxy: {_events(loss.through_victim, loss.killed_at)}, then "
            f"`{loss.through_victim.cut}`.",
            f"- Next request: {_events(nxt, loss.killed_at)}. Replicas after: {json.dumps(loss.after)}.",
            f"- Last /healthz that was not 200: {_unready(loss)}.",
            f"- /healthz answers in the order they came (status x count @ first one's time): {_runs(loss)}.",
            "",
        ]
    return lines


def _cell(value: float | None) -> str:
    """A table cell for a time (n/a when it never happened)."""
    return "n/a" if value is None else f"{value:.2f}"


def _events(stream: Stream, zero: float) -> str:
    """``status[model] @ t`` for each event of a stream, t in seconds after ``zero``; a completed fixture model's
    event also says when its ``analyze`` ran (the fixture reports it on the same monotonic clock)."""
    parts = []
    for t, e in stream.events:
        model = e.get("model_name") or e.get("result", {}).get("model_name")
        ran = e.get("result", {}).get("results", {}).get("ran")
        during = f" (ran {ran[0] - zero:+.2f}..{ran[1] - zero:+.2f})" if ran else ""
        parts.append(f"{e['status']}{f'[{model}]' if model else ''} @ {t - zero:+.2f}{during}")
    return ", ".join(parts) or "no event"


def _unready(loss: NodeLoss) -> str:
    """When the last non-200 /healthz came and which deployments it named as not ready."""
    probe = loss.last_unready()
    if probe is None:
        return "none"
    states = {d: st for d, st in (probe.states or {}).items() if st not in ("HEALTHY", "UPSCALING", "DOWNSCALING")}
    return f"{probe.status} @ {probe.answered - loss.killed_at:+.2f}, not ready: {json.dumps(states)}"


def _runs(loss: NodeLoss) -> str:
    """The /healthz answers as runs of one status, each with when its first answer came (s after the kill)."""
    runs: list[tuple[str, int, float]] = []
    for p in loss.health:
        if runs and runs[-1][0] == str(p.status):
            runs[-1] = (runs[-1][0], runs[-1][1] + 1, runs[-1][2])
        else:
            runs.append((str(p.status), 1, p.answered - loss.killed_at))
    return ", ".join(f"{status} x {n} @ {t:+.2f}" for status, n, t in runs)


def _tally(probes: list[Probe], since: float) -> str:
    """How many probes after ``since`` got each answer."""
    counts: dict[str, int] = {}
    for p in probes:
        if p.t >= since:
            counts[str(p.status)] = counts.get(str(p.status), 0) + 1
    return ", ".join(f"{n} x {status}" for status, n in sorted(counts.items()))


def main() -> None:
    """Autoscaling, then node losses (fast failure detection and Ray's defaults, ``--repeats`` each, every loss on
    a fresh cluster); writes RESULTS."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=6, help="concurrent clients of the load (default 6)")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds of load at the peak (default 10)")
    parser.add_argument("--quiet", type=float, default=6.0, help="seconds of one client alone (default 6)")
    parser.add_argument("--repeats", type=int, default=2, help="node losses per failure detection (default 2)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mirstream-autoscaling"))
    args = parser.parse_args()
    import tempfile

    args.workdir.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = tempfile.mkdtemp(prefix="run-", dir=args.workdir)  # Ray's session files go here
    load_before = _load()
    with mirstream_on_cluster(args.workdir / "fast-1") as h:
        run = autoscale(h, "scaler", _wav(2.0), clients=args.clients, quiet_s=args.quiet, hold_s=args.hold)
        losses = [("fast #1", lose_a_node(h, _wav(20.0), _wav(1.0)))]
    for i in range(2, args.repeats + 1):
        with mirstream_on_cluster(args.workdir / f"fast-{i}") as h:
            losses.append((f"fast #{i}", lose_a_node(h, _wav(20.0), _wav(1.0))))
    for i in range(1, args.repeats + 1):
        with mirstream_on_cluster(args.workdir / f"default-{i}", system_config={}) as h:
            losses.append((f"Ray default #{i}", lose_a_node(h, _wav(20.0), _wav(1.0))))
    lines = [
        "# mirstream on a multi-node Ray cluster: autoscaling and node loss (benchmarks/autoscaling.py)",
        "",
        f"Machine: {_machine()}. Load average {load_before} before, {_load()} after (one shared VM: the nodes, the "
        "server and the clients all compete for its cores, so latencies are a loaded-machine floor).",
        "",
        "    .venv/bin/python -m benchmarks.autoscaling",
        "",
        "Cluster, all on this machine: a head from `ray start --head` (0 CPUs: GCS, Serve controller, a proxy) and "
        "worker nodes from `ray start --address`, each its own process tree: "
        + ", ".join(f"`{n}` (CPUs {c}, GPUs {g}, Ray memory {m} MB)" for n, c, g, m in NODES)
        + ". The GPU is fake (Ray's `--num-gpus`). `mirstream serve --address` deploys the app (two ingress "
        "replicas, `where_cpu`, `where_gpu`, `scaler`: `tests.fixture_models.WhereAnalyzer`, which sleeps per second "
        "of audio and reports its node). A node is lost by SIGKILL to every process of it at once. "
        "tests/test_multinode.py asserts the same scenarios.",
        "",
        *_autoscale_md(run),
        "",
        *_loss_md(losses),
    ]
    RESULTS.write_text("\n".join(lines))
    print(RESULTS.read_text())


if __name__ == "__main__":
    if sys.argv[1:2] == ["--observe"]:
        _observe(sys.argv[2])
    else:
        main()
