"""Catalogue batch mode: analyse a directory, a file list or an object-store prefix on Ray Data, resumably.

The same code as the server does the work: ``decode.decode``/``representation`` (PyAV + soxr) turn each
file into every representation its models need, and each registry entry's analyzer runs inside an
``AnalyzerHost`` held by a Ray Data actor pool (one pool per model, sized by the entry's resources), so
every analyzer loads once per actor. The model graph is the server's: every upstream a requested model
needs runs once per track (in its own pool, before its dependents), passes its results on in the block,
and writes no row of its own unless it was requested. The driver streams the results back and writes them as immutable
shards (one row per track and model), each written under a temporary name and renamed into place, so a
killed run leaves only whole shards behind; a rerun skips every (track, model) already stored as ``ok``.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import math
import os
import pickle
import re
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from models.base import Audio, Cancelled, InputSpec
from serve_app.config import Settings
from serve_app.contract.events import DECODE_ERROR_PREFIX, jsonable
from serve_app.ingress.decode import AudioError, decode, representation
from serve_app.ingress.model_graph import UpstreamFailed
from serve_app.registry import ModelEntry, Registry
from serve_app.registry.deployment import DoesNotFit, check_fits, model_spec
from serve_app.registry.graph import order
from serve_app.runners.base import plain_message
from serve_app.runners.host import AnalyzerHost

AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .flac .mp3 .ogg .oga .opus .m4a .mp4 .aac .aif .aiff .aifc .wma .webm .mka .ac3 .ape .wv .alac".split()
)
FORMATS = ("parquet", "jsonl")
SUMMARY_NAME = "_summary.json"
_SHARD_RE = re.compile(r"^part-[0-9A-Za-z_-]+\.(parquet|jsonl)$")
_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Storage settings the reading workers get from the driver's environment (a Ray started earlier, or a
# cluster, does not inherit this process's environment): endpoint, region and the same credentials.
STORAGE_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "GOOGLE_APPLICATION_CREDENTIALS",
)

SCHEMA = pa.schema(
    [
        ("track", pa.string()),
        ("model", pa.string()),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("results", pa.string()),
        ("compute_s", pa.float64()),
        ("duration_s", pa.float64()),
        ("finished_at", pa.string()),
        ("run_id", pa.string()),
    ]
)
"""One row per (track, model); ``results`` is the JSON text of the model's results object (null on error)."""


class BatchError(Exception):
    """A usage or configuration problem found before any work starts (the CLI exits 2 with the message)."""


# ----------------------------------------------------------------------------------------------- locations


def is_uri(location: str) -> bool:
    """True for ``scheme://...`` locations (s3://, gs://, file://, any fsspec protocol)."""
    return bool(_URI_RE.match(location))


def filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and path for a local path or URI; fsspec covers schemes pyarrow lacks (az://...).

    Credentials and endpoints come from the usual environment (AWS_ENDPOINT_URL, AWS_* keys, GOOGLE_*).
    """
    if not is_uri(location):
        return pafs.LocalFileSystem(), str(Path(location).expanduser().resolve())
    scheme, rest = location.split("://", 1)
    if scheme in _BUCKET_SCHEMES and "?" not in rest:  # path = bucket/key; one client per bucket and process
        return _bucket_filesystem(scheme, rest.split("/", 1)[0]), rest.rstrip("/")
    try:
        return pafs.FileSystem.from_uri(location)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        import fsspec

        try:
            fs, path = fsspec.core.url_to_fs(location)
        except (ImportError, ValueError) as exc:
            raise BatchError(f"no filesystem for {location!r}: {exc}") from None
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


_BUCKET_SCHEMES = frozenset({"s3", "gs", "gcs"})


@functools.lru_cache(maxsize=32)
def _bucket_filesystem(scheme: str, bucket: str) -> pafs.FileSystem:
    """A cached client per bucket: building one resolves the bucket's region (a request) every time."""
    try:
        return pafs.FileSystem.from_uri(f"{scheme}://{bucket}")[0]
    except (pa.ArrowInvalid, OSError) as exc:
        raise BatchError(f"cannot open {scheme}://{bucket}: {exc}") from None


def _join(location: str, path: str) -> str:
    """Rebuild a full location for ``path`` on the same filesystem as ``location`` (keeps the URI scheme)."""
    if not is_uri(location):
        return path
    scheme = location.split("://", 1)[0]
    return f"{scheme}://{path}"


def _is_audio(name: str) -> bool:
    """Whether a file name has one of the audio extensions (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def list_tracks(source: str) -> list[str]:
    """Every track named by ``source``: a directory/prefix (recursive, audio extensions), a list file or one file.

    A list file holds one path or URI per line (blank lines and ``#`` comments skipped); relative paths
    are relative to the list file's folder. Duplicates are dropped, order is kept.
    """
    fs, path = filesystem(source)
    try:
        info = fs.get_file_info(path)
    except OSError as exc:
        raise BatchError(f"cannot read input {source!r}: {exc}") from None
    if info.type == pafs.FileType.NotFound:
        raise BatchError(f"input {source!r} does not exist")
    if info.type == pafs.FileType.Directory:
        selector = pafs.FileSelector(path, recursive=True)
        found = sorted(i.path for i in fs.get_file_info(selector) if i.type == pafs.FileType.File and _is_audio(i.path))
        tracks = [_join(source, p) for p in found]
        if not tracks:
            raise BatchError(f"no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) under {source!r}")
        return tracks
    if _is_audio(path):
        return [_join(source, path)]
    return _read_list(fs, path, source)


def _read_list(fs: pafs.FileSystem, path: str, source: str) -> list[str]:
    """Parse a list file into locations."""
    with fs.open_input_stream(path) as stream:
        raw = stream.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BatchError(f"{source!r} is neither a folder, an audio file nor a UTF-8 list of paths") from None
    base = path.rsplit("/", 1)[0] if "/" in path else ""
    tracks: list[str] = []
    for line in text.splitlines():
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        if is_uri(item):
            tracks.append(item)
        elif is_uri(source):
            tracks.append(_join(source, item if item.startswith("/") else f"{base}/{item}"))
        else:
            tracks.append(str((Path(base) / Path(item).expanduser()).resolve()))
    if not tracks:
        raise BatchError(f"list file {source!r} names no tracks")
    return list(dict.fromkeys(tracks))


def read_bytes(location: str) -> bytes:
    """The whole file at a path or URI."""
    fs, path = filesystem(location)
    with fs.open_input_stream(path) as stream:
        return stream.read()


# -------------------------------------------------------------------------------------------------- output


class OutputStore:
    """The result folder: immutable ``part-<run>-<n>.<fmt>`` shards plus ``_summary.json``.

    Local shards are written to a hidden temporary name and renamed (atomic on POSIX); object stores
    publish an object only when its upload completes, so there a shard is written to its final key.
    Parquet/JSON readers skip names starting with '.' or '_', so they never see temporaries or the summary.
    """

    def __init__(self, location: str, fmt: str) -> None:
        if fmt not in FORMATS:
            raise BatchError(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)}")
        self.location = location
        self.fmt = fmt
        self.fs, self.path = filesystem(location)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        info = self.fs.get_file_info(self.path)
        if info.type == pafs.FileType.File:
            raise BatchError(f"--out {location!r} is a file; give a folder for the result shards")
        self.fs.create_dir(self.path, recursive=True)
        other = {s.rsplit(".", 1)[1] for s in self.shards(any_format=True)} - {fmt}
        if other:
            raise BatchError(
                f"{location!r} already holds {', '.join(sorted(other))} results; resume with --format "
                f"{sorted(other)[0]} or choose another --out"
            )

    def _file(self, name: str) -> str:
        """Full path of a file in the result folder."""
        return f"{self.path.rstrip('/')}/{name}"

    def shards(self, any_format: bool = False) -> list[str]:
        """Names of the complete shards (temporaries excluded), sorted."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        names = [i.base_name for i in infos if i.type == pafs.FileType.File and _SHARD_RE.match(i.base_name)]
        return sorted(n for n in names if any_format or n.endswith("." + self.fmt))

    def remove_temporaries(self) -> int:
        """Delete ``.part-*.tmp`` files a killed run left behind (never read; one run per folder at a time)."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        stale = [i.path for i in infos if i.base_name.startswith(".part-") and i.base_name.endswith(".tmp")]
        for p in stale:
            self.fs.delete_file(p)
        return len(stale)

    def read(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """One shard as a table with the output schema (optionally a subset of columns)."""
        try:
            if self.fmt == "parquet":
                with self.fs.open_input_file(self._file(name)) as f:
                    return pq.read_table(f, columns=columns)
            with self.fs.open_input_stream(self._file(name)) as f:
                rows = [json.loads(line) for line in f.read().decode("utf-8").splitlines() if line.strip()]
            table = pa.Table.from_pylist(rows, schema=SCHEMA)
            return table.select(columns) if columns else table
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise BatchError(f"result shard {self._file(name)} is unreadable ({exc}); delete it and rerun") from None

    def read_all(self) -> pa.Table:
        """Every stored row."""
        tables = [self.read(n) for n in self.shards()]
        return pa.concat_tables(tables) if tables else SCHEMA.empty_table()

    def write(self, name: str, table: pa.Table) -> None:
        """Write (or replace) one shard atomically."""
        final = self._file(name)
        target = self._file(f".{name}.{uuid.uuid4().hex[:8]}.tmp") if self.local else final
        with self.fs.open_output_stream(target) as out:
            out.write(self._encode(table))
        if self.local:
            self.fs.move(target, final)

    def _encode(self, table: pa.Table) -> bytes:
        """Serialise a table in this store's format."""
        if self.fmt == "parquet":
            sink = io.BytesIO()
            pq.write_table(table, sink, compression="zstd")
            return sink.getvalue()
        lines = (json.dumps(row, ensure_ascii=False, allow_nan=False) for row in table.to_pylist())
        return ("\n".join(lines) + "\n").encode("utf-8")

    def delete(self, name: str) -> None:
        """Remove one shard."""
        self.fs.delete_file(self._file(name))

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write ``_summary.json`` (same atomic rule as shards)."""
        final = self._file(SUMMARY_NAME)
        target = self._file(f".{SUMMARY_NAME}.{uuid.uuid4().hex[:8]}.tmp") if self.local else final
        with self.fs.open_output_stream(target) as out:
            out.write(json.dumps(summary, indent=2).encode("utf-8"))
        if self.local:
            self.fs.move(target, final)


def stored_status(store: OutputStore) -> dict[tuple[str, str], str]:
    """(track, model) → status of every stored row (the store holds at most one row per pair)."""
    status: dict[tuple[str, str], str] = {}
    for name in store.shards():
        t = store.read(name, ["track", "model", "status"])
        for track, model, st in zip(*(t.column(c).to_pylist() for c in ("track", "model", "status")), strict=True):
            status[(track, model)] = st
    return status


def drop_error_rows(store: OutputStore, pairs: set[tuple[str, str]]) -> int:
    """Rewrite every shard holding an error row for one of ``pairs`` without it, before those pairs are redone.

    Keeps the one-row-per-pair rule: a killed retry leaves the pair missing (redone next time), never doubled.
    """
    dropped = 0
    for name in store.shards():
        t = store.read(name)
        keys = zip(t.column("track").to_pylist(), t.column("model").to_pylist(), strict=True)
        st = t.column("status").to_pylist()
        keep = [not (s == "error" and k in pairs) for k, s in zip(keys, st, strict=True)]
        if all(keep):
            continue
        dropped += keep.count(False)
        if any(keep):
            store.write(name, t.filter(pa.array(keep)))
        else:
            store.delete(name)
    return dropped


# ------------------------------------------------------------------------------------------- Ray Data stages


def _spec_column(spec: InputSpec) -> str:
    """Block column holding one representation's float32 samples (raw bytes)."""
    return f"audio_{spec.sample_rate or 'native'}_{spec.channels}"


def _now() -> str:
    """UTC time stamp, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def decode_batch(batch: pa.Table, specs: list[InputSpec], needs: dict[str, list[int]], max_seconds: float) -> pa.Table:
    """Ray Data task: read and decode each track once, building only the representations its pending models need.

    ``needs`` maps a model key to the indexes in ``specs`` of the representation it takes. A track
    that cannot be read or decoded gets its reason in ``error`` and no audio.
    """
    tracks = batch.column("track").to_pylist()
    todos = batch.column("todo").to_pylist()
    audio: dict[int, list[bytes | None]] = {i: [] for i in range(len(specs))}
    errors: list[str | None] = []
    durations: list[float | None] = []
    channels: list[int | None] = []
    rates: list[int | None] = []
    for track, todo in zip(tracks, todos, strict=True):
        wanted = {i for key in todo for i in needs[key]}
        try:
            decoded = decode(read_bytes(track), max_seconds)
        except AudioError as exc:
            failure: str | None = DECODE_ERROR_PREFIX + str(exc)
        except (OSError, ValueError, BatchError) as exc:  # missing file, permission, object-store failure
            failure = DECODE_ERROR_PREFIX + f"cannot read {track}: {plain_message(exc)}"
        else:
            failure = None
        errors.append(failure)
        if failure is not None:
            for column in (durations, channels, rates, *audio.values()):
                column.append(None)
            continue
        durations.append(decoded.duration)
        channels.append(int(decoded.samples.shape[0]))
        rates.append(decoded.sample_rate)
        for i, spec in enumerate(specs):
            audio[i].append(representation(decoded, spec).samples.tobytes() if i in wanted else None)
    columns = {
        "track": pa.array(tracks, pa.string()),
        "todo": pa.array(todos, pa.list_(pa.string())),
        "error": pa.array(errors, pa.string()),
        "duration_s": pa.array(durations, pa.float64()),
        "channels": pa.array(channels, pa.int32()),
        "native_rate": pa.array(rates, pa.int32()),
        "outputs": pa.array(["[]"] * len(tracks), pa.string()),
        "graph": pa.array([pickle.dumps({})] * len(tracks), pa.large_binary()),
    }
    for i, spec in enumerate(specs):
        columns[_spec_column(spec)] = pa.array(audio[i], pa.large_binary())
    return pa.table(columns)


class ModelStage:
    """Ray Data actor for one node of the model graph: builds its AnalyzerHost once, then runs row by row.

    A row needs this node when one of its pending models is this node or depends on it. The node's inputs are
    the row's audio and its upstreams' results (the ``graph`` column: key → results, or the failure); a
    requested node appends one output record to the ``outputs`` JSON column; a node that others need leaves
    its results in ``graph``. Columns no later stage needs (``drop``) are dropped, so only results travel on.
    """

    def __init__(self, entry: ModelEntry, plan: tuple[ModelEntry, ...], drop: list[str]) -> None:
        self.entry = entry
        self.by_key = {e.key: e for e in plan}
        self.feeds = any(entry.key in e.upstream.values() for e in plan)
        self.drop = drop
        self.host = AnalyzerHost(entry)
        self.column = _spec_column(entry.input) if entry.input is not None else None
        self._needs: dict[tuple[str, ...], bool] = {}

    def _needed(self, todo: list[str]) -> bool:
        """Whether a row with these pending models needs this node (memoised per distinct todo list)."""
        key = tuple(todo)
        if key not in self._needs:
            closure = order([self.by_key[k] for k in todo if k in self.by_key], self.by_key)
            self._needs[key] = any(e.key == self.entry.key for e in closure)
        return self._needs[key]

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Run the node on every row that needs it."""
        outputs = batch.column("outputs").to_pylist()
        graphs = batch.column("graph").to_pylist()
        todos = batch.column("todo").to_pylist()
        errors = batch.column("error").to_pylist()
        for i in range(batch.num_rows):
            if errors[i] is not None or not self._needed(todos[i]):
                continue
            done = pickle.loads(graphs[i])
            record, results = self.analyse(batch, i, done)
            if self.entry.key in todos[i]:
                outputs[i] = json.dumps(json.loads(outputs[i]) + [record])
            if self.feeds:
                failure = UpstreamFailed(self.entry.key, record["error"]) if results is None else None
                done[self.entry.key] = results if failure is None else failure
                graphs[i] = pickle.dumps(done)
        batch = batch.set_column(batch.schema.get_field_index("outputs"), "outputs", pa.array(outputs, pa.string()))
        batch = batch.set_column(batch.schema.get_field_index("graph"), "graph", pa.array(graphs, pa.large_binary()))
        return batch.drop_columns([c for c in self.drop if c in batch.column_names])

    def _audio(self, batch: pa.Table, i: int) -> Audio:
        """Rebuild the Audio this entry declared from the row's raw float32 bytes."""
        assert self.column is not None and self.entry.input is not None
        raw = batch.column(self.column)[i].as_buffer()
        samples = np.frombuffer(raw, dtype=np.float32)
        if self.entry.input.channels == "original":
            samples = samples.reshape(int(batch.column("channels")[i].as_py()), -1)
        rate = self.entry.input.sample_rate or int(batch.column("native_rate")[i].as_py())
        return Audio(samples=samples, sample_rate=rate)

    def analyse(self, batch: pa.Table, i: int, done: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """One output record (ok with the results JSON, or error with the server's message) and the raw results."""
        record: dict[str, Any] = {"model": self.entry.key, "error": None, "results": None, "compute_s": None}
        results = None
        cancel = threading.Event()
        timer = threading.Timer(self.entry.timeout_s, cancel.set)
        timer.daemon = True
        timer.start()
        try:
            inputs: dict[str, Any] = {}
            for param, upstream in self.entry.upstream.items():
                value = done[upstream]
                if isinstance(value, UpstreamFailed):  # the same message the server's stream sends
                    raise UpstreamFailed(value.upstream, value.message)
                inputs[param] = value
            if self.entry.audio_param is not None:
                inputs[self.entry.audio_param] = self._audio(batch, i)
            out = self.host.run(inputs, cancel)
            results = out.results
            record["results"] = json.dumps(jsonable(out.results), allow_nan=False)
            record.update(status="ok", compute_s=out.compute_s)
        except Cancelled:
            record.update(
                status="error",
                error=f"{self.entry.key} did not finish within its {self.entry.timeout_s:g} s timeout "
                "(timeout_s in the registry)",
            )
        except Exception as exc:  # the model's failure becomes this row's error; the run goes on
            record.update(status="error", error=plain_message(exc).splitlines()[0])
        finally:
            timer.cancel()
        record["finished_at"] = _now()
        return record, results


# ------------------------------------------------------------------------------------------------- driver


@dataclass(frozen=True)
class BatchConfig:
    """One ``mirstream batch`` invocation."""

    source: str
    models: tuple[ModelEntry, ...]
    out: str
    fmt: str = "parquet"
    address: str | None = None
    concurrency: int | None = None  # max actors per model pool; default: the cluster's CPUs
    num_cpus: int | None = None  # local Ray only
    object_store_mb: int = 1024  # local Ray only
    retry_errors: bool = True
    shard_rows: int = 512
    shard_seconds: float = 30.0
    max_audio_seconds: float = 30 * 60.0
    graph: tuple[ModelEntry, ...] = ()  # the served entries the requested models may need (their upstreams)

    def by_key(self) -> dict[str, ModelEntry]:
        """Requested entries and every served entry an upstream reference may name, by ``name:version``."""
        return {e.key: e for e in (*self.graph, *self.models)}


@dataclass
class BatchSummary:
    """What a run did; printed at the end and written to ``_summary.json``."""

    run_id: str
    out: str
    format: str
    models: list[str]
    tracks_total: int = 0
    tracks_skipped: int = 0
    tracks_processed: int = 0
    rows_written: int = 0
    errors: int = 0
    error_rows_dropped: int = 0
    error_pairs_kept: int = 0
    wall_s: float = 0.0
    tracks_per_minute: float = 0.0
    complete: bool = False
    started_at: str = field(default_factory=_now)
    finished_at: str | None = None
    per_model: dict[str, dict[str, float]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """Human summary."""
        state = "complete" if self.complete else "INCOMPLETE (rerun the same command to resume)"
        return [
            f"mirstream batch: {state}",
            f"  tracks: {self.tracks_total} in input, {self.tracks_skipped} already done, "
            f"{self.tracks_processed} processed now",
            f"  rows written: {self.rows_written} ({self.errors} errors)"
            + (f"; {self.error_pairs_kept} earlier error rows kept" if self.error_pairs_kept else ""),
            f"  speed: {self.tracks_per_minute:.1f} tracks/minute ({self.wall_s:.1f} s wall)",
            f"  output: {self.out} ({self.format})",
        ]


def ensure_ray(config: BatchConfig) -> bool:
    """Attach to ``--address``/RAY_ADDRESS, or start a local Ray; returns True if this call started it."""
    import ray

    if ray.is_initialized():
        return False
    address = config.address or os.environ.get("RAY_ADDRESS")
    common: dict[str, Any] = {"log_to_driver": False, "namespace": "mirstream-batch", "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(
            address="local",
            num_cpus=config.num_cpus or os.cpu_count(),
            object_store_memory=config.object_store_mb * 2**20,
            include_dashboard=False,
            **common,
        )
    return True


def check_actors_fit(models: Iterable[ModelEntry], resources: dict[str, float]) -> None:
    """Refuse models whose one actor cannot fit the cluster (Ray Data would wait forever)."""
    try:
        check_fits([replace(model_spec(e, Settings()), min_replicas=0) for e in models], resources, "cluster")
    except DoesNotFit as exc:
        raise BatchError(str(exc)) from None


def plan(
    tracks: list[str], models: tuple[ModelEntry, ...], status: dict[tuple[str, str], str], retry: bool
) -> list[dict]:
    """Work items {track, todo}: the models each track still needs (ok rows always skip; error rows if not retry)."""
    done = {"ok"} if retry else {"ok", "error"}
    items = []
    for t in tracks:
        todo = [e.key for e in models if status.get((t, e.key)) not in done]
        if todo:
            items.append({"track": t, "todo": todo})
    return items


def build_dataset(items: list[dict], config: BatchConfig, concurrency: int) -> Any:
    """The Ray Data pipeline: from_items → decode tasks → one actor pool per node of the model graph."""
    import ray

    by_key = config.by_key()
    plan = order(config.models, by_key)
    specs = list(dict.fromkeys(e.input for e in plan if e.input is not None))
    needs = {e.key: [specs.index(n.input) for n in order([e], by_key) if n.input is not None] for e in config.models}
    last_use = {_spec_column(s): max(i for i, e in enumerate(plan) if e.input == s) for s in specs}
    per_block = max(1, min(64, len(items) // 1000))  # 1 track per block below 2,000 tracks: finest spread
    ds = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / per_block)))
    forwarded = {k: os.environ[k] for k in STORAGE_ENV if os.environ.get(k)}
    ds = ds.map_batches(
        decode_batch,
        fn_kwargs={"specs": specs, "needs": needs, "max_seconds": config.max_audio_seconds},
        batch_size=1,
        batch_format="pyarrow",
        num_cpus=1,
        **({"runtime_env": {"env_vars": forwarded}} if forwarded else {}),
    )
    for i, entry in enumerate(plan):
        memory = entry.resources.memory_mb * 2**20 if entry.resources.memory_mb else None
        drop = [c for c, last in last_use.items() if last == i] + (["graph"] if i == len(plan) - 1 else [])
        ds = ds.map_batches(
            ModelStage,
            fn_constructor_args=(entry, plan, drop),
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=concurrency),
            batch_size=1,
            batch_format="pyarrow",
            num_cpus=entry.resources.num_cpus,
            num_gpus=entry.resources.num_gpus,
            **({"memory": memory} if memory else {}),
        )
    return ds


def result_rows(batch: pa.Table, by_key: dict[str, ModelEntry], run_id: str) -> Iterator[dict[str, Any]]:
    """Driver side: one output row per (track, pending model) from a finished block."""
    cols = {c: batch.column(c).to_pylist() for c in ("track", "todo", "error", "duration_s", "outputs")}
    for track, todo, error, duration, outputs in zip(*cols.values(), strict=True):
        records = {r["model"]: r for r in json.loads(outputs)}
        for key in todo:
            entry = by_key[key]
            r = records.get(key) or {"status": "error", "error": error, "finished_at": _now()}
            yield {
                "track": track,
                "model": key,
                "model_name": entry.name,
                "model_version": entry.version,
                "status": r["status"],
                "error": r.get("error"),
                "results": r.get("results"),
                "compute_s": r.get("compute_s"),
                "duration_s": duration,
                "finished_at": r["finished_at"],
                "run_id": run_id,
            }


class ShardWriter:
    """Buffers rows and writes a shard every ``shard_rows`` rows or ``shard_seconds`` seconds (and at close)."""

    def __init__(self, store: OutputStore, run_id: str, shard_rows: int, shard_seconds: float) -> None:
        self.store = store
        self.run_id = run_id
        self.shard_rows = shard_rows
        self.shard_seconds = shard_seconds
        self.buffer: list[dict[str, Any]] = []
        self.written = 0
        self.seq = 0
        self.last = time.monotonic()

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        """Buffer rows; flush when the shard is big or old enough."""
        self.buffer.extend(rows)
        if len(self.buffer) >= self.shard_rows or time.monotonic() - self.last >= self.shard_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as one shard."""
        self.last = time.monotonic()
        if not self.buffer:
            return
        name = f"part-{self.run_id}-{self.seq:06d}.{self.store.fmt}"
        self.store.write(name, pa.Table.from_pylist(self.buffer, schema=SCHEMA))
        self.written += len(self.buffer)
        self.seq += 1
        self.buffer = []


Progress = Callable[[int, int, int], None]
"""Called as (tracks done, tracks to do, errors) after every finished block."""


def run_batch(config: BatchConfig, progress: Progress | None = None) -> BatchSummary:
    """Analyse every pending (track, model) of ``config`` and store the rows; resumable and restartable.

    ``config.models`` come from a registry resolved by ``serve_app.ops.weights.resolve_availability`` (as the
    CLI does), so withheld models are refused by name and learned models know their weight files.
    Raises BatchError for configuration problems (before any work). Other exceptions mean the run
    stopped early; every row finished until then is stored and a rerun resumes from there.
    """
    tracks = list_tracks(config.source)
    store = OutputStore(config.out, config.fmt)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    summary = BatchSummary(run_id=run_id, out=config.out, format=config.fmt, models=[e.key for e in config.models])
    summary.tracks_total = len(tracks)
    store.remove_temporaries()
    status = stored_status(store)
    keys = {e.key for e in config.models}
    if config.retry_errors:
        retry = {(t, k) for t in tracks for k in keys if status.get((t, k)) == "error"}
        summary.error_rows_dropped = drop_error_rows(store, retry) if retry else 0
    else:
        summary.error_pairs_kept = sum(1 for t in tracks for k in keys if status.get((t, k)) == "error")
    # the store now holds exactly one row per finished pair, so these are all the errors left for this input
    items = plan(tracks, config.models, status, config.retry_errors)
    summary.tracks_skipped = len(tracks) - len(items)
    started = time.monotonic()
    writer = ShardWriter(store, run_id, config.shard_rows, config.shard_seconds)
    by_key = {e.key: e for e in config.models}
    stats: dict[str, Counter[str]] = {k: Counter() for k in keys}
    compute: dict[str, float] = {k: 0.0 for k in keys}
    try:
        if items:
            _execute(items, config, writer, by_key, run_id, summary, stats, compute, progress)
        summary.complete = True
    finally:
        writer.flush()
        summary.rows_written = writer.written
        summary.wall_s = round(time.monotonic() - started, 3)
        minutes = summary.wall_s / 60
        summary.tracks_per_minute = round(summary.tracks_processed / minutes, 2) if minutes > 0 else 0.0
        summary.finished_at = _now()
        summary.per_model = {
            k: {
                "ok": stats[k]["ok"],
                "error": stats[k]["error"],
                "compute_s_total": round(compute[k], 3),
                "compute_s_mean": round(compute[k] / stats[k]["ok"], 4) if stats[k]["ok"] else 0.0,
            }
            for k in sorted(keys)
        }
        store.write_summary(asdict(summary))
    return summary


def _execute(
    items: list[dict],
    config: BatchConfig,
    writer: ShardWriter,
    by_key: dict[str, ModelEntry],
    run_id: str,
    summary: BatchSummary,
    stats: dict[str, Counter[str]],
    compute: dict[str, float],
    progress: Progress | None,
) -> None:
    """Start (or attach to) Ray, run the pipeline and write rows as blocks arrive."""
    import ray
    from ray.data import DataContext

    started_ray = ensure_ray(config)
    try:
        resources = ray.cluster_resources()
        check_actors_fit(order(config.models, config.by_key()), resources)
        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False  # our own progress line counts tracks and errors instead
        ctx.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        concurrency = config.concurrency or max(1, int(resources.get("CPU", 1)))
        ds = build_dataset(items, config, concurrency)
        if progress:
            progress(0, len(items), 0)
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            rows = list(result_rows(batch, by_key, run_id))
            for r in rows:
                stats[r["model"]][r["status"]] += 1
                compute[r["model"]] += r["compute_s"] or 0.0
            summary.errors += sum(1 for r in rows if r["status"] == "error")
            summary.tracks_processed += batch.num_rows
            writer.add(rows)
            if progress:
                progress(summary.tracks_processed, len(items), summary.errors)
    finally:
        if started_ray:
            ray.shutdown()


def load_results(out: str, fmt: str = "parquet") -> pa.Table:
    """Every row stored in a result folder (one per track and model), for tests and notebooks."""
    return OutputStore(out, fmt).read_all()


def _progress_printer(stream: Any = sys.stderr) -> tuple[Progress, Callable[[], None]]:
    """A rich progress bar on a terminal, else a plain line every 10 s; returns (update, close)."""
    if stream.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(
            TextColumn("tracks"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("errors: {task.fields[errors]}"),
            TimeElapsedColumn(),
            console=Console(file=stream),
        )
        task = bar.add_task("batch", total=None, errors=0)
        bar.start()

        def update(done: int, total: int, errors: int) -> None:
            bar.update(task, completed=done, total=total, errors=errors)

        return update, bar.stop
    state = {"last": 0.0}
    t0 = time.monotonic()

    def update_plain(done: int, total: int, errors: int) -> None:
        now = time.monotonic()
        if now - state["last"] >= 10 or done == total:
            state["last"] = now
            rate = done / max(now - t0, 1.0) * 60
            print(f"tracks {done}/{total}  errors {errors}  {rate:.1f} tracks/min", file=stream, flush=True)

    return update_plain, lambda: None


def batch_command(args: Any, settings: Any, registry: Registry) -> int:
    """CLI body: 0 = every (track, model) ok, 1 = some rows are errors, 2 = usage error, 3 = the run stopped early."""
    from serve_app.ingress.request import RequestError, parse_models

    if args.concurrency is not None and args.concurrency < 1:
        print("mirstream batch: --concurrency must be at least 1", file=sys.stderr)
        return 2
    try:
        models = parse_models(args.models, registry)
    except RequestError as exc:
        print(f"mirstream batch: {exc.detail}", file=sys.stderr)
        return 2
    config = BatchConfig(
        source=args.input,
        models=models,
        out=args.out,
        fmt=args.format,
        address=args.address,
        concurrency=args.concurrency,
        num_cpus=settings.ray_num_cpus,
        retry_errors=not args.no_retry_errors,
        shard_rows=int(os.environ.get("MIRSTREAM_BATCH_SHARD_ROWS", "512")),
        max_audio_seconds=settings.max_audio_seconds,
        object_store_mb=settings.object_store_mb,
        graph=registry.entries,
    )
    update, close = _progress_printer()
    try:
        summary = run_batch(config, update)
    except BatchError as exc:
        close()
        print(f"mirstream batch: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        close()
        print("mirstream batch: interrupted; finished rows are stored, rerun to resume", file=sys.stderr)
        return 3
    except Exception as exc:  # Ray or storage failure: what finished is stored; say so and how to resume
        close()
        print(f"mirstream batch: the run stopped: {plain_message(exc).splitlines()[0]}", file=sys.stderr)
        print("mirstream batch: finished rows are stored; rerun the same command to resume", file=sys.stderr)
        return 3
    close()
    print("\n".join(summary.lines()), flush=True)
    return 1 if summary.errors + summary.error_pairs_kept else 0
