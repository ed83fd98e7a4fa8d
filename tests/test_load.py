"""A bounded load test in CI: 4x more clients than stream slots, every answer well-formed or a clean 503."""

from __future__ import annotations

from benchmarks.load_test import rss_mb, run_load
from tests.conftest import MAX_STREAMS


def test_overload_gets_complete_streams_or_clean_503(ray_server: str, audio: dict[str, bytes]) -> None:
    """12 clients for 15 s against 3 slots: no malformed stream, no transport error, bounded replica memory."""
    before = rss_mb("ServeReplica:mirstream")
    report = run_load(ray_server, audio["click.mp3"], "key,bpm_degara,loudness-ebur128", 4 * MAX_STREAMS, 15.0)
    after = rss_mb("ServeReplica:mirstream")
    assert report.outcomes["complete"] > 0 and report.outcomes["503"] > 0, report.outcomes
    assert set(report.outcomes) <= {"complete", "503"}, (report.outcomes, report.problems[:3])
    assert after < before + 600, f"replica RSS grew from {before:.0f} MB to {after:.0f} MB"
