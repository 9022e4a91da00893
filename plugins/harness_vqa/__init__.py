"""Open-ended visual question answering: the VQA accuracy metric (four normalisation modes, each a
metric name), the ``vqa`` task kind for generative models, builders for the VQA JSON formats, and
``harness vqa-submission`` (the EvalAI answer file of a test-dev run).

Metrics (per question: mean over the leave-one-out subsets of the human answers of
``min(1, matches / 3)``; see :mod:`harness_vqa.metric` for the exact rules):

- ``vqa_accuracy``: the current official GT-Vision-Lab evaluator (normalise only when the human
  answers disagree);
- ``vqa_accuracy_evalai``: the EvalAI server / MMF processor, both sides always normalised;
- ``vqa_accuracy_legacy``: the pre-2021 official evaluator and LAVIS (prediction always normalised,
  answers punctuation-only when they disagree);
- ``vqa_accuracy_gvt``: GVT's substring matching (only to reproduce GVT's numbers).

Each is reported overall and per ``answer_type`` and ``question_type``, with bootstrap intervals.
"""

from __future__ import annotations

from typing import Any

from harness import DatasetSpec, MetricSpec, TaskKindSpec, hookimpl

from .params import PARAMS_SCHEMA

_METRIC = "harness_vqa.metric"
_INPUTS = {"predictions": "predictions", "answers": "answers"}
#: Outputs the metrics are also reported over, each subset with its interval.
BREAKDOWN = ("answer_type", "question_type")
#: Outputs kept per sample in the records file (``harness rescore`` recomputes any mode from them).
#: ``details``: the model's ``Generation.details`` (None when it gives none).
RECORDS = ("prompts", "predictions", "answers", "question_ids", "answer_type", "question_type", "details")
OUTPUTS = frozenset(RECORDS)
METRICS = (
    ("vqa_accuracy", "vqa_accuracy", "official VQA accuracy (GT-Vision-Lab vqaEval.py, 2021): answers and "
     "prediction normalised only when the human answers disagree; leave-one-out min(1, matches/3)"),
    ("vqa_accuracy_evalai", "vqa_accuracy_evalai", "VQA accuracy with the EvalAI/MMF answer processor on both "
     "sides, always (the EvalAI server, TextVQA, lmms-eval OK-VQA)"),
    ("vqa_accuracy_legacy", "vqa_accuracy_legacy", "VQA accuracy as before 2021 and in LAVIS: prediction always "
     "normalised, human answers punctuation-only and only when they disagree"),
    ("vqa_accuracy_gvt", "vqa_accuracy_gvt", "GVT's VQA accuracy: legacy normalisation and substring matching "
     "(lenient; only to reproduce GVT)"),
)


@hookimpl
def harness_register_metrics() -> list[MetricSpec]:
    return [MetricSpec(name, f"{_METRIC}:{fn}", _INPUTS, interval="bootstrap", unit="fraction", reduce="mean",
                       description=description, breakdown=BREAKDOWN)
            for name, fn, description in METRICS]


@hookimpl
def harness_register_task_kinds() -> list[TaskKindSpec]:
    return [TaskKindSpec(
        name="vqa",
        factory="harness_vqa.kind:VQA",
        needs=frozenset({"generate"}),
        outputs=OUTPUTS,
        columns=("image", "question"),
        params_schema=PARAMS_SCHEMA,
        description="open-ended VQA: greedy answer to the formatted prompt with the image; optional roles answers, "
        "question_id, answer_type, question_type",
        records=RECORDS,
    )]


@hookimpl
def harness_register_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec("vqa_json", "harness_vqa.data:build_vqa_json", version="1",
                    description="official VQA JSON (VQAv2, OK-VQA): questions, optional annotations, image folder"),
        DatasetSpec("textvqa_json", "harness_vqa.data:build_textvqa_json", version="1",
                    description="TextVQA JSON (TextVQA_0.5.1_*.json) and its image folder"),
        DatasetSpec("vizwiz_json", "harness_vqa.data:build_vizwiz_json", version="1",
                    description="VizWiz-VQA JSON ({train,val,test}.json) and its image folder"),
    ]


@hookimpl
def harness_add_commands(subparsers: Any, parents: list[Any]) -> None:
    """``harness vqa-submission``."""
    from .submission import add_command

    add_command(subparsers, parents)
