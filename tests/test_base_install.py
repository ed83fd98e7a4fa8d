"""The base install is the client: a fresh venv with `pip install <repo>` (no extra) talks to a server with the
Python client and `mirstream analyze --url`, and has neither Ray, torch, Essentia nor onnxruntime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.server
# the tests' PYTHONPATH points at the repository; the installed copy is what is under test here
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with mirstream installed without extras (pip's cache keeps it quick)."""
    venv = tmp_path_factory.mktemp("base") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return venv


def test_the_base_install_has_no_server_dependencies(base_venv: Path) -> None:
    """Only the client's dependencies: importing any runtime of the server fails, the client imports."""
    probe = (
        "import importlib.util as u, json; "
        "print(json.dumps({m: u.find_spec(m) is not None for m in "
        "('ray', 'torch', 'essentia', 'onnxruntime', 'numpy', 'httpx', 'httpx_sse', 'rich')}))"
    )
    found = json.loads(subprocess.check_output([str(base_venv / "bin" / "python"), "-c", probe], cwd="/", env=ENV))
    assert found == {
        "ray": False, "torch": False, "essentia": False, "onnxruntime": False, "numpy": False,
        "httpx": True, "httpx_sse": True, "rich": True,
    }  # fmt: skip
    client = subprocess.run(
        [str(base_venv / "bin" / "python"), "-c", "import serve_app.client, serve_app.cli; print('ok')"],
        cwd="/",
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert client.stdout.strip() == "ok", client.stderr


def test_the_base_install_analyzes_through_a_server(
    base_venv: Path, local_server: str, audio: dict[str, bytes], tmp_path: Path
) -> None:
    """`mirstream analyze --url` and the Python client of the base install get the server's results."""
    track = tmp_path / "cadence.wav"
    track.write_bytes(audio["cadence.wav"])
    cli = subprocess.run(
        [
            str(base_venv / "bin" / "mirstream"),
            "analyze",
            str(track),
            "--models",
            "key",
            "--json",
            "--url",
            local_server,
        ],
        cwd="/",
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    (model,) = json.loads(cli.stdout)["models"]
    assert (model["results"]["key"], model["results"]["scale"]) == ("C", "major")
    script = (
        "import sys; from serve_app.client import Client\n"
        "with Client(sys.argv[1]) as c:\n"
        "    a = c.analyze(sys.argv[2], 'key')\n"
        "    print(a.results('key')['key'], len(c.models()) > 0)\n"
    )
    out = subprocess.check_output(
        [str(base_venv / "bin" / "python"), "-c", script, local_server, str(track)], cwd="/", env=ENV
    )
    assert out.decode().split() == ["C", "True"]
    models = subprocess.run(
        [str(base_venv / "bin" / "mirstream"), "models", "--json"],
        cwd="/",
        env={**ENV, "MIRSTREAM_URL": local_server},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert models.returncode == 0 and any(m["name"] == "key" for m in json.loads(models.stdout)), models.stderr


def test_a_non_editable_install_carries_the_registry_and_the_weights(base_venv: Path) -> None:
    """The wheel holds the registry as a file (not the source tree's link) and every packaged weight file, so a
    server installed with the `server` extra finds them without the repository."""
    probe = (
        "import json, os, models\n"
        "from serve_app.config import DEFAULT_REGISTRY\n"
        "weights = os.path.join(os.path.dirname(models.__file__), 'weights')\n"
        "print(json.dumps({'registry': str(DEFAULT_REGISTRY), 'link': os.path.islink(DEFAULT_REGISTRY),\n"
        "    'size': os.path.getsize(DEFAULT_REGISTRY), 'weights': weights}))"
    )
    found = json.loads(subprocess.check_output([str(base_venv / "bin" / "python"), "-c", probe], cwd="/", env=ENV))
    assert not found["registry"].startswith(str(REPO)) and not found["link"]
    assert found["size"] == (REPO / "model_registry.yaml").stat().st_size
    registry = (REPO / "model_registry.yaml").read_text().splitlines()
    packaged = [line.split("packaged: ", 1)[1].split(",", 1)[0] for line in registry if "packaged: " in line]
    missing = [p for p in packaged if not (Path(found["weights"]) / p).is_file()]
    assert len(packaged) > 20 and missing == []
