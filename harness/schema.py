"""Load the JSON Schemas shipped in the package and turn violations into one-line errors."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    """Return ``harness/schemas/<name>.schema.json`` as a dict."""
    text = resources.files("harness").joinpath("schemas", f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)


@lru_cache(maxsize=None)
def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def field_path(error: ValidationError) -> str:
    """``dataset.revision``-style path of the offending field (``<top>`` for the root)."""
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in error.absolute_path]
    return ".".join(parts).replace(".[", "[") or "<top>"


def describe(error: ValidationError) -> str:
    """One line: the field, the problem and, where the schema knows them, the allowed values."""
    message = error.message
    if error.validator == "additionalProperties" and isinstance(error.schema, dict):
        allowed = sorted(error.schema.get("properties", {}))
        message += f"; allowed keys: {', '.join(allowed)}"
    elif error.validator == "oneOf" and error.context:
        message = "must set exactly one source: hub + revision, path, or builder (+ config)" if field_path(error) == "dataset" else best_match(error.context).message
    return f"{field_path(error)}: {message}"


def first_error(name: str, instance: Any) -> str | None:
    """Describe the most relevant violation of schema ``name``, or None if ``instance`` is valid."""
    error = best_match(_validator(name).iter_errors(instance))
    return None if error is None else describe(error)


def validate_against(schema: dict[str, Any], instance: Any) -> str | None:
    """Like :func:`first_error`, for a schema given inline (e.g. a task kind's params)."""
    cls = jsonschema.validators.validator_for(schema)
    error = best_match(cls(schema).iter_errors(instance))
    return None if error is None else describe(error)
