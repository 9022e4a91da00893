"""Counting: encoder probes, generative counting and identification with GVTBench's protocol, and
builders for the counting benchmarks users know (GVTBench, TallyQA, CountBenchQA).

Task kinds:

- ``count_probe`` (needs ``image_embed``): a ridge (or logistic) probe from frozen image features to
  a per-image count, fitted on ``params.train_split`` (:mod:`harness_counting.probe`);
- ``counting_qa`` and ``identification_qa`` (need ``generate``): greedy answers to counting and
  yes/no questions, first sentence kept as GVT does, raw answers, prompts and targets kept in the
  records (:mod:`harness_counting.generative`).

Metrics (each parsing mode its own name, so ``harness rescore --metric`` switches modes; see
:mod:`harness_counting.parsing` for the exact rules and :mod:`harness_counting.metrics`):

- ``count_exact`` / ``count_exact_gvt``: the count equals the target (Wilson interval);
- ``count_within1`` / ``count_within1_gvt``: at most one off;
- ``count_mae`` / ``count_mae_gvt``: mean absolute error (raw, lower is better);
- ``count_rmse`` / ``count_rmse_gvt``: root mean squared error, a whole-set statistic
  (``reduce="none"``) with a bootstrap interval of the statistic itself;
- ``count_answered``: share of answers in which the strict parser finds a count;
- ``yesno_accuracy`` / ``yesno_accuracy_gvt``: identification accuracy.

The per-sample count metrics are also reported by ``count_bin`` (GVT's bins by true count) and the
yes/no ones by ``objects_bin`` (objects in the image: <10, 10-19, >=20). Numeric predictions (the
probe) are rounded half up; the ``_gvt`` metrics are undefined for them (nothing to parse).

Dataset builders: ``gvtbench``, ``tallyqa``, ``countbenchqa`` (:mod:`harness_counting.data`).
"""

from __future__ import annotations

from harness import DatasetSpec, MetricSpec, TaskKindSpec, hookimpl

from .params import PROBE_SCHEMA, QA_SCHEMA

_METRICS = "harness_counting.metrics"
_COUNT_INPUTS = ("predictions", "targets")
COUNT_BREAKDOWN = ("count_bin",)
YESNO_BREAKDOWN = ("objects_bin",)
PROBE_RECORDS = ("predictions", "targets", "count_bin")
COUNTING_RECORDS = ("prompts", "responses", "predictions", "targets", "n_objects", "count_bin")
IDENTIFICATION_RECORDS = ("prompts", "responses", "predictions", "targets", "n_objects", "objects_bin")
_MODES = (("", "strict parser: number words zero to twenty, no/none and digits as whole words, any case"),
          ("_gvt", "GVT's extract_digit: case-sensitive substring replacement of none..eight and 'nive', first "
                   "integer, else 0 (text predictions only)"))


@hookimpl
def harness_register_metrics() -> list[MetricSpec]:
    specs = []
    for suffix, how in _MODES:
        specs += [
            MetricSpec(f"count_exact{suffix}", f"{_METRICS}:count_exact{suffix}", _COUNT_INPUTS, interval="wilson",
                       breakdown=COUNT_BREAKDOWN, description=f"the count equals the target ({how})"),
            MetricSpec(f"count_within1{suffix}", f"{_METRICS}:count_within1{suffix}", _COUNT_INPUTS,
                       interval="wilson", breakdown=COUNT_BREAKDOWN,
                       description=f"the count is at most one off the target ({how})"),
            MetricSpec(f"count_mae{suffix}", f"{_METRICS}:count_mae{suffix}", _COUNT_INPUTS, higher_is_better=False,
                       unit="raw", breakdown=COUNT_BREAKDOWN,
                       description=f"mean absolute error of the count ({how})"),
            MetricSpec(f"count_rmse{suffix}", f"{_METRICS}:count_rmse{suffix}", _COUNT_INPUTS,
                       higher_is_better=False, unit="raw", reduce="none",
                       description=f"root mean squared error of the count, bootstrap interval of the statistic "
                       f"({how})"),
        ]
    specs += [
        MetricSpec("count_answered", f"{_METRICS}:count_answered", ("predictions",), interval="wilson",
                   description="share of answers in which the strict parser finds a count (1 for numeric predictions)"),
        MetricSpec("yesno_accuracy", f"{_METRICS}:yesno_accuracy", _COUNT_INPUTS, interval="wilson",
                   breakdown=YESNO_BREAKDOWN,
                   description="the answer's first word (yes/no, any case, punctuation stripped) equals the target's"),
        MetricSpec("yesno_accuracy_gvt", f"{_METRICS}:yesno_accuracy_gvt", _COUNT_INPUTS, interval="wilson",
                   breakdown=YESNO_BREAKDOWN,
                   description="GVT's test: 'yes'/'no' anywhere in the lower-cased answer, for a target containing "
                   "'Yes'/'No' (substring: 'not', 'know' say no)"),
    ]
    return specs


@hookimpl
def harness_register_task_kinds() -> list[TaskKindSpec]:
    return [
        TaskKindSpec(
            name="count_probe", factory="harness_counting.probe:CountProbeKind", needs=frozenset({"image_embed"}),
            outputs=frozenset(PROBE_RECORDS), columns=("image", "count"), params_schema=PROBE_SCHEMA,
            records=PROBE_RECORDS,
            description="ridge (or logistic) probe from frozen image embeddings of a train split to a per-image "
            "count, scored on the task split"),
        TaskKindSpec(
            name="counting_qa", factory="harness_counting.generative:CountingQA", needs=frozenset({"generate"}),
            outputs=frozenset(COUNTING_RECORDS), columns=("image", "question", "answer"), params_schema=QA_SCHEMA,
            records=COUNTING_RECORDS,
            description="counting questions answered greedily (GVTBench OC protocol: question as prompt, 32 "
            "tokens, first sentence); optional role n_objects"),
        TaskKindSpec(
            name="identification_qa", factory="harness_counting.generative:IdentificationQA",
            needs=frozenset({"generate"}), outputs=frozenset(IDENTIFICATION_RECORDS),
            columns=("image", "question", "answer"), params_schema=QA_SCHEMA, records=IDENTIFICATION_RECORDS,
            description="yes/no object identification answered greedily (GVTBench MCI protocol); optional role "
            "n_objects"),
    ]


@hookimpl
def harness_register_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec("gvtbench", "harness_counting.data:build_gvtbench", version="1",
                    description="GVTBench records ({image_id, text_in, text_out, n_obj_exist} JSON) with COCO "
                    "val2017 or VCR images (task: count or identify)"),
        DatasetSpec("tallyqa", "harness_counting.data:build_tallyqa", version="1",
                    description="TallyQA JSON (test.json/train.json) with its Visual Genome and COCO images "
                    "(subset: simple, complex or all)"),
        DatasetSpec("countbenchqa", "harness_counting.data:build_countbenchqa", version="1",
                    description="CountBenchQA parquet as published (vikhyatk/CountBenchQA data/), or JSON with an "
                    "image folder"),
    ]
