"""model_registry.yaml → validated, immutable ModelEntry objects; the one source of truth for what is served.

The registry is data (like Triton's model repository): each entry names an analyzer class in ``models/``,
its parameters, the audio it needs, its Ray resources and autoscaling, and its output schema. Everything
is checked at start-up so a typo fails the launch with a message that names the entry, not a request later.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from models.base import Analyzer, InputSpec

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
DEFAULT_TIMEOUT_S = 600.0
_ENTRY_KEYS = {
    "name",
    "version",
    "default",
    "aliases",
    "class",
    "description",
    "params",
    "input",
    "resources",
    "autoscaling",
    "max_ongoing_requests",
    "timeout_s",
    "license",
    "output_schema",
}


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
    """Ray Serve autoscaling bounds for one deployment."""

    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: float = 2.0


@dataclass(frozen=True)
class ModelEntry:
    """One ``name:version`` of one analyzer: everything needed to deploy, call and document it."""

    name: str
    version: str
    default: bool
    aliases: tuple[str, ...]
    class_path: str
    description: str
    params: dict[str, Any]
    input: InputSpec
    resources: Resources
    autoscaling: Autoscaling
    max_ongoing_requests: int
    timeout_s: float
    license: dict[str, str]
    output_schema: dict[str, Any]

    @property
    def key(self) -> str:
        """``name:version``, the id used in requests and logs."""
        return f"{self.name}:{self.version}"

    @property
    def deployment_name(self) -> str:
        """The Ray Serve deployment name for this entry (colons are avoided in Ray names)."""
        return f"{self.name}-v{self.version}"

    def load_class(self) -> type[Analyzer]:
        """Import the analyzer class named by ``class`` (``package.module.ClassName``)."""
        return import_analyzer(self.class_path, self.key)

    def describe(self) -> dict[str, Any]:
        """The public JSON description served by ``GET /v1/models``."""
        return {
            "name": self.name,
            "version": self.version,
            "default": self.default,
            "aliases": list(self.aliases),
            "description": self.description,
            "params": self.params,
            "input": {"sample_rate": self.input.sample_rate or "native", "channels": self.input.channels},
            "resources": {"num_cpus": self.resources.num_cpus, "num_gpus": self.resources.num_gpus},
            "autoscaling": {
                "min_replicas": self.autoscaling.min_replicas,
                "max_replicas": self.autoscaling.max_replicas,
                "target_ongoing_requests": self.autoscaling.target_ongoing_requests,
            },
            "timeout_s": self.timeout_s,
            "license": self.license,
            "output_schema": self.output_schema,
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
class Registry:
    """All entries plus the lookup tables built from them."""

    entries: tuple[ModelEntry, ...]
    ingress: Resources = field(default_factory=lambda: Resources(num_cpus=0.25))
    ingress_autoscaling: Autoscaling = field(default_factory=Autoscaling)

    def defaults(self) -> list[ModelEntry]:
        """The default version of every model name (the served catalogue's public face)."""
        return [e for e in self.entries if e.default]

    def names(self) -> dict[str, list[str]]:
        """Canonical name → available versions, for error messages and listings."""
        out: dict[str, list[str]] = {}
        for e in self.entries:
            out.setdefault(e.name, []).append(e.version)
        return out

    def find(self, name: str, version: str | None) -> ModelEntry | None:
        """Look up by any spelling of the name or an alias; ``version=None`` means the default."""
        wanted = normalize_name(name)
        for e in self.entries:
            if wanted == normalize_name(e.name) or wanted in {normalize_name(a) for a in e.aliases}:
                if (version is None and e.default) or (version is not None and e.version == version):
                    return e
        return None


def _section(raw: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    """Check that a YAML section is a mapping with only known keys."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RegistryError(f"{where}: must be a mapping, got {type(raw).__name__}")
    unknown = set(raw) - allowed
    if unknown:
        raise RegistryError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return raw


def _number(value: Any, where: str, minimum: float, integer: bool = False) -> Any:
    """Validate a numeric field with a lower bound."""
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or value < minimum:
        kind = "an integer" if integer else "a number"
        raise RegistryError(f"{where}: must be {kind} >= {minimum}, got {value!r}")
    return value


def _resources(raw: Any, where: str, default_cpus: float) -> Resources:
    """Parse a ``resources:`` block."""
    sec = _section(raw, where, {"num_cpus", "num_gpus", "memory_mb"})
    mem = sec.get("memory_mb")
    return Resources(
        num_cpus=float(_number(sec.get("num_cpus", default_cpus), f"{where}.num_cpus", 0)),
        num_gpus=float(_number(sec.get("num_gpus", 0), f"{where}.num_gpus", 0)),
        memory_mb=None if mem is None else int(_number(mem, f"{where}.memory_mb", 1, integer=True)),
    )


def _autoscaling(raw: Any, where: str) -> Autoscaling:
    """Parse an ``autoscaling:`` block and check min <= max."""
    sec = _section(raw, where, {"min_replicas", "max_replicas", "target_ongoing_requests"})
    lo = _number(sec.get("min_replicas", 1), f"{where}.min_replicas", 1, integer=True)
    hi = _number(sec.get("max_replicas", lo), f"{where}.max_replicas", 1, integer=True)
    if hi < lo:
        raise RegistryError(f"{where}: max_replicas ({hi}) is below min_replicas ({lo})")
    target = float(_number(sec.get("target_ongoing_requests", 2), f"{where}.target_ongoing_requests", 0.1))
    return Autoscaling(min_replicas=lo, max_replicas=hi, target_ongoing_requests=target)


def _input(raw: Any, where: str) -> InputSpec:
    """Parse an ``input:`` block: sample_rate (Hz or 'native') and channels ('mono' or 'original')."""
    sec = _section(raw, where, {"sample_rate", "channels"})
    rate = sec.get("sample_rate", "native")
    if rate != "native":
        rate = int(_number(rate, f"{where}.sample_rate", 8000, integer=True))
    channels = sec.get("channels", "mono")
    if channels not in ("mono", "original"):
        raise RegistryError(f"{where}.channels: must be 'mono' or 'original', got {channels!r}")
    return InputSpec(sample_rate=None if rate == "native" else rate, channels=channels)


def _entry(raw: Any, index: int) -> ModelEntry:
    """Parse and check one ``models:`` item, including that its class accepts its params."""
    if not isinstance(raw, dict):
        raise RegistryError(f"models[{index}]: must be a mapping")
    name = raw.get("name")
    where = f"models[{index}] ({name!r})"
    _section(raw, where, _ENTRY_KEYS)
    for required in ("name", "version", "class", "description", "output_schema"):
        if raw.get(required) in (None, ""):
            raise RegistryError(f"{where}: missing required key {required!r}")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise RegistryError(f"{where}: name must be lower-case letters, digits, '-' or '_'")
    version = str(raw["version"])
    if not _VERSION_RE.match(version):
        raise RegistryError(f"{where}: version {version!r} must be letters, digits, '.', '-' or '_'")
    where = f"model {name}:{version}"
    aliases = raw.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) and _NAME_RE.match(a) for a in aliases):
        raise RegistryError(f"{where}: aliases must be a list of names")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise RegistryError(f"{where}: params must be a mapping")
    schema = raw["output_schema"]
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise RegistryError(f"{where}: output_schema must be a JSON Schema with type: object")
    license_ = _section(raw.get("license"), f"{where}.license", {"code", "weights"})
    if "code" not in license_:
        raise RegistryError(f"{where}: license.code is required (and license.weights for learned models)")
    max_ongoing = _number(raw.get("max_ongoing_requests", 4), f"{where}.max_ongoing_requests", 1, integer=True)
    entry = ModelEntry(
        name=name,
        version=version,
        default=bool(raw.get("default", False)),
        aliases=tuple(aliases),
        class_path=str(raw["class"]),
        description=str(raw["description"]).strip(),
        params=dict(params),
        input=_input(raw.get("input"), f"{where}.input"),
        resources=_resources(raw.get("resources"), f"{where}.resources", default_cpus=0.5),
        autoscaling=_autoscaling(raw.get("autoscaling"), f"{where}.autoscaling"),
        max_ongoing_requests=max_ongoing,
        timeout_s=float(_number(raw.get("timeout_s", DEFAULT_TIMEOUT_S), f"{where}.timeout_s", 0.001)),
        license={k: str(v) for k, v in license_.items()},
        output_schema=schema,
    )
    cls = entry.load_class()
    try:
        inspect.signature(cls).bind(**entry.params)
    except TypeError as exc:
        raise RegistryError(f"{where}: params {entry.params} do not fit {entry.class_path}: {exc}") from exc
    return entry


def _check_unique(entries: list[ModelEntry]) -> None:
    """No duplicate name:version, exactly one default per name, no alias shadowing another name."""
    seen: set[tuple[str, str]] = set()
    for e in entries:
        k = (normalize_name(e.name), e.version)
        if k in seen:
            raise RegistryError(f"duplicate model {e.key}: each name:version may appear once")
        seen.add(k)
    by_name: dict[str, list[ModelEntry]] = {}
    for e in entries:
        by_name.setdefault(normalize_name(e.name), []).append(e)
    for group in by_name.values():
        defaults = [e.key for e in group if e.default]
        if len(defaults) > 1:
            raise RegistryError(f"model {group[0].name} has two defaults ({', '.join(defaults)}); mark exactly one")
        if not defaults:
            raise RegistryError(
                f"model {group[0].name} has no default version; mark one of "
                f"{', '.join(e.key for e in group)} with default: true"
            )
    owner: dict[str, str] = {n: group[0].name for n, group in by_name.items()}
    for e in entries:
        for alias in e.aliases:
            a = normalize_name(alias)
            if owner.setdefault(a, e.name) != e.name:
                raise RegistryError(f"model {e.key}: alias {alias!r} is already used by model {owner[a]!r}")


def parse_registry(data: Any, source: str = "<registry>") -> Registry:
    """Validate parsed YAML and build the Registry; raises RegistryError naming the source."""
    try:
        top = _section(data, "registry", {"ingress", "models"})
        raw_models = top.get("models")
        if not isinstance(raw_models, list) or not raw_models:
            raise RegistryError("registry: 'models' must be a non-empty list")
        entries = [_entry(raw, i) for i, raw in enumerate(raw_models)]
        _check_unique(entries)
        ingress = _section(top.get("ingress"), "ingress", {"resources", "autoscaling"})
        return Registry(
            entries=tuple(entries),
            ingress=_resources(ingress.get("resources"), "ingress.resources", default_cpus=0.25),
            ingress_autoscaling=_autoscaling(ingress.get("autoscaling"), "ingress.autoscaling"),
        )
    except RegistryError as exc:
        raise RegistryError(f"{source}: {exc}") from None


def load_registry(path: Path) -> Registry:
    """Read and validate a registry YAML file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"cannot read model registry {path}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: not valid YAML: {exc}") from exc
    return parse_registry(data, str(path))
