"""Zero-shot classification with class-name prompts (LAION CLIP_benchmark convention)."""

from __future__ import annotations

from harness import TaskKindSpec, hookimpl

DEFAULT_TEMPLATES = ("a photo of a {c}.",)
DEFAULT_LOGIT_SCALE = 100.0

PARAMS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "templates": {
            "type": "array", "minItems": 1,
            "items": {"type": "string", "x-template": ["c"]},
            "default": list(DEFAULT_TEMPLATES),
            "description": "prompt templates; {c} is replaced by the class name",
        },
        "classnames": {
            "type": "array", "minItems": 2,
            "items": {"type": "string", "minLength": 1},
            "description": "class names in label order (default: the label column's ClassLabel names)",
        },
        "logit_scale": {"type": "number", "exclusiveMinimum": 0, "default": DEFAULT_LOGIT_SCALE,
                        "description": "logits = logit_scale * cosine similarity"},
    },
}


@hookimpl
def harness_register_task_kinds() -> list[TaskKindSpec]:
    return [
        TaskKindSpec(
            name="zeroshot_classification",
            factory="harness_zeroshot.kind:ZeroShotClassification",
            needs=frozenset({"image_embed", "text_embed"}),
            outputs=frozenset({"logits", "labels"}),
            columns=("image", "label"),
            params_schema=PARAMS_SCHEMA,
            description="logits = scale * cos(image, class prototype); prototype = renormalised mean of "
            "normalised template embeddings",
        )
    ]
