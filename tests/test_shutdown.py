"""`mirstream serve` (Ray) stopping and failing to start a model, on a server of its own.

SIGTERM drains: new streams get 503, open ones finish within MIRSTREAM_SHUTDOWN_GRACE_SECONDS or end cleanly
(an error event for each unfinished model, then ``finished``), and then no process of the server is left. A cold
model whose constructor fails gives its error event instead of hanging the stream, and /healthz says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import free_port, marked_pids, registry_data, wait_healthy
from tests.sse import Stream, post

pytestmark = pytest.mark.server
GRACE_S = 4


def _registry(tmp_path: Path) -> Path:
    """key (warm), slow (2 s), slowest (30 s) and broken (cold; its constructor raises)."""
    data = registry_data()
    by_name = {m["name"]: m for m in data["models"] if m.get("default")}
    slow = {**by_name["slow"], "params": {"seconds": 2.0}}
    slowest = {**slow, "name": "slowest", "params": {"seconds": 30.0}, "timeout_s": 120}
    broken = {**by_name["cold"], "name": "broken", "params": {"load_seconds": 0.0, "broken": True}}
    models = [by_name["key"], slow, slowest, broken]
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump({"ingress": data.get("ingress", {}) or {}, "models": models}))
    return path


def test_drain_on_sigterm_and_a_model_that_cannot_start(tmp_path: Path, audio: dict[str, bytes]) -> None:
    """One server: the broken cold model's error event and /healthz 503; then SIGTERM with two streams open."""
    port = free_port()
    marker = f"MIRSTREAM_SHUTDOWN_TEST={uuid.uuid4().hex}"
    env = {**os.environ, "PORT": str(port), "MIRSTREAM_REGISTRY": str(_registry(tmp_path))}
    env.update(MIRSTREAM_SHUTDOWN_GRACE_SECONDS=str(GRACE_S), MIRSTREAM_RAY_NUM_CPUS="2")
    env.update(MIRSTREAM_KEEPALIVE_SECONDS="0.5", **dict([marker.split("=", 1)]))
    env.pop("RAY_ADDRESS", None)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "serve_app.cli", "serve"], env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    body = audio["cadence.wav"]
    try:
        wait_healthy(base, timeout=240)  # the broken model is cold: it counts as ready until someone needs it

        broken = post(base, "broken,key", body, timeout=120)
        assert broken.statuses() == ["started", "completed", "error", "finished"], broken.events
        error = broken.by_model()["broken"]["error"]
        assert "broken:1 could not start" in error and "cannot load on purpose" in error, error
        health = httpx.get(f"{base}/healthz", timeout=10)
        assert health.status_code == 503 and health.json()["deployments"]["broken-v1"] == "UNHEALTHY"

        streams: dict[str, Stream] = {}
        threads = [
            threading.Thread(target=lambda: streams.update(short=post(base, "slow", body))),
            threading.Thread(target=lambda: streams.update(long=post(base, "slowest,key", body))),
        ]
        for t in threads:
            t.start()
        time.sleep(1.0)  # both streams are open and their models running (slow takes 2 s, slowest 30 s)
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        refused = _first_refusal(base, body)
        for t in threads:
            t.join(timeout=60)
        assert proc.wait(timeout=90) == 0, log.read_text()[-3000:]
        took = time.monotonic() - stopped_at
    finally:
        if proc.poll() is None:
            proc.kill()
    assert refused is None or (refused.status_code == 503 and "shutting down" in refused.text), refused
    short, long = streams["short"], streams["long"]
    assert short.statuses() == ["started", "completed", "finished"], short.events  # finished within the grace
    assert long.statuses() == ["started", "completed", "error", "finished"], long.events  # ended cleanly
    assert "shutting down" in long.by_model()["slowest"]["error"]
    assert long.by_model()["key"]["status"] == "completed"
    print(f"exit {took:.1f} s after SIGTERM (grace {GRACE_S} s)")
    deadline = time.monotonic() + 30
    while marked_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert marked_pids(marker) == [], "processes of the stopped server are still running"


def _first_refusal(base: str, body: bytes) -> Any:
    """A request sent while the server drains: 503 (or the port already closed, None)."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            r = httpx.post(f"{base}/v1/analysis/stream", params={"models": "key"}, content=body, timeout=10)
        except httpx.HTTPError:
            return None
        if r.status_code == 503:
            return r
        time.sleep(0.1)
    return None
