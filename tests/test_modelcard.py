"""Model cards (:mod:`harness.modelcard`): a warm run does not build its model, new work builds it on
demand, changed weight files are a new identity, a plugin whose sources miss something is caught,
a bad card is ignored, and the model's library is not even imported on a warm run."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.modelcard import CARDS_DIR, DeferredModel, ModelCard
from harness.result import read_result

PLUGIN = '''
import os
from pathlib import Path

from harness import ModelSpec, hookimpl
from harness.testing import tiny_model

BUILDS = []


def load(spec, ctx):
    seed = int(Path(spec.args["weights"]).read_text()) + int(os.environ.get("CARD_TEST_EXTRA", "0"))
    BUILDS.append(spec.name)
    return tiny_model({"image_embed", "text_embed"}, seed=seed)


def sources(spec):
    return [spec.args["weights"]]


@hookimpl
def harness_resolve_model(name):
    if not name.startswith("card:"):
        return None
    return ModelSpec(name, "harness_card_plugin:load", {"image_embed", "text_embed"}, code_version="1",
                     args={"weights": name[len("card:"):]}, sources="harness_card_plugin:sources")
'''

TASK = """name: {name}
version: 1
kind: zeroshot_classification
dataset:
  builder: scenes
  config: {{n: {n}, max_objects: 1, seed: 0, image_size: 32}}
  split: test
columns: {{image: image, label: color}}
params:
  templates: ["a photo of a {{c}} object."]
metrics: [accuracy]
main_score: accuracy
"""


@pytest.fixture()
def card_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / "harness_card_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delenv("CARD_TEST_EXTRA", raising=False)
    sys.modules.pop("harness_card_plugin", None)
    import harness_card_plugin

    yield harness_card_plugin
    sys.modules.pop("harness_card_plugin", None)


def _task(tmp_path: Path, name: str = "card_task", n: int = 24) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(TASK.format(name=name, n=n))
    return str(path)


def _run(tmp_path: Path, model: str, task: str, out: str, *extra: str) -> int:
    return main(["run", "-p", "harness_card_plugin", "--quiet", "--model", model, "--task", task,
                 "--output-dir", str(tmp_path / out), "--cache-dir", str(tmp_path / "cache"), *extra])


def _result(tmp_path: Path, out: str) -> dict:
    (path,) = (tmp_path / out).rglob("*-*.json")
    return read_result(path)


def _weights(tmp_path: Path, seed: int) -> Path:
    path = tmp_path / "weights.txt"
    path.write_text(str(seed))
    return path


def test_a_warm_run_does_not_build_the_model(card_plugin, tmp_path: Path) -> None:
    model, task = f"card:{_weights(tmp_path, 3)}", _task(tmp_path)
    assert _run(tmp_path, model, task, "cold") == 0
    assert card_plugin.BUILDS == [model]
    assert len(list((tmp_path / "cache" / CARDS_DIR).glob("*.json"))) == 1
    assert _run(tmp_path, model, task, "warm") == 0
    assert card_plugin.BUILDS == [model]  # answered from the card and the feature store
    cold, warm = _result(tmp_path, "cold"), _result(tmp_path, "warm")
    assert warm["model"] == cold["model"]
    assert warm["metrics"] == cold["metrics"]
    assert warm["cache"]["image_misses"] == warm["cache"]["text_misses"] == 0
    assert warm["execution"]["determinism"] == cold["execution"]["determinism"]


def test_new_work_builds_a_deferred_model_on_demand(card_plugin, tmp_path: Path) -> None:
    model = f"card:{_weights(tmp_path, 3)}"
    assert _run(tmp_path, model, _task(tmp_path), "first") == 0
    bigger = _task(tmp_path, "card_task_bigger", n=40)  # new images: features must be computed
    assert _run(tmp_path, model, bigger, "second") == 0
    assert card_plugin.BUILDS == [model, model]
    assert _run(tmp_path, model, bigger, "fresh", "--no-cache") == 0
    second, fresh = _result(tmp_path, "second"), _result(tmp_path, "fresh")
    assert second["metrics"] == fresh["metrics"]
    assert second["cache"]["image_misses"] > 0 and second["model"]["fingerprint"] == fresh["model"]["fingerprint"]


def test_changed_weight_files_are_another_model(card_plugin, tmp_path: Path) -> None:
    weights, task = _weights(tmp_path, 3), _task(tmp_path)
    model = f"card:{weights}"
    assert _run(tmp_path, model, task, "before") == 0
    weights.write_text("4")  # same path, same size
    assert _run(tmp_path, model, task, "after") == 0
    assert card_plugin.BUILDS == [model, model]
    assert _result(tmp_path, "before")["model"]["fingerprint"] != _result(tmp_path, "after")["model"]["fingerprint"]
    assert len(list((tmp_path / "cache" / CARDS_DIR).glob("*.json"))) == 2


def test_a_plugin_whose_sources_miss_something_is_caught(card_plugin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    model = f"card:{_weights(tmp_path, 3)}"
    assert _run(tmp_path, model, _task(tmp_path), "first") == 0
    monkeypatch.setenv("CARD_TEST_EXTRA", "5")  # changes the weights; its sources do not say so
    capsys.readouterr()
    bigger = _task(tmp_path, "card_task_bigger", n=40)
    assert _run(tmp_path, model, bigger, "second") != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "miss something that decides its weights" in err[0]
    assert not (tmp_path / "second").exists() or not list((tmp_path / "second").rglob("*.json"))
    assert _run(tmp_path, model, bigger, "third") == 0  # the card was replaced


def test_a_malformed_card_is_ignored_and_written_again(card_plugin, tmp_path: Path) -> None:
    model, task = f"card:{_weights(tmp_path, 3)}", _task(tmp_path)
    assert _run(tmp_path, model, task, "first") == 0
    (card,) = (tmp_path / "cache" / CARDS_DIR).glob("*.json")
    for bad in ("{", json.dumps({"format": "harness-model-card-v1", "card": {"provenance": {}}}), "[]"):
        card.write_text(bad)
        assert _run(tmp_path, model, task, "again") == 0
        assert json.loads(card.read_text())["card"]["provenance"]["fingerprint"]
    assert len(card_plugin.BUILDS) == 4


def test_no_cache_writes_no_card(card_plugin, tmp_path: Path) -> None:
    assert _run(tmp_path, f"card:{_weights(tmp_path, 3)}", _task(tmp_path), "out", "--no-cache") == 0
    assert not (tmp_path / "cache" / CARDS_DIR).exists()


class Encoder:
    """A picklable stand-in for a built model."""

    embed_dim = 2

    def provenance(self) -> dict:
        return {"revision": None, "fingerprint": "f" * 64, "n_parameters": 0}

    def preprocess(self, image: object) -> str:
        return f"pixels of {image}"


def test_a_deferred_method_builds_when_called_or_pickled() -> None:
    built = []

    def build() -> Encoder:
        built.append(1)
        return Encoder()

    deferred = DeferredModel(ModelCard.of(Encoder(), False, "cpu"), ("preprocess", "encode_image"), build)
    assert deferred.provenance() == Encoder().provenance() and deferred.embed_dim == 2
    preprocess = deferred.preprocess
    assert callable(preprocess) and not built and not deferred.built
    copy = pickle.loads(pickle.dumps(preprocess))  # what a decoding worker receives: the real method
    assert built == [1] and copy("x") == "pixels of x" and deferred.preprocess("y") == "pixels of y"
    assert built == [1]


PROBE = """name: card_probe
version: 1
kind: linear_probe
dataset:
  builder: scenes
  config: {n: {train: 24, test: 12}, max_objects: 1, seed: 0, image_size: 32}
  split: test
columns: {image: image, label: shape}
params: {train_split: train}
metrics: [accuracy]
main_score: accuracy
"""


def test_a_warm_run_does_not_import_the_model_library(tmp_path: Path) -> None:
    """torchvision (a random MobileNetV2) is built on the cold run only; the warm one never imports it."""
    task = tmp_path / "card_probe.yaml"
    task.write_text(PROBE)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    probe = ("import sys; from harness.cli import main; code = main(sys.argv[1:]); "
             "print('torchvision' in sys.modules); sys.exit(code)")
    command = [sys.executable, "-c", probe, "run", "--quiet", "--model", "torchvision:mobilenet_v2/random",
               "--task", str(task), "--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    cold = subprocess.run(command, env=env, capture_output=True, text=True)
    assert cold.returncode == 0 and cold.stdout.split()[-1] == "True", cold.stderr
    warm = subprocess.run(command, env=env, capture_output=True, text=True)
    assert warm.returncode == 0 and warm.stdout.split()[-1] == "False", warm.stderr
