"""Task specs: strict validation with file, field and allowed values; stable hashing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.errors import SpecError
from harness.pluginmanager import get_plugin_manager
from harness.registry import collect
from harness.taskspec import load_task_spec

VALID = {
    "name": "toy_zeroshot",
    "version": 1,
    "kind": "zeroshot_classification",
    "dataset": {"path": "data", "split": "test"},
    "columns": {"image": "image", "label": "label"},
    "prompts": {"templates": ["a photo of a {c}."]},
    "metrics": ["accuracy", "mean_per_class_recall"],
    "main_score": "accuracy",
}


@pytest.fixture(scope="module")
def registries():  # noqa: ANN201
    return collect(get_plugin_manager())


def write(tmp_path: Path, spec: dict, name: str = "toy_zeroshot") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def with_changes(**changes: object) -> dict:
    spec = {**VALID, **changes}
    return {k: v for k, v in spec.items() if v is not None}


def test_valid_spec_loads_with_resolved_path_and_hash(tmp_path: Path, registries) -> None:  # noqa: ANN001
    spec = load_task_spec(write(tmp_path, VALID), registries)
    assert spec.dataset.path == (tmp_path / "data").resolve()
    assert spec.metrics == ("accuracy", "mean_per_class_recall")
    reformatted = tmp_path / "other" / "toy_zeroshot.yaml"
    reformatted.parent.mkdir()
    reformatted.write_text(yaml.safe_dump(VALID, default_flow_style=True) + "# a comment\n")
    assert load_task_spec(reformatted).sha256 == spec.sha256
    assert load_task_spec(write(tmp_path, with_changes(version=2))).sha256 != spec.sha256


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "red"}, r"<top>: Additional properties.*'colour'.*allowed keys: citation, columns"),
        ({"version": "one"}, r"version: 'one' is not of type 'integer'"),
        ({"main_score": None}, r"'main_score' is a required property"),
        ({"main_score": "top5_accuracy"}, r"main_score: 'top5_accuracy' not in metrics"),
        ({"name": "other_name"}, r"name: 'other_name' must equal the file stem 'toy_zeroshot'"),
        ({"dataset": {"hub": "org/data", "revision": "main", "split": "test"}}, r"dataset.revision: 'main' does not match"),
        ({"dataset": {"hub": "org/data", "split": "test"}}, r"dataset: must set exactly one source"),
        ({"dataset": {"path": "a", "builder": "scenes", "split": "test"}}, r"dataset: must set exactly one source"),
        ({"prompts": {"templates": ["no placeholder"]}}, r"prompts.templates\[0\]: 'no placeholder' does not match"),
        ({"metrics": []}, r"metrics: \[\] should be non-empty"),
    ],
)
def test_schema_errors_name_file_and_field(tmp_path: Path, changes: dict, message: str) -> None:
    path = write(tmp_path, with_changes(**changes))
    with pytest.raises(SpecError, match=message) as info:
        load_task_spec(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "zeroshot"}, r"kind: 'zeroshot' is not registered; allowed values: .*zeroshot_classification"),
        ({"metrics": ["accuracy", "f1"]}, r"metrics: 'f1' is not registered; allowed values: accuracy"),
        ({"columns": {"image": "img"}}, r"columns: kind 'zeroshot_classification' needs roles \['image', 'label'\]"),
        ({"params": {"temperature": 2}}, r"params: Additional properties.*'temperature'.*allowed keys: logit_scale"),
        ({"params": {"logit_scale": -1}}, r"params.logit_scale: -1 is less than or equal to the minimum of 0"),
        ({"dataset": {"builder": "nosuch", "split": "test"}}, r"dataset.builder: 'nosuch' is not registered"),
    ],
)
def test_plugin_checks(tmp_path: Path, registries, changes: dict, message: str) -> None:  # noqa: ANN001
    with pytest.raises(SpecError, match=message):
        load_task_spec(write(tmp_path, with_changes(**changes)), registries)


def test_malformed_yaml_reports_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nversion: 1\nmetrics: [accuracy\n")
    with pytest.raises(SpecError, match=r"broken.yaml: invalid YAML at line \d+, column \d+"):
        load_task_spec(path)


def test_non_mapping_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="list.yaml: <top>: .* is not of type 'object'"):
        load_task_spec(path)
    with pytest.raises(SpecError, match="does not exist"):
        load_task_spec(tmp_path / "nope.yaml")


def test_every_registered_task_spec_is_valid(registries) -> None:  # noqa: ANN001
    assert len(registries.tasks) >= 1
    for name, entry in registries.tasks.items():
        spec = load_task_spec(entry.item, registries)
        assert spec.name == name
        assert spec.main_score in spec.metrics
        assert spec.dataset.hub is None or len(spec.dataset.revision or "") == 40
