"""A bounded load test in CI: 4x more clients than stream slots, every answer well-formed or a clean 503."""

from __future__ import annotations

from benchmarks.load_test import process_rss_mb, run_load
from tests.conftest import MAX_STREAMS


def test_overload_gets_complete_streams_or_clean_503(ray_server: str, audio: dict[str, bytes]) -> None:
    """12 clients for 15 s against 3 slots: no malformed stream, no transport error, bounded replica memory.

    Autoscaling may add replicas under load, so memory is bounded per process, not in total.
    """
    before = process_rss_mb("ServeReplica:mirstream")
    report = run_load(ray_server, audio["click.mp3"], "key,bpm_degara,loudness-ebur128", 4 * MAX_STREAMS, 15.0)
    after = process_rss_mb("ServeReplica:mirstream")
    assert report.outcomes["complete"] > 0 and report.outcomes["503"] > 0, report.outcomes
    assert set(report.outcomes) <= {"complete", "503"}, (report.outcomes, report.problems[:3])
    ceiling = max(before.values()) + 300
    grown = {pid: mb for pid, mb in after.items() if mb > ceiling}
    assert not grown, f"replicas above {ceiling:.0f} MB after the load: {grown}"
