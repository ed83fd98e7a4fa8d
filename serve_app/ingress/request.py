"""Turn an HTTP request into a validated AnalysisJob, or a RequestError carrying the HTTP status to send."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from starlette.requests import Request

from serve_app.config import Settings
from serve_app.registry import ModelEntry, Registry


class RequestError(Exception):
    """A request-level problem answered with a plain HTTP error and ``{"detail": ...}``."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


@dataclass(frozen=True)
class AnalysisJob:
    """What to analyse: the resolved models and exactly one audio source."""

    models: tuple[ModelEntry, ...]
    body: bytes | None
    audio_url: str | None


def _catalogue(registry: Registry) -> str:
    """'key (1), bpm_degara (1), ...' for error messages that say what exists."""
    return ", ".join(f"{name} (versions: {', '.join(v)})" for name, v in registry.names().items())


def parse_models(spec: str | None, registry: Registry, limit: int | None = None) -> tuple[ModelEntry, ...]:
    """Resolve ``key:1, bpm_degara,loudness-ebur128`` to entries; repeats run once, order is kept.

    A catalogued model that this server does not deploy is refused with its reason: 409 when its weights are
    not installed (``mirstream models fetch NAME`` fixes it), 403 when an operator setting turned it off.
    """
    if spec is None or not spec.strip():
        raise RequestError(
            400,
            f"missing 'models' query parameter: pass ?models=name[:version],... (available: {_catalogue(registry)})",
        )
    chosen: list[ModelEntry] = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            raise RequestError(400, f"malformed 'models' value {spec!r}: empty item between commas")
        name, sep, version = (part.strip() for part in item.partition(":"))
        if not name or (sep and not version) or ":" in version:
            raise RequestError(400, f"malformed model spec {item!r}: use 'name' or 'name:version'")
        entry = registry.find(name, version if sep else None)
        if entry is None:
            known = registry.find(name, None)
            if known is not None:
                versions = ", ".join(registry.names()[known.name])
                raise RequestError(404, f"model {known.name} has no version {version!r}; available: {versions}")
            raise RequestError(404, f"unknown model {name!r}; available: {_catalogue(registry)}")
        withheld = registry.why_withheld(entry)
        if withheld is not None:  # catalogued but not deployed here: say why, before any audio is read
            raise RequestError(403 if withheld.by_policy else 409, withheld.reason)
        if entry not in chosen:
            chosen.append(entry)
    if limit is not None and len(chosen) > limit:
        raise RequestError(400, f"{len(chosen)} models requested; this server runs at most {limit} per request")
    return tuple(chosen)


async def read_body(request: Request, limit: int) -> bytes:
    """Read the upload, answering 413 from Content-Length at once, or as soon as the stream passes ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, _too_large(int(declared), limit))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, _too_large(size, limit, at_least=True))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int, at_least: bool = False) -> str:
    """413 detail with both sizes in MB."""
    prefix = "at least " if at_least else ""
    return (
        f"upload is {prefix}{size / 2**20:.1f} MB; this server accepts at most {limit / 2**20:.1f} MB "
        "(MIRSTREAM_MAX_UPLOAD_MB)"
    )


async def parse_request(request: Request, registry: Registry, settings: Settings) -> AnalysisJob:
    """Validate models, then the audio source: raw body XOR a URL-encoded ``audio-url`` header.

    A multipart form is refused by name (415) rather than decoded as audio and failing as "not audio".
    """
    models = parse_models(request.query_params.get("models"), registry, settings.max_models_per_request)
    raw_url = request.headers.get("audio-url", "").strip()
    if request.headers.get("content-type", "").lower().startswith("multipart/"):
        raise RequestError(
            415,
            "the body must be the audio file itself, not a multipart form: "
            "send it with curl --data-binary @track.mp3 (not -F), or use an 'audio-url' header",
        )
    body = await read_body(request, settings.max_upload_bytes)
    if raw_url and body:
        raise RequestError(400, "send either the audio as the request body or an 'audio-url' header, not both")
    if not raw_url and not body:
        raise RequestError(
            400, "no audio: send the file as the request body (--data-binary @track.mp3) or an 'audio-url' header"
        )
    return AnalysisJob(models=models, body=body or None, audio_url=unquote(raw_url) if raw_url else None)
