"""Python client for a mirstream server: typed SSE events, HTTP errors as exceptions, safe retries.

    from serve_app.client import Client

    with Client("http://127.0.0.1:8000") as client:
        for event in client.stream("track.mp3", models="key,bpm_degara"):
            print(event)

Part of the base install (httpx, httpx-sse): importing it loads no server code, Ray or model runtime.
``AsyncClient`` is the same API with ``async for``. Modules: ``events`` (the contract's events as types),
``errors`` (exceptions), ``http`` (the two clients and the retry policy).
"""

from serve_app.client.errors import (
    AuthenticationError,
    MirstreamConnectionError,
    MirstreamError,
    MirstreamHTTPError,
    MirstreamProtocolError,
    RateLimitError,
    ServerBusyError,
)
from serve_app.client.events import (
    Analysis,
    AudioError,
    Completed,
    Event,
    Finished,
    ModelError,
    ModelInfo,
    Started,
    parse_event,
)
from serve_app.client.http import DEFAULT_URL, AsyncClient, Client, RetryPolicy

__all__ = [
    "DEFAULT_URL",
    "Analysis",
    "AsyncClient",
    "AudioError",
    "AuthenticationError",
    "Client",
    "Completed",
    "Event",
    "Finished",
    "MirstreamConnectionError",
    "MirstreamError",
    "MirstreamHTTPError",
    "MirstreamProtocolError",
    "ModelError",
    "ModelInfo",
    "RateLimitError",
    "RetryPolicy",
    "ServerBusyError",
    "Started",
    "parse_event",
]
