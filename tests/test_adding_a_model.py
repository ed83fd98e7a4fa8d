"""Adding a model is one small class and one registry entry: nothing else is edited or generated.

A new DSP analyzer is written here into a fresh module (outside the repository), one entry is appended to a copy
of the shipped registry, and the real in-process server streams its result; the KubeRay render includes it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from serve_app.ops import k8s_render as kr
from serve_app.registry import load_registry
from tests.audio_factory import encode, sine
from tests.conftest import REPO, free_port, make_settings, running_local_server
from tests.sse import post

pytestmark = pytest.mark.server

CLASS = '''
"""Mean spectral centroid: a new analyzer, written by tests/test_adding_a_model.py."""

from typing import Any

import numpy as np

from models.base import Analyzer, Audio, AudioInput


class Brightness(Analyzer):
    """Mean spectral centroid (Hz) of 2048-sample frames."""

    inputs = {"audio": AudioInput(sample_rate=44100, channels="mono", min_seconds=0.1)}

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Centroid of each frame's magnitude spectrum, averaged."""
        frames = np.lib.stride_tricks.sliding_window_view(audio.samples, 2048)[::1024]
        spectrum = np.abs(np.fft.rfft(frames * np.hanning(2048), axis=1))
        freqs = np.fft.rfftfreq(2048, 1 / audio.sample_rate)
        centroid = (spectrum * freqs).sum(axis=1) / np.maximum(spectrum.sum(axis=1), 1e-12)
        return {"centroid_hz": float(np.mean(centroid))}
'''
ENTRY = {
    "name": "brightness",
    "version": "1",
    "default": True,
    "class": "brightness_plugin.Brightness",
    "description": "Mean spectral centroid (Hz).",
    "license": {"code": "AGPL-3.0"},
    "output_schema": {"type": "object", "required": ["centroid_hz"], "properties": {"centroid_hz": {"type": "number"}}},
}


def test_one_class_and_one_entry_make_a_served_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new model is validated, listed, streamed with its result, and rendered for KubeRay."""
    plugin = tmp_path / "plugins"
    plugin.mkdir()
    (plugin / "brightness_plugin.py").write_text(textwrap.dedent(CLASS))
    monkeypatch.syspath_prepend(str(plugin))  # spawned pool workers inherit sys.path
    data = yaml.safe_load((REPO / "model_registry.yaml").read_text())
    data["models"] = [m for m in data["models"] if m["name"] == "key"] + [ENTRY]
    registry_file = tmp_path / "registry.yaml"
    registry_file.write_text(yaml.safe_dump(data))

    registry = load_registry(registry_file)
    assert registry.find("brightness", None).input.sample_rate == 44100
    with running_local_server(registry, make_settings(free_port())) as base:
        stream = post(base, "brightness,key", encode(sine(1000.0, -12.0, 3.0, 44100, 1), 44100, "wav"))
    assert stream.statuses() == ["started", "completed", "completed", "finished"], stream.events
    centroid = stream.by_model()["brightness"]["result"]["results"]["centroid_hz"]
    assert centroid == pytest.approx(1000.0, rel=0.05)  # a 1 kHz sine's centroid

    config = yaml.safe_load(kr.render(registry_file, kr.RenderOptions())[kr.SERVE_CONFIG_FILE])
    assert "brightness-v1" in [d["name"] for d in config["applications"][0]["deployments"]]
