"""The model registry: model_registry.yaml → validated entries, their graph, deployments and availability.

``entries`` (the data), ``loader`` (YAML → entries, every check), ``graph`` (which model feeds which),
``deployment`` (each entry as a Ray-free deployment description), ``availability`` (what this server serves).
"""

from serve_app.registry.entries import (
    WEIGHT_PARAM,
    Autoscaling,
    Batching,
    ModelEntry,
    Registry,
    RegistryError,
    Resources,
    WeightFile,
    Withheld,
    import_analyzer,
    normalize_name,
)
from serve_app.registry.loader import DEFAULT_TIMEOUT_S, load_registry, parse_registry

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "WEIGHT_PARAM",
    "Autoscaling",
    "Batching",
    "ModelEntry",
    "Registry",
    "RegistryError",
    "Resources",
    "WeightFile",
    "Withheld",
    "import_analyzer",
    "load_registry",
    "normalize_name",
    "parse_registry",
]
