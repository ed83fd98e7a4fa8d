"""The baseline a user would write without a server: a plain sequential Essentia script for the seed trio.

MonoLoader (44.1 kHz mono) → KeyExtractor and RhythmExtractor2013 (degara); AudioLoader (original
channels) → LoudnessEBUR128 (hop 0.1 s). Algorithms are constructed once, as a script processing a
folder would, so the comparison with the warm server is fair.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from models.essentia_runtime import essentia_standard


class EssentiaScript:
    """Key, BPM and loudness of one file, one after the other, with Essentia alone."""

    def __init__(self) -> None:
        es = essentia_standard()
        self._es = es
        self._key = es.KeyExtractor()
        self._rhythm = es.RhythmExtractor2013(method="degara")

    def run(self, path: Path) -> tuple[dict[str, Any], dict[str, float]]:
        """Results and per-stage seconds (load_mono, key, bpm, load_stereo, loudness, total)."""
        es, stages = self._es, {}
        t0 = time.perf_counter()
        mono = es.MonoLoader(filename=str(path), sampleRate=44100)()
        stages["load_mono"] = time.perf_counter() - t0
        t = time.perf_counter()
        key, scale, strength = self._key(mono)
        stages["key"] = time.perf_counter() - t
        t = time.perf_counter()
        bpm = self._rhythm(mono)[0]
        stages["bpm"] = time.perf_counter() - t
        t = time.perf_counter()
        stereo, rate = es.AudioLoader(filename=str(path))()[:2]
        stages["load_stereo"] = time.perf_counter() - t
        t = time.perf_counter()
        integrated, lra = es.LoudnessEBUR128(sampleRate=float(rate), hopSize=0.1)(stereo)[2:4]
        stages["loudness"] = time.perf_counter() - t
        stages["total"] = time.perf_counter() - t0
        results = {"key": f"{key} {scale}", "bpm": round(float(bpm), 2), "integrated": round(float(integrated), 2)}
        return results, stages


def load_times(path: Path) -> dict[str, Any]:
    """Seconds for Essentia's MonoLoader (44.1 kHz) and AudioLoader on one file, or the error Essentia gives."""
    es = essentia_standard()
    try:
        t = time.perf_counter()
        es.MonoLoader(filename=str(path), sampleRate=44100)()
        mono = time.perf_counter() - t
        t = time.perf_counter()
        es.AudioLoader(filename=str(path))()
        return {"monoloader": mono, "audioloader": time.perf_counter() - t}
    except RuntimeError as exc:  # Essentia's bundled FFmpeg lacks some decoders (opus)
        return {"error": str(exc).split(":")[-1].strip()}


class BaselineProcess:
    """The Essentia side in its own process: Essentia's bundled FFmpeg and PyAV's must not share one
    (after Essentia fails on an opus file, its next AudioLoader segfaults when PyAV is loaded too)."""

    def __init__(self) -> None:
        self._log = tempfile.NamedTemporaryFile(prefix="mirstream-baseline-", suffix=".log", delete=False)
        self._proc = subprocess.Popen(
            [sys.executable, "-X", "faulthandler", "-m", "benchmarks.perf.baseline"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )

    def call(self, op: str, path: Path) -> Any:
        """Run ``op`` ('script' or 'load') on ``path`` in the worker and return its answer."""
        assert self._proc.stdin and self._proc.stdout
        self._proc.stdin.write(json.dumps({"op": op, "path": str(path)}) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            code = self._proc.wait()
            tail = Path(self._log.name).read_text(errors="replace").splitlines()[-12:]
            Path(self._log.name).unlink(missing_ok=True)
            raise RuntimeError(f"the Essentia baseline process died (exit {code}) on {op} {path}: " + "\n".join(tail))
        return json.loads(line)

    def close(self) -> None:
        """Stop the worker."""
        if self._proc.stdin:
            self._proc.stdin.close()
        self._proc.wait(30)
        Path(self._log.name).unlink(missing_ok=True)


def _serve() -> None:
    """Worker loop: one JSON command per stdin line, one JSON answer per stdout line."""
    script = EssentiaScript()
    for line in sys.stdin:
        command = json.loads(line)
        path = Path(command["path"])
        answer = script.run(path) if command["op"] == "script" else load_times(path)
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    _serve()
