"""The Ray Serve application: one deployment per registry entry plus the ingress that fans out to them.

Each ``name:version`` becomes deployment ``<name>-v<version>`` with the entry's resources and
autoscaling. The ingress runs the shared Starlette app with a RayRunner: each audio representation is
``ray.put`` once and the same ObjectRef goes to every model that needs it.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import ray
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError
from ray.serve.handle import DeploymentHandle
from starlette.applications import Starlette

from models.base import Audio
from serve_app.analyzer_host import AnalyzerHost
from serve_app.config import Settings
from serve_app.ingress import create_app
from serve_app.logs import configure_logging
from serve_app.metrics import RayMetrics
from serve_app.registry import ModelEntry, Registry
from serve_app.runner import ModelOutput, plain_message

INGRESS_NAME = "ingress"


@serve.deployment
class ModelDeployment:
    """A replica of one registry entry: the analyzer is built once here, at replica start."""

    def __init__(self, entry: ModelEntry, settings: Settings) -> None:
        configure_logging(settings.log_level, settings.log_format)
        self._host = AnalyzerHost(entry)

    async def analyze(self, shared: dict[str, Any]) -> ModelOutput:
        """Analyse in a worker thread; when Serve cancels this request, flag the run so the analyzer stops."""
        flag = threading.Event()
        try:
            return await asyncio.to_thread(self._run, shared, flag)
        except asyncio.CancelledError:
            flag.set()
            raise

    def _run(self, shared: dict[str, Any], flag: threading.Event) -> ModelOutput:
        """Fetch the representation from the object store (zero-copy for numpy) and analyse it."""
        audio = shared["audio"]
        if isinstance(audio, ray.ObjectRef):
            audio = ray.get(audio)
        return self._host.run(audio, flag)


class RayRunner:
    """ModelRunner over Serve deployment handles."""

    def __init__(self, handles: dict[str, DeploymentHandle], registry: Registry, app_name: str) -> None:
        self._handles = handles
        self._registry = registry
        self._app_name = app_name

    def share(self, audio: Audio) -> dict[str, Any]:
        """``ray.put`` the representation once; models get the ref wrapped in a dict, so Serve passes it as-is."""
        return {"audio": ray.put(audio)}

    async def run(self, entry: ModelEntry, shared: dict[str, Any]) -> ModelOutput:
        """Call the entry's deployment; cancelling the awaiting task cancels the Serve request."""
        response = self._handles[entry.key].analyze.remote(shared)
        try:
            return await response
        except asyncio.CancelledError:
            response.cancel()
            raise

    def describe_error(self, exc: BaseException) -> str:
        """The analyzer's own message, not Ray's coloured traceback; a dead replica says so."""
        if isinstance(exc, (ActorDiedError, ActorUnavailableError, RayActorError)):
            return "the model replica died while analysing this audio (it is being restarted); try again"
        if isinstance(exc, RayTaskError) and exc.cause is not None:
            exc = exc.cause
        return plain_message(exc).splitlines()[0]

    async def health(self) -> tuple[bool, dict[str, str]]:
        """Ask the Serve controller for every deployment's status."""
        status = await asyncio.to_thread(serve.status)
        app = status.applications.get(self._app_name)
        if app is None:
            return False, {}
        states = {name: str(d.status.value) for name, d in app.deployments.items()}
        wanted = [e.deployment_name for e in self._registry.entries] + [INGRESS_NAME]
        ready = all(states.get(name) == "HEALTHY" for name in wanted)
        return ready, states


@serve.deployment
@serve.ingress()
class IngressDeployment:
    """Parses requests, decodes once, fans out through RayRunner and streams SSE (serve_app.ingress)."""

    def __init__(
        self, handles: dict[str, DeploymentHandle], registry: Registry, settings: Settings, app_name: str
    ) -> None:
        configure_logging(settings.log_level, settings.log_format)
        self._runner = RayRunner(handles, registry, app_name)
        self._registry = registry
        self._settings = settings

    def __serve_build_asgi_app__(self) -> Starlette:
        """Serve calls this at replica start to get the ASGI app."""
        return create_app(self._registry, self._runner, self._settings, RayMetrics())


def _actor_options(resources: Any) -> dict[str, Any]:
    """Registry resources → ray_actor_options."""
    options: dict[str, Any] = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus}
    if resources.memory_mb:
        options["memory"] = resources.memory_mb * 2**20
    return options


def _autoscaling(auto: Any) -> dict[str, Any]:
    """Registry autoscaling → Serve autoscaling_config."""
    return {
        "min_replicas": auto.min_replicas,
        "max_replicas": auto.max_replicas,
        "target_ongoing_requests": auto.target_ongoing_requests,
    }


def build_app(registry: Registry, settings: Settings, app_name: str) -> serve.Application:
    """The bound Serve application: every entry's deployment, then the ingress holding their handles."""
    models = {
        entry.key: ModelDeployment.options(
            name=entry.deployment_name,
            ray_actor_options=_actor_options(entry.resources),
            autoscaling_config=_autoscaling(entry.autoscaling),
            max_ongoing_requests=entry.max_ongoing_requests,
            graceful_shutdown_timeout_s=settings.shutdown_grace_s,
        ).bind(entry, settings)
        for entry in registry.entries
    }
    return IngressDeployment.options(
        name=INGRESS_NAME,
        ray_actor_options=_actor_options(registry.ingress),
        autoscaling_config=_autoscaling(registry.ingress_autoscaling),
        max_ongoing_requests=1000,
        graceful_shutdown_timeout_s=settings.shutdown_grace_s,
    ).bind(models, registry, settings, app_name)
