"""``harness rescore``: recompute a result's metrics from its per-sample records, without the model.

The records keep every sample's id, group and the outputs its task kind declared as record fields
(``TaskKindSpec.records``: a generative task's prompt, raw output and targets). Those fields are
the metrics' inputs again, so any registered metric over them can be computed -- the result's own
metrics (to check a file) or others (e.g. another VQA normalisation mode) -- and written as a new
result whose ``rescored`` entry names the file and metrics it came from.
"""

from __future__ import annotations

import copy
import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .errors import ResultError, UsageError
from .records import build_records, read_records, records_digest, records_path, records_text
from .result import read_result, validate_result
from .resultfile import result_name, write_result
from .scoring import GROUPS, score_samples

if TYPE_CHECKING:
    from .registry import Registries


def _column(values: list[Any]) -> np.ndarray:
    """A record field as the array a kind returned: numbers (or equal-length lists of numbers) as a
    numeric array, anything else (strings, lists of answers) as an object array of the values."""
    try:
        array = np.asarray(values)
        if array.dtype.kind in "biuf":
            return array
    except ValueError:  # ragged lists
        pass
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def rescore(path: Path, registries: Registries, output_dir: Path, metrics: Sequence[str] = (),
            main: str | None = None) -> Path:
    """Recompute ``metrics`` (default: the result's own) of the result at ``path`` from its records and
    write the new result (and records) under ``output_dir``; returns its path."""
    doc = read_result(path)
    records = read_records(path, doc)
    if not records:
        raise ResultError(f"{path}: no per-sample records to rescore from (a result before schema v5, or none kept)")
    names = list(metrics) or list(doc["metrics"])
    main = main or (doc["main_score"]["name"] if doc["main_score"]["name"] in names else names[0])
    if main not in names:
        raise UsageError(f"rescore: --main {main!r} is not among the metrics {names}")
    fields = sorted(records[0].get("fields", {}))
    outputs = {name: _column([r["fields"][name] for r in records]) for name in fields}
    if "group" in records[0]:
        outputs[GROUPS] = _column([r["group"] for r in records])
    for name in names:
        needed = sorted(registries.metrics.get(name).outputs - set(outputs))
        if needed:
            raise ResultError(f"{path}: metric {name!r} needs output(s) {needed}; the records keep only {fields} "
                              "(a kind keeps outputs with TaskKindSpec.records)")
    entries, samples, arrays = score_samples(doc["task"]["kind"], tuple(names), registries.metrics, outputs, doc["seed"])
    text = records_text(build_records([r["id"] for r in records], {n: s.scores for n, s in samples.items()},
                                      {n: s.classes for n, s in samples.items() if s.classes is not None},
                                      arrays.get(GROUPS), {name: outputs[name] for name in fields}))
    new = copy.deepcopy(doc)
    new.update(metrics=entries, main_score={"name": main, "value": entries[main]["value"]},
               created_at=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
               rescored={"from": Path(path).name, "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
                         "metrics": names})
    new["records"] = {"file": records_path(Path(result_name(new))).name, "sha256": records_digest(text),
                      "n": text.count("\n")}
    validate_result(new, f"rescored {path}")
    return write_result(new, text, output_dir)
