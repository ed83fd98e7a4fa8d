"""Shared fixtures: known-answer audio, the test registry, and the two real servers (in-process and Ray Serve).

Both servers run for the whole session on loopback; contract tests are parametrised over them so
the two modes are held to the same behaviour.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
# Ray workers are started by the raylet that this process spawns, so they inherit this environment:
# that is how replicas find the test-only analyzers in tests/fixture_models.py.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# A private temp dir for the whole run (servers, Ray and pool workers inherit it), so the privacy test
# can prove that no request leaves a file behind.
SESSION_TMP = Path(tempfile.mkdtemp(prefix="mirstream-tests-"))
os.environ["TMPDIR"] = str(SESSION_TMP)
tempfile.tempdir = None

from serve_app.config import Settings  # noqa: E402
from serve_app.registry import Registry, parse_registry  # noqa: E402
from tests.audio_factory import FORMATS, c_major_cadence, click_track, encode, sine  # noqa: E402

MAX_UPLOAD = 8 * 2**20
MAX_SECONDS = 60.0
MAX_MODELS = 5
MAX_STREAMS = 3
IDLE_SECONDS = 4.0  # cold fixture models go back to zero this long after their last request


def free_port() -> int:
    """An unused loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_settings(port: int, models_dir: Path | None = None) -> Settings:
    """Small limits and a short keep-alive so the limit and keep-alive paths are cheap to reach.

    Downloaded weights are looked up in ``models_dir`` (default: an empty dir of this run, so the developer's
    own ~/.cache/mirstream/models never changes what the tests see).
    """
    return Settings(
        host="127.0.0.1",
        port=port,
        max_upload_bytes=MAX_UPLOAD,
        max_audio_seconds=MAX_SECONDS,
        keepalive_seconds=0.5,
        allow_private_urls=True,
        startup_timeout_s=240,
        ray_num_cpus=2,
        object_store_mb=256,
        url_total_timeout_s=3.0,
        max_models_per_request=MAX_MODELS,
        max_concurrent_streams=MAX_STREAMS,
        models_dir=models_dir or SESSION_TMP / "models",
        idle_seconds=IDLE_SECONDS,
    )


SERVED_IN_TESTS = ("key", "bpm_degara", "loudness-ebur128")


def registry_data() -> dict:
    """The contract's three models from the real model_registry.yaml, plus the test-only fixture models.

    The test servers run this subset, not the whole catalogue: every deployment is a process that
    imports Essentia (about 300 MB and 2 s of CPU each). The full default registry is validated by
    test_registry, started whole by test_cli's `mirstream serve` test, and its analyzers are unit-tested.
    """
    data = yaml.safe_load((REPO / "model_registry.yaml").read_text())
    data["models"] = [m for m in data["models"] if m["name"] in SERVED_IN_TESTS]
    data["models"] += yaml.safe_load((REPO / "tests" / "fixture_registry.yaml").read_text())["models"]
    return data


@pytest.fixture(scope="session")
def registry() -> Registry:
    """Real catalogue + fixture models."""
    return parse_registry(registry_data(), "test registry")


@pytest.fixture(scope="session")
def audio() -> dict[str, bytes]:
    """Encoded known-answer files, made once per session in memory."""
    files = {
        "click.mp3": encode(click_track(120.0, 20.0), 44100, "mp3"),
        "sine_stereo.wav": encode(sine(1000.0, -23.0, 20.0, 48000, 2), 48000, "wav"),
        "sine_mono.flac": encode(sine(1000.0, -23.0, 20.0, 48000, 1), 48000, "flac"),
        "too_long.flac": encode(np.zeros(int(44100 * (MAX_SECONDS + 10)), np.float32), 44100, "flac"),
    }
    cadence = c_major_cadence(seconds_per_chord=1.5, repeats=2)
    for fmt in FORMATS:
        files[f"cadence.{fmt}"] = encode(cadence, 44100, fmt)
    files["truncated.mp3"] = files["click.mp3"][: len(files["click.mp3"]) // 3]
    files["garbage"] = bytes(np.random.default_rng(7).integers(0, 256, 50_000, dtype=np.uint8))
    return files


def wait_healthy(base: str, timeout: float = 240.0) -> None:
    """Poll /healthz until 200 (every model loaded) or fail the session."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{base}/healthz", timeout=5)
            if r.status_code == 200:
                return
            last = r.text
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.3)
    raise RuntimeError(f"server at {base} not healthy after {timeout} s: {last}")


@contextlib.contextmanager
def running_local_server(registry: Registry, settings: Settings) -> Iterator[str]:
    """The in-process mode (process pools, no Ray) served by uvicorn on loopback, until the block ends."""
    import uvicorn

    from serve_app.runners.in_process import create_local_app

    app, _runner = create_local_app(registry, settings)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://{settings.host}:{settings.port}"
    try:
        wait_healthy(base)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="session")
def local_server(registry: Registry) -> Iterator[str]:
    """The in-process server for the whole session."""
    with running_local_server(registry, make_settings(free_port())) as base:
        yield base


@pytest.fixture(scope="session")
def ray_server(registry: Registry) -> Iterator[str]:
    """The real Ray Serve app on a local Ray instance (one per test session)."""
    from serve_app.ops import launcher

    settings = launcher.start_ray(make_settings(free_port()))
    try:
        launcher.deploy(registry, settings)
        base = f"http://{settings.host}:{settings.port}"
        wait_healthy(base)
        yield base
    finally:
        launcher.shutdown(settings)


@pytest.fixture(scope="session")
def cdn(audio: dict[str, bytes]) -> Iterator[str]:
    """A tiny loopback 'CDN': /click.mp3, /hop/N redirects, /loop, /huge, /drip, /page.html, /missing (404)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path == "/click.mp3":
                self._send(200, audio["click.mp3"])
            elif self.path.startswith("/hop/"):
                n = int(self.path.rsplit("/", 1)[1])
                self.send_response(302)
                self.send_header("Location", "/click.mp3" if n == 0 else f"/hop/{n - 1}")
                self.end_headers()
            elif self.path == "/loop":
                self.send_response(301)
                self.send_header("Location", "/loop")
                self.end_headers()
            elif self.path == "/huge":
                self._send(200, b"\0" * (MAX_UPLOAD + 10))
            elif self.path == "/drip":  # one byte every 0.2 s, never finishing within the 3 s total timeout
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                for _ in range(100):
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                    time.sleep(0.2)
            elif self.path == "/page.html":
                self._send(200, b"<html>not audio</html>", "text/html; charset=utf-8")
            elif self.path == "/host":
                self._send(200, audio["click.mp3"], headers={"X-Seen-Host": self.headers.get("Host", "")})
            else:
                self._send(404, b"not here")

        def _send(
            self, status: int, body: bytes, kind: str = "audio/mpeg", headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

    class QuietServer(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # clients hanging up on /huge and /drip is the point of those routes

    httpd = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(params=["local", "ray"])
def server(request: pytest.FixtureRequest) -> str:
    """Base URL of each mode in turn."""
    return request.getfixturevalue(f"{request.param}_server")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the run's private temp dir (Ray's session logs live there too)."""
    shutil.rmtree(SESSION_TMP, ignore_errors=True)


def catalogue_entry(spec: str) -> object:
    """A real model_registry.yaml entry (``name`` or ``name:version``) with its packaged weights resolved, as a
    server would deploy it; for tests that go through AnalyzerHost (where inputs and weights are checked)."""
    from serve_app.config import DEFAULT_REGISTRY
    from serve_app.registry import load_registry
    from serve_app.registry.availability import resolve_availability

    registry = resolve_availability(load_registry(DEFAULT_REGISTRY), make_settings(0))
    name, _, version = spec.partition(":")
    entry = registry.find(name, version or None)
    assert entry is not None and entry in registry.entries, f"{spec} is not served: {registry.why_withheld(entry)}"
    return entry


SERVER_FIXTURES = frozenset(
    {"server", "local_server", "ray_server", "ray_address", "serve_instance", "musicnn_server", "web_server", "cdn"}
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tiers: a test that starts a real server (or uses one) is marked ``server``; browser and multi-node tests
    carry ``browser`` / ``cluster`` themselves. ``pytest -m "not server and not cluster and not browser"`` is the
    fast unit tier."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)


def marked_pids(marker: str) -> list[int]:
    """PIDs of live processes whose environment carries ``marker`` (a server started by a test, Ray's daemons and
    workers inherit it): how tests prove that stopping a server leaves no process behind."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker.encode() in (proc / "environ").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids
