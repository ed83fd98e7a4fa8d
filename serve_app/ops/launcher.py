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
from serve_app.registry import Registry
from serve_app.registry.availability import resolve_availability
from serve_app.registry.deployment import APP_NAME, INGRESS_NAME, DoesNotFit, check_fits, deployment_specs
from serve_app.runners.base import strip_ansi
from serve_app.runners.ray_serve import build_app

log = logging.getLogger("mirstream.launcher")


class StartupError(RuntimeError):
    """The app cannot start as configured; the message names the deployment and the fix."""


def start_ray(settings: Settings) -> Settings:
    """A fresh local Ray instance sized to this machine (no dashboard, no spilling), or the cluster at
    ``settings.address`` (``--address`` / RAY_ADDRESS).

    Returns the settings with the metrics export port Ray actually uses (it picks one when none is set).
    """
    if not ray.is_initialized():
        if settings.address:
            ray.init(address=settings.address, namespace=APP_NAME)
        else:
            _init_local(settings)
    node = ray._private.worker.global_worker.node  # None for a Ray Client driver (ray://): no local node
    port = node.metrics_export_port if node is not None else settings.metrics_port
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
        _system_config={
            # uploaded audio lives in the object store only for the request; never spill it to disk
            "automatic_object_spilling_enabled": False,
            # no idle Python workers waiting at start-up (~45 MB each): replicas start their own process anyway
            "enable_worker_prestart": False,
            "prestart_worker_first_driver": False,
        },
        **extra,  # Prometheus scrapes Serve's and mirstream's metrics on this port
    )


def preflight(registry: Registry, settings: Settings, resources: dict[str, float]) -> None:
    """Check that every deployment's minimum replicas fit the cluster before deploying (Serve would wait forever)."""
    try:
        check_fits(deployment_specs(resolve_availability(registry, settings), settings), resources)
    except DoesNotFit as exc:
        raise StartupError(str(exc)) from None


def deploy(registry: Registry, settings: Settings) -> None:
    """Start Serve's HTTP proxies on host:port and the app, then wait (bounded) for every deployment.

    Embedded Ray has one node and one proxy. On a cluster (``--address``) every node with a replica runs a proxy
    too, so the endpoint outlives any one node behind a load balancer (Serve ignores this if it already runs).
    """
    preflight(registry, settings, ray.cluster_resources())
    location = "EveryNode" if settings.address else "HeadOnly"
    serve.start(http_options={"host": settings.host, "port": settings.port}, proxy_location=location)
    serve._run(build_app(registry, settings), name=APP_NAME, route_prefix="/", _blocking=False)
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


def shutdown(settings: Settings) -> None:
    """Drain, then stop, so that the whole tree is gone a few seconds after the grace period.

    1. Every ingress replica refuses new streams (503) and lets the open ones finish for up to
       MIRSTREAM_SHUTDOWN_GRACE_SECONDS; streams still open then end cleanly (an error event for each unfinished
       model, then ``finished``). Deleting the app instead would stop the models under the open streams.
    2. Embedded Ray: Serve and Ray stop. On an existing cluster (``--address``) only this app is deleted.
    """
    try:
        if serve.status().applications.get(APP_NAME) is not None:
            log.info("draining: open streams have %.0f s to finish", settings.shutdown_grace_s)
            handle = serve.get_deployment_handle(INGRESS_NAME, APP_NAME)
            ended = handle.broadcast("drain", settings.shutdown_grace_s).results(
                timeout_s=settings.shutdown_grace_s + 5, return_exceptions=True
            )
            cut = sum(n for n in ended if isinstance(n, int))
            log.info("drained: %d stream(s) had to be ended at the deadline", cut)
    except Exception as exc:  # noqa: BLE001 - a failed drain must not stop the shutdown
        log.warning("drain failed (%s); stopping anyway", strip_ansi(str(exc)).splitlines()[0] if str(exc) else exc)
    finally:
        try:
            if settings.address:
                serve.delete(APP_NAME, _blocking=True)
            else:
                serve.shutdown()
        finally:
            ray.shutdown()
