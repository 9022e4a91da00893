"""The ``vqa`` kind's params: schema and defaults (cheap to import: ``harness list`` reads them)."""

from __future__ import annotations

from harness import IMAGE_PLACEHOLDER

#: The default prompt (LLaVA-1.5's short-answer VQA prompt); also ``tasks/vqa/short_answer_prompt.v1.json``.
DEFAULT_PROMPT = "{question}\nAnswer the question using a single word or phrase."
DEFAULT_MAX_NEW_TOKENS = 10

PARAMS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "prompt": {"type": "string", "minLength": 1, "x-template": ["question"], "default": DEFAULT_PROMPT,
                   "description": "the prompt; {question} is replaced by the row's question; the image goes "
                   f"before the text, or where {IMAGE_PLACEHOLDER} stands (at most once)"},
        "max_new_tokens": {"type": "integer", "minimum": 1, "maximum": 1024, "default": DEFAULT_MAX_NEW_TOKENS,
                           "description": "longest answer, in tokens (decoding is greedy)"},
        "stop": {"type": "array", "items": {"type": "string", "minLength": 1}, "default": [],
                 "description": "strings that end an answer (cut from it)"},
    },
}
