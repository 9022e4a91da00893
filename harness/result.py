"""Result documents: the contract between a run and everything that reads its output.

A result file is untrusted input to everything that reads it (the leaderboard, ``harness
validate``, reports): :func:`read_result` refuses, with one :class:`ResultError` line naming the
file, anything that is not a plain regular file of at most :data:`MAX_RESULT_BYTES` bytes of
UTF-8 JSON (no ``NaN``/``Infinity``, no duplicate keys, nesting at most :data:`MAX_DEPTH` deep)
matching the schema of its declared integer ``schema_version`` plus the checks of
:func:`validate_result` that a JSON Schema cannot express.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any, Iterator

from .errors import ResultError
from .schema import first_error

SCHEMA_VERSION = 5
SUPPORTED_VERSIONS = (1, 2, 3, 4, 5)
#: Largest result file read (bytes).
MAX_RESULT_BYTES = 64 * 1024 * 1024
#: Deepest nesting of objects and arrays accepted in a result (or a per-sample record).
MAX_DEPTH = 64
#: Characters no name may contain: C0 and C1 control characters (newlines included), line and
#: paragraph separators, and bidi controls (they would reorder what a reader sees).
FORBIDDEN_CHARACTERS = re.compile("[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_METRIC_NAME = re.compile(r"[a-z0-9_]+")
#: Longest error line (characters) built from a file's content.
_MAX_MESSAGE = 400


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN: undefined values are stored as null."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def shown(text: object) -> str:
    """``text`` safe to print on one line: every forbidden character (newlines included) as an
    escape (``\\n``, ``\\x1b``, ``\\u2028``), and cut to a bounded length."""
    text = FORBIDDEN_CHARACTERS.sub(lambda m: repr(m.group())[1:-1], str(text))
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "..."


def _fail(source: str, problem: str) -> ResultError:
    return ResultError(f"{shown(source)}: {shown(problem)}")


# -- parsing -----------------------------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (results store undefined values as null)")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _depth_exceeds(value: Any, limit: int) -> bool:
    """True if ``value`` nests objects/arrays more than ``limit`` deep (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_parse_float,
                            object_pairs_hook=_no_duplicates)


def parse_json(data: bytes, source: str, what: str = "result", check_depth: bool = True) -> Any:
    """The JSON value of ``data`` (UTF-8), or a one-line ResultError naming ``source``: not UTF-8,
    not JSON, ``NaN``/``Infinity`` or an out-of-range number, a duplicate key, nesting deeper than
    :data:`MAX_DEPTH` (``check_depth=False``: only as deep as the parser can go, for a caller that
    checks the value's shape itself)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(source, f"{what} is not UTF-8 text (byte {exc.start})") from None
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise _fail(source, f"{what} is nested too deeply (more than {MAX_DEPTH} levels)") from None
    except ValueError as exc:  # json.JSONDecodeError and the hooks' refusals
        raise _fail(source, f"not readable JSON: {exc}") from None
    if check_depth and _depth_exceeds(value, MAX_DEPTH):
        raise _fail(source, f"{what} is nested too deeply (more than {MAX_DEPTH} levels)")
    return value


def read_bounded(path: Path, max_bytes: int, what: str = "result file") -> bytes:
    """The bytes of ``path``, a regular file (a symbolic link to one is fine) of at most
    ``max_bytes``; one ResultError line naming it otherwise (missing, a folder, FIFO or device,
    too large, unreadable). Opened without blocking, so a FIFO cannot hang the reader."""
    source = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise _fail(source, f"{what} does not exist") from None
    except IsADirectoryError:
        raise _fail(source, f"{what} is a folder") from None
    except OSError as exc:
        raise _fail(source, f"{what} cannot be read: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise _fail(source, f"{what} is not a regular file")
            if info.st_size > max_bytes:
                raise _fail(source, f"{what} is too large ({info.st_size} bytes; at most {max_bytes})")
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise _fail(source, f"{what} cannot be read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise _fail(source, f"{what} is too large (more than {max_bytes} bytes)")
    return data


# -- validation --------------------------------------------------------------------------------


def _numbers(doc: Any) -> Iterator[tuple[str, Any]]:
    """(field path, value) of every number in ``doc`` (iterative)."""
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, dict):
            stack.extend((f"{where}.{k}" if where else str(k), v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(item))
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            yield where or "<top>", item


def _names(doc: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(field path, value) of every name a reader is shown or that keys a table."""
    for section, fields in (("model", ("name", "plugin", "fingerprint")), ("task", ("name", "kind", "plugin"))):
        part = doc.get(section)
        if isinstance(part, dict):
            yield from ((f"{section}.{f}", part.get(f)) for f in fields)
    for key in ("plugins", "auxiliary_models"):
        for i, item in enumerate(doc.get(key) or []):
            if isinstance(item, dict):
                yield from ((f"{key}[{i}].{f}", item.get(f)) for f in ("name", "plugin", "module", "role"))
    main = doc.get("main_score")
    if isinstance(main, dict):
        yield "main_score.name", main.get("name")
    yield "created_at", doc.get("created_at")


def validate_result(doc: Any, source: str = "result") -> None:
    """Raise ResultError (one line) unless ``doc`` matches the schema of its declared version and
    the checks no schema states, for every version: an integer ``schema_version``; every number
    finite; nesting at most :data:`MAX_DEPTH`; names
    (model, task, kind, plugins, metrics) without control characters, line separators or bidi
    controls; metric names ``[a-z0-9_]+``; each ``ci95`` ordered (lower <= upper) and, for
    fraction metrics, value and interval within [0, 1]; main score and sample counts consistent."""
    if not isinstance(doc, dict):
        raise _fail(source, f"not a result object (top level is {type(doc).__name__})")
    version = doc.get("schema_version")
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        raise _fail(source, f"schema_version {version!r} not supported (an integer, one of {list(SUPPORTED_VERSIONS)})")
    if _depth_exceeds(doc, MAX_DEPTH):
        raise _fail(source, f"nested too deeply (more than {MAX_DEPTH} levels)")
    for where, number in _numbers(doc):
        if isinstance(number, float) and not math.isfinite(number):
            raise _fail(source, f"{where}: {number} is not a finite number")
    for where, name in _names(doc):
        if isinstance(name, str) and FORBIDDEN_CHARACTERS.search(name):
            raise _fail(source, f"{where}: {name!r} contains a control character, line separator or bidi control")
    metrics = doc.get("metrics")
    for name in metrics if isinstance(metrics, dict) else ():
        if not _METRIC_NAME.fullmatch(name):
            raise _fail(source, f"metrics: metric name {name!r} is not [a-z0-9_]+")
    problem = first_error(f"result.v{version}", doc)
    if problem:
        raise _fail(source, f"does not match result schema v{version}: {problem}")
    for name, metric in sorted(doc["metrics"].items()):
        parts = [(f"metrics.{name}", metric)]
        parts += [(f"metrics.{name}.breakdown.{output}.{label}", part)
                  for output, table in sorted(metric.get("breakdown", {}).items()) for label, part in sorted(table.items())]
        for where, part in parts:
            value, ci = part["value"], part["ci95"]
            if ci is not None and ci[0] > ci[1]:
                raise _fail(source, f"{where}.ci95: lower bound {ci[0]} is above upper bound {ci[1]}")
            if metric["unit"] == "fraction":
                for field, number in (("value", value), ("ci95[0]", ci and ci[0]), ("ci95[1]", ci and ci[1])):
                    if number is not None and not 0 <= number <= 1:
                        raise _fail(source, f"{where}.{field}: {number} is outside [0, 1] (unit fraction)")
    main = doc["main_score"]
    if main["name"] not in doc["metrics"] or doc["metrics"][main["name"]]["value"] != main["value"]:
        raise _fail(source, f"main_score {main['name']!r} does not match its entry in metrics")
    n = doc["n_samples"]
    if n["evaluated"] > n["total"] or n["partial"] != (n["evaluated"] < n["total"]):
        raise _fail(source, f"n_samples inconsistent: {n}")


def dumps(doc: dict[str, Any]) -> str:
    """Canonical JSON text of a result (sorted keys, two-space indent, trailing newline)."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def read_result(path: Path) -> dict[str, Any]:
    """Read and validate one result file (see the module docstring); every failure is one
    ResultError line naming the file."""
    doc = parse_json(read_bounded(Path(path), MAX_RESULT_BYTES), str(path))
    validate_result(doc, str(path))
    return doc
