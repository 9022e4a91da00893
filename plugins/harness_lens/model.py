"""The LENS model: vision modules describe an image in text, a frozen LLM answers from that text.

Parts are ordinary harness models loaded with ``LoadContext.part`` (recorded in every result as
auxiliary models with their role and fingerprint):

- **tags** / **attributes**: the CLIP-style part's L2-normalised image embedding against the
  L2-normalised text embeddings of ``text_template.format(entry)`` for each vocabulary entry (text
  features cached in the feature store); the top ``num_tags`` / ``num_attributes`` entries, kept
  only when their cosine is >= ``threshold`` (an empty list is kept). Image embeddings are not
  cached (the core caches part images by no identity), they are cheap next to captioning;
- **captions**: the captioner part, text prefix ``prefix`` (the caption is the text after it):
  one beam-search caption (``beams`` beams) and ``num_captions`` sampled captions (temperature 1,
  ``top_p``; the engine has no top-k), each at most ``caption_tokens`` new tokens. Each sampled
  caption has its own seed, derived from the run seed, the image's pixels and its index, so the
  captions of an image are the same across runs, batch sizes and whatever else is in the batch.
  Caption requests go through the part's generation engine: cached in the response store under
  the captioner's own identity, so a LENS that differs only in its reasoner reuses them;
- **ocr** (optional): RapidOCR lines (:mod:`.ocr`);
- **reasoner**: the prompt (:mod:`.prompts`, template of ``mode``) with the request's text as the
  question goes to the reasoner part with the request's decoding settings (cached under the
  reasoner's identity); ``loglikelihood`` scores the continuation after the LENS prompt.

``generate`` returns the reasoner's text with ``details``: ``tags``, ``attributes``, ``caption``,
``captions``, ``ocr`` (None without OCR), ``prompt``, ``mode`` and ``template``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

from harness import (IMAGE_PLACEHOLDER, Generation, GenerationRequest, IncompatibleError, LoadContext,
                     LoglikelihoodRequest, ModelLoadError, ModelSpec)

from .names import digest
from .prompts import render, template_id


def image_digest(image: Any) -> str:
    """sha256 of an image's RGB pixels and size."""
    rgb = image.convert("RGB")
    return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()


def caption_seed(run_seed: int, image: str, index: int) -> int:
    """The seed of sampled caption ``index`` of the image with digest ``image`` (31 bits)."""
    raw = hashlib.sha256(f"lens-caption|{run_seed}|{image}|{index}".encode()).digest()
    return int.from_bytes(raw[:4], "big") & 0x7FFFFFFF


def top_entries(image_features: Any, text_features: Any, entries: Sequence[str], k: int,
                threshold: float) -> list[list[str]]:
    """Per image, the top-``k`` entries by cosine, those below ``threshold`` dropped (best first)."""
    import numpy as np

    def unit(x: Any) -> Any:
        x = np.asarray(x, dtype=np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    scores = unit(image_features) @ unit(text_features).T
    out = []
    for row in scores:
        order = np.argsort(-row, kind="stable")[:k]
        out.append([entries[i] for i in order if row[i] >= threshold])
    return out


class Lens:
    """``generate`` and ``loglikelihood`` through the LENS modules (see the module docstring)."""

    def __init__(self, cfg: dict[str, Any], parts: dict[str, Any], run_seed: int, ocr: Any = None) -> None:
        self.cfg, self.parts, self.run_seed, self.ocr = cfg, parts, run_seed, ocr
        self.template = cfg["template"]
        self.chat_template = template_id(self.template)
        self._vocab: dict[str, Any] = {}
        self._provenance: dict[str, Any] | None = None

    # -- modules ----------------------------------------------------------------------------
    def _text_features(self, role: str) -> Any:
        if role not in self._vocab:
            entries = self.cfg[f"{role}_entries"]
            self._vocab[role] = self.parts[role].texts([self.cfg["text_template"].format(e) for e in entries])
        return self._vocab[role]

    def _scored(self, images: list[Any]) -> dict[str, list[list[str]]]:
        tags_part = self.parts["tags"]
        features = tags_part.images(images)
        out = {"tags": top_entries(features, self._text_features("tags"), self.cfg["tags_entries"],
                                   self.cfg["num_tags"], self.cfg["threshold"])}
        if self.cfg["attributes"] == "none":
            out["attributes"] = [[] for _ in images]
            return out
        attributes_part = self.parts["attributes"]
        if attributes_part is not tags_part:
            features = attributes_part.images(images)
        out["attributes"] = top_entries(features, self._text_features("attributes"), self.cfg["attributes_entries"],
                                        self.cfg["num_attributes"], self.cfg["threshold"])
        return out

    def _captions(self, images: list[Any], digests: list[str]) -> list[tuple[str, list[str]]]:
        cfg = self.cfg
        n = cfg["num_captions"]
        requests = []
        for image, key in zip(images, digests):
            requests.append(GenerationRequest(cfg["prefix"], (image,), max_new_tokens=cfg["caption_tokens"],
                                              num_beams=cfg["beams"]))
            requests += [GenerationRequest(cfg["prefix"], (image,), max_new_tokens=cfg["caption_tokens"],
                                           temperature=1.0, top_p=cfg["top_p"],
                                           seed=caption_seed(self.run_seed, key, i)) for i in range(n)]
        texts = [g.text.strip() for g in self.parts["captions"].generate(requests)]
        return [(texts[j * (n + 1)], texts[j * (n + 1) + 1:(j + 1) * (n + 1)]) for j in range(len(images))]

    def describe(self, images: Sequence[Any]) -> list[dict[str, Any]]:
        """Module outputs per image (each distinct image computed once)."""
        digests = [image_digest(image) for image in images]
        unique: dict[str, Any] = {}
        for key, image in zip(digests, images):
            unique.setdefault(key, image.convert("RGB"))
        keys, pils = list(unique), list(unique.values())
        scored = self._scored(pils)
        captions = self._captions(pils, keys)
        found = {}
        for j, key in enumerate(keys):
            found[key] = {"tags": scored["tags"][j], "attributes": scored["attributes"][j],
                          "caption": captions[j][0], "captions": captions[j][1],
                          "ocr": self.ocr.read(pils[j]) if self.ocr is not None else None}
        return [found[key] for key in digests]

    def prompt(self, modules: dict[str, Any], question: str) -> str:
        """The reasoner's prompt: the template of the mode filled with the module outputs."""
        return render(self.template["text"], {**modules, "question": question})

    def _image(self, request: Any) -> Any:
        if len(request.images) != 1:
            raise IncompatibleError(f"LENS answers about exactly one image per request, got {len(request.images)}")
        return request.images[0]

    @staticmethod
    def _question(text: str) -> str:
        return text.replace(IMAGE_PLACEHOLDER, "").strip()

    # -- capabilities -----------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        requests = list(requests)
        modules = self.describe([self._image(r) for r in requests])
        prompts = [self.prompt(m, self._question(r.prompt)) for m, r in zip(modules, requests)]
        asked = [GenerationRequest(p, (), max_new_tokens=r.max_new_tokens, stop=r.stop, temperature=r.temperature,
                                   top_p=r.top_p, num_beams=r.num_beams, seed=r.seed)
                 for p, r in zip(prompts, requests)]
        answers = self.parts["reasoner"].generate(asked)
        return [Generation(a.text, a.n_tokens, details={**m, "prompt": p, "mode": self.cfg["mode"],
                                                        "template": self.chat_template})
                for a, m, p in zip(answers, modules, prompts)]

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Any]:
        reasoner = self.parts["reasoner"]
        if "loglikelihood" not in reasoner.record.get("capabilities", ()):
            raise IncompatibleError(f"LENS: the reasoner {reasoner.name!r} has no loglikelihood capability")
        requests = list(requests)
        modules = self.describe([self._image(r) for r in requests])
        asked = [LoglikelihoodRequest(self.prompt(m, self._question(r.context)), r.continuation)
                 for m, r in zip(modules, requests)]
        return reasoner.loglikelihood(asked)

    def provenance(self) -> dict[str, Any]:
        """Fingerprint: sha256 over the parts' fingerprints (by role), the configuration and the OCR
        engine's version; parameters of the distinct parts."""
        if self._provenance is None:
            records = {role: part.record for role, part in self.parts.items()}
            fingerprints = {role: r["fingerprint"] for role, r in records.items()}
            ocr = self.ocr.version() if self.ocr is not None else None
            blob = json.dumps({"parts": fingerprints, "config": digest(self.cfg), "ocr": ocr}, sort_keys=True)
            distinct = {r["fingerprint"]: int(r.get("n_parameters") or 0) for r in records.values()}
            self._provenance = {"revision": None, "fingerprint": hashlib.sha256(blob.encode()).hexdigest(),
                                "n_parameters": sum(distinct.values())}
        return dict(self._provenance)


def load(spec: ModelSpec, ctx: LoadContext) -> Lens:
    """Factory named by ``lens:`` specs: each part by harness name, checked, then the OCR engine."""
    cfg = dict(spec.args["config"])
    same = cfg["attributes"] == cfg["tags"]
    parts: dict[str, Any] = {"tags": ctx.part(cfg["tags"], "image_embed", "lens tags and attributes" if same
                                              else "lens tags")}
    if "text_embed" not in parts["tags"].record.get("capabilities", ()):
        raise ModelLoadError(f"model {spec.name!r}: the tags model {cfg['tags']!r} has no text_embed capability "
                             "(tags need a CLIP-style image+text model)")
    if same:
        parts["attributes"] = parts["tags"]
    elif cfg["attributes"] != "none":
        parts["attributes"] = ctx.part(cfg["attributes"], "image_embed", "lens attributes")
        if "text_embed" not in parts["attributes"].record.get("capabilities", ()):
            raise ModelLoadError(f"model {spec.name!r}: the attributes model {cfg['attributes']!r} has no "
                                 "text_embed capability")
    parts["captions"] = ctx.part(cfg["captions"], "generate", "lens captions")
    parts["reasoner"] = ctx.part(cfg["reasoner"], "generate", "lens reasoner")
    ocr = None
    if cfg["ocr"] == "rapidocr":
        from .ocr import RapidOCRModule

        ocr = RapidOCRModule()
    return Lens(cfg, parts, ctx.seed, ocr)
