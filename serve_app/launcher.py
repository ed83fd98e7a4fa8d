"""Start the embedded Ray instance and the Serve app, failing fast (naming the deployment) instead of hanging."""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import replace

import ray
from ray import serve

from serve_app.config import Settings
from serve_app.ray_app import INGRESS_NAME, build_app
from serve_app.registry import Registry
from serve_app.runner import strip_ansi

APP_NAME = "mirstream"
log = logging.getLogger("mirstream.launcher")


class StartupError(RuntimeError):
    """The app cannot start as configured; the message names the deployment and the fix."""


def start_ray(settings: Settings) -> Settings:
    """A fresh local Ray instance sized to this machine (no dashboard, no spilling), or RAY_ADDRESS's cluster.

    Returns the settings with the metrics export port Ray actually uses (it picks one when none is set).
    """
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, namespace=APP_NAME)
        else:
            _init_local(settings)
    port = ray._private.worker.global_worker.node.metrics_export_port
    return replace(settings, metrics_port=port)


def _port_free(port: int) -> bool:
    """Whether nothing listens on ``port`` (Ray's start-up only times out, unhelpfully, when it is taken)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _init_local(settings: Settings) -> None:
    """Start the embedded Ray instance."""
    if settings.metrics_port is not None and not _port_free(settings.metrics_port):
        raise StartupError(f"MIRSTREAM_METRICS_PORT {settings.metrics_port} is already in use; pick another port")
    extra = {"_metrics_export_port": settings.metrics_port} if settings.metrics_port is not None else {}
    ray.init(
        address="local",  # never attach to some other Ray instance found on this machine
        num_cpus=settings.ray_num_cpus if settings.ray_num_cpus is not None else os.cpu_count(),
        object_store_memory=settings.object_store_mb * 2**20,
        include_dashboard=False,
        namespace=APP_NAME,
        # uploaded audio lives in the object store only for the request; never spill it to disk
        _system_config={"automatic_object_spilling_enabled": False},
        **extra,  # Prometheus scrapes Serve's and mirstream's metrics on this port
    )


def preflight(registry: Registry, resources: dict[str, float]) -> None:
    """Check that every deployment's minimum replicas fit the cluster before deploying (Serve would wait forever)."""
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    needs = [(INGRESS_NAME, registry.ingress, registry.ingress_autoscaling.min_replicas)]
    needs += [(e.deployment_name, e.resources, e.autoscaling.min_replicas) for e in registry.entries]
    for name, res, _replicas in needs:
        if res.num_gpus > gpus:
            raise StartupError(
                f"deployment {name!r} needs {res.num_gpus} GPU per replica but this Ray cluster has {gpus:g} GPUs; "
                "set num_gpus: 0 for it in model_registry.yaml or run on a GPU node"
            )
        if res.num_cpus > cpus:
            raise StartupError(
                f"deployment {name!r} needs {res.num_cpus} CPU per replica but the cluster has {cpus:g}; "
                "lower its num_cpus in model_registry.yaml or raise MIRSTREAM_RAY_NUM_CPUS"
            )
    total_cpu = sum(res.num_cpus * n for _, res, n in needs)
    total_gpu = sum(res.num_gpus * n for _, res, n in needs)
    if total_cpu > cpus + 1e-9 or total_gpu > gpus + 1e-9:
        detail = ", ".join(f"{name} {res.num_cpus:g}x{n}" for name, res, n in needs)
        raise StartupError(
            f"the minimum replicas need {total_cpu:g} CPUs / {total_gpu:g} GPUs but the cluster has "
            f"{cpus:g} / {gpus:g} ({detail}); lower num_cpus or min_replicas in model_registry.yaml, "
            "or raise MIRSTREAM_RAY_NUM_CPUS"
        )


def deploy(registry: Registry, settings: Settings) -> None:
    """Start Serve's HTTP proxy on host:port and the app, then wait (bounded) for every deployment."""
    preflight(registry, ray.cluster_resources())
    serve.start(http_options={"host": settings.host, "port": settings.port}, proxy_location="HeadOnly")
    serve._run(build_app(registry, settings, APP_NAME), name=APP_NAME, route_prefix="/", _blocking=False)
    wait_until_running(settings.startup_timeout_s)


def wait_until_running(timeout_s: float) -> None:
    """Poll Serve until the app runs; on failure or timeout, raise with each unhealthy deployment's message."""
    deadline = time.monotonic() + timeout_s
    while True:
        app = serve.status().applications.get(APP_NAME)
        if app is not None and app.status.value == "RUNNING":
            return
        if app is not None and app.status.value == "DEPLOY_FAILED":
            raise StartupError(f"deployment failed: {_unhealthy(app)}")
        if time.monotonic() > deadline:
            detail = _unhealthy(app) if app is not None else "the application was never created"
            raise StartupError(f"not ready after {timeout_s:.0f} s (MIRSTREAM_STARTUP_TIMEOUT_SECONDS): {detail}")
        time.sleep(0.5)


def _unhealthy(app: object) -> str:
    """'name: STATUS (summary: cause)' for every deployment that is not healthy, without the traceback."""
    parts = []
    for name, dep in app.deployments.items():  # type: ignore[attr-defined]
        if dep.status.value != "HEALTHY":
            lines = [ln.strip() for ln in strip_ansi(dep.message or "").splitlines() if ln.strip()]
            detail = lines[0] if lines else ""
            if len(lines) > 1:
                detail += f" {lines[-1]}"  # the exception line closes Serve's traceback
            parts.append(f"{name}: {dep.status.value}" + (f" ({detail})" if detail else ""))
    return "; ".join(parts) or str(getattr(app, "message", ""))


def shutdown() -> None:
    """Drain, then stop: deleting the app lets every replica finish its in-flight requests (up to its
    graceful_shutdown_timeout_s, MIRSTREAM_SHUTDOWN_GRACE_SECONDS) while no new ones are routed to it."""
    try:
        if serve.status().applications.get(APP_NAME) is not None:
            log.info("draining: waiting for in-flight streams to finish")
            serve.delete(APP_NAME, _blocking=True)
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
