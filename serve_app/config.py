"""Operator settings, read once from the environment (and CLI flags) into one immutable object."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

# The registry ships inside the package (serve_app/model_registry.yaml links to the repository's top-level file,
# and wheels carry a copy), so every kind of install finds it.
DEFAULT_REGISTRY = Path(__file__).resolve().parent / "model_registry.yaml"


def _env_float(name: str, default: float) -> float:
    """Read a positive number from the environment, failing loudly on junk."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r} must be greater than 0")
    return value


def _whole(raw: str, name: str) -> int:
    """A positive whole number (Ray offers whole CPUs; deployments take fractions of them)."""
    if not raw.strip().isdigit() or int(raw) < 1:
        raise ValueError(f"{name}={raw!r} must be a whole number >= 1")
    return int(raw)


def default_models_dir() -> Path:
    """Where downloaded model weights live unless MIRSTREAM_MODELS_DIR says otherwise (XDG cache convention)."""
    cache = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(cache) / "mirstream" / "models"


def _env_switch(name: str, default: bool) -> bool:
    """A yes/no setting that must be spelled clearly: 1/true/yes/on or 0/false/no/off (any case)."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name}={raw!r} must be true or false")


def _env_bool(name: str) -> bool:
    """True for 1/true/yes/on (any case); everything else is False."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Everything an operator can tune; passed by value to the ingress so every replica agrees."""

    host: str = "127.0.0.1"
    port: int = 8000
    registry_path: Path = DEFAULT_REGISTRY
    max_upload_bytes: int = 200 * 1024 * 1024
    max_audio_seconds: float = 30 * 60.0
    keepalive_seconds: float = 15.0
    allow_private_urls: bool = False
    url_connect_timeout_s: float = 10.0
    url_total_timeout_s: float = 60.0
    url_max_redirects: int = 5
    startup_timeout_s: float = 180.0
    ray_num_cpus: int | None = None
    object_store_mb: int = 1024
    max_models_per_request: int = 32
    max_concurrent_streams: int = 64
    # SHA-256 hex digests of the accepted API keys (never the keys themselves); empty = no auth
    api_key_hashes: frozenset[str] = field(default=frozenset(), repr=False)
    rate_limit_per_second: float | None = None
    rate_limit_burst: int = 10
    shutdown_grace_s: float = 10.0  # SIGTERM → open streams may finish this long, then end cleanly; all gone soon after
    log_level: str = "INFO"
    log_format: str = "json"
    metrics_port: int | None = None  # Ray's metrics export port; None = Ray picks a free one
    models_dir: Path = field(default_factory=default_models_dir)  # downloaded weights (mirstream models fetch)
    allow_noncommercial: bool = True  # False: models whose weights are non-commercial only are not served
    warm: frozenset[str] | None = None  # models kept running (None: the registry's warm: flags); others start on use
    idle_seconds: float = 300.0  # a cold model's replicas stop after this long without work (scale to zero)
    address: str | None = None  # an existing Ray cluster to deploy onto (None: start an embedded Ray)

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some fields replaced (CLI flags win over the environment)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def settings_from_env() -> Settings:
    """Build Settings from MIRSTREAM_* variables (and PORT, as PaaS platforms set it)."""
    base = Settings()
    cpus = os.environ.get("MIRSTREAM_RAY_NUM_CPUS")
    return Settings(
        host=os.environ.get("MIRSTREAM_HOST", base.host),
        port=int(os.environ.get("PORT", os.environ.get("MIRSTREAM_PORT", base.port))),
        registry_path=Path(os.environ.get("MIRSTREAM_REGISTRY", str(base.registry_path))),
        max_upload_bytes=int(_env_float("MIRSTREAM_MAX_UPLOAD_MB", base.max_upload_bytes / 2**20) * 2**20),
        max_audio_seconds=_env_float("MIRSTREAM_MAX_AUDIO_SECONDS", base.max_audio_seconds),
        keepalive_seconds=_env_float("MIRSTREAM_KEEPALIVE_SECONDS", base.keepalive_seconds),
        allow_private_urls=_env_bool("MIRSTREAM_ALLOW_PRIVATE_URLS"),
        url_connect_timeout_s=_env_float("MIRSTREAM_URL_CONNECT_TIMEOUT_SECONDS", base.url_connect_timeout_s),
        url_total_timeout_s=_env_float("MIRSTREAM_URL_TIMEOUT_SECONDS", base.url_total_timeout_s),
        url_max_redirects=int(os.environ.get("MIRSTREAM_URL_MAX_REDIRECTS", base.url_max_redirects)),
        startup_timeout_s=_env_float("MIRSTREAM_STARTUP_TIMEOUT_SECONDS", base.startup_timeout_s),
        ray_num_cpus=_whole(cpus, "MIRSTREAM_RAY_NUM_CPUS") if cpus else None,
        object_store_mb=int(_env_float("MIRSTREAM_OBJECT_STORE_MB", base.object_store_mb)),
        max_models_per_request=int(_env_float("MIRSTREAM_MAX_MODELS_PER_REQUEST", base.max_models_per_request)),
        max_concurrent_streams=int(_env_float("MIRSTREAM_MAX_CONCURRENT_STREAMS", base.max_concurrent_streams)),
        api_key_hashes=frozenset(hash_key(k) for k in _api_keys()),
        rate_limit_per_second=_env_float("MIRSTREAM_RATE_LIMIT_PER_SECOND", 1.0)
        if os.environ.get("MIRSTREAM_RATE_LIMIT_PER_SECOND")
        else None,
        rate_limit_burst=int(_env_float("MIRSTREAM_RATE_LIMIT_BURST", base.rate_limit_burst)),
        shutdown_grace_s=_env_float("MIRSTREAM_SHUTDOWN_GRACE_SECONDS", base.shutdown_grace_s),
        log_level=_choice("MIRSTREAM_LOG_LEVEL", base.log_level, ("DEBUG", "INFO", "WARNING", "ERROR")),
        log_format=_choice("MIRSTREAM_LOG_FORMAT", base.log_format, ("json", "text")),
        metrics_port=_whole(os.environ["MIRSTREAM_METRICS_PORT"], "MIRSTREAM_METRICS_PORT")
        if os.environ.get("MIRSTREAM_METRICS_PORT")
        else None,
        models_dir=Path(os.environ["MIRSTREAM_MODELS_DIR"]).expanduser()
        if os.environ.get("MIRSTREAM_MODELS_DIR", "").strip()
        else default_models_dir(),
        allow_noncommercial=_env_switch("MIRSTREAM_NONCOMMERCIAL", base.allow_noncommercial),
        warm=parse_warm(os.environ["MIRSTREAM_WARM"]) if os.environ.get("MIRSTREAM_WARM", "").strip() else None,
        idle_seconds=_env_float("MIRSTREAM_IDLE_SECONDS", base.idle_seconds),
        address=os.environ.get("RAY_ADDRESS", "").strip() or None,
    )


def parse_warm(value: str) -> frozenset[str]:
    """``key,bpm_degara:1`` → the models to keep warm (``all`` and ``none`` allowed); names are checked later."""
    items = frozenset(v.strip().lower() for v in value.split(",") if v.strip())
    if not items:
        raise ValueError(f"MIRSTREAM_WARM / --warm {value!r}: name models (or 'all' / 'none')")
    return items


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    """One of ``allowed`` (case-insensitive) from the environment, or a clear error."""
    raw = os.environ.get(name, default).strip()
    for option in allowed:
        if raw.lower() == option.lower():
            return option
    raise ValueError(f"{name}={raw!r} must be one of {', '.join(allowed)}")


def hash_key(key: str) -> str:
    """The form in which API keys are kept and compared, so no settings object ever holds a key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _api_keys() -> frozenset[str]:
    """Keys from MIRSTREAM_API_KEYS (comma-separated) and/or MIRSTREAM_API_KEYS_FILE (one per line, # comments)."""
    keys = {k.strip() for k in os.environ.get("MIRSTREAM_API_KEYS", "").split(",") if k.strip()}
    path = os.environ.get("MIRSTREAM_API_KEYS_FILE")
    if path:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        keys |= {ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")}
    return frozenset(keys)
