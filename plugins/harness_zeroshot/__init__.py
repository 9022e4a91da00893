"""Zero-shot classification with class-name prompts (LAION CLIP_benchmark convention, or GRAIN's with
descriptors and ``renormalize: false``), and the ``products2023`` builder for user-supplied image folders."""

from __future__ import annotations

from harness import DatasetSpec, TaskKindSpec, hookimpl, preprocessing_choices

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
        "descriptors": {
            "type": "object", "minProperties": 2,
            "additionalProperties": {"type": "array", "items": {"type": "string", "minLength": 1}},
            "description": "GRAIN / Menon & Vondrick class descriptors {classname: [descriptor, ...]} (usually "
            "{$file: x.json}); keys must be the class names in label order. Texts per class: every template + "
            "' which is/which/which has ' + descriptor, for every descriptor",
        },
        "grain_slash_rule": {
            "type": "boolean",
            "description": "(default false) GRAIN's rule for class names with '/' prompted without descriptors: "
            "'<group>/<name>' gives template.format(<name>) + ' of a <group>' (a one-letter group adds nothing)",
        },
        "renormalize": {
            "type": "boolean",
            "description": "(default true) renormalise the mean of the normalised prompt embeddings (CLIP_benchmark: true; "
            "GRAIN: false, the plain mean)",
        },
        "logit_scale": {"type": "number", "exclusiveMinimum": 0, "default": DEFAULT_LOGIT_SCALE,
                        "description": "logits = logit_scale * cosine similarity"},
        "preprocess": {
            "enum": preprocessing_choices(),
            "description": "(default 'model') image preprocessing: 'model' (the model's own transform, as "
            "CLIP_benchmark) or a named, model-independent one of a published protocol (grain: squash resize to "
            "224, bicubic, ImageNet mean/std, as GRAIN's evaluate.py; gvt; sharelock); its features are cached apart",
        },
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
            description="logits = scale * image . class prototype; prototype = mean of normalised prompt "
            "embeddings (renormalised unless renormalize: false); optional GRAIN descriptors",
        )
    ]


@hookimpl
def harness_register_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            name="products2023",
            factory="harness_zeroshot.products:build",
            description="a user-supplied ImageFolder (GRAIN's Products-2023 layout): ROOT/images/<class>/*, "
            "ROOT/classes.json {classname: [descriptor, ...]}; validated on load",
        )
    ]
