"""A run killed mid-extraction (SIGKILL, Ctrl-C) and started again reuses every completed shard and
ends with metrics identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.featurestore import FeatureSet, FeatureStore
from harness.result import read_result

#: A ``-p`` plugin for subprocesses: registers the tiny open_clip architecture of conftest's fixture.
TINY_CLIP_PLUGIN = """
import os
from harness.torchcompat import ensure_torchvision
ensure_torchvision()
import open_clip
open_clip.add_model_config(os.environ["TINY_CLIP_CONFIG"])
"""
#: A ``-p`` plugin that kills its own process after ``KILL_AFTER`` image shards were stored.
KILLER_PLUGIN = """
import os, signal
from harness.featurestore import FeatureSet

_write, _stored = FeatureSet.write, []

def write(self, ids, values, info=None):
    written = _write(self, ids, values, info)
    if self.key.get("modality") == "image":
        _stored.append(len(ids))
        if len(_stored) == int(os.environ["KILL_AFTER"]):
            os.kill(os.getpid(), signal.SIGKILL)
    return written

FeatureSet.write = write
"""


def probe_task(folder: Path, train: int = 24, test: int = 12) -> Path:
    """A linear probe on small scenes (two splits, so extraction is killed inside the train split)."""
    spec = {
        "name": "tiny_scenes_probe", "version": 1, "kind": "linear_probe",
        "dataset": {"builder": "scenes", "config": {"n": {"train": train, "test": test}, "image_size": 32, "seed": 3},
                    "split": "test"},
        "columns": {"image": "image", "label": "color"}, "params": {"train_split": "train", "C": 1.0},
        "metrics": ["accuracy", "mean_per_class_recall"], "main_score": "accuracy",
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny_scenes_probe.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def plugin_dir(root: Path) -> Path:
    """A folder with the ``tinyclip`` and ``killer`` plugin modules (for PYTHONPATH)."""
    folder = root / "plugins"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tinyclip.py").write_text(textwrap.dedent(TINY_CLIP_PLUGIN))
    (folder / "killer.py").write_text(textwrap.dedent(KILLER_PLUGIN))
    return folder


def subprocess_env(tiny_openclip: dict, root: Path) -> dict[str, str]:
    """The environment of a subprocess that loads the tiny model exactly as this process does.

    The config is the one registered *now* (tests/test_openclip.py registers a variant under the
    same name, with other attention heads: same weights, other features).
    """
    import open_clip

    config = plugin_dir(root) / f"{tiny_openclip['arch']}.json"
    config.write_text(json.dumps(open_clip.get_model_config(tiny_openclip["arch"])))
    return {**os.environ, "PYTHONPATH": str(plugin_dir(root)), "TINY_CLIP_CONFIG": str(config), "OMP_NUM_THREADS": "1"}


def image_sets(cache: Path) -> list[FeatureSet]:
    return [s for s in FeatureStore.default(cache).sets() if s.key["modality"] == "image"]


@pytest.fixture(scope="module")
def reference(tiny_openclip: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The uninterrupted run (its own cache)."""
    root = tmp_path_factory.mktemp("reference")
    spec = probe_task(root)
    assert main(["run", "--quiet", "--model", tiny_openclip["name"], "--task", str(spec), "--shard-size", "4",
                 "--cache-dir", str(root / "cache"), "--output-dir", str(root / "out")]) == 0
    return {"spec": spec, "doc": read_result(next((root / "out").rglob("*.json")))}


def test_sigkill_then_resume(tiny_openclip: dict, reference: dict, tmp_path: Path) -> None:
    cache, out = tmp_path / "cache", tmp_path / "out"
    argv = ["run", "--quiet", "--model", tiny_openclip["name"], "--task", str(reference["spec"]),
            "--shard-size", "4", "--cache-dir", str(cache), "--output-dir", str(out)]
    killed = subprocess.run([sys.executable, "-m", "harness", *argv, "-p", "tinyclip", "-p", "killer"],
                            env={**subprocess_env(tiny_openclip, tmp_path), "KILL_AFTER": "4"},
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    assert not out.exists() or not list(out.rglob("*.json"))
    [train_set] = image_sets(cache)
    shards = {entry["file"]: (cache / "features" / train_set.id / entry["file"]).stat().st_mtime_ns
              for entry in train_set.entries()}
    assert len(shards) == 4 and len(train_set.sample_ids()) == 16  # 4 shards of 4 of the 24 train images

    assert main(argv) == 0
    doc = read_result(next(out.rglob("*.json")))
    assert doc["cache"]["image_hits"] == 16 and doc["cache"]["image_misses"] == 8 + 12
    assert doc["metrics"] == reference["doc"]["metrics"]
    for name, mtime in shards.items():  # reused as they were, not rewritten
        assert (cache / "features" / train_set.id / name).stat().st_mtime_ns == mtime


def test_ctrl_c_then_resume(tiny_openclip: dict, reference: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture) -> None:
    cache, out = tmp_path / "cache", tmp_path / "out"
    argv = ["run", "--quiet", "--model", tiny_openclip["name"], "--task", str(reference["spec"]),
            "--shard-size", "4", "--cache-dir", str(cache), "--output-dir", str(out)]
    write, stored = FeatureSet.write, []

    def interrupted(self: FeatureSet, ids: list, values: object, info: object = None) -> bool:
        if len(stored) == 7:  # the train split (6 shards) and one test shard are stored
            raise KeyboardInterrupt
        stored.append(ids)
        return write(self, ids, values, info)

    monkeypatch.setattr(FeatureSet, "write", interrupted)
    assert main(argv) == 130
    assert capsys.readouterr().err.strip() == "harness: interrupted"
    assert not out.exists() or not list(out.rglob("*.json"))
    monkeypatch.setattr(FeatureSet, "write", write)
    assert main(argv) == 0
    doc = read_result(next(out.rglob("*.json")))
    assert doc["cache"]["image_hits"] == 24 + 4 and doc["cache"]["image_misses"] == 8
    assert doc["metrics"] == reference["doc"]["metrics"]
    assert json.dumps(doc["main_score"]) == json.dumps(reference["doc"]["main_score"])
