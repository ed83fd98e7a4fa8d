"""The ``mirstream`` command as users run it: analyze (in-process and against a server), models, serve."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from serve_app.config import DEFAULT_REGISTRY, Settings
from serve_app.registry import load_registry
from serve_app.registry.availability import resolve_availability
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


@pytest.mark.server
def test_analyze_in_process_jsonl_streams_events(tmp_path: Path, audio: dict[str, bytes]) -> None:
    """Without a server the CLI runs the shared stream in-process; --jsonl prints each event as it comes."""
    path = _write(tmp_path, audio, "click.mp3")
    done = _run(["analyze", str(path), "--models", "bpm_degara,loudness-ebur128", "--jsonl"], {"MIRSTREAM_URL": ""})
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["status"] for e in events][0] == "started" and events[-1]["status"] == "finished"
    assert {e["source"] for e in events} == {str(path)}
    bpm = next(e for e in events if e.get("result", {}).get("model_name") == "bpm_degara")
    assert abs(bpm["result"]["results"]["bpm"] - 120) < 1


@pytest.mark.server
def test_analyze_files_and_globs_json_documents(tmp_path: Path, audio: dict[str, bytes]) -> None:
    """Several files and a glob: one JSON document per file (each on its own line), in the order given."""
    (tmp_path / "set").mkdir()
    a = _write(tmp_path / "set", audio, "cadence.mp3")
    b = _write(tmp_path / "set", audio, "cadence.flac")
    c = _write(tmp_path, audio, "click.mp3")
    done = _run(
        ["analyze", str(c), str(tmp_path / "set" / "*"), str(c), "--models", "key,bpm_degara", "--json"],
        {"MIRSTREAM_URL": ""},
    )
    assert done.returncode == 0, done.stderr
    docs = [json.loads(line) for line in done.stdout.splitlines()]
    assert [d["source"] for d in docs] == [str(c), str(b), str(a)]  # glob sorted, repeats analysed once
    for doc in docs:
        assert doc["ok"] and doc["error"] is None and doc["total_models"] == 2
        assert [m["model"] for m in doc["models"]] == ["key:1", "bpm_degara:1"]
        assert all(m["status"] == "completed" and m["elapsed_s"] > 0 for m in doc["models"])
    assert docs[1]["models"][0]["results"]["key"] == "C"
    assert abs(docs[0]["models"][1]["results"]["bpm"] - 120) < 1


@pytest.mark.server
def test_analyze_exit_code_when_a_model_fails(tmp_path: Path, audio: dict[str, bytes]) -> None:
    """A failed model makes the exit code 1; the plain report shows the server's message on its line."""
    registry = tmp_path / "registry.yaml"
    registry.write_text(yaml.safe_dump(registry_data()))
    path = _write(tmp_path, audio, "cadence.flac")
    done = _run(
        ["analyze", str(path), "--models", "key,fail"], {"MIRSTREAM_URL": "", "MIRSTREAM_REGISTRY": str(registry)}
    )
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0] == str(path)
    key = next(ln for ln in lines if "key:1" in ln)
    assert key.lstrip().startswith("✓") and "key=C" in key and "scale=major" in key and " s " in key
    fail = next(ln for ln in lines if "fail:1" in ln)
    assert fail.lstrip().startswith("✗") and fail.endswith("fixture model failed on purpose")


@pytest.mark.server
def test_analyze_bad_input_missing_file_and_unknown_model(tmp_path: Path, audio: dict[str, bytes]) -> None:
    """Undecodable audio and a missing file exit 1 while the other files are still analysed; an unknown
    model is refused before any work."""
    garbage = _write(tmp_path, audio, "garbage")
    good = _write(tmp_path, audio, "click.mp3")
    done = _run(
        ["analyze", str(garbage), str(tmp_path / "absent.mp3"), str(good), "--models", "bpm_degara", "--json"],
        {"MIRSTREAM_URL": ""},
    )
    assert done.returncode == 1
    docs = {d["source"]: d for d in map(json.loads, done.stdout.splitlines())}
    assert docs[str(garbage)]["error"].startswith("Failed to download or decode audio") and not docs[str(garbage)]["ok"]
    assert docs[str(good)]["ok"]
    assert f"{tmp_path / 'absent.mp3'}: no such file" in done.stderr
    unknown = _run(["analyze", str(good), "--models", "nope"], {"MIRSTREAM_URL": ""})
    assert unknown.returncode == 1 and "unknown model 'nope'" in unknown.stderr


def test_analyze_against_a_server(tmp_path: Path, audio: dict[str, bytes], local_server: str, cdn: str) -> None:
    """With --url (or MIRSTREAM_URL) the CLI streams from the server via the Python client: files and URLs."""
    path = _write(tmp_path, audio, "sine_stereo.wav")
    done = _run(
        ["analyze", str(path), f"{cdn}/click.mp3", "--models", "loudness_ebur128,bpm_degara", "--url", local_server],
        {"MIRSTREAM_URL": ""},
    )
    assert done.returncode == 0, done.stderr
    assert "integrated_loudness=-22.99" in done.stdout and "loudness-ebur128:1" in done.stdout
    assert f"{cdn}/click.mp3" in done.stdout and "bpm=120" in done.stdout
    jsonl = _run(["analyze", str(path), "--models", "fail", "--jsonl"], {"MIRSTREAM_URL": local_server})
    assert jsonl.returncode == 1
    assert [json.loads(line)["status"] for line in jsonl.stdout.splitlines()] == ["started", "error", "finished"]
    other = _write(tmp_path, audio, "click.mp3")
    refused = _run(["analyze", str(path), str(other), "--models", "key:7"], {"MIRSTREAM_URL": local_server})
    assert refused.returncode == 1 and "HTTP 404: model key has no version '7'" in refused.stdout
    assert "stopped; 1 more file(s) not analysed" in refused.stderr


def test_progress_view_renders_each_model_state() -> None:
    """The live view (drawn on stderr in a terminal): spinner while running, time when done, error in red."""
    from rich.console import Console

    from serve_app.cli.analyze import _FileRun
    from serve_app.client import Completed, ModelError, Started

    run = _FileRun("song.mp3", ["key:1", "fail:1", "bpm_degara:1"])

    def draw() -> str:
        out = io.StringIO()
        Console(file=out, width=120, force_terminal=True, color_system="standard").print(run)
        return out.getvalue()

    assert "queued" in draw()
    run.add(Started(total_models=3))
    run.add(Completed("key", "1", "c", {"key": "A", "scale": "minor", "strength": 0.9, "profile": "x"}))
    run.add(ModelError("boom", "fail", "1", "c"))
    ansi = draw()
    text = re.sub(r"\x1b\[[0-9;]*m", "", ansi)
    assert "✓ key:1" in text and "key=A  scale=minor" in text and "✗ fail:1" in text and "boom" in text
    assert "bpm_degara:1" in text and "running" in text
    assert "\x1b[31mboom" in ansi  # the error in red
    assert run.failed and run.document()["models"][1] == {
        "model": "fail:1",
        "status": "error",
        "elapsed_s": run.document()["models"][1]["elapsed_s"],
        "model_name": "fail",
        "model_version": "1",
        "correlation_id": "c",
        "error": "boom",
    }


@pytest.mark.server
def test_models_table_and_json() -> None:
    """``mirstream models`` prints the catalogue as a table; --json keeps the machine-readable listing."""
    done = _run(["models"], {"MIRSTREAM_URL": ""})
    assert done.returncode == 0
    header = next(ln for ln in done.stdout.splitlines() if "model" in ln and "licence" in ln)
    for column in ("default", "available", "runtime / input", "description"):
        assert column in header
    for key in ("key:1", "bpm_degara:1", "loudness-ebur128:1"):
        row = next(ln for ln in done.stdout.splitlines() if f" {key} " in ln)
        assert "AGPL-3.0" in row
    listing = json.loads(_run(["models", "--json"], {"MIRSTREAM_URL": ""}).stdout)
    assert {"key", "bpm_degara", "loudness-ebur128"} <= {m["name"] for m in listing}


def test_models_from_a_server(local_server: str) -> None:
    """With MIRSTREAM_URL the table comes from GET /v1/models of that server."""
    done = _run(["models"], {"MIRSTREAM_URL": local_server})
    assert done.returncode == 0 and " slow:2 " in done.stdout and " fail:1 " in done.stdout


@pytest.mark.server
def test_serve_with_ray_end_to_end(audio: dict[str, bytes], tmp_path: Path) -> None:
    """The README run path: `mirstream serve` honours PORT, streams a real mp3, and stops cleanly on SIGINT.

    It serves every default-catalogue model whose weights ship with mirstream (an empty models dir, as on a
    fresh install: the hosted-API models are listed but not deployed).
    """
    port = free_port()
    proc = subprocess.Popen(
        MIRSTREAM + ["serve"],
        env={**os.environ, "PORT": str(port), "MIRSTREAM_MODELS_DIR": str(tmp_path)},
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
    served = len(resolve_availability(load_registry(DEFAULT_REGISTRY), Settings(models_dir=tmp_path)).entries)
    assert f"serving {served} models on http://127.0.0.1:{port}" in out


@pytest.mark.server
def test_serve_fails_fast_when_cpus_are_short() -> None:
    """Too few CPUs for the warm set: exit 1 with a message naming the deployments (the timeout guards a hang)."""
    env = {"MIRSTREAM_RAY_NUM_CPUS": "1", "MIRSTREAM_WARM": "all"}  # every model kept running: 1.88 CPUs
    done = _run(["serve", "--port", str(free_port())], env, timeout=120)
    assert done.returncode == 1
    line = next(ln for ln in done.stderr.splitlines() if "cannot start" in ln)
    assert "the cluster has 1 /" in line and "key-v1" in line and "ingress" in line, line


@pytest.mark.server
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
