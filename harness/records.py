"""Per-sample records: the scores behind a result, one JSON line per evaluated sample.

A result ``X.json`` (schema v5) names its records file in ``records``
(``{"file": "X.samples.jsonl", "sha256": <hex of the file's bytes>, "n": <lines>}``); the file
sits in the same folder. Each line, in the kind's output order, is one sample::

    {"class":{"mean_per_class_recall":3},"group":"pair-7","id":"img_0042","scores":{"accuracy":1.0,"mean_per_class_recall":1.0}}

- ``id``: the sample's id (the dataset's ``id`` column if unique, else ``#<row>``), a string,
  unique within the file;
- ``scores``: metric name -> the sample's score, or null where the metric left the sample out
  (masked); only metrics with per-sample scores (not ``reduce="none"``);
- ``class``: metric name -> the sample's class (int or string), only for class-mean metrics
  (``classes_from``);
- ``group``: the sample's group (string or int), only when the kind returned a ``groups`` output;
- ``fields``: output name -> the sample's value, for the outputs the task kind keeps in its records
  (``TaskKindSpec.records``: e.g. a generative task's exact prompt, raw output and targets), so a
  result can be inspected and re-scored without the model (``harness rescore``).

Keys sorted, compact separators, UTF-8, every line ends with a newline. Paired comparisons of two
models on the same task (the leaderboard's significance marks) align records by ``id``.

Readers treat the file as untrusted: :func:`read_records` checks its size, its sha256 and line
count against the result, every line (as strictly as result files: no NaN, no duplicate keys,
bounded nesting) and that the records reproduce the result's metric values.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import ResultError
from .result import parse_json, read_bounded, shown

SUFFIX = ".samples.jsonl"
#: Largest records file read (bytes): about two million samples of a few metrics.
MAX_RECORDS_BYTES = 256 * 1024 * 1024
_KEYS = frozenset({"id", "scores", "class", "group", "fields"})


def records_path(result_path: Path) -> Path:
    """``X.json`` -> ``X.samples.jsonl`` beside it (any other name gets the suffix appended)."""
    result_path = Path(result_path)
    stem = result_path.name[:-len(".json")] if result_path.name.endswith(".json") else result_path.name
    return result_path.with_name(stem + SUFFIX)


def _plain(value: Any, what: str) -> int | str:
    """A class or group label as JSON: an int or a string (numpy scalars converted)."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (str, np.str_)):
        return str(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    raise ValueError(f"{what} {value!r} is not an integer or a string")


def _json(value: Any) -> Any:
    """A per-sample output value as JSON (numpy scalars and arrays to Python numbers and lists)."""
    if isinstance(value, np.ndarray):
        return [_json(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return value


def build_records(ids: Sequence[Any], per_metric_scores: Mapping[str, Any],
                  classes: Mapping[str, Any] | None = None, groups: Any = None,
                  fields: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One record per sample (see the module docstring) from the sample ids, each per-sample
    metric's scores (a masked array's masked samples become null), the classes of class-mean
    metrics and the kind's groups output (or None). Every array has one entry per id; a
    non-finite score that is not masked is an error (ValueError), as in scoring."""
    n = len(ids)
    classes = dict(classes or {})
    columns: dict[str, list[float | None]] = {}
    for name, values in sorted(per_metric_scores.items()):
        mask = np.ma.getmaskarray(values) if np.ma.isMaskedArray(values) else None
        data = np.asarray(np.ma.getdata(values), dtype=np.float64).reshape(-1)
        if len(data) != n:
            raise ValueError(f"records: metric {name!r} has {len(data)} scores for {n} samples")
        kept = np.ones(n, dtype=bool) if mask is None else ~np.asarray(mask, dtype=bool).reshape(-1)
        if not np.isfinite(data[kept]).all():
            raise ValueError(f"records: metric {name!r} has NaN or inf scores that are not masked")
        columns[name] = [float(v) if k else None for v, k in zip(data.tolist(), kept.tolist())]
    class_columns = {}
    for name, values in sorted(classes.items()):
        values = np.asarray(values).reshape(-1)
        if len(values) != n:
            raise ValueError(f"records: classes of {name!r} have {len(values)} entries for {n} samples")
        class_columns[name] = [_plain(v, f"class of {name!r}") for v in values.tolist()]
    group_column = None
    if groups is not None:
        group_values = np.asarray(groups).reshape(-1)
        if len(group_values) != n:
            raise ValueError(f"records: groups have {len(group_values)} entries for {n} samples")
        group_column = [_plain(v, "group") for v in group_values.tolist()]
    for name, values in (fields or {}).items():
        if len(values) != n:
            raise ValueError(f"records: field {name!r} has {len(values)} entries for {n} samples")
    records = []
    for i, sample in enumerate(ids):
        record: dict[str, Any] = {"id": str(sample), "scores": {name: column[i] for name, column in columns.items()}}
        if class_columns:
            record["class"] = {name: column[i] for name, column in class_columns.items()}
        if group_column is not None:
            record["group"] = group_column[i]
        if fields:
            record["fields"] = {name: _json(values[i]) for name, values in sorted(fields.items())}
        records.append(record)
    return records


def records_text(records: Sequence[Mapping[str, Any]]) -> str:
    """The records file's text: one compact JSON object per line, keys sorted, each line ending
    with a newline (so the line count is ``text.count("\\n")``)."""
    import json

    return "".join(json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
                   + "\n" for record in records)


def records_digest(text: str) -> str:
    """sha256 (hex) of the records text's UTF-8 bytes, as stored in the result's ``records.sha256``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_record(record: Any, line: int, source: str, metrics: Mapping[str, Any]) -> None:
    def fail(problem: str) -> ResultError:
        return ResultError(f"{shown(source)}: line {line}: {shown(problem)}")

    if not isinstance(record, dict):
        raise fail(f"a record is an object, not {type(record).__name__}")
    unknown = sorted(set(record) - _KEYS)
    if unknown or "id" not in record or "scores" not in record:
        raise fail(f"a record has keys id, scores and optionally class, group (got {sorted(record)})")
    if not isinstance(record["id"], str) or not record["id"]:
        raise fail(f"id {record['id']!r} is not a non-empty string")
    scores = record["scores"]
    if not isinstance(scores, dict):
        raise fail("scores is not an object")
    for name, score in scores.items():
        if name not in metrics:
            raise fail(f"score of metric {name!r}, which the result does not have")
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))
                                  or not math.isfinite(score)):
            raise fail(f"score of {name!r} is {score!r}, not a number or null")
    labels = record.get("class", {})
    if not isinstance(labels, dict):
        raise fail("class is not an object")
    for name, label in labels.items():
        if name not in scores:
            raise fail(f"class of metric {name!r}, which has no score")
        if isinstance(label, bool) or not isinstance(label, (int, str)):
            raise fail(f"class of {name!r} is {label!r}, not an integer or a string")
    if "fields" in record and not isinstance(record["fields"], dict):
        raise fail("fields is not an object")
    if "group" in record and (isinstance(record["group"], bool) or not isinstance(record["group"], (int, str))):
        raise fail(f"group {record['group']!r} is not an integer or a string")


def _check_against_result(records: list[dict[str, Any]], doc: dict[str, Any], source: str) -> None:
    """The records are one consistent table (same metrics, classes and groups on every line, unique
    ids) that reproduces every per-sample metric's value in the result."""
    from .intervals import reduce_scores

    def fail(problem: str) -> ResultError:
        return ResultError(f"{shown(source)}: {shown(problem)}")

    if not records:
        return
    first = records[0]
    shape = (sorted(first["scores"]), sorted(first.get("class", {})), "group" in first)
    seen: set[str] = set()
    for line, record in enumerate(records, 1):
        if (sorted(record["scores"]), sorted(record.get("class", {})), "group" in record) != shape:
            raise fail(f"line {line}: not the same metrics, classes and group fields as line 1")
        if record["id"] in seen:
            raise fail(f"line {line}: sample id {record['id']!r} appears twice")
        seen.add(record["id"])
    for name in shape[0]:
        kept = [r for r in records if r["scores"][name] is not None]
        expected = doc["metrics"][name]["value"]
        if not kept:
            value = None
        else:
            scores = np.array([r["scores"][name] for r in kept], dtype=np.float64)
            labels = None
            if name in shape[1]:
                codes: dict[tuple[str, Any], int] = {}
                labels = np.array([codes.setdefault((type(r["class"][name]).__name__, r["class"][name]), len(codes))
                                   for r in kept])
            value = reduce_scores(scores, labels)
        if (value is None) != (expected is None) or (
                value is not None and not math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-12)):
            raise fail(f"the records give {name} = {value}, the result says {expected}")


def read_records(result_path: Path, doc: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The per-sample records of the (validated) result ``doc`` read from ``result_path``; None
    when ``doc`` names none (``records: null``, or schema before v5). One ResultError line naming
    the records file when it is missing, not a regular file, larger than
    :data:`MAX_RECORDS_BYTES`, hostile or malformed (see the module docstring), when its sha256 or
    line count differs from ``doc["records"]``, or when it does not reproduce the result's values."""
    entry = doc.get("records")
    if doc.get("schema_version", 0) < 5 or entry is None:
        return None
    path = Path(result_path).parent / entry["file"]
    source = str(path)
    try:
        data = read_bounded(path, MAX_RECORDS_BYTES, "records file")
    except ResultError as exc:
        raise ResultError(f"{exc} (named by {shown(result_path)})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise ResultError(f"{shown(source)}: records file changed: sha256 {digest[:12]}..., "
                          f"the result {shown(result_path)} says {entry['sha256'][:12]}...")
    if data and not data.endswith(b"\n"):
        raise ResultError(f"{shown(source)}: records file does not end with a newline")
    lines = data.split(b"\n")[:-1] if data else []
    if len(lines) != entry["n"]:
        raise ResultError(f"{shown(source)}: {len(lines)} records, the result says {entry['n']}")
    records = []
    for number, line in enumerate(lines, 1):
        record = parse_json(line, f"{source}: line {number}", "record", check_depth=False)  # shape checked next
        _check_record(record, number, source, doc["metrics"])
        records.append(record)
    _check_against_result(records, doc, source)
    return records
