"""Zero-shot image-text retrieval (CLIP convention, as LAION CLIP_benchmark reports it) and a
builder for the Karpathy splits of COCO / Flickr30k read from local files."""

from __future__ import annotations

from harness import DatasetSpec, MetricSpec, TaskKindSpec, hookimpl, preprocessing_choices

KS = (1, 5, 10)
_HERE = "harness_retrieval.kind"
_INPUTS = ("rank", "direction")

PARAMS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "template": {"type": "string", "x-template": ["c"], "default": "{c}",
                     "description": "each caption is inserted as {c} before encoding (default: as it is)"},
        "preprocess": {"enum": preprocessing_choices(),
                       "description": "(default 'model') image preprocessing: 'model' (the model's own transform, "
                       "as CLIP_benchmark) or a named, model-independent one (grain, gvt, sharelock); cached apart"},
    },
}


@hookimpl
def harness_register_task_kinds() -> list[TaskKindSpec]:
    return [
        TaskKindSpec(
            name="zeroshot_retrieval",
            factory=f"{_HERE}:ZeroShotRetrieval",
            needs=frozenset({"image_embed", "text_embed"}),
            outputs=frozenset({"rank", "direction"}),
            columns=("image", "caption"),
            params_schema=PARAMS_SCHEMA,
            records=("direction", "rank"),
            description="image->text and text->image retrieval over one split; one sample per query, "
            "rank = best positive's 0-based rank; hit@k (CLIP_benchmark's recall@k)",
        )
    ]


@hookimpl
def harness_register_metrics() -> list[MetricSpec]:
    specs = []
    for direction, code, words in (("i2t", 0, "image->text (an image query hits if any of its captions is"),
                                   ("t2i", 1, "text->image (a caption query hits if its image is")):
        for k in KS:
            specs.append(MetricSpec(f"{direction}_hit_at_{k}", f"{_HERE}:{direction}_hit_at_{k}", _INPUTS,
                                    interval="wilson", description=f"{words} in the top {k}); CLIP_benchmark "
                                    f"{'text' if code == 0 else 'image'}_retrieval_recall@{k}"))
    return specs


@hookimpl
def harness_register_datasets() -> list[DatasetSpec]:
    return [DatasetSpec(name="karpathy", factory="harness_retrieval.karpathy:build",
                        description="COCO / Flickr30k Karpathy splits from local files: config {annotations: "
                        "dataset_coco.json | dataset_flickr30k.json, images: DIR}")]
