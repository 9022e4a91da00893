"""Hostile result and records files: `harness leaderboard` and `harness validate` refuse each with
one line naming the file, and the leaderboard writes nothing."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from test_leaderboard import scored, write_scored

from harness.cli import main
from harness.leaderboard import escape
from harness.records import records_digest, records_path
from harness.result import dumps

SENTINEL = "__HOSTILE__"


def valid_pair(root: Path) -> list[Path]:
    """Two valid v5 results (with records) on one task."""
    return [write_scored(root, *scored("good", "cls_a", np.r_[np.ones(8), np.zeros(2)])),
            write_scored(root, *scored("other", "cls_a", np.r_[np.ones(5), np.zeros(5)]))]


def hostile(root: Path, mutate: Callable[[dict], None] | None = None, raw: str | bytes | None = None,
            model: str = "evil", name: str | None = None) -> Path:
    """Write a result of ``model`` (valid records), then break it: ``mutate`` the document; where it
    put SENTINEL, the JSON text gets ``raw`` instead (e.g. ``Infinity``)."""
    doc, text = scored(model, "cls_a", np.r_[np.ones(7), np.zeros(3)])
    path = write_scored(root, doc, text)
    written = json.loads(path.read_text())
    if mutate is not None:
        mutate(written)
    data = dumps(written).replace(json.dumps(SENTINEL), raw) if isinstance(raw, str) else dumps(written)
    if name is not None:
        path.unlink()
        path = path.with_name(name)
    path.write_text(data, encoding="utf-8")
    return path


def in_records(root: Path, edit: Callable[[str], str], reseal: bool = False) -> Path:
    """A result whose records file is edited afterwards (``reseal``: the result's sha256 updated to
    match); returns the records file (what the error names)."""
    path = hostile(root)
    samples = records_path(path)
    samples.write_text(edit(samples.read_text()), encoding="utf-8")
    if reseal:
        doc = json.loads(path.read_text())
        doc["records"]["sha256"] = records_digest(samples.read_text())
        path.write_text(dumps(doc))
    return samples


def set_value(key: str, value: object) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        doc[key] = value
    return mutate


def metric(**fields: object) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        doc["metrics"]["accuracy"].update(fields)
        if "value" in fields:
            doc["main_score"]["value"] = fields["value"]
    return mutate


def model_name(name: str) -> Callable[[dict], None]:
    return lambda doc: doc["model"].update(name=name)


def task_name(name: str) -> Callable[[dict], None]:
    return lambda doc: doc["task"].update(name=name)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _fifo(root: Path) -> Path:
    path = root / "fifo.json"
    os.mkfifo(path)
    return path


def _big(root: Path) -> Path:
    path = root / "big.json"
    with open(path, "wb") as handle:
        handle.truncate(65 * 1024 * 1024)  # sparse: nothing is written
    return path


def _records_link(root: Path) -> Path:
    samples = records_path(hostile(root))
    samples.unlink()
    samples.symlink_to("/dev/zero")
    return samples


def _records_missing(root: Path) -> Path:
    samples = records_path(hostile(root))
    samples.unlink()
    return samples


#: case -> (builder: breaks one file under the folder and returns the file the error must name, text of the error)
CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "Infinity": (lambda r: hostile(r, metric(value=SENTINEL), "Infinity"), "Infinity is not JSON"),
    "-Infinity": (lambda r: hostile(r, metric(value=SENTINEL), "-Infinity"), "-Infinity is not JSON"),
    "NaN ci": (lambda r: hostile(r, metric(ci95=[SENTINEL, 0.8]), "NaN"), "NaN is not JSON"),
    "1e999": (lambda r: hostile(r, metric(value=SENTINEL), "1e999"), "out of range"),
    "750% fraction": (lambda r: hostile(r, metric(value=7.5)), "7.5 is greater than the maximum of 1"),
    "ci reversed": (lambda r: hostile(r, metric(ci95=[0.8, 0.6])), "lower bound 0.8 is above upper bound 0.6"),
    "ci outside [0, 1]": (lambda r: hostile(r, metric(ci95=[0.6, 1.5])), "1.5 is greater than the maximum of 1"),
    "created_at no date": (lambda r: hostile(r, set_value("created_at", "last tuesday")), "created_at"),
    "created_at month 13": (lambda r: hostile(r, set_value("created_at", "2026-13-45T99:00:00Z")), "created_at"),
    "schema_version 3.0": (lambda r: hostile(r, set_value("schema_version", 3.0)), "schema_version 3.0 not supported"),
    "schema_version true": (lambda r: hostile(r, set_value("schema_version", True)), "schema_version True not supported"),
    "deep nesting": (lambda r: hostile(r, lambda d: d["dataset"].update(config=SENTINEL), nested(100_000)),
                     "nested too deeply"),
    "nesting 100": (lambda r: hostile(r, lambda d: d["dataset"].update(config=SENTINEL), nested(100)),
                    "nested too deeply"),
    "duplicate key": (lambda r: hostile(r, set_value("seed", SENTINEL), '0, "seed": 1'), "duplicate key 'seed'"),
    "not UTF-8": (lambda r: (r / "latin1.json").write_bytes(b'{"model": "caf\xe9"}') and r / "latin1.json",
                  "not UTF-8"),
    "top level array": (lambda r: (r / "list.json").write_text("[]") and r / "list.json", "top level is list"),
    "over 64 MiB": (_big, "too large"),
    "FIFO": (_fifo, "not a regular file"),
    "newline in model name": (lambda r: hostile(r, model_name("evil\n| fake | row |")), "model.name"),
    "terminal escape in model name": (lambda r: hostile(r, model_name("evil\x1b[2J")), "model.name"),
    "bidi override in model name": (lambda r: hostile(r, model_name("evil\u202egnp.exe")), "model.name"),
    "<script> in task name": (lambda r: hostile(r, task_name("<script>alert(1)</script>")), "task.name"),
    "| in task name": (lambda r: hostile(r, task_name("a|b")), "task.name"),
    "newline in metric name": (lambda r: hostile(r, lambda d: d["metrics"].update({"acc\nuracy": d["metrics"]["accuracy"]})),
                               "metric name"),
    "records tampered": (lambda r: in_records(r, lambda t: t.replace('"accuracy":0.0', '"accuracy":1.0', 1)),
                         "records file changed"),
    "records missing": (_records_missing, "records file does not exist"),
    "records resealed, values changed": (lambda r: in_records(r, lambda t: t.replace('"accuracy":0.0', '"accuracy":1.0', 1),
                                                              reseal=True), "the records give accuracy"),
    "records count": (lambda r: records_path(hostile(r, lambda d: d["records"].update(n=11))),
                      "10 records, the result says 11"),
    "records NaN": (lambda r: in_records(r, lambda t: t.replace('"accuracy":0.0', '"accuracy":NaN', 1), reseal=True),
                    "NaN is not JSON"),
    "records deep nesting": (lambda r: in_records(r, lambda t: nested(100_000) + "\n" + t.split("\n", 1)[1], reseal=True),
                             "line 1: record is nested too deeply"),
    "records line not an object": (lambda r: in_records(r, lambda t: "[[[1]]]\n" + t.split("\n", 1)[1], reseal=True),
                                   "line 1: a record is an object"),
    "records duplicate id": (lambda r: in_records(r, lambda t: t.replace('"s0001"', '"s0000"'), reseal=True),
                             "appears twice"),
    "records outside the folder": (lambda r: hostile(r, lambda d: d["records"].update(file="../x.jsonl")),
                                   "records.file"),
    "records a device": (_records_link, "not a regular file"),
    "newline in file name": (lambda r: hostile(r, metric(value=7.5), name="evil\nname.json"), "evil\\nname.json"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_file_is_one_line_naming_it_and_nothing_is_written(case: str, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "results"
    valid_pair(root)
    out = tmp_path / "LEADERBOARD.md"
    assert main(["leaderboard", str(root), "-o", str(out)]) == 0
    out.unlink()
    capsys.readouterr()
    build, needle = CASES[case]
    named = build(root).name.replace("\n", "\\n")  # the file the error must name (escaped)
    code = main(["leaderboard", str(root), "-o", str(out)])
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code != 0 and len(lines) == 1 and lines[0].startswith("harness: error: "), err
    assert named in lines[0] and needle in lines[0], lines[0]
    assert not out.exists()
    code = main(["validate", str(root)])
    captured = capsys.readouterr()
    failures = captured.err.splitlines()
    assert code != 0 and len(failures) == 1 and failures[0].startswith("FAIL\t") and named in failures[0], captured.err
    assert captured.out.count("ok\t") == 2  # the two valid results


def test_v4_names_are_escaped_and_control_characters_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Before v5 a task name could be anything: it renders escaped, in one header cell."""
    doc, _ = scored("<b>|model</b>", "cls_a", np.ones(4))
    doc = copy.deepcopy(doc)
    doc["schema_version"] = 4
    doc.pop("records")
    doc["task"]["name"] = "<script>x</script>|[y](javascript:z)"
    path = write_scored(tmp_path, doc, None)
    out = tmp_path / "LEADERBOARD.md"
    assert main(["leaderboard", str(tmp_path), "-o", str(out)]) == 0
    text = out.read_text()
    assert "<script>" not in text and "<b>" not in text and escape(doc["task"]["name"]) in text
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 3 and all(line.count("|") - line.count("\\|") == 4 for line in table)
    doc["model"]["name"] = "a\nb"
    path.write_text(dumps(doc))
    capsys.readouterr()
    assert main(["leaderboard", str(tmp_path), "-o", str(out)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
