"""The options of ``mirstream k8s render``: everything about the cluster that the registry does not say.

Standard library only, so that the ``mirstream`` command can list its flags without the server's dependencies.
"""

from __future__ import annotations

import argparse
import importlib.metadata
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

SERVE_PORT = 8000


def _package_version(name: str, fallback: str) -> str:
    """An installed distribution's version (the image tag and rayVersion follow the environment)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return fallback


@dataclass(frozen=True)
class RenderOptions:
    """Everything about the cluster that the registry does not say; CLI flags map one to one."""

    name: str = "mirstream"
    namespace: str | None = None
    image: str = f"mirstream:{_package_version('mirstream', '0.0.0')}-cpu"
    gpu_image: str = f"mirstream:{_package_version('mirstream', '0.0.0')}-gpu"
    image_pull_policy: str = "IfNotPresent"
    ray_version: str = _package_version("ray", "unknown")
    models_dir: str = "/models"
    models_pvc: str | None = None  # None: weights are baked into the image at models_dir
    api_keys_secret: str | None = None  # a Secret with key "api-keys" (comma-separated) → MIRSTREAM_API_KEYS
    allow_noncommercial: bool = (
        True  # False: non-commercial-weights entries get no deployment (MIRSTREAM_NONCOMMERCIAL)
    )
    headroom: float = 1.25
    default_replica_memory_mb: int = 512  # per replica without resources.memory_mb (measured RSS 320-430 MB)
    object_store_mb: int = 1024
    node_overhead_mb: int = 1024  # raylet, dashboard agent, Serve proxy, metrics agent in each pod
    max_pod_cpus: int = 16
    head_cpus: int = 2
    head_memory_mb: int = 4096
    gpus_per_worker: int = 1
    cpu_node_selector: dict[str, str] = field(default_factory=dict)
    gpu_node_selector: dict[str, str] = field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    gpu_tolerations: tuple[dict[str, str], ...] = (
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    )
    cluster_deletion_delay_s: int | None = -1  # -1: derived (longest stream); None: field omitted (KubeRay < 1.5)
    idle_timeout_s: int = 60  # Ray autoscaler removes a worker pod idle this long
    model_idle_s: float = 300.0  # a cold model's replicas stop after this long without work (MIRSTREAM_IDLE_SECONDS)
    http_host: str = "0.0.0.0"
    http_port: int = SERVE_PORT


def _pairs(values: list[str] | None, flag: str) -> dict[str, str] | None:
    """KEY=VALUE flags → dict (None when the flag was not given; a lone '-' clears it)."""
    if values is None:
        return None
    out: dict[str, str] = {}
    for v in values:
        if v == "-":
            continue
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise SystemExit(f"mirstream k8s render: {flag} expects KEY=VALUE, got {v!r}")
        out[key] = val
    return out


def _tolerations(values: list[str] | None) -> tuple[dict[str, str], ...] | None:
    """KEY[=VALUE]:EFFECT flags → tolerations (operator Equal with a value, Exists without)."""
    if values is None:
        return None
    out = []
    for v in values:
        if v == "-":
            continue
        spec, sep, effect = v.rpartition(":")
        if not sep or not spec or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise SystemExit(f"mirstream k8s render: --gpu-toleration expects KEY[=VALUE]:EFFECT, got {v!r}")
        key, eq, value = spec.partition("=")
        tol = {"key": key, "operator": "Equal" if eq else "Exists"}
        if eq:
            tol["value"] = value
        out.append({**tol, "effect": effect})
    return tuple(out)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``mirstream k8s render``."""
    d = RenderOptions()
    p.add_argument("--registry", type=Path, help="model registry YAML (default $MIRSTREAM_REGISTRY or the repo's)")
    p.add_argument("--out", type=Path, default=Path("build/k8s"), help="output folder (default: ./build/k8s)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if the files in --out are stale")
    p.add_argument("--name", default=d.name, help=f"RayService name (default {d.name})")
    p.add_argument("--namespace", help="namespace in metadata (default: none, kubectl's context decides)")
    p.add_argument("--image", default=d.image, help=f"CPU image (head and CPU workers; default {d.image})")
    p.add_argument("--gpu-image", default=d.gpu_image, help=f"GPU worker image (default {d.gpu_image})")
    p.add_argument("--ray-version", default=d.ray_version, help=f"Ray in the images (default {d.ray_version})")
    p.add_argument("--models-pvc", help="mount this PVC read-only at --models-dir (default: weights baked in image)")
    p.add_argument("--models-dir", default=d.models_dir, help=f"MIRSTREAM_MODELS_DIR in pods (default {d.models_dir})")
    p.add_argument("--api-keys-secret", help="Secret whose key 'api-keys' becomes MIRSTREAM_API_KEYS")
    p.add_argument(
        "--no-noncommercial",
        action="store_true",
        help="do not deploy models with non-commercial weights (pods get MIRSTREAM_NONCOMMERCIAL=false)",
    )
    p.add_argument("--headroom", type=float, default=d.headroom, help=f"sizing headroom factor (default {d.headroom})")
    p.add_argument("--gpus-per-worker", type=int, default=d.gpus_per_worker, help="GPUs per GPU worker pod")
    p.add_argument("--cpu-node-selector", action="append", metavar="KEY=VALUE", help="node selector of CPU pods")
    p.add_argument(
        "--gpu-node-selector",
        action="append",
        metavar="KEY=VALUE",
        help="node selector of GPU pods, repeatable; replaces the default nvidia.com/gpu.present=true ('-': none)",
    )
    p.add_argument(
        "--gpu-toleration",
        action="append",
        metavar="KEY[=VALUE]:EFFECT",
        help="tolerations of GPU pods, repeatable; replaces the default nvidia.com/gpu:NoSchedule ('-': none)",
    )
    p.add_argument(
        "--no-cluster-deletion-delay",
        action="store_true",
        help="omit rayClusterDeletionDelaySeconds (KubeRay < 1.5 lacks it; old clusters then go after 60 s)",
    )


def options_from_args(args: argparse.Namespace) -> RenderOptions:
    """CLI flags → RenderOptions."""
    base = RenderOptions()
    changes: dict[str, Any] = {
        "name": args.name,
        "namespace": args.namespace,
        "image": args.image,
        "gpu_image": args.gpu_image,
        "ray_version": args.ray_version,
        "models_pvc": args.models_pvc,
        "models_dir": args.models_dir,
        "api_keys_secret": args.api_keys_secret,
        "headroom": args.headroom,
        "gpus_per_worker": args.gpus_per_worker,
    }
    for key, value in (
        ("cpu_node_selector", _pairs(args.cpu_node_selector, "--cpu-node-selector")),
        ("gpu_node_selector", _pairs(args.gpu_node_selector, "--gpu-node-selector")),
        ("gpu_tolerations", _tolerations(args.gpu_toleration)),
    ):
        if value is not None:
            changes[key] = value
    if args.no_noncommercial:
        changes["allow_noncommercial"] = False
    if args.no_cluster_deletion_delay:
        changes["cluster_deletion_delay_s"] = None
    if changes["headroom"] < 1 or changes["gpus_per_worker"] < 1:
        raise SystemExit("mirstream k8s render: --headroom must be >= 1 and --gpus-per-worker >= 1")
    return replace(base, **changes)
