"""LENS (arXiv 2306.16410): a frozen language model that sees through text from vision modules.

``lens:tags=MODEL,captions=MODEL,reasoner=MODEL[,KEY=VALUE...]`` or ``lens:CONFIG.yaml`` (grammar
and defaults: :mod:`.names`) is a model with ``generate`` and ``loglikelihood``, built from other
harness models (:mod:`.model`): a CLIP-style tagger scores tag and attribute vocabularies, a
captioner writes a beam-search caption and seeded sampled captions, an optional OCR engine reads
text (:mod:`.ocr`), and the reasoner answers from a prompt of a versioned template
(:mod:`.prompts`, ``data/prompts.v1.json``). Every generative task kind can use it; the module
outputs travel in ``Generation.details`` to the per-sample records of kinds that keep them.

Importing this package does not import torch.
"""

from __future__ import annotations

from harness import ModelSpec, hookimpl


@hookimpl
def harness_resolve_model(name: str) -> ModelSpec | None:
    """``lens:...``; None for other prefixes."""
    from .names import parse

    return parse(name)
