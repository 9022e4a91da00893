"""Resolve and load models by harness name, once per run, and name them in the feature store.

One :class:`ModelLoader` per ``harness run`` / ``harness train``: the model under test, the frozen
towers a task or trainer asks for (``ctx.model``), and the parts of composite models all load
through it with the run's plugins and execution config, each at most once. Nothing is kept in
process-global state, so a second run with other settings never sees the first one's models.

A model's feature-store key is its spec name, plugin and plugin version, weights fingerprint and
revision, and its **code fingerprint**: the spec's ``code_version`` when the plugin declares one,
else the sha256 of every ``.py`` file of the package its factory lives in -- editing a plugin's
encoder invalidates the features it computed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .errors import IncompatibleError, PluginError
from .modelcard import CardShelf, DeferredModel, ModelCard, model_identity
from .models import REQUIRED_METHODS, LoadContext, build_model

if TYPE_CHECKING:
    from .execution import ExecutionConfig
    from .features import Features
    from .generation import Generations
    from .processgroup import ProcessGroup
    from .registry import Registries
    from .specs import ModelSpec


@lru_cache(maxsize=None)
def _source_digest(files: tuple[tuple[str, float, int], ...]) -> str:
    digest = hashlib.sha256()
    for path, _, _ in files:
        digest.update(path.encode() + b"\0" + Path(path).read_bytes() + b"\0")
    return digest.hexdigest()


def code_fingerprint(spec: ModelSpec) -> str:
    """``version:<code_version>``, else ``sha256:<digest of the factory package's .py files>``
    (memoised by path, mtime and size, so a changed file is hashed again)."""
    if spec.code_version:
        return f"version:{spec.code_version}"
    module = spec.factory.partition(":")[0]
    found = importlib.util.find_spec(module.split(".")[0])
    if found is None or found.origin is None:
        return "unknown"
    origin = Path(found.origin)
    paths = sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
    files = tuple((str(p), p.stat().st_mtime, p.stat().st_size) for p in paths)
    return "sha256:" + _source_digest(files)


@dataclass(frozen=True)
class LoadedModel:
    """A built (or deferred: :mod:`harness.modelcard`) model with what names it in results and in the
    feature store."""

    spec: ModelSpec
    plugin: str
    model: Any
    load_s: float
    channels_last: bool = False
    """Whether its convolutional modules were converted to channels_last (on CUDA)."""
    parts: tuple[Part, ...] = ()
    """The models it was built from (composite models: :meth:`harness.LoadContext.part`)."""
    card: ModelCard | None = None
    """What the run records about the model (None: asked of the model itself)."""

    @property
    def provenance(self) -> dict[str, Any]:
        return dict(self.card.provenance) if self.card is not None else self.model.provenance()

    def attention(self, device: str) -> str:
        """What computes attention in this model (see :func:`harness.hardware.attention_kernel`)."""
        if self.card is not None:
            return self.card.attention
        from .hardware import attention_kernel

        return attention_kernel(self.model, device)

    def key(self, registries: Registries) -> dict[str, Any]:
        """The feature-store key of this model (see the module docstring)."""
        info = registries.pm.provenance.get(self.plugin) if registries is not None else None
        provenance = self.provenance
        return {"name": self.spec.name, "plugin": self.plugin, "plugin_version": info.version if info else None,
                "fingerprint": provenance["fingerprint"], "revision": provenance.get("revision"),
                "code": code_fingerprint(self.spec)}

    def features(self, execution: ExecutionConfig, registries: Registries, group: ProcessGroup) -> Features:
        """The feature extractor of this model under ``execution`` (its store key only with the cache on)."""
        from .features import Features
        from .featurestore import FeatureStore

        store = FeatureStore.default(execution.cache_dir) if execution.cache else None
        return Features(self.model, device=execution.device, dtype=execution.dtype, batch_size=execution.batch_size,
                        progress=execution.progress, store=store, encoder_key=self.key(registries) if store else None,
                        name=self.spec.name, num_workers=execution.num_workers, shard_size=execution.shard_size,
                        group=group, check_determinism=execution.check_determinism,
                        channels_last=self.channels_last, cache_dir=execution.cache_dir)

    def generations(self, execution: ExecutionConfig, registries: Registries, group: ProcessGroup) -> Generations:
        """The generation engine of this model under ``execution``: its response set is keyed by the
        model's identity, its chat template and the dtype (none with the cache off)."""
        from .generation import Generations
        from .responsestore import ResponseStore

        store = None
        if execution.cache:
            key = {"model": self.key(registries), "chat_template": getattr(self.model, "chat_template", None),
                   "dtype": execution.dtype}
            store = ResponseStore.default(execution.cache_dir).open(key)
        return Generations(self.model, self.spec.name, execution.device, execution.dtype, execution.batch_size,
                           execution.progress, store, group)

    def record(self, role: str | None = None, device: str = "cpu") -> dict[str, Any]:
        """How results describe this model; with ``role``, as an auxiliary model (plus how it ran)."""
        provenance = self.provenance
        out = {"name": self.spec.name, "plugin": self.plugin, "revision": provenance.get("revision"),
               "fingerprint": provenance["fingerprint"], "n_parameters": int(provenance["n_parameters"]),
               "code_fingerprint": code_fingerprint(self.spec)}
        if role is None:
            return out
        return {**out, "role": role, "capabilities": sorted(self.spec.capabilities),
                "execution": {"channels_last": self.channels_last, "attention": self.attention(device)}}


@dataclass(frozen=True)
class Part:
    """A model inside a composite one: its model, text features (cached), features of PIL images, and
    generation (cached per request under its own identity)."""

    name: str
    model: Any
    _features: Features = field(repr=False)
    _generations: Generations = field(repr=False)
    record: dict[str, Any] = field(repr=False)

    def texts(self, strings: Sequence[str]) -> Any:
        """``(N, D)`` float32 text features (feature store: computed once per text)."""
        return self._features.texts(list(strings), where=f"part {self.name}")

    def images(self, images: Sequence[Any]) -> Any:
        """``(N, D)`` float32 features of PIL images (not cached: they have no dataset identity)."""
        import datasets

        data = datasets.Dataset.from_dict({"image": list(images)}, features=datasets.Features({"image": datasets.Image()}))
        return self._features.images(data, "image", where=f"part {self.name}")

    def counters(self) -> dict[str, int]:
        """What this part took from the caches (hits) and computed (misses) so far."""
        features, generations = self._features.counters, self._generations.counters
        return {"response_hits": generations.request_hits, "response_misses": generations.requests,
                "text_hits": features.text_hits, "text_misses": features.texts}

    def generate(self, requests: Sequence[Any]) -> list[Any]:
        return self._generations.generate(requests, where=f"part {self.name}")

    def loglikelihood(self, requests: Sequence[Any]) -> list[Any]:
        return self._generations.loglikelihood(requests, where=f"part {self.name}")


@dataclass
class ModelLoader:
    """Loads models of one run (see the module docstring)."""

    registries: Registries
    execution: ExecutionConfig
    _loaded: dict[tuple[str, int], LoadedModel] = field(default_factory=dict, repr=False)

    def resolve(self, name: str, capability: str | None = None) -> tuple[ModelSpec, str]:
        """(spec, plugin) of ``name``; it must declare ``capability`` when given (no loading)."""
        spec, plugin = self.registries.resolve_model(name)
        if capability is not None and capability not in spec.capabilities:
            raise IncompatibleError(f"model {name!r} has capabilities {sorted(spec.capabilities)}; "
                                    f"it must have {capability!r}")
        return spec, plugin

    def load(self, name: str, capability: str | None = None, seed: int | None = None) -> LoadedModel:
        """The model ``name``, loaded at most once per loader (and seed: ``seed`` overrides the run's for
        models whose weights depend on it, e.g. a randomly initialised tower a head was trained on).
        With the cache on, a model whose card is remembered is not built until something is computed
        (:mod:`harness.modelcard`)."""
        from dataclasses import replace

        spec, plugin = self.resolve(name, capability)
        execution = self.execution if seed is None else replace(self.execution, seed=seed)
        cache_key = (repr(spec), execution.seed)  # the whole spec: -p may change what a name resolves to
        if cache_key not in self._loaded:
            self._loaded[cache_key] = self._load(spec, plugin, execution)
        return self._loaded[cache_key]

    def _load(self, spec: ModelSpec, plugin: str, execution: ExecutionConfig) -> LoadedModel:
        start = time.perf_counter()
        identity, shelf = None, CardShelf(execution.root)
        if execution.cache and spec.sources:
            info = self.registries.pm.provenance.get(plugin)
            identity = model_identity(spec, plugin, info.version if info else None, code_fingerprint(spec), execution)
        card = shelf.read(identity) if identity else None
        if card is not None:
            methods = tuple(m for capability in sorted(spec.capabilities) for m in REQUIRED_METHODS[capability])
            model = DeferredModel(card, methods, lambda: self._build_as_remembered(spec, execution, card, shelf, identity))
            return LoadedModel(spec, plugin, model, time.perf_counter() - start, card.channels_last, (), card)
        model, channels_last, parts = self._build(spec, execution)
        card = ModelCard.of(model, channels_last, execution.device)
        if identity and not parts:  # a composite's parts are recorded per run: it is always built
            shelf.write(identity, card)
        return LoadedModel(spec, plugin, model, time.perf_counter() - start, channels_last, parts, card)

    def _build(self, spec: ModelSpec, execution: ExecutionConfig) -> tuple[Any, bool, tuple[Part, ...]]:
        from .hardware import use_channels_last

        ctx = LoadContext(execution, self)
        model = build_model(spec, ctx)
        return model, use_channels_last(model, execution.device), tuple(ctx.parts)

    def _build_as_remembered(self, spec: ModelSpec, execution: ExecutionConfig, card: ModelCard, shelf: CardShelf,
                             identity: str) -> Any:
        """Build a deferred model; it must be the model its card describes."""
        model, channels_last, _ = self._build(spec, execution)
        built = ModelCard.of(model, channels_last, execution.device)
        if not built.same_model(card):
            shelf.write(identity, built)
            raise PluginError(
                f"model {spec.name!r}: built, it is not the model remembered for the same weight files "
                f"(fingerprint {built.provenance['fingerprint'][:12]}, remembered {card.provenance['fingerprint'][:12]} "
                f"in {shelf.path(identity)}): its plugin's sources ({spec.sources}) miss something that decides "
                "its weights; the card is now replaced: run again")
        return model

    def part(self, name: str, capability: str, role: str, execution: ExecutionConfig) -> Part:
        """A model loaded as a part of another (see :meth:`harness.LoadContext.part`)."""
        from .processgroup import ProcessGroup

        loaded = self.load(name, capability)
        features = loaded.features(execution, self.registries, ProcessGroup())
        return Part(loaded.spec.name, loaded.model, features, loaded.generations(execution, self.registries, ProcessGroup()),
                    loaded.record(role, execution.device))
