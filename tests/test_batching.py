"""Dynamic batching (registry ``batching:``, Analyzer.analyze_batch, AnalyzerHost.run_batch, Serve's @serve.batch).

The unit tests pin the per-track contract (one bad track or one cancelled request never fails the others);
the Ray tests run real Serve deployments and observe the batch sizes a replica actually saw.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from models.base import Analyzer, AnalyzerError, Audio, AudioInput, Cancelled
from serve_app.config import Settings
from serve_app.registry import Batching, ModelEntry, RegistryError, parse_registry
from serve_app.runners.base import ModelOutput
from serve_app.runners.host import AllSet, AnalyzerHost
from tests.conftest import catalogue_entry
from tests.fixture_models import BatchRecordingAnalyzer

SR = 16000
SCHEMA = {"type": "object"}


def entry_data(name: str, cls: str, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """One registry item for a 16 kHz mono model."""
    return {
        "name": name,
        "version": "1",
        "default": True,
        "class": cls,
        "description": "test",
        "params": params,
        "input": {"sample_rate": SR, "channels": "mono"},
        "resources": {"num_cpus": 0.1},
        "license": {"code": "test"},
        "output_schema": SCHEMA,
        **extra,
    }


def make_entry(cls: str, params: dict[str, Any], **extra: Any) -> ModelEntry:
    """A validated entry (as the registry would build it)."""
    return parse_registry({"models": [entry_data("probe", cls, params, **extra)]}).entries[0]


def tone(f0: float, seconds: float) -> np.ndarray:
    """A sine at ``f0``."""
    return (0.5 * np.sin(2 * np.pi * f0 * np.arange(int(SR * seconds)) / SR)).astype(np.float32)


# --- registry ---


def test_registry_parses_batching_and_defaults_to_none() -> None:
    """``batching`` becomes a Batching; entries without it stay unbatched."""
    probe = "tests.fixture_models.BatchRecordingAnalyzer"
    batched = make_entry(probe, {}, batching={"max_batch_size": 4, "batch_wait_timeout_s": 0.05})
    assert batched.batching == Batching(max_batch_size=4, batch_wait_timeout_s=0.05)
    assert make_entry(probe, {}, batching={"max_batch_size": 2}).batching == Batching(2, 0.01)
    assert make_entry(probe, {}).batching is None


@pytest.mark.parametrize(
    ("batching", "message"),
    [
        ({"batch_wait_timeout_s": 0.1}, "max_batch_size: must be an integer >= 1"),
        ({"max_batch_size": 0}, "max_batch_size: must be an integer >= 1"),
        ({"max_batch_size": 2, "batch_wait_timeout_s": -1}, "batch_wait_timeout_s: must be a number >= 0"),
        ({"max_batch_size": 2, "timeout": 1}, "unknown key"),
        ({"max_batch_size": 9}, r"max_batch_size \(9\) exceeds max_ongoing_requests \(4\)"),
        ("yes", "must be a mapping"),
    ],
)
def test_registry_rejects_bad_batching(batching: Any, message: str) -> None:
    """Each mistake fails the load with a message naming the entry and the field."""
    with pytest.raises(RegistryError, match=message) as info:
        make_entry("tests.fixture_models.BatchRecordingAnalyzer", {}, batching=batching)
    assert "probe:1.batching" in str(info.value)


# --- analyzer and host (no Ray) ---


class HalfBroken(Analyzer):
    """analyze fails on short tracks and returns a non-dict on long ones; fine in between."""

    inputs = {"audio": AudioInput(sample_rate=SR, channels="mono")}

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Per-track behaviour chosen by duration."""
        if audio.duration < 0.5:
            raise AnalyzerError("too short for HalfBroken")
        if audio.duration > 5:
            return ["not", "a", "dict"]  # type: ignore[return-value]
        return {"seconds": audio.duration}


def test_default_analyze_batch_isolates_errors() -> None:
    """The base class loops over analyze and hands each track's exception back in its place."""
    outcomes = HalfBroken().analyze_batch([Audio(tone(440, 1), SR), Audio(tone(440, 0.1), SR), Audio(tone(440, 2), SR)])
    assert outcomes[0] == {"seconds": 1.0} and outcomes[2] == {"seconds": 2.0}
    assert isinstance(outcomes[1], AnalyzerError)


def test_host_run_batch_outcome_per_track() -> None:
    """Wrong representation, analyzer error, bad results type and an already-cancelled request each fail alone."""
    host = AnalyzerHost(make_entry("tests.test_batching.HalfBroken", {}))
    flags = [threading.Event() for _ in range(5)]
    flags[4].set()
    audios = [
        Audio(tone(440, 1), SR),
        Audio(tone(440, 1), 44100),  # not the 16 kHz the entry declared
        Audio(tone(440, 0.1), SR),  # AnalyzerError inside analyze
        Audio(tone(440, 6), SR),  # returns a list
        Audio(tone(440, 1), SR),  # its request is already gone
    ]
    out = host.run_batch(audios, flags)
    assert isinstance(out[0], ModelOutput) and out[0].results == {"seconds": 1.0}
    assert isinstance(out[1], AnalyzerError) and "expects 16000 Hz" in str(out[1])
    assert isinstance(out[2], AnalyzerError) and "too short" in str(out[2])
    assert isinstance(out[3], AnalyzerError) and "not a results object" in str(out[3])
    assert isinstance(out[4], Cancelled)


def test_batch_stops_only_when_every_request_is_gone() -> None:
    """One cancelled request leaves the batch running; all cancelled stops it at the next check."""
    host = AnalyzerHost(make_entry("tests.fixture_models.BatchRecordingAnalyzer", {"seconds_per_batch": 0.4}))
    analyzer = host.analyzer
    assert isinstance(analyzer, BatchRecordingAnalyzer)
    audios = [Audio(tone(440, 1), SR)] * 3
    flags = [threading.Event() for _ in audios]
    threading.Timer(0.1, flags[0].set).start()
    out = host.run_batch(audios, flags)
    assert all(isinstance(o, ModelOutput) and o.results["batch_size"] == 3 for o in out)
    assert analyzer.cancelled_batches == 0

    flags = [threading.Event() for _ in audios]
    for f in flags:
        threading.Timer(0.1, f.set).start()
    out = host.run_batch(audios, flags)
    assert all(isinstance(o, Cancelled) for o in out)
    assert analyzer.cancelled_batches == 1
    assert not AllSet([threading.Event(), flags[0]]).is_set() and AllSet(flags).is_set()


# --- real Ray Serve deployments ---


@pytest.fixture(scope="module")
def serve_instance() -> Iterator[None]:
    """A Ray instance (reused when the session already has one) and Serve without an HTTP proxy."""
    import ray
    from ray import serve

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False)
    serve.start(proxy_location="Disabled")
    try:
        yield
    finally:
        if started:
            serve.shutdown()
            ray.shutdown()


def deploy(entry: ModelEntry, app_name: str) -> Any:
    """Run ``entry`` as ModelDeployment (the deployment build_app makes, kept warm) in its own Serve app; its handle."""
    from ray import serve

    from serve_app.runners.ray_serve import model_deployment

    return serve.run(model_deployment(replace(entry, warm=True), Settings()), name=app_name, route_prefix=None)


async def analyze_all(handle: Any, audios: list[Audio]) -> list[Any]:
    """Send every track at once (as concurrent streams would); each outcome or exception, in order."""
    import ray

    responses = [handle.analyze.remote({"audio": ray.put(a)}) for a in audios]
    return await asyncio.gather(*responses, return_exceptions=True)


def test_serve_batches_concurrent_requests_and_isolates_errors(serve_instance: None) -> None:
    """Five concurrent requests reach the replica as batches (largest > 1); the one short track fails alone."""
    from ray import serve

    entry = make_entry(
        "tests.fixture_models.BatchRecordingAnalyzer",
        {"seconds_per_batch": 0.5},
        max_ongoing_requests=8,
        batching={"max_batch_size": 4, "batch_wait_timeout_s": 0.5},
    )
    handle = deploy(entry, "batching-probe")
    try:
        audios = [Audio(tone(440, 1), SR)] * 2 + [Audio(tone(440, 0.2), SR)] + [Audio(tone(440, 1), SR)] * 2
        out = asyncio.run(analyze_all(handle, audios))
        assert "refuses 0.20 s tracks" in str(out[2])
        good = [o for i, o in enumerate(out) if i != 2]
        assert all(isinstance(o, ModelOutput) for o in good), out
        unbatched = asyncio.run(analyze_all(handle, [Audio(tone(440, 1), SR)]))[0]
        assert unbatched.results["batch_size"] == 1  # a lone request waits at most batch_wait_timeout_s
        # the replica's whole history, read after every earlier batch has finished (deterministic: the last of the
        # five requests' batches may hold only the failing track, whose outcome carries no history)
        sizes = unbatched.results["sizes_seen"][:-1]
        assert sum(sizes) == 5 and max(sizes) > 1, sizes
        assert all(o.results["batch_size"] in sizes for o in good)
    finally:
        serve.delete("batching-probe")


def test_serve_cancelled_request_leaves_its_batch_running(serve_instance: None) -> None:
    """Cancelling one request of a running batch does not stop the batch; the others get their results."""
    from ray import serve

    entry = make_entry(
        "tests.fixture_models.BatchRecordingAnalyzer",
        {"seconds_per_batch": 1.5},
        max_ongoing_requests=4,
        batching={"max_batch_size": 3, "batch_wait_timeout_s": 0.3},
    )
    handle = deploy(entry, "batching-cancel")
    try:

        async def scenario() -> list[Any]:
            import ray

            responses = [handle.analyze.remote({"audio": ray.put(Audio(tone(440, 1), SR))}) for _ in range(3)]
            await asyncio.sleep(0.8)  # the batch of three is running now
            responses[0].cancel()
            return await asyncio.gather(*responses, return_exceptions=True)

        out = asyncio.run(scenario())
        assert not isinstance(out[0], ModelOutput)  # the cancelled one got no result
        assert all(isinstance(o, ModelOutput) for o in out[1:]), out
        assert [o.results["batch_size"] for o in out[1:]] == [3, 3]  # the cancelled request was in their batch
        assert [o.results["cancelled_batches"] for o in out[1:]] == [0, 0]  # ...and the batch ran to the end
    finally:
        serve.delete("batching-cancel")


def test_serve_batches_real_pitch_model(serve_instance: None) -> None:
    """pitch_crepe through Serve's batch path: concurrent tracks share forward passes, each gets its own pitch."""
    from ray import serve

    entry = replace(catalogue_entry("pitch_crepe"), max_ongoing_requests=4, batching=Batching(4, 0.3))
    handle = deploy(entry, "batching-pitch")
    try:
        freqs = [220.0, 330.0, 440.0]
        out = asyncio.run(analyze_all(handle, [Audio(tone(f, 1.0), SR) for f in freqs] + [Audio(tone(440, 0.05), SR)]))
        for f, o in zip(freqs, out[:3], strict=True):
            assert isinstance(o, ModelOutput), out
            assert o.results["median_f0_hz"] == pytest.approx(f, rel=0.01)
        assert "needs at least 0.1 s" in str(out[3])
    finally:
        serve.delete("batching-pitch")
