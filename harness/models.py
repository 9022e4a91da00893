"""Models by capability: one small protocol per capability a ``ModelSpec`` may declare.

A model implements exactly what it declares (an image-only encoder has no ``encode_text``). The
built object is checked against its declaration when it loads, and ``embed_dim`` against its first
real output. Models never see tasks.

``generate`` and ``loglikelihood`` are declared here (protocols, request and response types); the
engine that batches and caches them comes with the generative task kinds.

Log-likelihood convention (written down because other harnesses got it wrong): ``logprob`` is the
**sum over the continuation's tokens of the natural-log probability** of each token given the
image, the context and the preceding continuation tokens. It is <= 0; higher is more likely; it is
never a mean loss and never negated. ``n_tokens`` is the continuation's token count, so a caller
may length-normalise (``logprob / n_tokens``) explicitly. ``greedy`` says whether greedy decoding
from the context would produce exactly the continuation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence, runtime_checkable

from .errors import IncompatibleError, ModelLoadError, PluginError, blamed
from .hub import first_line
from .specs import load_object

if TYPE_CHECKING:
    import PIL.Image
    import torch

    from .execution import ExecutionConfig
    from .specs import ModelSpec


# -- the capabilities ---------------------------------------------------------------------------
@runtime_checkable
class ImageEmbedder(Protocol):
    """``image_embed``: ``preprocess`` one PIL image to a tensor; ``encode_image`` a stacked batch to
    ``(N, embed_dim)`` unnormalised embeddings."""

    embed_dim: int | None

    def preprocess(self, image: PIL.Image.Image) -> torch.Tensor: ...

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class TextEmbedder(Protocol):
    """``text_embed``: strings to ``(N, embed_dim)`` unnormalised embeddings."""

    embed_dim: int | None

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor: ...


@runtime_checkable
class ImageTokenizer(Protocol):
    """``image_tokens``: token-level outputs ``(N, T, D)`` of block ``layer`` (None: the last; negative
    counts from the end), e.g. what a multimodal LLM's projector reads."""

    def preprocess(self, image: PIL.Image.Image) -> torch.Tensor: ...

    def encode_image_tokens(self, pixels: torch.Tensor, layer: int | None) -> torch.Tensor: ...


#: Where an image goes in a prompt: ``"Describe <image> and compare with <image>."``. A prompt
#: without it has its images before the text (the usual single-image VQA layout).
IMAGE_PLACEHOLDER = "<image>"


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt, with its images interleaved (:data:`IMAGE_PLACEHOLDER` marks where each goes, in
    order; none: images first), to complete. Settings: ``max_new_tokens`` and ``stop`` strings bound
    the answer (stop strings are cut from it); decoding is greedy when ``temperature`` is 0 and
    ``num_beams`` 1, beam search with ``num_beams`` > 1, else sampling with ``temperature`` and
    ``top_p`` from ``seed`` (the same seed, the same sample, whatever else is in the batch).
    ``prompt`` is the user's text; a chat model wraps it in its chat template (and records which)."""

    prompt: str
    images: tuple[Any, ...] = ()
    max_new_tokens: int = 32
    stop: tuple[str, ...] = ()
    temperature: float = 0.0
    top_p: float = 1.0
    num_beams: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        placeholders = self.prompt.count(IMAGE_PLACEHOLDER)
        if placeholders and placeholders != len(self.images):
            raise ValueError(f"GenerationRequest: {placeholders} {IMAGE_PLACEHOLDER} placeholders for "
                             f"{len(self.images)} images")
        if self.max_new_tokens < 1 or self.num_beams < 1 or self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"GenerationRequest: bad settings (max_new_tokens={self.max_new_tokens}, "
                             f"num_beams={self.num_beams}, temperature={self.temperature}, top_p={self.top_p})")

    @property
    def greedy(self) -> bool:
        """Greedy decoding (deterministic): temperature 0 and one beam."""
        return self.temperature == 0 and self.num_beams == 1

    def settings(self) -> dict[str, Any]:
        """Everything but the prompt and images: requests with equal settings may share a batch."""
        return {"max_new_tokens": self.max_new_tokens, "stop": list(self.stop), "temperature": self.temperature,
                "top_p": self.top_p, "num_beams": self.num_beams, "seed": self.seed}


@dataclass(frozen=True)
class Generation:
    """A model's answer to one :class:`GenerationRequest` (``text`` with any stop string cut).
    ``details``: optional JSON-able facts behind the answer (a composite model's intermediate outputs,
    e.g. LENS's tags and captions), cached with the answer and kept in the per-sample records by
    kinds that keep them."""

    text: str
    n_tokens: int | None = None
    details: Mapping[str, Any] | None = None


@runtime_checkable
class Generator(Protocol):
    """``generate``: answers in request order, one per request."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]: ...


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """How likely ``continuation`` is after ``context`` (and ``images``)."""

    context: str
    continuation: str
    images: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Loglikelihood:
    """Sum of natural-log token probabilities of the continuation (<= 0; see the module docstring)."""

    logprob: float
    n_tokens: int
    greedy: bool

    def __post_init__(self) -> None:
        if not self.logprob <= 1e-6:
            raise ValueError(f"Loglikelihood.logprob is a sum of log-probabilities (<= 0), got {self.logprob}")


@runtime_checkable
class LoglikelihoodScorer(Protocol):
    """``loglikelihood``: one :class:`Loglikelihood` per request, in order."""

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]: ...


#: Capability -> the methods its protocol requires (checked on the built model).
REQUIRED_METHODS: Mapping[str, tuple[str, ...]] = {
    "image_embed": ("preprocess", "encode_image"),
    "text_embed": ("encode_text",),
    "image_tokens": ("preprocess", "encode_image_tokens"),
    "generate": ("generate",),
    "loglikelihood": ("loglikelihood",),
}


# -- loading ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadContext:
    """What a model factory knows about the run: its execution config (``device``, ``dtype``, ``seed``,
    cache root) and a way to load other models by harness name with the run's plugins (for
    composite models such as ``sharelock:``)."""

    execution: ExecutionConfig
    loader: Any = field(default=None, compare=False, repr=False)
    parts: list[Any] = field(default_factory=list, compare=False, repr=False)
    """The parts loaded with :meth:`part` (filled while the factory runs)."""

    @property
    def device(self) -> str:
        return self.execution.device

    @property
    def dtype(self) -> str:
        return self.execution.dtype

    @property
    def seed(self) -> int:
        return self.execution.seed

    def part(self, name: str, capability: str, role: str) -> Any:
        """Another model as a part of this one (a composite such as LENS): a handle with ``.model``,
        ``.generate`` / ``.loglikelihood`` (through the generation engine: batched and cached in the
        response store under the part's own identity), ``.texts`` (text features, cached in the
        feature store) and ``.images`` (features of PIL images, not cached). The part is recorded in
        every result of this model (``auxiliary_models``, with ``role``)."""
        if self.loader is None:
            from .errors import UsageError

            raise UsageError(f"model {name!r} is needed, but this load context has no loader (built outside a run)")
        part = self.loader.part(name, capability, role, self.execution)
        self.parts.append(part)
        return part

    def model(self, name: str, capability: str, seed: int | None = None) -> Any:
        """The model ``name`` (which must declare ``capability``), loaded once per run with the run's
        plugins and execution config (``seed``: another seed than the run's, for models whose weights
        depend on it)."""
        if self.loader is None:
            from .errors import UsageError

            raise UsageError(f"model {name!r} is needed, but this load context has no loader (built outside a run)")
        return self.loader.load(name, capability, seed).model


def check_capabilities(model: Any, spec: ModelSpec) -> None:
    """One-line ModelLoadError unless ``model`` implements every capability ``spec`` declares."""
    for capability in sorted(spec.capabilities):
        for method in REQUIRED_METHODS[capability]:
            if not callable(getattr(model, method, None)):
                raise ModelLoadError(f"model {spec.name!r} declares capability {capability!r} but its "
                                     f"{type(model).__name__} has no method {method}()")
    if spec.capabilities & {"image_embed", "text_embed"} and not hasattr(model, "embed_dim"):
        raise ModelLoadError(f"model {spec.name!r} embeds but its {type(model).__name__} has no embed_dim attribute")
    if not callable(getattr(model, "provenance", None)):
        raise ModelLoadError(f"model {spec.name!r}: its {type(model).__name__} has no method provenance()")


def check_embed_dim(name: str, model: Any, output: Any, what: str) -> None:
    """The first real output of ``encode_image``/``encode_text`` must be ``(N, embed_dim)``."""
    declared = getattr(model, "embed_dim", None)
    shape = tuple(getattr(output, "shape", ()))
    if len(shape) != 2 or (declared is not None and shape[1] != declared):
        raise ModelLoadError(f"model {name!r}: {what} returned shape {shape}, but it declares embed_dim {declared}")


def build_model(spec: ModelSpec, ctx: LoadContext) -> Any:
    """The model ``spec`` names, made by its factory and checked against its declared capabilities;
    what a factory raises for missing, corrupt or unreachable weights (OSError, RuntimeError,
    ValueError) becomes a one-line ModelLoadError."""
    factory = load_object(spec.factory)
    try:
        with blamed(f"model factory of {spec.name!r} ({spec.factory})"):
            model = factory(spec, ctx)
    except PluginError as exc:
        if isinstance(exc.__cause__, (OSError, RuntimeError, ValueError)):
            raise ModelLoadError(f"cannot load model {spec.name!r}: {first_line(exc.__cause__)}") from None
        raise
    check_capabilities(model, spec)
    return model


# -- helpers for model plugins ------------------------------------------------------------------
def load_state_strict(module: Any, state: dict[str, Any], where: str, fits: str) -> None:
    """``module.load_state_dict(state, strict=True)``, a mismatch summarised on one line:
    ``{where}: state dict does not fit {fits}: missing N (e.g. 'key'); unexpected ...; wrong shape ...``."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{label} {len(keys)} (e.g. {keys[0]!r})" for label, keys in
                 (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise ModelLoadError(f"{where}: state dict does not fit {fits}: {'; '.join(parts)}")
    module.load_state_dict(state, strict=True)


def state_fingerprint(module: Any) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes and bytes), in key order."""
    import torch

    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.view(torch.int16)
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def n_parameters(module: Any) -> int:
    """Number of parameters of a torch module."""
    return int(sum(p.numel() for p in module.parameters()))


def layer_index(layer: int, count: int, what: str) -> int:
    """``layer`` (negative from the end) as an index into ``count`` hidden states or stages, for
    ``encode_image_tokens``; out of range is a one-line IncompatibleError starting with ``what``."""
    if not -count <= layer < count:
        raise IncompatibleError(f"{what}: layer must be None or in {-count}..{count - 1}, got {layer}")
    return layer % count
