"""Get the audio bytes for a job: the upload as-is, or an ``audio-url`` fetched with limits and SSRF checks.

The URL fetch streams into memory with the upload size cap, connect/total timeouts, a few redirects,
http(s) only, and refuses loopback/private/link-local/multicast/reserved targets (checked on every
hop's resolved addresses) unless MIRSTREAM_ALLOW_PRIVATE_URLS=1.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urljoin, urlsplit

import httpx

from serve_app.config import Settings
from serve_app.decode import AudioError
from serve_app.request import AnalysisJob


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


async def _check_host(host: str, port: int, settings: Settings) -> None:
    """Resolve the host and refuse it if any address is not a public unicast one."""
    if settings.allow_private_urls:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise AudioError(f"cannot resolve host {host!r} ({exc.strerror})") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            raise AudioError(
                f"refused to fetch from {host!r}: it resolves to the non-public address {address} "
                "(set MIRSTREAM_ALLOW_PRIVATE_URLS=1 to allow private targets)"
            )


async def _download(url: str, settings: Settings) -> bytes:
    """Follow at most ``url_max_redirects`` redirects by hand so every hop is checked, then read capped."""
    timeout = httpx.Timeout(settings.url_total_timeout_s, connect=settings.url_connect_timeout_s)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _ in range(settings.url_max_redirects + 1):
            host, port = _check_url(url)
            await _check_host(host, port, settings)
            try:
                async with client.stream("GET", url, headers={"Accept": "audio/*, */*"}) as response:
                    if response.is_redirect:
                        location = response.headers.get("location")
                        if not location:
                            raise AudioError(f"HTTP {response.status_code} redirect without a Location header")
                        url = urljoin(url, location)
                        continue
                    if response.status_code != 200:
                        raise AudioError(f"the URL answered HTTP {response.status_code} {response.reason_phrase}")
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
