"""Example harness plugin: a colour-histogram image encoder and a task spec folder.

Everything here is ordinary harness plugin API: ``register_*`` hooks return specs
(plain data, no torch import), and ``resolve_encoder`` handles open-ended names.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness import hookimpl
from harness.specs import EncoderSpec

_NAME = re.compile(r"^colorhist:rgb-(\d+)$")


def _spec(bins: int) -> EncoderSpec:
    return EncoderSpec(
        name=f"colorhist:rgb-{bins}",
        factory="harness_colorhist.encoder:load",
        modalities=frozenset({"image"}),
        description=f"joint RGB histogram, {bins} bins per channel ({bins ** 3}-d), L1-normalised",
        args={"bins": bins},
    )


@hookimpl
def harness_register_encoders() -> list[EncoderSpec]:
    return [_spec(4)]


@hookimpl
def harness_resolve_encoder(name: str) -> EncoderSpec | None:
    match = _NAME.match(name)
    if match and 2 <= int(match.group(1)) <= 16:
        return _spec(int(match.group(1)))
    return None


@hookimpl
def harness_register_task_dirs() -> list[Path]:
    return [Path(__file__).resolve().parent / "tasks"]
