"""Model cards: what a built model says about itself, remembered so that a warm run need not build it.

A run needs a few facts about its model before it computes anything: the weights fingerprint and
revision (they key the feature store and the response store), the parameter count, ``embed_dim``,
the preprocessing fingerprint, the chat template, the memory layout and the attention kernel (the
result records them). Building the model to learn them costs the model library's import, the
build and hashing the weights -- seconds -- even when every feature the run needs is cached.

So after a model is built, these facts are written to a **card** under the cache root
(``model-cards/<identity>.json``), and a later run that finds its card does not build the model:
it gets a :class:`DeferredModel` that answers from the card and builds the real model only when
something is computed (a cache miss).

A card is found by the model's **identity**: the whole spec, its plugin and version, the code
fingerprint, seed, device, dtype, the versions of the libraries models are built with, and the
content (sha256, remembered per file by size, times and inode: :mod:`harness.contenthash`) of
the files the model's weights come from. Those files are named, without building anything, by the
spec's optional ``sources`` function (``"module:function"``, ``sources(spec) -> list of paths |
None``): a model without one, or for which it answers None (e.g. weights somewhere the plugin
cannot name cheaply), is always built. Changed weight files, another seed or another library
version give another identity, so a stale card is never used; a card that cannot be read or is
malformed is ignored (the model is built and the card written again). If a deferred model, once
built, turns out to differ from its card (a plugin whose ``sources`` misses something), the run
stops with one line rather than mixing features of two models.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .errors import PluginError, blamed

if TYPE_CHECKING:
    from .execution import ExecutionConfig
    from .specs import ModelSpec

log = logging.getLogger(__name__)

#: Where cards live, under the cache root.
CARDS_DIR = "model-cards"
CARD_FORMAT = "harness-model-card-v1"
MAX_CARD_BYTES = 1 << 16
#: Libraries whose version can change what a model computes or how its weights initialise.
LIBRARIES = ("torch", "torchvision", "open_clip_torch", "timm", "transformers", "sentence-transformers")


@dataclass(frozen=True)
class ModelCard:
    """The facts about a built model that a run records or keys caches with."""

    provenance: Mapping[str, Any]
    """``model.provenance()``: ``fingerprint``, ``revision``, ``n_parameters`` and what else it gives."""
    embed_dim: int | None
    preprocess_fingerprint: str | None
    chat_template: str | None
    channels_last: bool
    attention: str

    @classmethod
    def of(cls, model: Any, channels_last: bool, device: str) -> ModelCard:
        """The card of a built model."""
        from .hardware import attention_kernel

        provenance = dict(model.provenance())
        own = getattr(model, "preprocess_fingerprint", None)
        template = getattr(model, "chat_template", None)
        return cls(provenance, getattr(model, "embed_dim", None), own if isinstance(own, str) and own else None,
                   template if isinstance(template, str) else None, channels_last, attention_kernel(model, device))

    def same_model(self, other: ModelCard) -> bool:
        """Whether ``other`` describes the same weights and outputs (what caches are keyed by)."""
        keys = ("fingerprint", "revision")
        return ({k: self.provenance.get(k) for k in keys} == {k: other.provenance.get(k) for k in keys}
                and (self.embed_dim, self.preprocess_fingerprint, self.chat_template)
                == (other.embed_dim, other.preprocess_fingerprint, other.chat_template))


def _parse(data: bytes) -> ModelCard | None:
    """A card from its JSON, or None if it is not a well-formed card (cards are not trusted)."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != CARD_FORMAT:
        return None
    card = doc.get("card")
    fields = ("provenance", "embed_dim", "preprocess_fingerprint", "chat_template", "channels_last", "attention")
    if not isinstance(card, dict) or set(card) != set(fields):
        return None
    provenance = card["provenance"]
    if (not isinstance(provenance, dict) or not isinstance(provenance.get("fingerprint"), str)
            or not isinstance(provenance.get("n_parameters"), int) or isinstance(provenance.get("n_parameters"), bool)
            or not isinstance(provenance.get("revision"), (str, type(None)))):
        return None
    embed_dim = card["embed_dim"]
    if embed_dim is not None and (not isinstance(embed_dim, int) or isinstance(embed_dim, bool) or embed_dim < 1):
        return None
    if not all(isinstance(card[k], (str, type(None))) for k in ("preprocess_fingerprint", "chat_template")):
        return None
    if not isinstance(card["channels_last"], bool) or not isinstance(card["attention"], str):
        return None
    return ModelCard(**card)


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str | None]:
    """Installed versions of :data:`LIBRARIES` (None: not installed), looked up once per process (about
    50 ms: a run may load several models)."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def model_identity(spec: ModelSpec, plugin: str, plugin_version: str | None, code: str,
                   execution: ExecutionConfig) -> str | None:
    """The identity under which ``spec``'s card is kept (see the module docstring), or None when the
    model's weights cannot be named without building it."""
    if not spec.sources:
        return None
    from .contenthash import content_fingerprint
    from .featurestore import canonical_json
    from .specs import load_object

    with blamed(f"model sources of {spec.name!r} ({spec.sources})"):
        paths = load_object(spec.sources)(spec)
    if paths is None:
        return None
    if not isinstance(paths, (list, tuple)) or not all(isinstance(p, (str, Path)) for p in paths):
        raise PluginError(f"model sources of {spec.name!r} ({spec.sources}) returned {type(paths).__name__}, "
                          "not a list of paths or None")
    sources = []
    for path in paths:
        try:
            sources.append([str(path), content_fingerprint(Path(path), "model-source", execution.root)])
        except OSError:  # missing or unreadable: the build says what is wrong, in its own words
            return None
    identity = {"format": CARD_FORMAT, "spec": {"name": spec.name, "factory": spec.factory,
                                                "capabilities": sorted(spec.capabilities), "args": dict(spec.args),
                                                "revision": spec.revision, "code_version": spec.code_version},
                "plugin": plugin, "plugin_version": plugin_version, "code": code, "seed": execution.seed,
                "device": execution.device, "dtype": execution.dtype, "libraries": library_versions(),
                "sources": sources}
    try:
        text = canonical_json(identity)
    except (TypeError, ValueError):  # spec args that are not JSON: not something to key a card by
        return None
    return hashlib.sha256(text.encode()).hexdigest()


class CardShelf:
    """The cards under one cache root (untrusted files: bounded, regular, validated on read)."""

    def __init__(self, root: Path) -> None:
        self.folder = Path(root) / CARDS_DIR

    def path(self, identity: str) -> Path:
        return self.folder / f"{identity}.json"

    def read(self, identity: str) -> ModelCard | None:
        from .atomicfile import read_regular

        path = self.path(identity)
        try:
            data = read_regular(path, MAX_CARD_BYTES)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.info("model card %s unreadable (%s): the model is built", path, exc)
            return None
        card = _parse(data)
        if card is None:
            log.info("model card %s is malformed: the model is built and the card written again", path)
        return card

    def write(self, identity: str, card: ModelCard) -> None:
        """Remember ``card`` (a cache that cannot be written only costs time next run)."""
        from .atomicfile import write_text_atomic

        doc = {"format": CARD_FORMAT, "card": asdict(card)}
        try:
            text = json.dumps(doc, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError):  # a provenance that is not plain JSON: not remembered
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.path(identity), text)
        except OSError as exc:
            log.info("model card not written (%s)", exc)


class DeferredModel:
    """Stands for a model not built yet: answers ``provenance()``, ``embed_dim``,
    ``preprocess_fingerprint`` and ``chat_template`` from its card, and gives the methods of the
    capabilities its spec declares as callables that build the real model on first call; any other
    attribute builds it too. ``build()`` returns the real model (built once)."""

    def __init__(self, card: ModelCard, methods: tuple[str, ...], build: Callable[[], Any]) -> None:
        self._card = card
        self._methods = methods
        self._build = build
        self._model: Any = None

    @property
    def built(self) -> bool:
        return self._model is not None

    def build(self) -> Any:
        if self._model is None:
            self._model = self._build()
        return self._model

    def provenance(self) -> dict[str, Any]:
        return dict(self._card.provenance)

    @property
    def embed_dim(self) -> int | None:
        return self._card.embed_dim

    @property
    def preprocess_fingerprint(self) -> str | None:
        return self._card.preprocess_fingerprint

    @property
    def chat_template(self) -> str | None:
        return self._card.chat_template

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._methods and self._model is None:
            return _Deferred(self, name)
        return getattr(self.build(), name)

    def __repr__(self) -> str:
        return f"DeferredModel({'built' if self.built else 'not built'}, fingerprint={self._card.provenance['fingerprint'][:12]})"


class _Deferred:
    """A declared method of a model not built yet: builds it when called (or pickled, for workers)."""

    def __init__(self, owner: DeferredModel, name: str) -> None:
        self._owner, self._name = owner, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._owner.build(), self._name)(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return getattr, (self._owner.build(), self._name)
