"""``harness vqa-submission RESULT -o FILE``: the answer file the EvalAI VQA server expects,
``[{"question_id": int, "answer": str}, ...]``, from a ``vqa`` result and its per-sample records.

A test-dev/test-std run has no annotations: its result holds the model's raw answers in its records
(``fields.predictions``, ``fields.question_ids``) and ``null`` scores (nothing to score against).
This command turns such a result (or any ``vqa`` result) into the upload file. Each answer is the raw
prediction with ``\\n``/``\\t`` made spaces and stripped -- the server normalises answers itself
(the EvalAI processor), so nothing else is done to it.

It refuses, in one line and writing nothing: a file that is not a valid result, a result of
another task kind, records that are missing, changed (sha256) or hold no predictions, a partial
result (``--limit``: the server needs an answer for every question), repeated or missing question
ids, and an existing ``FILE`` (unless ``--force``).

The submission is written where ``-o`` says, never beside the results: ``harness leaderboard`` and
``harness validate`` read every ``*.json`` under a results folder as a result.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

from harness import ResultError, UsageError, read_result, write_text_atomic

#: Largest records file read (the core reads at most 256 MiB too).
MAX_RECORDS_BYTES = 256 * 1024 * 1024


def add_command(subparsers: Any, parents: list[Any]) -> None:
    p = subparsers.add_parser("vqa-submission", parents=parents,
                              help="write the EvalAI answer file of a vqa result (e.g. VQAv2 test-dev)")
    p.add_argument("result", type=Path, help="a result file (.json) of a task of kind vqa")
    p.add_argument("-o", "--output", type=Path, required=True, help="the submission file to write")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p.set_defaults(handler=command)


def _records(path: Path, doc: dict[str, Any]) -> list[dict[str, Any]]:
    entry = doc.get("records")
    if not entry:
        raise ResultError(f"{path}: the result names no per-sample records (written by an older harness?)")
    records_file = path.parent / entry["file"]
    try:
        if records_file.stat().st_size > MAX_RECORDS_BYTES:
            raise ResultError(f"{records_file}: larger than {MAX_RECORDS_BYTES} bytes")
        data = records_file.read_bytes()
    except OSError as exc:
        raise ResultError(f"{records_file}: cannot read the records of {path.name}: {exc.strerror or exc}") from None
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise ResultError(f"{records_file}: records file changed since the result was written (sha256 differs)")
    out = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            raise ResultError(f"{records_file}: line {number} is not JSON") from None
        if not isinstance(record, dict):
            raise ResultError(f"{records_file}: line {number} is not an object")
        out.append(record)
    return out


def submission(path: Path) -> list[dict[str, Any]]:
    """The EvalAI answer list of the ``vqa`` result at ``path`` (checked; see the module docstring)."""
    doc = read_result(path)
    kind = doc["task"]["kind"]
    if kind != "vqa":
        raise ResultError(f"{path}: a result of task kind {kind!r}; vqa-submission reads results of kind 'vqa'")
    n = doc["n_samples"]
    if n["partial"]:
        raise ResultError(f"{path}: a partial result (--limit): it answers {n['evaluated']} of {n['total']} "
                          "questions, and the server needs every question; run without --limit")
    answers: list[dict[str, Any]] = []
    seen: set[int] = set()
    for number, record in enumerate(_records(path, doc), 1):
        fields = record.get("fields") if isinstance(record.get("fields"), dict) else {}
        question, prediction = fields.get("question_ids"), fields.get("predictions")
        if not isinstance(prediction, str) or isinstance(question, bool) or not isinstance(question, int):
            raise ResultError(f"{path}: record {number} has no prediction and question id (fields.predictions, "
                              "fields.question_ids); rerun with a harness that keeps them")
        if question < 0:
            raise ResultError(f"{path}: record {number}: the data had no question ids, so there is nothing to submit")
        if question in seen:
            raise ResultError(f"{path}: question {question} is answered twice")
        seen.add(question)
        answers.append({"question_id": question, "answer": prediction.replace("\n", " ").replace("\t", " ").strip()})
    if len(answers) != n["evaluated"]:
        raise ResultError(f"{path}: {len(answers)} records for {n['evaluated']} evaluated questions")
    return answers


def command(args: argparse.Namespace, registries: Any) -> int:
    output: Path = args.output
    if output.is_dir():
        raise UsageError(f"vqa-submission: -o {output} is a folder; give the file to write")
    if output.exists() and not args.force:
        raise UsageError(f"vqa-submission: {output} exists (use --force to overwrite it)")
    if output.resolve() == args.result.resolve():
        raise UsageError("vqa-submission: -o is the result file itself")
    answers = submission(args.result)
    write_text_atomic(output, json.dumps(answers, ensure_ascii=False))
    print(output)
    return 0
