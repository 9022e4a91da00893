"""LENS prompts from versioned templates (``data/prompts.v1.json``), without torch.

A template is plain text with placeholders: ``{name}`` inserts a module output as text,
``{name|SEP}`` joins a list with ``SEP`` (which may hold newlines, not ``}``). Names: ``tags``,
``attributes``, ``captions`` (the sampled captions), ``caption`` (the beam-search caption), ``ocr``
(the OCR lines) and ``question`` (the request's text). A missing output (no OCR module) is empty;
an empty list gives an empty join (``"Tags:\\n-"`` stays, as in the reference code).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Mapping

FIELDS = ("tags", "attributes", "captions", "caption", "ocr", "question")
_PLACEHOLDER = re.compile(r"\{(\w+)(?:\|([^}]*))?\}")


def render(template: str, values: Mapping[str, Any]) -> str:
    """``template`` with every placeholder filled from ``values`` (see the module docstring)."""

    def fill(match: re.Match[str]) -> str:
        name, sep = match.group(1), match.group(2)
        if name not in FIELDS:
            raise ValueError(f"LENS template: unknown placeholder {{{name}}} (known: {', '.join(FIELDS)})")
        value = values.get(name)
        if value is None:
            return ""
        if isinstance(value, (list, tuple)):
            return (sep if sep is not None else " ").join(str(v) for v in value)
        return str(value)

    return _PLACEHOLDER.sub(fill, template)


def template_id(template: Mapping[str, Any]) -> str:
    """``lens-prompt:MODE.vN:sha256:<12 hex>``: the mode, the templates' version and the text's digest
    (the LENS model's ``chat_template``, so the response store keys each prompt apart)."""
    text_digest = hashlib.sha256(str(template["text"]).encode()).hexdigest()[:12]
    return f"lens-prompt:{template['mode']}.v{template['version']}:sha256:{text_digest}"
