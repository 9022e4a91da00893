"""End to end through the real CLI: ``harness train sharelock`` (a trainer in the core), the
``sharelock:`` model on a zero-shot task, the ``viterb`` kind (also on the plugin-testing context),
and the pieces they share (caption filter, class split)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"

from harness import DataError, read_result  # noqa: E402
from harness.cli import main  # noqa: E402
from harness_sharelock.pairs import ClassSplit, clean_rows  # noqa: E402

pytest.importorskip("torch")
#: A fast random-weight image tower (deterministic: its weights are seeded by the run seed).
TOWER = "torchvision:mobilenet_v3_small/random"
HEAD = ["--set", "language_hidden_size=16", "--set", "language_num_layers=2", "--set", "max_steps=5",
        "--set", "batch_size=16", "--set", "accumulate_grad_batches=1", "--set", "val_split_num=8",
        "--set", "val_check_interval=2", "--set", "lr_warmup_steps=1"]


def test_caption_filter_and_class_split() -> None:
    captions = ["an orange star on a grey background", "a red circle and two orange-ish squares",
                "a light grey heart", "Orange circles", "a red square on a light  grey background", "a pink star"]
    assert clean_rows(captions, ["orange"]).tolist() == [1, 2, 4, 5]  # whole words, any case
    assert clean_rows(captions, ["light grey", "pink"]).tolist() == [0, 1, 3]  # phrases, any spacing
    split = ClassSplit.of(["red", "green", "blue", "orange"], ["orange", "green"], "spec")
    assert split.seen == ("red", "blue")
    rows, labels = split.select(np.array([3, 0, 1, 2, 1]), split.unseen)
    assert rows.tolist() == [0, 2, 4] and labels.tolist() == [0, 1, 1]
    with pytest.raises(DataError, match="not class names"):
        ClassSplit.of(["red", "green"], ["violet"], "spec")
    with pytest.raises(DataError, match="leave at least one seen class"):
        ClassSplit.of(["red", "green"], ["red", "green"], "spec")


def test_train_then_zero_shot_with_the_trained_encoder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "head"
    code = main(["train", "sharelock", "--vision", TOWER, "--language", "hashbow:64",
                 "--pairs", "scenes", "--pairs-config", '{"n": 48}', *HEAD, "--lightning", "--quiet", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip() == str(out)
    meta = json.loads((out / "sharelock.json").read_text())
    assert meta["vision"]["name"] == TOWER and meta["language"]["name"] == "hashbow:64"
    assert meta["config"]["language_hidden_size"] == 16 and meta["training"]["steps"] == 5
    assert meta["config"]["batch_size"] == 16 and meta["config"]["seed"] == 0  # --set batch_size; --seed
    assert meta["pairs"]["id"] == "scenes" and meta["pairs"]["n_pairs"] == 48 and meta["vision_dim"] == 1024
    assert meta["vision"]["load_seed"] == 0 and len(meta["vision"]["fingerprint"]) == 64
    assert (out / "sharelock.safetensors").is_file() and (out / "sharelock.ckpt").is_file()
    record = json.loads((out / "harness-train.json").read_text())  # the core's record of the run
    assert record["trainer"] == "sharelock" and record["seed"] == 0 and record["config"]["lightning"] is True
    assert record["config"]["max_steps"] == 5 and record["config"]["vision"] == TOWER
    assert record["files"] == ["sharelock.ckpt", "sharelock.json", "sharelock.safetensors"]
    towers = {m["role"]: m for m in record["models"]}
    assert towers["vision tower"]["name"] == TOWER and towers["language tower"]["name"] == "hashbow:64"
    assert towers["vision tower"]["fingerprint"] == meta["vision"]["fingerprint"]
    assert all(m["code_fingerprint"] for m in record["models"])
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left

    results = tmp_path / "results"
    for model in (f"sharelock:{out}", f"sharelock:{out / 'sharelock.ckpt'}"):
        code = main(["run", "--model", model, "--task", "scenes_shapes_zeroshot",
                     "--limit", "12", "--quiet", "--output-dir", str(results)])
        assert code == 0, capsys.readouterr().err
        doc = read_result(Path(capsys.readouterr().out.strip().splitlines()[-1]))
        assert doc["model"]["capabilities"] == ["image_embed", "text_embed"] and doc["model"]["embed_dim"] == 1024
        assert 0.0 <= doc["main_score"]["value"] <= 1.0


def test_a_head_is_the_same_model_under_every_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The random tower's weights depend on the seed it loads with: a head trained with --seed 3 loads
    it with seed 3 under any run seed, and gives the same zero-shot result."""
    out = tmp_path / "head"
    assert main(["train", "sharelock", "--vision", TOWER, "--language", "hashbow:32", "--seed", "3",
                 "--pairs", "scenes", "--pairs-config", '{"n": 32}', *HEAD, "--quiet", "-o", str(out)]) == 0
    meta = json.loads((out / "sharelock.json").read_text())
    assert meta["vision"]["load_seed"] == 3 and meta["config"]["seed"] == 3
    capsys.readouterr()
    scores = []
    for seed in ("3", "0"):
        code = main(["run", "--model", f"sharelock:{out}", "--task", "scenes_shapes_zeroshot", "--seed", seed,
                     "--quiet", "--no-cache", "--output-dir", str(tmp_path / "r")])
        assert code == 0, capsys.readouterr().err
        doc = read_result(Path(capsys.readouterr().out.strip()))
        scores.append((doc["model"]["fingerprint"], {k: m["value"] for k, m in doc["metrics"].items()}))
    assert scores[0] == scores[1]  # (bootstrap intervals resample with the run seed)


def test_a_head_refuses_towers_with_other_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "head"
    assert main(["train", "sharelock", "--vision", TOWER, "--language", "hashbow:32",
                 "--pairs", "scenes", "--pairs-config", '{"n": 32}', *HEAD, "--quiet", "-o", str(out)]) == 0
    meta = json.loads((out / "sharelock.json").read_text())
    meta["vision"]["fingerprint"] = "0" * 64
    (out / "sharelock.json").write_text(json.dumps(meta))
    capsys.readouterr()
    for seed in ("0", "1"):  # with the recorded seed, and with another one (the tower is loaded again)
        code = main(["run", "--model", f"sharelock:{out}", "--task", "scenes_shapes_zeroshot", "--seed", seed,
                     "--limit", "4", "--quiet", "--output-dir", str(tmp_path / "r")])
        err = capsys.readouterr().err
        assert code == 2 and "but the head was trained on features of 000000000000" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["--pairs", "nowhere"], "data 'nowhere' is not a task"),
    (["--pairs", "scenes", "--set", "widht=3"], "('widht' was unexpected); allowed keys: accumulate_grad_batches, batch_size, "),
    (["--pairs", "scenes", "--set", "max_steps"], "expected KEY=VALUE"),
    (["--pairs", "scenes", "--set", "max_steps=2.5"], "max_steps: 2.5 is not of type 'integer'"),
    (["--pairs", "scenes", "--set", "seed=3"], "('seed' was unexpected)"),  # the head's seed is --seed
    (["--pairs", "scenes", "--set", "batch_size=many"], "batch_size: 'many' is not of type 'integer'"),
    (["--pairs", "scenes", "--set", "dropout=1.5"], "dropout must be in [0, 1), got 1.5"),
    (["--pairs", "scenes", "--lr-schedule", "linear"], "'linear' is not one of ['cosine', 'constant']"),
    (["--set", "max_steps=3"], "'pairs' is a required property"),
])
def test_train_usage_errors(argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "sharelock", "--vision", TOWER, "--language", "hashbow:8", *argv,
                 "-o", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 4 and message in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def _viterb_spec(tmp_path: Path, **params: object) -> Path:
    spec = {
        "name": "viterb_tiny", "version": 1, "kind": "viterb",
        "dataset": {"builder": "scenes", "config": {"n": {"train": 90, "test": 40}, "seed": 0}, "split": "test"},
        "columns": {"image": "image", "label": "color", "caption": "caption"},
        "params": {"vision": TOWER, "unseen": ["orange", "pink"], "templates": ["a {c} object."],
                   "sharelock": {"language_hidden_size": 16, "language_num_layers": 2, "max_steps": 5,
                                 "batch_size": 32, "accumulate_grad_batches": 1, "val_split_num": 0,
                                 "lr_warmup_steps": 1}, **params},
        "metrics": ["unseen_accuracy", "seen_accuracy", "accuracy"], "main_score": "unseen_accuracy",
    }
    path = tmp_path / "viterb_tiny.yaml"
    path.write_text(json.dumps(spec))
    return path


def test_viterb_one_result_per_language_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _viterb_spec(tmp_path)
    code = main(["run", "--model", "hashbow:32", "--model", "hashbow:64", "--task", str(spec), "--quiet",
                 "--output-dir", str(tmp_path / "results")])
    assert code == 0, capsys.readouterr().err
    paths = capsys.readouterr().out.strip().splitlines()
    first, second = (read_result(Path(p)) for p in paths)
    assert [first["model"]["name"], second["model"]["name"]] == ["hashbow:32", "hashbow:64"]
    assert first["task"]["kind"] == "viterb"
    assert set(first["metrics"]) == {"unseen_accuracy", "seen_accuracy", "accuracy"}
    assert first["metrics"]["unseen_accuracy"]["value"] == first["metrics"]["accuracy"]["value"]
    assert first["cache"]["image_misses"] > 0 and second["cache"]["image_misses"] == 0  # tower features reused
    assert second["cache"]["image_hits"] == first["cache"]["image_misses"]
    [tower] = first["auxiliary_models"]
    assert tower["name"] == TOWER and tower["role"] == "image tower" and tower["plugin"] == "torchvision"
    assert len(tower["fingerprint"]) == 64 and tower["n_parameters"] > 0 and second["auxiliary_models"] == [tower]
    assert main(["viterb-report", str(tmp_path / "results")]) == 0
    printed = capsys.readouterr().out
    assert "viterb_tiny" in printed and "hashbow:32" in printed and "generalises better to unseen classes" in printed
    assert main(["viterb-report", str(tmp_path / "results"), str(tmp_path / "results")]) == 0  # not two seeds
    assert capsys.readouterr().out == printed


def test_an_unknown_second_model_fails_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--model", "hashbow:32", "--model", "hashbow:sixty", "--task", str(_viterb_spec(tmp_path)),
                 "--quiet", "--output-dir", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert code != 0 and "hashbow:sixty" in err and err.count("\n") == 1
    assert not (tmp_path / "results").exists()


def test_the_tower_resolves_with_the_runs_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A tower name only a ``-p`` module plugin provides (not an entry point) resolves inside the task."""
    (tmp_path / "harness_towerplugin.py").write_text(
        "from harness import hookimpl\nfrom harness.testing import tiny_model_spec\n"
        "@hookimpl\ndef harness_register_models():\n"
        "    return [tiny_model_spec('adhoc:tower', {'image_embed'}, dim=16)]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = _viterb_spec(tmp_path, vision="adhoc:tower")
    argv = ["run", "--model", "hashbow:16", "--task", str(spec), "--limit", "8", "--quiet", "--no-cache",
            "--output-dir", str(tmp_path / "results")]
    assert main(argv) != 0 and "adhoc:tower" in capsys.readouterr().err
    assert main([*argv, "-p", "harness_towerplugin"]) == 0, capsys.readouterr().err
    doc = read_result(Path(capsys.readouterr().out.strip()))
    assert doc["auxiliary_models"][0]["name"] == "adhoc:tower"
    assert doc["auxiliary_models"][0]["plugin"] == "harness_towerplugin"


def test_viterb_spec_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _viterb_spec(tmp_path, unseen=["violet", "orange"])
    code = main(["run", "--model", "hashbow:8", "--task", str(bad), "--quiet",
                 "--output-dir", str(tmp_path / "r")])
    assert code == 2 and "unseen classes ['violet'] are not class names" in capsys.readouterr().err
    seeded = _viterb_spec(tmp_path, sharelock={"seed": 3})
    assert main(["validate", str(seeded)]) == 2  # the head's seed is the run's --seed
    assert main(["validate", str(PLUGINS / "harness_sharelock" / "tasks" / "viterb_scenes_colors.yaml")]) == 0
    templated = _viterb_spec(tmp_path, templates=["a {colour} object."])
    capsys.readouterr()
    assert main(["validate", str(templated)]) == 2
    assert "params.templates[0]: 'a {colour} object.' has unknown placeholder(s) {colour}" in capsys.readouterr().err


#: Colours of the plugin-testing rows; green and orange are held out.
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "orange": (250, 150, 20)}


def _rows(n: int, seed: int) -> dict[str, list]:
    import PIL.Image

    names = list(COLOURS)
    labels = np.random.default_rng(seed).integers(0, len(names), n)
    return {"image": [PIL.Image.new("RGB", (8, 8), COLOURS[names[i]]) for i in labels], "color": labels.tolist(),
            "caption": [f"a {names[i]} square" for i in labels]}


def test_the_kind_gives_every_evaluated_row_both_sides() -> None:
    """On harness.testing's context: params defaults filled, the tower loaded as an auxiliary model,
    and per-sample outputs of one length, each side's label -1 on the other side's rows."""
    from harness.testing import check_task_kind, task_context, tiny_model
    from harness_sharelock import harness_register_task_kinds

    [kind] = harness_register_task_kinds()
    evaluated = _rows(24, 1)
    ctx = task_context(evaluated, columns={"image": "image", "label": "color", "caption": "caption"},
                       params={"vision": "tower", "unseen": ["green", "orange"], "classnames": list(COLOURS),
                               "sharelock": {"language_hidden_size": 16, "language_num_layers": 2, "max_steps": 5,
                                             "batch_size": 8, "accumulate_grad_batches": 1, "val_split_num": 0,
                                             "lr_warmup_steps": 1}},
                       model=tiny_model({"text_embed"}, dim=12), models={"tower": tiny_model({"image_embed"}, dim=12)},
                       splits={"train": _rows(40, 2)}, kind=kind)
    assert ctx.params["templates"] == ["a photo of a {c}."] and ctx.params["train_split"] == "train"
    outputs = check_task_kind(kind, ctx)["outputs"]
    labels = np.asarray(evaluated["color"])
    unseen = np.isin(labels, [1, 3])
    assert outputs["logits"].shape == (24, 2) and outputs["seen_logits"].shape == (24, 2)
    assert outputs["labels"].tolist() == [{1: 0, 3: 1}.get(int(c), -1) for c in labels]
    assert outputs["seen_labels"].tolist() == [{0: 0, 2: 1}.get(int(c), -1) for c in labels]
    assert unseen.any() and (~unseen).any()
    again = check_task_kind(kind, ctx)["outputs"]  # seeded: the same head, the same logits
    assert all(np.array_equal(again[k], outputs[k]) for k in outputs)
    [tower] = ctx.used_models
    assert tower["name"] == "tower" and tower["role"] == "image tower"


def test_the_head_is_never_trained_on_the_evaluated_split() -> None:
    from harness import SpecError
    from harness.testing import task_context, tiny_model
    from harness_sharelock import harness_register_task_kinds
    from harness_sharelock.viterb import ViTeRB

    [kind] = harness_register_task_kinds()
    ctx = task_context(_rows(12, 1), columns={"image": "image", "label": "color", "caption": "caption"},
                       params={"vision": "tower", "unseen": ["green", "orange"], "classnames": list(COLOURS),
                               "train_split": "test"},
                       model=tiny_model({"text_embed"}), models={"tower": tiny_model({"image_embed"})}, kind=kind)
    with pytest.raises(SpecError, match="'test' is the evaluated split"):
        ViTeRB().evaluate(ctx)


def test_the_head_is_trained_once_under_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from harness.processgroup import ProcessGroup
    from harness.taskkind import Compute
    from harness.testing import task_context, tiny_model
    from harness_sharelock import harness_register_task_kinds
    from harness_sharelock.viterb import ViTeRB

    class Follower(ProcessGroup):
        def broadcast(self, value):  # noqa: ANN001, ANN201 - what rank 0 computed
            assert value is None
            return {"from": "rank 0"}

    [kind] = harness_register_task_kinds()
    ctx = task_context(_rows(12, 1), columns={"image": "image", "label": "color", "caption": "caption"},
                       params={"vision": "tower", "unseen": ["green", "orange"], "classnames": list(COLOURS)},
                       model=tiny_model({"text_embed"}), models={"tower": tiny_model({"image_embed"})},
                       splits={"train": _rows(20, 2)}, kind=kind)
    monkeypatch.setattr("harness_sharelock.viterb.fit_and_classify",
                        lambda *a, **k: pytest.fail("a follower rank trained the head"))
    follower = dataclasses.replace(ctx, compute=Compute(group=Follower(rank=1, world_size=2)))
    assert ViTeRB().evaluate(follower) == {"from": "rank 0"}
