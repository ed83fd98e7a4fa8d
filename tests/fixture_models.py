"""Test-only analyzers (registered by tests/fixture_registry.yaml): failing, slow, crashing and batching ones,
plus a small model graph (a backbone that counts its runs and heads that echo which run they were given)."""

from __future__ import annotations

import os
import signal
import time
import uuid
from typing import Any

import numpy as np

from models import placement
from models.base import Analyzer, AnalyzerError, Audio, AudioInput, BatchAnalyzer, Cancelled, ModelInput

AUDIO = {"audio": AudioInput(sample_rate=16000, channels="mono")}


class FailingAnalyzer(Analyzer):
    """Always raises, to prove one model's failure becomes its own error event."""

    inputs = AUDIO

    def __init__(self, message: str = "fixture model failed on purpose") -> None:
        self.message = message

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Raise a plain ValueError with a known message."""
        raise ValueError(self.message)


class SlowAnalyzer(Analyzer):
    """Sleeps in small steps, checking for cancellation; counts finished and cancelled runs per process.

    The counters come back in the results, so tests can see whether a cancelled run stopped early
    (``cancelled`` grew) or was never started (neither grew).
    """

    inputs = AUDIO

    def __init__(self, seconds: float = 1.5) -> None:
        self.seconds = seconds
        self.runs = 0
        self.cancelled = 0

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Sleep ``seconds`` unless cancelled first."""
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            try:
                self.check_cancelled()
            except Cancelled:
                self.cancelled += 1
                raise
            time.sleep(0.05)
        self.runs += 1
        return {"runs": self.runs, "cancelled": self.cancelled, "duration": audio.duration}


class CrashingAnalyzer(Analyzer):
    """Kills its own process (like a segfault or OOM kill) on audio shorter than ``crash_below_seconds``."""

    inputs = AUDIO

    def __init__(self, crash_below_seconds: float = 2.0) -> None:
        self.crash_below_seconds = crash_below_seconds

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """SIGKILL this process for short audio, else report the process id."""
        if audio.duration < self.crash_below_seconds:
            os.kill(os.getpid(), signal.SIGKILL)
        return {"pid": os.getpid()}


class BatchRecordingAnalyzer(BatchAnalyzer):
    """Dynamic-batching probe: each result says how big its batch was and what this replica has seen so far.

    ``analyze_batch`` stands in for one forward pass (``seconds_per_batch``, checking for cancellation), so
    concurrent requests queue up behind it; tracks shorter than ``fail_below_seconds`` fail alone.
    """

    inputs = AUDIO

    def __init__(self, seconds_per_batch: float = 0.5, fail_below_seconds: float = 0.5) -> None:
        self.seconds_per_batch = seconds_per_batch
        self.fail_below_seconds = fail_below_seconds
        self.sizes: list[int] = []
        self.cancelled_batches = 0

    def analyze_batch(self, audios: list[Audio]) -> list[dict[str, Any] | Exception]:
        """Sleep once for the whole batch, then one outcome per track."""
        self.sizes.append(len(audios))
        deadline = time.monotonic() + self.seconds_per_batch
        while time.monotonic() < deadline:
            try:
                self.check_cancelled()
            except Cancelled:
                self.cancelled_batches += 1
                raise
            time.sleep(0.02)
        return [
            AnalyzerError(f"fixture batch model refuses {a.duration:.2f} s tracks")
            if a.duration < self.fail_below_seconds
            else {
                "batch_size": len(audios),
                "sizes_seen": list(self.sizes),
                "cancelled_batches": self.cancelled_batches,
            }
            for a in audios
        ]


class CountingBackbone(Analyzer):
    """A graph node that others consume: each run gets a fresh id, the process counts its runs, and the per-frame
    values are a numpy array (what real backbones hand their heads)."""

    inputs = AUDIO

    def __init__(self, seconds: float = 0.3) -> None:
        self.seconds = seconds
        self.runs = 0

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Sleep a little (so requests overlap), then report this run."""
        time.sleep(self.seconds)
        self.runs += 1
        frames = np.asarray(audio.samples[: 16000 * 2], dtype=np.float32).reshape(-1, 100)[:8]
        return {"run": uuid.uuid4().hex, "runs": self.runs, "pid": os.getpid(), "frames": frames}


class EchoHead(Analyzer):
    """A head on CountingBackbone: says which backbone run fed it and checks the array arrived intact."""

    inputs = {"backbone": ModelInput(requires=("run", "frames"))}

    def analyze(self, backbone: dict[str, Any]) -> dict[str, Any]:
        """Echo the upstream run id and a checksum of its frames."""
        frames = backbone["frames"]
        return {"upstream_run": backbone["run"], "is_array": isinstance(frames, np.ndarray), "sum": float(frames.sum())}


class AfterAnything(Analyzer):
    """A node downstream of any model: counts its runs, so tests see that it never ran when its upstream failed
    or its request went away."""

    inputs = {"upstream": ModelInput()}

    def __init__(self) -> None:
        self.runs = 0

    def analyze(self, upstream: dict[str, Any]) -> dict[str, Any]:
        """Report what it was given and how often this process ran it."""
        self.runs += 1
        return {"upstream_keys": sorted(upstream), "runs": self.runs}


class ColdStart(Analyzer):
    """A model that takes ``load_seconds`` to load (like a network's weights) and fails to load when told to:
    what a request meets when it needs a deployment scaled to zero."""

    inputs = AUDIO

    def __init__(self, load_seconds: float = 1.0, broken: bool = False) -> None:
        if broken:
            raise RuntimeError("fixture model cannot load on purpose")
        time.sleep(load_seconds)

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Report this replica's process."""
        return {"pid": os.getpid(), "duration": audio.duration}


class WhereAnalyzer(Analyzer):
    """Says where it ran (Ray node id, GPU ids, process) after sleeping ``seconds`` plus ``per_audio_second`` for
    each second of audio (checking for cancellation): multi-node placement, node loss and autoscaling tests."""

    inputs = AUDIO

    def __init__(self, seconds: float = 0.0, per_audio_second: float = 0.0, label: str = "") -> None:
        self.seconds = seconds
        self.per_audio_second = per_audio_second
        self.label = label

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Sleep, then report the node, the GPUs this process was given, its pid and when it ran (monotonic clock:
        one machine's tests compare it with their own)."""
        began = time.monotonic()
        deadline = began + self.seconds + self.per_audio_second * audio.duration
        while time.monotonic() < deadline:
            self.check_cancelled()
            time.sleep(0.02)
        return {
            "node_id": _node_id(),
            "gpu_ids": list(placement.current().gpu_ids),
            "pid": os.getpid(),
            "label": self.label,
            "ran": [began, time.monotonic()],
        }


def _node_id() -> str:
    """The Ray node this process runs on ("" outside Ray: the in-process mode)."""
    import sys

    if "ray" not in sys.modules:
        return ""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
