"""Task specs: strict validation with file, field and allowed values; shared data files; stable hashing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.errors import SpecError
from harness.pluginmanager import get_plugin_manager
from harness.registry import collect
from harness.taskspec import load_task_spec

TASKS = Path(__file__).resolve().parents[1] / "tasks"
VALID = {
    "name": "toy_zeroshot",
    "version": 1,
    "kind": "zeroshot_classification",
    "dataset": {"path": "data", "split": "test"},
    "columns": {"image": "image", "label": "label"},
    "params": {"templates": ["a photo of a {c}."]},
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


def test_params_get_the_kinds_defaults(tmp_path: Path, registries) -> None:  # noqa: ANN001
    spec = load_task_spec(write(tmp_path, with_changes(params=None)), registries)
    assert dict(spec.params) == {"templates": ["a photo of a {c}."], "logit_scale": 100.0}
    given = load_task_spec(write(tmp_path, with_changes(params={"logit_scale": 50, "templates": ["{c}"]})), registries)
    assert dict(given.params) == {"templates": ["{c}"], "logit_scale": 50}
    assert given.sha256 != spec.sha256
    # the hash is of the spec as written: filling defaults in does not change it
    assert load_task_spec(write(tmp_path, with_changes(params=None))).sha256 == spec.sha256


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "red"}, r"<top>: Additional properties.*'colour'.*allowed keys: citation, columns"),
        ({"prompts": {"templates": ["a {c}"]}}, r"<top>: Additional properties.*'prompts'.*allowed keys: .*params"),
        ({"version": "one"}, r"version: 'one' is not of type 'integer'"),
        ({"main_score": None}, r"'main_score' is a required property"),
        ({"main_score": "top5_accuracy"}, r"main_score: 'top5_accuracy' not in metrics"),
        ({"name": "other_name"}, r"name: 'other_name' must equal the file stem 'toy_zeroshot'"),
        ({"dataset": {"hub": "org/data", "revision": "main", "split": "test"}}, r"dataset.revision: 'main' does not match"),
        ({"dataset": {"hub": "org/data", "split": "test"}}, r"dataset: must set exactly one source"),
        ({"dataset": {"path": "a", "builder": "scenes", "split": "test"}}, r"dataset: must set exactly one source"),
        ({"params": ["a photo of a {c}."]}, r"params: \[.*\] is not of type 'object'"),
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
        ({"params": {"temperature": 2}},
         r"params: Additional properties.*'temperature'.*allowed keys: classnames, descriptors, grain_slash_rule, logit_scale, preprocess, renormalize, templates"),
        ({"params": {"logit_scale": -1}}, r"params.logit_scale: -1 is less than or equal to the minimum of 0"),
        ({"params": {"classnames": ["cat"]}}, r"params.classnames: \['cat'\] is too short"),
        ({"params": {"templates": []}}, r"params.templates: \[\] should be non-empty"),
        ({"dataset": {"builder": "nosuch", "split": "test"}}, r"dataset.builder: 'nosuch' is not registered"),
    ],
)
def test_plugin_checks(tmp_path: Path, registries, changes: dict, message: str) -> None:  # noqa: ANN001
    path = write(tmp_path, with_changes(**changes))
    with pytest.raises(SpecError, match=message) as info:
        load_task_spec(path, registries)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{c} {x}", r"params.templates\[1\]: '\{c\} \{x\}' has unknown placeholder\(s\) \{x\}; allowed: \{c\}"),
        ("a photo of {}", r"params.templates\[1\]: 'a photo of \{\}' has unknown placeholder\(s\) \{\}"),
        ("no placeholder", r"params.templates\[1\]: 'no placeholder' must contain \{c\}"),
        ("a {c", r"params.templates\[1\]: 'a \{c' is not a valid template"),
    ],
)
def test_template_placeholders_are_checked(tmp_path: Path, registries, template: str, message: str) -> None:  # noqa: ANN001
    path = write(tmp_path, with_changes(params={"templates": ["a photo of a {c}.", template]}))
    with pytest.raises(SpecError, match=message) as info:
        load_task_spec(path, registries)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    for fine in ("{c}", "a {c} and a {c}.", "{{literal}} {c}", "{c!r}", "{c:>10}"):
        load_task_spec(write(tmp_path, with_changes(params={"templates": [fine]})), registries)


def test_validate_reports_a_bad_template_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "templates.txt").write_text("a photo of a {c}.\n{c} {x}\n")
    path = write(tmp_path, with_changes(params={"templates": {"$file": "shared/templates.txt"}}))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"FAIL\t{path}: params.templates[1]: '{{c}} {{x}}' has unknown placeholder(s) {{x}}")
    good = write(tmp_path, VALID, "good")
    good.write_text(good.read_text().replace("toy_zeroshot", "good"))
    assert main(["validate", str(good)]) == 0


def test_shared_files_are_inserted_into_params(tmp_path: Path, registries) -> None:  # noqa: ANN001
    data = tmp_path / "shared" / "deeper"
    data.mkdir(parents=True)
    (data / "classnames.txt").write_text("tabby cat\n  dog  \n\nSt. Bernard's #1: \"quoted\" - [x]\n")
    (data / "templates.yaml").write_text("- 'a photo of a {c}.'\n- 'a drawing of a {c}.'\n")
    (tmp_path / "shared" / "scale.json").write_text(json.dumps(42.5))
    path = write(tmp_path, with_changes(params={"classnames": {"$file": "shared/deeper/classnames.txt"},
                                                "templates": {"$file": "shared/deeper/templates.yaml"},
                                                "logit_scale": {"$file": "shared/scale.json"}}))
    spec = load_task_spec(path, registries)
    # .txt: the non-empty lines, stripped, kept verbatim otherwise (no YAML quoting to get wrong)
    assert spec.params["classnames"] == ["tabby cat", "dog", "St. Bernard's #1: \"quoted\" - [x]"]
    assert spec.params["templates"] == ["a photo of a {c}.", "a drawing of a {c}."]
    assert spec.params["logit_scale"] == 42.5
    # a file nested in a list
    nested = write(tmp_path, with_changes(params={"templates": [{"$file": "shared/deeper/templates.yaml"}]}))
    with pytest.raises(SpecError, match=r"params.templates\[0\]: \[.*\] is not of type 'string'"):
        load_task_spec(nested, registries)


def test_shared_file_content_is_hashed(tmp_path: Path) -> None:
    (tmp_path / "names.txt").write_text("cat\ndog\n")
    path = write(tmp_path, with_changes(params={"classnames": {"$file": "names.txt"}}))
    first = load_task_spec(path).sha256
    (tmp_path / "inline").mkdir()
    inline = load_task_spec(write(tmp_path / "inline", with_changes(params={"classnames": ["cat", "dog"]}))).sha256
    assert first == inline  # the hash is of the content, not of the reference
    (tmp_path / "names.txt").write_text("cat\ndog\n\n")  # formatting only: the same content
    assert load_task_spec(path).sha256 == first
    (tmp_path / "names.txt").write_text("cat\nwolf\n")
    assert load_task_spec(path).sha256 != first


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("../outside.txt", r"'\.\./outside\.txt' is not a file inside"),
        ("sub/../../outside.txt", r"is not a file inside"),
        ("ABSOLUTE", r"is not a file inside"),
        ("LINK", r"is not a file inside"),
        ("missing.txt", r"'missing\.txt' is not a file inside"),
        ("sub", r"'sub' is not a file inside"),
        ("names.csv", r"'names\.csv': use a \.txt, \.json or \.yaml file"),
        ("broken.json", r"'broken\.json' is not valid JSON"),
        ("", r"\$file: expected a relative file path"),
        (3, r"\$file: expected a relative file path"),
    ],
)
def test_bad_shared_file_references(tmp_path: Path, ref: object, message: str) -> None:
    folder = tmp_path / "specs"
    (folder / "sub").mkdir(parents=True)
    (tmp_path / "outside.txt").write_text("secret\n")
    (folder / "names.csv").write_text("a,b\n")
    (folder / "broken.json").write_text("{nope")
    (folder / "link.txt").symlink_to(tmp_path / "outside.txt")
    ref = {"ABSOLUTE": str(tmp_path / "outside.txt"), "LINK": "link.txt"}.get(ref, ref) if isinstance(ref, str) else ref
    path = write(folder, with_changes(params={"classnames": {"$file": ref}}))
    with pytest.raises(SpecError, match=message) as info:
        load_task_spec(path)
    assert str(info.value).startswith(f"{path}: params.classnames: ") and "\n" not in str(info.value)
    assert "secret" not in str(info.value)


def test_a_file_reference_takes_no_other_keys(tmp_path: Path) -> None:
    (tmp_path / "names.txt").write_text("cat\ndog\n")
    path = write(tmp_path, with_changes(params={"classnames": {"$file": "names.txt", "extra": 1}}))
    with pytest.raises(SpecError, match=r"params.classnames: a \{\$file: PATH\} mapping may have no other keys"):
        load_task_spec(path)


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
    from harness.suite import is_suite_file, load_suite

    for name, entry in registries.tasks.items():
        if is_suite_file(entry.item):
            assert load_suite(entry.item, registries).name == name
            continue
        spec = load_task_spec(entry.item, registries)
        assert spec.name == name
        assert spec.main_score in spec.metrics
        assert spec.dataset.hub is None or len(spec.dataset.revision or "") == 40


def test_shipped_tasks_and_their_shared_files(registries) -> None:  # noqa: ANN001
    shipped = {name for name, entry in registries.tasks.items() if Path(entry.item).is_relative_to(TASKS)}
    assert shipped == {path.stem for path in TASKS.rglob("*.yaml")}
    assert not {path.stem for path in TASKS.rglob("*.txt")} & set(dict(registries.tasks.items()))
    imagenet = load_task_spec(TASKS / "imagenet1k_zeroshot.yaml", registries)
    assert len(imagenet.params["templates"]) == 80 and len(imagenet.params["classnames"]) == 1000
    assert imagenet.params["templates"][0] == "a bad photo of a {c}."
    assert imagenet.params["classnames"][:3] == ["tench", "goldfish", "great white shark"]
    assert imagenet.params["classnames"][-1] == "toilet paper"
    assert "Geoffroy's spider monkey" in imagenet.params["classnames"]
    assert imagenet.params["logit_scale"] == 100.0
    scenes = load_task_spec(TASKS / "scenes_shapes_zeroshot.yaml", registries)
    assert scenes.params["templates"] == ["a photo of a {c}.", "a drawing of a {c}.", "a {c} shape."]
