"""The ``mirstream`` command as users run it: analyze (in-process and against a server), models, serve."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from serve_app.config import DEFAULT_REGISTRY
from serve_app.registry import load_registry
from tests.conftest import free_port, registry_data, wait_healthy
from tests.sse import parse

MIRSTREAM = [sys.executable, "-m", "serve_app.cli"]


def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run the CLI with the test environment plus ``env``."""
    return subprocess.run(
        MIRSTREAM + args, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )


def _write(tmp_path: Path, audio: dict[str, bytes], name: str) -> Path:
    """Put one test file on disk for the CLI (the CLI reads files; the server never writes any)."""
    path = tmp_path / name.replace("garbage", "garbage.mp3")
    path.write_bytes(audio[name])
    return path


def test_analyze_in_process_json(tmp_path: Path, audio: dict[str, bytes]) -> None:
    """Without MIRSTREAM_URL the CLI runs the shared stream in-process; --json prints one event per line."""
    path = _write(tmp_path, audio, "click.mp3")
    env = {"MIRSTREAM_URL": ""}
    done = _run(["analyze", str(path), "--models", "bpm_degara,loudness-ebur128", "--json"], env)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["status"] for e in events][0] == "started" and events[-1]["status"] == "finished"
    bpm = next(e for e in events if e.get("result", {}).get("model_name") == "bpm_degara")
    assert abs(bpm["result"]["results"]["bpm"] - 120) < 1


def test_analyze_exit_code_when_a_model_fails(tmp_path: Path, audio: dict[str, bytes]) -> None:
    """A failed model makes the exit code 1 and prints the server's message."""
    registry = tmp_path / "registry.yaml"
    registry.write_text(yaml.safe_dump(registry_data()))
    path = _write(tmp_path, audio, "cadence.flac")
    done = _run(
        ["analyze", str(path), "--models", "key,fail"], {"MIRSTREAM_URL": "", "MIRSTREAM_REGISTRY": str(registry)}
    )
    assert done.returncode == 1
    assert "key:1" in done.stdout and "fail:1  ERROR fixture model failed on purpose" in done.stdout


def test_analyze_bad_input_and_unknown_model(tmp_path: Path, audio: dict[str, bytes]) -> None:
    """Undecodable audio exits 1 with the decode reason; an unknown model is refused before any work."""
    path = _write(tmp_path, audio, "garbage")
    done = _run(["analyze", str(path), "--models", "key"], {"MIRSTREAM_URL": ""})
    assert done.returncode == 1 and "Failed to download or decode audio" in done.stdout
    unknown = _run(["analyze", str(path), "--models", "nope"], {"MIRSTREAM_URL": ""})
    assert unknown.returncode != 0 and "unknown model 'nope'" in unknown.stderr


def test_analyze_against_a_server(tmp_path: Path, audio: dict[str, bytes], ray_server: str) -> None:
    """With MIRSTREAM_URL the CLI streams from the server."""
    path = _write(tmp_path, audio, "sine_stereo.wav")
    done = _run(["analyze", str(path), "--models", "loudness-ebur128"], {"MIRSTREAM_URL": ray_server})
    assert done.returncode == 0, done.stderr
    assert '"integrated_loudness": -22.99' in done.stdout


def test_models_table() -> None:
    """``mirstream models`` prints the catalogue."""
    done = _run(["models"], {"MIRSTREAM_URL": ""})
    assert done.returncode == 0
    for key in ("key:1", "bpm_degara:1", "loudness-ebur128:1"):
        assert key in done.stdout


def test_serve_with_ray_end_to_end(audio: dict[str, bytes]) -> None:
    """The README run path: `mirstream serve` honours PORT, streams a real mp3, and stops cleanly on SIGINT."""
    port = free_port()
    proc = subprocess.Popen(
        MIRSTREAM + ["serve"],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, timeout=180)
        r = httpx.post(
            f"{base}/v1/analysis/stream",
            params={"models": "key:1,bpm_degara,loudness-ebur128"},
            content=audio["click.mp3"],
            headers={"filename": "track.mp3"},
            timeout=120,
        )
        events, _ = parse(r.text)
        assert [e["status"] for e in events] == ["started", "completed", "completed", "completed", "finished"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out[-3000:]
    served = len(load_registry(DEFAULT_REGISTRY).entries)  # the whole default catalogue
    assert f"serving {served} models on http://127.0.0.1:{port}" in out


def test_serve_fails_fast_when_cpus_are_short() -> None:
    """Too few CPUs for the catalogue: exit 1 with a message naming the deployments (the timeout guards a hang)."""
    done = _run(["serve", "--port", str(free_port())], {"MIRSTREAM_RAY_NUM_CPUS": "1"}, timeout=120)
    assert done.returncode == 1
    line = next(ln for ln in done.stderr.splitlines() if "cannot start" in ln)
    assert "the cluster has 1 /" in line and "key-v1" in line and "ingress" in line, line


def test_serve_fails_with_the_model_error_when_a_model_cannot_load(tmp_path: Path) -> None:
    """A model whose constructor raises: exit 1 naming the deployment and Essentia's reason."""
    broken = tmp_path / "broken.yaml"
    data = registry_data()
    data["models"] = data["models"][:3]
    data["models"][0]["params"]["profile"] = "no-such-profile"
    broken.write_text(yaml.safe_dump(data))
    done = _run(["serve", "--port", str(free_port()), "--registry", str(broken)], timeout=240)
    assert done.returncode == 1
    line = next(ln for ln in done.stderr.splitlines() if "cannot start" in ln)
    assert "key-v1: DEPLOY_FAILED" in line and "no-such-profile" in line, line
