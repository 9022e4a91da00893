"""The ``hf:`` name grammar and capability detection, without importing torch or transformers.

    hf:ORG/REPO            hub repo at its default branch       hf:openai/clip-vit-base-patch32
    hf:ORG/REPO@REVISION   hub repo pinned to a branch, tag or commit
    hf:/abs/dir            local directory written by save_pretrained
    hf:./rel/dir           relative (also ``../``, ``~/``, or any existing directory)

Local paths are made absolute, so the canonical name says which directory was evaluated.
Capabilities come from ``config.json``'s ``model_type``: dual encoders (CLIP, SigLIP, ...) are
``image_embed``, ``text_embed`` and ``image_tokens``; vision backbones ``image_embed`` and
``image_tokens``. The config is read from the local directory, or from the hub cache when the
repo was downloaded before; otherwise the kind is guessed from the repo name and the loader
checks the guess. A local directory without a config.json, or a config that is not an image
encoder, is an error here, before anything heavy loads.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from harness import ModelLoadError, ModelSpec, UnknownNameError

PREFIX = "hf:"
FACTORY = "harness_hf.encoder:load"
SOURCES = "harness_hf.names:sources"
#: Vision backbones: pooled embeddings and token-level outputs.
IMAGE = frozenset({"image_embed", "image_tokens"})
#: Dual encoders: the same, and text embeddings in the image embedding space.
IMAGE_TEXT = IMAGE | {"text_embed"}
#: Dual encoders: ``get_image_features`` and ``get_text_features`` in one embedding space.
DUAL_TYPES = frozenset({"clip", "siglip", "align", "altclip", "chinese_clip", "metaclip_2"})
#: Repo-name fragments that suggest a dual encoder when config.json is not cached.
DUAL_HINTS = ("clip", "siglip", "align")
#: Model types refused with a reason, although they see images.
UNSUPPORTED = {
    "siglip2": "SigLIP2 NaFlex models take variable-length patch sequences, which harness's (C, H, W) "
               "preprocess cannot carry yet (the fixed-resolution SigLIP2 checkpoints, model_type 'siglip', work)",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
GRAMMAR = "hf:ORG/REPO, hf:ORG/REPO@REVISION, hf:/abs/dir or hf:./rel/dir"

#: Well-known hub models named up front (static data; they fail only at load time when offline).
WELL_KNOWN = (
    ("openai/clip-vit-base-patch32", IMAGE_TEXT, "OpenAI CLIP ViT-B/32"),
    ("google/siglip-base-patch16-224", IMAGE_TEXT, "SigLIP ViT-B/16, 224 px"),
    ("facebook/dinov2-small", IMAGE, "DINOv2 ViT-S/14 (CLS token)"),
    ("facebook/dinov2-base", IMAGE, "DINOv2 ViT-B/14 (CLS token)"),
)


def well_known() -> list[ModelSpec]:
    """Specs of a few well-known hub models, with their capabilities written down."""
    return [ModelSpec(name=f"{PREFIX}{repo}", factory=FACTORY, capabilities=capabilities,
                      description=f"transformers {desc} from the Hugging Face hub",
                      args={"path": repo, "hub": True, "guessed": False})
            for repo, capabilities, desc in WELL_KNOWN]


def kind(capabilities: frozenset[str]) -> str:
    """``image+text`` for dual encoders, ``image`` for vision backbones (for messages)."""
    return "image+text" if "text_embed" in capabilities else "image"


def parse(name: str) -> ModelSpec | None:
    """The spec for an ``hf:`` name; None for other prefixes; a clear error when it cannot be one."""
    if not name.startswith(PREFIX):
        return None
    rest = name[len(PREFIX):]
    if rest.startswith(("/", ".", "~")) or (rest and os.path.isdir(rest)):
        return _local_spec(rest)
    repo, at, revision = rest.partition("@")
    if not _HUB_ID.match(repo) or (at and not revision):
        raise UnknownNameError(f"bad transformers model name {name!r}: expected {GRAMMAR}")
    return _hub_spec(repo, revision or None)


def capabilities_of(config: dict[str, Any], name: str) -> frozenset[str]:
    """Capabilities of a model from its config.json; raises for models harness cannot encode with."""
    model_type = str(config.get("model_type", ""))
    if model_type in UNSUPPORTED:
        raise ModelLoadError(f"cannot load model {name!r}: {UNSUPPORTED[model_type]}")
    if model_type in DUAL_TYPES:
        return IMAGE_TEXT
    if "num_channels" in config:  # every transformers vision backbone config has it
        return IMAGE
    raise ModelLoadError(
        f"cannot load model {name!r}: model_type {model_type or '(none)'!r} is not an image or image+text encoder "
        "(text-only language models: use lm:ORG/REPO; multimodal LLMs and captioners: use vlm:ORG/REPO)")


def _local_spec(path: str) -> ModelSpec:
    path = os.path.abspath(os.path.expanduser(path))
    name = f"{PREFIX}{path}"
    config = os.path.join(path, "config.json")
    if not os.path.isdir(path):
        raise ModelLoadError(f"cannot load model {name!r}: directory not found: {path}")
    if not os.path.isfile(config):
        raise ModelLoadError(f"cannot load model {name!r}: {path} has no config.json (not a save_pretrained directory)")
    capabilities = capabilities_of(_read_json(config, name), name)
    return ModelSpec(
        name=name, factory=FACTORY, capabilities=capabilities,
        description=f"transformers model from the local directory {path}",
        args={"path": path, "hub": False, "guessed": False}, sources=SOURCES,
    )


def _hub_spec(repo: str, revision: str | None) -> ModelSpec:
    name = f"{PREFIX}{repo}" + (f"@{revision}" if revision else "")
    cached = _cached_config(repo, revision)
    if cached is not None:
        capabilities, guessed = capabilities_of(_read_json(cached, name), name), False
    else:
        capabilities = IMAGE_TEXT if any(hint in repo.lower() for hint in DUAL_HINTS) else IMAGE
        guessed = True
    return ModelSpec(
        name=name, factory=FACTORY, capabilities=capabilities,
        description=f"transformers model {repo} from the Hugging Face hub" + (f" at {revision}" if revision else ""),
        args={"path": repo, "hub": True, "guessed": guessed}, revision=revision,
    )


def _cached_config(repo: str, revision: str | None) -> str | None:
    """Path of the repo's config.json in the local hub cache, if it was downloaded before."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo, "config.json", revision=revision)
    except Exception:  # a malformed id or cache entry: fall back to guessing
        return None
    return found if isinstance(found, str) else None


def _read_json(path: str, name: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load model {name!r}: unreadable {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"cannot load model {name!r}: {path} is not a JSON object")
    return data


def sources(spec: ModelSpec) -> list[str] | None:
    """The files a spec's weights come from (``ModelSpec.sources``): a local model directory; None
    for hub models (their snapshot is found by transformers), so those are always built."""
    return None if spec.args.get("hub") else [spec.args["path"]]
