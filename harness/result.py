"""Result documents: the contract between a run and everything that reads its output."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from .errors import ResultError
from .schema import first_error

SCHEMA_VERSION = 4
SUPPORTED_VERSIONS = (1, 2, 3, 4)


def model_id(name: str) -> str:
    """A file-system-safe folder name for a model name (``hf:org/repo`` -> ``hf__org__repo``)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "__", name).strip("._")
    return safe or "model"


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN: undefined values are stored as null."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def validate_result(doc: Any, source: str = "result") -> None:
    """Raise ResultError (one line) unless ``doc`` matches the schema of its declared version."""
    if not isinstance(doc, dict):
        raise ResultError(f"{source}: not a result object (top level is {type(doc).__name__})")
    version = doc.get("schema_version")
    if version not in SUPPORTED_VERSIONS:
        raise ResultError(f"{source}: schema_version {version!r} not supported (known: {list(SUPPORTED_VERSIONS)})")
    problem = first_error(f"result.v{version}", doc)
    if problem:
        raise ResultError(f"{source}: does not match result schema v{version}: {problem}")
    main = doc["main_score"]
    if main["name"] not in doc["metrics"] or doc["metrics"][main["name"]]["value"] != main["value"]:
        raise ResultError(f"{source}: main_score {main['name']!r} does not match its entry in metrics")
    n = doc["n_samples"]
    if n["evaluated"] > n["total"] or n["partial"] != (n["evaluated"] < n["total"]):
        raise ResultError(f"{source}: n_samples inconsistent: {n}")


def dumps(doc: dict[str, Any]) -> str:
    """Canonical JSON text of a result (sorted keys, two-space indent, trailing newline)."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def read_result(path: Path) -> dict[str, Any]:
    """Read and validate one result file."""
    try:
        doc = json.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise ResultError(f"{path}: result file does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultError(f"{path}: not readable JSON: {exc}") from None
    validate_result(doc, str(path))
    return doc
