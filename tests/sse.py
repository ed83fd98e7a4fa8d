"""A strict reader of the contract's SSE framing, so tests check the bytes clients really get."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Stream:
    """One stream: the HTTP response head, the parsed events in order, and the comment lines seen."""

    status: int
    headers: httpx.Headers
    events: list[dict[str, Any]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    body: bytes = b""

    def statuses(self) -> list[str]:
        """The ``status`` of every event, in order."""
        return [e["status"] for e in self.events]

    def by_model(self) -> dict[str, dict[str, Any]]:
        """Model events keyed by model name."""
        out = {}
        for e in self.events:
            if e["status"] == "completed":
                out[e["result"]["model_name"]] = e
            elif e["status"] == "error" and "model_name" in e:
                out[e["model_name"]] = e
        return out


def parse(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Split an SSE body into events (each exactly one ``data:`` line then a blank line) and comments."""
    events, comments = [], []
    assert text.endswith("\n\n") or text == "", f"stream does not end with a blank line: {text[-80:]!r}"
    for block in text.split("\n\n")[:-1]:
        lines = block.split("\n")
        if lines[0].startswith(":"):
            assert len(lines) == 1, f"comment block with extra lines: {block!r}"
            comments.append(lines[0])
            continue
        assert len(lines) == 1 and lines[0].startswith("data: "), f"malformed event block: {block!r}"
        events.append(json.loads(lines[0][len("data: ") :]))
    return events, comments


def post(
    base: str,
    models: str | None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> Stream:
    """POST to the stream endpoint and read the whole response."""
    params = {} if models is None else {"models": models}
    with httpx.Client(timeout=timeout) as client:
        r = client.post(f"{base}/v1/analysis/stream", params=params, content=content, headers=headers or {})
    stream = Stream(status=r.status_code, headers=r.headers, body=r.content)
    if r.status_code == 200:
        stream.events, stream.comments = parse(r.text)
    return stream
