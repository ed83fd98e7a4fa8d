"""`mirstream k8s render`: the shipped registry renders, a small golden render matches, and every rendered object
passes the schema of what consumes it (KubeRay's RayService CRD, Kubernetes' PodTemplateSpec, Ray Serve's
ServeDeploySchema); the Dockerfiles agree with pyproject.toml; the plain Serve config starts with `serve run`,
streams, moves a default live and stops without leaving a process behind.
"""

from __future__ import annotations

import copy
import io
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser
from ray.serve.schema import ServeDeploySchema

from serve_app import cli
from serve_app.ops import k8s_render as kr
from serve_app.registry import parse_registry
from serve_app.registry.deployment import INGRESS_NAME
from tests.audio_factory import c_major_cadence, encode
from tests.conftest import REPO, free_port, marked_pids, wait_healthy
from tests.sse import post

K8S = REPO / "k8s"
DATA = REPO / "tests" / "data" / "k8s"
GOLDEN = DATA / "golden"
CRD = DATA / "kuberay" / "ray.io_rayservices.extract.yaml"
GOLDEN_OPTIONS = kr.RenderOptions(
    image="mirstream:test-cpu",
    gpu_image="mirstream:test-gpu",
    ray_version="2.60.0",
    namespace="audio",
    models_pvc="mirstream-models",
    api_keys_secret="mirstream-api-keys",
)
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())  # oldest we claim, newest the package knows


def _docs(text: str) -> dict[str, Any]:
    """The single YAML document of a rendered file (the header is comments)."""
    return yaml.safe_load(text)


def _rendered(registry: Path, options: kr.RenderOptions) -> tuple[dict[str, Any], dict[str, Any]]:
    """(RayService, serve config) as data."""
    files = kr.render(registry, options)
    return _docs(files[kr.RAYSERVICE_FILE]), _docs(files[kr.SERVE_CONFIG_FILE])


def _strict(node: Any) -> Any:
    """Reject unknown fields like `kubectl apply` (server-side strict field validation) does: every object schema
    with properties and no additionalProperties/preserve-unknown-fields gets additionalProperties: false."""
    if isinstance(node, dict):
        if (
            node.get("type") == "object"
            and "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node


@pytest.fixture(scope="module")
def crd_validator() -> jsonschema.Draft7Validator:
    """The vendored RayService CRD's v1 schema as a strict validator."""
    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    return jsonschema.Draft7Validator(schema)


def _pod_templates(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Head and worker pod templates by group name."""
    cluster = service["spec"]["rayClusterConfig"]
    out = {"head": cluster["headGroupSpec"]["template"]}
    out.update({g["groupName"]: g["template"] for g in cluster["workerGroupSpecs"]})
    return out


def _validate_pod_template(template: dict[str, Any]) -> None:
    """Strict Kubernetes validation of a pod template (as a core/v1 PodTemplate object)."""
    wrapper = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"}, "template": template}
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(wrapper, version, strict=True)


# --- generated files ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The manifests of the shipped registry, rendered now (they are generated at release, not committed)."""
    out = tmp_path_factory.mktemp("k8s")
    for name, text in kr.render(REPO / "model_registry.yaml", kr.RenderOptions()).items():
        (out / name).write_text(text)
    return out


def _folder(source: str, shipped: Path) -> Path:
    """Where the manifests of ``source`` ('shipped' or 'golden') are."""
    return shipped if source == "shipped" else GOLDEN


def test_nothing_generated_is_committed() -> None:
    """Adding a model touches the registry and a class only: the manifests are rendered at release / in CI."""
    assert not (K8S / kr.RAYSERVICE_FILE).exists() and not (K8S / kr.SERVE_CONFIG_FILE).exists()


def test_golden_render() -> None:
    """A fixed registry (two key versions, a GPU model) renders byte for byte as the golden files."""
    files = kr.render(GOLDEN / "registry.yaml", GOLDEN_OPTIONS)
    for name, text in files.items():
        golden = (GOLDEN / name).read_text()
        assert golden == text, f"golden {name} differs; regenerate with the command in {GOLDEN / 'registry.yaml'}"


def test_cli_writes_and_checks(tmp_path: Path) -> None:
    """`mirstream k8s render --out` writes both files; `--check` passes on them and fails once one is edited."""
    argv = ["k8s", "render", "--registry", str(REPO / "model_registry.yaml"), "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    assert done.value.code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [kr.RAYSERVICE_FILE, kr.SERVE_CONFIG_FILE]
    expected = kr.render(REPO / "model_registry.yaml", kr.RenderOptions())
    assert all((tmp_path / name).read_text() == text for name, text in expected.items())
    with pytest.raises(SystemExit) as done:
        cli.main([*argv, "--check"])
    assert done.value.code == 0
    edited = tmp_path / kr.SERVE_CONFIG_FILE
    edited.write_text(edited.read_text().replace("max_surge_percent: 100", "max_surge_percent: 50", 1))
    with pytest.raises(SystemExit) as done:
        cli.main([*argv, "--check"])
    assert done.value.code == 1


def test_cli_flags_reach_the_manifest(tmp_path: Path) -> None:
    """Node selectors, tolerations and the deletion-delay opt-out are parsed from flags."""
    argv = [
        "k8s", "render", "--registry", str(GOLDEN / "registry.yaml"), "--out", str(tmp_path),
        "--gpu-node-selector", "cloud.google.com/gke-accelerator=nvidia-l4",
        "--gpu-toleration", "gpu=true:NoExecute", "--cpu-node-selector", "pool=cpu", "--no-cluster-deletion-delay",
    ]  # fmt: skip
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    assert done.value.code == 0
    service = _docs((tmp_path / kr.RAYSERVICE_FILE).read_text())
    groups = {g["groupName"]: g["template"]["spec"] for g in service["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    assert groups["gpu-workers"]["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert groups["gpu-workers"]["tolerations"] == [
        {"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoExecute"}
    ]
    assert groups["cpu-workers"]["nodeSelector"] == {"pool": "cpu"} and "tolerations" not in groups["cpu-workers"]
    assert "rayClusterDeletionDelaySeconds" not in service["spec"]
    with pytest.raises(SystemExit, match="KEY\\[=VALUE\\]:EFFECT"):
        cli.main([*argv[:6], "--gpu-toleration", "nvidia.com/gpu"])


# --- schemas -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["shipped", "golden"])
def test_rayservice_passes_the_kuberay_crd(
    source: str, shipped: Path, crd_validator: jsonschema.Draft7Validator
) -> None:
    """The RayService validates against KubeRay's CRD schema with unknown fields rejected."""
    path = _folder(source, shipped) / kr.RAYSERVICE_FILE
    service = _docs(path.read_text())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in crd_validator.iter_errors(service)]
    assert errors == []
    assert service["apiVersion"] == "ray.io/v1" and service["kind"] == "RayService"
    assert service["spec"]["upgradeStrategy"]["type"] in ("NewCluster", "None")  # a plain string in the CRD


def test_crd_validator_rejects_mistakes(crd_validator: jsonschema.Draft7Validator) -> None:
    """The strict CRD check bites: a misspelt field, a missing required one and a wrong type all fail."""
    service = _docs((GOLDEN / kr.RAYSERVICE_FILE).read_text())
    typo = copy.deepcopy(service)
    typo["spec"]["rayClusterConfig"]["workerGroupSpec"] = typo["spec"]["rayClusterConfig"].pop("workerGroupSpecs")
    missing = copy.deepcopy(service)
    del missing["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"]
    wrong = copy.deepcopy(service)
    wrong["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    for bad in (typo, missing, wrong):
        assert list(crd_validator.iter_errors(bad)), bad["spec"]["rayClusterConfig"].keys()


@pytest.mark.parametrize("source", ["shipped", "golden"])
def test_pod_templates_pass_kubernetes_schemas(source: str, shipped: Path) -> None:
    """Head and worker pod templates (the CRD embeds core/v1 PodTemplateSpec) pass strict Kubernetes validation."""
    service = _docs((_folder(source, shipped) / kr.RAYSERVICE_FILE).read_text())
    templates = _pod_templates(service)
    for template in templates.values():
        _validate_pod_template(template)
    bad = copy.deepcopy(templates["head"])
    bad["spec"]["containers"][0]["resource"] = bad["spec"]["containers"][0].pop("resources")
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate_pod_template(bad)


@pytest.mark.parametrize("source", ["shipped", "golden"])
def test_serve_config_passes_ray_serve_schema(source: str, shipped: Path) -> None:
    """serve_config.yaml and the RayService's serveConfigV2 are the same document and valid ServeDeploySchema."""
    folder = _folder(source, shipped)
    config = _docs((folder / kr.SERVE_CONFIG_FILE).read_text())
    embedded = yaml.safe_load(_docs((folder / kr.RAYSERVICE_FILE).read_text())["spec"]["serveConfigV2"])
    assert embedded == config
    schema = ServeDeploySchema.model_validate(config)
    (app,) = schema.applications
    assert app.import_path == kr.IMPORT_PATH and app.route_prefix == "/"
    registry = parse_registry(
        {**app.args["registry"], "models": _first_defaults(app.args["registry"]["models"])}, "args"
    )
    names = [d.name for d in app.deployments]
    assert names == [INGRESS_NAME] + [e.deployment_name for e in registry.entries]


def _first_defaults(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark each name's first entry default (the args registry carries none) so parse_registry accepts it."""
    seen: set[str] = set()
    out = []
    for m in models:
        out.append({**m, "default": m["name"] not in seen})
        seen.add(m["name"])
    return out


# --- what the render decides ---------------------------------------------------------------------------------------


def test_deployments_follow_the_registry() -> None:
    """Per deployment: actor options, autoscaling (warm entries keep their minimum, cold ones scale from zero),
    max_ongoing_requests and one grace period come from the entry, as the Serve app itself builds them."""
    registry = parse_registry(yaml.safe_load((GOLDEN / "registry.yaml").read_text()), "golden")
    _, config = _rendered(GOLDEN / "registry.yaml", GOLDEN_OPTIONS)
    deployments = {d["name"]: d for d in config["applications"][0]["deployments"]}
    grace = 60 + 900 + kr.SHUTDOWN_MARGIN_S  # the longest stream: URL fetch (60 s) + the slowest model (900 s)
    for entry in registry.entries:
        d = deployments[entry.deployment_name]
        options = {"num_cpus": entry.resources.num_cpus, "num_gpus": entry.resources.num_gpus}
        if entry.resources.memory_mb:
            options["memory"] = entry.resources.memory_mb * 2**20
        assert d["ray_actor_options"] == options
        assert d["autoscaling_config"]["min_replicas"] == (entry.autoscaling.min_replicas if entry.warm else 0)
        assert d["autoscaling_config"]["max_replicas"] == entry.autoscaling.max_replicas
        assert d["max_ongoing_requests"] == entry.max_ongoing_requests
        assert d["graceful_shutdown_timeout_s"] == grace
        assert d["max_surge_percent"] == 100 and "user_config" not in d
    assert {n for n, d in deployments.items() if d["autoscaling_config"]["min_replicas"] == 0} == {
        "key-v2",
        "tagger-v1",
    }
    tagger = deployments["tagger-v1"]
    assert tagger["ray_actor_options"]["memory"] == 3072 * 2**20
    assert tagger["autoscaling_config"]["downscale_to_zero_delay_s"] == GOLDEN_OPTIONS.model_idle_s
    assert deployments["ingress"]["graceful_shutdown_timeout_s"] == grace
    assert deployments["ingress"]["user_config"] == {"defaults": {"key": "1", "loudness-ebur128": "1", "tagger": "1"}}
    assert all("default" not in m for m in config["applications"][0]["args"]["registry"]["models"])


def test_worker_groups_are_sized_by_the_formula() -> None:
    """The golden registry's groups, worked by hand from size_groups' docstring (headroom 1.25)."""
    service, _ = _rendered(GOLDEN / "registry.yaml", GOLDEN_OPTIONS)
    cluster = service["spec"]["rayClusterConfig"]
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert list(groups) == ["cpu-workers", "gpu-workers"]
    # CPU at min (warm replicas only): ingress 0.25 + key-v1 0.5 + loudness 0.5 = 1.25 CPU → 2 CPU pods (1.25 x 1.25);
    # memory 3 x 512 MiB x 1.25 = 1920 → 2048 MiB per pod for replicas (+1024 object store +1024 Ray) = 4096 Mi;
    # max (key-v2 started too): 3.5 CPU x 1.25 / 2 → 3 pods, 8 x 512 MiB x 1.25 / 2048 → 3 pods.
    cpu = groups["cpu-workers"]
    limits = cpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert (cpu["minReplicas"], cpu["maxReplicas"], cpu["replicas"]) == (1, 3, 1)
    assert limits == {"cpu": "2", "memory": "4096Mi"}
    assert cpu["rayStartParams"]["num-cpus"] == "2" and cpu["rayStartParams"]["memory"] == str(2048 * 2**20)
    # GPU: tagger (cold) 0.5 GPU x 0..4 replicas → 0..2 one-GPU pods (none while it is cold); per GPU at max:
    # 4 CPU / 2 GPU x 1.25 → 3 CPU, 12288 MiB / 2 GPU x 1.25 = 7680 MiB (+2048) = 9728 Mi.
    gpu = groups["gpu-workers"]
    spec = gpu["template"]["spec"]
    assert (gpu["minReplicas"], gpu["maxReplicas"], gpu["replicas"]) == (0, 2, 0)
    assert spec["containers"][0]["resources"]["limits"] == {"cpu": "3", "memory": "9728Mi", "nvidia.com/gpu": "1"}
    assert spec["containers"][0]["resources"]["requests"] == spec["containers"][0]["resources"]["limits"]
    assert spec["containers"][0]["image"] == "mirstream:test-gpu" and gpu["rayStartParams"]["num-gpus"] == "1"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "nodeSelector" not in cpu["template"]["spec"]
    # the head runs Ray's control plane and a proxy, never a replica
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_gpu_group_only_when_a_model_needs_a_gpu(shipped: Path) -> None:
    """The CPU-only registry renders no GPU group and no GPU image."""
    service = _docs((shipped / kr.RAYSERVICE_FILE).read_text())
    registry = parse_registry(yaml.safe_load((REPO / "model_registry.yaml").read_text()), "repo")
    groups = [g["groupName"] for g in service["spec"]["rayClusterConfig"]["workerGroupSpecs"]]
    wants_gpu = any(e.resources.num_gpus > 0 for e in registry.entries)
    assert groups == (["cpu-workers", "gpu-workers"] if wants_gpu else ["cpu-workers"])


def test_pods_get_settings_weights_and_scrape_annotations(shipped: Path) -> None:
    """Every Ray container: MIRSTREAM_* env, the models PVC at MIRSTREAM_MODELS_DIR, shm, Prometheus annotations."""
    service, _ = _rendered(GOLDEN / "registry.yaml", GOLDEN_OPTIONS)
    for template in _pod_templates(service).values():
        (container,) = template["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["MIRSTREAM_MODELS_DIR"]["value"] == "/models"
        assert env["MIRSTREAM_METRICS_PORT"]["value"] == str(kr.METRICS_PORT)
        assert env["MIRSTREAM_API_KEYS"]["valueFrom"]["secretKeyRef"] == {
            "name": "mirstream-api-keys",
            "key": "api-keys",
        }
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["models"] == {"name": "models", "mountPath": "/models", "readOnly": True}
        assert mounts["dshm"]["mountPath"] == "/dev/shm"
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["serve"] == 8000 and ports["metrics"] == kr.METRICS_PORT
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(kr.METRICS_PORT)
    assert service["spec"]["rayClusterDeletionDelaySeconds"] == 990  # = the ingress's graceful shutdown
    # without --models-pvc the weights come from the image: no volume
    plain = _docs((shipped / kr.RAYSERVICE_FILE).read_text())
    for template in _pod_templates(plain).values():
        assert [v["name"] for v in template["spec"]["volumes"]] == ["dshm"]


def _registry_with(tmp_path: Path, keys: tuple[str, ...]) -> tuple[Path, dict[str, Any]]:
    """A registry file with the given ``name:version`` entries of the real registry (and its ingress)."""
    data = yaml.safe_load((REPO / "model_registry.yaml").read_text())
    data = {"ingress": data["ingress"], "models": [m for m in data["models"] if f"{m['name']}:{m['version']}" in keys]}
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, data


def test_noncommercial_models_can_be_left_out(tmp_path: Path) -> None:
    """--no-noncommercial: no deployment for non-commercial-weights entries, pods get MIRSTREAM_NONCOMMERCIAL=false;
    the entries stay in args (listed as unavailable) and keep their default in the ingress's user_config."""
    path, _ = _registry_with(tmp_path, ("key:1", "musicnn_msd:1", "mood_happy:msd-musicnn-1"))
    on_service, on = _rendered(path, kr.RenderOptions())
    off_service, off = _rendered(path, kr.RenderOptions(allow_noncommercial=False))
    names = [[d["name"] for d in c["applications"][0]["deployments"]] for c in (on, off)]
    # the ISC-licensed backbone stays; MTG's head (CC BY-NC-ND) goes
    assert names == [
        ["ingress", "key-v1", "musicnn_msd-v1", "mood_happy-vmsd-musicnn-1"],
        ["ingress", "key-v1", "musicnn_msd-v1"],
    ]
    assert on["applications"][0]["args"] == off["applications"][0]["args"]
    defaults = off["applications"][0]["deployments"][0]["user_config"]["defaults"]
    assert defaults == {"key": "1", "musicnn_msd": "1", "mood_happy": "msd-musicnn-1"}
    for service, value in ((on_service, "true"), (off_service, "false")):
        for template in _pod_templates(service).values():
            env = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}
            assert env["MIRSTREAM_NONCOMMERCIAL"] == value


def test_builder_refuses_models_without_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The config path deploys what the manifest names: missing weights fail the build with the fetch command,
    unless the model is turned off by policy (then it is listed, not deployed, as the render assumed)."""
    from ray import serve

    from serve_app.runners.ray_serve import app_builder

    _, data = _registry_with(tmp_path, ("key:1", "discogs_effnet:bs64-1", "mood_happy:discogs-effnet-1"))
    args = {"registry": kr.args_registry(data)}
    monkeypatch.setenv("MIRSTREAM_MODELS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("MIRSTREAM_NONCOMMERCIAL", "true")
    with pytest.raises(RuntimeError, match="discogs_effnet:bs64-1 is not installed.*mirstream models fetch"):
        app_builder(args)
    monkeypatch.setenv("MIRSTREAM_NONCOMMERCIAL", "false")
    assert isinstance(app_builder(args), serve.Application)


# --- version rollouts (k8s/ROLLOUTS.md) ----------------------------------------------------------------------------


def _key_registry(tmp_path: Path, default: str, with_v2: bool = True) -> Path:
    """The real registry's key:1, plus key:2 (edma profile) when asked, with ``default`` as the default version."""
    data = yaml.safe_load((REPO / "model_registry.yaml").read_text())
    models = [m for m in data["models"] if m["name"] in ("key", "loudness-ebur128")]
    key1 = next(m for m in models if m["name"] == "key")
    if with_v2:
        key2 = {**copy.deepcopy(key1), "version": "2", "params": {"profile": "edma"}, "description": "key, edma"}
        models.insert(models.index(key1) + 1, key2)
    for m in models:
        if m["name"] == "key":
            m["default"] = m["version"] == default
    path = tmp_path / f"registry-{default}-{int(with_v2)}.yaml"
    path.write_text(yaml.safe_dump({"ingress": data["ingress"], "models": models}, sort_keys=False))
    return path


def test_moving_the_default_changes_only_the_ingress_config(tmp_path: Path) -> None:
    """key:1 and key:2 are two deployments; moving the default from 1 to 2 changes the ingress's user_config and
    nothing else: same args (no app rebuild), same rayClusterConfig (KubeRay updates in place, no new cluster)."""
    opts = kr.RenderOptions()
    service1, config1 = _rendered(_key_registry(tmp_path, "1"), opts)
    service2, config2 = _rendered(_key_registry(tmp_path, "2"), opts)
    app1, app2 = config1["applications"][0], config2["applications"][0]
    assert {"key-v1", "key-v2"} <= {d["name"] for d in app1["deployments"]}
    assert app1["args"] == app2["args"]
    assert app1["deployments"][1:] == app2["deployments"][1:]
    ingress1, ingress2 = app1["deployments"][0], app2["deployments"][0]
    assert ingress1["user_config"]["defaults"]["key"] == "1" and ingress2["user_config"]["defaults"]["key"] == "2"
    assert {k: v for k, v in ingress1.items() if k != "user_config"} == {
        k: v for k, v in ingress2.items() if k != "user_config"
    }
    assert service1["spec"]["rayClusterConfig"] == service2["spec"]["rayClusterConfig"]
    assert {k: v for k, v in service1["spec"].items() if k != "serveConfigV2"} == {
        k: v for k, v in service2["spec"].items() if k != "serveConfigV2"
    }
    # adding key:2 is a code change (args differ): Serve rebuilds the app and rolls replicas, new ones first
    _, config_v1_only = _rendered(_key_registry(tmp_path, "1", with_v2=False), opts)
    assert config_v1_only["applications"][0]["args"] != app1["args"]


def test_apply_defaults_moves_and_checks() -> None:
    """The ingress's reconfigure: defaults move; an unknown model, a missing one or a missing version is refused."""
    from serve_app.runners.ray_serve import apply_defaults

    registry = parse_registry(yaml.safe_load((GOLDEN / "registry.yaml").read_text()), "golden")
    moved = apply_defaults(registry, {"key": "2", "loudness-ebur128": "1", "tagger": "1"})
    assert moved.find("key", None).version == "2" and registry.find("key", None).version == "1"
    assert [e.key for e in moved.entries] == [e.key for e in registry.entries]
    for bad, why in (
        ({"key": "3", "loudness-ebur128": "1", "tagger": "1"}, "no entry key:3"),
        ({"key": "1", "loudness-ebur128": "1"}, "without one \\['tagger'\\]"),
        ({"key": "1", "loudness-ebur128": "1", "tagger": "1", "nope": "1"}, "unknown model\\(s\\) \\['nope'\\]"),
    ):
        with pytest.raises(ValueError, match=why):
            apply_defaults(registry, bad)


# --- Dockerfiles ---------------------------------------------------------------------------------------------------


def _dockerfile(name: str) -> DockerfileParser:
    """Parse k8s/<name> statically (the images are not built in CI: no registry access for base images)."""
    return DockerfileParser(fileobj=io.BytesIO((K8S / name).read_bytes()))


def _pyproject() -> dict[str, Any]:
    """pyproject.toml as data."""
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _pin(project: dict[str, Any], name: str) -> str | None:
    """The ==version pin of ``name`` in dependencies or any extra, if pyproject has one."""
    specs = list(project["dependencies"]) + [
        s for extra in project.get("optional-dependencies", {}).values() for s in extra
    ]
    for spec in specs:
        m = re.match(rf"^{re.escape(name)}(\[[^\]]*\])?==([^;\s]+)", spec.strip())
        if m:
            return m.group(2)
    return None


def _expected_version(project: dict[str, Any], name: str) -> str | None:
    """pyproject's pin, else the version installed in this environment (without a local label like +cpu)."""
    pinned = _pin(project, name)
    if pinned:
        return pinned
    try:
        return kr.importlib.metadata.version(name).split("+")[0]
    except kr.importlib.metadata.PackageNotFoundError:
        return None


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_dockerfiles_agree_with_pyproject(name: str) -> None:
    """Base image = Ray's image for pyproject's Ray pin and Python; the COPYs carry what setuptools needs;
    runtimes are pinned to the project's versions; weights are optional at build time."""
    parser = _dockerfile(name)
    project = _pyproject()["project"]
    flavour = name.rsplit(".", 1)[1]
    python = re.search(r">=\s*3\.(\d+)", project["requires-python"]).group(1)
    assert parser.baseimage == f"rayproject/ray:{_pin(project, 'ray')}-py3{python}-{flavour}"
    instructions = [(s["instruction"], s["value"]) for s in parser.structure if s["instruction"] != "COMMENT"]
    copies = [v.split() for i, v in instructions if i == "COPY"]
    sources = {src for parts in copies for src in parts[:-1] if not src.startswith("--")}
    packages = {p.rstrip("*") for p in _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert {"pyproject.toml", project["readme"], "model_registry.yaml"} | packages <= sources
    assert all((REPO / src).exists() for src in sources), sources
    runs = " && ".join(v for i, v in instructions if i == "RUN")
    assert "pip install -e '.[server]'" in runs  # the base install is the client only
    args = parser.args
    torch = _expected_version(project, "torch")
    if torch:
        assert args["TORCH_VERSION"] == torch
    assert '"torch==${TORCH_VERSION}"' in runs
    if flavour == "cpu":
        assert "--index-url https://download.pytorch.org/whl/cpu" in runs  # PyPI's Linux wheel is the CUDA one
        onnx = _expected_version(project, "onnxruntime")
        if onnx:
            assert args["ONNXRUNTIME_VERSION"] == onnx
    else:
        assert "download.pytorch.org/whl/cpu" not in runs
        # the CPU package is removed before the CUDA one goes in (both provide the `onnxruntime` module)
        assert runs.index("pip uninstall -y onnxruntime onnxruntime-gpu") < runs.index("onnxruntime-gpu==")
        assert re.fullmatch(r"\d+\.\d+\.\d+", args["ONNXRUNTIME_GPU_VERSION"])
    assert args["FETCH_MODELS"] == "--all"  # weights baked in by default: the rendered manifest deploys them all
    assert "mirstream models fetch $FETCH_MODELS --models-dir /models" in runs
    env = dict(parser.envs)
    assert env["MIRSTREAM_MODELS_DIR"] == kr.RenderOptions().models_dir


# --- the plain Serve config, started for real ----------------------------------------------------------------------


def _defaults(base: str) -> dict[str, str]:
    """name → default version from GET /v1/models."""
    models = httpx.get(f"{base}/v1/models", timeout=10).json()["models"]
    return {m["name"]: m["version"] for m in models if m["default"]}


def _wait_default(base: str, name: str, version: str, timeout: float = 90.0) -> None:
    """Poll /v1/models until ``name``'s default is ``version``."""
    deadline = time.monotonic() + timeout
    while _defaults(base).get(name) != version:
        assert time.monotonic() < deadline, f"{name}:{version} never became the default: {_defaults(base)}"
        time.sleep(0.5)


@pytest.mark.server
def test_serve_run_streams_moves_default_and_stops(tmp_path: Path) -> None:
    """`serve run` on the rendered config: ready, key:2 is the default (from the ingress's user_config, not the
    builder's first-listed guess), a stream completes, `serve deploy` of the moved default reconfigures the running
    ingress (no replica restarts), and SIGINT stops everything."""
    port = free_port()
    options = kr.RenderOptions(http_host="127.0.0.1", http_port=port)
    for name, text in kr.render(_key_registry(tmp_path, "2"), options).items():
        (tmp_path / name).write_text(text)
    moved = kr.render(_key_registry(tmp_path, "1"), options)[kr.SERVE_CONFIG_FILE]
    (tmp_path / "moved.yaml").write_text(moved)
    marker = f"MIRSTREAM_K8S_TEST={uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(dict([marker.split("=", 1)]), RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    serve_bin = str(Path(sys.executable).parent / "serve")
    log = tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [serve_bin, "run", "--address", "local", str(tmp_path / kr.SERVE_CONFIG_FILE)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background shell may ignore it
        )
    try:
        wait_healthy(base, timeout=240)
        assert _defaults(base) == {"key": "2", "loudness-ebur128": "1"}
        stream = post(base, "key,key:1,loudness-ebur128", encode(c_major_cadence(1.5, 2), 44100, "flac"))
        assert stream.status == 200 and stream.statuses()[-1] == "finished", stream.events
        done = [e["result"] for e in stream.events if e["status"] == "completed"]
        versions = sorted((r["model_name"], r["model_version"]) for r in done)
        assert versions == [("key", "1"), ("key", "2"), ("loudness-ebur128", "1")], stream.events
        assert all(
            (r["results"]["key"], r["results"]["scale"]) == ("C", "major") for r in done if r["model_name"] == "key"
        )
        dashboard = re.search(rb"dashboard at \S*?(http://127\.0\.0\.1:\d+)", log.read_bytes())
        assert dashboard, log.read_text()[-2000:]
        deploy = subprocess.run(
            [serve_bin, "deploy", str(tmp_path / "moved.yaml"), "--address", dashboard.group(1).decode()],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        _wait_default(base, "key", "1")
        stream = post(base, "key", encode(c_major_cadence(1.5, 2), 44100, "flac"))
        assert [e["result"]["model_version"] for e in stream.events if e["status"] == "completed"] == ["1"]
        text = log.read_text(errors="replace")
        assert "Updating 1 replicas of Deployment(name='ingress'" in text  # reconfigured in place
        assert text.count("Adding 1 replica to Deployment(name='ingress'") == 1  # never restarted
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail("serve run did not stop within 90 s of SIGINT")
    deadline = time.monotonic() + 30
    while marked_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = marked_pids(marker)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"processes left after serve run stopped: {left}"
