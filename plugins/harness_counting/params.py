"""Params schemas and defaults of the counting kinds (cheap to import: ``harness list`` reads them)."""

from __future__ import annotations

from harness import IMAGE_PLACEHOLDER

DEFAULT_ALPHA_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
DEFAULT_C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
DEFAULT_VAL_FRACTION = 0.2
DEFAULT_MAX_ITER = 1000

PROBE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["train_split"],
    "properties": {
        "train_split": {"type": "string", "minLength": 1,
                        "description": "split of the same dataset the probe is fitted on (must differ from "
                        "dataset.split)"},
        "method": {"enum": ["ridge", "logistic"], "default": "ridge",
                   "description": "ridge: regression of the count (rounded to score); logistic: classification over "
                   "the count values the train split shows"},
        "alpha_grid": {"type": "array", "minItems": 1, "uniqueItems": True,
                       "items": {"type": "number", "exclusiveMinimum": 0}, "default": list(DEFAULT_ALPHA_GRID),
                       "description": "ridge strengths tried (method ridge); the one with the lowest validation MSE "
                       "wins"},
        "C_grid": {"type": "array", "minItems": 1, "uniqueItems": True,
                   "items": {"type": "number", "exclusiveMinimum": 0}, "default": list(DEFAULT_C_GRID),
                   "description": "inverse L2 strengths tried (method logistic); the best validation accuracy wins"},
        "val_fraction": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1,
                         "default": DEFAULT_VAL_FRACTION,
                         "description": "seeded share of the train split held out to choose the strength"},
        "max_iter": {"type": "integer", "minimum": 1, "default": DEFAULT_MAX_ITER,
                     "description": "L-BFGS iterations per logistic fit"},
        "train_limit": {"type": "integer", "minimum": 1,
                        "description": "fit on a seeded random subset of at most this many train rows"},
        "class_index": {"type": "integer", "minimum": 0,
                        "description": "when the count column holds a list per row (e.g. the scenes' counts per "
                        "shape), the position whose count is the target"},
    },
}

#: GVTBench's protocol: the question itself is the prompt (no wrapper), greedy, 32 new tokens.
DEFAULT_PROMPT = "{question}"
DEFAULT_MAX_NEW_TOKENS = 32

QA_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "prompt": {"type": "string", "minLength": 1, "x-template": ["question"], "default": DEFAULT_PROMPT,
                   "description": "the prompt; {question} is the row's question (GVTBench: the question alone); "
                   f"the image goes before the text, or where {IMAGE_PLACEHOLDER} stands (at most once)"},
        "max_new_tokens": {"type": "integer", "minimum": 1, "maximum": 1024, "default": DEFAULT_MAX_NEW_TOKENS,
                           "description": "longest answer, in tokens (decoding is greedy)"},
        "stop": {"type": "array", "items": {"type": "string", "minLength": 1}, "default": [],
                 "description": "strings that end an answer (cut from it)"},
        "first_sentence": {"type": "boolean", "default": True,
                           "description": "score only the answer's first sentence, as GVT's postprocess does "
                           "(periods split sentences, newlines are deleted, '.' is appended)"},
    },
}
