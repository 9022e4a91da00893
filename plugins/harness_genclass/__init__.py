"""Generative classification: a model with ``generate`` and ``loglikelihood`` (``vlm:``, ``lens:``...)
answers a question listing the class names; the answer is mapped to a class by a documented rule
(:mod:`harness_genclass.kind`), so every zero-shot classification dataset runs on generative models.

Metrics: ``generative_accuracy`` (prediction == label), ``generative_mean_per_class_recall`` and
``answer_match_share`` (the share of rows whose class the answer named, not the log-likelihood fallback).
"""

from __future__ import annotations

from harness import MetricSpec, TaskKindSpec, hookimpl

DEFAULT_PROMPT = "What is in the image? Answer with one of: {classes}."
DEFAULT_CONTINUATION = " {c}"
DEFAULT_MAX_NEW_TOKENS = 10
RANKS = ("per_token", "sum")
#: Outputs kept per sample in the records file.
RECORDS = ("prompts", "answers", "predictions", "labels", "decided", "details")
OUTPUTS = frozenset(RECORDS)

PARAMS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "prompt": {"type": "string", "minLength": 1, "default": DEFAULT_PROMPT,
                   "description": "the question; {classes} (optional, at most its only field) is replaced by the "
                   "class names joined with class_separator, in label order"},
        "classnames": {"type": "array", "minItems": 2, "items": {"type": "string", "minLength": 1},
                       "description": "class names in label order (default: the label column's ClassLabel names)"},
        "class_separator": {"type": "string", "default": ", ", "description": "joins the class names in {classes}"},
        "continuation": {"type": "string", "minLength": 1, "x-template": ["c"], "default": DEFAULT_CONTINUATION,
                         "description": "the text scored after the prompt for each class when the answer names "
                         "none ({c}: the class name)"},
        "rank": {"type": "string", "enum": list(RANKS), "default": "per_token",
                 "description": "fallback ranking: per_token (log-likelihood / number of continuation tokens, "
                 "the default: raw sums favour short class names) or sum (raw log-likelihood)"},
        "max_new_tokens": {"type": "integer", "minimum": 1, "maximum": 1024, "default": DEFAULT_MAX_NEW_TOKENS,
                           "description": "longest answer, in tokens (decoding is greedy)"},
        "stop": {"type": "array", "items": {"type": "string", "minLength": 1}, "default": ["\n"],
                 "description": "strings that end an answer (cut from it)"},
    },
}

_HERE = "harness_genclass.metric"
_INPUTS = {"predictions": "predictions", "labels": "labels"}


@hookimpl
def harness_register_task_kinds() -> list[TaskKindSpec]:
    return [TaskKindSpec(
        name="generative_classification",
        factory="harness_genclass.kind:GenerativeClassification",
        needs=frozenset({"generate", "loglikelihood"}),
        outputs=OUTPUTS,
        columns=("image", "label"),
        params_schema=PARAMS_SCHEMA,
        description="classification by a generated answer: normalised exact match to a class name, else the class "
        "whose name the model finds most likely after the prompt (params.rank)",
        records=RECORDS,
    )]


@hookimpl
def harness_register_metrics() -> list[MetricSpec]:
    return [
        MetricSpec("generative_accuracy", f"{_HERE}:correct", _INPUTS, interval="wilson",
                   description="predicted class (answer match, else log-likelihood rank) equals the label "
                   "(rows with label < 0 ignored)"),
        MetricSpec("generative_mean_per_class_recall", f"{_HERE}:correct", _INPUTS, interval="bootstrap",
                   reduce="class_mean", classes_from="labels",
                   description="generative_accuracy averaged over the classes present"),
        MetricSpec("answer_match_share", f"{_HERE}:matched", {"decided": "decided", "labels": "labels"},
                   interval="wilson",
                   description="share of rows whose answer named a class (normalised exact match); the rest "
                   "were ranked by log-likelihood"),
    ]
