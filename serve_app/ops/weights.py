"""``mirstream models fetch``: download model weights and verify them before they are installed.

Registry entries list their files under ``weights`` (serve_app.registry.WeightFile). Each file streams over
HTTPS to a temporary file beside its destination in the models directory (``MIRSTREAM_MODELS_DIR``), is
verified (its SHA-256 when the registry records one; otherwise the recorded size plus the analyzer's own format
check, ``Analyzer.check_weights``) and only then renamed into place, so the models directory never holds a
partial or unverified file. Which entries a server then serves is ``registry.availability``'s business.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from serve_app.config import Settings
from serve_app.registry import ModelEntry, Registry, WeightFile
from serve_app.registry.availability import local_path, sha256_of
from serve_app.registry.graph import order

CONNECT_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 60.0  # longest silence between two chunks
TOTAL_TIMEOUT_S = 30 * 60.0  # per file
MAX_REDIRECTS = 5
MAX_FILE_BYTES = 1 << 30  # without a recorded size, nothing above 1 GiB is accepted
CHUNK = 1 << 16
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


class FetchError(Exception):
    """A file could not be downloaded or failed verification; the message names the file and the reason."""


Check = Callable[[str, Path], None]  # the analyzer's format check: (role, path) → raise ValueError if wrong


def verify_file(weight: WeightFile, path: Path, check: Check) -> str:
    """Verify one file on disk: its SHA-256 when recorded, else the recorded size and the analyzer's format check."""
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
    try:
        check(weight.role, path)
    except (OSError, ValueError) as exc:
        raise FetchError(f"{weight.role} file {Path(weight.path).name}: {exc}") from None
    return "size and format" if weight.size is not None else "format"


def check_entry(entry: ModelEntry, models_dir: Path) -> None:
    """Once every file is in place, the analyzer's format check again, now that files can see each other (a head
    graph must hold the nodes its metadata names); only files without a recorded SHA-256."""
    cls = entry.load_class()
    for weight in entry.weights:
        if weight.sha256 is None:
            try:
                cls.check_weight(weight.role, local_path(weight, models_dir))
            except (OSError, ValueError) as exc:
                raise FetchError(f"{entry.key}: {weight.role} file {Path(weight.path).name}: {exc}") from None


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


def fetch_file(client: httpx.Client, weight: WeightFile, models_dir: Path, check: Check) -> FileOutcome:
    """Make one file present and verified: skip it if it already verifies, else download, verify, rename."""
    dest = local_path(weight, models_dir)
    if weight.packaged:
        if not dest.is_file():
            raise FetchError(f"packaged file {weight.packaged} is missing from this installation (reinstall mirstream)")
        return FileOutcome(weight, dest, "packaged", "shipped with mirstream", sha256_of(dest))
    assert weight.url is not None
    if dest.is_file():
        try:
            detail = verify_file(weight, dest, check)
            return FileOutcome(weight, dest, "present", detail, sha256_of(dest))
        except FetchError:
            pass  # a stale or damaged copy: download it again
    with _temporary_beside(dest) as tmp:
        size = _stream_to(client, weight.url, tmp, weight.size)
        detail = verify_file(weight, tmp, check)
        digest = sha256_of(tmp)
        os.replace(tmp, dest)
    return FileOutcome(weight, dest, "downloaded", f"{size} bytes, verified: {detail}", digest)


def fetch_entry(
    entry: ModelEntry, models_dir: Path, client: httpx.Client, report: Callable[[FileOutcome], None]
) -> None:
    """Fetch and verify every file of ``entry``, then cross-check them; raises FetchError on the first failure."""
    check = entry.load_class().check_weight
    for weight in entry.weights:
        try:
            report(fetch_file(client, weight, models_dir, check))
        except OSError as exc:
            raise FetchError(f"{weight.role} file {weight.path}: {exc}") from None
    check_entry(entry, models_dir)


# --- the `mirstream models fetch` command ---------------------------------------------------------------------


def select_entries(registry: Registry, names: list[str], everything: bool) -> list[ModelEntry]:
    """The entries to fetch: each ``name[:version]`` (any spelling or alias) and every upstream it needs (a head's
    backbone comes with it), or every entry with downloadable weights; upstreams first."""
    if everything:
        wanted = [e for e in registry.catalogue() if any(w.url for w in e.weights)]
    else:
        wanted = []
        for spec in names:
            name, _, version = spec.partition(":")
            entry = registry.find(name, version or None)
            if entry is None:
                raise FetchError(f"unknown model {spec!r}; `mirstream models` lists the catalogue")
            wanted.append(entry)
    return list(order(wanted, registry.by_key()))


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
