"""Get the audio bytes for a job: the upload as-is, or an ``audio-url`` fetched with limits and SSRF checks.

The URL fetch streams into memory with the upload size cap, connect/total timeouts, a few redirects,
http(s) only, and refuses loopback/private/link-local/multicast/reserved targets (checked on every
hop's resolved addresses, every record) unless MIRSTREAM_ALLOW_PRIVATE_URLS=1, and connects to
the address it checked, so DNS rebinding between check and connect is not possible.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from serve_app.config import Settings
from serve_app.ingress.decode import AudioError
from serve_app.ingress.request import AnalysisJob


async def audio_bytes(job: AnalysisJob, settings: Settings) -> bytes:
    """The job's audio: the body, or the downloaded ``audio-url``."""
    if job.body is not None:
        return job.body
    assert job.audio_url is not None
    try:
        async with asyncio.timeout(settings.url_total_timeout_s):
            return await _download(job.audio_url, settings)
    except TimeoutError:
        raise AudioError(f"the download took longer than {settings.url_total_timeout_s:.0f} s") from None


_NOT_AUDIO = ("text/", "application/json", "application/xml", "application/xhtml", "image/", "video/x-flv")


def _check_url(url: str) -> tuple[str, int]:
    """Accept absolute http(s) URLs only; return host and port."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise AudioError(f"only http and https URLs are supported, got {parts.scheme or 'no'} scheme")
    if not parts.hostname:
        raise AudioError("the URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise AudioError("the URL has an invalid port") from None
    return parts.hostname, port


async def resolve(host: str, port: int) -> list[str]:
    """DNS lookup (the edge of the world: tests replace this to play rebinding attacks)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


async def _pinned_address(host: str, port: int, settings: Settings) -> str:
    """Resolve once, refuse if ANY answer is non-public, and return the address to connect to.

    Connecting to the checked address (instead of letting the HTTP client resolve again) is what
    stops DNS rebinding: a second lookup could return 127.0.0.1 after the first returned a public IP.
    """
    try:
        answers = await resolve(host, port)
    except socket.gaierror as exc:
        raise AudioError(f"cannot resolve host {host!r} ({exc.strerror})") from None
    if not answers:
        raise AudioError(f"cannot resolve host {host!r}")
    for raw in answers:
        address = ipaddress.ip_address(raw.split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not settings.allow_private_urls and (not address.is_global or address.is_multicast):
            raise AudioError(
                f"refused to fetch from {host!r}: it resolves to the non-public address {address} "
                "(set MIRSTREAM_ALLOW_PRIVATE_URLS=1 to allow private targets)"
            )
    return answers[0].split("%")[0]


def _pinned_request(url: str, address: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """The URL rewritten to the checked IP, with the original Host header and TLS name (SNI + cert check)."""
    parts = urlsplit(url)
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    host_header = parts.netloc.rpartition("@")[2]
    extensions = {"sni_hostname": parts.hostname or ""} if parts.scheme == "https" else {}
    return urlunsplit(parts._replace(netloc=netloc)), {"Host": host_header}, extensions


async def _download(url: str, settings: Settings) -> bytes:
    """Follow at most ``url_max_redirects`` redirects by hand so every hop is resolved, checked and pinned."""
    timeout = httpx.Timeout(settings.url_total_timeout_s, connect=settings.url_connect_timeout_s)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _ in range(settings.url_max_redirects + 1):
            host, port = _check_url(url)
            address = await _pinned_address(host, port, settings)
            target, headers, extensions = _pinned_request(url, address)
            headers["Accept"] = "audio/*, application/octet-stream;q=0.9, */*;q=0.5"
            try:
                async with client.stream("GET", target, headers=headers, extensions=extensions) as response:
                    if response.is_redirect:
                        location = response.headers.get("location")
                        if not location:
                            raise AudioError(f"HTTP {response.status_code} redirect without a Location header")
                        url = urljoin(url, location)
                        continue
                    if response.status_code != 200:
                        raise AudioError(f"the URL answered HTTP {response.status_code} {response.reason_phrase}")
                    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
                    if kind.startswith(_NOT_AUDIO):
                        raise AudioError(f"the URL returned {kind}, not an audio file")
                    return await _read_capped(response, settings.max_upload_bytes)
            except httpx.TimeoutException:
                raise AudioError("timed out connecting to or reading from the URL") from None
            except httpx.HTTPError as exc:
                raise AudioError(f"could not fetch the URL ({type(exc).__name__}: {exc})") from None
        raise AudioError(f"more than {settings.url_max_redirects} redirects")


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """Read the body into memory, stopping as soon as it passes ``limit`` bytes."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise AudioError(f"the file is {int(declared) / 2**20:.1f} MB; the limit is {limit / 2**20:.1f} MB")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise AudioError(f"the file is over the {limit / 2**20:.1f} MB limit")
        chunks.append(chunk)
    return b"".join(chunks)
