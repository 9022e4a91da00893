"""Zero-shot classification with class-name prompts (LAION CLIP_benchmark convention)."""

from __future__ import annotations

from harness import hookimpl
from harness.specs import TaskKindSpec


@hookimpl
def harness_register_task_kinds() -> list[TaskKindSpec]:
    return [
        TaskKindSpec(
            name="zeroshot_classification",
            factory="harness_zeroshot.kind:ZeroShotClassification",
            requires=frozenset({"image", "text"}),
            outputs=frozenset({"logits", "labels"}),
            columns=("image", "label"),
            params_schema={
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "logit_scale": {"type": "number", "exclusiveMinimum": 0, "default": 100.0},
                },
            },
            description="logits = scale * cos(image, class prototype); prototype = renormalised mean of "
            "normalised template embeddings",
        )
    ]
