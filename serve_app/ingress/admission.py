"""Who may start a stream, and how many: API keys (401), per-client rate limit (429), concurrent streams (503),
and the drain at shutdown (new streams 503, open ones finish or are ended cleanly at the deadline).

Counters are per ingress process (one Ray ingress replica, or the in-process server): with N ingress
replicas the server-wide concurrency cap is N × MIRSTREAM_MAX_CONCURRENT_STREAMS.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request

from serve_app.config import Settings, hash_key
from serve_app.ingress.request import RequestError

_BUCKET_IDLE_S = 300.0


@dataclass
class _Bucket:
    """Token bucket: ``tokens`` refill at ``rate`` per second up to ``burst``."""

    tokens: float
    updated: float


class Admission:
    """The gate in front of the stream endpoint; one per ingress process."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._buckets: dict[str, _Bucket] = {}
        self.in_flight = 0
        self.draining = False
        self.open_streams: dict[int, Callable[[str], None]] = {}  # id → abort(reason), for the drain deadline

    def identify(self, request: Request) -> str:
        """Check ``Authorization: Bearer`` when keys are configured; return the rate-limit identity.

        The identity is the key's hash (keys are never stored or logged) or, without auth, the client address.
        """
        if not self._settings.api_key_hashes:
            return f"addr:{request.client.host if request.client else '-'}"
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise RequestError(
                401, "missing API key: send 'Authorization: Bearer <key>'", {"WWW-Authenticate": "Bearer"}
            )
        digest = hash_key(token.strip())
        if not any(hmac.compare_digest(digest, known) for known in self._settings.api_key_hashes):
            raise RequestError(401, "invalid API key", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return f"key:{digest[:16]}"

    def check_rate(self, identity: str) -> None:
        """429 with Retry-After when this identity has used up its token bucket."""
        rate = self._settings.rate_limit_per_second
        if rate is None:
            return
        now = time.monotonic()
        burst = float(max(1, self._settings.rate_limit_burst))
        bucket = self._buckets.setdefault(identity, _Bucket(tokens=burst, updated=now))
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens < 1.0:
            wait = math.ceil((1.0 - bucket.tokens) / rate)
            raise RequestError(
                429, f"rate limit of {rate:g} requests/s exceeded; retry in {wait} s", {"Retry-After": str(wait)}
            )
        bucket.tokens -= 1.0
        if len(self._buckets) > 10_000:
            self._prune(now)

    def _prune(self, now: float) -> None:
        """Forget clients idle for a while so the table cannot grow without bound."""
        for key in [k for k, b in self._buckets.items() if now - b.updated > _BUCKET_IDLE_S]:
            del self._buckets[key]

    def acquire_stream(self) -> None:
        """Take a stream slot or answer 503 at once (no unbounded queue, nothing new while draining)."""
        if self.draining:
            raise RequestError(503, "server shutting down: not starting new analyses; retry", {"Retry-After": "2"})
        limit = self._settings.max_concurrent_streams
        if self.in_flight >= limit:
            raise RequestError(503, f"server busy: {limit} analyses in progress; retry shortly", {"Retry-After": "2"})
        self.in_flight += 1

    def release_stream(self) -> None:
        """Give the slot back (called exactly once per acquire)."""
        self.in_flight -= 1

    async def drain(self, seconds: float, reason: str) -> int:
        """Refuse new streams, wait up to ``seconds`` for the open ones to finish, then end the rest cleanly (each
        unfinished model gets an error event with ``reason``, then ``finished``). Returns how many had to be ended."""
        self.draining = True
        deadline = time.monotonic() + seconds
        while self.open_streams and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        ended = len(self.open_streams)
        for abort in list(self.open_streams.values()):
            abort(reason)
        flush = time.monotonic() + 2.0
        while self.open_streams and time.monotonic() < flush:  # the ended streams send their last events
            await asyncio.sleep(0.05)
        return ended
