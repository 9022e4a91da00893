"""``sharelock:PATH``: a trained ShareLock head on its frozen towers, as an image+text model.

PATH is a folder written by ``harness train sharelock`` (``sharelock.json`` +
``sharelock.safetensors``) or an official Lightning ``.ckpt``. ``encode_image`` = the vision
tower's features through the vision projector; ``encode_text`` = the language tower's
features through the language projector; both L2-normalised, in the shared space. Every
zero-shot task can use it like any CLIP model (capabilities ``image_embed`` and ``text_embed``).

Towers are loaded by harness name (recorded in the checkpoint) with ``LoadContext.model``: the
run's plugins and execution config, each loaded once per run. For harness checkpoints the towers'
weight fingerprints must equal the recorded ones: a head is only meaningful on the exact features
it was trained on. The seed is part of a tower only where it decides the weights (a randomly
initialised tower, ``torchvision:ARCH/random``): a tower loaded with the run's seed whose
fingerprint differs is loaded again with the seed it was trained with (``load_seed``), so a head
means the same model under every ``--seed``; pretrained towers never load twice. Preprocessing is
the vision tower's own, except for official checkpoints, which use ShareLock's deterministic
evaluation transform.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

from harness import LoadContext, ModelLoadError, ModelSpec, UnknownNameError, n_parameters, state_fingerprint

PREFIX = "sharelock:"
FACTORY = "harness_sharelock.encoder:load"
CAPABILITIES = frozenset({"image_embed", "text_embed"})
#: Role in the checkpoint -> the capability the tower must have.
TOWERS = {"vision": "image_embed", "language": "text_embed"}


def parse(name: str) -> ModelSpec | None:
    """Spec of a ``sharelock:PATH`` name (the path made absolute and checked); None for other prefixes."""
    if not name.startswith(PREFIX):
        return None
    rest = name[len(PREFIX):]
    if not rest:
        raise UnknownNameError(f"model {name!r}: expected {PREFIX}DIR (from `harness train sharelock`) or {PREFIX}FILE.ckpt")
    path = os.path.abspath(os.path.expanduser(rest))
    if os.path.isdir(path):
        kind = "folder"
    elif os.path.isfile(path) and path.endswith(".ckpt"):
        kind = "lightning"
    else:
        raise ModelLoadError(f"cannot load model {name!r}: {path} is neither a ShareLock checkpoint folder nor a .ckpt file")
    return ModelSpec(name=f"{PREFIX}{path}", factory=FACTORY, capabilities=CAPABILITIES, args={"path": path, "kind": kind},
                     description=f"ShareLock head on frozen towers, from {path}")


def sharelock_transform() -> Any:
    """The official evaluation transform: Resize(256) -> CenterCrop(224) -> tensor -> ImageNet Normalize."""
    from harness import ensure_torchvision

    ensure_torchvision()
    from torchvision import transforms

    return transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                               transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])


class ShareLockEncoder:
    """Image and text embedder: frozen towers + the trained projectors."""

    def __init__(self, head: Any, vision: Any, language: Any, meta: dict[str, Any], device: str) -> None:
        self.head, self.vision, self.language = head.to(device).eval(), vision, language
        self.meta, self.device = meta, device
        self.embed_dim: int | None = head.embed_dim
        self._provenance: dict[str, Any] | None = None
        self.transform = sharelock_transform() if meta.get("transform") == "sharelock" else None

    def preprocess(self, image: Any) -> Any:
        return self.transform(image) if self.transform is not None else self.vision.preprocess(image)

    def encode_image(self, pixels: Any) -> Any:
        import torch

        with torch.no_grad():
            return self.head.vision_projector(self.vision.encode_image(pixels).float().to(self.device))

    def encode_text(self, texts: Sequence[str]) -> Any:
        import torch

        with torch.no_grad():
            return self.head.language_projector(self.language.encode_text(texts).float().to(self.device))

    def provenance(self) -> dict[str, Any]:
        """Fingerprint over the head and both towers' fingerprints; parameters of all three."""
        if self._provenance is None:
            towers_ = [t.provenance() for t in (self.vision, self.language)]
            parts = [state_fingerprint(self.head)] + [t["fingerprint"] for t in towers_]
            self._provenance = {"revision": self.meta.get("revision"),
                                "fingerprint": hashlib.sha256("|".join(parts).encode()).hexdigest(),
                                "n_parameters": n_parameters(self.head) + sum(int(t.get("n_parameters") or 0) for t in towers_)}
        return dict(self._provenance)


def _fingerprint(tower: Any) -> Any:
    return tower.provenance().get("fingerprint")


def _check_tower(role: str, recorded: dict[str, Any], tower: Any, where: str) -> None:
    expected = recorded.get("fingerprint")
    actual = _fingerprint(tower)
    if expected and actual != expected:
        raise ModelLoadError(f"{where}: the {role} tower {recorded.get('name')!r} has weights fingerprint {str(actual)[:12]}..., "
                             f"but the head was trained on features of {str(expected)[:12]}...")


def load_head(spec: ModelSpec) -> tuple[Any, dict[str, Any]]:
    """(head, meta) from a folder or a Lightning file."""
    from . import checkpoint, lightning

    path = Path(spec.args["path"])
    return lightning.load(path) if spec.args["kind"] == "lightning" else checkpoint.load(path)


def load_tower(ctx: LoadContext, recorded: dict[str, Any], capability: str) -> Any:
    """The tower ``recorded["name"]`` as the head was trained on it (see the module docstring): loaded
    with the run's seed, and again with the recorded ``load_seed`` only when that changes its weights."""
    tower = ctx.model(recorded["name"], capability)
    seed = recorded.get("load_seed")
    expected = recorded.get("fingerprint")
    if expected and _fingerprint(tower) != expected and seed is not None and int(seed) != ctx.seed:
        tower = ctx.model(recorded["name"], capability, seed=int(seed))
    return tower


def load(spec: ModelSpec, ctx: LoadContext) -> ShareLockEncoder:
    """Factory named by ``sharelock:`` specs: the head, then both towers by harness name."""
    head, meta = load_head(spec)
    loaded = {}
    for role, capability in TOWERS.items():
        recorded = meta.get(role) or {}
        if not recorded.get("name"):
            official = recorded.get("official_name")
            raise ModelLoadError(f"cannot load model {spec.name!r}: no harness model is known for its {role} tower "
                                 f"{official!r} (known: {', '.join(_known_official(role))})")
        loaded[role] = load_tower(ctx, recorded, capability)
        _check_tower(role, recorded, loaded[role], spec.name)
    meta = dict(meta, revision=meta.get("revision") or _weights_digest(spec))
    return ShareLockEncoder(head, loaded["vision"], loaded["language"], meta, ctx.device)


def _known_official(role: str) -> list[str]:
    from .lightning import VISION_TOWERS

    return sorted(VISION_TOWERS) if role == "vision" else ["any transformers language model id"]


def _weights_digest(spec: ModelSpec) -> str:
    """``sha256:<hex>`` of the weights file (the head's revision)."""
    from .checkpoint import WEIGHTS

    path = Path(spec.args["path"])
    path = path / WEIGHTS if path.is_dir() else path
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"
