"""Prometheus metrics of the analysis path, one interface for both modes.

Ray mode records through ``ray.util.metrics``: Ray's metrics agent serves them with Serve's built-in
metrics on the node's metrics export port, each name prefixed ``ray_`` (``ray_mirstream_requests_total``).
The in-process mode records with ``prometheus_client`` and the app serves them at ``/metrics``
under the same names without the prefix.
"""

from __future__ import annotations

from typing import Any, Protocol

# name -> (kind, description, label names); histograms get LATENCY_BUCKETS
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "mirstream_requests_total": ("counter", "Analysis streams by outcome", ("outcome",)),
    "mirstream_rejected_requests_total": ("counter", "Requests refused before streaming, by HTTP status", ("status",)),
    "mirstream_model_runs_total": ("counter", "Model runs by model and outcome", ("model", "outcome")),
    "mirstream_model_queue_seconds": ("histogram", "Time a model run waited (queue, transfer)", ("model",)),
    "mirstream_model_compute_seconds": ("histogram", "Time a model spent computing", ("model",)),
    "mirstream_decode_seconds": ("histogram", "Decode + resample time by container", ("container",)),
    "mirstream_audio_seconds_total": ("counter", "Seconds of audio analysed", ()),
    "mirstream_url_bytes_total": ("counter", "Bytes fetched from audio-url", ()),
    "mirstream_streams_in_flight": ("gauge", "Open analysis streams (this ingress process)", ()),
}
LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300]


class Metrics(Protocol):
    """What the stream and the ingress record."""

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        """Add to a counter."""

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Record a histogram sample."""

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set a gauge."""


class PrometheusMetrics:
    """prometheus_client metrics in a private registry (so several apps in one process do not clash)."""

    def __init__(self) -> None:
        import prometheus_client as prom

        self.registry = prom.CollectorRegistry()
        kinds: dict[str, Any] = {"counter": prom.Counter, "histogram": prom.Histogram, "gauge": prom.Gauge}
        self._metrics: dict[str, Any] = {}
        for name, (kind, doc, labels) in METRICS.items():
            extra = {"buckets": LATENCY_BUCKETS} if kind == "histogram" else {}
            base = name.removesuffix("_total") if kind == "counter" else name
            self._metrics[name] = kinds[kind](base, doc, labels, registry=self.registry, **extra)

    def _child(self, name: str, labels: dict[str, str]) -> Any:
        metric = self._metrics[name]
        return metric.labels(**labels) if labels else metric

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        """Add to a counter."""
        self._child(name, labels).inc(value)

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Record a histogram sample."""
        self._child(name, labels).observe(value)

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set a gauge."""
        self._child(name, labels).set(value)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        import prometheus_client as prom

        return prom.generate_latest(self.registry)


class RayMetrics:
    """ray.util.metrics, created in the ingress replica; exported by Ray's metrics agent."""

    def __init__(self) -> None:
        from ray.util import metrics as ray_metrics

        kinds: dict[str, Any] = {
            "counter": ray_metrics.Counter,
            "histogram": ray_metrics.Histogram,
            "gauge": ray_metrics.Gauge,
        }
        self._metrics: dict[str, Any] = {}
        for name, (kind, doc, labels) in METRICS.items():
            extra = {"boundaries": LATENCY_BUCKETS} if kind == "histogram" else {}
            self._metrics[name] = kinds[kind](name, description=doc, tag_keys=labels, **extra)

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        """Add to a counter."""
        self._metrics[name].inc(value, tags=labels or None)

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Record a histogram sample."""
        self._metrics[name].observe(value, tags=labels or None)

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set a gauge."""
        self._metrics[name].set(value, tags=labels or None)
