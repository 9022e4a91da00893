"""Contracts over the whole project: packaging, import boundaries, every registered spec, golden results."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import harness.hookspecs
from harness import hookimpl
from harness.leaderboard import escape, render
from harness.pluginmanager import get_plugin_manager
from harness.registry import collect
from harness.result import read_result
from harness.execution import ExecutionConfig
from harness.runner import RunConfig, run
from harness.specs import CAPABILITIES

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
HEAVY = {"torch", "torchvision", "transformers", "open_clip", "datasets", "scipy", "sklearn", "timm"}


@pytest.fixture(scope="module")
def registries():  # noqa: ANN201
    return collect(get_plugin_manager())


def test_every_plugin_folder_is_packaged_and_declared() -> None:
    folders = {p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").exists()}
    packages = set(PYPROJECT["tool"]["setuptools"]["packages"])
    entry_points = set(PYPROJECT["project"]["entry-points"]["harness"].values())
    assert folders <= packages
    assert folders == entry_points


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", sorted((ROOT / "harness").glob("*.py")), ids=lambda p: p.name)
def test_core_imports_no_plugin_and_nothing_heavy_at_top_level(module: Path) -> None:
    every = {node.module or "" for node in ast.walk(ast.parse(module.read_text())) if isinstance(node, ast.ImportFrom)}
    every |= {a.name for node in ast.walk(ast.parse(module.read_text())) if isinstance(node, ast.Import) for a in node.names}
    assert not {name for name in every if name.startswith("harness_")}, "the core reaches plugins only through hooks"
    assert not _top_level_imports(module) & HEAVY


def test_listing_imports_no_torch() -> None:
    code = ("import sys; from harness.cli import main; "
            "[main(['list', w]) for w in ('models', 'tasks', 'kinds', 'metrics', 'datasets', 'trainers')]; "
            "main(['plugins']); "
            "heavy = {'torch', 'transformers', 'open_clip', 'datasets'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_every_hook_is_documented_in_the_plugin_guide() -> None:
    guide = (ROOT / "docs" / "plugins.md").read_text()
    for hook in (name for name in dir(harness.hookspecs) if name.startswith("harness_")):
        assert f"`{hook}`" in guide, hook


PUBLIC_MODULES = {"harness", "harness.testing"}


def _harness_imports(path: Path) -> set[str]:
    """Every ``harness`` module a file imports (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {name for name in names if name == "harness" or name.startswith("harness.")}
    return found


PLUGIN_SOURCES = sorted(p for p in [*(ROOT / "plugins").rglob("*.py"), *(ROOT / "examples").rglob("*.py")]
                        if "build" not in p.relative_to(ROOT).parts)  # build/: pip's copies, not sources


@pytest.mark.parametrize("path", PLUGIN_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_and_examples_import_only_the_public_api(path: Path) -> None:
    private = _harness_imports(path) - PUBLIC_MODULES
    assert not private, f"{path.relative_to(ROOT)} imports private core modules {sorted(private)}; use `harness`"


def test_every_public_name_resolves() -> None:
    import harness

    for name in harness.__all__:
        assert getattr(harness, name) is not None, name


def test_every_registered_spec_is_well_formed(registries) -> None:  # noqa: ANN001
    for name, entry in registries.models.items():
        assert ":" in name and entry.item.capabilities and entry.item.capabilities <= CAPABILITIES
        assert ":" in entry.item.factory
    for _, entry in registries.task_kinds.items():
        assert entry.item.needs <= CAPABILITIES and entry.item.outputs
    for name, entry in registries.metrics.items():
        assert entry.item.interval in ("wilson", "bootstrap", "none") and entry.item.unit in ("fraction", "raw")
        assert name.replace("_", "").isalnum() and name.islower()
    for _, entry in registries.trainers.items():
        assert ":" in entry.item.factory and entry.item.config_schema.get("type") == "object"


@pytest.mark.parametrize("path", sorted((ROOT / "tests" / "data" / "results").rglob("*.json")), ids=lambda p: p.name)
def test_golden_results_keep_validating_and_rendering(path: Path) -> None:
    doc = read_result(path)
    assert escape(doc["model"]["name"]) in render([doc])


def test_observers_see_the_run_and_each_validated_result(tiny_openclip: dict, image_folder: Path, tmp_path: Path) -> None:
    seen: list[tuple[str, object]] = []

    class Observer:
        @hookimpl
        def harness_run_started(self, run: RunConfig) -> None:
            seen.append(("started", run.model))

        @hookimpl
        def harness_task_finished(self, run: RunConfig, result: dict) -> None:
            seen.append(("finished", result["task"]["name"]))

    spec = tmp_path / "observed_zeroshot.yaml"
    spec.write_text(
        "name: observed_zeroshot\nversion: 1\nkind: zeroshot_classification\n"
        f"dataset: {{path: {image_folder}, split: test}}\ncolumns: {{image: image, label: label}}\n"
        "metrics: [accuracy]\nmain_score: accuracy\n")
    pm = get_plugin_manager()
    pm.register_plugin(Observer(), "observer")
    run(RunConfig(model=tiny_openclip["name"], tasks=(str(spec),), execution=ExecutionConfig(device="cpu"),
                  output_dir=tmp_path / "out"), collect(pm))
    assert seen == [("started", tiny_openclip["name"]), ("finished", "observed_zeroshot")]
