"""``mirstream k8s render``: the KubeRay RayService and the plain Serve config, generated from the model registry.

Both files carry the same Serve ``applications`` block. Its builder (``serve_app.runners.ray_serve:app_builder``)
gets the registry inline in ``args`` with every ``default:`` flag removed, and the ingress deployment gets each model's
default version in its ``user_config``. So adding or removing a ``name:version`` changes ``args`` (Serve rebuilds
the app and rolls every replica, new ones first: ``max_surge_percent``), while moving a default changes only the
ingress's ``user_config`` (Serve calls ``reconfigure`` on the running ingress replicas; nothing restarts).
k8s/ROLLOUTS.md walks through both; k8s/README.md explains the sizing formula in :func:`size_groups`.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from serve_app.config import Settings
from serve_app.ops.k8s_options import SERVE_PORT, RenderOptions, options_from_args
from serve_app.registry import Registry, RegistryError, parse_registry
from serve_app.registry.availability import apply_warm, by_policy, withhold
from serve_app.registry.deployment import APP_NAME, MIB, DeploymentSpec, deployment_specs

IMPORT_PATH = "serve_app.runners.ray_serve:app_builder"  # a string: rendering needs no Ray
METRICS_PORT = 8080  # KubeRay's default metrics-export-port; the Grafana dashboard's README names it
SHUTDOWN_MARGIN_S = 30  # on top of the longest a request can legitimately run
RAYSERVICE_FILE = "rayservice.yaml"
SERVE_CONFIG_FILE = "serve_config.yaml"


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


def deployed(registry: Registry, options: RenderOptions) -> Registry:
    """The registry as the cluster serves it: without non-commercial entries when they are turned off (and
    without what depends on them), the registry's warm set applied."""
    served = withhold(registry, lambda entry: by_policy(entry, options.allow_noncommercial))
    return apply_warm(served, None)


def render_settings(registry: Registry, options: RenderOptions) -> Settings:
    """The settings the rendered deployments are described with: the cluster's grace and idle delay."""
    return Settings(shutdown_grace_s=float(ingress_grace_s(registry)), idle_seconds=options.model_idle_s)


def specs(registry: Registry, options: RenderOptions) -> list[DeploymentSpec]:
    """The ingress and every deployed entry, as the Serve app itself describes them (registry.deployment)."""
    served = deployed(registry, options)
    return deployment_specs(served, render_settings(served, options))


def demands(registry: Registry, options: RenderOptions) -> list[Demand]:
    """The ingress and every entry as per-replica needs with their replica bounds."""
    return [
        Demand(
            s.name,
            s.num_cpus,
            s.num_gpus,
            s.memory_mb or options.default_replica_memory_mb,
            s.min_replicas,
            s.max_replicas,
        )
        for s in specs(registry, options)
    ]


def size_groups(registry: Registry, options: RenderOptions) -> list[GroupSize]:
    """Worker groups sized from the registry: a CPU group always, a GPU group only if some entry has num_gpus > 0.

    With h = headroom, need(n) = the sum over the group's deployments of (per-replica need x n replicas):
    - CPU group (ingress + CPU-only entries): pod CPUs = ceil(h x cpu(min)), at least the largest replica and
      at most max_pod_cpus; Ray memory for replicas = max(ceil(h x mem(min)), largest replica), split over pods the
      same way; pods: min = enough for h x need(min), max = enough for h x need(max) (CPU and memory, whichever
      needs more pods).
    - GPU group (entries with num_gpus > 0): pods of gpus_per_worker GPUs; min/max pods = ceil(gpu(min or max) /
      gpus_per_worker) (GPUs are whole devices: no headroom; min 0 when no GPU model is kept warm: KubeRay's
      autoscaler adds a GPU pod when a cold GPU model's replica asks for one); CPUs and memory per pod = h x the
      GPU entries' CPU and memory per GPU at max scale, times gpus_per_worker.
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
    min_pods, max_pods = _ceil(gpu_min / g), max(1, _ceil(gpu_max / g))  # 0 pods while every GPU model is cold
    summary = (
        f"gpu-workers: {g} GPU, {cpus} CPU, {mem} MiB for replicas per pod, {min_pods}..{max_pods} pods; "
        f"replicas need {gpu_min:g}..{gpu_max:g} GPU, {cpu_max:g} CPU and {mem_max:g} MiB at max replicas"
    )
    container = mem + options.object_store_mb + options.node_overhead_mb
    return GroupSize("gpu-workers", cpus, g, mem, container, min_pods, max_pods, summary)


def ingress_grace_s(registry: Registry) -> int:
    """An ingress replica being replaced finishes its open streams: URL fetch + the slowest model + a margin."""
    longest = max(e.timeout_s for e in registry.entries)
    return _ceil(Settings().url_total_timeout_s + longest) + SHUTDOWN_MARGIN_S


def args_registry(data: dict[str, Any]) -> dict[str, Any]:
    """The registry mapping for the builder's ``args``: as written, minus every ``default:`` flag."""
    out = copy.deepcopy(data)
    for model in out.get("models") or []:
        model.pop("default", None)
    return out


def serve_config(data: dict[str, Any], registry: Registry, options: RenderOptions) -> dict[str, Any]:
    """The Serve config (ServeDeploySchema): one application, the ingress first, then one deployment per entry."""
    rows = [{**spec.options(), "max_surge_percent": 100} for spec in specs(registry, options)]
    rows[0]["user_config"] = {"defaults": {e.name: e.version for e in registry.catalogue() if e.default}}
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": options.http_host, "port": options.http_port},
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "args": {"registry": args_registry(data)},
                "deployments": rows,
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
        f"graceful_shutdown_timeout_s: {ingress_grace_s(registry)} s (URL fetch + the longest model timeout_s + "
        f"{SHUTDOWN_MARGIN_S} s); cold models scale to zero after {options.model_idle_s:g} s idle"
    )
    service = dump(rayservice(serve_yaml, registry, options))
    return {
        RAYSERVICE_FILE: _header(source, ["kubectl apply -f rayservice.yaml (KubeRay >= 1.5)", *sizing, grace])
        + service,
        SERVE_CONFIG_FILE: _header(
            source, [f"serve run {SERVE_CONFIG_FILE}  |  serve deploy {SERVE_CONFIG_FILE}", grace]
        )
        + serve_yaml,
    }


def render_command(args: argparse.Namespace, registry_path: Path) -> int:
    """Write rayservice.yaml and serve_config.yaml into --out (or, with --check, compare what is there)."""
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
