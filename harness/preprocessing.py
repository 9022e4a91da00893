"""Named, versioned, model-independent image preprocessings of the published protocols.

The evaluation protocols of the seed systems fix the image transform, whatever the model (GRAIN and
GVT squash-resize to 224, ShareLock resizes and centre-crops; see ``shared/reference/seed-systems.md``
§7.1), while a model's own ``preprocess`` is the model's choice. A task kind asks for one of these by
name (``ctx.images(column, preprocess="grain")``); extraction then preprocesses every row with it
instead of the model's transform, and the feature-store key's ``preprocess`` field is its
:attr:`Preprocessing.fingerprint` (``harness:grain-v1``), so features of the two never mix.

Each transform receives the decoded image (extraction converts it to 8-bit RGB first, as
:func:`harness.decode_image`; a non-RGB image given directly is converted the same way) and
returns a ``(3, H, W)`` float tensor. A :class:`Preprocessing` holds only plain values, so it
pickles into DataLoader worker processes; the torchvision pipeline is built lazily, once per
process. Importing this module imports neither torch nor torchvision.

Changing what a named transform computes needs a new ``version`` (a new fingerprint), never an
edit in place: cached features are keyed by the fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from .errors import UnknownNameError

#: ImageNet channel statistics (torchvision's pretrained models; GRAIN, ShareLock).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: OpenAI CLIP's channel statistics (GVT).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: What a kind's ``preprocess`` param calls the model's own transform (not a named one).
MODEL = "model"


def _torchvision_transforms() -> Any:
    from .torchcompat import ensure_torchvision

    ensure_torchvision()
    from torchvision import transforms

    return transforms


def grain() -> Any:
    """GRAIN, ``dataloaders/cub_annotated.py::_transform(224)``: Resize((224, 224), bicubic) -> ToTensor -> ImageNet norm."""
    t = _torchvision_transforms()
    return t.Compose([t.Resize((224, 224), interpolation=t.InterpolationMode.BICUBIC), t.ToTensor(),
                      t.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def gvt() -> Any:
    """GVT, ``gvt/gvt/datasets/transforms.py``: Resize((224, 224), bicubic) -> ToTensor -> CLIP mean/std norm."""
    t = _torchvision_transforms()
    return t.Compose([t.Resize((224, 224), interpolation=t.InterpolationMode.BICUBIC), t.ToTensor(),
                      t.Normalize(CLIP_MEAN, CLIP_STD)])


def sharelock() -> Any:
    """ShareLock, ``misc.py::get_transforms(False)``: Resize(256) -> CenterCrop(224) -> ToTensor -> ImageNet norm."""
    t = _torchvision_transforms()
    return t.Compose([t.Resize(256), t.CenterCrop(224), t.ToTensor(), t.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


@dataclass(frozen=True)
class Preprocessing:
    """A named image transform: ``preprocessing(image) -> (3, H, W)`` float tensor (picklable)."""

    name: str
    version: int
    builder: Callable[[], Any]
    """Module-level function returning the torchvision pipeline (its docstring cites the source)."""

    @property
    def fingerprint(self) -> str:
        """What names this transform in feature-store keys and results: ``harness:<name>-v<version>``."""
        return f"harness:{self.name}-v{self.version}"

    @property
    def description(self) -> str:
        """The one-line source citation (the builder's docstring)."""
        return " ".join((self.builder.__doc__ or "").split())

    def __call__(self, image: Any) -> Any:
        if getattr(image, "mode", "RGB") != "RGB":
            from .imageloader import to_rgb

            image = to_rgb(image)
        return _pipeline(self.name, self.version)(image)


#: The named preprocessings, by name.
PREPROCESSINGS: dict[str, Preprocessing] = {
    p.name: p for p in (Preprocessing("grain", 1, grain), Preprocessing("gvt", 1, gvt),
                        Preprocessing("sharelock", 1, sharelock))
}


@lru_cache(maxsize=None)
def _pipeline(name: str, version: int) -> Any:
    """The torchvision pipeline of ``name``, built once per process (workers build their own)."""
    return PREPROCESSINGS[name].builder()


def preprocessing(name: str) -> Preprocessing:
    """The named preprocessing; an unknown name is one line listing the known ones."""
    found = PREPROCESSINGS.get(name) if isinstance(name, str) else None
    if found is None:
        raise UnknownNameError(f"unknown preprocessing {name!r}; known: {', '.join(PREPROCESSINGS)} "
                               f"(or {MODEL!r}: the model's own transform)")
    return found


def preprocessing_choices() -> list[str]:
    """What a kind's ``preprocess`` param may say: ``"model"`` (the model's own transform), then every
    named preprocessing (for a params schema's ``enum``)."""
    return [MODEL, *PREPROCESSINGS]
