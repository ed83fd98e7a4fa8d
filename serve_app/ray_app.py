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
from serve_app.weights import resolve_availability

INGRESS_NAME = "ingress"


@serve.deployment
class ModelDeployment:
    """A replica of one registry entry: the analyzer is built once here, at replica start."""

    def __init__(self, entry: ModelEntry, settings: Settings) -> None:
        configure_logging(settings.log_level, settings.log_format)
        self._host = AnalyzerHost(entry)
        self._batched = entry.batching is not None
        if entry.batching is not None:  # one replica per process, so sizing the method's queue here is per entry
            self._analyze_batch.set_max_batch_size(entry.batching.max_batch_size)
            self._analyze_batch.set_batch_wait_timeout_s(entry.batching.batch_wait_timeout_s)

    async def analyze(self, shared: dict[str, Any]) -> ModelOutput:
        """Analyse in a worker thread (batched with concurrent requests when the entry says so); when Serve
        cancels this request, flag the run so the analyzer stops (a batch stops once all its requests are gone).
        """
        flag = threading.Event()
        try:
            if not self._batched:
                return await asyncio.to_thread(self._run, shared, flag)
            outcome = await self._analyze_batch(shared, flag)
        except asyncio.CancelledError:
            flag.set()
            raise
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)
    async def _analyze_batch(
        self, shareds: list[dict[str, Any]], flags: list[threading.Event]
    ) -> list[ModelOutput | BaseException]:
        """Requests Serve gathered (up to the entry's max_batch_size) in one ``analyze_batch`` call.

        Errors come back as values, not raised: Serve would fail every request in the batch with one exception.
        """
        return await asyncio.to_thread(self._run_batch, shareds, flags)

    def _run(self, shared: dict[str, Any], flag: threading.Event) -> ModelOutput:
        """Fetch the representation from the object store (zero-copy for numpy) and analyse it."""
        return self._host.run(_fetch(shared), flag)

    def _run_batch(
        self, shareds: list[dict[str, Any]], flags: list[threading.Event]
    ) -> list[ModelOutput | BaseException]:
        """Fetch every request's representation (a lost one fails alone) and run the rest as one batch."""
        fetched: list[Audio | BaseException] = []
        for shared in shareds:
            try:
                fetched.append(_fetch(shared))
            except Exception as exc:  # noqa: BLE001 - this request's own outcome
                fetched.append(exc)
        ok = [(a, f) for a, f in zip(fetched, flags, strict=True) if isinstance(a, Audio)]
        results = iter(self._host.run_batch([a for a, _ in ok], [f for _, f in ok]))
        return [next(results) if isinstance(a, Audio) else a for a in fetched]


def _fetch(shared: dict[str, Any]) -> Audio:
    """The representation a request shares: an object-store ref (zero-copy for numpy) or the Audio itself."""
    audio = shared["audio"]
    return ray.get(audio) if isinstance(audio, ray.ObjectRef) else audio


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


def _model_deployments(registry: Registry, settings: Settings) -> dict[str, Any]:
    """One bound deployment per served entry, keyed ``name:version``, with the entry's resources and scaling."""
    return {
        entry.key: ModelDeployment.options(
            name=entry.deployment_name,
            ray_actor_options=_actor_options(entry.resources),
            autoscaling_config=_autoscaling(entry.autoscaling),
            max_ongoing_requests=entry.max_ongoing_requests,
            graceful_shutdown_timeout_s=settings.shutdown_grace_s,
        ).bind(entry, settings)
        for entry in registry.entries
    }


def build_app(registry: Registry, settings: Settings, app_name: str) -> serve.Application:
    """The bound Serve application: every served entry's deployment, then the ingress holding their handles.

    Entries whose weights are absent (or non-commercial while disabled) get no deployment; the ingress still
    lists them, unavailable, and refuses requests for them (serve_app.weights.resolve_availability).
    """
    registry = resolve_availability(registry, settings)
    models = _model_deployments(registry, settings)
    return IngressDeployment.options(
        name=INGRESS_NAME,
        ray_actor_options=_actor_options(registry.ingress),
        autoscaling_config=_autoscaling(registry.ingress_autoscaling),
        max_ongoing_requests=1000,
        graceful_shutdown_timeout_s=settings.shutdown_grace_s,
    ).bind(models, registry, settings, app_name)


# --- Config-file deploys (`serve run` / `serve deploy` / KubeRay serveConfigV2, rendered by `mirstream k8s render`) ---


def apply_defaults(registry: Registry, defaults: dict[str, Any]) -> Registry:
    """The same entries with each model name's default version taken from ``defaults`` (name → version).

    Every name must be given exactly one existing version, so a bad ``user_config`` fails loudly instead of
    leaving a model without a default.
    """
    from dataclasses import replace

    versions = registry.names()
    unknown = sorted(set(defaults) - set(versions))
    missing = sorted(set(versions) - set(defaults))
    if unknown or missing:
        raise ValueError(f"ingress user_config defaults: unknown model(s) {unknown}, model(s) without one {missing}")
    for name, version in defaults.items():
        if str(version) not in versions[name]:
            raise ValueError(f"ingress user_config defaults: no entry {name}:{version} (versions {versions[name]})")

    def moved(e: ModelEntry) -> ModelEntry:
        return replace(e, default=str(defaults[e.name]) == e.version)

    return replace(
        registry,
        entries=tuple(moved(e) for e in registry.entries),
        withheld=tuple(replace(w, entry=moved(w.entry)) for w in registry.withheld),
    )


@serve.deployment
@serve.ingress()
class CatalogueIngress:
    """The ingress of config-file deploys: IngressDeployment's app, with the default version of each model
    read from this deployment's ``user_config`` (``{"defaults": {name: version}}``).

    Serve applies a changed ``user_config`` by calling ``reconfigure`` on the running replicas, so moving a
    default from ``key:1`` to ``key:2`` restarts nothing; streams already open finish on the app they began on.
    """

    def __init__(self, handles: dict[str, DeploymentHandle], registry: Registry, settings: Settings) -> None:
        configure_logging(settings.log_level, settings.log_format)
        self._runner = RayRunner(handles, registry, serve.get_replica_context().app_name)
        self._registry = registry
        self._settings = settings
        self._metrics = RayMetrics()
        self._app = create_app(registry, self._runner, settings, self._metrics)

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Swap in an app whose catalogue has the given default versions."""
        registry = apply_defaults(self._registry, dict(config.get("defaults") or {}))
        self._app = create_app(registry, self._runner, self._settings, self._metrics)

    def __serve_build_asgi_app__(self) -> Any:
        """An ASGI callable that always forwards to the current app."""

        async def current_app(scope: Any, receive: Any, send: Any) -> None:
            await self._app(scope, receive, send)

        return current_app


def _with_first_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """Registry data in which a model name without a ``default: true`` entry gets its first listed version."""
    models = [dict(m) for m in data.get("models") or []]
    named = {m.get("name") for m in models if m.get("default")}
    for m in models:
        if m.get("name") not in named:
            m["default"] = True
            named.add(m.get("name"))
    return {**data, "models": models}


def app_builder(args: dict[str, Any]) -> serve.Application:
    """Serve application builder for config files: ``args.registry`` is the registry mapping inline (as
    ``mirstream k8s render`` writes it, without ``default:`` flags), else ``args.registry_path`` or
    MIRSTREAM_REGISTRY names a file. Settings come from the MIRSTREAM_* environment of the cluster's pods.

    The ingress gets provisional defaults (each name's first version) in code; the config's ingress
    ``user_config`` carries the real ones, which Serve applies before the replica takes traffic.
    Entries turned off by policy (MIRSTREAM_NONCOMMERCIAL=false) are listed but not deployed, as the render
    assumes; an entry whose weights are missing fails the build naming the fix, because the config names a
    deployment for it (bake the weights into the image or mount them at MIRSTREAM_MODELS_DIR).
    """
    from pathlib import Path

    from serve_app.config import settings_from_env
    from serve_app.registry import load_registry, parse_registry

    settings = settings_from_env()
    if args.get("registry") is not None:
        registry = parse_registry(_with_first_defaults(args["registry"]), "serve config args.registry")
    else:
        registry = load_registry(Path(args.get("registry_path") or settings.registry_path))
    registry = resolve_availability(registry, settings)
    missing = [w.reason for w in registry.withheld if not w.by_policy]
    if missing:
        raise RuntimeError("cannot deploy the configured models: " + "; ".join(missing))
    models = _model_deployments(registry, settings)
    return CatalogueIngress.options(
        name=INGRESS_NAME,
        ray_actor_options=_actor_options(registry.ingress),
        autoscaling_config=_autoscaling(registry.ingress_autoscaling),
        max_ongoing_requests=1000,
        graceful_shutdown_timeout_s=settings.shutdown_grace_s,
        user_config={"defaults": {e.name: e.version for e in registry.catalogue() if e.default}},
    ).bind(models, registry, settings)
