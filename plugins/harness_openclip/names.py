"""The ``openclip:`` name grammar, parsed syntactically (no open_clip or torch import).

    openclip:ARCH/TAG              pretrained tag of open_clip   openclip:ViT-B-32/laion2b_s34b_b79k
    openclip:ARCH/PATH             local checkpoint file         openclip:ViT-B-32//abs/ckpt.pt
    openclip:hf-hub:ORG/REPO       open_clip's hub schema        openclip:hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K
    openclip:local-dir:DIR         open_clip's local schema      openclip:local-dir:./my_model

After ``ARCH/`` the rest is a PATH when it starts with ``/``, ``.`` or ``~``, contains a
``/``, or ends with a checkpoint suffix; otherwise it is a TAG (tags never contain ``/``).
Relative paths are made absolute here, so the canonical name (and the result files) say
which file was evaluated. Whether the arch, tag, file or directory exists is checked at
load time, where open_clip's lists are at hand for suggestions.
"""

from __future__ import annotations

import os

from harness import ModelSpec, UnknownNameError

PREFIX = "openclip:"
FACTORY = "harness_openclip.encoder:load"
SOURCES = "harness_openclip.names:sources"
#: Every open_clip model embeds images and texts in one space; ViT image towers also give tokens
#: (other towers raise IncompatibleError when asked for them).
CAPABILITIES = frozenset({"image_embed", "text_embed", "image_tokens"})
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
HF_HUB = "hf-hub:"
LOCAL_DIR = "local-dir:"
GRAMMAR = "openclip:ARCH/TAG, openclip:ARCH/PATH.pt, openclip:hf-hub:ORG/REPO or openclip:local-dir:DIR"

#: Well-known (arch, tag) pairs named up front; they fail only at load time when offline.
WELL_KNOWN = (
    ("ViT-B-32", "laion2b_s34b_b79k", "ViT-B/32 trained on LAION-2B (34B samples seen)"),
    ("ViT-B-16", "laion2b_s34b_b88k", "ViT-B/16 trained on LAION-2B (34B samples seen)"),
    ("ViT-L-14", "openai", "ViT-L/14, OpenAI's original CLIP weights"),
    ("ViT-H-14", "laion2b_s32b_b79k", "ViT-H/14 trained on LAION-2B (32B samples seen)"),
)


def well_known() -> list[ModelSpec]:
    """Specs of the well-known pretrained tags (static data)."""
    return [tag_spec(arch, tag, f"open_clip {desc}") for arch, tag, desc in WELL_KNOWN]


def tag_spec(arch: str, tag: str, description: str = "") -> ModelSpec:
    """``openclip:ARCH/TAG``: open_clip's architecture ``arch`` with pretrained tag ``tag``."""
    return ModelSpec(
        name=f"{PREFIX}{arch}/{tag}", factory=FACTORY, capabilities=CAPABILITIES,
        description=description or f"open_clip {arch} with pretrained tag {tag!r}",
        args={"source": "tag", "model_name": arch, "pretrained": tag}, revision=tag,
    )


def parse(name: str) -> ModelSpec | None:
    """The spec for an ``openclip:`` name; None for other prefixes; a grammar error otherwise."""
    if not name.startswith(PREFIX):
        return None
    rest = name[len(PREFIX):]
    if rest.startswith(HF_HUB):
        return _hub_spec(name, rest[len(HF_HUB):])
    if rest.startswith(LOCAL_DIR):
        return _dir_spec(name, rest[len(LOCAL_DIR):])
    arch, slash, weights = rest.partition("/")
    if not arch or not slash or not weights:
        raise UnknownNameError(f"bad open_clip model name {name!r}: expected {GRAMMAR}")
    if _is_path(weights):
        path = os.path.abspath(os.path.expanduser(weights))
        return ModelSpec(
            name=f"{PREFIX}{arch}/{path}", factory=FACTORY, capabilities=CAPABILITIES,
            description=f"open_clip {arch} with weights from {path}",
            args={"source": "file", "model_name": arch, "pretrained": path}, sources=SOURCES,
        )
    return tag_spec(arch, weights)


def _is_path(weights: str) -> bool:
    return (weights.startswith(("/", ".", "~")) or "/" in weights or os.sep in weights
            or weights.lower().endswith(CHECKPOINT_SUFFIXES))


def _hub_spec(name: str, repo: str) -> ModelSpec:
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts) or "@" in repo:
        raise UnknownNameError(
            f"bad open_clip model name {name!r}: expected openclip:hf-hub:ORG/REPO "
            "(open_clip's hub schema cannot pin a revision)")
    return ModelSpec(
        name=f"{PREFIX}{HF_HUB}{repo}", factory=FACTORY, capabilities=CAPABILITIES,
        description=f"open_clip model from the Hugging Face hub repo {repo}",
        args={"source": "hf-hub", "model_name": f"{HF_HUB}{repo}", "pretrained": None, "repo": repo},
    )


def _dir_spec(name: str, directory: str) -> ModelSpec:
    if not directory:
        raise UnknownNameError(f"bad open_clip model name {name!r}: expected openclip:local-dir:DIR")
    path = os.path.abspath(os.path.expanduser(directory))
    return ModelSpec(
        name=f"{PREFIX}{LOCAL_DIR}{path}", factory=FACTORY, capabilities=CAPABILITIES,
        description=f"open_clip model from the local directory {path}",
        args={"source": "local-dir", "model_name": f"{LOCAL_DIR}{path}", "pretrained": None, "path": path},
        sources=SOURCES,
    )


def sources(spec: ModelSpec) -> list[str] | None:
    """The files a spec's weights come from (``ModelSpec.sources``): a local checkpoint file or
    directory; None for pretrained tags and hub repos (their files are found by open_clip), so
    those are always built."""
    source = spec.args.get("source")
    if source == "file":
        return [spec.args["pretrained"]]
    return [spec.args["path"]] if source == "local-dir" else None
