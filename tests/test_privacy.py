"""Nothing outlives a request: no file appears in the temp directory, whatever the request's fate."""

from __future__ import annotations

import os
from pathlib import Path

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


def test_no_temp_files_after_success_failure_and_cancel(server: str, audio: dict[str, bytes]) -> None:
    """Successful, undecodable, too-long and cancelled requests leave the temp dir as it was."""
    before = _files()
    assert post(server, "key,loudness-ebur128", audio["cadence.m4a"]).events[-1]["status"] == "finished"
    assert post(server, "key", audio["garbage"]).statuses() == ["started", "error", "finished"]
    assert post(server, "key", audio["too_long.flac"]).statuses() == ["started", "error", "finished"]
    _disconnect_after_keepalive(server, audio["cadence.opus"])
    assert _files() - before == set()
