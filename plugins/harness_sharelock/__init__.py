"""ShareLock (arXiv 2410.07173): light heads over frozen image and language features, and ViTeRB.

- ``harness train sharelock --vision MODEL --language MODEL --pairs SOURCE -o DIR`` trains a head
  (a trainer in the core: :mod:`.job`; the loop in :mod:`.trainer`, defaults in :mod:`.config`) and
  saves it (:mod:`.checkpoint`);
- ``sharelock:DIR`` or ``sharelock:FILE.ckpt`` (official Lightning checkpoints, :mod:`.lightning`)
  is an image+text model usable by every zero-shot task (:mod:`.encoder`);
- the ``viterb`` task kind trains a head per language model under test and measures zero-shot
  accuracy on classes held out of the training captions (:mod:`.viterb`), with metrics
  ``unseen_accuracy`` and ``seen_accuracy`` (``harness_metrics``' per-sample accuracy over either
  side's outputs); ``harness viterb-report RESULTS...`` compares the language models over seeds
  (:mod:`.report`);
- ``tasks/`` ships the default ViTeRB run on the procedural scenes.

Importing this package does not import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import MetricSpec, ModelSpec, TaskKindSpec, TrainerSpec, hookimpl

#: One per-sample top-1 function (rows with a negative label are left out), two mappings of outputs.
_ACCURACY = "harness_metrics.classification:accuracy_per_sample"


@hookimpl
def harness_register_task_kinds() -> list[TaskKindSpec]:
    from .viterb import params_schema

    return [
        TaskKindSpec(
            name="viterb",
            factory="harness_sharelock.viterb:ViTeRB",
            needs=frozenset({"text_embed"}),
            outputs=frozenset({"logits", "labels", "seen_logits", "seen_labels"}),
            columns=("image", "label", "caption"),
            params_schema=params_schema(),
            description="ViTeRB: train a ShareLock head between a frozen image tower (params.vision) and the "
            "model's text features on captions without the unseen class names; zero-shot top-1 on unseen classes",
        )
    ]


@hookimpl
def harness_register_metrics() -> list[MetricSpec]:
    return [
        MetricSpec("unseen_accuracy", _ACCURACY, {"logits": "logits", "labels": "labels"}, interval="wilson",
                   description="ViTeRB: top-1 on rows of unseen classes, among the unseen classes (chance 1/#unseen)"),
        MetricSpec("seen_accuracy", _ACCURACY, {"logits": "seen_logits", "labels": "seen_labels"}, interval="wilson",
                   description="ViTeRB: top-1 on rows of seen classes, among the seen classes"),
    ]


@hookimpl
def harness_register_trainers() -> list[TrainerSpec]:
    from .job import config_schema

    return [TrainerSpec("sharelock", "harness_sharelock.job:ShareLockTrainer", config_schema=config_schema(),
                        description="ShareLock projection head on frozen towers (arXiv 2410.07173)")]


@hookimpl
def harness_register_task_dirs() -> list[Path]:
    return [Path(__file__).parent / "tasks"]


@hookimpl
def harness_resolve_model(name: str) -> ModelSpec | None:
    """``sharelock:DIR`` or ``sharelock:FILE.ckpt``; None for other prefixes."""
    from .encoder import parse

    return parse(name)


@hookimpl
def harness_add_commands(subparsers: Any, parents: list[Any]) -> None:
    """``harness viterb-report``."""
    from .report import add_command

    add_command(subparsers, parents)
