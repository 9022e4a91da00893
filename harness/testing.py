"""Helpers for testing plugins (public API): tiny seeded models, task contexts over in-memory data,
and conformance checks that run a plugin's specs through the plugin contract.

    from harness.testing import check_model, check_task_kind, task_context, tiny_model

Everything runs on CPU in milliseconds; nothing is downloaded or cached on disk.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .dataset import Split
from .errors import PluginError
from .execution import ExecutionConfig
from .features import Features
from .generation import Generations
from .modelloader import LoadedModel
from .models import (Generation, GenerationRequest, Loglikelihood, LoglikelihoodRequest, LoadContext,
                     REQUIRED_METHODS, build_model, check_capabilities)
from .schema import checked_params
from .scoring import check_outputs, score_metric
from .specs import MetricSpec, ModelSpec, TaskKindSpec, load_object
from .taskkind import Compute, TaskContext

__all__ = ["check_model", "check_task_kind", "task_context", "tiny_model", "tiny_model_spec", "SAMPLE_SIZE"]

#: Images are resized to SAMPLE_SIZE x SAMPLE_SIZE by tiny models.
SAMPLE_SIZE = 8


def _word_value(word: str, seed: int) -> float:
    return int.from_bytes(hashlib.sha256(f"{seed}:{word}".encode()).digest()[:4], "little") / 2**32


class _Tiny:
    """Base of the tiny models (methods are added per declared capability by :func:`tiny_model`)."""

    def __init__(self, dim: int, seed: int) -> None:
        import torch

        generator = torch.Generator().manual_seed(seed)
        self.embed_dim, self.seed = dim, seed
        self._image = torch.randn(3 * SAMPLE_SIZE * SAMPLE_SIZE, dim, generator=generator)
        self._tokens = torch.randn(3 * 4 * 4, dim, generator=generator)
        self._words: dict[str, Any] = {}

    def provenance(self) -> dict[str, Any]:
        digest = hashlib.sha256(f"harness.testing:{self.embed_dim}:{self.seed}:{type(self).__name__}".encode())
        return {"revision": None, "fingerprint": digest.hexdigest(), "n_parameters": int(self._image.numel())}


def _preprocess(self: Any, image: Any) -> Any:
    import torch

    array = np.asarray(image.convert("RGB").resize((SAMPLE_SIZE, SAMPLE_SIZE)), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _encode_image(self: Any, pixels: Any) -> Any:
    return pixels.flatten(1) @ self._image


def _encode_text(self: Any, texts: Sequence[str]) -> Any:
    import torch

    rows = []
    for text in texts:
        vector = torch.zeros(self.embed_dim)
        for word in str(text).lower().split():
            if word not in self._words:
                seed = int(_word_value(word, self.seed) * 2**31)
                self._words[word] = torch.randn(self.embed_dim, generator=torch.Generator().manual_seed(seed))
            vector += self._words[word]
        rows.append(vector)
    return torch.stack(rows) if rows else torch.zeros(0, self.embed_dim)


def _encode_image_tokens(self: Any, pixels: Any, layer: int | None) -> Any:
    import torch

    patches = torch.nn.functional.unfold(pixels, kernel_size=4, stride=4).transpose(1, 2)  # (N, T, 3*16)
    return patches @ self._tokens * (1 + (layer or 0))


def _generate(self: Any, requests: Sequence[GenerationRequest]) -> list[Generation]:
    """Deterministic answers: the prompt's word with the highest seeded value (a stand-in, not a model)."""
    answers = []
    for request in requests:
        words = request.prompt.split() or [""]
        answers.append(Generation(text=max(words, key=lambda w: _word_value(w, self.seed)), n_tokens=1))
    return answers


def _loglikelihood(self: Any, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
    """Each continuation token costs a seeded amount in (0, 5] nats."""
    out = []
    for request in requests:
        words = request.continuation.split()
        cost = sum(5 * _word_value(f"{request.context}|{w}", self.seed) + 1e-3 for w in words)
        out.append(Loglikelihood(logprob=-float(cost), n_tokens=len(words), greedy=False))
    return out


_METHODS: Mapping[str, dict[str, Callable[..., Any]]] = {
    "image_embed": {"preprocess": _preprocess, "encode_image": _encode_image},
    "text_embed": {"encode_text": _encode_text},
    "image_tokens": {"preprocess": _preprocess, "encode_image_tokens": _encode_image_tokens},
    "generate": {"generate": _generate},
    "loglikelihood": {"loglikelihood": _loglikelihood},
}


def tiny_model(capabilities: Iterable[str], dim: int = 8, seed: int = 0) -> Any:
    """A seeded model implementing exactly ``capabilities`` (and nothing else)."""
    capabilities = frozenset(capabilities)
    unknown = capabilities - set(_METHODS)
    if unknown:
        raise ValueError(f"unknown capabilities {sorted(unknown)}")
    methods = {name: fn for capability in sorted(capabilities) for name, fn in _METHODS[capability].items()}
    cls = type("TinyModel_" + "_".join(sorted(capabilities)), (_Tiny,), methods)
    return cls(dim, seed)


def tiny_model_spec(name: str, capabilities: Iterable[str], dim: int = 8, seed: int = 0) -> ModelSpec:
    """A ``ModelSpec`` whose factory builds :func:`tiny_model` (register it from a test plugin)."""
    return ModelSpec(name, "harness.testing:_tiny_factory", frozenset(capabilities), code_version="testing",
                     args={"dim": dim, "seed": seed})


def _tiny_factory(spec: ModelSpec, ctx: LoadContext) -> Any:
    return tiny_model(spec.capabilities, int(spec.args["dim"]), int(spec.args["seed"]))


@dataclass
class _Loader:
    """Stands in for the run's model loader: the models a test provides, by name."""

    models: Mapping[str, Any]
    registries: Any = None
    execution: ExecutionConfig = field(default_factory=lambda: ExecutionConfig(device="cpu", cache=False))
    _loaded: dict[str, LoadedModel] = field(default_factory=dict)

    def load(self, name: str, capability: str | None = None, seed: int | None = None) -> LoadedModel:
        from .errors import IncompatibleError, UnknownNameError

        if name not in self.models:
            raise UnknownNameError(f"unknown model {name!r} (this test context has {sorted(self.models)})")
        model = self.models[name]
        if capability is not None and not all(callable(getattr(model, m, None)) for m in REQUIRED_METHODS[capability]):
            raise IncompatibleError(f"model {name!r} has no capability {capability!r}")
        spec = ModelSpec(name, "harness.testing:_tiny_factory", frozenset(), code_version="testing")
        return self._loaded.setdefault(name, LoadedModel(spec, "testing", model, 0.0))


def _dataset(rows: Any) -> Any:
    import datasets

    if isinstance(rows, datasets.Dataset):
        return rows
    return datasets.Dataset.from_dict(dict(rows))


def task_context(rows: Any, columns: Mapping[str, str], params: Mapping[str, Any] | None = None,
                 model: Any = None, splits: Mapping[str, Any] | None = None, seed: int = 0, name: str = "test",
                 kind: TaskKindSpec | None = None, models: Mapping[str, Any] | None = None,
                 batch_size: int = 16, split: str = "test") -> TaskContext:
    """A :class:`TaskContext` over in-memory data: ``rows`` (a ``datasets.Dataset`` or a dict of columns)
    are the evaluated rows, ``splits`` other named splits, ``model`` the model under test (default: a
    tiny image+text model), ``models`` what ``ctx.model(name, ...)`` may load. With ``kind``, params
    are validated against its schema and defaults filled in, as the runner does. ``split`` names the
    evaluated rows (``ctx.split``); ``ctx.rows(split)`` returns them too."""
    evaluated = Split(_dataset(rows))
    others = {split: Split(_dataset(data)) for split, data in (splits or {}).items()}
    model = model if model is not None else tiny_model({"image_embed", "text_embed"})
    params = dict(params or {})
    if kind is not None:
        params = checked_params(dict(kind.params_schema), params, f"task {name}")

    others.setdefault(split, evaluated)

    def load_split(wanted: str) -> Split:
        if wanted not in others:
            from .errors import DataError

            raise DataError(f"task {name}: no split {wanted!r} in this test context (it has {sorted(others)})")
        return others[wanted]

    features = Features(model, batch_size=batch_size, name="model")
    return TaskContext(name=name, params=params, columns=dict(columns), seed=seed, compute=Compute(), split=split,
                       _evaluated=evaluated, _load_split=load_split, _features=features,
                       _loader=_Loader(dict(models or {})), _progress=False,
                       _generations=Generations(model, name="model", batch_size=batch_size))


def check_model(spec: ModelSpec, image: Any = None, execution: ExecutionConfig | None = None) -> Any:
    """Build ``spec`` and exercise every capability it declares once; returns the model. Raises
    ``ModelLoadError``/``PluginError`` (one line) where the model breaks the contract."""
    import PIL.Image

    model = build_model(spec, LoadContext(execution or ExecutionConfig(device="cpu")))
    check_capabilities(model, spec)
    image = image if image is not None else PIL.Image.new("RGB", (32, 32), (200, 40, 40))
    features = Features(model, batch_size=2, name=spec.name)
    rows = Split(_dataset({"image": [image, image]}))
    if "image_embed" in spec.capabilities:
        features.images(rows, "image")
    if "text_embed" in spec.capabilities:
        features.texts(["a photo of a cat.", "a dog"])
    if "image_tokens" in spec.capabilities:
        tokens = features.images(rows, "image", output="tokens@-1")
        if tokens.ndim != 3:
            raise PluginError(f"model {spec.name!r}: encode_image_tokens returned {tokens.ndim} dimensions, expected 3")
    if "generate" in spec.capabilities:
        answers = model.generate([GenerationRequest("Question: what is shown? Answer:", (image,), max_new_tokens=4)])
        if len(answers) != 1 or not isinstance(answers[0], Generation) or not isinstance(answers[0].text, str):
            raise PluginError(f"model {spec.name!r}: generate must return one Generation per request")
    if "loglikelihood" in spec.capabilities:
        scores = model.loglikelihood([LoglikelihoodRequest("Question: colour? Answer:", " red", (image,))])
        if len(scores) != 1 or not isinstance(scores[0], Loglikelihood):
            raise PluginError(f"model {spec.name!r}: loglikelihood must return one Loglikelihood per request")
    provenance = model.provenance()
    if not {"revision", "fingerprint", "n_parameters"} <= set(provenance):
        raise PluginError(f"model {spec.name!r}: provenance() must give revision, fingerprint and n_parameters")
    return model


def check_task_kind(spec: TaskKindSpec, ctx: TaskContext, metrics: Sequence[MetricSpec] = ()) -> dict[str, Any]:
    """Run ``spec``'s kind on ``ctx`` (see :func:`task_context`; pass ``kind=spec`` there so params are
    validated) and check its outputs against the contract: every declared output returned, per-sample
    arrays of one length, finite numbers; then score ``metrics`` on them. Returns
    ``{"outputs": ..., "metrics": {name: entry}}``. A kind with ``check(ctx)`` is checked first, as the
    runner does before any model loads (with the model taken away from the context)."""
    kind = load_object(spec.factory)()
    if hasattr(kind, "check"):
        kind.check(replace(ctx, _features=None))
    outputs = kind.evaluate(ctx)
    arrays = check_outputs(spec.name, outputs, set(spec.outputs) | {o for m in metrics for o in m.outputs})
    undeclared = sorted(set(arrays) - set(spec.outputs) - {"groups"})
    if undeclared:
        raise PluginError(f"task kind {spec.name!r} returned undeclared output(s) {undeclared}; declare them in outputs")
    return {"outputs": arrays, "metrics": {m.name: score_metric(m, arrays, ctx.seed) for m in metrics}}

