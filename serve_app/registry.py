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
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

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
    "weights",
    "batching",
}
WEIGHT_PARAM = "weight_files"  # injected by serve_app.weights: role -> absolute path of each installed file
_WEIGHT_KEYS = {"role", "url", "path", "sha256", "size", "packaged"}
_ROLE_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


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
class Batching:
    """Ray Serve dynamic batching for one deployment (``@serve.batch``): concurrent requests share one call."""

    max_batch_size: int
    batch_wait_timeout_s: float


@dataclass(frozen=True)
class WeightFile:
    """One file an analyzer needs: downloaded from ``url`` into the models directory, or shipped in the source tree.

    ``path`` is relative to the models directory (``MIRSTREAM_MODELS_DIR``); ``packaged`` (instead of ``url``)
    is relative to the repository root and is never downloaded. ``sha256``/``size`` are checked when recorded.
    """

    role: str
    path: str
    url: str | None = None
    sha256: str | None = None
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
    license: dict[str, str | bool]
    output_schema: dict[str, Any]
    weights: tuple[WeightFile, ...] = ()
    batching: Batching | None = None

    @property
    def noncommercial(self) -> bool:
        """True when the weights' licence forbids commercial use (``license.noncommercial: true``)."""
        return self.license.get("noncommercial") is True

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
            "params": {k: v for k, v in self.params.items() if k != WEIGHT_PARAM},
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
    ``withheld`` are catalogued but not deployed (weights not installed, or non-commercial weights turned
    off); ``serve_app.weights.resolve_availability`` fills it. A freshly loaded registry withholds nothing.
    """

    entries: tuple[ModelEntry, ...]
    ingress: Resources = field(default_factory=lambda: Resources(num_cpus=0.25))
    ingress_autoscaling: Autoscaling = field(default_factory=Autoscaling)
    withheld: tuple[Withheld, ...] = ()

    def catalogue(self) -> list[ModelEntry]:
        """Every entry, deployable first, then withheld ones."""
        return list(self.entries) + [w.entry for w in self.withheld]

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


def _weight_file(raw: Any, where: str) -> WeightFile:
    """Parse one ``weights:`` item: a role plus an https ``url`` (optional path, sha256, size) or ``packaged``."""
    sec = _section(raw, where, _WEIGHT_KEYS)
    role = sec.get("role")
    if not isinstance(role, str) or not _ROLE_RE.match(role):
        raise RegistryError(f"{where}.role: must be a lower-case identifier such as 'embedding', 'head', 'metadata'")
    url, packaged = sec.get("url"), sec.get("packaged")
    if (url is None) == (packaged is None):
        raise RegistryError(f"{where}: give exactly one of 'url' (downloaded) or 'packaged' (shipped with mirstream)")
    if url is not None and (not isinstance(url, str) or not url.startswith(("https://", "http://"))):
        raise RegistryError(f"{where}.url: must be an https:// URL, got {url!r}")
    sha = sec.get("sha256")
    if sha is not None and (not isinstance(sha, str) or not _SHA256_RE.match(sha)):
        raise RegistryError(f"{where}.sha256: must be 64 lower-case hex digits")
    size = sec.get("size")
    if size is not None:
        size = int(_number(size, f"{where}.size", 1, integer=True))
    path = packaged if packaged is not None else sec.get("path", _default_path(url))
    if not isinstance(path, str) or not path or Path(path).is_absolute() or ".." in Path(path).parts:
        raise RegistryError(f"{where}: path must be relative and stay inside its directory, got {path!r}")
    return WeightFile(role=role, path=path, url=url, sha256=sha, size=size, packaged=packaged)


def _default_path(url: str) -> str:
    """Where a downloaded file lives when the entry gives no ``path``: ``<host>/<url path>`` under the models dir."""
    host, _, rest = url.split("://", 1)[1].partition("/")
    return f"{host.split(':')[0]}/{rest}"


def _weights(raw: Any, where: str) -> tuple[WeightFile, ...]:
    """Parse the ``weights:`` list; roles must be unique within the entry."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise RegistryError(f"{where}: must be a non-empty list of files")
    files = tuple(_weight_file(item, f"{where}[{i}]") for i, item in enumerate(raw))
    roles = [f.role for f in files]
    if len(set(roles)) != len(roles):
        raise RegistryError(f"{where}: each role may appear once, got {roles}")
    return files


def _license(raw: Any, where: str) -> dict[str, str | bool]:
    """Parse ``license:``: code (required), weights, and ``noncommercial`` (a boolean)."""
    sec = _section(raw, where, {"code", "weights", "noncommercial"})
    if "code" not in sec:
        raise RegistryError(
            f"{where.rsplit('.', 1)[0]}: license.code is required (and license.weights for learned models)"
        )
    if "noncommercial" in sec and not isinstance(sec["noncommercial"], bool):
        raise RegistryError(f"{where}.noncommercial: must be true or false, got {sec['noncommercial']!r}")
    return {k: v if k == "noncommercial" else str(v) for k, v in sec.items()}


def _batching(raw: Any, where: str, max_ongoing: int) -> Batching | None:
    """Parse ``batching:`` (absent = unbatched); a batch can never exceed the requests a replica accepts."""
    if raw is None:
        return None
    sec = _section(raw, where, {"max_batch_size", "batch_wait_timeout_s"})
    size = _number(sec.get("max_batch_size"), f"{where}.max_batch_size", 1, integer=True)
    if size > max_ongoing:
        raise RegistryError(f"{where}.max_batch_size ({size}) exceeds max_ongoing_requests ({max_ongoing})")
    wait = float(_number(sec.get("batch_wait_timeout_s", 0.01), f"{where}.batch_wait_timeout_s", 0))
    return Batching(max_batch_size=size, batch_wait_timeout_s=wait)


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
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:  # e.g. an unquoted ", " in a YAML flow mapping that became a null property
        at = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise RegistryError(f"{where}: output_schema is not a valid JSON Schema at {at}: {exc.message}") from None
    license_ = _license(raw.get("license"), f"{where}.license")
    if WEIGHT_PARAM in params:
        raise RegistryError(f"{where}: params.{WEIGHT_PARAM} is set by the server from the 'weights' section")
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
        license=license_,
        output_schema=schema,
        weights=_weights(raw.get("weights"), f"{where}.weights"),
        batching=_batching(raw.get("batching"), f"{where}.batching", max_ongoing),
    )
    cls = entry.load_class()
    try:
        injected = {WEIGHT_PARAM: {}} if entry.weights else {}
        inspect.signature(cls).bind(**entry.params, **injected)
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
