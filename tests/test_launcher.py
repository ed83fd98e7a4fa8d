"""Start-up fails fast, naming the deployment, when the registry asks for more than the cluster has."""

from __future__ import annotations

import copy

import pytest

from serve_app.config import DEFAULT_REGISTRY, Settings
from serve_app.ops.launcher import StartupError, preflight
from serve_app.registry import load_registry, parse_registry
from tests.conftest import registry_data


def test_default_catalogue_fits_two_cores() -> None:
    """The shipped registry fits a 2-CPU, no-GPU Ray cluster."""
    preflight(load_registry(DEFAULT_REGISTRY), Settings(), {"CPU": 2.0})


def test_gpu_model_on_cpu_cluster_names_the_deployment() -> None:
    """A model asking for a GPU on a CPU-only cluster is refused with its deployment name."""
    data = copy.deepcopy(registry_data())
    data["models"][1]["resources"]["num_gpus"] = 1
    with pytest.raises(StartupError, match="'bpm_degara-v1' needs 1.0 GPU"):
        preflight(parse_registry(data), Settings(), {"CPU": 2.0})


def test_single_replica_larger_than_cluster() -> None:
    """One replica bigger than the whole cluster is named."""
    data = copy.deepcopy(registry_data())
    data["models"][0]["resources"]["num_cpus"] = 3
    with pytest.raises(StartupError, match="'key-v1' needs 3.0 CPU"):
        preflight(parse_registry(data), Settings(), {"CPU": 2.0})


def test_sum_of_min_replicas_over_capacity() -> None:
    """Too many replicas in total: the message lists what each deployment asks for."""
    data = copy.deepcopy(registry_data())
    data["models"][2]["resources"]["num_cpus"] = 0.5
    data["models"][2]["autoscaling"] = {"min_replicas": 4, "max_replicas": 4}
    with pytest.raises(StartupError, match=r"loudness-ebur128-v1 0.5x4"):
        preflight(parse_registry(data), Settings(), {"CPU": 2.0})
