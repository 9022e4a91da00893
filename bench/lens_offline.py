"""What an offline LENS built from real modules can and cannot do (issue #12, item 2).

No CLIP, BLIP or LLM weights install offline, so this measures LENS's *module* idea with the real
offline parts the harness has, outside the ``lens:`` model (which needs a CLIP-style tagger, a
captioner and a generative reasoner):

- tagger: torchvision's ImageNet MobileNetV2 (``torchvision:mobilenet_v2``), the top-5 of the
  softmax over its own 1,000-way head (``TorchvisionEncoder.classifier`` on ``encode_image``);
- OCR: RapidOCR (``rapidocr-onnxruntime``, the LENS ``ocr=rapidocr`` module);
- "reasoner" (not an LLM): the module text (``"Tags: t1, t2, ... Text: l1 l2"``) and each candidate
  answer (the class names) embedded with ``lm:all-MiniLM-L6-v2``; the answer is the candidate of
  highest cosine (ties: lower class index). No module text (OCR alone on an image without text) -> class 0,
so the "ocr" rows on plain images are the share of class 0, not a measurement.

Tasks: the scenes test split (n=200, one object, seed 0), shape (9 classes) and colour (10 classes) labels;
and the same images upscaled 4x with the answer word drawn below the object (the "text" variant),
which is what OCR can read. Run: ``.venv/bin/python bench/lens_offline.py [--n 200]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))


def with_word(image, word: str):  # noqa: ANN001, ANN201
    from PIL import Image, ImageDraw, ImageFont

    big = image.convert("RGB").resize((image.width * 4, image.height * 4), Image.NEAREST)
    canvas = Image.new("RGB", (big.width, big.height + 72), "white")
    canvas.paste(big, (0, 0))
    ImageDraw.Draw(canvas).text((12, big.height + 8), word.upper(), fill="black", font=ImageFont.load_default(size=48))
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    import torch

    from harness import ExecutionConfig
    from harness.modelloader import ModelLoader
    from harness.pluginmanager import get_plugin_manager
    from harness.registry import collect
    from harness_lens.ocr import RapidOCRModule
    from harness_scenes.builder import build

    t0 = time.time()
    rows = build({"n": args.n, "max_objects": 1, "seed": 0}, "test")
    registries = collect(get_plugin_manager([]))
    loader = ModelLoader(registries, ExecutionConfig(device="cpu", cache=False))
    tagger = loader.load("torchvision:mobilenet_v2").model
    minilm = loader.load("lm:all-MiniLM-L6-v2").model
    ocr = RapidOCRModule()

    def unit(x):  # noqa: ANN001, ANN202
        x = np.asarray(x, dtype=np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def embed(texts):  # noqa: ANN001, ANN202
        with torch.no_grad():
            return unit(minilm.encode_text(list(texts)).float().cpu().numpy())

    def tags(images):  # noqa: ANN001, ANN202
        with torch.no_grad():
            pixels = torch.stack([tagger.preprocess(im.convert("RGB")) for im in images])
            probs = tagger.classifier(tagger.encode_image(pixels)).softmax(-1).cpu().numpy()
        return [[tagger.categories[i] for i in np.argsort(-p)[:5]] for p in probs]

    print(f"scenes test n={len(rows)} (one object, seed 0); tagger torchvision:mobilenet_v2 top-5 ImageNet classes, "
          f"OCR {ocr.version()}, reasoner: MiniLM cosine(module text, class name)")
    print(f"{'task':<8}{'images':<7}{'modules':<10}{'accuracy':>9}{'chance':>8}{'ocr hit':>9}")
    for role in ("shape", "color"):
        names = rows.features[role].names
        labels = np.asarray(rows[role])
        candidates = embed(names)
        for variant in ("plain", "text"):
            images = [im if variant == "plain" else with_word(im, names[y]) for im, y in zip(rows["image"], labels)]
            tag_lists = tags(images)
            read = [ocr.read(im) for im in images]
            ocr_hit = np.mean([any(names[y].lower() == w.lower() for w in lines) for lines, y in zip(read, labels)])
            for modules in ("tags", "ocr", "tags+ocr"):
                texts = []
                for t, lines in zip(tag_lists, read):
                    parts = []
                    if "tags" in modules:
                        parts.append("Tags: " + ", ".join(t))
                    if "ocr" in modules and lines:
                        parts.append("Text: " + " ".join(lines))
                    texts.append(" ".join(parts))
                has = np.array([bool(s) for s in texts])
                pred = np.zeros(len(texts), dtype=int)
                if has.any():
                    pred[has] = np.argmax(embed([s for s in texts if s]) @ candidates.T, axis=1)
                acc = float(np.mean(pred == labels))
                print(f"{role:<8}{variant:<7}{modules:<10}{acc:>9.3f}{1 / len(names):>8.3f}{ocr_hit:>9.3f}")
    print(f"({time.time() - t0:.0f}s)")


if __name__ == "__main__":
    main()
