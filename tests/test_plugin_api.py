"""The plugin API as a third party meets it: a plugin (written to a temporary module, importing only
``harness`` and ``harness.testing``) implements every hook, and the real CLI exercises each one;
capability and output contracts; cached features follow the code; ``--cache-dir`` is honoured."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import harness.hookspecs
from harness.cli import main
from harness.result import read_result

from test_run import assert_clean_failure

PLUGIN = '''
from pathlib import Path

import numpy as np

from harness import (DatasetSpec, MetricSpec, ModelSpec, TaskKindSpec, TrainerSpec, WriterSpec, dumps, hookimpl,
                     model_id, write_text_atomic)
from harness.testing import tiny_model, tiny_model_spec

CALLED = set()
SEEN = {}
HERE = Path(__file__).parent


def _called(name):
    CALLED.add(name)


def load_liar(spec, ctx):
    model = tiny_model({"image_embed"})
    model.embed_dim = 5
    return model


def load_image_only(spec, ctx):
    return tiny_model({"image_embed"}, seed=ctx.seed)


@hookimpl
def harness_register_models():
    _called("harness_register_models")
    return [ModelSpec("api:image", "harness_api_plugin:load_image_only", {"image_embed"}),
            ModelSpec("api:liar", "harness_api_plugin:load_liar", {"image_embed"}),
            ModelSpec("api:claims-text", "harness_api_plugin:load_image_only", {"image_embed", "text_embed"})]


@hookimpl
def harness_resolve_model(name):
    _called("harness_resolve_model")
    if name.startswith("api-resolve:"):
        return tiny_model_spec(name, {"image_embed", "text_embed"}, dim=int(name.split(":")[1]))
    return None


class ApiKind:
    def evaluate(self, ctx):
        x = ctx.images(ctx.column("image"))
        n_classes = len(ctx.class_names())
        labels = ctx.labels(n_classes=n_classes)
        logits = x[:, :n_classes].astype(np.float64)
        mode = ctx.params["mode"]
        if mode == "ragged":
            labels = labels[:-1]
        if mode == "nan":
            logits[0, 0] = np.nan
        return {"logits": logits, "labels": labels}


def top1(logits, labels):
    return (logits.argmax(axis=1) == labels).astype(float)


@hookimpl
def harness_register_task_kinds():
    _called("harness_register_task_kinds")
    schema = {"type": "object", "additionalProperties": False,
              "properties": {"mode": {"enum": ["ok", "ragged", "nan"], "default": "ok"}}}
    return [TaskKindSpec("api_kind", "harness_api_plugin:ApiKind", {"image_embed"}, {"logits", "labels"},
                         columns=("image", "label"), params_schema=schema)]


@hookimpl
def harness_register_task_dirs():
    _called("harness_register_task_dirs")
    return [HERE / "api_tasks"]


@hookimpl
def harness_register_metrics():
    _called("harness_register_metrics")
    return [MetricSpec("api_top1", "harness_api_plugin:top1", {"logits": "logits", "labels": "labels"},
                       interval="wilson")]


def write(result, out, records):
    path = Path(out) / "api" / (model_id(result["model"]["name"]) + ".json")
    write_text_atomic(path.parent / result["records"]["file"], records)
    write_text_atomic(path, dumps(result))
    return path


@hookimpl
def harness_register_writers():
    _called("harness_register_writers")
    return [WriterSpec("api_writer", "harness_api_plugin:write")]


def build(config, split, execution):
    import datasets
    from PIL import Image

    SEEN["cache_root"] = execution.root
    n = int(config.get("n", 6))
    images = [Image.new("RGB", (16, 16), (40 * i % 256, 200 - 20 * i, 90)) for i in range(n)]
    return datasets.Dataset.from_dict(
        {"image": images, "label": [i % 2 for i in range(n)]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])}))


@hookimpl
def harness_register_datasets():
    _called("harness_register_datasets")
    return [DatasetSpec("api_data", "harness_api_plugin:build")]


class ApiTrainer:
    def train(self, ctx):
        data = ctx.data(ctx.config["data"], "train", {"n": 4})
        backbone = ctx.model(ctx.config["model"], "image_embed", role="backbone")
        x = backbone.images(data, "image")
        ctx.save({"mean.txt": f"{float(x.mean()):.6f}"}, {"epochs": ctx.config["epochs"]})


@hookimpl
def harness_register_trainers():
    _called("harness_register_trainers")
    schema = {"type": "object", "additionalProperties": False, "properties": {
        "model": {"type": "string", "default": "api:image"}, "data": {"type": "string", "default": "api_data"},
        "epochs": {"type": "integer", "minimum": 1, "default": 1}, "rate": {"type": "number", "default": 0.1},
        "shuffle": {"type": "boolean", "default": True}, "seed": {"type": "integer", "default": 7}}}
    return [TrainerSpec("api_trainer", "harness_api_plugin:ApiTrainer", schema, "test trainer")]


def hello(args, registries):
    print("hello from", args.command)
    return 0


@hookimpl
def harness_add_commands(subparsers, parents):
    _called("harness_add_commands")
    subparsers.add_parser("api-hello", parents=parents).set_defaults(handler=hello)


@hookimpl
def harness_run_started(run):
    _called("harness_run_started")


@hookimpl
def harness_task_finished(run, result):
    _called("harness_task_finished")
'''

TASK = '''name: {name}
version: 1
kind: api_kind
dataset: {{builder: api_data, config: {{n: 6}}, split: test}}
columns: {{image: image, label: label}}
params: {params}
metrics: [api_top1]
main_score: api_top1
'''


@pytest.fixture()
def api_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    folder = tmp_path / "plugin"
    (folder / "api_tasks").mkdir(parents=True)
    (folder / "harness_api_plugin.py").write_text(PLUGIN)
    for name, params in (("api_task", "{}"), ("api_ragged", "{mode: ragged}"), ("api_nan", "{mode: nan}")):
        (folder / "api_tasks" / f"{name}.yaml").write_text(TASK.format(name=name, params=params))
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("harness_api_plugin", None)
    import harness_api_plugin

    yield harness_api_plugin
    sys.modules.pop("harness_api_plugin", None)


def _run(tmp_path: Path, model: str, task: str, *extra: str) -> int:
    return main(["run", "-p", "harness_api_plugin", "--quiet", "--model", model, "--task", task,
                 "--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), *extra])


def test_every_hook_is_exercised_through_the_cli(api_plugin, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["-p", "harness_api_plugin", "list", "models"]) == 0
    assert "api:image" in capsys.readouterr().out
    assert _run(tmp_path, "api-resolve:6", "api_task", "--writer", "api_writer", "--writer", "json") == 0
    written = capsys.readouterr().out.split()
    assert len(written) == 2 and any("/api/" in path for path in written)
    doc = read_result(Path(written[1]))
    assert doc["model"]["capabilities"] == ["image_embed", "text_embed"] and doc["model"]["code_fingerprint"]
    assert 0 <= doc["metrics"]["api_top1"]["value"] <= 1 and doc["metrics"]["api_top1"]["interval"] == "wilson"
    assert main(["train", "api_trainer", "-p", "harness_api_plugin", "-o", str(tmp_path / "ckpt"), "--epochs", "2",
                 "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0
    record = json.loads((tmp_path / "ckpt" / "harness-train.json").read_text())
    assert record["config"] == {"model": "api:image", "data": "api_data", "epochs": 2, "rate": 0.1, "shuffle": True,
                                "seed": 7}
    [backbone] = record["models"]
    assert backbone["role"] == "backbone" and len(backbone["fingerprint"]) == 64 and backbone["code_fingerprint"]
    assert (tmp_path / "ckpt" / "mean.txt").read_text()
    assert main(["-p", "harness_api_plugin", "api-hello"]) == 0
    hooks = {name for name in dir(harness.hookspecs) if name.startswith("harness_")}
    assert api_plugin.CALLED == hooks


def test_trainer_options_come_from_its_schema(api_plugin, tmp_path: Path) -> None:
    # --set values are JSON first (1e-3 is a number), booleans get --no-KEY, and a property whose option
    # would clash with an execution option (seed) is set with --set only
    assert main(["train", "api_trainer", "-p", "harness_api_plugin", "-o", str(tmp_path / "ckpt"), "--quiet",
                 "--set", "rate=1e-3", "--no-shuffle", "--set", "seed=3", "--seed", "1",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    record = json.loads((tmp_path / "ckpt" / "harness-train.json").read_text())
    assert (record["config"]["rate"], record["config"]["shuffle"], record["config"]["seed"], record["seed"]) == \
        (0.001, False, 3, 1)


def test_an_image_only_model_runs_image_tasks(api_plugin, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert not hasattr(api_plugin.load_image_only(None, type("C", (), {"seed": 0})), "encode_text")
    assert _run(tmp_path, "api:image", "api_task") == 0
    assert read_result(Path(capsys.readouterr().out.strip()))["model"]["capabilities"] == ["image_embed"]


def test_a_task_needing_text_refuses_an_image_only_model_before_loading(
        api_plugin, image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from test_run import task_file

    spec = task_file(tmp_path / "tasks", image_folder)
    code = _run(tmp_path, "api:image", str(spec))
    assert_clean_failure(code, capsys.readouterr().err, tmp_path / "out", "needs ['image_embed', 'text_embed']")


@pytest.mark.parametrize(("model", "task", "needles"), [
    ("api:claims-text", "api_task", ("declares capability 'text_embed'", "no method encode_text()")),
    ("api:liar", "api_task", ("encode_image returned shape (6, 8)", "declares embed_dim 5")),
    ("api:image", "api_ragged", ("task kind 'api_kind'", "different numbers of samples", "labels=5", "logits=6")),
    ("api:image", "api_nan", ("task kind 'api_kind'", "output 'logits' has NaN or inf values in 1 sample")),
])
def test_contract_violations_are_one_line(api_plugin, tmp_path: Path, capsys: pytest.CaptureFixture,
                                          model: str, task: str, needles: tuple[str, ...]) -> None:
    code = _run(tmp_path, model, task, "--no-cache")
    assert_clean_failure(code, capsys.readouterr().err, tmp_path / "out", *needles)


def test_editing_a_model_implementation_recomputes_its_features(api_plugin, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    def misses() -> int:
        assert _run(tmp_path, "api:image", "api_task") == 0
        return read_result(Path(capsys.readouterr().out.strip()))["cache"]["image_misses"]

    assert misses() == 6
    assert misses() == 0  # unchanged code: all from the store
    source = Path(api_plugin.__file__)
    source.write_text(source.read_text() + "\n# an edit that could change what the model computes\n")
    assert misses() == 6


def test_cache_dir_leaves_nothing_under_the_default_cache_root(api_plugin, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture) -> None:
    default = tmp_path / "default-cache"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(default))
    scenes = tmp_path / "scenes_task.yaml"
    scenes.write_text("name: scenes_task\nversion: 1\nkind: api_kind\n"
                      "dataset: {builder: scenes, config: {n: 12, seed: 3}, split: test}\n"
                      "columns: {image: image, label: shape}\nmetrics: [api_top1]\nmain_score: api_top1\n")
    for task in ("api_task", str(scenes)):
        code = main(["run", "-p", "harness_api_plugin", "--quiet", "--model", "api:image", "--task", task,
                     "--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "mine"),
                     "--batch-size", "auto"])
        assert code == 0, capsys.readouterr().err
    assert api_plugin.SEEN["cache_root"] == tmp_path / "mine"
    assert (tmp_path / "mine" / "features").is_dir()
    assert not default.exists() or not any(default.rglob("*"))
