"""How each registry entry (and the ingress) becomes a Ray Serve deployment, described without Ray.

One source for the deployment options that the Serve app, the KubeRay renderer, the launcher's fit check and
batch mode all use: name, actor resources, autoscaling (a cold entry scales from and back to zero), request
limits and the shutdown grace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from serve_app.config import Settings
    from serve_app.registry.entries import ModelEntry, Registry, Resources

APP_NAME = "mirstream"
INGRESS_NAME = "ingress"
INGRESS_MAX_ONGOING = 1000  # streams are admitted by the ingress's own cap (MIRSTREAM_MAX_CONCURRENT_STREAMS)
MIB = 2**20
# Serve's autoscaler, tuned for models that scale from zero (measured on Ray 2.60, benchmarks/RESULTS.md):
METRICS_INTERVAL_S = 0.5  # how often handles report queued requests; at the default 10 s a second cold start waits
LOOK_BACK_S = 5.0  # the window the autoscaler averages over
DOWNSCALE_DELAY_S = 30.0  # from N > min replicas back down, once the load is gone
SHUTDOWN_WAIT_LOOP_S = 0.2  # how often a stopping replica checks for in-flight work (Serve's default 2 s)


class DoesNotFit(ValueError):
    """The deployments' minimum replicas cannot be placed on the cluster; the message names the fix."""


@dataclass(frozen=True)
class DeploymentSpec:
    """One Serve deployment: per-replica resources, replica bounds and limits."""

    name: str
    num_cpus: float
    num_gpus: float
    memory_mb: int | None
    min_replicas: int
    max_replicas: int
    target_ongoing_requests: float
    max_ongoing_requests: int
    graceful_shutdown_timeout_s: float
    idle_s: float

    def actor_options(self) -> dict[str, Any]:
        """``ray_actor_options`` (memory in bytes, only when the registry reserves some)."""
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.memory_mb:
            options["memory"] = self.memory_mb * MIB
        return options

    def autoscaling_config(self) -> dict[str, Any]:
        """``autoscaling_config``; ``min_replicas: 0`` starts the deployment cold, the first request that needs it
        starts a replica at once, and ``idle_s`` without work takes it back to zero."""
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
            "upscale_delay_s": 0.0,
            "downscale_delay_s": min(DOWNSCALE_DELAY_S, self.idle_s),
            "downscale_to_zero_delay_s": self.idle_s,
            "look_back_period_s": LOOK_BACK_S,
            "metrics_interval_s": METRICS_INTERVAL_S,
        }

    def options(self) -> dict[str, Any]:
        """Keyword arguments of ``Deployment.options`` and, as written, a deployment of a Serve config file."""
        return {
            "name": self.name,
            "max_ongoing_requests": self.max_ongoing_requests,
            "autoscaling_config": self.autoscaling_config(),
            "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
            "graceful_shutdown_wait_loop_s": SHUTDOWN_WAIT_LOOP_S,
            "ray_actor_options": self.actor_options(),
        }


def _spec(
    name: str, res: Resources, lo: int, hi: int, target: float, max_ongoing: int, settings: Settings
) -> DeploymentSpec:
    """A spec from registry resources and bounds plus the operator's grace and idle delay."""
    return DeploymentSpec(
        name=name,
        num_cpus=res.num_cpus,
        num_gpus=res.num_gpus,
        memory_mb=res.memory_mb,
        min_replicas=lo,
        max_replicas=hi,
        target_ongoing_requests=target,
        max_ongoing_requests=max_ongoing,
        graceful_shutdown_timeout_s=settings.shutdown_grace_s,
        idle_s=settings.idle_seconds,
    )


def ingress_spec(registry: Registry, settings: Settings) -> DeploymentSpec:
    """The ingress: always warm (it answers /healthz and streams)."""
    auto = registry.ingress_autoscaling
    return _spec(
        INGRESS_NAME,
        registry.ingress,
        auto.min_replicas,
        auto.max_replicas,
        auto.target_ongoing_requests,
        INGRESS_MAX_ONGOING,
        settings,
    )


def model_spec(entry: ModelEntry, settings: Settings) -> DeploymentSpec:
    """One entry: its resources and bounds; ``min_replicas`` 0 unless the entry is kept warm."""
    auto = entry.autoscaling
    lo = auto.min_replicas if entry.warm else 0
    return _spec(
        entry.deployment_name,
        entry.resources,
        lo,
        auto.max_replicas,
        auto.target_ongoing_requests,
        entry.max_ongoing_requests,
        settings,
    )


def deployment_specs(registry: Registry, settings: Settings) -> list[DeploymentSpec]:
    """The ingress, then one spec per served entry (registry order)."""
    return [ingress_spec(registry, settings), *(model_spec(e, settings) for e in registry.entries)]


def check_fits(specs: Iterable[DeploymentSpec], resources: Mapping[str, float], what: str = "cluster") -> None:
    """Refuse what Ray would wait for forever: a replica bigger than the cluster, or minimum replicas that
    together exceed it. ``resources`` is ``ray.cluster_resources()`` (or a planned cluster's totals)."""
    specs = list(specs)
    cpus, gpus = float(resources.get("CPU", 0.0)), float(resources.get("GPU", 0.0))
    for s in specs:
        if s.num_gpus > gpus:
            raise DoesNotFit(
                f"deployment {s.name!r} needs {s.num_gpus} GPU per replica but this Ray {what} has {gpus:g} GPUs; "
                "set num_gpus: 0 for it in model_registry.yaml or run on a GPU node"
            )
        if s.num_cpus > cpus:
            raise DoesNotFit(
                f"deployment {s.name!r} needs {s.num_cpus} CPU per replica but the {what} has {cpus:g}; "
                "lower its num_cpus in model_registry.yaml or raise MIRSTREAM_RAY_NUM_CPUS"
            )
    total_cpu = sum(s.num_cpus * s.min_replicas for s in specs)
    total_gpu = sum(s.num_gpus * s.min_replicas for s in specs)
    if total_cpu > cpus + 1e-9 or total_gpu > gpus + 1e-9:
        detail = ", ".join(f"{s.name} {s.num_cpus:g}x{s.min_replicas}" for s in specs if s.min_replicas)
        raise DoesNotFit(
            f"the minimum replicas need {total_cpu:g} CPUs / {total_gpu:g} GPUs but the {what} has "
            f"{cpus:g} / {gpus:g} ({detail}); lower num_cpus or min_replicas in model_registry.yaml, "
            "keep fewer models warm, or raise MIRSTREAM_RAY_NUM_CPUS"
        )
