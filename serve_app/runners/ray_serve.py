"""The Ray Serve application: one deployment per registry entry plus the ingress that runs each request's graph.

Each ``name:version`` becomes deployment ``<name>-v<version>`` as ``registry.deployment`` describes it (its
resources, autoscaling from and back to zero unless kept warm, limits). The ingress runs the shared Starlette
app with a RayRunner: each audio representation is ``ray.put`` once; each model's output stays in the object
store and its reference, not a copy, is what the models downstream of it in the graph receive.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import ray
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError
from ray.serve.handle import DeploymentHandle, DeploymentResponse

from models.base import Audio
from serve_app.config import Settings
from serve_app.ingress.admission import Admission
from serve_app.ingress.app import create_app
from serve_app.observability.logs import configure_logging
from serve_app.observability.metrics import RayMetrics
from serve_app.registry import ModelEntry, Registry
from serve_app.registry.availability import resolve_availability
from serve_app.registry.deployment import INGRESS_NAME, ingress_spec, model_spec
from serve_app.runners.base import ModelOutput, NodeResult, plain_message, strip_ansi
from serve_app.runners.host import AnalyzerHost

# A deployment that cannot start (its constructor fails: Serve gives up after 3 tries and marks it so). Not a
# replica that crashed and is being restarted (HEALTH_CHECK_FAILED): requests wait for the new replica.
START_FAILED = ("REPLICA_STARTUP_FAILED",)
READY = ("HEALTHY", "UPSCALING", "DOWNSCALING")  # a deployment scaling (from or to zero) still serves
DRAIN_REASON = "the server is shutting down and this model did not finish in time; send the request again"
STATUS_TTL_S = 1.0  # how stale the ingress's view of the deployments may be while a cold model starts


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

    async def analyze(self, inputs: dict[str, Any]) -> ModelOutput:
        """Analyse in a worker thread (batched with concurrent requests when the entry says so); when Serve
        cancels this request, flag the run so the analyzer stops (a batch stops once all its requests are gone).
        """
        flag = threading.Event()
        try:
            if not self._batched:
                return await asyncio.to_thread(self._run, inputs, flag)
            outcome = await self._analyze_batch(inputs, flag)
        except asyncio.CancelledError:
            flag.set()
            raise
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)
    async def _analyze_batch(
        self, inputs: list[dict[str, Any]], flags: list[threading.Event]
    ) -> list[ModelOutput | BaseException]:
        """Requests Serve gathered (up to the entry's max_batch_size) in one ``analyze_batch`` call.

        Errors come back as values, not raised: Serve would fail every request in the batch with one exception.
        """
        return await asyncio.to_thread(self._run_batch, inputs, flags)

    def _run(self, inputs: dict[str, Any], flag: threading.Event) -> ModelOutput:
        """Fetch the inputs from the object store (zero-copy for numpy) and analyse them."""
        return self._host.run(_fetch(inputs), flag)

    def _run_batch(
        self, inputs: list[dict[str, Any]], flags: list[threading.Event]
    ) -> list[ModelOutput | BaseException]:
        """Fetch every request's audio (a lost one fails alone) and run the rest as one batch."""
        fetched: list[Audio | BaseException] = []
        for one in inputs:
            try:
                (audio,) = _fetch(one).values()
                fetched.append(audio)
            except Exception as exc:  # noqa: BLE001 - this request's own outcome
                fetched.append(exc)
        ok = [(a, f) for a, f in zip(fetched, flags, strict=True) if isinstance(a, Audio)]
        results = iter(self._host.run_batch([a for a, _ in ok], [f for _, f in ok]))
        return [next(results) if isinstance(a, Audio) else a for a in fetched]


def _fetch(inputs: dict[str, Any]) -> dict[str, Any]:
    """Resolve every object-store reference among a request's inputs in one ``ray.get``."""
    refs = {k: v for k, v in inputs.items() if isinstance(v, ray.ObjectRef)}
    values = dict(zip(refs, ray.get(list(refs.values())), strict=True)) if refs else {}
    return {k: values.get(k, v) for k, v in inputs.items()}


def _cause(message: str) -> str:
    """The last line of a Serve deployment message (the exception that ends its traceback), uncoloured."""
    lines = [ln.strip() for ln in strip_ansi(message).splitlines() if ln.strip()]
    return lines[-1] if lines else ""


class RayRunner:
    """ModelRunner over Serve deployment handles."""

    def __init__(self, handles: dict[str, DeploymentHandle], registry: Registry, app_name: str) -> None:
        self._handles = handles
        self._registry = registry
        self._app_name = app_name
        self._status: tuple[float, dict[str, tuple[str, str, str]]] = (0.0, {})

    def share(self, audio: Audio) -> ray.ObjectRef:
        """``ray.put`` the representation once; every model that takes it gets the same reference."""
        return ray.put(audio)

    async def run(self, entry: ModelEntry, inputs: dict[str, Any]) -> NodeResult:
        """Call the entry's deployment (inputs travel as references, nested in a dict so Serve leaves them
        alone); wait for a replica, watching for a cold deployment that cannot start; cancelling cancels."""
        response = self._handles[entry.key].analyze.remote(inputs)
        try:
            ref = await self._assigned(entry, response)
            output = await ref
        except asyncio.CancelledError:
            response.cancel()
            raise
        return NodeResult(output=output, handle=ref)

    async def _assigned(self, entry: ModelEntry, response: DeploymentResponse) -> ray.ObjectRef:
        """The response's object reference once a replica took the call; fails if the deployment cannot start."""
        assign = asyncio.ensure_future(response._to_object_ref())
        try:
            while True:
                done, _ = await asyncio.wait({assign}, timeout=STATUS_TTL_S)
                if done:
                    return assign.result()
                _, trigger, message = (await self._deployment_states()).get(entry.deployment_name, ("", "", ""))
                if trigger in START_FAILED:
                    raise RuntimeError(f"{entry.key} could not start: {message or trigger}")
        finally:
            if not assign.done():
                assign.cancel()

    async def _deployment_states(self, max_age_s: float = STATUS_TTL_S) -> dict[str, tuple[str, str, str]]:
        """(status, status trigger, cause) per deployment of this app, cached for ``max_age_s`` across requests."""
        at, states = self._status
        if time.monotonic() - at > max_age_s:
            status = await asyncio.to_thread(serve.status)
            app = status.applications.get(self._app_name)
            deployments = app.deployments.items() if app is not None else ()
            states = {
                name: (str(d.status.value), str(d.status_trigger.value), _cause(d.message or ""))
                for name, d in deployments
            }
            self._status = (time.monotonic(), states)
        return states

    def describe_error(self, exc: BaseException) -> str:
        """The analyzer's own message, not Ray's coloured traceback; a dead replica says so."""
        if isinstance(exc, (ActorDiedError, ActorUnavailableError, RayActorError)):
            return "the model replica died while analysing this audio (it is being restarted); try again"
        if isinstance(exc, RayTaskError) and exc.cause is not None:
            exc = exc.cause
        return plain_message(exc).splitlines()[0]

    async def health(self) -> tuple[bool, dict[str, str]]:
        """Every deployment's state from the Serve controller: ready when each is healthy or scaling (a model
        scaled to zero on purpose is HEALTHY with no replica, and counts as ready while it can be started).

        Always asked afresh: with a cached view, two ingress replicas (each its own cache, up to STATUS_TTL_S old)
        answered a load balancer 200, 503, 200 while a lost node's replicas were being replaced
        (benchmarks/autoscaling_results.md)."""
        states = {name: state for name, (state, _, _) in (await self._deployment_states(max_age_s=0.0)).items()}
        wanted = [e.deployment_name for e in self._registry.entries] + [INGRESS_NAME]
        ready = all(states.get(name) in READY for name in wanted)
        return ready, states


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
class Ingress:
    """Parses requests, decodes once, runs each request's model graph through RayRunner and streams SSE.

    The default version of each model may come from this deployment's ``user_config`` (``{"defaults":
    {name: version}}``): Serve applies a changed one by calling ``reconfigure`` on the running replicas, so
    moving a default from ``key:1`` to ``key:2`` restarts nothing; open streams finish on the app they began on.
    """

    def __init__(self, handles: dict[str, DeploymentHandle], registry: Registry, settings: Settings) -> None:
        configure_logging(settings.log_level, settings.log_format)
        self._runner = RayRunner(handles, registry, serve.get_replica_context().app_name)
        self._registry = registry
        self._settings = settings
        self._metrics = RayMetrics()
        self._admission = Admission(settings)  # outlives app swaps: stream cap, rate limits, the drain
        self._app = create_app(registry, self._runner, settings, self._metrics, admission=self._admission)

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Swap in an app whose catalogue has the given default versions."""
        registry = apply_defaults(self._registry, dict(config.get("defaults") or {}))
        self._app = create_app(registry, self._runner, self._settings, self._metrics, admission=self._admission)

    async def drain(self, seconds: float) -> int:
        """Shutdown, step 1 (called on every ingress replica): refuse new streams, let open ones finish for up to
        ``seconds``, then end the rest cleanly. Returns how many streams had to be ended."""
        return await self._admission.drain(seconds, DRAIN_REASON)

    def __serve_build_asgi_app__(self) -> Any:
        """An ASGI callable that always forwards to the current app."""

        async def current_app(scope: Any, receive: Any, send: Any) -> None:
            await self._app(scope, receive, send)

        return current_app


def model_deployment(entry: ModelEntry, settings: Settings) -> serve.Application:
    """One entry's bound deployment, with the options ``registry.deployment`` describes for it."""
    return ModelDeployment.options(**model_spec(entry, settings).options()).bind(entry, settings)


def _application(registry: Registry, settings: Settings, user_config: dict[str, Any] | None) -> serve.Application:
    """Every served entry's deployment, then the ingress holding their handles (options from registry.deployment)."""
    models = {e.key: model_deployment(e, settings) for e in registry.entries}
    options = ingress_spec(registry, settings).options()
    if user_config is not None:
        options["user_config"] = user_config
    return Ingress.options(**options).bind(models, registry, settings)


def build_app(registry: Registry, settings: Settings) -> serve.Application:
    """The bound Serve application for ``mirstream serve``.

    Entries whose weights are absent (or non-commercial while disabled) get no deployment; the ingress still
    lists them, unavailable, and refuses requests for them (registry.availability.resolve_availability).
    """
    return _application(resolve_availability(registry, settings), settings, None)


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
    defaults = {"defaults": {e.name: e.version for e in registry.catalogue() if e.default}}
    return _application(registry, settings, defaults)
