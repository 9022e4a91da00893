"""The VQA plugin: the accuracy metric in its four modes (a hand-computed table), the ``vqa`` task
kind, the VQA-format dataset builders, the scenes VQA set, the EvalAI submission, and bad inputs
that end as one line with nothing written."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("harness_vqa") is None:  # until pyproject.toml lists the package
    sys.path.insert(0, str(ROOT / "plugins"))

from harness import DataError, GenerationRequest, Generation, SpecError  # noqa: E402
from harness.cli import main  # noqa: E402
from harness.testing import check_task_kind, task_context, tiny_model  # noqa: E402
from harness_vqa import harness_register_metrics, harness_register_task_kinds  # noqa: E402
from harness_vqa import data as vqa_data  # noqa: E402
from harness_vqa.kind import DEFAULT_PROMPT, VQA  # noqa: E402
from harness_vqa.metric import MODES, accuracy, question_accuracy  # noqa: E402
from harness_vqa.normalize import (CONTRACTIONS, NUMBER_MAP, evalai_process, process_digit_article,  # noqa: E402
                                   process_punctuation)

TASKS = ROOT / "tasks"
MODEL = "tiny:gen"
TEST_PLUGIN = "harness_vqa_test_models"
TEST_PLUGIN_SOURCE = '''
import hashlib

from harness import Generation, ModelSpec, hookimpl
from harness.testing import tiny_model_spec

ANSWERS = {}


def key(prompt, image):
    return prompt, hashlib.sha256(image.convert("RGB").tobytes()).hexdigest()


class Oracle:
    """Answers from a table of (prompt, image pixels) (a stand-in that scores above zero); 'no idea' otherwise."""

    def generate(self, requests):
        return [Generation(ANSWERS.get(key(r.prompt, r.images[0]), "no idea"), n_tokens=2) for r in requests]

    def provenance(self):
        return {"revision": None, "fingerprint": "1" * 64, "n_parameters": 0}


def oracle(spec, ctx):
    return Oracle()


@hookimpl
def harness_register_models():
    return [tiny_model_spec("tiny:gen", {"generate"}),
            ModelSpec("oracle:vqa", "harness_vqa_test_models:oracle", frozenset({"generate"}), code_version="1")]
'''


# -- the metric: a table computed by hand ----------------------------------------------------------
# With n answers of which m match (after the mode's normalisation), leave-one-out gives
# acc = (m * min(1, (m-1)/3) + (n-m) * min(1, m/3)) / n; for n = 10: m = 0, 1, 2, 3, >=4 -> 0, 0.3, 0.6, 0.9, 1.
# Columns: official, evalai, legacy, gvt_substring.
TABLE = [
    # unanimous, exact: every mode matches
    ("unanimous exact", "yes", ["yes"] * 10, (1.0, 1.0, 1.0, 1.0)),
    # unanimous answers: official normalises nothing (case and period count); the others normalise the prediction
    ("unanimous, capitalised prediction", "Yes", ["yes"] * 10, (0.0, 1.0, 1.0, 1.0)),
    ("unanimous, trailing period", "yes.", ["yes"] * 10, (0.0, 1.0, 1.0, 1.0)),
    ("unanimous, period inside", "st. louis", ["st louis"] * 10, (0.0, 1.0, 1.0, 1.0)),
    # GT-Vision-Lab issue #14: no lower-casing when the answers agree; legacy lower-cases the prediction only
    ("unanimous capitalised answers", "Red", ["Red"] * 10, (1.0, 1.0, 0.0, 1.0)),
    # a digit against unanimous number words: only EvalAI maps the answers' words
    ("unanimous number word", "2", ["two"] * 10, (0.0, 1.0, 0.0, 0.0)),
    # split answers: official/evalai map number words on both sides (m = 5); legacy keeps 'two' in the answers (m = 3)
    ("split, number words", "two", ["2"] * 3 + ["two"] * 2 + ["3"] * 5, (1.0, 1.0, 0.9, 0.9)),
    # articles: official/evalai drop them on both sides (m = 4); legacy only in the prediction (m = 2)
    ("split, articles", "a dog", ["dog"] * 2 + ["the dog"] * 2 + ["cat"] * 6, (1.0, 1.0, 0.6, 0.6)),
    # contractions: 'dont' -> "don't" (m = 3); GVT's substring also finds 'no' inside "don't know" (m = 10)
    ("split, contraction", "dont know", ["don't know"] * 3 + ["no"] * 7, (0.9, 0.9, 0.9, 1.0)),
    # the odd table entry: "somebody'd" -> 'somebodyd'
    ("split, odd contraction", "somebody'd", ["somebodyd"] * 3 + ["someone"] * 7, (0.9, 0.9, 0.9, 0.9)),
    # 2.5 keeps its period (followed by a digit); GVT's substring lets '2' match inside '2.5' (m = 4)
    ("split, decimal", "2.5", ["2.5"] + ["2"] * 3 + ["3"] * 6, (0.3, 0.3, 0.3, 1.0)),
    # 1,000: the digit-comma rule deletes the comma (and EvalAI deletes every comma): m = 4 everywhere
    ("split, thousands comma", "1000", ["1,000"] * 3 + ["1000"] + ["many"] * 6, (1.0, 1.0, 1.0, 1.0)),
    # a digit-comma anywhere makes every mark deleted ('1,000-ft' -> '1000ft'); EvalAI has no commas left by
    # then, so its '-' becomes a space ('1000 ft')
    ("split, digit-comma deletes marks", "1000ft", ["1,000-ft"] * 3 + ["far"] * 7, (0.9, 0.0, 0.9, 0.9)),
    # a comma between words: official spaces it ('red blue'); EvalAI deletes commas first ('redblue');
    # GVT: 'red' is inside 'red blue' too (m = 10)
    ("split, comma between words", "red blue", ["red,blue"] * 3 + ["red"] * 7, (0.9, 0.0, 0.9, 1.0)),
    # the period regex runs with count = re.UNICODE = 32: 8 of 40 periods survive
    ("split, 40 periods", "yes" + "." * 40, ["yes"] * 3 + ["no"] * 7, (0.0, 0.0, 0.0, 0.9)),
    # GT-Vision-Lab issue #7: 'none' -> '0' (legacy leaves the answers' words alone)
    ("split, none is zero", "0", ["none"] * 4 + ["1"] * 6, (1.0, 1.0, 0.0, 0.0)),
    ("split, yes/no", "no", ["yes"] * 7 + ["no"] * 3, (0.9, 0.9, 0.9, 0.9)),
    # empty predictions: an article-only answer normalises to '' (official/evalai: m = 3)
    ("empty prediction", "", ["yes"] * 10, (0.0, 0.0, 0.0, 0.0)),
    ("empty prediction, article answers", "", ["the"] * 3 + ["cat"] * 7, (0.9, 0.9, 0.0, 0.0)),
    # whitespace: \n and \t become spaces and both ends are stripped, in every mode
    ("whitespace around the prediction", " yes\n", ["yes"] * 10, (1.0, 1.0, 1.0, 1.0)),
    # legacy does not strip the answers
    ("whitespace in unanimous answers", "yes", ["yes "] * 10, (1.0, 1.0, 0.0, 0.0)),
    # OK-VQA: five answers, each twice (m = 2); GVT: 'surf' is inside 'surfing' (m = 4)
    ("OK-VQA duplicated answers", "surfing", ["surf", "surf", "surfing", "surfing", "waves", "waves", "beach", "beach",
                                              "ocean", "ocean"], (0.6, 0.6, 0.6, 1.0)),
    # other counts: n = 5, m = 3: (3 * 2/3 + 2 * 1) / 5 = 0.8; n = 3, m = 1: (0 + 2 * 1/3) / 3 = 2/9; n = 1: 0
    ("five answers", "red", ["red", "red", "blue", "green", "red"], (0.8, 0.8, 0.8, 0.8)),
    ("three answers", "x", ["x", "y", "z"], (2 / 9, 2 / 9, 2 / 9, 2 / 9)),
    ("one answer", "x", ["x"], (0.0, 0.0, 0.0, 0.0)),
]


@pytest.mark.parametrize("case", TABLE, ids=[c[0] for c in TABLE])
def test_vqa_accuracy_table(case) -> None:  # noqa: ANN001
    _, prediction, answers, expected = case
    for mode, value in zip(MODES, expected):
        assert question_accuracy(prediction, answers, mode) == pytest.approx(value, abs=1e-12), mode


def test_metric_names_record_the_mode_and_score_per_sample() -> None:
    specs = {spec.name: spec for spec in harness_register_metrics()}
    assert set(specs) == {"vqa_accuracy", "vqa_accuracy_evalai", "vqa_accuracy_legacy", "vqa_accuracy_gvt"}
    predictions = np.array([case[1] for case in TABLE], dtype=object)
    answers = np.empty(len(TABLE), dtype=object)
    for i, case in enumerate(TABLE):
        answers[i] = list(case[2])
    before = copy.deepcopy(list(answers))
    for index, name in enumerate(("vqa_accuracy", "vqa_accuracy_evalai", "vqa_accuracy_legacy", "vqa_accuracy_gvt")):
        spec = specs[name]
        assert (spec.unit, spec.reduce, spec.interval, spec.higher_is_better) == ("fraction", "mean", "bootstrap", True)
        assert spec.breakdown == ("answer_type", "question_type")
        module, fn = spec.fn.split(":")
        scores = getattr(importlib.import_module(module), fn)(predictions=predictions, answers=answers)
        assert scores.shape == (len(TABLE),)
        assert scores == pytest.approx([case[3][index] for case in TABLE])
    assert list(answers) == before  # pure: the answers (and the lists inside) are untouched


def test_missing_answers_are_undefined_and_empty_lists_an_error() -> None:
    assert accuracy(["a", "b"], [None, None]) is None  # a test split: nothing to score against
    with pytest.raises(ValueError, match="1 of 2 questions have no answers"):
        accuracy(["a", "b"], [["a"], None])
    with pytest.raises(ValueError, match="non-empty list"):
        question_accuracy("a", [])
    with pytest.raises(ValueError, match="unknown VQA accuracy mode"):
        question_accuracy("a", ["a"], "strict")


def test_normalisation_tables_and_rules() -> None:
    assert len(CONTRACTIONS) == 120  # the official table, entry for entry
    assert CONTRACTIONS["somebody'd"] == "somebodyd" and CONTRACTIONS["dont"] == "don't"
    assert {"Im", "Ive", "Id've", "I'dve"} <= set(CONTRACTIONS)  # keys that can never match (text is lower-cased)
    assert NUMBER_MAP["none"] == "0" and "eleven" not in NUMBER_MAP
    assert process_punctuation("2.5") == "2.5" and process_punctuation("2.") == "2"
    assert process_punctuation("a.b") == "ab"
    assert process_punctuation("yes, it is") == "yes it is"  # ', ' occurs: the comma is deleted
    assert process_punctuation("red,blue") == "red blue"  # otherwise it becomes a space
    assert process_punctuation("1,000-ft") == "1000ft"  # a digit-comma-digit deletes every mark
    assert process_punctuation("Yes") == "Yes"  # punctuation does not lower-case
    assert process_digit_article("The Two  dogs") == "2 dogs"
    assert process_digit_article("im") == "im"  # 'Im' is in the table, but words are lower-cased first
    assert evalai_process("The man's Hat?") == "man 's hat"
    assert evalai_process("Ten,000") == "ten000"


# -- the task kind ---------------------------------------------------------------------------------
def _kind_spec():  # noqa: ANN202
    return harness_register_task_kinds()[0]


def _images(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (16, 16), (40 * i % 256, 80, 120)) for i in range(n)]


ROWS = {
    "question": ["What color is it?", "How many dogs?", "Is it sunny?"],
    "answers": [["red"] * 10, ["2"] * 6 + ["two"] * 2 + ["3"] * 2, ["yes"] * 7 + ["no"] * 3],
    "question_id": [11, 12, 13],
    "answer_type": ["other", "number", "yes/no"],
    "question_type": ["what color is", "how many", "is it"],
}
COLUMNS = {"image": "image", "question": "question"}


class Oracle:
    """Answers from a table of prompts."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers, self.requests = answers, []

    def generate(self, requests):  # noqa: ANN001, ANN201
        self.requests += list(requests)
        return [Generation(self.answers.get(r.prompt, "no idea"), n_tokens=2) for r in requests]

    def provenance(self) -> dict:
        return {"revision": None, "fingerprint": "1" * 64, "n_parameters": 0}


def test_kind_end_to_end_with_the_tiny_model() -> None:
    spec = _kind_spec()
    assert spec.needs == frozenset({"generate"}) and spec.columns == ("image", "question")
    assert set(spec.records) == {"prompts", "predictions", "answers", "question_ids", "answer_type", "question_type",
                                 "details"}
    ctx = task_context({"image": _images(3), **ROWS}, COLUMNS, model=tiny_model({"generate"}), kind=spec)
    assert ctx.params == {"prompt": DEFAULT_PROMPT, "max_new_tokens": 10, "stop": []}
    checked = check_task_kind(spec, ctx, harness_register_metrics())
    outputs = checked["outputs"]
    assert list(outputs["prompts"]) == [f"{q}\nAnswer the question using a single word or phrase."
                                        for q in ROWS["question"]]
    assert outputs["question_ids"].tolist() == [11, 12, 13]
    assert [list(a) for a in outputs["answers"]] == ROWS["answers"]
    assert list(outputs["answer_type"]) == ROWS["answer_type"]
    # the tiny model answers with one word of the prompt, the same every time
    again = VQA().evaluate(task_context({"image": _images(3), **ROWS}, COLUMNS, model=tiny_model({"generate"}),
                                        kind=spec))
    assert list(again["predictions"]) == list(outputs["predictions"])
    assert all(isinstance(p, str) and p in prompt for p, prompt in zip(outputs["predictions"], outputs["prompts"]))
    assert set(checked["metrics"]) == {"vqa_accuracy", "vqa_accuracy_evalai", "vqa_accuracy_legacy",
                                       "vqa_accuracy_gvt"}


def test_kind_requests_and_scores_with_an_oracle() -> None:
    spec = _kind_spec()
    prompts = {f"Q: {q} A:": a for q, a in zip(ROWS["question"], ["Red", "two", "no"])}
    model = Oracle(prompts)
    ctx = task_context({"image": _images(3), **ROWS}, COLUMNS, model=model, kind=spec,
                       params={"prompt": "Q: {question} A:", "max_new_tokens": 4, "stop": ["\n"]})
    checked = check_task_kind(spec, ctx, harness_register_metrics())
    request = model.requests[0]
    assert isinstance(request, GenerationRequest) and request.greedy
    assert (request.max_new_tokens, request.stop, len(request.images)) == (4, ("\n",), 1)
    assert request.images[0].mode == "RGB"
    # 'Red' vs unanimous 'red': official 0 (no normalisation), evalai and legacy 1 (the prediction is lower-cased);
    # 'two' vs 6x'2' 2x'two' 2x'3': 1 everywhere (legacy: m = 6); 'no' vs 7 yes 3 no: 0.9 everywhere
    metrics = checked["metrics"]
    assert metrics["vqa_accuracy"]["value"] == pytest.approx((0 + 1 + 0.9) / 3)
    assert metrics["vqa_accuracy_evalai"]["value"] == pytest.approx((1 + 1 + 0.9) / 3)
    assert metrics["vqa_accuracy_legacy"]["value"] == pytest.approx((1 + 1 + 0.9) / 3)
    table = metrics["vqa_accuracy"]["breakdown"]["answer_type"]
    assert table["yes/no"]["value"] == pytest.approx(0.9) and table["other"]["value"] == 0.0
    assert table["number"]["n"] == 1


def test_default_prompt_is_the_shared_file_and_chunking_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert json.loads((TASKS / "vqa" / "short_answer_prompt.v1.json").read_text()) == DEFAULT_PROMPT
    spec = _kind_spec()
    whole = VQA().evaluate(task_context({"image": _images(3), **ROWS}, COLUMNS, model=tiny_model({"generate"}),
                                        kind=spec))
    model = Oracle({})
    monkeypatch.setattr("harness_vqa.kind.CHUNK_ROWS", 2)
    chunked = VQA().evaluate(task_context({"image": _images(3), **ROWS}, COLUMNS, model=model, kind=spec))
    assert len(model.requests) == 3 and list(chunked["prompts"]) == list(whole["prompts"])
    tiny = VQA().evaluate(task_context({"image": _images(3), **ROWS}, COLUMNS, model=tiny_model({"generate"}),
                                       kind=spec))
    assert list(tiny["predictions"]) == list(whole["predictions"])


def test_kind_without_annotations_predicts_only() -> None:
    spec = _kind_spec()
    rows = {"image": _images(2), "question": ["a?", "b?"], "question_id": [5, 6]}
    checked = check_task_kind(spec, task_context(rows, COLUMNS, model=tiny_model({"generate"}), kind=spec),
                              harness_register_metrics())
    assert list(checked["outputs"]["answers"]) == [None, None]
    assert list(checked["outputs"]["answer_type"]) == ["unknown", "unknown"]
    assert checked["metrics"]["vqa_accuracy"]["value"] is None


@pytest.mark.parametrize(("change", "error", "message"), [
    ({"answers": [["red"], [], []]}, DataError, r"question_id 12 has an empty answer list \(2 such questions\)"),
    ({"question_id": [11, 11, 13]}, DataError, "question id 11 appears more than once"),
    ({"question": ["What?", "", "Is it?"]}, DataError, "question_id 12 has question '', not a non-empty string"),
    ({"question": ["What?", "<image> and <image>?", "x"]}, DataError, "contains the image placeholder"),
])
def test_kind_check_refuses_bad_rows(change, error, message) -> None:  # noqa: ANN001
    ctx = task_context({"image": _images(3), **{**ROWS, **change}}, COLUMNS, model=tiny_model({"generate"}),
                       kind=_kind_spec())
    with pytest.raises(error, match=message):
        VQA().check(ctx)


def test_kind_check_refuses_two_image_placeholders_and_warns_on_single_answers() -> None:
    ctx = task_context({"image": _images(3), **ROWS}, COLUMNS, model=tiny_model({"generate"}), kind=_kind_spec(),
                       params={"prompt": "<image> <image> {question}"})
    with pytest.raises(SpecError, match="appears 2 times"):
        VQA().check(ctx)
    ctx = task_context({"image": _images(3), **{**ROWS, "answers": [["red"], ["2"] * 3, ["yes"] * 3]}}, COLUMNS,
                       model=tiny_model({"generate"}), kind=_kind_spec())
    with pytest.warns(UserWarning, match="single human answer"):
        VQA().check(ctx)


# -- the scenes VQA set ----------------------------------------------------------------------------
def test_scenes_vqa_is_deterministic_with_realistic_answers() -> None:
    from harness_scenes.vqa import build

    data = build({"n": 120, "seed": 0}, "test")
    again = build({"n": 30, "seed": 0}, "test")
    assert data.select(range(30))["answers"] == again["answers"] and data._fingerprint != again._fingerprint
    assert build({"n": 30, "seed": 1}, "test")["question"] != again["question"]
    assert set(data.column_names) >= {"image", "question", "question_id", "answers", "answer_type", "question_type"}
    assert data["question_id"] == list(range(120)) and len(set(data["id"])) == 120
    assert set(data["answer_type"]) == {"yes/no", "number", "other"}
    assert set(data["question_type"]) == {"what color is the", "what shape is the", "how many", "is there a"}
    assert all(len(a) == 10 for a in data["answers"])
    for row in data:
        scores = {mode: question_accuracy(row["true_answer"], row["answers"], mode) for mode in MODES}
        assert scores["official"] >= 0.3  # at least 3 annotators give the truth (in some surface form)
        if row["answer_type"] == "yes/no":
            assert row["true_answer"] in ("yes", "no")
        if row["answer_type"] == "number":
            assert row["true_answer"].isdigit()
    unanimous = sum(len(set(a)) == 1 for a in data["answers"])
    assert 0 < unanimous < len(data)  # some questions unanimous, most with disagreement
    words = Counter(w for a in data["answers"] for w in a)
    assert words["no"] and words["yes"] and any(w in words for w in ("two", "none", "zero"))
    rows = build({"n": 60, "seed": 0, "min_objects": 2, "max_objects": 4}, "test")
    for row in rows:  # the colour question names a shape that occurs once, and the answer is its colour
        if row["question_type"] == "what color is the":
            shape = row["question"].removeprefix("What color is the ").rstrip("?")
            assert row["true_answer"] in _scene_colours(rows, row, shape)


def _scene_colours(rows, row, shape):  # noqa: ANN001, ANN202
    from harness_scenes.builder import build as scenes

    scene = scenes({"n": len(rows), "seed": 0, "min_objects": 2, "max_objects": 4}, "test")
    objects = scene[int(row["question_id"])]["objects"]
    assert sum(o["shape"] == shape for o in objects) == 1
    return {o["color"] for o in objects if o["shape"] == shape}


# -- the VQA-format builders -----------------------------------------------------------------------
def write_vqa(folder: Path, n: int = 3, annotations: bool = True, missing_image: bool = False) -> dict[str, str]:
    """A tiny VQA-format dataset: questions, annotations and COCO-named images under ``folder``."""
    images = folder / "val2014"
    images.mkdir(parents=True, exist_ok=True)
    questions = [{"question_id": 100 + i, "image_id": 40 + i % 2, "question": f"What is shown {i}?"} for i in range(n)]
    for image_id in {q["image_id"] for q in questions}:
        if not (missing_image and image_id == 41):
            Image.new("RGB", (24, 16), (image_id * 3, 90, 30)).save(images / f"COCO_val2014_{image_id:012d}.jpg")
    (folder / "questions.json").write_text(json.dumps({"data_subtype": "val2014", "questions": questions}))
    config = {"questions": str(folder / "questions.json"), "images": str(images)}
    if annotations:
        notes = [{"question_id": q["question_id"], "image_id": q["image_id"], "answer_type": "other",
                  "question_type": "what is", "multiple_choice_answer": "cat",
                  "answers": [{"answer": "cat" if j < 7 else "dog", "raw_answer": "cats", "answer_confidence": "yes",
                               "answer_id": j + 1} for j in range(10)]} for q in questions]
        (folder / "annotations.json").write_text(json.dumps({"annotations": notes}))
        config["annotations"] = str(folder / "annotations.json")
    return config


def test_vqa_json_builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_vqa(tmp_path / "vqa")
    data = vqa_data.build_vqa_json(config, "val2014")
    assert data.column_names == ["id", "image", "image_id", "question_id", "question", "answers", "answer_type",
                                 "question_type", "multiple_choice_answer"]
    assert data["question_id"] == [100, 101, 102] and data["id"] == ["100", "101", "102"]
    assert data["answers"][0] == ["cat"] * 7 + ["dog"] * 3 and data[1]["image"].size == (24, 16)
    assert vqa_data.build_vqa_json({**config, "answer_field": "raw_answer"}, "val2014")["answers"][0] == ["cats"] * 10
    # relative paths inside root, with ${VAR}
    monkeypatch.setenv("VQA_TEST_ROOT", str(tmp_path / "vqa"))
    rooted = vqa_data.build_vqa_json({"root": "${VQA_TEST_ROOT}", "questions": "questions.json",
                                      "annotations": "annotations.json", "images": "val2014"}, "val2014")
    assert rooted._fingerprint == data._fingerprint
    # another image's bytes: another dataset
    Image.new("RGB", (24, 16), (1, 2, 3)).save(tmp_path / "vqa" / "val2014" / "COCO_val2014_000000000040.jpg")
    assert vqa_data.build_vqa_json(config, "val2014")._fingerprint != data._fingerprint
    test_dev = vqa_data.build_vqa_json({k: v for k, v in config.items() if k != "annotations"}, "test-dev")
    assert "answers" not in test_dev.column_names and len(test_dev) == 3


def test_textvqa_and_vizwiz_builders(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    for name in ("abc.jpg", "VizWiz_val_00000000.jpg"):
        Image.new("RGB", (8, 8)).save(tmp_path / "img" / name)
    (tmp_path / "textvqa.json").write_text(json.dumps({"data": [
        {"question_id": 7, "image_id": "abc", "question": "what brand?", "answers": ["nike"] * 10}]}))
    data = vqa_data.build_textvqa_json({"annotations": str(tmp_path / "textvqa.json"), "images": str(tmp_path / "img")},
                                       "val")
    assert (data["question_id"], data["answers"]) == ([7], [["nike"] * 10])
    (tmp_path / "vizwiz.json").write_text(json.dumps([
        {"image": "VizWiz_val_00000000.jpg", "question": "what is this?", "answer_type": "unanswerable",
         "answers": [{"answer": "unanswerable", "answer_confidence": "yes"}] * 10}]))
    data = vqa_data.build_vizwiz_json({"annotations": str(tmp_path / "vizwiz.json"), "images": str(tmp_path / "img")},
                                      "val")
    assert (data["question_id"], data["answer_type"], data["image_id"]) == ([0], ["unanswerable"],
                                                                             ["VizWiz_val_00000000.jpg"])


@pytest.mark.parametrize(("config", "message"), [
    ({"questions": "q.json", "images": "/x"}, "config.questions 'q.json' is relative"),
    ({"root": "${VQA_SURELY_UNSET_VAR}", "questions": "q.json", "images": "x"},
     "environment variable VQA_SURELY_UNSET_VAR is not set"),
    ({"questions": "/nonexistent/q.json", "images": "/"}, "does not exist or is not a file"),
    ({"questions": "/q.json", "images": "/", "colour": 1}, "unknown config key"),
    ({"images": "/"}, "config.questions is required"),
])
def test_vqa_json_config_errors(config, message) -> None:  # noqa: ANN001
    with pytest.raises(DataError, match=message):
        vqa_data.build_vqa_json(config, "val")


# -- through the command line ----------------------------------------------------------------------
@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / f"{TEST_PLUGIN}.py").write_text(TEST_PLUGIN_SOURCE)
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop(TEST_PLUGIN, None)
    yield importlib.import_module(TEST_PLUGIN)
    sys.modules.pop(TEST_PLUGIN, None)


def cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(["-p", "harness_vqa", "-p", TEST_PLUGIN, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run(capsys, tmp_path: Path, task: Path | str, *extra: str, model: str = MODEL):  # noqa: ANN001, ANN201
    return cli(capsys, "run", "--quiet", "--model", model, "--task", str(task), "--output-dir", str(tmp_path / "out"),
               "--cache-dir", str(tmp_path / "cache"), *extra)


def write_spec(path: Path, config: dict, columns: dict | None = None, metrics: tuple = ("vqa_accuracy",)) -> Path:
    columns = columns or {"image": "image", "question": "question", "answers": "answers"}
    spec = {"name": path.stem, "version": 1, "kind": "vqa", "dataset": {"builder": "vqa_json", "config": config,
                                                                         "split": "val2014"},
            "columns": columns, "metrics": list(metrics), "main_score": metrics[0]}
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def test_scenes_vqa_task_through_the_cli(capsys, tmp_path: Path, models) -> None:  # noqa: ANN001
    code, out, err = run(capsys, tmp_path, TASKS / "scenes_vqa.yaml")
    assert code == 0, err
    [path] = [Path(p) for p in out.split()]
    doc = json.loads(path.read_text())
    assert doc["task"]["kind"] == "vqa" and doc["main_score"]["name"] == "vqa_accuracy"
    assert doc["n_samples"] == {"total": 200, "evaluated": 200, "partial": False}
    assert set(doc["metrics"]) == {"vqa_accuracy", "vqa_accuracy_evalai", "vqa_accuracy_legacy"}
    records = [json.loads(line) for line in path.with_name(path.stem + ".samples.jsonl").read_text().splitlines()]
    assert len(records) == 200
    fields = records[0]["fields"]
    assert fields["prompts"].endswith("\nAnswer the question using a single word or phrase.")
    assert len(fields["answers"]) == 10 and isinstance(fields["predictions"], str)
    assert set(fields) == {"prompts", "predictions", "answers", "question_ids", "answer_type", "question_type",
                           "details"}
    assert main(["-p", "harness_vqa", "validate", str(path)]) == 0
    assert capsys.readouterr().out.startswith("ok\t")
    # an oracle that answers the truth scores what the metric gives the truth (below 1: at worst 3 annotators agree)
    from harness_scenes.vqa import build

    truth = build({"n": 200, "max_objects": 4, "seed": 0}, "test")
    models.ANSWERS.update({models.key(f"{row['question']}\nAnswer the question using a single word or phrase.",
                                      row["image"]): row["true_answer"] for row in truth})
    code, out, err = run(capsys, tmp_path, TASKS / "scenes_vqa.yaml", model="oracle:vqa")
    assert code == 0, err
    doc = json.loads(Path(out.split()[0]).read_text())
    expected = np.mean([question_accuracy(a, answers) for a, answers in zip(truth["true_answer"], truth["answers"])])
    assert doc["main_score"]["value"] == pytest.approx(expected) and 0.8 < expected < 1.0
    breakdown = doc["metrics"]["vqa_accuracy"]["breakdown"]
    assert set(breakdown["answer_type"]) == {"yes/no", "number", "other"}
    assert sum(entry["n"] for entry in breakdown["question_type"].values()) == 200
    # another mode from the records alone (no model): GVT's substring matching
    code, out, err = cli(capsys, "rescore", out.split()[0], "--output-dir", str(tmp_path / "rescored"),
                         "--metric", "vqa_accuracy_gvt", "--metric", "vqa_accuracy")
    assert code == 0, err
    again = json.loads(Path(out.split()[0]).read_text())
    gvt = np.mean([question_accuracy(a, answers, "gvt_substring")
                   for a, answers in zip(truth["true_answer"], truth["answers"])])
    assert again["metrics"]["vqa_accuracy_gvt"]["value"] == pytest.approx(gvt) and gvt != pytest.approx(expected)
    assert again["metrics"]["vqa_accuracy"]["value"] == pytest.approx(expected)


def test_testdev_run_has_no_score_and_makes_a_submission(capsys, tmp_path: Path, models) -> None:  # noqa: ANN001
    config = write_vqa(tmp_path / "vqa", n=4, annotations=False)
    spec = write_spec(tmp_path / "tiny_testdev.yaml", config,
                      {"image": "image", "question": "question", "question_id": "question_id"})
    code, out, err = run(capsys, tmp_path, spec)
    assert code == 0, err
    result = Path(out.split()[0])
    doc = json.loads(result.read_text())
    assert doc["main_score"] == {"name": "vqa_accuracy", "value": None}
    submission = tmp_path / "answers.json"
    code, out, err = cli(capsys, "vqa-submission", str(result), "-o", str(submission))
    assert code == 0, err
    answers = json.loads(submission.read_text())
    assert [a["question_id"] for a in answers] == [100, 101, 102, 103]
    assert all(isinstance(a["answer"], str) and set(a) == {"question_id", "answer"} for a in answers)
    code, _, err = cli(capsys, "vqa-submission", str(result), "-o", str(submission))
    assert code == 4 and "exists (use --force" in err


def one_line_error(code: int, err: str, message: str, out: Path) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("harness: error: "), err
    assert message in lines[0], lines[0]
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))


def test_bad_inputs_are_one_line_with_nothing_written(capsys, tmp_path: Path, models) -> None:  # noqa: ANN001
    out = tmp_path / "out"
    config = write_vqa(tmp_path / "vqa")
    # a missing annotations file
    spec = write_spec(tmp_path / "missing_annotations.yaml", {**config, "annotations": str(tmp_path / "nope.json")})
    one_line_error(*run(capsys, tmp_path, spec)[::2], "config.annotations", out)
    # question ids without images
    gaps = write_vqa(tmp_path / "gaps", missing_image=True)
    code, _, err = run(capsys, tmp_path, write_spec(tmp_path / "no_images.yaml", gaps))
    one_line_error(code, err, "1 of 3 questions have no image", out)
    assert "first: question 101, image 'COCO_val2014_000000000041.jpg'" in err
    # annotations that do not cover the questions
    notes = json.loads(Path(config["annotations"]).read_text())
    notes["annotations"] = notes["annotations"][:2]
    (tmp_path / "partial_annotations.json").write_text(json.dumps(notes))
    partial = {**config, "annotations": str(tmp_path / "partial_annotations.json")}
    spec = write_spec(tmp_path / "uncovered.yaml", partial)
    code, _, err = run(capsys, tmp_path, spec)
    one_line_error(code, err, "covers 2 of 3 questions", out)
    assert "first without annotation: question 102" in err
    # an empty answer list: refused by the kind's check, before any model loads
    notes = json.loads(Path(config["annotations"]).read_text())
    notes["annotations"][1]["answers"] = []
    (tmp_path / "empty_answers.json").write_text(json.dumps(notes))
    spec = write_spec(tmp_path / "empty.yaml", {**config, "annotations": str(tmp_path / "empty_answers.json")})
    code, _, err = run(capsys, tmp_path, spec)
    one_line_error(code, err, "question_id 101 has an empty answer list (1 such questions)", out)
    # a result that does not cover every question (--limit) cannot become a submission
    spec = write_spec(tmp_path / "limited.yaml", {k: v for k, v in config.items() if k != "annotations"},
                      {"image": "image", "question": "question", "question_id": "question_id"})
    code, stdout, err = run(capsys, tmp_path, spec, "--limit", "2")
    assert code == 0, err
    submission = tmp_path / "sub" / "answers.json"
    submission.parent.mkdir()
    code, _, err = cli(capsys, "vqa-submission", stdout.split()[0], "-o", str(submission))
    one_line_error(code, err, "a partial result (--limit): it answers 2 of 3 questions", submission.parent)
    # not a result at all
    code, _, err = cli(capsys, "vqa-submission", str(tmp_path / "nope.json"), "-o", str(submission))
    assert code == 2 and len(err.strip().splitlines()) == 1 and not submission.exists()


def test_a_model_without_generate_is_refused_at_plan_time(capsys, tmp_path: Path) -> None:  # noqa: ANN001
    from harness.cli import main

    code = main(["run", "--model", "hashbow:8", "--task", "scenes_vqa", "--output-dir", str(tmp_path / "out"),
                 "--cache-dir", str(tmp_path / "cache")])
    one_line_error(code, capsys.readouterr().err, "needs ['generate']", tmp_path / "out")
    assert not (tmp_path / "cache").exists()  # refused before any data or model loaded


def test_a_tiny_llava_end_to_end_on_the_scenes_vqa_set(capsys, tmp_path: Path) -> None:  # noqa: ANN001
    """A LLaVA built from configs, loaded by its harness name: a valid result with records, a leaderboard
    row, and rescoring in other modes from the records alone."""
    from generative_fixtures import build_llava

    from harness import ensure_torchvision
    from harness.cli import main
    from harness.records import read_records
    from harness.result import read_result

    ensure_torchvision()
    model = f"vlm:{build_llava(tmp_path / 'llava')}"
    assert main(["run", "--quiet", "--model", model, "--task", "scenes_vqa", "--limit", "6",
                 "--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]) == 0
    path = Path(capsys.readouterr().out.strip())
    doc = read_result(path)
    assert doc["model"]["capabilities"] == ["generate", "image_tokens", "loglikelihood"]
    records = read_records(path, doc)
    assert len(records) == 6 and all(r["fields"]["prompts"].endswith("single word or phrase.") for r in records)
    assert set(doc["metrics"]["vqa_accuracy"]["breakdown"]) == {"answer_type", "question_type"}
    assert main(["leaderboard", str(tmp_path / "out"), "-o", str(tmp_path / "board.md")]) == 0
    capsys.readouterr()
    board = (tmp_path / "board.md").read_text()
    assert "## vqa" in board and "vlm:" in board
    for mode in ("vqa_accuracy_evalai", "vqa_accuracy_gvt"):
        assert main(["rescore", str(path), "--metric", mode, "--output-dir", str(tmp_path / mode)]) == 0
        rescored = read_result(Path(capsys.readouterr().out.strip()))
        assert rescored["main_score"]["name"] == mode and rescored["rescored"]["from"] == path.name
