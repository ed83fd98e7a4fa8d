"""Registry validation: every mistake an operator can make fails start-up with a message that names it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from serve_app.config import DEFAULT_REGISTRY
from serve_app.ingress.request import RequestError, parse_models
from serve_app.registry import RegistryError, load_registry, normalize_name, parse_registry
from tests.conftest import registry_data


def test_shipped_registry_is_valid_and_has_the_seed_models() -> None:
    """model_registry.yaml loads and holds the three models the hosted API names."""
    registry = load_registry(DEFAULT_REGISTRY)
    keys = {e.key for e in registry.entries}
    assert {"key:1", "bpm_degara:1", "loudness-ebur128:1"} <= keys
    loud = registry.find("loudness_ebur128", None)
    assert loud is not None and loud.input.sample_rate is None and loud.input.channels == "original"
    assert registry.find("key_essentia", "1").name == "key"
    total = registry.ingress.num_cpus + sum(e.resources.num_cpus for e in registry.entries)
    assert total <= 2.0, "the default catalogue must fit a 2-core machine"


def _broken(mutate) -> str:
    """Apply ``mutate`` to a copy of the real registry data and return the validation message."""
    data = copy.deepcopy(registry_data())
    mutate(data)
    with pytest.raises(RegistryError) as info:
        parse_registry(data, "test.yaml")
    return str(info.value)


def test_unknown_class() -> None:
    """A class path that does not exist is named."""
    msg = _broken(lambda d: d["models"][0].update({"class": "models.key.NoSuchAnalyzer"}))
    assert "test.yaml" in msg and "key:1" in msg and "NoSuchAnalyzer" in msg


def test_unknown_module() -> None:
    """A module that cannot be imported is named."""
    msg = _broken(lambda d: d["models"][0].update({"class": "models.nowhere.Key"}))
    assert "cannot import module 'models.nowhere'" in msg


def test_class_not_an_analyzer() -> None:
    """Only subclasses of models.base.Analyzer may be registered."""
    msg = _broken(lambda d: d["models"][0].update({"class": "models.base.InputSpec"}))
    assert "not a subclass of models.base.Analyzer" in msg


def test_duplicate_name_version() -> None:
    """The same name:version twice (any spelling) is refused."""

    def dup(d: dict) -> None:
        twin = copy.deepcopy(d["models"][2])
        twin["name"] = "LOUDNESS_EBUR128".lower()
        twin["aliases"] = []
        d["models"].append(twin)

    assert "duplicate model loudness_ebur128:1" in _broken(dup)


def test_two_defaults_and_no_default() -> None:
    """Exactly one default per name."""

    def two(d: dict) -> None:
        second = copy.deepcopy(d["models"][0])
        second.update({"version": "2", "aliases": []})
        d["models"].append(second)

    assert "two defaults (key:1, key:2)" in _broken(two)
    assert "no default version" in _broken(lambda d: d["models"][0].update({"default": False}))


def test_params_must_fit_the_class() -> None:
    """A parameter the analyzer does not take is refused at start-up, not at the first request."""
    msg = _broken(lambda d: d["models"][0]["params"].update({"profle": "edma"}))
    assert "params" in msg and "profle" in msg


def test_alias_collision_and_bad_fields() -> None:
    """Aliases cannot shadow another model; resources and autoscaling are range-checked."""
    assert "already used by model 'key'" in _broken(lambda d: d["models"][1].update({"aliases": ["key"]}))
    assert "num_cpus" in _broken(lambda d: d["models"][0]["resources"].update({"num_cpus": -1}))
    assert "max_replicas (1) is below min_replicas (2)" in _broken(
        lambda d: d["models"][0].update({"autoscaling": {"min_replicas": 2, "max_replicas": 1}})
    )
    assert "unknown key(s) ['colour']" in _broken(lambda d: d["models"][0].update({"colour": "red"}))
    assert "channels" in _broken(lambda d: d["models"][0]["input"].update({"channels": "stereo"}))
    assert "missing required key 'output_schema'" in _broken(lambda d: d["models"][0].pop("output_schema"))


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    """File problems say which file."""
    with pytest.raises(RegistryError, match="cannot read model registry"):
        load_registry(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed")
    with pytest.raises(RegistryError, match="not valid YAML"):
        load_registry(bad)


def test_name_normalisation() -> None:
    """'-' and '_' are equivalent and case is ignored."""
    assert normalize_name(" Loudness-EBUR128 ") == normalize_name("loudness_ebur128")


def test_parse_models_keeps_order_and_dedupes() -> None:
    """Request order is kept; a repeat (in any spelling) runs once."""
    registry = load_registry(DEFAULT_REGISTRY)
    entries = parse_models("bpm_degara, key:1 ,KEY,loudness_ebur128", registry)
    assert [e.key for e in entries] == ["bpm_degara:1", "key:1", "loudness-ebur128:1"]
    with pytest.raises(RequestError) as info:
        parse_models("key,nothing", registry)
    assert info.value.status == 404 and "bpm_degara (versions: 1)" in info.value.detail


def test_output_schema_must_be_valid_json_schema() -> None:
    """An unquoted ', ' inside a YAML flow mapping turns a description tail into a null property: refused."""
    data = registry_data()
    data["models"][0]["output_schema"]["properties"]["in output order"] = None
    with pytest.raises(RegistryError, match="output_schema is not a valid JSON Schema at properties/in output order"):
        parse_registry(data)
