"""The Grafana dashboard is valid JSON and only queries metrics that exist."""

from __future__ import annotations

import json
import re

from serve_app.observability.metrics import METRICS
from tests.conftest import REPO

# Ray Serve built-ins the dashboard uses (seen on Ray 2.60's metrics export port)
SERVE_METRICS = {"ray_serve_deployment_replica_healthy"}


def test_dashboard_queries_known_metrics() -> None:
    """Every panel has targets; every metric name in them is ours (ray_ prefixed) or a known Serve one."""
    dashboard = json.loads((REPO / "k8s" / "grafana" / "mirstream-dashboard.json").read_text())
    known = set(SERVE_METRICS)
    for name, (kind, _, _) in METRICS.items():
        base = f"ray_{name}"
        known |= {base, f"{base}_bucket", f"{base}_count", f"{base}_sum"} if kind == "histogram" else {base}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 8
    used = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= set(re.findall(r"\bray_[a-z_]+", target["expr"]))
    assert used <= known, used - known
    assert {"ray_mirstream_model_compute_seconds_bucket", "ray_mirstream_streams_in_flight"} <= used
