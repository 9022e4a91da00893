"""Load the JSON Schemas shipped in the package and turn violations into one-line errors."""

from __future__ import annotations

import copy
import json
import string
from functools import lru_cache
from importlib import resources
from typing import Any, Iterator

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
    return cls(schema, format_checker=cls.FORMAT_CHECKER)  # date-time: checked with rfc3339-validator


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
    elif error.validator == "not" and isinstance(error.validator_value, dict) and "pattern" in error.validator_value:
        message = f"{_short(repr(error.instance))} contains a character it may not have (control character, line or " \
                  f"paragraph separator, or bidi control)"
    elif error.validator == "oneOf" and error.context:
        message = "must set exactly one source: hub + revision, path, or builder (+ config)" if field_path(error) == "dataset" else best_match(error.context).message
    return f"{field_path(error)}: {message}"


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def first_error(name: str, instance: Any) -> str | None:
    """Describe the most relevant violation of schema ``name``, or None if ``instance`` is valid."""
    error = best_match(_validator(name).iter_errors(instance))
    return None if error is None else describe(error)


def template_fields(template: str) -> set[str]:
    """The ``{name}`` fields of a ``str.format`` template (``""`` for a positional ``{}``)."""
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _x_template(validator: Any, allowed: list[str], instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
    """``"x-template": ["c"]``: a format template whose fields are exactly (all of) ``allowed``."""
    if not isinstance(instance, str):
        return
    try:
        fields = template_fields(instance)
    except ValueError as exc:
        yield ValidationError(f"{instance!r} is not a valid template: {exc}")
        return
    unknown, missing = sorted(fields - set(allowed)), sorted(set(allowed) - fields)
    if unknown:
        yield ValidationError(f"{instance!r} has unknown placeholder(s) {', '.join('{' + f + '}' for f in unknown)}; "
                              f"allowed: {', '.join('{' + f + '}' for f in allowed)}")
    elif missing:
        yield ValidationError(f"{instance!r} must contain {', '.join('{' + f + '}' for f in missing)}")


def _inline_validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema)
    cls = jsonschema.validators.extend(cls, {"x-template": _x_template})
    return cls(schema)


def validate_against(schema: dict[str, Any], instance: Any) -> str | None:
    """Like :func:`first_error`, for a schema given inline (e.g. a task kind's params); understands
    ``"x-template"`` (see :func:`_x_template`)."""
    error = best_match(_inline_validator(schema).iter_errors(instance))
    return None if error is None else describe(error)


def fill_defaults(schema: dict[str, Any], instance: Any) -> Any:
    """A copy of ``instance`` with every missing property that has a ``default`` in ``schema`` filled
    in, recursively through nested objects."""
    out = copy.deepcopy(instance)
    if not isinstance(out, dict) or schema.get("type") not in (None, "object"):
        return out
    for name, sub in (schema.get("properties") or {}).items():
        if not isinstance(sub, dict):
            continue
        if name not in out and "default" in sub:
            out[name] = copy.deepcopy(sub["default"])
        if name in out:
            out[name] = fill_defaults(sub, out[name])
    return out


def checked_params(schema: dict[str, Any], params: Any, where: str, field: str = "params") -> dict[str, Any]:
    """``params`` validated against ``schema`` (empty schema: no params allowed), defaults filled in;
    a violation is one SpecError line ``{where}: {field}.<path>: <problem>``."""
    from .errors import SpecError

    schema = dict(schema) or {"type": "object", "maxProperties": 0}
    problem = validate_against(schema, params)
    if problem:
        path, _, message = problem.partition(": ")
        path = field if path == "<top>" else f"{field}.{path}"
        raise SpecError(f"{where}: {path}: {message}")
    return fill_defaults(schema, params)
