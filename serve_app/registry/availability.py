"""Which catalogued entries this server deploys, which it keeps warm, and where their weight files are.

An entry is withheld (listed with the reason, never deployed) when a weight file is absent, when its weights
are non-commercial while ``MIRSTREAM_NONCOMMERCIAL=false``, or when an upstream model it needs is withheld.
Warm entries keep their minimum replicas; the rest scale from zero on the first request that needs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import models
from serve_app.registry.entries import WEIGHT_PARAM, ModelEntry, Registry, RegistryError, WeightFile, Withheld
from serve_app.registry.graph import order

if TYPE_CHECKING:
    from serve_app.config import Settings

PACKAGED_WEIGHTS = Path(models.__file__).resolve().parent / "weights"  # inside the installed package


def fetch_command(entry: ModelEntry) -> str:
    """The command an operator runs to install ``entry``'s weights (the bare name only for its default version)."""
    return f"mirstream models fetch {entry.name if entry.default else entry.key}"


def local_path(weight: WeightFile, models_dir: Path) -> Path:
    """Where ``weight`` lives on this machine: in the installed ``models`` package, or under the models dir."""
    return PACKAGED_WEIGHTS / weight.packaged if weight.packaged else models_dir / weight.path


def missing_files(entry: ModelEntry, models_dir: Path) -> list[WeightFile]:
    """Files of ``entry`` that are absent (or of the wrong recorded size): the cheap check done at start-up.

    The SHA-256 is checked where the file is used (the replica, at load) and by ``mirstream models fetch``.
    """
    missing = []
    for weight in entry.weights:
        try:
            size = local_path(weight, models_dir).stat().st_size
        except OSError:
            missing.append(weight)
            continue
        if size == 0 or (weight.size is not None and size != weight.size):
            missing.append(weight)
    return missing


def by_policy(entry: ModelEntry, allow_noncommercial: bool) -> Withheld | None:
    """Withheld by an operator setting: non-commercial weights while ``MIRSTREAM_NONCOMMERCIAL=false``."""
    if entry.noncommercial and not allow_noncommercial:
        weights = entry.license.get("weights", "non-commercial")
        reason = (
            f"model {entry.key} is disabled on this server: its weights are licensed for non-commercial use only "
            f"({weights}) and MIRSTREAM_NONCOMMERCIAL=false"
        )
        return Withheld(entry, reason, by_policy=True)
    return None


def unavailable(entry: ModelEntry, settings: Settings) -> Withheld | None:
    """Why ``entry`` itself cannot be served here (naming the setting or the command that fixes it), or None.

    Reasons never show this machine's paths: clients learn what to run, not where the server keeps files.
    """
    policy = by_policy(entry, settings.allow_noncommercial)
    if policy is not None:
        return policy
    missing = missing_files(entry, settings.models_dir)
    if not missing:
        return None
    if any(w.packaged for w in missing):
        roles = ", ".join(w.role for w in missing if w.packaged)
        return Withheld(
            entry, f"model {entry.key} is unavailable: its packaged {roles} file is missing from this install"
        )
    reason = (
        f"model {entry.key} is not installed: its weights have not been downloaded to this server; "
        f"run `{fetch_command(entry)}` on the server and restart it"
    )
    return Withheld(entry, reason)


def with_weight_paths(entry: ModelEntry, models_dir: Path) -> ModelEntry:
    """``entry`` with ``params.weight_files`` = role → absolute path, for the analyzer to load."""
    if not entry.weights:
        return entry
    paths = {w.role: str(local_path(w, models_dir).resolve()) for w in entry.weights}
    return replace(entry, params={**entry.params, WEIGHT_PARAM: paths})


def resolve_availability(registry: Registry, settings: Settings) -> Registry:
    """Split the registry into served entries (weights resolved, warm set applied) and withheld ones (with why).

    An entry whose upstream is withheld is withheld too, naming that upstream. Idempotent.
    """
    resolved = withhold(registry, lambda entry: unavailable(entry, settings))
    served = tuple(with_weight_paths(e, settings.models_dir) for e in resolved.entries)
    return apply_warm(replace(resolved, entries=served), settings.warm)


def withhold(registry: Registry, judge: Callable[[ModelEntry], Withheld | None]) -> Registry:
    """Withhold every entry ``judge`` refuses, and every entry downstream of one (the reason names it)."""
    withheld = {w.entry.key: w for w in registry.withheld}
    by_key = {e.key: e for e in registry.entries}
    for entry in order(registry.entries, by_key):  # upstreams first, so their verdict is known
        why = judge(entry)
        blocked = [u for u in entry.upstream.values() if u in withheld]
        if why is None and blocked:
            why = _blocked_by(entry, blocked[0], withheld[blocked[0]])
        if why is not None:
            withheld[entry.key] = why
    served = tuple(e for e in registry.entries if e.key not in withheld)
    return replace(registry, entries=served, withheld=tuple(withheld.values()))


def _blocked_by(entry: ModelEntry, upstream: str, cause: Withheld) -> Withheld:
    """An entry withheld because a model it needs is: the operator setting, or the one command that fetches both."""
    if cause.by_policy:
        return Withheld(entry, f"model {entry.key} is disabled: it needs {upstream} ({cause.reason})", by_policy=True)
    if "not installed" in cause.reason:
        return Withheld(
            entry,
            f"model {entry.key} is not installed: it needs {upstream}, whose weights have not been downloaded to "
            f"this server; run `{fetch_command(entry)}` on the server (it fetches both) and restart it",
        )
    return Withheld(entry, f"model {entry.key} is unavailable: it needs {upstream} ({cause.reason})")


def apply_warm(registry: Registry, warm: frozenset[str] | None) -> Registry:
    """Keep warm the entries ``warm`` names (``name`` = its default, ``name:version``, ``all`` or ``none``) and
    every upstream they need; None keeps the registry's own ``warm:`` flags."""
    if warm is None:
        wanted = [e for e in registry.entries if e.warm]
    elif "all" in warm:
        wanted = list(registry.entries)
    else:
        wanted = []
        for spec in sorted(warm - {"none"}):
            name, _, version = spec.partition(":")
            entry = registry.find(name, version or None)
            if entry is None:
                raise RegistryError(f"MIRSTREAM_WARM / --warm names {spec!r}, which is not in the registry")
            if entry in registry.entries:
                wanted.append(entry)
    keys = {e.key for e in order(wanted, {e.key: e for e in registry.entries})}
    return replace(registry, entries=tuple(replace(e, warm=e.key in keys) for e in registry.entries))


class WeightsError(RuntimeError):
    """A weight file is not the one the registry records (altered, truncated or replaced)."""


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_weights(entry: ModelEntry) -> None:
    """Check every resolved weight file of ``entry`` against its recorded SHA-256 (done once, where it loads)."""
    paths = entry.params.get(WEIGHT_PARAM) or {}
    for weight in entry.weights:
        if weight.sha256 is None or weight.role not in paths:
            continue
        actual = sha256_of(Path(paths[weight.role]))
        if actual != weight.sha256:
            where = f"packaged file {weight.packaged}" if weight.packaged else f"downloaded file {weight.path}"
            fix = "reinstall mirstream" if weight.packaged else f"run `{fetch_command(entry)}` again"
            raise WeightsError(
                f"{entry.key}: {where} ({weight.role}) has SHA-256 {actual}, the registry records {weight.sha256}: "
                f"the file was altered or corrupted; {fix}"
            )
