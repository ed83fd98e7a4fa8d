"""The model graph: an entry may take other entries' results as inputs (a backbone feeding its heads).

Checked once at start-up (every upstream exists, declares the result fields its consumers require, no cycles)
and walked once per request: ``plan`` returns the requested entries plus everything they need, each once, in
an order where every entry comes after its upstreams (Triton's ensembles, done as separate deployments).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from models.base import ModelInput

if TYPE_CHECKING:
    from serve_app.registry.entries import ModelEntry


def _error(message: str) -> Exception:
    """A RegistryError (imported late: entries imports nothing from here, loader imports both)."""
    from serve_app.registry.entries import RegistryError

    return RegistryError(message)


def check_graph(entries: Iterable[ModelEntry]) -> None:
    """Refuse a missing upstream, an upstream whose output schema lacks a required field, or a cycle."""
    by_key = {e.key: e for e in entries}
    for entry in by_key.values():
        declared = entry.load_class().inputs
        for param, upstream in entry.upstream.items():
            source = by_key.get(upstream)
            if source is None:
                raise _error(
                    f"model {entry.key}: input {param!r} is bound to {upstream}, which is not in the registry "
                    f"(entries: {', '.join(sorted(by_key))})"
                )
            spec = declared[param]
            fields = (source.output_schema.get("properties") or {}).keys()
            missing = [f for f in spec.requires if f not in fields] if isinstance(spec, ModelInput) else []
            if missing:
                raise _error(
                    f"model {entry.key}: input {param!r} requires result field(s) {missing} that {upstream}'s "
                    "output_schema does not declare"
                )
    order(by_key.values(), by_key)


def order(wanted: Iterable[ModelEntry], by_key: Mapping[str, ModelEntry]) -> tuple[ModelEntry, ...]:
    """``wanted`` and all their upstreams, each once, upstreams first (depth-first, in request order).

    Raises RegistryError naming the entries of a cycle.
    """
    done: dict[str, ModelEntry] = {}
    path: list[str] = []

    def visit(entry: ModelEntry) -> None:
        if entry.key in done:
            return
        if entry.key in path:
            cycle = path[path.index(entry.key) :] + [entry.key]
            raise _error(f"the model graph has a cycle: {' -> '.join(cycle)}")
        path.append(entry.key)
        for upstream in entry.upstream.values():
            visit(by_key[upstream])
        path.pop()
        done[entry.key] = entry

    for entry in wanted:
        visit(entry)
    return tuple(done.values())


def dependents(entries: Iterable[ModelEntry]) -> dict[str, list[str]]:
    """``name:version`` → the entries that take its results directly."""
    out: dict[str, list[str]] = {}
    for entry in entries:
        for upstream in entry.upstream.values():
            out.setdefault(upstream, []).append(entry.key)
    return out
