"""An out-of-tree plugin package, installed with pip, extends harness with no change to its source."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.result import read_result

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "harness-colorhist"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example installed by pip into a folder of its own (the venv stays untouched)."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("source") / EXAMPLE.name  # pip leaves build/ beside what it builds
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True)
    return target


def harness(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "harness", *args], env=env, capture_output=True, text=True)


def test_listed_with_its_distribution(site: Path) -> None:
    plugins = harness(site, "plugins").stdout
    assert "colorhist\tharness_colorhist\tharness-colorhist 0.1.0" in plugins
    assert "colorhist:rgb-4\t[colorhist]" in harness(site, "list", "models").stdout
    assert "scenes_colors_linear_probe_colorhist\t[colorhist]" in harness(site, "list", "tasks").stdout


def test_blocked_with_p_no(site: Path) -> None:
    assert "colorhist" not in harness(site, "plugins", "-p", "no:colorhist").stdout
    listing = harness(site, "list", "models", "-p", "no:colorhist")
    assert listing.returncode == 0 and "colorhist" not in listing.stdout


def test_run_uses_its_encoder_and_task(site: Path, tmp_path: Path) -> None:
    proc = harness(site, "run", "--quiet", "--model", "colorhist:rgb-4", "--task",
                   "scenes_colors_linear_probe_colorhist", "--output-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    doc = read_result(Path(proc.stdout.strip()))
    assert doc["model"]["plugin"] == "colorhist" and doc["task"]["plugin"] == "colorhist"
    assert {"name": "colorhist", "module": "harness_colorhist", "distribution": "harness-colorhist",
            "version": "0.1.0"} in doc["plugins"]
    assert doc["main_score"]["value"] > 0.8  # colour histograms separate colours
    blocked = harness(site, "run", "--model", "colorhist:rgb-4", "--task", "scenes_colors_linear_probe_colorhist",
                      "-p", "no:colorhist", "--output-dir", str(tmp_path / "b"))
    assert blocked.returncode == 2 and "unknown model 'colorhist:rgb-4'" in blocked.stderr


def test_its_task_kind_and_metric_run_from_the_installed_package(site: Path, tmp_path: Path) -> None:
    proc = harness(site, "run", "--quiet", "--model", "colorhist:rgb-4", "--task", "scenes_colors_centroid_colorhist",
                   "--output-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    doc = read_result(Path(proc.stdout.strip()))
    assert doc["task"]["kind"] == "nearest_centroid" and doc["metrics"]["reciprocal_rank"]["unit"] == "raw"
    assert doc["main_score"]["value"] > 0.4  # 10 colours: chance is 0.1
