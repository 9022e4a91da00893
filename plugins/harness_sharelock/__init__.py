"""ShareLock (arXiv 2410.07173): light heads over frozen image and language features, and ViTeRB.

- ``harness train sharelock --vision ENC --language LM --pairs SOURCE -o DIR`` trains a head
  (:mod:`.command`, :mod:`.trainer`, defaults in :mod:`.config`) and saves it (:mod:`.checkpoint`);
- ``sharelock:DIR`` or ``sharelock:FILE.ckpt`` (official Lightning checkpoints, :mod:`.lightning`)
  is an image+text encoder usable by every zero-shot task (:mod:`.encoder`);
- the ``viterb`` task kind trains a head per language model under test and measures zero-shot
  accuracy on classes held out of the training captions (:mod:`.viterb`), with metrics
  ``unseen_accuracy`` and ``seen_accuracy``; ``harness viterb-report RESULTS...`` compares the
  language models over seeds (:mod:`.report`);
- ``tasks/`` ships the default ViTeRB run on the procedural scenes.

Importing this package does not import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import hookimpl
from harness.specs import EncoderSpec, MetricSpec, TaskKindSpec

_SCORES = "harness_sharelock.scores"


@hookimpl
def harness_register_task_kinds() -> list[TaskKindSpec]:
    from .viterb import params_schema

    return [
        TaskKindSpec(
            name="viterb",
            factory="harness_sharelock.viterb:ViTeRB",
            requires=frozenset({"text"}),
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
        MetricSpec("unseen_accuracy", f"{_SCORES}:unseen_accuracy", ("logits", "labels"), interval="wilson",
                   description="ViTeRB: top-1 on rows of unseen classes, among the unseen classes (chance 1/#unseen)"),
        MetricSpec("seen_accuracy", f"{_SCORES}:seen_accuracy", ("seen_logits", "seen_labels"), interval="wilson",
                   description="ViTeRB: top-1 on rows of seen classes, among the seen classes"),
    ]


@hookimpl
def harness_register_task_dirs() -> list[Path]:
    return [Path(__file__).parent / "tasks"]


@hookimpl
def harness_resolve_encoder(name: str) -> EncoderSpec | None:
    """``sharelock:DIR`` or ``sharelock:FILE.ckpt``; None for other prefixes."""
    from .encoder import parse

    return parse(name)


@hookimpl
def harness_add_commands(subparsers: Any, parents: list[Any]) -> None:
    """``harness train sharelock`` and ``harness viterb-report``."""
    from .command import add_commands
    from .report import add_command

    add_commands(subparsers, parents)
    add_command(subparsers, parents)
