"""The ``lens:`` name grammar and configuration, parsed without importing torch.

    lens:tags=MODEL,captions=MODEL,reasoner=MODEL[,KEY=VALUE...]
    lens:CONFIG.yaml | lens:CONFIG.yml | lens:CONFIG.json     the same keys as a mapping

Values are harness model names (which may themselves hold ``,`` and ``=``, e.g.
``lm:DIR#pool=mean,layer=-2``): the name is split only at a comma followed by one of the keys
below and ``=``. Keys (defaults as in ``ContextualAI/lens`` where it has one):

- ``tags`` (required): a CLIP-style model (``image_embed`` and ``text_embed``) that scores the tag
  vocabulary; ``attributes``: the model that scores the attribute vocabulary (default: the tags
  model; ``none``: no attributes);
- ``captions`` (required): an image captioner with ``generate`` (e.g. ``vlm:`` BLIP);
- ``reasoner`` (required): a text LLM with ``generate`` (``loglikelihood`` too for scoring);
- ``ocr``: ``none`` (default) or ``rapidocr`` (offline engine, package ``rapidocr-onnxruntime``);
- ``mode``: prompt template, one of ``all`` (default), ``vqa``, ``vision``, ``hm``, ``paper``;
- ``num_tags`` 5, ``num_attributes`` 5, ``threshold`` 0.2 (cosine; tags below it are dropped, an
  empty list is kept), ``num_captions`` 10 (sampled captions), ``top_p`` 1.0 (sampling; the
  engine has no top-k, see README), ``caption_tokens`` 30 (max new tokens of every caption),
  ``beams`` 5 (beam-search caption), ``prefix`` ``a picture of`` (caption text prefix);
- ``tags_vocab`` / ``attributes_vocab``: text files, one entry a line (``#`` comments); default the
  bundled ``data/tags.v1.txt`` / ``data/attributes.v1.txt``; ``text_template`` ``a photo of {}``
  (how a vocabulary entry is embedded).

The canonical name lists the keys given, sorted, with paths made absolute. Everything that
decides the outputs (vocabularies, templates, settings) is in the spec's ``args["config"]``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

from harness import ModelLoadError, ModelSpec, UnknownNameError

PREFIX = "lens:"
FACTORY = "harness_lens.model:load"
CAPABILITIES = frozenset({"generate", "loglikelihood"})
DATA = Path(__file__).parent / "data"
PROMPTS_FILE = DATA / "prompts.v1.json"
DEFAULTS: dict[str, Any] = {
    "attributes": None, "ocr": "none", "mode": "all", "num_tags": 5, "num_attributes": 5, "threshold": 0.2,
    "num_captions": 10, "top_p": 1.0, "caption_tokens": 30, "beams": 5, "prefix": "a picture of",
    "tags_vocab": str(DATA / "tags.v1.txt"), "attributes_vocab": str(DATA / "attributes.v1.txt"),
    "text_template": "a photo of {}",
}
REQUIRED = ("tags", "captions", "reasoner")
KEYS = REQUIRED + tuple(DEFAULTS)
INTS = {"num_tags": 1, "num_attributes": 1, "num_captions": 0, "caption_tokens": 1, "beams": 1}
OCR_ENGINES = ("none", "rapidocr")
USAGE = (f"expected {PREFIX}tags=MODEL,captions=MODEL,reasoner=MODEL[,KEY=VALUE...] (keys: {', '.join(KEYS)}) "
         f"or {PREFIX}CONFIG.yaml")
_SPLIT = re.compile(r",(?=(?:%s)=)" % "|".join(KEYS))


def prompt_templates() -> dict[str, Any]:
    """The bundled prompt templates: ``{"version": N, "modes": {mode: template}}``."""
    return json.loads(PROMPTS_FILE.read_text(encoding="utf-8"))


def read_vocabulary(path: str, what: str, name: str) -> list[str]:
    """Entries of a vocabulary file (stripped, blank and ``#`` lines skipped); one-line errors."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"model {name!r}: cannot read the {what} vocabulary {path}: {exc}") from None
    entries = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if not entries:
        raise ModelLoadError(f"model {name!r}: the {what} vocabulary {path} is empty")
    repeated = sorted({e for e in entries if entries.count(e) > 1})
    if repeated:
        raise ModelLoadError(f"model {name!r}: the {what} vocabulary {path} lists {repeated[0]!r} more than once")
    return entries


def _pairs(rest: str, name: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in _SPLIT.split(rest):
        key, sep, value = item.partition("=")
        if not sep or key not in KEYS:
            raise UnknownNameError(f"model {name!r}: {item!r} is not KEY=VALUE with a known key; {USAGE}")
        if key in pairs:
            raise UnknownNameError(f"model {name!r}: key {key!r} given twice")
        pairs[key] = value
    return pairs


def _from_file(path: str, name: str) -> dict[str, Any]:
    from harness import read_yaml_file

    data = read_yaml_file(Path(path), error=ModelLoadError, what="LENS config")
    if not isinstance(data, Mapping):
        raise ModelLoadError(f"model {name!r}: LENS config {path} must be a mapping of {', '.join(KEYS)}")
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ModelLoadError(f"model {name!r}: LENS config {path}: unknown key {unknown[0]!r} "
                             f"(keys: {', '.join(KEYS)})")
    return dict(data)


def _abs(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def config(given: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The full, checked configuration (defaults filled, numbers converted, vocabularies read)."""
    missing = [key for key in REQUIRED if not given.get(key)]
    if missing:
        raise UnknownNameError(f"model {name!r}: no {missing[0]}=MODEL; {USAGE}")
    out = {**DEFAULTS, **{k: v for k, v in given.items() if v is not None}}
    for key in REQUIRED:
        out[key] = str(out[key])
    if out["attributes"] in (None, ""):
        out["attributes"] = out["tags"]
    try:
        for key, low in INTS.items():
            out[key] = int(out[key])
            if out[key] < low:
                raise ValueError(f"{key} must be >= {low}")
        out["threshold"], out["top_p"] = float(out["threshold"]), float(out["top_p"])
        if not -1 <= out["threshold"] <= 1:
            raise ValueError("threshold is a cosine, in [-1, 1]")
        if not 0 < out["top_p"] <= 1:
            raise ValueError("top_p must be in (0, 1]")
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"model {name!r}: {exc}") from None
    modes = prompt_templates()["modes"]
    if out["mode"] not in modes:
        raise ModelLoadError(f"model {name!r}: mode {out['mode']!r} is not one of {', '.join(modes)}")
    if out["ocr"] not in OCR_ENGINES:
        raise ModelLoadError(f"model {name!r}: ocr {out['ocr']!r} is not one of {', '.join(OCR_ENGINES)}")
    if out["ocr"] == "rapidocr" and importlib.util.find_spec("rapidocr_onnxruntime") is None:
        raise ModelLoadError(f"model {name!r}: ocr=rapidocr needs the package rapidocr-onnxruntime "
                             "(pip install rapidocr-onnxruntime)")
    if "{}" not in str(out["text_template"]):
        raise ModelLoadError(f"model {name!r}: text_template {out['text_template']!r} has no {{}} for the entry")
    out["prefix"], out["text_template"] = str(out["prefix"]), str(out["text_template"])
    for key in ("tags_vocab", "attributes_vocab"):
        out[key] = _abs(str(out[key]))
    out["tags_entries"] = read_vocabulary(out["tags_vocab"], "tag", name)
    out["attributes_entries"] = ([] if out["attributes"] == "none"
                                 else read_vocabulary(out["attributes_vocab"], "attribute", name))
    return out


def digest(cfg: Mapping[str, Any]) -> str:
    """sha256 of a configuration's canonical JSON (vocabulary paths left out: their entries count)."""
    kept = {k: v for k, v in cfg.items() if k not in ("tags_vocab", "attributes_vocab")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def parse(name: str) -> ModelSpec | None:
    """Spec of a ``lens:`` name; None for other prefixes (see the module docstring)."""
    if not name.startswith(PREFIX):
        return None
    rest = name[len(PREFIX):]
    if not rest:
        raise UnknownNameError(f"model {name!r}: {USAGE}")
    if "=" not in rest.split(",")[0] and rest.endswith((".yaml", ".yml", ".json")):
        path = _abs(rest)
        given = _from_file(path, name)
        canonical = f"{PREFIX}{path}"
    else:
        given = _pairs(rest, name)
        for key in ("tags_vocab", "attributes_vocab"):
            if key in given:
                given[key] = _abs(given[key])
        canonical = PREFIX + ",".join(f"{k}={given[k]}" for k in sorted(given))
    cfg = config(given, canonical)
    templates = prompt_templates()
    cfg["template"] = {"version": templates["version"], "mode": cfg["mode"], "text": templates["modes"][cfg["mode"]]}
    return ModelSpec(name=canonical, factory=FACTORY, capabilities=CAPABILITIES, args={"config": cfg},
                     description=f"LENS ({cfg['mode']} prompt v{templates['version']}): tags {cfg['tags']}, "
                                 f"captions {cfg['captions']}, reasoner {cfg['reasoner']}")
