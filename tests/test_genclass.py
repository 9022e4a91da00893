"""The ``generative_classification`` kind: the answer-to-class rule (normalised exact match, plural
tolerant, else log-likelihood ranking by per-token or raw sum), check() before any model, tiny
``harness.testing`` models, and end to end with a LENS built from tiny parts on the scenes shapes."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
for _package in ("harness_genclass", "harness_lens"):
    if importlib.util.find_spec(_package) is None:  # until pyproject.toml lists the package
        sys.path.insert(0, str(ROOT / "plugins"))
        break

from harness import DataError, Generation, Loglikelihood, SpecError  # noqa: E402
from harness.testing import check_task_kind, task_context, tiny_model  # noqa: E402
from harness_genclass import harness_register_metrics, harness_register_task_kinds  # noqa: E402
from harness_genclass.kind import GenerativeClassification, match, normalize  # noqa: E402

KIND = harness_register_task_kinds()[0]
METRICS = harness_register_metrics()
NAMES = ["circle", "box", "red square"]


def rows(n: int = 6, names: list[str] = NAMES) -> dict:
    import datasets
    from PIL import Image

    images = [Image.new("RGB", (16, 16), (40 * i % 256, 90, 200)) for i in range(n)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    return datasets.Dataset.from_dict({"image": images, "label": [i % len(names) for i in range(n)]},
                                      features=features)


class Scripted:
    """``generate`` answers from a list (in request order); ``loglikelihood`` prefers ``favourite``."""

    def __init__(self, answers: list[str], favourite: str = " box") -> None:
        self.answers, self.favourite, self.seen = list(answers), favourite, []

    def generate(self, requests):  # noqa: ANN001, ANN201
        self.seen += list(requests)
        return [Generation(self.answers.pop(0), 1) for _ in requests]

    def loglikelihood(self, requests):  # noqa: ANN001, ANN201
        # the favourite costs 3 nats over 3 tokens (per token -1); every other class 2 nats over 1 token (-2)
        return [Loglikelihood(-3.0, 3, False) if r.continuation == self.favourite else Loglikelihood(-2.0, 1, False)
                for r in requests]

    def provenance(self):  # noqa: ANN201
        return {"revision": None, "fingerprint": "0" * 64, "n_parameters": 0}


def test_normalisation_and_the_match_rule() -> None:
    assert normalize("  The Red-Square!! ") == "red square"
    assert normalize("An apple.") == "apple"
    assert match("Circles.", NAMES) == 0 and match("a BOX", NAMES) == 1 and match("boxes", NAMES) == 1
    assert match("red square", NAMES) == 2 and match("square", NAMES) is None  # no partial matches
    assert match("a red circle", NAMES) is None and match("", NAMES) is None
    assert match("mice", ["mouse", "cat"]) is None  # plural tolerance is only +/- s and es


def test_matched_answers_decide_and_the_rest_are_ranked() -> None:
    model = Scripted(["Circle.", "I think it is a dog", "boxes", "the red square\nmore text", "", "Box"])
    ctx = task_context(rows(), {"image": "image", "label": "label"}, model=model, kind=KIND)
    checked = check_task_kind(KIND, ctx, METRICS)
    out, metrics = checked["outputs"], checked["metrics"]
    assert list(out["predictions"]) == [0, 1, 1, 2, 1, 1]  # rows 1 and 4 ranked: " box" best per token
    assert list(out["decided"]) == ["matched", "ranked", "matched", "matched", "ranked", "matched"]
    assert list(out["labels"]) == [0, 1, 2, 0, 1, 2]
    assert out["answers"][3] == "the red square"  # the engine cuts at the stop strings (default: newline)
    assert out["prompts"][0] == "What is in the image? Answer with one of: circle, box, red square."
    assert metrics["generative_accuracy"]["value"] == pytest.approx(3 / 6)
    assert metrics["answer_match_share"]["value"] == pytest.approx(4 / 6)
    assert model.seen[0].images and model.seen[0].stop == ("\n",) and model.seen[0].temperature == 0.0

    raw = Scripted(["dog", "dog", "dog", "dog", "dog", "dog"])
    ctx = task_context(rows(), {"image": "image", "label": "label"}, model=raw, params={"rank": "sum"}, kind=KIND)
    out = GenerativeClassification().evaluate(ctx)
    assert list(out["predictions"]) == [0] * 6  # raw sums: -2 for every other class, the lowest index wins


def test_metrics() -> None:
    from harness_genclass.metric import correct, matched

    scores = correct(np.array([0, 1, 2]), np.array([0, 2, -1]))
    assert list(scores.filled(-1)) == [1.0, 0.0, -1]
    assert list(matched(np.array(["matched", "ranked", "matched"], dtype=object), np.array([0, 1, 2]))) == [1, 0, 1]


def test_tiny_generative_model_runs_every_row() -> None:
    model = tiny_model({"generate", "loglikelihood"})
    ctx = task_context(rows(8), {"image": "image", "label": "label"}, model=model, kind=KIND,
                       params={"prompt": "Which: {classes}?", "continuation": " it is {c}"})
    out = check_task_kind(KIND, ctx, METRICS)["outputs"]
    assert out["predictions"].dtype == np.int64 and set(out["predictions"]) <= {0, 1, 2}
    assert set(out["decided"]) <= {"matched", "ranked"} and len(out["answers"]) == 8
    again = GenerativeClassification().evaluate(task_context(rows(8), {"image": "image", "label": "label"},
                                                             model=model, kind=KIND,
                                                             params={"prompt": "Which: {classes}?",
                                                                     "continuation": " it is {c}"}))
    assert list(again["predictions"]) == list(out["predictions"])


@pytest.mark.parametrize("names, params, error, message", [
    (["circle", "circles", "box"], {}, SpecError, "normalise alike"),
    (["The Box", "box!", "circle"], {}, SpecError, "normalise alike"),
    (NAMES, {"prompt": "Pick {options}"}, SpecError, "unknown field"),
    (NAMES, {"classnames": ["a", "b"]}, SpecError, "2 names, but column 'label' has 3 classes"),
    (["circle", "???", "box"], {}, SpecError, "empty after normalisation"),
])
def test_check_refuses_before_any_model(names, params, error, message) -> None:  # noqa: ANN001
    ctx = task_context(rows(6, names), {"image": "image", "label": "label"}, params=params, kind=KIND)
    ctx = replace(ctx, _features=None)  # as in check(): no model loaded
    with pytest.raises(error, match=message) as caught:
        GenerativeClassification().check(ctx)
    assert "\n" not in str(caught.value)


def test_labels_beyond_the_class_names_are_refused() -> None:
    data = {"image": rows(3)["image"], "label": [0, 1, 5]}
    ctx = task_context(data, {"image": "image", "label": "label"}, params={"classnames": ["a", "b"]}, kind=KIND)
    with pytest.raises(DataError, match="label 5 outside"):
        GenerativeClassification().check(ctx)


# -- end to end: a LENS from tiny parts on the scenes shapes ---------------------------------------
@pytest.fixture(scope="module")
def lens(tmp_path_factory: pytest.TempPathFactory, tiny_openclip: dict) -> str:
    from generative_fixtures import build_blip, build_t5

    root = tmp_path_factory.mktemp("genclass-lens")
    options = {"tags": tiny_openclip["name"], "captions": f"vlm:{build_blip(root / 'blip')}",
               "reasoner": f"lm:{build_t5(root / 't5')}", "threshold": "-1", "num_captions": "2",
               "caption_tokens": "4", "beams": "1"}
    return "lens:" + ",".join(f"{k}={v}" for k, v in options.items())


def test_lens_classifies_the_scenes_shapes(capsys, tmp_path: Path, lens: str) -> None:  # noqa: ANN001
    from harness.cli import main
    from harness.records import read_records
    from harness.result import read_result

    code = main(["-p", "harness_lens", "-p", "harness_genclass", "run", "--quiet", "--model", lens, "--task",
                 str(ROOT / "tasks" / "scenes_shapes_genclass.yaml"), "--limit", "4", "--output-dir",
                 str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    path = Path(captured.out.strip())
    doc = read_result(path)
    metrics = {m["name"]: m for m in doc["metrics"]} if isinstance(doc["metrics"], list) else doc["metrics"]
    assert {"generative_accuracy", "generative_mean_per_class_recall", "answer_match_share"} <= set(metrics)
    records = read_records(path, doc)
    assert len(records) == 4
    for record in records:
        fields = record["fields"]
        assert fields["decided"] in ("matched", "ranked") and isinstance(fields["answers"], str)
        assert fields["prompts"].startswith("What shape is in the image? Answer with one of: ")
        assert fields["details"]["prompt"].endswith(fields["prompts"] + "\nShort Answer:")
        assert {a["role"] for a in doc["auxiliary_models"]} >= {"lens captions", "lens reasoner"}
