"""Parse and validate model_registry.yaml into a ``Registry``; every mistake fails the launch naming the entry.

Each entry names an analyzer class; the class declares its inputs once (``models.base``): the registry may
restate an audio input (checked against the class) and binds every model input to an upstream ``name:version``.
The model graph those bindings form is checked here too (``graph.check_graph``).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from models.base import AudioInput, ModelInput
from serve_app.registry.entries import (
    WEIGHT_PARAM,
    Autoscaling,
    Batching,
    ModelEntry,
    Registry,
    RegistryError,
    Resources,
    WeightFile,
    import_analyzer,
    normalize_name,
)
from serve_app.registry.graph import check_graph

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_KEY_RE = re.compile(r"^([a-z0-9][a-z0-9_-]*):([A-Za-z0-9][A-Za-z0-9._-]*)$")
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
    "inputs",
    "warm",
    "resources",
    "autoscaling",
    "max_ongoing_requests",
    "timeout_s",
    "license",
    "output_schema",
    "weights",
    "batching",
}
_WEIGHT_KEYS = {"role", "url", "path", "sha256", "size", "packaged"}
_ROLE_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


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
    """Parse an ``autoscaling:`` block and check min <= max (``min_replicas`` is what a warm entry keeps)."""
    sec = _section(raw, where, {"min_replicas", "max_replicas", "target_ongoing_requests"})
    lo = _number(sec.get("min_replicas", 1), f"{where}.min_replicas", 1, integer=True)
    hi = _number(sec.get("max_replicas", lo), f"{where}.max_replicas", 1, integer=True)
    if hi < lo:
        raise RegistryError(f"{where}: max_replicas ({hi}) is below min_replicas ({lo})")
    target = float(_number(sec.get("target_ongoing_requests", 2), f"{where}.target_ongoing_requests", 0.1))
    return Autoscaling(min_replicas=lo, max_replicas=hi, target_ongoing_requests=target)


def _audio_input(declared: AudioInput, raw: Any, where: str) -> AudioInput:
    """The class's audio input; a registry ``input:`` block may restate it and must then agree with the class."""
    sec = _section(raw, where, {"sample_rate", "channels", "min_seconds"})
    stated: dict[str, Any] = {}
    if "sample_rate" in sec:
        rate = sec["sample_rate"]
        stated["sample_rate"] = None if rate == "native" else int(_number(rate, f"{where}.sample_rate", 8000, True))
    if "channels" in sec:
        stated["channels"] = sec["channels"]
    if "min_seconds" in sec:
        stated["min_seconds"] = float(_number(sec["min_seconds"], f"{where}.min_seconds", 0))
    for key, value in stated.items():
        if getattr(declared, key) != value:
            raise RegistryError(
                f"{where}.{key}: the registry says {value!r} but the class declares {getattr(declared, key)!r}; "
                "the class is the source of truth (fix or drop the registry's restatement)"
            )
    return declared


def _graph_inputs(declared: dict[str, ModelInput], raw: Any, where: str) -> dict[str, str]:
    """Bind every ``ModelInput`` of the class to an upstream ``name:version`` (and nothing else)."""
    sec = _section(raw, where, set(declared))
    missing = sorted(set(declared) - set(sec))
    if missing:
        raise RegistryError(f"{where}: the class takes model input(s) {missing}; bind each to an upstream name:version")
    bound: dict[str, str] = {}
    for param, key in sec.items():
        match = _KEY_RE.match(str(key))
        if match is None:
            raise RegistryError(f"{where}.{param}: must be an upstream 'name:version', got {key!r}")
        bound[param] = str(key)
    return bound


def _inputs(cls: type, raw: dict[str, Any], where: str) -> tuple[AudioInput | None, str | None, dict[str, str]]:
    """The entry's audio input (from the class) and its upstream bindings (from the registry)."""
    declared = dict(getattr(cls, "inputs", {}) or {})
    if not declared:
        raise RegistryError(f"{where}: class {cls.__name__} declares no inputs (set `inputs = {{...}}` on the class)")
    audio = [(p, d) for p, d in declared.items() if isinstance(d, AudioInput)]
    models = {p: d for p, d in declared.items() if isinstance(d, ModelInput)}
    if len(audio) > 1 or len(audio) + len(models) != len(declared):
        raise RegistryError(f"{where}: class {cls.__name__} must declare at most one AudioInput, the rest ModelInput")
    audio_param, audio_input = audio[0] if audio else (None, None)
    if audio_input is None and raw.get("input") is not None:
        raise RegistryError(f"{where}.input: class {cls.__name__} takes no audio (only other models' results)")
    if audio_input is not None:
        audio_input = _audio_input(audio_input, raw.get("input"), f"{where}.input")
    if not models and raw.get("inputs"):
        raise RegistryError(f"{where}.inputs: class {cls.__name__} takes no model inputs")
    return audio_input, audio_param, _graph_inputs(models, raw.get("inputs"), f"{where}.inputs") if models else {}


def _weight_file(raw: Any, where: str) -> WeightFile:
    """Parse one ``weights:`` item: a role plus ``packaged`` (with its sha256) or an https ``url`` (with its sha256
    once someone has recorded it; until then the analyzer's format check and the size, when known, guard it)."""
    sec = _section(raw, where, _WEIGHT_KEYS)
    role = sec.get("role")
    if not isinstance(role, str) or not _ROLE_RE.match(role):
        raise RegistryError(f"{where}.role: must be a lower-case identifier such as 'graph', 'head', 'metadata'")
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
    if packaged is not None and sha is None:
        raise RegistryError(f"{where}: a packaged file needs its sha256 (checked when the replica loads it)")
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


def _schema(raw: Any, where: str) -> dict[str, Any]:
    """A JSON Schema of type object (an unquoted ', ' in a YAML flow mapping that became a null property fails)."""
    if not isinstance(raw, dict) or raw.get("type") != "object":
        raise RegistryError(f"{where}: output_schema must be a JSON Schema with type: object")
    try:
        Draft202012Validator.check_schema(raw)
    except SchemaError as exc:
        at = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise RegistryError(f"{where}: output_schema is not a valid JSON Schema at {at}: {exc.message}") from None
    return raw


def _entry(raw: Any, index: int) -> ModelEntry:
    """Parse and check one ``models:`` item, including that its class accepts its params and declares its inputs."""
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
    if WEIGHT_PARAM in params:
        raise RegistryError(f"{where}: params.{WEIGHT_PARAM} is set by the server from the 'weights' section")
    warm = raw.get("warm", False)
    if not isinstance(warm, bool):
        raise RegistryError(f"{where}.warm: must be true or false, got {warm!r}")
    cls = import_analyzer(str(raw["class"]), where)
    audio, audio_param, upstream = _inputs(cls, raw, where)
    max_ongoing = _number(raw.get("max_ongoing_requests", 4), f"{where}.max_ongoing_requests", 1, integer=True)
    batching = _batching(raw.get("batching"), f"{where}.batching", max_ongoing)
    if batching is not None and (upstream or audio is None):
        raise RegistryError(f"{where}.batching: only analyzers whose one input is the audio can be batched")
    weights = _weights(raw.get("weights"), f"{where}.weights")
    entry = ModelEntry(
        name=name,
        version=version,
        default=bool(raw.get("default", False)),
        aliases=tuple(aliases),
        class_path=str(raw["class"]),
        description=str(raw["description"]).strip(),
        params=dict(params),
        audio=audio,
        audio_param=audio_param,
        upstream=upstream,
        resources=_resources(raw.get("resources"), f"{where}.resources", default_cpus=0.5),
        autoscaling=_autoscaling(raw.get("autoscaling"), f"{where}.autoscaling"),
        max_ongoing_requests=max_ongoing,
        timeout_s=float(_number(raw.get("timeout_s", DEFAULT_TIMEOUT_S), f"{where}.timeout_s", 0.001)),
        license=_license(raw.get("license"), f"{where}.license"),
        output_schema=_schema(raw["output_schema"], where),
        weights=weights,
        batching=batching,
        warm=warm,
    )
    try:
        injected = {WEIGHT_PARAM: {}} if weights else {}
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
        check_graph(entries)
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
