"""Nothing outlives a request: no file appears in the temp directory and no audio bytes reach any log."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from tests.conftest import SESSION_TMP
from tests.sse import post
from tests.test_cancellation import _disconnect_after_keepalive


def _files() -> set[Path]:
    """Every file under the run's temp dir, except Ray's own session logs and pytest's tmp_path trees."""
    found = set()
    for root, dirs, files in os.walk(SESSION_TMP):
        dirs[:] = [d for d in dirs if not (Path(root) == SESSION_TMP and d in ("ray", "pytest-of-root"))]
        found.update(Path(root) / f for f in files)
    return found


def _fingerprints(data: bytes) -> list[str]:
    """Ways a slice of the upload could appear in a log: raw text, hex, Python bytes repr."""
    piece = data[len(data) // 2 : len(data) // 2 + 24]
    return [piece.decode("latin-1"), piece.hex(), repr(piece)[2:-1]]


def _ray_logs() -> str:
    """Everything Ray's processes (replicas, proxy, controller) wrote to their log files so far."""
    texts = []
    for path in (SESSION_TMP / "ray").rglob("*"):
        if path.is_file() and path.suffix in (".log", ".out", ".err"):
            texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


def test_no_temp_files_after_success_failure_timeout_and_cancel(server: str, audio: dict[str, bytes]) -> None:
    """Successful, undecodable, too-long, timed-out and cancelled requests leave the temp dir as it was."""
    before = _files()
    assert post(server, "key,loudness-ebur128", audio["cadence.m4a"]).events[-1]["status"] == "finished"
    assert post(server, "key", audio["garbage"]).statuses() == ["started", "error", "finished"]
    assert post(server, "key", audio["too_long.flac"]).statuses() == ["started", "error", "finished"]
    assert "timeout" in post(server, "slow:2", audio["cadence.ogg"]).events[1]["error"]
    _disconnect_after_keepalive(server, audio["cadence.opus"])
    assert _files() - before == set()


def test_no_audio_bytes_in_logs(
    local_server: str, ray_server: str, audio: dict[str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    """Uploads that succeed and that fail to decode never show up in Python logs or Ray's log files."""
    caplog.set_level(logging.DEBUG)
    uploads = [audio["cadence.wav"], audio["garbage"]]
    for base in (local_server, ray_server):
        for data in uploads:
            assert post(base, "key,fail", data).events[-1]["status"] == "finished"
    logs = caplog.text + _ray_logs()
    assert "correlation_id" in logs  # the logs are really there...
    for data in uploads:
        for fingerprint in _fingerprints(data):
            assert fingerprint not in logs  # ...but not the audio
