"""Model weights that are not shipped with mirstream: availability, download and verification.

Registry entries list their files under ``weights`` (see serve_app.registry.WeightFile). ``mirstream models
fetch`` downloads them over HTTPS into the models directory (``MIRSTREAM_MODELS_DIR``): each file streams
to a temporary file beside its destination, is verified (SHA-256 when the registry records one; otherwise
the recorded size and a content check: a metadata JSON must parse and make sense, a ``.pb`` must parse as a
TensorFlow GraphDef containing the nodes the metadata names) and only then is renamed into place, so the
models directory never holds a partial or unverified file. At start-up an entry whose files are absent,
or whose weights are non-commercial while ``MIRSTREAM_NONCOMMERCIAL=false``, is withheld: listed with the
reason, never deployed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from models.heads import MetadataError, parse_metadata
from serve_app.config import REPO_ROOT, Settings
from serve_app.registry import WEIGHT_PARAM, ModelEntry, Registry, WeightFile, Withheld

CONNECT_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 60.0  # longest silence between two chunks
TOTAL_TIMEOUT_S = 30 * 60.0  # per file
MAX_REDIRECTS = 5
MAX_FILE_BYTES = 1 << 30  # without a recorded size, nothing above 1 GiB is accepted
MAX_METADATA_BYTES = 4 << 20
CHUNK = 1 << 16
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


class FetchError(Exception):
    """A file could not be downloaded or failed verification; the message names the file and the reason."""


def fetch_command(name: str) -> str:
    """The command an operator runs to install ``name``'s weights."""
    return f"mirstream models fetch {name}"


# --- availability --------------------------------------------------------------------------------------------


def local_path(weight: WeightFile, models_dir: Path) -> Path:
    """Where ``weight`` lives on this machine: under the models dir, or in the source tree when packaged."""
    return REPO_ROOT / weight.packaged if weight.packaged else models_dir / weight.path


def missing_files(entry: ModelEntry, models_dir: Path) -> list[WeightFile]:
    """Files of ``entry`` that are absent (or of the wrong recorded size): a cheap check done at start-up.

    Full verification happens in ``fetch``, which only ever renames verified files into place.
    """
    missing = []
    for weight in entry.weights:
        path = local_path(weight, models_dir)
        try:
            size = path.stat().st_size
        except OSError:
            missing.append(weight)
            continue
        if size == 0 or (weight.size is not None and size != weight.size):
            missing.append(weight)
    return missing


def unavailable(entry: ModelEntry, settings: Settings) -> Withheld | None:
    """Why ``entry`` cannot be served here (naming the setting or the command that fixes it), or None."""
    if entry.noncommercial and not settings.allow_noncommercial:
        weights = entry.license.get("weights", "non-commercial")
        reason = (
            f"model {entry.key} is disabled on this server: its weights are licensed for non-commercial use only "
            f"({weights}) and MIRSTREAM_NONCOMMERCIAL=false"
        )
        return Withheld(entry, reason, by_policy=True)
    missing = missing_files(entry, settings.models_dir)
    if not missing:
        return None
    packaged = [w.packaged for w in missing if w.packaged]
    if packaged:
        files = ", ".join(str(p) for p in packaged)
        return Withheld(entry, f"model {entry.key} is unavailable: packaged file(s) {files} missing from this install")
    reason = (
        f"model {entry.key} is not installed: its weights are not in {settings.models_dir}; "
        f"run `{fetch_command(entry.name)}` on the server (MIRSTREAM_MODELS_DIR) and restart it"
    )
    return Withheld(entry, reason)


def with_weight_paths(entry: ModelEntry, models_dir: Path) -> ModelEntry:
    """``entry`` with ``params.weight_files`` = role → absolute path, for the analyzer to load."""
    if not entry.weights:
        return entry
    paths = {w.role: str(local_path(w, models_dir).resolve()) for w in entry.weights}
    return replace(entry, params={**entry.params, WEIGHT_PARAM: paths})


def resolve_availability(registry: Registry, settings: Settings) -> Registry:
    """Split the registry into served entries (weights resolved) and withheld ones (with the reason).

    Idempotent: entries already withheld stay withheld; served ones are re-checked.
    """
    served, withheld = [], list(registry.withheld)
    for entry in registry.entries:
        why = unavailable(entry, settings)
        if why is None:
            served.append(with_weight_paths(entry, settings.models_dir))
        else:
            withheld.append(why)
    return replace(registry, entries=tuple(served), withheld=tuple(withheld))


# --- verification ---------------------------------------------------------------------------------------------


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    """Decode one protobuf varint at ``pos``; returns (value, next position)."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, int, memoryview | int]]:
    """Walk protobuf wire-format fields: (number, wire type, payload or integer); raises ValueError when malformed."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("length-delimited field runs past the end")
            yield number, wire, data[pos : pos + length]
            pos += length
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > len(data):
                raise ValueError("fixed-width field runs past the end")
            yield number, wire, int.from_bytes(data[pos : pos + width], "little")
            pos += width
        else:
            raise ValueError(f"unsupported wire type {wire}")


def graph_node_names(data: bytes) -> set[str]:
    """Names of the nodes of a frozen TensorFlow GraphDef (node = 1; NodeDef name = 1, op = 2).

    Raises ValueError when ``data`` is not a plausible GraphDef (an HTML error page, a truncated file ...).
    """
    names: set[str] = set()
    for number, wire, payload in _fields(memoryview(data)):
        if number == 1:
            if wire != 2:
                raise ValueError("GraphDef.node is not a message")
            assert isinstance(payload, memoryview)
            name = op = None
            for field, kind, value in _fields(payload):
                if field in (1, 2) and kind == 2:
                    assert isinstance(value, memoryview)
                    text = bytes(value).decode("utf-8")
                    name, op = (text, op) if field == 1 else (name, text)
            if not name or not op:
                raise ValueError("a NodeDef without a name or op")
            names.add(name)
    if not names:
        raise ValueError("no nodes")
    return names


def _node(tensor: str) -> str:
    """Node name of a tensor name (``PartitionedCall:1`` → ``PartitionedCall``)."""
    return tensor.rsplit(":", 1)[0] if tensor.rsplit(":", 1)[-1].isdigit() else tensor


def check_content(weight: WeightFile, path: Path) -> str:
    """Content check by kind (``.json`` metadata, ``.pb`` GraphDef); returns what was checked. Raises FetchError."""
    where = f"{weight.role} file {path.name}"
    suffix = Path(weight.path).suffix.lower()
    try:
        if suffix == ".json":
            if path.stat().st_size > MAX_METADATA_BYTES:
                raise FetchError(f"{where}: metadata larger than {MAX_METADATA_BYTES >> 20} MB")
            meta = parse_metadata(path.read_bytes())
            return f"metadata ({len(meta.classes)} classes, {meta.input} -> {meta.output})"
        if suffix == ".pb":
            nodes = graph_node_names(path.read_bytes())
            return f"TensorFlow GraphDef ({len(nodes)} nodes)"
    except MetadataError as exc:
        raise FetchError(f"{where}: bad metadata: {exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise FetchError(f"{where}: not a TensorFlow GraphDef ({exc})") from None
    return "size"


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(weight: WeightFile, path: Path) -> str:
    """Verify one file on disk: SHA-256 when recorded, else size (when recorded) and content. Raises FetchError."""
    size = path.stat().st_size
    if weight.size is not None and size != weight.size:
        raise FetchError(f"{weight.role} file {path.name}: {size} bytes, the registry expects {weight.size}")
    if weight.sha256 is not None:
        actual = sha256_of(path)
        if actual != weight.sha256:
            raise FetchError(
                f"{weight.role} file {path.name}: checksum mismatch (sha256 {actual}, the registry expects "
                f"{weight.sha256}); the download is corrupt or the file changed upstream"
            )
        return "sha256"
    return check_content(weight, path)


def check_entry(entry: ModelEntry, models_dir: Path) -> None:
    """Cross-file check for embedding+head entries: the nodes the metadata names exist in the head graph."""
    roles = {w.role: local_path(w, models_dir) for w in entry.weights}
    if "metadata" not in roles or "head" not in roles or not str(roles["head"]).endswith(".pb"):
        return
    try:
        meta = parse_metadata(roles["metadata"].read_bytes())
        nodes = graph_node_names(roles["head"].read_bytes())
    except (OSError, ValueError) as exc:
        raise FetchError(f"{entry.key}: {exc}") from None
    absent = [t for t in (meta.input, meta.output) if _node(t) not in nodes]
    if absent:
        raise FetchError(f"{entry.key}: the head graph has no node(s) {', '.join(absent)} named by its metadata")


# --- download -------------------------------------------------------------------------------------------------


def _allowed_url(url: httpx.URL | str) -> None:
    """HTTPS only (plain HTTP just for loopback test servers); checked on every request, redirects included."""
    parts = urlsplit(str(url))
    if parts.scheme == "https" or (parts.scheme == "http" and (parts.hostname or "") in LOOPBACK):
        return
    raise FetchError(f"refusing to download from {url}: only https:// URLs are allowed")


def make_client() -> httpx.Client:
    """An httpx client with bounded timeouts and redirects that re-checks the scheme of every hop."""

    def check(request: httpx.Request) -> None:
        _allowed_url(request.url)

    return httpx.Client(
        timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        event_hooks={"request": [check]},
        headers={"User-Agent": "mirstream-models-fetch"},
    )


@contextlib.contextmanager
def _temporary_beside(dest: Path) -> Iterator[Path]:
    """A temp file in ``dest``'s directory (so the final rename is atomic), removed unless renamed away."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _stream_to(client: httpx.Client, url: str, tmp: Path, expected: int | None) -> int:
    """GET ``url`` into ``tmp`` with a size cap and a total deadline; returns the byte count."""
    _allowed_url(url)
    cap = expected if expected is not None else MAX_FILE_BYTES
    deadline = time.monotonic() + TOTAL_TIMEOUT_S
    try:
        with client.stream("GET", url) as response:
            if response.status_code != 200:
                raise FetchError(f"{url}: HTTP {response.status_code} {response.reason_phrase}")
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > cap:
                raise FetchError(f"{url}: the server announces {int(declared)} bytes, more than the {cap} allowed")
            got = 0
            with tmp.open("wb") as out:
                for chunk in response.iter_bytes(CHUNK):
                    got += len(chunk)
                    if got > cap:
                        raise FetchError(f"{url}: more than the {cap} bytes allowed; download stopped")
                    if time.monotonic() > deadline:
                        raise FetchError(f"{url}: not finished after {TOTAL_TIMEOUT_S:.0f} s; download stopped")
                    out.write(chunk)
            if declared is not None and declared.isdigit() and got != int(declared):
                raise FetchError(f"{url}: truncated download ({got} of {declared} bytes)")
            return got
    except httpx.HTTPError as exc:
        raise FetchError(f"{url}: download failed: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file: ``present`` (already verified), ``downloaded`` or ``packaged``."""

    weight: WeightFile
    path: Path
    status: str
    detail: str
    sha256: str


def fetch_file(client: httpx.Client, weight: WeightFile, models_dir: Path) -> FileOutcome:
    """Make one file present and verified: skip it if it already verifies, else download, verify, rename."""
    dest = local_path(weight, models_dir)
    if weight.packaged:
        if not dest.is_file():
            raise FetchError(f"packaged file {weight.packaged} is missing from this installation (reinstall mirstream)")
        return FileOutcome(weight, dest, "packaged", "shipped with mirstream", sha256_of(dest))
    assert weight.url is not None
    if dest.is_file():
        try:
            detail = verify_file(weight, dest)
            return FileOutcome(weight, dest, "present", detail, sha256_of(dest))
        except FetchError:
            pass  # a stale or damaged copy: download it again
    with _temporary_beside(dest) as tmp:
        size = _stream_to(client, weight.url, tmp, weight.size)
        detail = verify_file(weight, tmp)
        digest = sha256_of(tmp)
        os.replace(tmp, dest)
    return FileOutcome(weight, dest, "downloaded", f"{size} bytes, verified: {detail}", digest)


def fetch_entry(
    entry: ModelEntry, models_dir: Path, client: httpx.Client, report: Callable[[FileOutcome], None]
) -> None:
    """Fetch and verify every file of ``entry``, then cross-check them; raises FetchError on the first failure."""
    for weight in entry.weights:
        try:
            report(fetch_file(client, weight, models_dir))
        except OSError as exc:
            raise FetchError(f"{weight.role} file {weight.path}: {exc}") from None
    check_entry(entry, models_dir)


# --- the `mirstream models fetch` command ---------------------------------------------------------------------


def select_entries(registry: Registry, names: list[str], everything: bool) -> list[ModelEntry]:
    """The entries to fetch: each ``name[:version]`` (any spelling or alias), or every entry with weights."""
    if everything:
        return [e for e in registry.catalogue() if any(w.url for w in e.weights)]
    chosen: list[ModelEntry] = []
    for spec in names:
        name, _, version = spec.partition(":")
        entry = registry.find(name, version or None)
        if entry is None:
            raise FetchError(f"unknown model {spec!r}; `mirstream models` lists the catalogue")
        if entry not in chosen:
            chosen.append(entry)
    return chosen


def fetch_cli(
    registry: Registry,
    settings: Settings,
    names: list[str],
    everything: bool,
    models_dir: Path | None,
    print_checksums: bool,
) -> int:
    """``mirstream models fetch``: exit 0 when every requested model is ready, 1 if any failed, 2 on bad usage."""
    if not names and not everything:
        print("mirstream models fetch: name at least one model, or pass --all", file=sys.stderr)
        return 2
    target = (models_dir or settings.models_dir).expanduser()
    try:
        entries = select_entries(registry, names, everything)
    except FetchError as exc:
        print(f"mirstream models fetch: {exc}", file=sys.stderr)
        return 2
    failed = 0

    def report(outcome: FileOutcome) -> None:
        print(f"  {outcome.weight.role:10} {outcome.path.name}: {outcome.status} ({outcome.detail})", flush=True)
        if print_checksums:
            print(f"  {'':10} sha256: {outcome.sha256}  size: {outcome.path.stat().st_size}", flush=True)

    with make_client() as client:
        for entry in entries:
            if not entry.weights:
                print(f"{entry.key}: needs no downloaded weights")
                continue
            print(f"{entry.key}: weights into {target}", flush=True)
            if entry.noncommercial:
                note = "" if settings.allow_noncommercial else "; this server disables them (MIRSTREAM_NONCOMMERCIAL)"
                print(f"  licence: {entry.license.get('weights', 'non-commercial')}: non-commercial use only{note}")
            try:
                fetch_entry(entry, target, client, report)
            except FetchError as exc:
                failed += 1
                print(f"{entry.key}: FAILED: {exc}", file=sys.stderr, flush=True)
                continue
            print(f"{entry.key}: ready (restart the server to serve it)", flush=True)
    return 1 if failed else 0
