"""Operator settings, read once from the environment (and CLI flags) into one immutable object."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REGISTRY = REPO_ROOT / "model_registry.yaml"


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
    ray_num_cpus: float | None = None
    object_store_mb: int = 1024
    local_workers: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))

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
        ray_num_cpus=float(cpus) if cpus else None,
        object_store_mb=int(_env_float("MIRSTREAM_OBJECT_STORE_MB", base.object_store_mb)),
        local_workers=int(_env_float("MIRSTREAM_LOCAL_WORKERS", base.local_workers)),
    )
