"""``mirstream k8s render``: the KubeRay RayService and the plain Serve config, generated from the model registry.

Both files carry the same Serve ``applications`` block. Its builder (``serve_app.ray_app:app_builder``) gets the
registry inline in ``args`` with every ``default:`` flag removed, and the ingress deployment gets each model's
default version in its ``user_config``. So adding or removing a ``name:version`` changes ``args`` (Serve rebuilds
the app and rolls every replica, new ones first: ``max_surge_percent``), while moving a default changes only the
ingress's ``user_config`` (Serve calls ``reconfigure`` on the running ingress replicas; nothing restarts).
k8s/ROLLOUTS.md walks through both; k8s/README.md explains the sizing formula in :func:`size_groups`.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from serve_app.config import REPO_ROOT, Settings
from serve_app.registry import ModelEntry, Registry, RegistryError, Resources, parse_registry

APP_NAME = "mirstream"
IMPORT_PATH = "serve_app.ray_app:app_builder"
INGRESS_NAME = "ingress"  # serve_app.ray_app.INGRESS_NAME (not imported: rendering needs no Ray)
INGRESS_MAX_ONGOING = (
    1000  # as in serve_app.ray_app.build_app; the stream cap (MIRSTREAM_MAX_CONCURRENT_STREAMS) admits
)
SERVE_PORT = 8000
METRICS_PORT = 8080  # KubeRay's default metrics-export-port; the Grafana dashboard's README names it
SHUTDOWN_MARGIN_S = 30  # on top of the longest a request can legitimately run
RAYSERVICE_FILE = "rayservice.yaml"
SERVE_CONFIG_FILE = "serve_config.yaml"
MIB = 2**20


def _package_version(name: str, fallback: str) -> str:
    """An installed distribution's version (the image tag and rayVersion follow the environment)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return fallback


@dataclass(frozen=True)
class RenderOptions:
    """Everything about the cluster that the registry does not say; CLI flags map one to one."""

    name: str = APP_NAME
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
    http_host: str = "0.0.0.0"
    http_port: int = SERVE_PORT


@dataclass(frozen=True)
class Demand:
    """What one deployment asks for per replica, and its replica bounds."""

    name: str
    cpus: float
    gpus: float
    memory_mb: int
    min_replicas: int
    max_replicas: int


@dataclass(frozen=True)
class GroupSize:
    """One worker group's pod shape and pod-count bounds."""

    name: str
    cpus: int
    gpus: int
    replica_memory_mb: int  # Ray's logical memory for replicas (rayStartParams memory)
    container_memory_mb: int  # + object store + per-pod Ray overhead
    min_pods: int
    max_pods: int
    summary: str


def _ceil(x: float) -> int:
    """Ceiling that ignores float noise (3.0000000001 → 3)."""
    return math.ceil(round(x, 6))


def _round_mb(mb: float) -> int:
    """Memory rounded up to a multiple of 256 MiB, for readable quantities."""
    return _ceil(mb / 256) * 256


def replica_memory_mb(res: Resources, options: RenderOptions) -> int:
    """The memory a replica reserves: the registry's memory_mb, else the measured-RSS default."""
    return res.memory_mb or options.default_replica_memory_mb


def deployed(registry: Registry, options: RenderOptions) -> list[ModelEntry]:
    """The entries that get a deployment: all, minus non-commercial ones when they are turned off."""
    return [e for e in registry.entries if options.allow_noncommercial or not e.noncommercial]


def demands(registry: Registry, options: RenderOptions) -> list[Demand]:
    """The ingress and every entry as per-replica needs with their replica bounds."""
    rows = [
        Demand(
            INGRESS_NAME,
            registry.ingress.num_cpus,
            registry.ingress.num_gpus,
            replica_memory_mb(registry.ingress, options),
            registry.ingress_autoscaling.min_replicas,
            registry.ingress_autoscaling.max_replicas,
        )
    ]
    for e in deployed(registry, options):
        rows.append(
            Demand(
                e.deployment_name,
                e.resources.num_cpus,
                e.resources.num_gpus,
                replica_memory_mb(e.resources, options),
                e.autoscaling.min_replicas,
                e.autoscaling.max_replicas,
            )
        )
    return rows


def size_groups(registry: Registry, options: RenderOptions) -> list[GroupSize]:
    """Worker groups sized from the registry: a CPU group always, a GPU group only if some entry has num_gpus > 0.

    With h = headroom, need(n) = the sum over the group's deployments of (per-replica need x n replicas):
    - CPU group (ingress + CPU-only entries): pod CPUs = ceil(h x cpu(min)), at least the largest replica and
      at most max_pod_cpus; Ray memory for replicas = max(ceil(h x mem(min)), largest replica), split over pods the
      same way; pods: min = enough for h x need(min), max = enough for h x need(max) (CPU and memory, whichever
      needs more pods).
    - GPU group (entries with num_gpus > 0): pods of gpus_per_worker GPUs; min/max pods = ceil(gpu(min or max) /
      gpus_per_worker) (GPUs are whole devices: no headroom); CPUs and memory per pod = h x the GPU entries'
      CPU and memory per GPU at max scale, times gpus_per_worker.
    Every pod's container memory = Ray's replica memory + object store + per-pod Ray overhead.
    """
    h = options.headroom
    rows = demands(registry, options)
    cpu_rows = [d for d in rows if d.gpus == 0]
    gpu_rows = [d for d in rows if d.gpus > 0]
    groups = [_cpu_group(cpu_rows, h, options)]
    if gpu_rows:
        groups.append(_gpu_group(gpu_rows, h, options))
    return groups


def _need(rows: list[Demand], attr: str, bound: str) -> float:
    """Sum of per-replica ``attr`` times the ``bound`` ('min_replicas' or 'max_replicas')."""
    return sum(getattr(d, attr) * getattr(d, bound) for d in rows)


def _cpu_group(rows: list[Demand], h: float, options: RenderOptions) -> GroupSize:
    """The CPU worker group (see size_groups)."""
    largest_cpu = _ceil(max(d.cpus for d in rows))
    largest_mem = max(d.memory_mb for d in rows)
    cpu_min, cpu_max = _need(rows, "cpus", "min_replicas"), _need(rows, "cpus", "max_replicas")
    mem_min, mem_max = _need(rows, "memory_mb", "min_replicas"), _need(rows, "memory_mb", "max_replicas")
    cpus = max(1, largest_cpu, min(_ceil(h * cpu_min), max(options.max_pod_cpus, largest_cpu)))
    pods_for_min_cpu = _ceil(h * cpu_min / cpus)
    mem = _round_mb(max(largest_mem, h * mem_min / pods_for_min_cpu))
    min_pods = max(1, pods_for_min_cpu, _ceil(h * mem_min / mem))
    max_pods = max(min_pods, _ceil(h * cpu_max / cpus), _ceil(h * mem_max / mem))
    summary = (
        f"cpu-workers: {cpus} CPU, {mem} MiB for replicas per pod, {min_pods}..{max_pods} pods; "
        f"replicas need {cpu_min:g}..{cpu_max:g} CPU, {mem_min:g}..{mem_max:g} MiB (min..max replicas)"
    )
    container = mem + options.object_store_mb + options.node_overhead_mb
    return GroupSize("cpu-workers", cpus, 0, mem, container, min_pods, max_pods, summary)


def _gpu_group(rows: list[Demand], h: float, options: RenderOptions) -> GroupSize:
    """The GPU worker group (see size_groups)."""
    g = options.gpus_per_worker
    gpu_min, gpu_max = _need(rows, "gpus", "min_replicas"), _need(rows, "gpus", "max_replicas")
    cpu_max, mem_max = _need(rows, "cpus", "max_replicas"), _need(rows, "memory_mb", "max_replicas")
    if max(d.gpus for d in rows) > g:
        raise ValueError(f"a GPU deployment needs more than --gpus-per-worker={g} GPUs per replica")
    cpus = max(1, _ceil(max(d.cpus for d in rows)), _ceil(h * g * cpu_max / gpu_max))
    mem = _round_mb(max(max(d.memory_mb for d in rows), h * g * mem_max / gpu_max))
    min_pods, max_pods = max(1, _ceil(gpu_min / g)), max(1, _ceil(gpu_max / g))
    summary = (
        f"gpu-workers: {g} GPU, {cpus} CPU, {mem} MiB for replicas per pod, {min_pods}..{max_pods} pods; "
        f"replicas need {gpu_min:g}..{gpu_max:g} GPU, {cpu_max:g} CPU and {mem_max:g} MiB at max replicas"
    )
    container = mem + options.object_store_mb + options.node_overhead_mb
    return GroupSize("gpu-workers", cpus, g, mem, container, min_pods, max_pods, summary)


def model_grace_s(entry: ModelEntry) -> int:
    """A model replica being replaced finishes its running call: at most the entry's timeout_s, plus a margin."""
    return _ceil(entry.timeout_s) + SHUTDOWN_MARGIN_S


def ingress_grace_s(registry: Registry) -> int:
    """An ingress replica being replaced finishes its open streams: URL fetch + the slowest model + a margin."""
    longest = max(e.timeout_s for e in registry.entries)
    return _ceil(Settings().url_total_timeout_s + longest) + SHUTDOWN_MARGIN_S


def _actor_options(res: Resources, options: RenderOptions) -> dict[str, Any]:
    """Registry resources → ray_actor_options (memory in bytes; the default estimate when unset)."""
    return {"num_cpus": res.num_cpus, "num_gpus": res.num_gpus, "memory": replica_memory_mb(res, options) * MIB}


def _autoscaling(min_replicas: int, max_replicas: int, target: float) -> dict[str, Any]:
    """Serve autoscaling_config."""
    return {"min_replicas": min_replicas, "max_replicas": max_replicas, "target_ongoing_requests": target}


def args_registry(data: dict[str, Any]) -> dict[str, Any]:
    """The registry mapping for the builder's ``args``: as written, minus every ``default:`` flag."""
    out = copy.deepcopy(data)
    for model in out.get("models") or []:
        model.pop("default", None)
    return out


def serve_config(data: dict[str, Any], registry: Registry, options: RenderOptions) -> dict[str, Any]:
    """The Serve config (ServeDeploySchema): one application, the ingress first, then one deployment per entry."""
    auto = registry.ingress_autoscaling
    ingress = {
        "name": INGRESS_NAME,
        "max_ongoing_requests": INGRESS_MAX_ONGOING,
        "autoscaling_config": _autoscaling(auto.min_replicas, auto.max_replicas, auto.target_ongoing_requests),
        "graceful_shutdown_timeout_s": ingress_grace_s(registry),
        "max_surge_percent": 100,
        "ray_actor_options": _actor_options(registry.ingress, options),
        "user_config": {"defaults": {e.name: e.version for e in registry.catalogue() if e.default}},
    }
    models = [
        {
            "name": e.deployment_name,
            "max_ongoing_requests": e.max_ongoing_requests,
            "autoscaling_config": _autoscaling(
                e.autoscaling.min_replicas, e.autoscaling.max_replicas, e.autoscaling.target_ongoing_requests
            ),
            "graceful_shutdown_timeout_s": model_grace_s(e),
            "max_surge_percent": 100,
            "ray_actor_options": _actor_options(e.resources, options),
        }
        for e in deployed(registry, options)
    ]
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": options.http_host, "port": options.http_port},
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "args": {"registry": args_registry(data)},
                "deployments": [ingress, *models],
            }
        ],
    }


def _env(options: RenderOptions, registry: Registry) -> list[dict[str, Any]]:
    """MIRSTREAM_* settings every Ray container gets (the builder and replicas read them)."""
    env: list[dict[str, Any]] = [
        {"name": "MIRSTREAM_MODELS_DIR", "value": options.models_dir},
        {"name": "MIRSTREAM_METRICS_PORT", "value": str(METRICS_PORT)},
        {"name": "MIRSTREAM_LOG_FORMAT", "value": "json"},
        {"name": "MIRSTREAM_LOG_LEVEL", "value": "INFO"},
        {"name": "MIRSTREAM_SHUTDOWN_GRACE_SECONDS", "value": str(ingress_grace_s(registry))},
        {"name": "MIRSTREAM_NONCOMMERCIAL", "value": "true" if options.allow_noncommercial else "false"},
        {"name": "RAY_USAGE_STATS_ENABLED", "value": "0"},
    ]
    if options.api_keys_secret:
        ref = {"name": options.api_keys_secret, "key": "api-keys"}
        env.append({"name": "MIRSTREAM_API_KEYS", "valueFrom": {"secretKeyRef": ref}})
    return env


def _pod_template(
    role: str,
    image: str,
    cpus: int,
    container_memory_mb: int,
    gpus: int,
    options: RenderOptions,
    registry: Registry,
) -> dict[str, Any]:
    """A Ray pod: one container with requests = limits (Guaranteed QoS), shm for the object store, weights."""
    ports = [{"containerPort": SERVE_PORT, "name": "serve"}, {"containerPort": METRICS_PORT, "name": "metrics"}]
    if role == "head":
        ports = [
            {"containerPort": 6379, "name": "gcs-server"},
            {"containerPort": 8265, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
            *ports,
        ]
    quantities: dict[str, Any] = {"cpu": str(cpus), "memory": f"{container_memory_mb}Mi"}
    if gpus:
        quantities["nvidia.com/gpu"] = str(gpus)
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{options.object_store_mb}Mi"}}
    ]
    mounts: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    if options.models_pvc:
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": options.models_pvc, "readOnly": True}})
        mounts.append({"name": "models", "mountPath": options.models_dir, "readOnly": True})
    container = {
        "name": "ray-head" if role == "head" else "ray-worker",
        "image": image,
        "imagePullPolicy": options.image_pull_policy,
        "env": _env(options, registry),
        "ports": ports,
        "resources": {"requests": dict(quantities), "limits": dict(quantities)},
        "volumeMounts": mounts,
    }
    spec: dict[str, Any] = {"containers": [container], "volumes": volumes}
    selector = options.gpu_node_selector if gpus else options.cpu_node_selector
    if selector:
        spec["nodeSelector"] = dict(selector)
    if gpus and options.gpu_tolerations:
        spec["tolerations"] = [dict(t) for t in options.gpu_tolerations]
    return {
        "metadata": {
            "labels": {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/component": role},
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(METRICS_PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": spec,
    }


def _ray_params(options: RenderOptions, cpus: int, replica_memory_mb: int | None, gpus: int) -> dict[str, str]:
    """rayStartParams: explicit logical resources, so Ray packs replicas exactly as sized (values are strings)."""
    params = {
        "num-cpus": str(cpus),
        "object-store-memory": str(options.object_store_mb * MIB),
        "metrics-export-port": str(METRICS_PORT),
    }
    if replica_memory_mb is not None:
        params["memory"] = str(replica_memory_mb * MIB)
    if gpus:
        params["num-gpus"] = str(gpus)
    return params


def rayservice(serve_yaml: str, registry: Registry, options: RenderOptions) -> dict[str, Any]:
    """The KubeRay RayService: head (no replicas: num-cpus 0), a CPU worker group, a GPU group if needed."""
    head_params = {**_ray_params(options, 0, None, 0), "dashboard-host": "0.0.0.0"}
    head_memory = options.head_memory_mb + options.object_store_mb
    workers = []
    for g in size_groups(registry, options):
        workers.append(
            {
                "groupName": g.name,
                "replicas": g.min_pods,
                "minReplicas": g.min_pods,
                "maxReplicas": g.max_pods,
                "rayStartParams": _ray_params(options, g.cpus, g.replica_memory_mb, g.gpus),
                "template": _pod_template(
                    g.name,
                    options.gpu_image if g.gpus else options.image,
                    g.cpus,
                    g.container_memory_mb,
                    g.gpus,
                    options,
                    registry,
                ),
            }
        )
    metadata: dict[str, Any] = {"name": options.name, "labels": {"app.kubernetes.io/name": APP_NAME}}
    if options.namespace:
        metadata["namespace"] = options.namespace
    spec: dict[str, Any] = {
        "serveConfigV2": serve_yaml,
        "upgradeStrategy": {"type": "NewCluster"},
        "excludeHeadPodFromServeSvc": True,
    }
    delay = options.cluster_deletion_delay_s
    if delay is not None:
        spec["rayClusterDeletionDelaySeconds"] = ingress_grace_s(registry) if delay < 0 else delay
    spec["rayClusterConfig"] = {
        "rayVersion": options.ray_version,
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {"upscalingMode": "Default", "idleTimeoutSeconds": options.idle_timeout_s},
        "headGroupSpec": {
            "rayStartParams": head_params,
            "template": _pod_template("head", options.image, options.head_cpus, head_memory, 0, options, registry),
        },
        "workerGroupSpecs": workers,
    }
    return {"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": metadata, "spec": spec}


class _Dumper(yaml.SafeDumper):
    """Block-style YAML with multi-line strings (serveConfigV2) as literal blocks, and no anchors/aliases
    (the registry's shared mappings are written out in full)."""

    def ignore_aliases(self, data: Any) -> bool:
        """Never emit &anchors / *aliases."""
        return True


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    """Literal block style for multi-line strings, plain otherwise."""
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_Dumper.add_representer(str, _represent_str)


def dump(obj: Any) -> str:
    """Deterministic YAML text (insertion order kept)."""
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120, allow_unicode=True)


def _header(source: str, lines: list[str]) -> str:
    """The do-not-edit banner plus the sizing summary."""
    out = [
        f"# GENERATED by `mirstream k8s render` from {source}: do not edit; change the registry and re-render.",
        *[f"# {line}" for line in lines],
    ]
    return "\n".join(out) + "\n"


def render(registry_path: Path, options: RenderOptions) -> dict[str, str]:
    """Validate the registry and return {file name: text} for the RayService and the plain Serve config."""
    text = Path(registry_path).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    registry = parse_registry(data, str(registry_path))
    source = Path(registry_path).name
    config = serve_config(data, registry, options)
    serve_yaml = dump(config)
    groups = size_groups(registry, options)
    sizing = [f"sizing (headroom {options.headroom:g}, see k8s/README.md): {g.summary}" for g in groups]
    grace = (
        f"graceful_shutdown_timeout_s: ingress {ingress_grace_s(registry)} s, models timeout_s + {SHUTDOWN_MARGIN_S} s"
    )
    service = dump(rayservice(serve_yaml, registry, options))
    return {
        RAYSERVICE_FILE: _header(source, ["kubectl apply -f k8s/rayservice.yaml (KubeRay >= 1.5)", *sizing, grace])
        + service,
        SERVE_CONFIG_FILE: _header(
            source, [f"serve run {SERVE_CONFIG_FILE}  |  serve deploy {SERVE_CONFIG_FILE}", grace]
        )
        + serve_yaml,
    }


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
    p.add_argument("--out", type=Path, default=REPO_ROOT / "k8s", help="output folder (default: the repo's k8s/)")
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


def render_command(args: argparse.Namespace, registry_path: Path) -> int:
    """Write (or, with --check, compare) k8s/rayservice.yaml and k8s/serve_config.yaml."""
    options = options_from_args(args)
    try:
        files = render(registry_path, options)
    except (RegistryError, OSError, ValueError) as exc:
        print(f"mirstream k8s render: {exc}", file=sys.stderr)
        return 2
    out: Path = args.out
    if args.check:
        stale = [n for n, text in files.items() if not (out / n).is_file() or (out / n).read_text() != text]
        for name in stale:
            print(f"stale: {out / name} (run: mirstream k8s render)", file=sys.stderr)
        return 1 if stale else 0
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
        print(f"wrote {out / name}")
    return 0
