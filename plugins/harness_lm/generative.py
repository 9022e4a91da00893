"""Generation and log-likelihood scoring, shared by text LMs (``lm:``) and image-text models (``vlm:``).

A family (a causal text LM, a seq2seq text LM, an image-text-to-text model, a BLIP captioner)
implements two methods on :class:`GenerativeBase`: ``_generate_ids(requests, decoding)`` (new
token ids per request) and ``_score(requests)``. The base does everything the families share:

**Batches.** Requests are grouped by their settings (and by image count for image models); each
group is one batch (halved on out-of-memory errors). Decoder-only batches are padded on the
**left** for generation (asserted: a tokenizer that pads right is refused at generation time, after
the loaders set ``padding_side="left"``), and transformers derives position ids from the
attention mask, so a padded prompt generates what it would alone. Scoring batches are padded on
the **right**, as lm-evaluation-harness does: causal attention never lets a real token see a pad
after it and every row's positions start at 0, so values do not depend on the batch. Every
request keeps its own images (never flattened across a batch).

**Decoding** is exactly the request's: greedy (``temperature == 0``, one beam), beam search
(``num_beams > 1``, no sampling), or sampling with ``temperature`` and ``top_p`` (``top_k`` off).
Neutral values override the checkpoint's ``generation_config.json`` for repetition penalty,
n-gram blocking, length penalty and minimum length; it only contributes special tokens. A sampled
request is generated alone under ``torch.manual_seed(request.seed)`` (inside ``fork_rng``, so the
global RNG is untouched): the same seed gives the same text whatever else is in the batch.
Answers are the new tokens up to the first EOS, decoded without special tokens and not stripped;
each stop string is cut with everything after it, and ``n_tokens`` counts the tokens of what is
kept (EOS not counted).

**Log-likelihood** (see :mod:`harness.models`): the sum of ``log_softmax`` of the logits at the
continuation's positions (teacher forcing, float64 sums), ``n_tokens`` continuation tokens, and
``greedy`` when the argmax at every one of those positions is the continuation's token.
Tokenisation follows lm-evaluation-harness: trailing whitespace of the context moves to the front
of the continuation (``"Answer: " + "red"`` is scored as ``"Answer:" + " red"``; this happens to the
user's context, before any chat template wraps it); then context
and context+continuation are encoded, and the continuation's tokens are those of the whole
string past the context's length -- the tokenisation a model sees when it reads the answer
naturally. When a BPE merge crosses the boundary (the context's tokens are not a prefix of the
whole's), the context's own tokens are kept and the continuation is encoded alone and appended,
so the context is always tokenised exactly as in generation. A chat model wraps the context in its
chat template as for generation, so the continuation is scored as the assistant's answer.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from harness import (IMAGE_PLACEHOLDER, Generation, GenerationRequest, IncompatibleError, Loglikelihood,
                     LoglikelihoodRequest, split_on_oom)


# -- prompts ----------------------------------------------------------------------------------------
def template_id(template: Any) -> str:
    """``sha256:<hex>`` of a chat template (a string, or a dict of named templates), ``none`` for None."""
    if not template:
        return "none"
    text = template if isinstance(template, str) else json.dumps(template, sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def prompt_parts(prompt: str) -> list[str]:
    """The text around each :data:`IMAGE_PLACEHOLDER`: ``n`` placeholders give ``n + 1`` parts."""
    return prompt.split(IMAGE_PLACEHOLDER)


def drop_placeholders(prompt: str) -> str:
    """The prompt without its placeholders (for models that place images themselves, or none):
    whitespace next to a placeholder goes with it, and the parts are joined by one space."""
    parts = prompt_parts(prompt)
    if len(parts) == 1:
        return prompt
    last = len(parts) - 1
    kept = [part.lstrip() if i else part for i, part in enumerate(parts)]
    kept = [part.rstrip() if i < last else part for i, part in enumerate(kept)]
    return " ".join(part for part in kept if part)


def chat_content(prompt: str, n_images: int) -> list[dict[str, Any]]:
    """Chat-message content: the text with an ``{"type": "image"}`` where each placeholder is, or
    the images first when the prompt has none."""
    parts = prompt_parts(prompt)
    if len(parts) == 1:
        return [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": prompt}]
    content: list[dict[str, Any]] = []
    for i, part in enumerate(parts):
        if i:
            content.append({"type": "image"})
        if part:
            content.append({"type": "text", "text": part})
    return content


def move_whitespace(context: str, continuation: str) -> tuple[str, str]:
    """lm-evaluation-harness's rule: the context's trailing whitespace starts the continuation."""
    stripped = context.rstrip()
    return stripped, context[len(stripped):] + continuation


def scored_pair(context: str, continuation: str, wrap: Callable[[str], str]) -> tuple[str, str]:
    """The context as the model reads it (``wrap``: placeholders, chat template) and the continuation,
    the user's trailing whitespace (``"Answer: "``) moved first. What a chat template writes after the
    user's text (``"<|im_start|>assistant\\n"``) stays in the context: it is the prompt generation
    continues from."""
    context, continuation = move_whitespace(context, continuation)
    return wrap(context), continuation


def continuation_tokens(context_ids: Sequence[int], whole_ids: Sequence[int],
                        alone: Callable[[], list[int]]) -> list[int]:
    """The continuation's tokens: the whole's past the context when the context's tokens are its
    prefix, else the continuation encoded ``alone`` (see the module docstring)."""
    n = len(context_ids)
    if len(whole_ids) > n and list(whole_ids[:n]) == list(context_ids):
        return list(whole_ids[n:])
    return alone()


# -- decoding -------------------------------------------------------------------------------------
def sampled(request: GenerationRequest) -> bool:
    """Sampling (seeded per request) rather than greedy or beam search."""
    return request.temperature > 0 and request.num_beams == 1


def decoding(request: GenerationRequest) -> dict[str, Any]:
    """``generate()`` keyword arguments for a request's settings (see the module docstring)."""
    kwargs: dict[str, Any] = {"max_new_tokens": request.max_new_tokens, "num_beams": request.num_beams,
                              "num_return_sequences": 1, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
                              "length_penalty": 1.0, "min_length": 0}
    if sampled(request):
        kwargs.update(do_sample=True, temperature=request.temperature, top_p=request.top_p, top_k=0)
    else:
        kwargs.update(do_sample=False)
    return kwargs


@contextmanager
def seeded(seed: int, device: str) -> Iterator[None]:
    """``torch.manual_seed(seed)`` inside ``fork_rng``: the caller's RNG state is restored after."""
    import torch

    devices: list[Any] = []
    if str(device).startswith("cuda") and torch.cuda.is_available():
        devices = [torch.device(device).index or 0]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def check_left_padded(mask: Any, what: str) -> None:
    """Refuse a right-padded decoder batch: every row's mask must be zeros, then ones."""
    if mask.shape[1] > 1 and not bool((mask[:, 1:] >= mask[:, :-1]).all()):
        raise IncompatibleError(f"{what}: the tokenizer padded a generation batch on the right; decoder-only "
                                "models must be padded on the left (set tokenizer.padding_side = 'left')")


def right_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    """``(input_ids, attention_mask)`` long tensors, rows padded on the right."""
    import torch

    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(list(row), dtype=torch.long)
        mask[i, :len(row)] = 1
    return ids, mask


def summed(logits: Any, targets: Sequence[int]) -> Loglikelihood:
    """Sum of ``log_softmax(logits)[i, targets[i]]`` (``logits``: ``(n, V)`` at the positions that
    predict each target), the count, and whether every target is the argmax."""
    import torch

    if not len(targets):
        return Loglikelihood(logprob=0.0, n_tokens=0, greedy=True)
    target = torch.tensor(list(targets), dtype=torch.long, device=logits.device)
    logprobs = torch.log_softmax(logits.double(), dim=-1).gather(-1, target[:, None])
    greedy = bool((logits.argmax(dim=-1) == target).all())
    return Loglikelihood(logprob=min(float(logprobs.sum()), 0.0), n_tokens=len(targets), greedy=greedy)


def cut_at_stop(text: str, stops: Sequence[str]) -> str | None:
    """``text`` before the first stop string found in it, or None when none is."""
    found = [text.find(stop) for stop in stops if stop and stop in text]
    return text[:min(found)] if found else None


# -- the shared behaviour -----------------------------------------------------------------------------
class GenerativeBase:
    """``generate`` and ``loglikelihood`` over a family's ``_generate_ids`` and ``_score``."""

    device: str
    tokenizer: Any
    #: ``sha256:<hex>`` of the chat template prompts are wrapped in, or ``none``: part of any
    #: response-cache key (the same weights answer differently under another template).
    chat_template: str = "none"
    eos_ids: frozenset[int] = frozenset()
    name: str = "model"

    # families implement these two
    def _generate_ids(self, requests: list[GenerationRequest], kwargs: dict[str, Any]) -> list[list[int]]:
        raise NotImplementedError

    def _score(self, requests: list[LoglikelihoodRequest]) -> list[Loglikelihood]:
        raise NotImplementedError

    def _batch_key(self, request: GenerationRequest | LoglikelihoodRequest) -> Any:
        """Requests that may share a batch have equal keys (image models: the image count)."""
        return 0

    def _decoding(self, request: GenerationRequest) -> dict[str, Any]:
        kwargs = decoding(request)
        if request.stop:
            kwargs.update(stop_strings=list(request.stop), tokenizer=self.tokenizer)
        return kwargs

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """One :class:`Generation` per request, in order (see the module docstring)."""
        import torch

        requests = list(requests)
        out: list[Generation | None] = [None] * len(requests)
        batches: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            if sampled(request):
                with torch.inference_mode(), seeded(request.seed, self.device):
                    out[i] = self._finish(self._generate_ids([request], self._decoding(request))[0], request)
                continue
            settings = dict(request.settings(), seed=None)
            batches.setdefault(json.dumps([settings, self._batch_key(request)], sort_keys=True), []).append(i)
        for indices in batches.values():
            group = [requests[i] for i in indices]
            kwargs = self._decoding(group[0])
            with torch.inference_mode():
                ids = split_on_oom(lambda part: self._generate_ids(part, kwargs), group, _concat, "generation batch")
            for i, request, tokens in zip(indices, group, ids):
                out[i] = self._finish(tokens, request)
        return [answer for answer in out if answer is not None]

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        """One :class:`Loglikelihood` per request, in order (see the module docstring)."""
        import torch

        requests = list(requests)
        out: list[Loglikelihood | None] = [None] * len(requests)
        batches: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            batches.setdefault(json.dumps(self._batch_key(request)), []).append(i)
        for indices in batches.values():
            group = [requests[i] for i in indices]
            with torch.inference_mode():
                scores = split_on_oom(self._score, group, _concat, "scoring batch")
            for i, score in zip(indices, scores):
                out[i] = score
        return [score for score in out if score is not None]

    def _finish(self, tokens: Sequence[int], request: GenerationRequest) -> Generation:
        """New token ids -> the answer: up to the first EOS, decoded, cut at the first stop string."""
        tokens = list(tokens)
        end = next((i for i, token in enumerate(tokens) if token in self.eos_ids), len(tokens))
        tokens = tokens[:end]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        kept = cut_at_stop(text, request.stop)
        if kept is None:
            return Generation(text=text, n_tokens=len(tokens))
        n = next((k for k in range(len(tokens) + 1)
                  if len(self.tokenizer.decode(tokens[:k], skip_special_tokens=True)) >= len(kept)), len(tokens))
        return Generation(text=kept, n_tokens=n)


def _concat(parts: list[list[Any]]) -> list[Any]:
    return [item for part in parts for item in part]


def eos_ids(model: Any, tokenizer: Any, extra: Sequence[int | None] = ()) -> frozenset[int]:
    """Token ids that end an answer: the generation config's EOS (an id or a list), the tokenizer's."""
    found: set[int] = set()
    for value in (getattr(getattr(model, "generation_config", None), "eos_token_id", None),
                  getattr(tokenizer, "eos_token_id", None), *extra):
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, int):
                found.add(item)
    return frozenset(found)


@contextmanager
def quiet_progress() -> Iterator[None]:
    """transformers shows no progress bars while loading, off a terminal."""
    import sys

    from transformers.utils import logging as hf_logging

    off = not sys.stderr.isatty() and hf_logging.is_progress_bar_enabled()
    if off:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if off:
            hf_logging.enable_progress_bar()


def as_rgb(image: Any) -> Any:
    """A PIL image in RGB from a PIL image, a path, encoded bytes, or an ``(H, W[, C])`` uint8 array."""
    import io

    import PIL.Image

    if isinstance(image, PIL.Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        with PIL.Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as opened:
            return opened.convert("RGB")
    if hasattr(image, "__array__"):
        return PIL.Image.fromarray(image).convert("RGB")
    raise IncompatibleError(f"cannot use a {type(image).__name__} as an image "
                            "(expected a PIL image, a path, encoded bytes or an array)")
