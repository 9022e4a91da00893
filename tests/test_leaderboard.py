"""Result schema validation, per-sample records and the markdown leaderboard."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.cli import main
from harness.errors import ResultError
from harness.intervals import reduce_scores
from harness.leaderboard import MARKER, collect, escape, latest_per_seed, render
from harness.pairedtest import paired_p_value, sign_flip_p_value
from harness.records import build_records, read_records, records_digest, records_path, records_text
from harness.result import dumps, read_result, validate_result

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

#: A schema v5 result without records (``scored`` fills in metrics and records).
V5 = {
    "schema_version": 5,
    "harness_version": "0.1.0",
    "created_at": "2026-12-01T00:00:00Z",
    "plugins": [{"name": "metrics", "module": "harness_metrics", "distribution": "harness", "version": "0.1.0"}],
    "model": {"name": "torchvision:mobilenet_v2", "plugin": "torchvision", "capabilities": ["image_embed"],
              "revision": None, "fingerprint": "ab" * 32, "code_fingerprint": "sha256:" + "01" * 32,
              "n_parameters": 3_504_872, "embed_dim": 1280},
    "task": {"name": "cls_a", "version": 1, "kind": "classification", "spec_sha256": "cd" * 32, "plugin": "tasks"},
    "dataset": {"source": "builder", "id": "scenes", "revision": "1", "fingerprint": "f00d", "split": "test"},
    "n_samples": {"total": 40, "evaluated": 40, "partial": False},
    "seed": 0,
    "execution": {"device": "cpu", "dtype": "fp32", "dtype_mode": "autocast", "batch_size": 32,
                  "batch_size_requested": 32, "num_workers": None, "world_size": 1,
                  "determinism": {"tf32_matmul": False, "tf32_cudnn": False, "cudnn_deterministic": False,
                                  "cudnn_benchmark": False, "attention": "none", "check": None}},
    "cache": {"enabled": True, "image_hits": 0, "image_misses": 40, "text_hits": 0, "text_misses": 0},
    "metrics": {"accuracy": {"value": 0.5, "ci95": [0.4, 0.6], "interval": "bootstrap", "higher_is_better": True,
                             "unit": "fraction"}},
    "main_score": {"name": "accuracy", "value": 0.5},
    "records": None,
    "cost": {"wall_time_s": 1.0, "images_per_s": None, "phases_s": {"load_model": 0.1, "load_data": 0.1,
                                                                    "extract": 0.1, "metrics": 0.1},
             "peak_rss_mb": 100.0, "peak_cuda_mb": None},
    "auxiliary_models": [],
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


def scored(model: str, task: str, scores: Any, *, kind: str = "classification", metric: str = "accuracy",
           unit: str = "fraction", higher: bool = True, ids: list[str] | None = None, fingerprint: str | None = None,
           spec: str | None = None, seed: int = 0, classes: Any = None, groups: Any = None,
           created_at: str = "2026-12-01T00:00:00Z", total: int | None = None) -> tuple[dict, str]:
    """A valid v5 result of ``model`` on ``task`` whose main metric is the reduction of ``scores``
    (a masked array leaves samples out), and its records text."""
    scores = np.ma.asarray(scores, dtype=np.float64)
    ids = ids if ids is not None else [f"s{i:04d}" for i in range(len(scores))]
    kept = ~np.ma.getmaskarray(scores)
    data = np.ma.getdata(scores)
    value = reduce_scores(data[kept], None if classes is None else np.asarray(classes)[kept])
    ci = [max(0.0, value - 0.05), min(1.0, value + 0.05)] if unit == "fraction" else [0.9 * value, 1.1 * value]
    doc = copy.deepcopy(V5)
    doc["model"]["name"] = model
    doc["model"]["fingerprint"] = fingerprint or hashlib.sha256(model.encode()).hexdigest()
    doc["task"].update(name=task, kind=kind, spec_sha256=spec or hashlib.sha256(task.encode()).hexdigest())
    doc["metrics"] = {metric: {"value": value, "ci95": ci, "interval": "bootstrap", "higher_is_better": higher,
                               "unit": unit}}
    doc["main_score"] = {"name": metric, "value": value}
    total = len(ids) if total is None else total
    doc["n_samples"] = {"total": total, "evaluated": len(ids), "partial": len(ids) < total}
    doc["seed"], doc["created_at"] = seed, created_at
    text = records_text(build_records(ids, {metric: scores}, {metric: classes} if classes is not None else {}, groups))
    doc["records"] = {"file": "", "sha256": records_digest(text), "n": text.count("\n")}
    return doc, text


def write_scored(root: Path, doc: dict, text: str | None) -> Path:
    """Write ``doc`` (and its records, when given) to ``root/<model>-<fingerprint>/<task>-<spec>[.seed-N].json``."""
    def safe(name: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:40]

    folder = root / f"{safe(doc['model']['name'])}-{doc['model']['fingerprint'][:8]}"
    seed = f".seed-{doc['seed']}" if doc["seed"] else ""
    path = folder / f"{safe(doc['task']['name'])}-{doc['task']['spec_sha256'][:8]}{seed}.json"
    folder.mkdir(parents=True, exist_ok=True)
    if text is not None:
        doc = copy.deepcopy(doc)
        doc["records"]["file"] = records_path(path).name
        records_path(path).write_text(text, encoding="utf-8")
    path.write_text(dumps(doc), encoding="utf-8")
    return path


def table_rows(text: str, kind: str) -> list[str]:
    """The table lines (header first, separator dropped) under ``## kind``."""
    section = text.split(f"## {kind}\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("|--")]


def test_reference_document_validates() -> None:
    validate_result(result())
    validate_result(copy.deepcopy(V5))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("seed"), r"<top>: 'seed' is a required property"),
        (lambda d: d.update(extra=1), r"Additional properties are not allowed \('extra'"),
        (lambda d: d["metrics"]["accuracy"].update(value="high"), r"metrics.accuracy.value: 'high' is not of type"),
        (lambda d: d.update(schema_version=99), r"schema_version 99 not supported"),
        (lambda d: d.update(schema_version=1.0), r"schema_version 1.0 not supported \(an integer"),
        (lambda d: d.update(schema_version=True), r"schema_version True not supported"),
        (lambda d: d["main_score"].update(value=0.5), r"main_score 'accuracy' does not match"),
        (lambda d: d["n_samples"].update(evaluated=5), r"n_samples inconsistent"),
        (lambda d: d["task"].update(spec_sha256="xyz"), r"task.spec_sha256: 'xyz' does not match"),
        (lambda d: d.update(created_at="2026-02-30T00:00:00Z"), r"created_at"),
        (lambda d: d.update(created_at="yesterday"), r"created_at"),
        (lambda d: d["model"].update(name="a\nb"), r"model.name: 'a\\nb' contains a control character"),
        (lambda d: d["metrics"]["accuracy"].update(value=float("nan")), r"metrics.accuracy.value: nan is not a finite"),
        (lambda d: d["metrics"]["accuracy"].update(ci95=[0.95, 0.93]), r"ci95: lower bound 0.95 is above"),
        (lambda d: d["metrics"]["accuracy"].update(ci95=[0.9, 7.5]), r"ci95\[1\]: 7.5 is outside \[0, 1\]"),
    ],
)
def test_schema_violations_are_one_line(mutate, message: str) -> None:  # noqa: ANN001
    doc = result()
    mutate(doc)
    with pytest.raises(ResultError, match=message) as info:
        validate_result(doc, "r.json")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("records"), r"'records' is a required property"),
        (lambda d: d.update(records={"file": "../x.jsonl", "sha256": "ab" * 32, "n": 1}), r"records.file"),
        (lambda d: d.update(records={"file": "x.jsonl", "sha256": "ab" * 32, "n": -1}), r"records.n"),
        (lambda d: d["metrics"]["accuracy"].update(value=7.5), r"metrics.accuracy.value: 7.5 is greater than"),
        (lambda d: d["task"].update(name="a|b"), r"task.name"),
        (lambda d: d["task"].update(kind="k\u2028"), r"task.kind"),
        (lambda d: d.update(created_at="2026-12-01 00:00:00"), r"created_at"),
        (lambda d: d["metrics"].update({"Bad": d["metrics"]["accuracy"]}), r"metric name 'Bad'"),
    ],
)
def test_v5_tightens_the_schema(mutate, message: str) -> None:  # noqa: ANN001
    doc = copy.deepcopy(V5)
    mutate(doc)
    with pytest.raises(ResultError, match=message) as info:
        validate_result(doc, "r.json")
    assert "\n" not in str(info.value)


def test_records_round_trip_and_reproduce_the_result(tmp_path: Path) -> None:
    scores = np.ma.MaskedArray([1.0, 0.0, 1.0, 1.0], mask=[False, False, True, False])
    records = build_records(["a", "b", "c", "d"], {"recall": scores}, {"recall": np.array([0, 1, 1, 1])},
                            np.array(["g1", "g1", "g2", "g2"]))
    assert records[2] == {"id": "c", "scores": {"recall": None}, "class": {"recall": 1}, "group": "g2"}
    text = records_text(records)
    assert text.splitlines()[0] == '{"class":{"recall":0},"group":"g1","id":"a","scores":{"recall":1.0}}'
    assert records_digest(text) == hashlib.sha256(text.encode()).hexdigest() and text.count("\n") == 4
    assert records_path(tmp_path / "t-1234.seed-2.json") == tmp_path / "t-1234.seed-2.samples.jsonl"
    doc, text = scored("m", "cls_a", scores, metric="recall", classes=np.array([0, 1, 1, 1]),
                       ids=["a", "b", "c", "d"])
    assert doc["metrics"]["recall"]["value"] == pytest.approx(0.75)  # class 0: 1.0, class 1: 0.5
    path = write_scored(tmp_path, doc, text)
    assert read_records(path, read_result(path)) == [json.loads(line) for line in text.splitlines()]
    assert read_records(path, {**doc, "records": None}) is None
    with pytest.raises(ValueError, match="3 scores for 4 samples"):
        build_records(["a", "b", "c", "d"], {"x": np.zeros(3)})
    with pytest.raises(ValueError, match="NaN or inf"):
        build_records(["a"], {"x": np.array([np.nan])})


def write_results(root: Path, docs: list[dict]) -> Path:
    """Write each result (only the result: a v5 document's ``records`` become null) under ``root``."""
    for i, doc in enumerate(docs):
        path = root / f"m{i}" / f"{doc['task']['name']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dumps({**doc, "records": None} if doc.get("records") else doc))
    return root


def test_render_is_deterministic_ranked_escaped_and_flags_partial(tmp_path: Path) -> None:
    docs = [
        result("weak|model_[x]", value=0.5),
        result("strong", value=0.9),
        result("strong", task="imagenet1k_zeroshot", value=0.7, partial=True),
    ]
    text = render(collect(write_results(tmp_path, docs)))
    assert text == render(collect(tmp_path))
    assert MARKER in text.splitlines()
    rows = table_rows(text, escape("zeroshot_classification"))
    assert rows[0].startswith("| model")
    assert "cifar10_zeroshot v1<br>accuracy (%, ↑)" in rows[0] and "imagenet1k_zeroshot v1<br>accuracy (%, ↑)" in rows[0]
    assert rows[1].startswith("| strong ") and "**70.0** [93.2, 94.2] †" in rows[1] and "**90.0**" in rows[1]
    assert rows[2].startswith(r"| weak\|model\_\[x\] ") and "—" in rows[2] and "50.0 [93.2, 94.2] ‡" in rows[2]
    assert "† partial run" in text and "‡ not tested" in text


def test_latest_result_wins_per_model_and_task(tmp_path: Path) -> None:
    old, new = result(value=0.1), result(value=0.8)
    new["created_at"] = "2026-11-24T00:00:00Z"
    text = render(collect(write_results(tmp_path, [new, old])))
    assert "80.0" in text and "10.0" not in text
    # created_at is compared as a time, not as text: 01:00+02:00 is before 00:00Z
    early, late = result(value=0.2), result(value=0.3)
    early["created_at"], late["created_at"] = "2026-11-25T01:00:00+02:00", "2026-11-25T00:00:00Z"
    [(key, docs)] = latest_per_seed([late, early]).items()
    assert docs == [late] and key[0].name == BASE["model"]["name"] and str(key[0]) == key[0].name


def test_several_seeds_show_mean_and_spread_and_rank_by_the_mean(tmp_path: Path) -> None:
    seeds = [result("seeded", value=v) for v in (0.6, 0.7, 0.8)]
    for seed, doc in enumerate(seeds):
        doc["seed"] = seed
    stale = result("seeded", value=0.0)  # an older run of seed 2: replaced by the latest
    stale["seed"], stale["created_at"] = 2, "2026-11-01T00:00:00Z"
    text = render(collect(write_results(tmp_path, [*seeds, stale, result("single", value=0.75)])))
    rows = table_rows(text, escape("zeroshot_classification"))
    assert rows[1].startswith("| single ") and "**75.0** [93.2, 94.2]" in rows[1]
    assert rows[2].startswith("| seeded ") and "70.0 ± 10.0 (3 seeds)" in rows[2]
    assert "4 results from 2 models" in text


def test_json_writer_writes_records_beside_and_keeps_seeds_side_by_side(tmp_path: Path) -> None:
    from harness_writers import write_json

    first, text = scored("m", "cls_a", [1.0, 0.0])
    second = copy.deepcopy(first)
    second["seed"] = 3
    one, three = write_json(first, tmp_path, text), write_json(second, tmp_path, text)
    assert one != three and one.name.startswith("cls_a") and three.name.endswith(".seed-3.json")
    assert records_path(three).read_text() == text


def test_escape() -> None:
    assert escape("a|b*c_d") == r"a\|b\*c_d"  # an underscore inside a word cannot start emphasis
    assert escape("_x_ $y$") == r"\_x\_ \$y\$"
    assert escape("<script>&amp;") == "&lt;script&gt;&amp;amp;"
    assert escape("a\nb") == "a\ufffdb"


def test_tables_per_kind_units_directions_and_shared_task_ranking(tmp_path: Path) -> None:
    """Accuracy (fraction, higher better) and MAE (raw, lower better) tasks of two kinds."""
    rng = np.random.default_rng(0)
    n = 200
    best = (rng.random(n) < 0.9).astype(float)
    close = best.copy()
    close[np.flatnonzero(best)[:2]] = 0.0  # wrong on two samples the best got right
    worse = best.copy()
    worse[np.flatnonzero(best)[:80]] = 0.0  # wrong on 80 more
    # a partial run that scored the best's misses and half its hits, exactly as the best did
    subset_index = np.r_[np.flatnonzero(best == 0), np.flatnonzero(best)[::2]]
    subset = [f"s{i:04d}" for i in subset_index]
    docs = [
        # classification: "specialist" ran only cls_a, where it is best; the others ran cls_a and cls_b
        scored("specialist", "cls_a", best),
        scored("twin", "cls_a", best.copy()),  # equal to the best on every sample: also best
        scored("partial", "cls_a", best[subset_index], ids=subset, total=n),
        scored("close", "cls_a", close), scored("close", "cls_b", rng.random(n) < 0.6),
        scored("worse", "cls_a", worse), scored("worse", "cls_b", rng.random(n) < 0.7),
        # regression, lower is better
        scored("specialist", "reg_a", rng.random(n) * 0.5, kind="regression", metric="mae", unit="raw", higher=False),
        scored("worse", "reg_a", 2 + rng.random(n), kind="regression", metric="mae", unit="raw", higher=False),
    ]
    for doc, text in docs:
        write_scored(tmp_path, doc, text)
    board = tmp_path / "LEADERBOARD.md"
    assert main(["leaderboard", str(tmp_path), "-o", str(board)]) == 0
    text = board.read_text()
    assert text.index("## classification") < text.index("## regression")
    cls = table_rows(text, "classification")
    assert "cls_a v1<br>accuracy (%, ↑)" in cls[0] and "cls_b v1<br>accuracy (%, ↑)" in cls[0]
    names = [row.split("|")[1].strip() for row in cls[1:]]
    assert names[:2] == ["specialist", "twin"] and names[-1] == "worse"  # ranked on cls_a, the task all ran
    cells = {row.split("|")[1].strip(): row.split("|")[3].strip() for row in cls[1:]}
    assert cells["specialist"].startswith("**") and cells["twin"].startswith("**")
    assert cells["close"].endswith("≈") and not cells["close"].startswith("**")
    assert "≈" not in cells["worse"] and "‡" not in cells["worse"]
    assert cells["partial"].endswith("≈ †")  # equal to the best on every sample it scored
    assert "over the 1 task every model in this table ran (cls_a v1)" in text
    reg = table_rows(text, "regression")
    assert "reg_a v1<br>mae (raw, ↓)" in reg[0]
    assert reg[1].startswith("| specialist ") and "**0.2" in reg[1] and "%" not in reg[1]
    assert reg[2].startswith("| worse ") and "≈" not in reg[2]
    assert "‡" not in text
    assert text == render(collect(tmp_path))


def test_significance_averages_seeds_per_sample_and_needs_the_same_dataset(tmp_path: Path) -> None:
    ones = np.ones(40)
    miss = [ones.copy(), ones.copy()]
    miss[0][3], miss[1][7] = 0.0, 0.0  # each seed misses one sample: two samples at 0.5 on average
    docs = [scored("best", "cls_a", ones, seed=0), scored("best", "cls_a", ones, seed=1),
            scored("near", "cls_a", miss[0], seed=0), scored("near", "cls_a", miss[1], seed=1),
            scored("far", "cls_a", np.r_[np.ones(10), np.zeros(30)], seed=0),
            scored("far", "cls_a", np.r_[np.ones(12), np.zeros(28)], seed=1),
            scored("elsewhere", "cls_a", ones[:-1].tolist() + [0.0])]
    docs[-1][0]["dataset"]["fingerprint"] = "beef"  # the same spec, other data: not paired
    for doc, text in docs:
        write_scored(tmp_path, doc, text)
    rows = {row.split("|")[1].strip(): row.split("|")[3].strip()
            for row in table_rows(render(collect(tmp_path)), "classification")[1:]}
    assert rows["best"] == "**100.0** ± 0.0 (2 seeds)"
    assert rows["near"] == "97.5 ± 0.0 (2 seeds) ≈"
    assert rows["far"].endswith("(2 seeds)")
    assert rows["elsewhere"].endswith("‡")


def test_no_shared_task_falls_back_to_copeland(tmp_path: Path) -> None:
    ones, halves, zeros = np.ones(10), np.r_[np.ones(5), np.zeros(5)], np.zeros(10)
    for doc, text in [scored("x", "t1", ones), scored("x", "t2", ones),
                      scored("y", "t2", halves), scored("y", "t3", ones),
                      scored("z", "t3", zeros), scored("z", "t4", ones)]:
        write_scored(tmp_path, doc, text)
    text = render(collect(tmp_path))
    names = [row.split("|")[1].strip() for row in table_rows(text, "classification")[1:]]
    assert names == ["x", "y", "z"] and "ordered by Copeland score" in text


def test_other_specs_and_other_weights_are_never_merged(tmp_path: Path) -> None:
    scores = np.ones(10)
    for doc, text in [scored("m", "cls_a", scores, spec="11" * 32), scored("m", "cls_a", scores * 0, spec="22" * 32),
                      scored("m", "cls_a", scores, fingerprint="33" * 32, spec="11" * 32)]:
        write_scored(tmp_path, doc, text)
    rows = table_rows(render(collect(tmp_path)), "classification")
    assert "cls_a v1 (11111111)<br>accuracy" in rows[0] and "cls_a v1 (22222222)<br>accuracy" in rows[0]
    labels = sorted(row.split("|")[1].strip() for row in rows[1:])
    assert labels == [f"m ({'33' * 4})", f"m ({hashlib.sha256(b'm').hexdigest()[:8]})"]
    assert len(latest_per_seed(collect(tmp_path))) == 3


def test_paired_test_respects_classes_and_groups() -> None:
    from harness.pairedtest import Cell

    def cell(scores: list[float], classes: list[int] | None = None, groups: list[str] | None = None) -> Cell:
        return Cell({f"s{i}": i for i in range(len(scores))}, np.array(scores, dtype=float), classes, groups, "d")

    same = cell([1, 0, 1, 1] * 10)
    assert paired_p_value(same, same, True) == 1.0
    assert paired_p_value(cell([1.0] * 40), cell([0.0] * 40), True) < 0.001
    assert paired_p_value(cell([0.0] * 40), cell([1.0] * 40), False) < 0.001  # lower is better
    # 40 discordant samples in one group: a single sign flip, p = 1/2
    grouped = cell([1.0] * 40, groups=["g"] * 40)
    assert paired_p_value(grouped, cell([0.0] * 40), True) == 0.5
    # class-mean: the one sample of a rare class weighs as much as the 39 others
    rare = cell([1.0] + [1.0] * 39, classes=[1] + [0] * 39)
    assert paired_p_value(rare, cell([0.0] + [1.0] * 39), True) == 0.5
    assert paired_p_value(same, Cell({"other": 0}, np.ones(1), None, None, "d"), True) is None


def test_sign_flip_p_value_methods(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.pairedtest as board

    assert sign_flip_p_value(np.zeros(5)) == (1.0, "no differences")
    assert sign_flip_p_value(np.r_[np.ones(7), -np.ones(3)]) == (pytest.approx(176 / 1024), "sign test")
    rng = np.random.default_rng(1)
    small = rng.normal(0.3, 1, 12)
    p, method = sign_flip_p_value(small)
    signs = ((np.arange(2 ** 12)[:, None] >> np.arange(12)) & 1) * 2.0 - 1.0
    assert method == "exact" and p == pytest.approx(np.mean(signs @ small >= small.sum() - 1e-12))
    large = rng.normal(0.01, 1, 20_000)
    p_normal, method = sign_flip_p_value(large)
    assert method == "normal"
    monkeypatch.setattr(board, "NORMAL_MAX_ERROR", 0.0)
    monkeypatch.setattr(board, "N_PERMUTATIONS", 2000)
    p_flips, method = sign_flip_p_value(large)
    assert method == "permutation" and abs(p_flips - p_normal) < 0.03
    assert sign_flip_p_value(large) == (p_flips, "permutation")  # seeded: the same every time
    monkeypatch.undo()
    skewed = np.r_[5.0, np.full(100, 0.01)]  # one contribution dominates: no normal approximation
    assert sign_flip_p_value(skewed) == (1 / (1 + board.N_PERMUTATIONS), "permutation")  # no flip reaches it


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


def test_leaderboard_output_must_be_a_generated_markdown_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    results = write_results(tmp_path / "results", [result()])
    notes = tmp_path / "NOTES.md"
    notes.write_text("# my notes\n")
    (tmp_path / "folder").mkdir()
    for target, needle in [(results / "m0" / "cifar10_zeroshot.json", ".json/.jsonl"),
                           (tmp_path / "new.jsonl", ".json/.jsonl"), (tmp_path / "folder", "is a folder"),
                           (notes, "not a leaderboard generated by harness")]:
        before = target.read_bytes() if target.is_file() else None
        assert main(["leaderboard", str(results), "-o", str(target)]) == 4
        err = capsys.readouterr().err
        assert err.startswith("harness: error: -o ") and needle in err and err.count("\n") == 1
        assert (target.read_bytes() if target.is_file() else None) == before
    board = tmp_path / "LEADERBOARD.md"
    assert main(["leaderboard", str(results), "-o", str(board)]) == 0
    board.write_text(board.read_text().replace("93.7", "0.0"))
    assert main(["leaderboard", str(results), "-o", str(board)]) == 0  # a generated leaderboard is replaced
    assert "93.7" in board.read_text()


def test_validate_command_reports_every_broken_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_results(tmp_path, [result(), result(model="x")])
    (tmp_path / "m1" / "cifar10_zeroshot.json").write_text("[]")
    assert main(["validate", str(tmp_path)]) != 0
    captured = capsys.readouterr()
    assert "ok\t" in captured.out and "FAIL\t" in captured.err and "top level is list" in captured.err


def test_date_time_is_checked_by_the_format_checker() -> None:
    # jsonschema checks "date-time" only with rfc3339-validator installed (a dependency of harness)
    from harness.schema import _validator

    checker = _validator("result.v5").format_checker
    assert checker.conforms("2026-02-28T23:59:59.5+01:00", "date-time")
    assert not checker.conforms("2026-02-30T00:00:00Z", "date-time") and not checker.conforms("today", "date-time")