"""The counting plugin: the two parsers on crafted strings (expected values written by hand from the
rules), the metrics, the encoder count probe (real MobileNetV2 against a random-init one and a colour
histogram), generative counting and identification end to end offline with ``harness rescore``
switching parsers, the GVTBench / TallyQA / CountBenchQA builders, and bad input as one line."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("harness_counting") is None:  # until pyproject.toml lists the package
    sys.path.insert(0, str(ROOT / "plugins"))

from harness import DataError, SpecError  # noqa: E402
from harness.cli import main  # noqa: E402
from harness.testing import check_task_kind, task_context, tiny_model  # noqa: E402
from harness_counting import harness_register_metrics, harness_register_task_kinds  # noqa: E402
from harness_counting import data as counting_data  # noqa: E402
from harness_counting import metrics as counting_metrics  # noqa: E402
from harness_counting.parsing import (count_bin, count_gvt, count_strict, first_sentence, objects_bin,  # noqa: E402
                                      yesno_gvt_correct, yesno_strict)

TASKS = ROOT / "tasks"
COLORHIST = ROOT / "examples" / "harness-colorhist"
PLUGIN = "harness_counting"
TEST_PLUGIN = "harness_counting_test_models"
TEST_PLUGIN_SOURCE = '''
import hashlib

from harness import Generation, ModelSpec, hookimpl
from harness.testing import tiny_model_spec

ANSWERS = {}


def key(image):
    return hashlib.sha256(image.convert("RGB").tobytes()).hexdigest()


class Oracle:
    """Answers from a table of image pixels (a stand-in for a model that counts); 'no idea' otherwise."""

    def generate(self, requests):
        return [Generation(ANSWERS.get(key(r.images[0]), "no idea"), n_tokens=3) for r in requests]

    def provenance(self):
        return {"revision": None, "fingerprint": "2" * 64, "n_parameters": 0}


def oracle(spec, ctx):
    return Oracle()


@hookimpl
def harness_register_models():
    return [tiny_model_spec("tiny:gen", {"generate"}),
            ModelSpec("oracle:count", "harness_counting_test_models:oracle", frozenset({"generate"}), code_version="1")]
'''

# -- the parsers: expected values written by hand from the rules -------------------------------------
# (answer, strict count, GVT count). Strict: number words 0-20, no/none and digit runs as whole words,
# any case, the first one wins; a decimal is no count. GVT: case-sensitive substring replacement of
# none..eight and its typo 'nive' in dictionary order, then the first \d+, else 0.
COUNTS = [
    ("nine", 9, 0),                   # GVT's dictionary says 'nive': nine never maps
    ("Nine dogs", 9, 0),              # strict ignores case; GVT is case-sensitive (and has no nine anyway)
    ("someone", None, 1),             # GVT replaces inside words: 'some1'
    ("weight", None, 8),              # 'w8'
    ("I know there is one", 1, 1),    # 'know' holds no number word either way
    ("no", 0, 0),                     # strict: no = 0; GVT: no digit -> 0
    ("none", 0, 0),                   # GVT: 'none' -> '0'
    ("Not sure", None, 0),            # 'not' is not 'no'; GVT: no digit -> 0
    ("twelve", 12, 0),                # strict knows up to twenty; GVT stops at eight
    ("3 dogs", 3, 3),
    ("three or four", 3, 3),          # the first count wins
    ("2.5", None, 2),                 # strict: a decimal is not a count; GVT: first \d+ is '2'
    ("", None, 0),
]


@pytest.mark.parametrize("answer, strict, gvt", COUNTS, ids=[repr(c[0]) for c in COUNTS])
def test_count_parsers_on_crafted_strings(answer: str, strict: int | None, gvt: int) -> None:
    assert count_strict(answer) == strict
    assert count_gvt(answer) == gvt


# (answer, strict yes/no from the first word, GVT correct against "Yes.", GVT correct against "No.").
YESNO = [
    ("nine", None, False, False),
    ("Nine dogs", None, False, False),
    ("someone", None, False, False),
    ("weight", None, False, False),
    ("I know there is one", None, False, True),   # 'know' holds 'no'
    ("no", "no", False, True),
    ("none", None, False, True),                  # first word 'none' is not 'no'; substring 'no' is
    ("Not sure", None, False, True),              # 'not' says no to GVT
    ("twelve", None, False, False),
    ("3 dogs", None, False, False),
    ("three or four", None, False, False),
    ("2.5", None, False, False),
    ("", None, False, False),
    ("Yes, there is one.", "yes", True, False),
    ("YES.", "yes", True, False),
    ("yes and no", "yes", True, True),            # both words: always right for GVT
    ("Snow.", None, False, True),
]


@pytest.mark.parametrize("answer, strict, gvt_yes, gvt_no", YESNO, ids=[repr(c[0]) for c in YESNO])
def test_yesno_parsers_on_crafted_strings(answer: str, strict: str | None, gvt_yes: bool, gvt_no: bool) -> None:
    assert yesno_strict(answer) == strict
    assert yesno_gvt_correct(answer, "Yes.") is gvt_yes
    assert yesno_gvt_correct(answer, "No.") is gvt_no


def test_first_sentence_is_gvt_postprocess_and_the_bins_are_gvts() -> None:
    # periods split, '\n' is deleted (not a space), one leading period goes, '.' is appended
    assert first_sentence("2.5") == "2."
    assert first_sentence("Three. Maybe four.") == "Three."
    assert first_sentence("3\ndogs") == "3dogs."
    assert first_sentence(". two") == "two."
    assert first_sentence("   ") == "" and first_sentence("") == ""
    assert first_sentence("..3") == "."
    assert [count_bin(c) for c in (0, 2, 3, 11, 12)] == ["0-2", "0-2", "3-5", "9-11", "12-14"]
    assert [objects_bin(n) for n in (1, 9, 10, 19, 20, -1)] == ["<10", "<10", "10-19", "10-19", ">=20", "unknown"]


def test_metrics_round_numbers_leave_out_unanswered_and_rmse_is_the_root_of_the_mean() -> None:
    specs = {spec.name: spec for spec in harness_register_metrics()}
    assert specs["count_rmse"].reduce == "none" and specs["count_mae"].unit == "raw"
    assert not specs["count_mae"].higher_is_better and specs["count_exact"].unit == "fraction"
    assert specs["count_exact"].breakdown == ("count_bin",) and specs["yesno_accuracy"].breakdown == ("objects_bin",)
    # numbers (the probe): rounded half up, never below 0; GVT's parser has nothing to read
    numbers, targets = np.array([2.5, 2.49, -0.7, 7.0]), np.array([3, 2, 0, 4])
    assert counting_metrics.count_exact(numbers, targets).tolist() == [1, 1, 1, 0]
    assert counting_metrics.count_within1(numbers, targets).tolist() == [1, 1, 1, 0]
    assert counting_metrics.count_mae(numbers, targets).tolist() == [0, 0, 0, 3]
    assert counting_metrics.count_rmse(numbers, targets) == pytest.approx(np.sqrt(9 / 4))
    assert counting_metrics.count_exact_gvt(numbers, targets) is None
    # text: strict leaves 'someone' out of MAE/RMSE (no count) and scores it wrong; GVT reads 1
    texts = np.array(["Three.", "someone.", "nine.", "2."], dtype=object)
    truth = np.array([3, 1, 9, 4])
    assert counting_metrics.count_exact(texts, truth).tolist() == [1, 0, 1, 0]
    assert counting_metrics.count_exact_gvt(texts, truth).tolist() == [0, 1, 0, 0]  # 'Three' is capitalised
    mae = counting_metrics.count_mae(texts, truth)
    assert mae.mask.tolist() == [False, True, False, False] and mae.sum() == 2
    assert counting_metrics.count_mae_gvt(texts, truth).tolist() == [3, 0, 9, 2]
    assert counting_metrics.count_rmse(texts, truth) == pytest.approx(np.sqrt(4 / 3))
    assert counting_metrics.count_rmse_gvt(texts, truth) == pytest.approx(np.sqrt((9 + 81 + 4) / 4))
    assert counting_metrics.count_answered(texts).tolist() == [1, 0, 1, 1]
    answers, gold = np.array(["Yes.", "I know.", "no", "Sure"], dtype=object), np.array(["Yes.", "No.", "No.", "Yes."])
    assert counting_metrics.yesno_accuracy(answers, gold).tolist() == [1, 0, 1, 0]
    assert counting_metrics.yesno_accuracy_gvt(answers, gold).tolist() == [1, 1, 1, 0]


# -- the count probe ------------------------------------------------------------------------------------
def _probe_rows(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 6, n)
    images = []
    for c in counts:  # c white squares on black: the tiny model's pixel features see how many
        pixels = np.zeros((16, 16, 3), dtype=np.uint8)
        for k in range(int(c)):
            pixels[2 * k:2 * k + 2, 2:6] = 255
        images.append(Image.fromarray(pixels))
    return {"image": images, "count": counts.tolist(), "per_class": [[int(c), 0] for c in counts]}


def test_probe_kind_fits_on_train_and_refuses_bad_specs() -> None:
    kinds = {spec.name: spec for spec in harness_register_task_kinds()}
    spec = kinds["count_probe"]
    metrics = [m for m in harness_register_metrics() if m.name in ("count_exact", "count_mae", "count_rmse")]
    model = tiny_model({"image_embed"}, dim=32)
    for method in ("ridge", "logistic"):
        ctx = task_context(_probe_rows(40, 1), {"image": "image", "count": "count"},
                           params={"train_split": "train", "method": method}, model=model,
                           splits={"train": _probe_rows(120, 0)}, kind=spec)
        checked = check_task_kind(spec, ctx, metrics)
        outputs = checked["outputs"]
        assert outputs["predictions"].dtype == np.float64 and outputs["targets"].dtype == np.int64
        assert set(outputs["count_bin"]) <= {"0-2", "3-5"}
        assert checked["metrics"]["count_exact"]["value"] > 0.3  # chance is about 1/6
    # a list column needs class_index; the evaluated split cannot be the train split; counts are integers
    columns = {"image": "image", "count": "per_class"}
    ctx = task_context(_probe_rows(8, 1), columns, params={"train_split": "train"}, model=model,
                       splits={"train": _probe_rows(8, 0)}, kind=spec)
    with pytest.raises(SpecError, match="set params.class_index"):
        check_task_kind(spec, ctx)
    ctx = task_context(_probe_rows(8, 1), columns, params={"train_split": "train", "class_index": 0}, model=model,
                       splits={"train": _probe_rows(30, 0)}, kind=spec)
    assert check_task_kind(spec, ctx)["outputs"]["targets"].tolist() == _probe_rows(8, 1)["count"]
    ctx = task_context(_probe_rows(8, 1), {"image": "image", "count": "count"}, params={"train_split": "test"},
                       model=model, kind=spec)
    with pytest.raises(SpecError, match="is the evaluated split"):
        check_task_kind(spec, ctx)
    bad = {**_probe_rows(4, 1), "count": [1, 2.5, 3, 0]}
    ctx = task_context(bad, {"image": "image", "count": "count"}, params={"train_split": "train"}, model=model,
                       splits={"train": _probe_rows(8, 0)}, kind=spec)
    with pytest.raises(DataError, match="row 1 has count 2.5, not a non-negative integer"):
        check_task_kind(spec, ctx)


# -- through the command line ---------------------------------------------------------------------------
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
    code = main(["-p", PLUGIN, "-p", TEST_PLUGIN, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run(capsys, tmp_path: Path, task: Path | str, *extra: str, model: str = "tiny:gen"):  # noqa: ANN001, ANN201
    return cli(capsys, "run", "--quiet", "--model", model, "--task", str(task), "--output-dir", str(tmp_path / "out"),
               "--cache-dir", str(tmp_path / "cache"), *extra)


def records_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.with_name(path.stem + ".samples.jsonl").read_text().splitlines()]


#: The probe measurement, small: circles and stars of random colours, 1 to 12 per 96 px scene; the
#: target is the number of stars (0 to 12), which a colour histogram sees only through the area covered.
PROBE_SPEC = {
    "name": "counting_probe_small", "version": 1, "kind": "count_probe",
    "dataset": {"builder": "scenes", "split": "test", "config": {
        "n": {"train": 48, "test": 32}, "image_size": 96, "min_objects": 1, "max_objects": 12,
        "shapes": ["circle", "star"], "seed": 0}},
    "columns": {"image": "image", "count": "counts"},
    "params": {"train_split": "train", "class_index": 1},
    "metrics": ["count_mae", "count_exact", "count_within1", "count_rmse"], "main_score": "count_mae",
}


def test_probe_ranks_pretrained_mobilenet_above_random_init_and_colour_histogram(capsys, tmp_path: Path,
                                                                                monkeypatch) -> None:  # noqa: ANN001
    """The colour-histogram baseline is the example plugin's ``colorhist:rgb-8`` (examples/harness-colorhist,
    put on sys.path and loaded with -p): a joint RGB histogram of a 64x64 resize."""
    monkeypatch.syspath_prepend(str(COLORHIST))
    spec = tmp_path / "counting_probe_small.yaml"
    spec.write_text(json.dumps(PROBE_SPEC))
    names = ("torchvision:mobilenet_v2", "torchvision:mobilenet_v2/random", "colorhist:rgb-8")
    args = ["-p", PLUGIN, "-p", "harness_colorhist", "run", "--quiet", "--task", str(spec),
            "--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    for name in names:
        args += ["--model", name]
    try:
        code = main(args)
    finally:  # the example package was imported from its source folder for this test only
        for module in [m for m in sys.modules if m == "harness_colorhist" or m.startswith("harness_colorhist.")]:
            del sys.modules[module]
    out, err = capsys.readouterr()
    assert code == 0, err
    docs = {json.loads(Path(p).read_text())["model"]["name"]: json.loads(Path(p).read_text()) for p in out.split()}
    mae = {name: docs[name]["metrics"]["count_mae"] for name in names}
    pretrained, random_init, histogram = (mae[name] for name in names)
    assert docs[names[0]]["main_score"]["name"] == "count_mae" and pretrained["higher_is_better"] is False
    # lower is better: the pretrained network's whole interval lies below both others'
    assert pretrained["ci95"][1] < random_init["ci95"][0], mae
    assert pretrained["ci95"][1] < histogram["ci95"][0], mae
    exact = {name: docs[name]["metrics"]["count_exact"]["value"] for name in names}
    assert exact[names[0]] > max(exact[names[1]], exact[names[2]]), exact
    assert set(docs[names[0]]["metrics"]["count_exact"]["breakdown"]["count_bin"]) <= {"0-2", "3-5", "6-8", "9-11",
                                                                                     "12-14"}


# -- generative counting and identification ---------------------------------------------------------------
def test_scenes_counting_questions_are_deterministic_varied_and_span_zero_to_ten() -> None:
    from harness_scenes.counting import build

    first, again = build({"n": 120, "seed": 0}, "test"), build({"n": 120, "seed": 0}, "test")
    assert first["question"] == again["question"] and first._fingerprint == again._fingerprint
    assert build({"n": 30, "seed": 0}, "test")["question"] == first["question"][:30]  # prefix-stable in n
    assert len(set(first["family"])) == 3 and len({q.split()[0] for q in first["question"]}) >= 3
    assert min(first["count"]) == 0 and max(first["count"]) >= 8
    assert all(a == str(c) for a, c in zip(first["answer"], first["count"]))
    assert all(1 <= n <= 10 for n in first["n_objects"])
    identify = build({"n": 60, "seed": 0, "task": "identify"}, "test")
    assert set(identify["answer"]) == {"Yes.", "No."}
    assert all((a == "Yes.") == (c > 0) for a, c in zip(identify["answer"], identify["count"]))
    assert identify._fingerprint != build({"n": 60, "seed": 0}, "test")._fingerprint
    with pytest.raises(ValueError, match="task must be one of count, identify"):
        build({"task": "colour"}, "test")


NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve")


def test_generative_counting_end_to_end_and_rescore_switches_the_parser(capsys, tmp_path: Path,  # noqa: ANN001
                                                                        models) -> None:  # noqa: ANN001
    code, out, err = run(capsys, tmp_path, TASKS / "counting_scenes_qa.yaml")
    assert code == 0, err
    path = Path(out.split()[0])
    doc = json.loads(path.read_text())
    assert doc["task"]["kind"] == "counting_qa" and doc["n_samples"]["evaluated"] == 200
    assert cli(capsys, "validate", str(path))[0] == 0
    records = records_of(path)
    assert set(records[0]["fields"]) == {"prompts", "responses", "predictions", "targets", "n_objects", "count_bin"}
    from harness_scenes.counting import build

    truth = build({"n": 200, "max_objects": 10, "seed": 0}, "test")
    assert [r["fields"]["prompts"] for r in records] == truth["question"]  # GVTBench: the question is the prompt
    assert [r["fields"]["targets"] for r in records] == truth["count"]
    # an oracle that says the true count in words, in a sentence followed by another
    models.ANSWERS.update({models.key(row["image"]): f"i count {NUMBER_WORDS[row['count']]}. Or more."
                           for row in truth})
    code, out, err = run(capsys, tmp_path, TASKS / "counting_scenes_qa.yaml", model="oracle:count")
    assert code == 0, err
    result = out.split()[0]
    doc = json.loads(Path(result).read_text())
    counts = np.array(truth["count"])
    assert doc["metrics"]["count_exact"]["value"] == 1.0 and doc["metrics"]["count_rmse"]["value"] == 0.0
    # GVT's parser: 'nine' never maps, nothing from ten on either (their answers read 0)
    assert doc["metrics"]["count_exact_gvt"]["value"] == pytest.approx(np.mean(counts <= 8))
    assert doc["metrics"]["count_mae_gvt"]["value"] == pytest.approx(np.mean(np.where(counts <= 8, 0, counts)))
    assert records_of(Path(result))[0]["fields"]["predictions"].endswith(".") and \
        "Or more" not in records_of(Path(result))[0]["fields"]["predictions"]
    bins = doc["metrics"]["count_exact_gvt"]["breakdown"]["count_bin"]
    assert bins["0-2"]["value"] == 1.0 and bins["9-11"]["value"] == 0.0
    # the other mode from the records alone: the rescored file names GVT's metrics and its source
    code, out, err = cli(capsys, "rescore", result, "--output-dir", str(tmp_path / "rescored"), "--metric",
                         "count_exact_gvt", "--metric", "count_rmse_gvt")
    assert code == 0, err
    again = json.loads(Path(out.split()[0]).read_text())
    assert again["main_score"]["name"] == "count_exact_gvt" and again["rescored"]["from"] == Path(result).name
    assert again["main_score"]["value"] == pytest.approx(np.mean(counts <= 8))
    assert again["metrics"]["count_rmse_gvt"]["value"] == pytest.approx(
        np.sqrt(np.mean(np.where(counts <= 8, 0, counts) ** 2)))
    assert cli(capsys, "validate", out.split()[0])[0] == 0


def test_generative_identification_end_to_end(capsys, tmp_path: Path, models) -> None:  # noqa: ANN001
    from harness_scenes.counting import build

    truth = build({"n": 200, "max_objects": 10, "seed": 0, "task": "identify"}, "test")
    # yes/no in words GVT's substring test misreads: 'Not that I know' is a no; 'Yes, I know' is both
    models.ANSWERS.update({models.key(row["image"]): "Yes, I know." if row["answer"] == "Yes." else "Not that I know."
                           for row in truth})
    code, out, err = run(capsys, tmp_path, TASKS / "counting_scenes_identification.yaml", model="oracle:count")
    assert code == 0, err
    doc = json.loads(Path(out.split()[0]).read_text())
    yes = np.mean(np.array(truth["answer"]) == "Yes.")
    assert doc["metrics"]["yesno_accuracy"]["value"] == pytest.approx(yes)  # 'Not' is not 'no'
    assert doc["metrics"]["yesno_accuracy_gvt"]["value"] == 1.0
    assert set(doc["metrics"]["yesno_accuracy"]["breakdown"]["objects_bin"]) == {"<10", "10-19"}
    assert records_of(Path(out.split()[0]))[0]["fields"]["targets"] in ("Yes.", "No.")


# -- GVTBench, TallyQA and CountBenchQA files --------------------------------------------------------------
def write_gvtbench(root: Path, records: list[dict] | None = None, missing: int | None = None) -> dict:
    """A GVTBench-format file and a COCO-style val2017 folder ({image_id:012}.jpg)."""
    images = root / "val2017"
    images.mkdir(parents=True, exist_ok=True)
    records = records if records is not None else [
        {"image_id": 42102, "text_in": "How many people are there in the image?", "text_out": "1", "n_obj_exist": 3},
        {"image_id": 574425, "text_in": "How many buses are there in the image?", "text_out": "2", "n_obj_exist": 2},
        {"image_id": 74209, "text_in": "How many bottles are there in the image?", "text_out": "3", "n_obj_exist": 21},
    ]
    for i, record in enumerate(records):
        if isinstance(record.get("image_id"), int) and record["image_id"] != missing:
            Image.new("RGB", (24, 24), (40 * i, 90, 200)).save(images / f"{record['image_id']:012d}.jpg")
    path = root / "coco_oc.json"
    path.write_text(json.dumps(records))
    return {"records": str(path), "images": str(images), "task": "count"}


def write_spec(path: Path, builder: str, config: dict, kind: str = "counting_qa") -> Path:
    answer = "count" if kind == "counting_qa" else "answer"
    spec = {"name": path.stem, "version": 1, "kind": kind, "dataset": {"builder": builder, "config": config,
                                                                       "split": "test"},
            "columns": {"image": "image", "question": "question", "answer": answer},
            "metrics": ["count_exact", "count_exact_gvt"] if kind == "counting_qa" else ["yesno_accuracy"]}
    spec["main_score"] = spec["metrics"][0]
    path.write_text(json.dumps(spec))
    return path


def test_gvtbench_builder_reads_the_format_and_its_fingerprint_covers_records_and_images(tmp_path: Path) -> None:
    config = write_gvtbench(tmp_path / "coco")
    data = counting_data.build_gvtbench(config, "test")
    assert data["count"] == [1, 2, 3] and data["n_objects"] == [3, 2, 21] and data["answer"] == ["1", "2", "3"]
    assert data["image_id"] == ["42102", "574425", "74209"] and data[0]["image"].size == (24, 24)
    sha = hashlib.sha256(Path(config["records"]).read_bytes()).hexdigest()
    assert data._fingerprint.startswith(f"r{sha[:32]}i") and len(data._fingerprint) == 64
    # another image under the same name, or another records file, is another dataset
    Image.new("RGB", (24, 24), (1, 2, 3)).save(Path(config["images"]) / "000000042102.jpg")
    changed = counting_data.build_gvtbench(config, "test")._fingerprint
    assert changed != data._fingerprint and changed[:34] == data._fingerprint[:34]
    with pytest.raises(DataError, match="has sha256 .* the spec expects"):
        counting_data.build_gvtbench({**config, "sha256": "0" * 64}, "test")
    # VCR: string image ids are paths under vcr1images; identification answers are Yes./No.
    vcr = tmp_path / "vcr1images" / "movieclips_A"
    vcr.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(vcr / "x@1.jpg")
    (tmp_path / "vcr_mci.json").write_text(json.dumps([{"image_id": "movieclips_A/x@1.jpg", "text_out": "No.",
                                                         "text_in": "Does stopsigns exis in the image?",
                                                         "n_obj_exist": 12}]))
    mci = counting_data.build_gvtbench({"root": str(tmp_path), "records": "vcr_mci.json", "images": "vcr1images",
                                        "task": "identify"}, "test")
    assert mci["answer"] == ["No."] and "count" not in mci.column_names


def one_line_error(code: int, err: str, message: str, out: Path) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("harness: error: "), err
    assert message in lines[0], lines[0]
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))


def test_gvtbench_bad_input_is_one_line_with_nothing_written(capsys, tmp_path: Path, models) -> None:  # noqa: ANN001
    out = tmp_path / "out"
    good = write_gvtbench(tmp_path / "good")
    code, stdout, err = run(capsys, tmp_path, write_spec(tmp_path / "good_oc.yaml", "gvtbench", good))
    assert code == 0, err
    doc = json.loads(Path(stdout.split()[0]).read_text())
    assert doc["dataset"]["fingerprint"].startswith("r" + hashlib.sha256(Path(good["records"]).read_bytes())
                                                   .hexdigest()[:32])
    for path in out.rglob("*"):
        if path.is_file():
            path.unlink()
    # a record without n_obj_exist
    records = json.loads(Path(good["records"]).read_text())
    del records[1]["n_obj_exist"]
    config = write_gvtbench(tmp_path / "no_n", records)
    code, _, err = run(capsys, tmp_path, write_spec(tmp_path / "no_n.yaml", "gvtbench", config))
    one_line_error(code, err, "record 1 (image_id 574425) has no 'n_obj_exist'", out)
    # an image id with no file
    config = write_gvtbench(tmp_path / "no_image", missing=74209)
    code, _, err = run(capsys, tmp_path, write_spec(tmp_path / "no_image.yaml", "gvtbench", config))
    one_line_error(code, err, "1 of 3 records have no image file", out)
    assert "first: record 2 (image_id '74209'), image '000000074209.jpg'" in err
    # a count that is not an integer
    records = json.loads(Path(good["records"]).read_text())
    records[2]["text_out"] = "2.5"
    config = write_gvtbench(tmp_path / "not_int", records)
    code, _, err = run(capsys, tmp_path, write_spec(tmp_path / "not_int.yaml", "gvtbench", config))
    one_line_error(code, err, "record 2 (image_id 74209): text_out '2.5' is not an integer count", out)
    # an identification file read as counts, and an unset variable
    code, _, err = run(capsys, tmp_path, write_spec(tmp_path / "mci.yaml", "gvtbench", {**good, "task": "identify"},
                                                    kind="identification_qa"))
    one_line_error(code, err, "text_out '1' is not yes or no", out)
    code, _, err = run(capsys, tmp_path, write_spec(tmp_path / "unset.yaml", "gvtbench",
                                                    {**good, "records": "${HARNESS_TEST_UNSET_ROOT}/x.json"}))
    one_line_error(code, err, "environment variable HARNESS_TEST_UNSET_ROOT is not set", out)


def test_tallyqa_subsets_and_countbenchqa_parquet(tmp_path: Path) -> None:
    (tmp_path / "VG_100K_2").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "VG_100K_2" / "2410408.jpg")
    entries = [{"answer": 4, "data_source": "imported_genome", "image": "VG_100K_2/2410408.jpg", "image_id": 92410408,
                "issimple": False, "question": "How many headlights does the black bus have?", "question_id": 3},
               {"answer": 0, "data_source": "amt", "image": "VG_100K_2/2410408.jpg", "image_id": 92410408,
                "issimple": True, "question": "How many cats are there?", "question_id": 4}]
    (tmp_path / "test.json").write_text(json.dumps(entries))
    config = {"root": str(tmp_path), "records": "test.json", "images": "."}
    assert counting_data.build_tallyqa({**config, "subset": "complex"}, "test")["count"] == [4]
    simple = counting_data.build_tallyqa({**config, "subset": "simple"}, "test")
    assert simple["id"] == ["4"] and simple["question"] == ["How many cats are there?"]
    assert len(counting_data.build_tallyqa(config, "test")) == 2
    entries[0]["answer"] = "four"
    (tmp_path / "test.json").write_text(json.dumps(entries))
    with pytest.raises(DataError, match="answer 'four' is not an integer count"):
        counting_data.build_tallyqa(config, "test")
    # CountBenchQA as published: parquet with the image bytes in the file
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    Image.new("RGB", (10, 10), (200, 0, 0)).save(buffer, format="PNG")
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"image": [{"bytes": buffer.getvalue(), "path": None}], "text": ["three red apples"],
                             "question": ["How many apples are there?"], "number": pa.array([3], pa.int32())}),
                   tmp_path / "data" / "test-00000-of-00001.parquet")
    bench = counting_data.build_countbenchqa({"root": str(tmp_path), "records": "data"}, "test")
    assert bench["count"] == [3] and bench[0]["image"].size == (10, 10) and bench._fingerprint.startswith("r")


def test_shipped_counting_specs_validate(capsys) -> None:  # noqa: ANN001
    specs = sorted(str(p) for p in TASKS.glob("counting_*.yaml"))
    assert len(specs) >= 12
    code = main(["-p", PLUGIN, "validate", *specs])
    out = capsys.readouterr().out
    assert code == 0 and out.count("ok\t") == len(specs), out
