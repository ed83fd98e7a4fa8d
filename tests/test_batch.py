"""``mirstream batch``: catalogue runs on Ray Data from a folder, a list file and a real S3 API (moto on loopback).

One Ray instance serves the whole module (started here unless an earlier module already started one);
the CLI tests attach to it with ``--address``, which also covers the cluster path. Results are checked
against known signals and against the analyzers run directly through AnalyzerHost (the server's path).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import yaml

from serve_app.contract.events import DECODE_ERROR_PREFIX, jsonable
from serve_app.ingress.decode import decode, representation
from serve_app.ingress.request import parse_models
from serve_app.ops.batch import (
    SCHEMA,
    BatchConfig,
    BatchError,
    OutputStore,
    list_tracks,
    load_results,
    run_batch,
)
from serve_app.registry import ModelEntry, Registry
from serve_app.runners.host import AnalyzerHost
from tests.audio_factory import c_major_cadence, click_track, encode, sine
from tests.conftest import registry_data

MIRSTREAM = [sys.executable, "-m", "serve_app.cli"]
TRIO = "key,bpm_degara,loudness-ebur128"
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API (moto's server) on loopback; its endpoint and dummy keys are set before Ray starts."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {**S3_ENV, "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env["AWS_ENDPOINT_URL"]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture(scope="module")
def ray_address(s3_endpoint: str) -> Iterator[str]:
    """The module's one Ray instance (2 CPUs, small object store); its GCS address for CLI runs."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(
            address="local",
            num_cpus=2,
            object_store_memory=300 * 2**20,
            include_dashboard=False,
            log_to_driver=False,
        )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        if started:
            ray.shutdown()


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Known-answer tracks (one in a sub-folder), one corrupt file, one too-short file and a non-audio file."""
    root = tmp_path_factory.mktemp("catalogue")
    (root / "sub").mkdir()
    (root / "click.mp3").write_bytes(encode(click_track(120.0, 10.0), 44100, "mp3"))
    (root / "sub" / "cadence.flac").write_bytes(encode(c_major_cadence(1.5, 2), 44100, "flac"))
    (root / "sine.wav").write_bytes(encode(sine(1000.0, -23.0, 10.0, 48000, 2), 48000, "wav"))
    (root / "short.wav").write_bytes(encode(sine(1000.0, -23.0, 0.2, 44100, 1), 44100, "wav"))
    (root / "corrupt.mp3").write_bytes(bytes(np.random.default_rng(3).integers(0, 256, 20_000, dtype=np.uint8)))
    (root / "notes.txt").write_text("not audio")
    return root


def _models(registry: Registry, spec: str) -> tuple[ModelEntry, ...]:
    """Resolve a models spec the way the CLI does."""
    return parse_models(spec, registry)


def _rows(out: str | Path, fmt: str = "parquet") -> dict[tuple[str, str], dict]:
    """Stored rows keyed by (track, model); fails if any pair appears twice."""
    rows = load_results(str(out), fmt).to_pylist()
    keyed = {(r["track"], r["model"]): r for r in rows}
    assert len(keyed) == len(rows), Counter((r["track"], r["model"]) for r in rows).most_common(3)
    return keyed


def _direct(entry: ModelEntry, data: bytes) -> dict:
    """What the server computes for this file: same decoder, representation and AnalyzerHost."""
    audio = representation(decode(data, 30 * 60.0), entry.input)
    return jsonable(AnalyzerHost(entry).run({"audio": audio}).results)


def _cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``mirstream`` as users do."""
    return subprocess.run(
        MIRSTREAM + args, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )


def test_list_tracks_folder_and_list_file(catalogue: Path, tmp_path: Path) -> None:
    """A folder is walked recursively for audio extensions; a list file resolves relative paths, skips comments."""
    found = list_tracks(str(catalogue))
    names = sorted(Path(t).name for t in found)
    assert names == ["cadence.flac", "click.mp3", "corrupt.mp3", "short.wav", "sine.wav"]
    assert all(Path(t).is_absolute() for t in found)
    listing = catalogue / "list.txt"
    listing.write_text("# my picks\nclick.mp3\n\nsub/cadence.flac\n" + f"{catalogue / 'click.mp3'}\ns3://b/x.mp3\n")
    assert list_tracks(str(listing)) == [
        str(catalogue / "click.mp3"),
        str(catalogue / "sub/cadence.flac"),
        "s3://b/x.mp3",
    ]
    listing.unlink()
    with pytest.raises(BatchError, match="does not exist"):
        list_tracks(str(tmp_path / "nope"))
    with pytest.raises(BatchError, match="no audio files"):
        list_tracks(str(tmp_path))
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(BatchError, match="names no tracks"):
        list_tracks(str(tmp_path / "empty.txt"))


def test_folder_to_parquet(ray_address: str, registry: Registry, catalogue: Path, tmp_path: Path) -> None:
    """Every (track, model) gets one row; known answers hold; errors are rows; results equal the server path's."""
    models = _models(registry, TRIO)
    out = tmp_path / "out"
    summary = run_batch(BatchConfig(source=str(catalogue), models=models, out=str(out)))
    assert summary.complete and summary.tracks_total == 5 and summary.tracks_processed == 5
    assert summary.rows_written == 15 and summary.errors == 6
    files = sorted(p.name for p in out.iterdir())
    assert files[0] == "_summary.json" and files[1:] and all(f.startswith("part-") for f in files[1:])
    assert pq.read_table(out / files[1]).schema.equals(SCHEMA)
    rows = _rows(out)
    assert len(rows) == 15
    t = {name: str(p) for name, p in ((p.name, p) for p in catalogue.rglob("*") if p.suffix != ".txt")}
    for key in ("key:1", "bpm_degara:1", "loudness-ebur128:1"):
        bad = rows[(t["corrupt.mp3"], key)]
        assert bad["status"] == "error" and bad["error"].startswith(DECODE_ERROR_PREFIX) and bad["results"] is None
        short = rows[(t["short.wav"], key)]
        assert short["status"] == "error" and "needs at least" in short["error"]
        assert short["duration_s"] == pytest.approx(0.2, abs=1e-3)
    cadence = json.loads(rows[(t["cadence.flac"], "key:1")]["results"])
    assert (cadence["key"], cadence["scale"]) == ("C", "major")
    assert json.loads(rows[(t["click.mp3"], "bpm_degara:1")]["results"])["bpm"] == pytest.approx(120, abs=1)
    loud = json.loads(rows[(t["sine.wav"], "loudness-ebur128:1")]["results"])
    assert loud["integrated_loudness"] == pytest.approx(-23.0, abs=0.1)
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert len(ok) == 9 and all(r["compute_s"] > 0 and r["duration_s"] > 9 and r["error"] is None for r in ok)
    by_key = {e.key: e for e in models}
    for r in ok:  # identical to running the analyzer the way a server replica does
        assert json.loads(r["results"]) == _direct(by_key[r["model"]], Path(r["track"]).read_bytes())
    stored = json.loads((out / "_summary.json").read_text())
    key_stats = stored["per_model"]["key:1"]
    assert stored["complete"] and (key_stats["ok"], key_stats["error"]) == (3, 2) and key_stats["compute_s_mean"] > 0


def test_list_file_to_jsonl_with_model_errors(
    ray_address: str, registry: Registry, catalogue: Path, tmp_path: Path
) -> None:
    """A list file (with a missing entry) to JSONL; a failing model and a timed-out model become error rows."""
    listing = tmp_path / "tracks.txt"
    listing.write_text(f"{catalogue / 'click.mp3'}\n{catalogue / 'missing.mp3'}\n")
    out = tmp_path / "out"
    models = _models(registry, "key,fail,slow:2")
    summary = run_batch(BatchConfig(source=str(listing), models=models, out=str(out), fmt="jsonl"))
    assert summary.tracks_processed == 2 and summary.rows_written == 6
    shard = next(out.glob("part-*.jsonl"))
    lines = [json.loads(line) for line in shard.read_text().splitlines()]
    assert len(lines) == 6 and all(set(line) == set(SCHEMA.names) for line in lines)
    rows = _rows(out, "jsonl")
    click, missing = str(catalogue / "click.mp3"), str(catalogue / "missing.mp3")
    assert rows[(click, "key:1")]["status"] == "ok"
    assert rows[(click, "fail:1")]["error"] == "fixture model failed on purpose"
    assert "did not finish within its 1 s timeout" in rows[(click, "slow:2")]["error"]
    for key in ("key:1", "fail:1", "slow:2"):
        assert rows[(missing, key)]["status"] == "error" and "cannot read" in rows[(missing, key)]["error"]
    with pytest.raises(BatchError, match="already holds jsonl"):
        OutputStore(str(out), "parquet")


def test_the_model_graph_runs_each_backbone_once_per_track(
    ray_address: str, registry: Registry, catalogue: Path, tmp_path: Path
) -> None:
    """Batch mode runs the server's graph: rows only for the requested models (none for the backbone), both heads
    of one track see the same backbone run, and a dependent of a failing model gets the server's error message."""
    listing = tmp_path / "tracks.txt"
    listing.write_text(f"{catalogue / 'click.mp3'}\n{catalogue / 'sub' / 'cadence.flac'}\n")
    out = tmp_path / "out"
    models = _models(registry, "fx_head:1,fx_head:2,fx_after_fail")
    config = BatchConfig(source=str(listing), models=models, out=str(out), graph=registry.entries)
    summary = run_batch(config)
    assert summary.complete and summary.rows_written == 6 and summary.errors == 2
    rows = _rows(out)
    runs = []
    for track in (str(catalogue / "click.mp3"), str(catalogue / "sub" / "cadence.flac")):
        heads = [json.loads(rows[(track, k)]["results"]) for k in ("fx_head:1", "fx_head:2")]
        assert heads[0]["upstream_run"] == heads[1]["upstream_run"] and all(h["is_array"] for h in heads)
        runs.append(heads[0]["upstream_run"])
        after = rows[(track, "fx_after_fail:1")]
        assert after["status"] == "error" and "fail:1" in after["error"] and "on purpose" in after["error"]
        assert (track, "fx_backbone:1") not in rows and (track, "fail:1") not in rows
    assert runs[0] != runs[1]  # one backbone run per track


def test_s3_input_and_output(ray_address: str, s3_endpoint: str, registry: Registry, catalogue: Path) -> None:
    """s3:// prefix in, s3:// result folder out, through a real S3 API; rows equal the local files' results."""
    admin = pafs.S3FileSystem(endpoint_override=s3_endpoint, allow_bucket_creation=True, **_s3_keys())
    admin.create_dir("music")
    for name in ("click.mp3", "sine.wav", "corrupt.mp3"):
        with admin.open_output_stream(f"music/cat/{name}") as f:
            f.write((catalogue / name).read_bytes())
    with admin.open_output_stream("music/cat/cover.jpg") as f:
        f.write(b"\xff\xd8 not audio")
    models = _models(registry, "key,loudness-ebur128")
    summary = run_batch(BatchConfig(source="s3://music/cat", models=models, out="s3://music/results"))
    assert summary.complete and summary.tracks_total == 3 and summary.rows_written == 6
    stored = [i.base_name for i in admin.get_file_info(pafs.FileSelector("music/results"))]
    assert "_summary.json" in stored and not any(n.endswith(".tmp") for n in stored)
    rows = _rows("s3://music/results")
    assert set(rows) == {
        (f"s3://music/cat/{n}", k)
        for n in ("click.mp3", "sine.wav", "corrupt.mp3")
        for k in ("key:1", "loudness-ebur128:1")
    }
    assert rows[("s3://music/cat/corrupt.mp3", "key:1")]["status"] == "error"
    by_key = {e.key: e for e in models}
    for name in ("click.mp3", "sine.wav"):
        for key, entry in by_key.items():
            r = rows[(f"s3://music/cat/{name}", key)]
            assert r["status"] == "ok" and json.loads(r["results"]) == _direct(entry, (catalogue / name).read_bytes())


def _s3_keys() -> dict[str, str]:
    """Moto's dummy credentials for the admin client."""
    return {"access_key": S3_ENV["AWS_ACCESS_KEY_ID"], "secret_key": S3_ENV["AWS_SECRET_ACCESS_KEY"]}


def test_resume_skips_finished_pairs(ray_address: str, registry: Registry, catalogue: Path, tmp_path: Path) -> None:
    """A rerun only does what is missing: ok rows stay untouched, error rows are redone (or kept on request)."""
    source = tmp_path / "three"
    source.mkdir()
    for name in ("click.mp3", "sine.wav", "corrupt.mp3"):
        shutil.copy(catalogue / name, source / name)
    out = str(tmp_path / "out")
    first = run_batch(BatchConfig(source=str(source), models=_models(registry, "key"), out=out))
    before = _rows(out)
    assert first.tracks_processed == 3 and len(before) == 3
    second = run_batch(BatchConfig(source=str(source), models=_models(registry, "key,bpm_degara"), out=out))
    assert second.tracks_skipped == 0 and second.tracks_processed == 3  # bpm for all three, key retried for corrupt
    assert second.error_rows_dropped == 1 and second.rows_written == 4
    after = _rows(out)
    assert len(after) == 6
    for pair, row in before.items():
        if row["status"] == "ok":
            assert after[pair] == row  # not recomputed: same run id and time stamp
        else:
            assert after[pair]["run_id"] == second.run_id
    third = run_batch(
        BatchConfig(source=str(source), models=_models(registry, "key,bpm_degara"), out=out, retry_errors=False)
    )
    assert third.tracks_processed == 0 and third.rows_written == 0 and third.error_pairs_kept == 2
    assert _rows(out) == after


def test_sigkill_mid_run_then_resume(ray_address: str, registry: Registry, catalogue: Path, tmp_path: Path) -> None:
    """Kill -9 the CLI mid-run: only whole shards remain, and the rerun completes the output with no duplicates."""
    source = tmp_path / "eight"
    source.mkdir()
    for i in range(8):
        shutil.copy(catalogue / "click.mp3", source / f"track{i}.mp3")
    out = tmp_path / "out"
    test_registry = tmp_path / "registry.yaml"
    test_registry.write_text(yaml.safe_dump(registry_data()))  # with the test-only 'slow' model
    args = ["batch", str(source), "--models", "slow", "--out", str(out), "--registry", str(test_registry)]
    args += ["--address", ray_address, "--concurrency", "1"]
    proc = subprocess.Popen(MIRSTREAM + args, env={**os.environ, "MIRSTREAM_BATCH_SHARD_ROWS": "1"})
    try:
        deadline = time.monotonic() + 180
        while len(list(out.glob("part-*.parquet"))) < 2:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no shard written within 180 s"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    killed = _rows(out)
    assert 2 <= len(killed) < 8 and all(r["status"] == "ok" for r in killed.values())
    assert not (out / "_summary.json").exists()
    (out / ".part-leftover.parquet.0000.tmp").write_bytes(b"half a shard")  # what a kill during a write leaves
    done = _cli(args, {"MIRSTREAM_BATCH_SHARD_ROWS": "1"})
    assert done.returncode == 0, done.stderr
    assert "mirstream batch: complete" in done.stdout and f"{len(killed)} already done" in done.stdout
    final = _rows(out)
    assert set(final) == {(str(source / f"track{i}.mp3"), "slow:1") for i in range(8)}
    assert all(r["status"] == "ok" for r in final.values())
    assert all(final[pair] == row for pair, row in killed.items())
    assert not list(out.glob(".*.tmp"))


def test_cli_exit_codes(ray_address: str, catalogue: Path, tmp_path: Path) -> None:
    """0 when every row is ok, 1 when some are errors, 2 for usage problems (found before any work)."""
    listing = tmp_path / "tracks.txt"
    listing.write_text(f"{catalogue / 'sine.wav'}\n{catalogue / 'corrupt.mp3'}\n")
    out = tmp_path / "out"
    base = ["--out", str(out), "--address", ray_address]
    with_errors = _cli(["batch", str(listing), "--models", "loudness-ebur128", "--format", "jsonl", *base])
    assert with_errors.returncode == 1, with_errors.stderr
    assert "rows written: 2 (1 errors)" in with_errors.stdout
    listing.write_text(f"{catalogue / 'sine.wav'}\n")
    assert _cli(["batch", str(listing), "--models", "loudness-ebur128", "--format", "jsonl", *base]).returncode == 0
    usage = {
        "unknown model 'nope'": ["batch", str(catalogue), "--models", "nope", *base],
        "does not exist": ["batch", str(tmp_path / "missing"), "--models", "key", *base],
        "already holds jsonl": ["batch", str(catalogue), "--models", "key", *base],
        "--concurrency must be at least 1": ["batch", str(catalogue), "--models", "key", "--concurrency", "0", *base],
        "licensed for non-commercial use only": ["batch", str(catalogue), "--models", "genre_discogs_400", *base],
    }
    for message, argv in usage.items():
        done = _cli(argv, {"MIRSTREAM_NONCOMMERCIAL": "false"})  # the registry's availability is respected
        assert done.returncode == 2 and message in done.stderr, (message, done.stderr)
