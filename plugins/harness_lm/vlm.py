"""Image-text-to-text models (``vlm:`` names): multimodal LLMs and image captioners.

Loaded with ``AutoProcessor`` and ``AutoModelForImageTextToText`` (``AutoModelForVision2Seq`` on
older transformers): LLaVA-1.5/-NeXT/-OneVision, BLIP-2, InstructBLIP, Idefics2/3, PaliGemma,
Qwen2-VL, BLIP captioners and whatever else the Auto class maps. Capabilities come from
``config.json`` at resolve time (:mod:`harness_lm.names`); batching, decoding and the
log-likelihood arithmetic from :mod:`harness_lm.generative`.

**Prompts and images.** A request's images are its own (a batch never mixes them) and go where
its :data:`harness.IMAGE_PLACEHOLDER` marks say, or first:

- with a chat template (the processor's, unless ``#chat=0``): one user message whose content is
  the text with an ``{"type": "image"}`` item at each placeholder (or all images first), rendered
  with ``apply_chat_template(add_generation_prompt=True)``; its special tokens are not added a
  second time when the rendered text already starts with the BOS token;
- without one: each placeholder becomes the processor's image token (``<image>`` for LLaVA), or
  the image tokens and a newline go before the prompt; for models whose processor inserts image
  tokens itself (BLIP-2, InstructBLIP, PaliGemma, Fuyu, GIT, Kosmos-2, ...: :data:`SELF_PLACING`,
  or no ``image_token`` at all) the placeholders are dropped and the text passed as it is.

``chat_template`` (an attribute, and in ``provenance()``) is ``sha256:<hex>`` of the template used,
or ``none``. The processor's tokenizer is set to pad on the left at load (a tokenizer saved padding
right is fixed), and a generation batch that comes out right-padded anyway is refused.

**Scoring** runs the model on the processor's inputs for context+continuation (images included),
padded on the right, and reads the logits at the continuation's positions; a model whose logits
do not line up with its input ids is refused rather than misread.

**BLIP captioners** (``BlipForConditionalGeneration``, :class:`BlipCaptioner`) have no image
tokens: the image conditions the text decoder through cross-attention. A request has exactly one
image; the prompt (optional, e.g. ``"a picture of"``) follows the decoder's BOS; answers end at its
SEP token. Generation batches hold prompts of one token length only (the BERT-style decoder has
absolute positions), so padding never reaches it; scoring pads on the right.

``image_tokens`` (model types in :data:`harness_lm.names.IMAGE_TOKEN_TYPES`): the vision tower's
hidden states for the repo's image processor output: ``layer=None`` its ``last_hidden_state``,
an int indexes ``hidden_states`` (0 the embeddings).
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Sequence

from harness import (GenerationRequest, IncompatibleError, LoadContext, Loglikelihood, LoglikelihoodRequest,
                     ModelLoadError, ModelSpec, cached_commit, ensure_torchvision, first_line, hub_failure,
                     layer_index, n_parameters, state_fingerprint)

from . import names
from .generative import (GenerativeBase, as_rgb, chat_content, check_left_padded, continuation_tokens,
                         drop_placeholders, eos_ids, prompt_parts, quiet_progress, right_pad, scored_pair, summed,
                         template_id)

#: Model types whose processor puts the image tokens into the text itself.
SELF_PLACING = frozenset({"blip", "blip-2", "instructblip", "instructblipvideo", "paligemma", "fuyu", "git",
                          "kosmos-2", "pix2struct", "vision-encoder-decoder", "florence2", "udop"})
#: Per-token inputs besides the ids and mask that a processor may return (rebuilt when re-padding).
TOKEN_INPUTS = ("token_type_ids", "mm_token_type_ids")


class ImageTextGenerator(GenerativeBase):
    """An image-text-to-text transformers model with its processor (``generate``, ``loglikelihood``,
    ``image_tokens`` where declared)."""

    def __init__(self, model: Any, processor: Any, revision: str | None, device: str, chat: bool, name: str) -> None:
        self.model, self.processor, self.revision, self.device, self.name = model, processor, revision, device, name
        self.model_type = str(getattr(model.config, "model_type", ""))
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is None:
            raise ModelLoadError(f"cannot load model {name!r}: its processor {type(processor).__name__} has no "
                                 "tokenizer")
        self.tokenizer = tokenizer
        self.padding_fixed = tokenizer.padding_side != "left"
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self.encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        template = getattr(processor, "chat_template", None) if chat else None
        self._template = template or None
        self.chat_template = template_id(self._template)
        image_token = getattr(processor, "image_token", None) or getattr(tokenizer, "image_token", None)
        self.image_token = None if self.model_type in SELF_PLACING else image_token
        self.eos_ids = eos_ids(model, tokenizer)
        #: Not an embedder; the feature store reads it for empty ``image_tokens`` requests.
        self.embed_dim: int | None = None
        self._fingerprint: str | None = None

    # prompts -----------------------------------------------------------------------------------
    def _text(self, prompt: str, n_images: int) -> str:
        """The prompt as the processor reads it (see the module docstring)."""
        if self._template:
            message = {"role": "user", "content": chat_content(prompt, n_images)}
            return self.processor.apply_chat_template([message], add_generation_prompt=True, tokenize=False)
        if not n_images or self.image_token is None:
            return drop_placeholders(prompt)
        parts = prompt_parts(prompt)
        if len(parts) == 1:
            return self.image_token * n_images + "\n" + prompt
        return self.image_token.join(parts)

    def _inputs(self, texts: list[str], images: list[tuple[Any, ...]], side: str | None = None) -> dict[str, Any]:
        """The processor's batch, padded on ``side`` (None: the tokenizer's own side); each request's
        images nested under it."""
        kwargs: dict[str, Any] = {"return_tensors": "pt", "padding": True}
        bos = self.tokenizer.bos_token
        if self._template and bos and all(text.startswith(bos) for text in texts):
            kwargs["add_special_tokens"] = False
        if any(images):
            rgb = [[as_rgb(image) for image in row] for row in images]
            kwargs["images"] = [row[0] for row in rgb] if all(len(row) == 1 for row in rgb) else rgb
        previous = self.tokenizer.padding_side
        self.tokenizer.padding_side = side or previous
        try:
            return dict(self.processor(text=texts, **kwargs))
        finally:
            self.tokenizer.padding_side = previous

    def _batch_key(self, request: GenerationRequest | LoglikelihoodRequest) -> Any:
        return len(request.images)

    # generation ----------------------------------------------------------------------------------
    def _generate_ids(self, requests: list[GenerationRequest], kwargs: dict[str, Any]) -> list[list[int]]:
        texts = [self._text(request.prompt, len(request.images)) for request in requests]
        inputs = self._inputs(texts, [request.images for request in requests])
        ids = inputs["input_ids"]
        if not self.encoder_decoder:
            check_left_padded(inputs["attention_mask"], f"model {self.name!r}")
        inputs = {key: value.to(self.device) if hasattr(value, "to") else value for key, value in inputs.items()}
        out = self.model.generate(**inputs, pad_token_id=self.pad_id, eos_token_id=sorted(self.eos_ids) or None,
                                  **kwargs)
        if self.encoder_decoder:
            return [row[1:].tolist() for row in out]  # after the decoder start token
        width = ids.shape[1]
        if out.shape[1] >= width and bool((out[:, :width].cpu() == ids).all()):
            return [row[width:].tolist() for row in out]
        return [row.tolist() for row in out]  # a model that returns the new tokens only

    # scoring ---------------------------------------------------------------------------------------
    def _score(self, requests: list[LoglikelihoodRequest]) -> list[Loglikelihood]:
        pairs = [scored_pair(request.context, request.continuation,
                             lambda text, n=len(request.images): self._text(text, n)) for request in requests]
        images = [request.images for request in requests]
        context = self._inputs([c for c, _ in pairs], images, "right")
        whole = self._inputs([c + k for c, k in pairs], images, "right")
        rows, starts, extras = [], [], {key: [] for key in TOKEN_INPUTS if key in whole}
        for b, (_, continuation) in enumerate(pairs):
            n_context = int(context["attention_mask"][b].sum())
            n_whole = int(whole["attention_mask"][b].sum())
            context_ids = context["input_ids"][b, :n_context].tolist()
            whole_ids = whole["input_ids"][b, :n_whole].tolist()
            tokens = continuation_tokens(context_ids, whole_ids, lambda: self._alone(continuation))
            rows.append(context_ids + tokens)
            starts.append(n_context)
            for key in extras:  # the whole's values, or the context's and zeros for appended tokens
                values = whole[key][b, :n_whole].tolist() if whole_ids == rows[-1] else \
                    context[key][b, :n_context].tolist() + [0] * len(tokens)
                extras[key].append(values)
        ids, mask = right_pad(rows, self.pad_id)
        inputs = {key: value for key, value in whole.items() if key not in ("input_ids", "attention_mask", *extras)}
        inputs.update(input_ids=ids, attention_mask=mask)
        for key, values in extras.items():
            inputs[key] = right_pad(values, 0)[0]
        inputs = {key: value.to(self.device) if hasattr(value, "to") else value for key, value in inputs.items()}
        logits = self.model(**inputs).logits
        if logits.shape[:2] != ids.shape:
            raise IncompatibleError(f"model {self.name!r}: its logits {tuple(logits.shape[:2])} do not line up with "
                                    f"its input ids {tuple(ids.shape)}; log-likelihood is not supported for "
                                    f"model_type {self.model_type!r}")
        return [summed(logits[b, start - 1:len(row) - 1], row[start:])
                for b, (row, start) in enumerate(zip(rows, starts))]

    def _alone(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    # image tokens ----------------------------------------------------------------------------------
    def preprocess(self, image: Any) -> Any:
        """The repo's image processor on one image: ``(C, H, W)``."""
        pixels = self.processor.image_processor(images=as_rgb(image), return_tensors="pt")["pixel_values"]
        if pixels.ndim != 4:
            raise IncompatibleError(f"model {self.name!r}: its image processor makes {pixels.ndim}-d pixel "
                                    "values, not one (C, H, W) image")
        return pixels[0]

    def encode_image_tokens(self, pixels: Any, layer: int | None = None) -> Any:
        """``(N, C, H, W)`` -> ``(N, T, D)`` hidden states of the vision tower."""
        tower = vision_tower(self.model)
        if tower is None:
            raise IncompatibleError(f"model {self.name!r}: no vision tower found to take image tokens from")
        outputs = tower(pixel_values=pixels.to(self.device), output_hidden_states=layer is not None)
        if layer is None:
            return outputs.last_hidden_state
        count = len(outputs.hidden_states)
        return outputs.hidden_states[layer_index(layer, count, f"{self.model_type!r} vision tower has {count} "
                                                               "hidden states (0 is the embeddings)")]

    def provenance(self) -> dict[str, Any]:
        """Hub commit (None for local directories), weights fingerprint, parameter count, chat template id."""
        if self._fingerprint is None:
            self._fingerprint = state_fingerprint(self.model)
        return {"revision": self.revision, "fingerprint": self._fingerprint, "n_parameters": n_parameters(self.model),
                "chat_template": self.chat_template}


class BlipCaptioner(ImageTextGenerator):
    """``BlipForConditionalGeneration``: one image (cross-attention) + an optional prompt -> a caption."""

    def __init__(self, model: Any, processor: Any, revision: str | None, device: str, chat: bool, name: str) -> None:
        super().__init__(model, processor, revision, device, chat=False, name=name)
        text = model.config.text_config
        self.bos_id, self.pad_id = int(text.bos_token_id), int(text.pad_token_id)
        self.eos_ids = frozenset({int(text.sep_token_id)})

    def _batch_key(self, request: GenerationRequest | LoglikelihoodRequest) -> Any:
        if len(request.images) != 1:
            raise IncompatibleError(f"model {self.name!r} is a captioner: a request needs exactly one image, "
                                    f"got {len(request.images)}")
        if isinstance(request, GenerationRequest):  # one prompt length per generation batch (see module docstring)
            return len(self._prompt_ids(request.prompt))
        return 1

    def _prompt_ids(self, prompt: str) -> list[int]:
        return [self.bos_id] + self._alone(drop_placeholders(prompt))

    def _image_states(self, requests: Sequence[GenerationRequest | LoglikelihoodRequest]) -> tuple[Any, Any]:
        import torch

        pixels = self.processor.image_processor(images=[as_rgb(r.images[0]) for r in requests],
                                                return_tensors="pt")["pixel_values"].to(self.device)
        states = self.model.vision_model(pixel_values=pixels)[0]
        return states, torch.ones(states.shape[:-1], dtype=torch.long, device=states.device)

    def _generate_ids(self, requests: list[GenerationRequest], kwargs: dict[str, Any]) -> list[list[int]]:
        import torch

        rows = [self._prompt_ids(request.prompt) for request in requests]
        ids = torch.tensor(rows, dtype=torch.long, device=self.device)  # one length per batch: no padding
        states, states_mask = self._image_states(requests)
        out = self.model.text_decoder.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), encoder_hidden_states=states,
            encoder_attention_mask=states_mask, eos_token_id=sorted(self.eos_ids), pad_token_id=self.pad_id, **kwargs)
        return [row[ids.shape[1]:].tolist() for row in out]

    def _score(self, requests: list[LoglikelihoodRequest]) -> list[Loglikelihood]:
        rows, starts = [], []
        for request in requests:
            context, continuation = scored_pair(request.context, request.continuation, drop_placeholders)
            context_ids = self._prompt_ids(context)
            whole = self._prompt_ids(context + continuation) if continuation else context_ids
            tokens = continuation_tokens(context_ids, whole, lambda: self._alone(continuation))
            rows.append(context_ids + tokens)
            starts.append(len(context_ids))
        ids, mask = right_pad(rows, self.pad_id)
        states, states_mask = self._image_states(requests)
        logits = self.model.text_decoder(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                         encoder_hidden_states=states, encoder_attention_mask=states_mask).logits
        return [summed(logits[b, start - 1:len(row) - 1], row[start:])
                for b, (row, start) in enumerate(zip(rows, starts))]


def vision_tower(model: Any) -> Any:
    """The vision encoder of an image-text model (``vision_tower`` or ``vision_model``, on the model
    or its inner ``model``), or None."""
    for owner in (model, getattr(model, "model", None)):
        for attribute in ("vision_tower", "vision_model"):
            tower = getattr(owner, attribute, None) if owner is not None else None
            if tower is not None and "pixel_values" in inspect.signature(tower.forward).parameters:
                return tower
    return None


def _auto_class() -> Any:
    import transformers

    auto = getattr(transformers, "AutoModelForImageTextToText", None) or getattr(transformers, "AutoModelForVision2Seq",
                                                                                 None)
    if auto is None:
        raise ModelLoadError(f"transformers {transformers.__version__} has no AutoModelForImageTextToText; "
                             "upgrade transformers")
    return auto


def load(spec: ModelSpec, ctx: LoadContext) -> ImageTextGenerator:
    """Factory named by the ``vlm:`` specs: processor and model, float32 weights."""
    ensure_torchvision()
    import torch
    import transformers

    path, hub = spec.args["path"], bool(spec.args.get("hub"))
    options = dict(spec.args.get("options", {}))
    if not hub and not os.path.isdir(path):
        raise ModelLoadError(f"cannot load model {spec.name!r}: directory not found: {path}")
    kwargs: dict[str, Any] = {"trust_remote_code": bool(options.get("remote_code", 0))}
    if hub and spec.revision:
        kwargs["revision"] = spec.revision
    try:
        raw, _ = transformers.PretrainedConfig.get_config_dict(path, **{k: v for k, v in kwargs.items()
                                                                         if k == "revision"})
        actual = names.vlm_capabilities(raw, spec.name)
        if not spec.capabilities <= actual:  # planned from a guess (hub cache miss), or the file changed since
            how = "guessed (its config.json was not cached)" if spec.args.get("guessed") else "resolved"
            raise ModelLoadError(f"cannot load model {spec.name!r}: it was {how} as "
                                 f"{', '.join(sorted(spec.capabilities))} but model_type {raw.get('model_type')!r} "
                                 f"offers {', '.join(sorted(actual))}"
                                 + ("; run again (its config.json is cached now)" if spec.args.get("guessed") else ""))
        config = transformers.AutoConfig.from_pretrained(path, **kwargs)
        processor = transformers.AutoProcessor.from_pretrained(path, **kwargs)
        with quiet_progress():
            model = _auto_class().from_pretrained(path, dtype=torch.float32, **kwargs)
        model.to(ctx.device).eval()
        model.requires_grad_(False)
        revision = (cached_commit(path, "config.json", spec.revision) or spec.revision) if hub else None
        chat = bool(options.get("chat", 1))
        if config.model_type == "blip":
            return BlipCaptioner(model, processor, revision, ctx.device, chat, spec.name)
        return ImageTextGenerator(model, processor, revision, ctx.device, chat, spec.name)
    except ModelLoadError:
        raise
    except Exception as exc:  # OSError (missing/offline), ValueError (unknown type), corrupt weights
        raise ModelLoadError((hub and hub_failure(spec.name, exc))
                             or f"cannot load model {spec.name!r}: {type(exc).__name__}: {first_line(exc)}") from None
