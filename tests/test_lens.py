"""LENS (``lens:``): the name grammar (no torch), the prompt templates of every mode (snapshots),
the module helpers, and end to end on the scenes VQA set with tiny CLIP, BLIP, T5 and Llama built
from configs: module outputs in the records, parts in auxiliary_models, captions reused when only
the reasoner changes, seeded captions equal across runs and batch sizes, OCR on a rendered word,
and bad inputs as one line."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
for _package in ("harness_lens", "harness_vqa"):
    if importlib.util.find_spec(_package) is None:  # until pyproject.toml lists the package
        sys.path.insert(0, str(ROOT / "plugins"))
        break

from harness import ModelLoadError, UnknownNameError  # noqa: E402
from harness.cli import main  # noqa: E402
from harness_lens.model import caption_seed, image_digest, top_entries  # noqa: E402
from harness_lens.names import parse, prompt_templates  # noqa: E402
from harness_lens.prompts import render, template_id  # noqa: E402

# -- the grammar -----------------------------------------------------------------------------------


def test_names_are_canonical_and_keep_commas_inside_model_names(tmp_path: Path) -> None:
    spec = parse("lens:reasoner=lm:/x/t5#chat=0,pool=mean,tags=openclip:A/ckpt.pt,captions=vlm:/x/blip,mode=vqa")
    assert spec.name == "lens:captions=vlm:/x/blip,mode=vqa,reasoner=lm:/x/t5#chat=0,pool=mean,tags=openclip:A/ckpt.pt"
    cfg = spec.args["config"]
    assert cfg["reasoner"] == "lm:/x/t5#chat=0,pool=mean" and cfg["attributes"] == cfg["tags"]
    assert (cfg["num_tags"], cfg["threshold"], cfg["num_captions"], cfg["beams"]) == (5, 0.2, 10, 5)
    assert cfg["template"]["mode"] == "vqa" and cfg["template"]["version"] == 1
    assert spec.capabilities == {"generate", "loglikelihood"}
    assert parse("openclip:x") is None
    config = tmp_path / "lens.yaml"
    config.write_text("tags: openclip:A/ckpt.pt\ncaptions: vlm:/x/blip\nreasoner: lm:/x/t5\nattributes: none\n")
    spec = parse(f"lens:{config}")
    assert spec.name == f"lens:{config}" and spec.args["config"]["attributes_entries"] == []


def test_parsing_imports_no_torch() -> None:
    code = ("import sys; sys.path.insert(0, %r); from harness_lens.names import parse; "
            "parse('lens:tags=a:b,captions=c:d,reasoner=e:f'); assert 'torch' not in sys.modules, 'torch'"
            % str(ROOT / "plugins"))
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name, error, match", [
    ("lens:", UnknownNameError, "expected lens:tags=MODEL"),
    ("lens:tags=a:b,captions=c:d", UnknownNameError, "no reasoner=MODEL"),
    ("lens:colour=red,tags=a:b,captions=c:d,reasoner=e:f", UnknownNameError, "'colour=red' is not KEY=VALUE"),
    ("lens:tags=a:b,tags=a:c,captions=c:d,reasoner=e:f", UnknownNameError, "given twice"),
    ("lens:tags=a:b,captions=c:d,reasoner=e:f,mode=fancy", ModelLoadError, "mode 'fancy' is not one of all, vqa"),
    ("lens:tags=a:b,captions=c:d,reasoner=e:f,num_tags=0", ModelLoadError, "num_tags must be >= 1"),
    ("lens:tags=a:b,captions=c:d,reasoner=e:f,ocr=tesseract", ModelLoadError, "ocr 'tesseract' is not one of"),
    ("lens:tags=a:b,captions=c:d,reasoner=e:f,tags_vocab=/no/such/file.txt", ModelLoadError, "cannot read the tag"),
])
def test_bad_names_are_one_line(name: str, error: type, match: str) -> None:
    with pytest.raises(error, match=match) as caught:
        parse(name)
    assert "\n" not in str(caught.value)


def test_an_empty_vocabulary_is_one_line_at_plan_time(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n")
    with pytest.raises(ModelLoadError, match="the tag vocabulary .* is empty"):
        parse(f"lens:tags=a:b,captions=c:d,reasoner=e:f,tags_vocab={empty}")
    model = f"lens:tags=a:b,captions=c:d,reasoner=e:f,attributes_vocab={empty}"
    code = main(["-p", "harness_lens", "run", "--model", model, "--task", "scenes_vqa", "--output-dir",
                 str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "the attribute vocabulary" in err[0] and "is empty" in err[0], err
    assert not (tmp_path / "cache").exists()


# -- prompts: one snapshot per mode -----------------------------------------------------------------
MODULES = {"tags": ["cat", "sofa"], "attributes": ["furry coat", "four legs"], "caption": "a cat on a sofa",
           "captions": ["a cat sleeping", "a grey cat"], "ocr": ["SALE", "50%"]}
EMPTY = {"tags": [], "attributes": [], "caption": "", "captions": [], "ocr": None}
QUESTION = "What animal is this?"
SNAPSHOTS = {
    "all": ("Tags:\n-cat\n-sofa\nAttributes:\n-furry coat\n-four legs\nCaptions:\n-a cat sleeping\n-a grey cat\n"
            "Question:What animal is this?\nShort Answer:"),
    "vqa": "Image:\nCaptions:a cat sleeping.a grey cat\nQuestion:What animal is this?\nShort Answer:",
    "vision": "Tag: cat,sofa\nAttributes: furry coat,four legs\nQuestion:What animal is this?\nShort Answer:",
    "hm": ("Image:\nCaption:a cat on a sofa\nAttributes:furry coat,four legs\nTags:furry coat,four legs\n"
           "Question: Is the image hateful or not-hateful?\nShort Answer:"),
    "paper": ('Tags: cat, sofa Attributes: furry coat, four legs Captions: a cat sleeping. a grey cat. OCR: this is an '
              'image with written "SALE 50%" on it. Question: What animal is this? \n Short Answer:'),
}
EMPTY_SNAPSHOTS = {
    "all": "Tags:\n-\nAttributes:\n-\nCaptions:\n-\nQuestion:What animal is this?\nShort Answer:",
    "paper": 'Tags:  Attributes:  Captions: . OCR: this is an image with written "" on it. Question: What animal '
             'is this? \n Short Answer:',
}


@pytest.mark.parametrize("mode", sorted(SNAPSHOTS))
def test_prompt_of_each_mode_matches_its_snapshot(mode: str) -> None:
    templates = prompt_templates()
    assert templates["version"] == 1 and set(templates["modes"]) == set(SNAPSHOTS)
    text = templates["modes"][mode]
    assert render(text, {**MODULES, "question": QUESTION}) == SNAPSHOTS[mode]
    if mode in EMPTY_SNAPSHOTS:  # empty module outputs keep their headers, as the reference does
        assert render(text, {**EMPTY, "question": QUESTION}) == EMPTY_SNAPSHOTS[mode]
    ident = template_id({"mode": mode, "version": 1, "text": text})
    assert ident.startswith(f"lens-prompt:{mode}.v1:sha256:")


def test_tags_are_top_k_above_the_threshold_and_may_be_empty() -> None:
    entries = ["a", "b", "c", "d"]
    text = np.eye(4)
    image = np.array([[0.9, 0.5, 0.1, -1.0], [0.0, 0.0, 0.0, 1.0]])
    assert top_entries(image, text, entries, 2, 0.2) == [["a", "b"], ["d"]]
    assert top_entries(image, text, entries, 3, 0.99) == [[], ["d"]]
    assert top_entries(image, text, entries, 5, -1.0)[0] == ["a", "b", "c", "d"]


def test_caption_seeds_depend_on_run_seed_image_and_index() -> None:
    from PIL import Image

    a, b = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    assert image_digest(a) == image_digest(Image.new("RGB", (8, 8), (255, 0, 0)))
    seeds = {caption_seed(s, image_digest(im), i) for s in (0, 1) for im in (a, b) for i in range(3)}
    assert len(seeds) == 12 and all(0 <= s < 2**31 for s in seeds)


# -- OCR -------------------------------------------------------------------------------------------
@pytest.mark.skipif(importlib.util.find_spec("rapidocr_onnxruntime") is None, reason="rapidocr-onnxruntime missing")
def test_ocr_reads_a_rendered_word() -> None:
    from PIL import Image, ImageDraw, ImageFont

    from harness_lens.ocr import RapidOCRModule

    image = Image.new("RGB", (320, 96), "white")
    ImageDraw.Draw(image).text((20, 20), "HELLO", fill="black", font=ImageFont.load_default(size=48))
    module = RapidOCRModule()
    assert module.read(image) == ["HELLO"]
    assert module.read(Image.new("RGB", (64, 64), "white")) == []
    assert module.version().startswith("rapidocr-onnxruntime==")


# -- end to end ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory, tiny_openclip: dict) -> dict[str, str]:
    from generative_fixtures import build_blip, build_llama, build_t5

    root = tmp_path_factory.mktemp("lens-parts")
    return {"clip": tiny_openclip["name"], "blip": f"vlm:{build_blip(root / 'blip')}",
            "t5": f"lm:{build_t5(root / 't5')}", "llama": f"lm:{build_llama(root / 'llama', 'left')}"}


def lens_name(parts: dict[str, str], reasoner: str = "t5", **extra: str) -> str:
    options = {"tags": parts["clip"], "captions": parts["blip"], "reasoner": parts[reasoner], "threshold": "-1",
               "num_captions": "3", "caption_tokens": "6", "beams": "2", **extra}
    return "lens:" + ",".join(f"{k}={v}" for k, v in options.items())


def run(capsys: pytest.CaptureFixture, out: Path, cache: Path, model: str, *extra: str) -> tuple[dict, list[dict]]:
    from harness.records import read_records
    from harness.result import read_result

    code = main(["-p", "harness_lens", "-p", "harness_vqa", "run", "--quiet", "--model", model, "--task", "scenes_vqa",
                 "--limit", "3", "--output-dir", str(out), "--cache-dir", str(cache), *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    path = Path(captured.out.strip())
    doc = read_result(path)
    return doc, read_records(path, doc)


class Counting:
    """Counts the requests a model class computes (response-store misses)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, cls: type) -> None:
        self.n = 0
        original = cls.generate

        def generate(model, requests):  # noqa: ANN001, ANN202
            self.n += len(requests)
            return original(model, requests)

        monkeypatch.setattr(cls, "generate", generate)


def test_lens_end_to_end_on_the_scenes_vqa_set(capsys, monkeypatch, tmp_path: Path,  # noqa: ANN001
                                               parts: dict) -> None:
    from harness_lm.vlm import BlipCaptioner

    blip = Counting(monkeypatch, BlipCaptioner)
    cache = tmp_path / "cache"
    doc, records = run(capsys, tmp_path / "out", cache, lens_name(parts))
    assert doc["model"]["name"].startswith("lens:") and doc["model"]["capabilities"] == ["generate", "loglikelihood"]
    assert blip.n == 3 * (1 + 3)  # one beam caption and three sampled per image
    roles = {a["role"]: a for a in doc["auxiliary_models"]}
    assert set(roles) == {"lens tags and attributes", "lens captions", "lens reasoner"}
    assert roles["lens captions"]["name"] == parts["blip"] and roles["lens reasoner"]["name"] == parts["t5"]
    assert all(len(a["fingerprint"]) == 64 for a in roles.values())
    assert roles["lens captions"]["cache"] == {"response_hits": 0, "response_misses": 12, "text_hits": 0,
                                               "text_misses": 0}
    assert len(records) == 3
    for record in records:
        details = record["fields"]["details"]
        assert set(details) == {"tags", "attributes", "caption", "captions", "ocr", "prompt", "mode", "template"}
        assert len(details["tags"]) == 5 and len(details["attributes"]) == 5 and len(details["captions"]) == 3
        assert details["ocr"] is None and details["mode"] == "all"
        assert details["template"].startswith("lens-prompt:all.v1:")
        assert details["prompt"].startswith("Tags:\n-" + details["tags"][0])
        assert details["prompt"].endswith(record["fields"]["prompts"] + "\nShort Answer:")
        assert isinstance(record["fields"]["predictions"], str)

    # only the reasoner changes: every caption comes from the captioner's response store
    blip.n = 0
    doc2, records2 = run(capsys, tmp_path / "out2", cache, lens_name(parts, "llama"))
    assert blip.n == 0
    captions = {a["role"]: a for a in doc2["auxiliary_models"]}["lens captions"]["cache"]
    assert captions["response_hits"] == 12 and captions["response_misses"] == 0  # counted in the result
    assert doc2["model"]["fingerprint"] != doc["model"]["fingerprint"]
    for key in ("captions", "caption", "tags", "attributes"):
        assert [r["fields"]["details"][key] for r in records2] == [r["fields"]["details"][key] for r in records]

    # a fresh cache and batch size 1: the seeded sampled captions are computed again, identical
    doc3, records3 = run(capsys, tmp_path / "out3", tmp_path / "cache3", lens_name(parts), "--batch-size", "1")
    assert blip.n == 3 * (1 + 3)
    assert [r["fields"]["details"] for r in records3] == [r["fields"]["details"] for r in records]
    assert [r["fields"]["predictions"] for r in records3] == [r["fields"]["predictions"] for r in records]
    # another prompt mode is another LENS model (its own fingerprint and response set), the same modules
    doc4, records4 = run(capsys, tmp_path / "out4", cache, lens_name(parts, mode="vision"))
    assert doc4["model"]["fingerprint"] != doc["model"]["fingerprint"]
    tags = records[0]["fields"]["details"]["tags"]
    assert records4[0]["fields"]["details"]["prompt"].startswith("Tag: " + ",".join(tags))


def test_loglikelihood_scores_after_the_lens_prompt(parts: dict, tmp_path: Path) -> None:
    from harness import ExecutionConfig, LoglikelihoodRequest
    from harness.modelloader import ModelLoader
    from harness.pluginmanager import get_plugin_manager
    from harness.registry import collect

    from generative_fixtures import images

    registries = collect(get_plugin_manager(["harness_lens"]))
    loader = ModelLoader(registries, ExecutionConfig(device="cpu", cache_dir=tmp_path / "cache"))
    lens = loader.load(lens_name(parts)).model
    [image] = images(1)
    request = LoglikelihoodRequest("What is shown?", " a circle", (image,))
    [score] = lens.loglikelihood([request])
    prompt = lens.prompt(lens.describe([image])[0], "What is shown?")
    [direct] = lens.parts["reasoner"].loglikelihood([LoglikelihoodRequest(prompt, " a circle")])
    assert score == direct and score.logprob < 0


def test_parts_without_the_needed_capability_are_one_line(capsys, tmp_path: Path, parts: dict) -> None:  # noqa: ANN001
    cases = [(lens_name(parts, reasoner="clip"), "must have 'generate'"),
             (lens_name(parts, tags="torchvision:resnet18/random"), "has no text_embed capability")]
    for model, message in cases:
        code = main(["-p", "harness_lens", "run", "--quiet", "--model", model, "--task", "scenes_vqa", "--limit", "2",
                     "--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code != 0 and len(err) == 1 and message in err[0], err
        assert not (tmp_path / "out").exists() or not any(p.is_file() for p in (tmp_path / "out").rglob("*"))
