"""Plugin discovery, blocking, autoload, registries and their errors."""

from __future__ import annotations

import importlib.metadata as metadata
import sys
from pathlib import Path

import pytest

from harness import hookimpl
from harness.errors import DuplicateNameError, PluginError, UnknownNameError
from harness.pluginmanager import AUTOLOAD_ENV, get_plugin_manager
from harness.registry import collect
from harness.specs import ModelSpec

BUILTINS = {"metrics", "writers", "tasks", "scenes", "zeroshot", "linear_probe", "openclip", "hf", "torchvision"}


def test_builtins_load_through_entry_points_with_provenance() -> None:
    infos = {info.name: info for info in get_plugin_manager().plugins_info()}
    assert BUILTINS <= set(infos)
    assert infos["zeroshot"].distribution == "vision-harness"
    assert infos["zeroshot"].version == metadata.version("vision-harness")


def test_block_a_plugin_removes_what_it_provides() -> None:
    registries = collect(get_plugin_manager(["no:zeroshot"]))
    assert "zeroshot" not in {i.name for i in registries.pm.plugins_info()}
    assert "zeroshot_classification" not in registries.task_kinds
    assert "accuracy" in registries.metrics


def test_autoload_can_be_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTOLOAD_ENV, "1")
    assert get_plugin_manager().plugins_info() == []
    assert [i.name for i in get_plugin_manager(["metrics"]).plugins_info()] == ["metrics"]


def _write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str) -> str:
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(name, None)
    return name


def test_p_loads_a_module_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _write_module(tmp_path, monkeypatch, "harness_adhoc_plugin", (
        "from harness import hookimpl\nfrom harness.specs import ModelSpec\n"
        "@hookimpl\ndef harness_register_models():\n"
        "    return [ModelSpec('adhoc:one', 'x:y', frozenset({'image_embed'}))]\n"))
    registries = collect(get_plugin_manager([name]))
    assert registries.models.entry("adhoc:one").plugin == name


def test_p_naming_an_already_loaded_plugin_module_is_a_no_op() -> None:
    pm = get_plugin_manager(["harness_lm", "lm"])  # module and entry-point name of one plugin
    assert [p.name for p in pm.plugins_info()].count("lm") == 1
    assert "harness_lm" not in [p.name for p in pm.plugins_info()]


def test_misspelt_hook_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _write_module(tmp_path, monkeypatch, "harness_typo_plugin", (
        "from harness import hookimpl\n@hookimpl\ndef harness_register_modelz():\n    return []\n"))
    with pytest.raises(PluginError, match="harness_typo_plugin"):
        get_plugin_manager([name])


def test_broken_entry_point_names_plugin_and_escape_hatch(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = metadata.EntryPoint(name="broken", value="harness_no_such_module_xyz", group="harness")
    monkeypatch.setattr("harness.pluginmanager._entry_points", lambda: [broken])
    with pytest.raises(PluginError, match=r"'broken'.*-p no:broken"):
        get_plugin_manager()
    assert get_plugin_manager(["no:broken"]).plugins_info() == []


class _Provider:
    def __init__(self, name: str) -> None:
        self.name = name

    @hookimpl
    def harness_register_models(self) -> list[ModelSpec]:
        return [ModelSpec("dup:model", f"{self.name}:load", frozenset({"image_embed"}))]


def test_duplicate_names_both_providers() -> None:
    pm = get_plugin_manager(["no:" + n for n in BUILTINS])
    pm.register_plugin(_Provider("first_pkg"), "first")
    pm.register_plugin(_Provider("second_pkg"), "second")
    with pytest.raises(DuplicateNameError) as info:
        collect(pm)
    assert "'first'" in str(info.value) and "'second'" in str(info.value)


def test_unknown_name_suggests_and_points_to_listing() -> None:
    registries = collect(get_plugin_manager())
    with pytest.raises(UnknownNameError, match=r"did you mean 'accuracy'.*harness list metrics"):
        registries.metrics.get("acuracy")
    with pytest.raises(UnknownNameError, match="harness list models"):
        registries.resolve_model("nosuchprovider:model")


def test_register_hook_returning_wrong_type_is_an_error() -> None:
    class Bad:
        @hookimpl
        def harness_register_metrics(self) -> list[str]:
            return ["not a spec"]

    pm = get_plugin_manager(["no:" + n for n in BUILTINS])
    pm.register_plugin(Bad(), "bad")
    with pytest.raises(PluginError, match="'bad'.*MetricSpec"):
        collect(pm)


def test_resolver_answer_is_attributed_to_its_plugin() -> None:
    class Resolver:
        @hookimpl
        def harness_resolve_model(self, name: str) -> ModelSpec | None:
            return ModelSpec(name, "x:y", frozenset({"image_embed"})) if name.startswith("mine:") else None

    pm = get_plugin_manager()
    pm.register_plugin(Resolver(), "mine")
    registries = collect(pm)
    spec, plugin = registries.resolve_model("mine:abc")
    assert (spec.name, plugin) == ("mine:abc", "mine")
