"""Hostile and careless use of the CLI, runs and plugins: every case ends with one line
``harness: error: ...``, a non-zero exit, and nothing written that should not be (no result, no
cache entry); results never overwrite each other and are never lost at the end of a run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.result import read_result

from test_run import assert_clean_failure

PLUGIN = '''
import os
from pathlib import Path

import numpy as np

from harness import DatasetSpec, MetricSpec, ModelSpec, hookimpl
from harness.testing import tiny_model

HERE = Path(__file__).parent


def mode():
    return os.environ.get("HOSTILE", "")


class Broken:
    """A tiny model whose image features go wrong in the way its name says."""

    def __init__(self, how):
        self.inner, self.how = tiny_model({"image_embed", "text_embed"}), how
        self.embed_dim, self.preprocess, self.encode_text = self.inner.embed_dim, self.inner.preprocess, self.inner.encode_text

    def provenance(self):
        return self.inner.provenance()

    def n_parameters(self):
        return self.inner.n_parameters()

    def encode_image(self, pixels):
        out = self.inner.encode_image(pixels)
        if self.how == "nan":
            out[0, 0] = float("nan")
        if self.how == "inf":
            out[:, 1] = float("inf")
        if self.how == "rows":
            out = out[:1]
        return out


def load(spec, ctx):
    if spec.args["how"] == "raise":
        raise KeyError("no such weights")
    return Broken(spec.args["how"])


@hookimpl
def harness_register_models():
    specs = [ModelSpec(f"hostile:{how}", "harness_hostile:load", {"image_embed", "text_embed"},
                       args={"how": how}, code_version="1")
             for how in ("ok", "nan", "inf", "rows", "raise")]
    return specs + [ModelSpec("hostile:missing-module", "harness_no_such_module:load", {"image_embed", "text_embed"})]


def build(config, split, execution):
    import datasets
    from PIL import Image

    n = 6
    images = [Image.new("RGB", (16, 16), (40 * i % 256, 200 - 20 * i, 90)) for i in range(n)]
    return datasets.Dataset.from_dict(
        {"image": images, "label": [i % 3 for i in range(n)]},
        features=datasets.Features({"image": datasets.Image(),
                                    "label": datasets.ClassLabel(names=["red", "green", "blue"])}))


@hookimpl
def harness_register_datasets():
    return [DatasetSpec("hostile_data", "harness_hostile:build")]


def exploding_metric(logits, labels):
    raise ZeroDivisionError("division by zero in a metric")


@hookimpl
def harness_register_metrics():
    if mode() == "metrics-int":
        return 5
    return [MetricSpec("exploding", "harness_hostile:exploding_metric", {"logits": "logits", "labels": "labels"})]


@hookimpl
def harness_register_task_dirs():
    if mode() == "taskdir-int":
        return [5]
    if mode() == "taskdir-missing":
        return [HERE / "no-such-folder"]
    return [HERE / "hostile_tasks"]


@hookimpl
def harness_add_commands(subparsers, parents):
    if mode() == "clash":
        subparsers.add_parser("run", parents=parents)


@hookimpl
def harness_task_finished(run, result):
    if mode() == "observer-raises":
        raise RuntimeError("observer broke")
    if mode() == "observer-mutates":
        result["metrics"]["accuracy"]["value"] = 7.5
        result["main_score"]["value"] = 7.5
'''

TASK = '''name: {name}
version: 1
kind: zeroshot_classification
dataset: {{builder: hostile_data, split: test}}
columns: {{image: image, label: label}}
params: {{templates: ["a {{c}} square."]}}
metrics: [{metrics}]
main_score: {main}
'''


@pytest.fixture()
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    folder = tmp_path / "plugin"
    (folder / "hostile_tasks").mkdir(parents=True)
    (folder / "harness_hostile.py").write_text(PLUGIN)
    (folder / "hostile_tasks" / "hostile_task.yaml").write_text(
        TASK.format(name="hostile_task", metrics="accuracy", main="accuracy"))
    (folder / "hostile_tasks" / "hostile_exploding.yaml").write_text(
        TASK.format(name="hostile_exploding", metrics="accuracy, exploding", main="accuracy"))
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("harness_hostile", None)
    yield folder
    sys.modules.pop("harness_hostile", None)


def run(tmp_path: Path, model: str, *extra: str, task: str = "hostile_task", out: Path | None = None) -> int:
    return main(["run", "-p", "harness_hostile", "--quiet", "--model", model, "--task", task,
                 "--output-dir", str(out or tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), *extra])


def cached_sets(tmp_path: Path) -> list[Path]:
    root = tmp_path / "cache" / "features"
    return [p for p in root.iterdir() if (p / "manifest.jsonl").exists()] if root.is_dir() else []


# -- wrong scores are never written -----------------------------------------------------------------------
@pytest.mark.parametrize(("model", "extra", "needles"), [
    ("hostile:nan", (), ("hostile:nan", "NaN or inf features")),
    ("hostile:inf", (), ("hostile:inf", "NaN or inf features")),
    ("hostile:rows", ("--no-cache",), ("returned 1 rows for a batch of",)),
])
def test_bad_features_are_an_error_and_never_cached(hostile, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                    model: str, extra: tuple[str, ...], needles: tuple[str, ...]) -> None:
    code = run(tmp_path, model, *extra)
    assert_clean_failure(code, capsys.readouterr().err, tmp_path / "out", *needles)
    sets = cached_sets(tmp_path)
    image_sets = [s for s in sets if json.loads((s / "key.json").read_text())["modality"] == "image"]
    assert image_sets == []


def test_nan_features_in_a_linear_probe_are_one_line(hostile, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = hostile / "hostile_tasks" / "hostile_probe.yaml"
    spec.write_text("name: hostile_probe\nversion: 1\nkind: linear_probe\n"
                    "dataset: {builder: hostile_data, split: test}\ncolumns: {image: image, label: label}\n"
                    "params: {train_split: train, C: 1.0}\nmetrics: [accuracy]\nmain_score: accuracy\n")
    code = run(tmp_path, "hostile:nan", task="hostile_probe")
    assert_clean_failure(code, capsys.readouterr().err, tmp_path / "out", "NaN or inf features")


# -- plugin code that raises is named, in one line ---------------------------------------------------------
@pytest.mark.parametrize(("model", "task", "env", "needles"), [
    ("hostile:raise", "hostile_task", "", ("model factory of 'hostile:raise'", "harness_hostile:load", "KeyError")),
    ("hostile:missing-module", "hostile_task", "", ("cannot import 'harness_no_such_module'",)),
    ("hostile:ok", "hostile_exploding", "", ("metric 'exploding'", "ZeroDivisionError")),
    ("hostile:ok", "hostile_task", "observer-raises", ("plugin 'harness_hostile': harness_task_finished",
                                                       "RuntimeError: observer broke")),
    ("hostile:ok", "hostile_task", "metrics-int", ("harness_register_metrics returned int",)),
    ("hostile:ok", "hostile_task", "taskdir-int", ("harness_register_task_dirs returned 5",)),
    ("hostile:ok", "hostile_task", "taskdir-missing", ("harness_register_task_dirs returned", "no-such-folder")),
    ("hostile:ok", "hostile_task", "clash", ("harness_add_commands", "conflicting subparser: run")),
])
def test_failing_plugin_code_is_one_line_naming_it(hostile, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch, model: str, task: str, env: str,
                                                   needles: tuple[str, ...]) -> None:
    monkeypatch.setenv("HOSTILE", env)
    code = run(tmp_path, model, task=task)
    assert_clean_failure(code, capsys.readouterr().err, tmp_path / "out", *needles)


def test_an_observer_cannot_change_the_written_result(hostile, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTILE", "observer-mutates")
    assert run(tmp_path, "hostile:ok") == 0
    doc = read_result(Path(capsys.readouterr().out.strip()))
    assert doc["metrics"]["accuracy"]["value"] <= 1


@pytest.mark.parametrize(("flags", "needles"), [
    (["-p", "hostile_raises"], ("-p hostile_raises: importing the module failed", "RuntimeError: boom")),
    (["-p", "hostile_syntax"], ("-p hostile_syntax: importing the module failed", "SyntaxError")),
    (["-p", "hostile_exits"], ("-p hostile_exits: importing the module failed", "SystemExit: 0")),
    (["-p", ""], ("-p '': not an entry-point plugin or a module name",)),
    (["-p", "../x"], ("-p '../x': not an entry-point plugin or a module name",)),
    (["-p", "no:typo"], ("-p no:typo: no plugin named 'typo' to block",)),
])
def test_bad_plugin_flags_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
                                       flags: list[str], needles: tuple[str, ...]) -> None:
    (tmp_path / "hostile_raises.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "hostile_syntax.py").write_text("def (\n")
    (tmp_path / "hostile_exits.py").write_text("import sys\nsys.exit(0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code = main([*flags, "list", "models"])
    assert_clean_failure(code, capsys.readouterr().err, tmp_path / "out", *needles)


@pytest.mark.parametrize(("args", "needles"), [
    (["--seed", "-1"], ("--seed: must be an integer in [0, 4294967295], got -1",)),
    (["--seed", str(2**32)], ("--seed: must be an integer in [0, 4294967295]",)),
    (["--task", "hostile_task"], ("task 'hostile_task'", "is given more than once")),
])
def test_bad_run_options_are_one_line(hostile, tmp_path: Path, capsys: pytest.CaptureFixture,
                                      args: list[str], needles: tuple[str, ...]) -> None:
    code = run(tmp_path, "hostile:ok", *args)
    assert_clean_failure(code, capsys.readouterr().err, tmp_path / "out", *needles)
    assert not (tmp_path / "cache" / "features").exists()


def test_validate_failures_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\n")
    assert main(["validate", str(bad)]) == 2
    assert "FAIL" in capsys.readouterr().err


def test_an_internal_error_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import harness.cli

    def broken(args, registries):  # noqa: ANN001, ANN202
        raise TypeError("a bug")

    monkeypatch.setitem(harness.cli.COMMANDS, "plugins", broken)
    assert main(["plugins"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("harness: internal error: TypeError: a bug (at ") and "HARNESS_DEBUG=1" in line


# -- where results go -----------------------------------------------------------------------------------------
def test_model_names_never_share_a_result_folder() -> None:
    from harness import model_id

    names = ["a/b", "a b", "a__b", "torchvision:resnet18/one/best.pth", "torchvision:resnet18/two/best.pth",
             "x" * 1000, "x" * 1001]
    ids = [model_id(name) for name in names]
    assert len(set(ids)) == len(ids)
    assert all(len(i.encode()) < 100 and "/" not in i for i in ids)


def test_results_of_other_weights_or_specs_sit_side_by_side(hostile, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    from harness import result_path

    assert run(tmp_path, "hostile:ok") == 0
    first = Path(capsys.readouterr().out.strip())
    doc = read_result(first)
    other_weights = dict(doc, model=dict(doc["model"], fingerprint="f" * 64))
    other_spec = dict(doc, task=dict(doc["task"], spec_sha256="e" * 64))
    seed = dict(doc, seed=3)
    paths = {result_path(d, tmp_path / "out") for d in (doc, other_weights, other_spec, seed)}
    assert first in paths and len(paths) == 4
    # the same spec name from another folder, with other content: a second file, the first kept
    other = tmp_path / "elsewhere" / "hostile_task.yaml"
    other.parent.mkdir()
    other.write_text((hostile / "hostile_tasks" / "hostile_task.yaml").read_text().replace("a {c} square.", "a {c} thing."))
    assert run(tmp_path, "hostile:ok", task=str(other)) == 0
    second = Path(capsys.readouterr().out.strip())
    assert second != first and first.exists() and second.exists()
    assert (first.with_suffix(".samples.jsonl")).exists()


@pytest.mark.parametrize("case", ["file", "under-a-file", "tilde"])
def test_the_output_folder_is_checked_before_the_run(hostile, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    out = {"file": tmp_path / "a-file", "under-a-file": tmp_path / "a-file" / "sub", "tilde": Path("~/results")}[case]
    code = run(tmp_path, "hostile:ok", out=out)
    if case == "tilde":
        assert code == 0 and (tmp_path / "home" / "results").is_dir() and not Path("~").exists()
        return
    assert_clean_failure(code, capsys.readouterr().err, tmp_path / "out", "--output-dir")
    assert not (tmp_path / "cache" / "features").exists()  # refused before anything ran
    assert (tmp_path / "a-file").read_text() == "x"


def test_a_read_only_output_folder_is_refused_before_the_run(hostile, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "out").mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == tmp_path / "out" else real_access(path, mode))
    code = run(tmp_path, "hostile:ok")
    assert_clean_failure(code, capsys.readouterr().err, tmp_path / "out", "is not writable")


@pytest.mark.parametrize("failure", ["full-disk", "folder-is-a-file"])
def test_a_result_that_cannot_be_written_is_kept(hostile, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    import errno

    import harness.atomicfile

    out = tmp_path / "out"
    if failure == "full-disk":
        real = harness.atomicfile.write_bytes_atomic

        def full(path, data):  # noqa: ANN001, ANN202
            if Path(path).is_relative_to(out):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(path, data)

        monkeypatch.setattr(harness.atomicfile, "write_bytes_atomic", full)
        monkeypatch.setattr("harness.resultfile.write_text_atomic",
                            lambda path, text: full(path, text.encode()))
    else:  # the model's result folder name is taken by a file once the run has started
        import harness.runner

        real_load = harness.runner.ModelLoader.load

        def load_then_block(self, *args, **kwargs):  # noqa: ANN001, ANN202
            out.mkdir(exist_ok=True)
            from harness import model_id

            (out / model_id("hostile:ok")).write_text("in the way")
            return real_load(self, *args, **kwargs)

        monkeypatch.setattr(harness.runner.ModelLoader, "load", load_then_block)
    code = run(tmp_path, "hostile:ok")
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "the result was kept at" in err[0], err
    kept = Path(err[0].split("the result was kept at ")[1])
    assert kept.is_relative_to(tmp_path / "cache") and read_result(kept)["model"]["name"] == "hostile:ok"
    assert kept.with_suffix(".samples.jsonl").exists()
    assert not list(out.rglob("*.json"))
