"""Result schema validation and the markdown leaderboard."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import ResultError
from harness.leaderboard import collect, escape, render
from harness.result import dumps, validate_result

BASE = {
    "schema_version": 1,
    "harness_version": "0.1.0",
    "created_at": "2026-11-23T12:00:00Z",
    "plugins": [{"name": "zeroshot", "module": "harness_zeroshot", "distribution": "harness", "version": "0.1.0"}],
    "model": {"name": "openclip:ViT-B-32/laion2b_s34b_b79k", "plugin": "openclip", "modalities": ["image", "text"],
              "embed_dim": 512, "revision": "laion2b_s34b_b79k", "fingerprint": "ab" * 32, "n_parameters": 151_277_313},
    "task": {"name": "cifar10_zeroshot", "version": 1, "kind": "zeroshot_classification",
             "spec_sha256": "cd" * 32, "plugin": "tasks"},
    "dataset": {"source": "path", "id": "/data/cifar10", "revision": None, "fingerprint": "f00d", "split": "test"},
    "n_samples": {"total": 10000, "evaluated": 10000, "partial": False},
    "seed": 0,
    "execution": {"device": "cpu", "dtype": "fp32", "batch_size": 32},
    "metrics": {"accuracy": {"value": 0.9371, "ci95": [0.9322, 0.9417], "interval": "wilson",
                             "higher_is_better": True, "unit": "fraction"}},
    "main_score": {"name": "accuracy", "value": 0.9371},
    "cost": {"wall_time_s": 12.5, "images_per_s": 800.0, "phases_s": {"extract": 10.0}},
}


def result(model: str | None = None, task: str | None = None, value: float = 0.9371, partial: bool = False) -> dict:
    doc = copy.deepcopy(BASE)
    if model:
        doc["model"]["name"] = model
    if task:
        doc["task"]["name"] = task
    doc["metrics"]["accuracy"]["value"] = doc["main_score"]["value"] = value
    if partial:
        doc["n_samples"] = {"total": 10000, "evaluated": 100, "partial": True}
    return doc


def test_reference_document_validates() -> None:
    validate_result(result())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("seed"), r"<top>: 'seed' is a required property"),
        (lambda d: d.update(extra=1), r"Additional properties are not allowed \('extra'"),
        (lambda d: d["metrics"]["accuracy"].update(value="high"), r"metrics.accuracy.value: 'high' is not of type"),
        (lambda d: d.update(schema_version=99), r"schema_version 99 not supported"),
        (lambda d: d["main_score"].update(value=0.5), r"main_score 'accuracy' does not match"),
        (lambda d: d["n_samples"].update(evaluated=5), r"n_samples inconsistent"),
        (lambda d: d["task"].update(spec_sha256="xyz"), r"task.spec_sha256: 'xyz' does not match"),
    ],
)
def test_schema_violations_are_one_line(mutate, message: str) -> None:  # noqa: ANN001
    doc = result()
    mutate(doc)
    with pytest.raises(ResultError, match=message) as info:
        validate_result(doc, "r.json")
    assert "\n" not in str(info.value)


def write_results(root: Path, docs: list[dict]) -> Path:
    for i, doc in enumerate(docs):
        path = root / f"m{i}" / f"{doc['task']['name']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dumps(doc))
    return root


def test_render_is_deterministic_ranked_escaped_and_flags_partial(tmp_path: Path) -> None:
    docs = [
        result("weak|model_[x]", value=0.5),
        result("strong", value=0.9),
        result("strong", task="imagenet1k_zeroshot", value=0.7, partial=True),
    ]
    text = render(collect(write_results(tmp_path, docs)))
    assert text == render(collect(tmp_path))
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| model")
    assert "cifar10_zeroshot v1<br>accuracy" in rows[0] and "imagenet1k_zeroshot v1<br>accuracy" in rows[0]
    assert rows[1].startswith("| strong ") and "70.0 [93.2, 94.2] †" in rows[1]
    assert rows[2].startswith(r"| weak\|model\_\[x\] ") and "—" in rows[2]
    assert "† partial run" in text


def test_latest_result_wins_per_model_and_task(tmp_path: Path) -> None:
    old, new = result(value=0.1), result(value=0.8)
    new["created_at"] = "2026-11-24T00:00:00Z"
    text = render(collect(write_results(tmp_path, [new, old])))
    assert "80.0" in text and "10.0" not in text


def test_several_seeds_show_mean_and_spread_and_rank_by_the_mean(tmp_path: Path) -> None:
    seeds = [result("seeded", value=v) for v in (0.6, 0.7, 0.8)]
    for seed, doc in enumerate(seeds):
        doc["seed"] = seed
    stale = result("seeded", value=0.0)  # an older run of seed 2: replaced by the latest
    stale["seed"], stale["created_at"] = 2, "2026-11-01T00:00:00Z"
    text = render(collect(write_results(tmp_path, [*seeds, stale, result("single", value=0.75)])))
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[1].startswith("| single ") and "75.0 [93.2, 94.2]" in rows[1]
    assert rows[2].startswith("| seeded ") and "70.0 ± 10.0 (3 seeds)" in rows[2]
    assert "4 results from 2 models" in text


def test_json_writer_keeps_seeds_side_by_side(tmp_path: Path) -> None:
    from harness_writers import write_json

    first, second = result(), result()
    second["seed"] = 3
    assert write_json(first, tmp_path).name == "cifar10_zeroshot.json"
    assert write_json(second, tmp_path).name == "cifar10_zeroshot.seed-3.json"


def test_escape() -> None:
    assert escape("a|b*c_d") == r"a\|b\*c\_d"


def test_leaderboard_cli_refuses_invalid_file_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    results = write_results(tmp_path / "results", [result()])
    bad = result(model="bad")
    bad.pop("cost")
    (results / "bad.json").write_text(json.dumps(bad))
    out = tmp_path / "LEADERBOARD.md"
    assert main(["leaderboard", str(results), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("harness: error: ") and "bad.json" in err and "'cost' is a required property" in err
    assert len(err.splitlines()) == 1
    assert not out.exists()
    (results / "bad.json").write_text("{not json")
    assert main(["leaderboard", str(results), "-o", str(out)]) == 2
    assert "not readable JSON" in capsys.readouterr().err


def test_validate_command_reports_every_broken_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    results = write_results(tmp_path, [result(), result(model="x")])
    (tmp_path / "m1" / "cifar10_zeroshot.json").write_text("[]")
    assert main(["validate", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "ok\t" in captured.out and "FAIL\t" in captured.err and "top level is list" in captured.err
