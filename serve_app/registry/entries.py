"""The registry's data: one immutable ``ModelEntry`` per ``name:version`` and the ``Registry`` that holds them.

Parsing and validation live in ``loader``; the model graph in ``graph``; how an entry becomes a deployment in
``deployment``; which entries this machine can serve in ``availability``. Nothing here imports Ray or a model
runtime, so the client-free tools (k8s render, the CLI's catalogue) stay light.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any

from models.base import Analyzer, AudioInput, InputSpec

WEIGHT_PARAM = "weight_files"  # role -> absolute path of each installed file, injected by the availability check


class RegistryError(ValueError):
    """The registry file is invalid; the message says which entry and what to change."""


def normalize_name(name: str) -> str:
    """Canonical lookup key: case-insensitive, '-' and '_' equivalent (the hosted docs use both)."""
    return name.strip().lower().replace("-", "_")


@dataclass(frozen=True)
class Resources:
    """Ray actor resources for one replica; fractional CPUs let the whole catalogue fit on 2 cores."""

    num_cpus: float = 0.5
    num_gpus: float = 0.0
    memory_mb: int | None = None


@dataclass(frozen=True)
class Autoscaling:
    """Ray Serve autoscaling bounds for one deployment (``min_replicas`` applies while it is kept warm)."""

    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: float = 2.0


@dataclass(frozen=True)
class Batching:
    """Ray Serve dynamic batching for one deployment (``@serve.batch``): concurrent requests share one call."""

    max_batch_size: int
    batch_wait_timeout_s: float


@dataclass(frozen=True)
class WeightFile:
    """One file an analyzer needs, with its SHA-256: shipped inside the ``models`` package, or downloaded.

    ``packaged`` is relative to the ``models`` package's ``weights/`` folder (so it works from any install);
    ``path`` is where a downloaded file lives under the models directory (``MIRSTREAM_MODELS_DIR``).
    """

    role: str
    path: str
    sha256: str | None = None
    url: str | None = None
    size: int | None = None
    packaged: str | None = None

    def describe(self) -> dict[str, Any]:
        """The public form served by ``GET /v1/models`` (no local absolute paths)."""
        out: dict[str, Any] = {"role": self.role}
        if self.packaged:
            out["packaged"] = self.packaged
        else:
            out.update(url=self.url, path=self.path)
        out.update({k: v for k, v in (("sha256", self.sha256), ("size", self.size)) if v is not None})
        return out


@dataclass(frozen=True)
class ModelEntry:
    """One ``name:version`` of one analyzer: everything needed to deploy, call and document it.

    ``audio`` is the decoded-track input (None for a node fed only by other models) and ``upstream`` maps each
    other analyzer argument to the ``name:version`` whose results feed it (the model graph).
    """

    name: str
    version: str
    default: bool
    aliases: tuple[str, ...]
    class_path: str
    description: str
    params: dict[str, Any]
    audio: AudioInput | None
    audio_param: str | None
    upstream: dict[str, str]
    resources: Resources
    autoscaling: Autoscaling
    max_ongoing_requests: int
    timeout_s: float
    license: dict[str, str | bool]
    output_schema: dict[str, Any]
    weights: tuple[WeightFile, ...] = ()
    batching: Batching | None = None
    warm: bool = False

    @property
    def noncommercial(self) -> bool:
        """True when the weights' licence forbids commercial use (``license.noncommercial: true``)."""
        return self.license.get("noncommercial") is True

    @property
    def key(self) -> str:
        """``name:version``, the id used in requests, logs and upstream references."""
        return f"{self.name}:{self.version}"

    @property
    def deployment_name(self) -> str:
        """The Ray Serve deployment name for this entry (colons are avoided in Ray names)."""
        return f"{self.name}-v{self.version}"

    @property
    def input(self) -> InputSpec | None:
        """The audio representation this entry takes (None when only other models feed it)."""
        return self.audio.spec if self.audio is not None else None

    def load_class(self) -> type[Analyzer]:
        """Import the analyzer class named by ``class`` (``package.module.ClassName``)."""
        return import_analyzer(self.class_path, self.key)

    def describe_inputs(self) -> dict[str, Any]:
        """Each analyzer argument and what feeds it: the decoded audio (rate, channels, minimum) or a model."""
        out: dict[str, Any] = {}
        if self.audio is not None and self.audio_param is not None:
            out[self.audio_param] = {
                "audio": {
                    "sample_rate": self.audio.sample_rate or "native",
                    "channels": self.audio.channels,
                    "min_seconds": self.audio.min_seconds,
                }
            }
        out.update({param: {"model": key} for param, key in self.upstream.items()})
        return out

    def describe(self) -> dict[str, Any]:
        """The public JSON description served by ``GET /v1/models``."""
        spec = self.input
        return {
            "name": self.name,
            "version": self.version,
            "default": self.default,
            "aliases": list(self.aliases),
            "description": self.description,
            "params": {k: v for k, v in self.params.items() if k != WEIGHT_PARAM},
            "input": {"sample_rate": spec.sample_rate or "native", "channels": spec.channels} if spec else None,
            "inputs": self.describe_inputs(),
            "resources": {"num_cpus": self.resources.num_cpus, "num_gpus": self.resources.num_gpus},
            "autoscaling": {
                "min_replicas": self.autoscaling.min_replicas if self.warm else 0,
                "max_replicas": self.autoscaling.max_replicas,
                "target_ongoing_requests": self.autoscaling.target_ongoing_requests,
            },
            "warm": self.warm,
            "timeout_s": self.timeout_s,
            "license": self.license,
            "output_schema": self.output_schema,
            "weights": [w.describe() for w in self.weights],
        }


def import_analyzer(class_path: str, where: str) -> type[Analyzer]:
    """Resolve ``models.x.ClassName`` to a class, or raise RegistryError saying what is wrong."""
    module_name, _, class_name = class_path.rpartition(".")
    if not module_name:
        raise RegistryError(f"{where}: class {class_path!r} must be 'module.ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(f"{where}: cannot import module {module_name!r} for class {class_path!r}: {exc}") from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise RegistryError(f"{where}: unknown class {class_path!r} (module {module_name!r} has no {class_name!r})")
    if not (inspect.isclass(cls) and issubclass(cls, Analyzer)):
        raise RegistryError(f"{where}: {class_path!r} is not a subclass of models.base.Analyzer")
    return cls


@dataclass(frozen=True)
class Withheld:
    """A catalogued entry that is not deployed, with the reason (which names the fix)."""

    entry: ModelEntry
    reason: str
    by_policy: bool = False  # turned off by an operator setting, as opposed to missing something


@dataclass(frozen=True)
class Registry:
    """The entries to deploy, the entries listed but withheld (and why), and the lookups built from them.

    ``entries`` are the deployable entries: runners, health checks and resource checks iterate them.
    ``withheld`` are catalogued but not deployed (weights not installed, non-commercial weights turned off,
    or an upstream model withheld); ``availability.resolve_availability`` fills it.
    """

    entries: tuple[ModelEntry, ...]
    ingress: Resources = field(default_factory=lambda: Resources(num_cpus=0.25))
    ingress_autoscaling: Autoscaling = field(default_factory=Autoscaling)
    withheld: tuple[Withheld, ...] = ()

    def catalogue(self) -> list[ModelEntry]:
        """Every entry, deployable first, then withheld ones."""
        return list(self.entries) + [w.entry for w in self.withheld]

    def by_key(self) -> dict[str, ModelEntry]:
        """Every catalogued entry by ``name:version``."""
        return {e.key: e for e in self.catalogue()}

    def why_withheld(self, entry: ModelEntry) -> Withheld | None:
        """Why ``entry`` is not deployed, or None when it is served."""
        return next((w for w in self.withheld if w.entry.key == entry.key), None)

    def listing(self) -> list[dict[str, Any]]:
        """``GET /v1/models``: every entry's description plus ``available`` (and ``reason`` when not)."""
        out = [{**e.describe(), "available": True} for e in self.entries]
        out += [{**w.entry.describe(), "available": False, "reason": w.reason} for w in self.withheld]
        return out

    def defaults(self) -> list[ModelEntry]:
        """The default version of every served model name (the served catalogue's public face)."""
        return [e for e in self.entries if e.default]

    def names(self) -> dict[str, list[str]]:
        """Canonical name → catalogued versions, for error messages and listings."""
        out: dict[str, list[str]] = {}
        for e in self.catalogue():
            out.setdefault(e.name, []).append(e.version)
        return out

    def find(self, name: str, version: str | None) -> ModelEntry | None:
        """Look up by any spelling of the name or an alias; ``version=None`` means the default.

        The default skips unavailable versions: when the marked default is withheld, the first served
        version of that name (in registry order) answers instead; when none is served, the default is
        returned so that the caller can say why it is unavailable.
        """
        wanted = normalize_name(name)
        matches = [
            e
            for e in self.catalogue()
            if wanted == normalize_name(e.name) or wanted in {normalize_name(a) for a in e.aliases}
        ]
        if version is not None:
            return next((e for e in matches if e.version == version), None)
        default = next((e for e in matches if e.default), None)
        if default is not None and default not in self.entries:
            return next((e for e in self.entries if e in matches), default)
        return default
