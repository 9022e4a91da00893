"""Generative models (``generate``, ``loglikelihood``): ``vlm:`` multimodal LLMs and captioners, ``lm:``
causal and seq2seq LMs. Tiny models built from configs and saved once (``generative_fixtures``),
loaded through harness names: log-likelihood against a direct computation from the logits, batch
invariance with a different image per request, left padding, seeded sampling, stop strings, prompt
and image placement, one-line errors."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from generative_fixtures import CHAT_TEMPLATE, QWEN_TEMPLATE, generative_models, images  # noqa: F401  (a fixture)

from harness import (GenerationRequest, IncompatibleError, LoglikelihoodRequest, ModelLoadError,
                     UnknownNameError)
from harness.testing import check_model
from harness_lm import harness_resolve_model, names

torch = pytest.importorskip("torch")

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
PROMPTS = ["what colour is it?", "a", "describe the image in detail please", "two", "what is shown in the picture?",
           "yes", "the quick brown fox", "one two"]
ALL = [("llava", "vlm:"), ("llava_plain", "vlm:"), ("qwen2vl", "vlm:"), ("blip", "vlm:"), ("llama", "lm:"),
       ("t5", "lm:")]
_LOADED: dict[str, object] = {}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():  # noqa: ANN202
    """Models this small run fastest on one thread (and two threads crawl on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _load(models: dict[str, Path], key: str):  # noqa: ANN202
    """The model by its harness name, built (and checked) once per session through check_model."""
    if key not in _LOADED:
        prefix = dict(ALL)[key]
        spec = harness_resolve_model(name=f"{prefix}{models[key]}")
        _LOADED[key] = check_model(spec)  # every declared capability exercised once
    return _LOADED[key]


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


# -- names and capabilities ---------------------------------------------------------------------
def test_capabilities_come_from_config_json(generative_models: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    caps = {key: harness_resolve_model(name=f"{prefix}{generative_models[key]}").capabilities for key, prefix in ALL}
    assert caps["llava"] == caps["blip"] == {"generate", "loglikelihood", "image_tokens"}
    assert caps["qwen2vl"] == {"generate", "loglikelihood"}  # its processor makes patch sequences, not (C, H, W)
    assert caps["llama"] == caps["t5"] == {"text_embed", "generate", "loglikelihood"}
    for sub, config, expected in [
        ("bert", {"model_type": "bert", "architectures": ["BertForMaskedLM"]}, {"text_embed"}),
        ("t5-headless", {"model_type": "t5", "is_encoder_decoder": True, "architectures": ["T5Model"]}, {"text_embed"}),
        ("gpt2", {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, {"text_embed", "generate", "loglikelihood"}),
        ("broken", "{", {"text_embed"}),  # best effort at resolve time; the loader reports the file
    ]:
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
        assert names.parse(f"lm:{tmp_path / sub}").capabilities == expected, sub
    (tmp_path / "paligemma").mkdir()
    (tmp_path / "paligemma" / "config.json").write_text(json.dumps({"model_type": "paligemma", "vision_config": {}}))
    assert names.parse(f"vlm:{tmp_path / 'paligemma'}").capabilities == {"generate", "image_tokens"}  # prefix-LM


def test_vlm_names_are_canonical_and_resolve_through_plugins(generative_models: dict[str, Path]) -> None:  # noqa: F811
    from harness.pluginmanager import get_plugin_manager
    from harness.registry import collect

    spec = names.parse("vlm:llava-hf/llava-1.5-7b-hf@main#remote_code=0,chat=0")
    assert spec.name == "vlm:llava-hf/llava-1.5-7b-hf@main#chat=0,remote_code=0" and spec.revision == "main"
    assert spec.capabilities == {"generate", "loglikelihood"} and spec.args["guessed"] is True  # not cached
    assert spec.args["options"] == {"chat": 0, "remote_code": 0}
    local = names.parse(f"vlm:{generative_models['llava']}/../llava")
    assert local.name == f"vlm:{generative_models['llava']}" and local.args["guessed"] is False
    spec, plugin = collect(get_plugin_manager()).resolve_model(f"vlm:{generative_models['blip']}")
    assert plugin == "lm" and spec.factory == "harness_lm.vlm:load"


def test_parsing_names_imports_no_torch(generative_models: dict[str, Path]) -> None:  # noqa: F811
    code = ("import sys; from harness_lm import names; "
            f"print(sorted(names.parse('vlm:{generative_models['llava']}').capabilities), "
            f"sorted(names.parse('lm:{generative_models['llama']}').capabilities), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(PLUGINS), "PATH": "", "HF_HUB_OFFLINE": "1"})
    assert out.stdout.strip() == ("['generate', 'image_tokens', 'loglikelihood'] "
                                  "['generate', 'loglikelihood', 'text_embed'] False")


@pytest.mark.parametrize("name, match", [
    ("vlm:", "expected vlm:ORG/REPO"), ("vlm:org/repo@", "expected vlm:ORG/REPO"), ("vlm:bad name", "expected"),
    ("vlm:org/repo#pool=mean", "bad option 'pool=mean'; options are chat, remote_code"),
    ("vlm:org/repo#chat=2", "out of range"), ("vlm:org/repo#chat=1,chat=0", "given twice"),
    ("lm:org/repo#remote_code=yes", "not an integer"), ("lm:org/repo#chat=3", "out of range"),
])
def test_bad_names_are_one_line(name: str, match: str) -> None:
    with pytest.raises(UnknownNameError, match=match) as error:
        names.parse(name)
    _one_line(error)


def test_unusable_directories_and_repos_are_one_line(generative_models: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "empty").mkdir()
    for name, words in [(f"vlm:{tmp_path / 'missing'}", "directory not found"),
                        (f"vlm:{tmp_path / 'empty'}", "has no config.json"),
                        (f"vlm:{generative_models['llama']}", "not an image-text-to-text model (its config has no "
                                                              "vision_config); for a text-only language model use lm:")]:
        with pytest.raises(ModelLoadError) as error:
            names.parse(name)
        assert words in _one_line(error), name
    for name, words in [(f"lm:{tmp_path / 'missing'}", "directory not found"),
                        ("vlm:org/not-cached", "not in the local Hugging Face cache"),
                        ("lm:org/not-cached", "cannot load model 'lm:org/not-cached'")]:
        with pytest.raises(ModelLoadError) as error:
            check_model(names.parse(name))
        assert words in _one_line(error), name


def test_a_guess_that_does_not_fit_is_one_line(generative_models: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    import shutil

    from harness import ModelSpec

    path = Path(shutil.copytree(generative_models["llava"], tmp_path / "llava"))
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(dict(config, model_type="paligemma")))  # as if unknown before
    spec = ModelSpec(name="vlm:org/paligemma", factory=names.VLM_FACTORY, capabilities=names.GENERATIVE,
                     args={"path": str(path), "hub": False, "guessed": True, "options": {}})
    with pytest.raises(ModelLoadError) as error:
        check_model(spec)
    assert "guessed (its config.json was not cached) as generate, loglikelihood but model_type 'paligemma' offers " \
           "generate, image_tokens; run again" in _one_line(error)


# -- every capability through the contract ---------------------------------------------------------
@pytest.mark.parametrize("key", [key for key, _ in ALL])
def test_check_model_exercises_every_capability(generative_models: dict[str, Path], key: str) -> None:  # noqa: F811
    model = _load(generative_models, key)
    template = {"llava": CHAT_TEMPLATE, "qwen2vl": QWEN_TEMPLATE}.get(key)
    expected = "sha256:" + hashlib.sha256(template.encode()).hexdigest() if template else "none"
    assert model.chat_template == expected and model.provenance()["chat_template"] == expected
    assert len(model.provenance()["fingerprint"]) == 64


def test_chat_template_off_by_option(generative_models: dict[str, Path]) -> None:  # noqa: F811
    model = check_model(harness_resolve_model(name=f"vlm:{generative_models['llava']}#chat=0"))
    assert model.chat_template == "none" and model._text("what?", 1) == "<image>\nwhat?"


# -- prompts and images -------------------------------------------------------------------------------
def test_prompts_place_images_where_the_placeholders_say(generative_models: dict[str, Path]) -> None:  # noqa: F811
    chat, plain = _load(generative_models, "llava"), _load(generative_models, "llava_plain")
    blip, llama = _load(generative_models, "blip"), _load(generative_models, "llama")
    assert chat._text("Compare <image> with <image>.", 2) == "USER: Compare <image> with <image>. ASSISTANT:"
    assert chat._text("What colour?", 1) == "USER: <image>What colour? ASSISTANT:"  # no placeholder: images first
    assert plain._text("Compare <image> with <image>.", 2) == "Compare <image> with <image>."
    assert plain._text("What colour?", 2) == "<image><image>\nWhat colour?"
    assert blip._prompt_ids("<image> a picture of") == blip._prompt_ids("a picture of")  # BLIP places its image
    assert llama._text("<image>\nWhat colour?") == "What colour?"  # text-only: answers blind
    assert llama._text("Compare <image> with <image>.") == "Compare with ."

    # two images per request, each request its own: swapping them between requests swaps the answers
    pics = images(4)
    first = [GenerationRequest("Compare <image> with <image>.", (pics[0], pics[1]), max_new_tokens=5),
             GenerationRequest("Compare <image> with <image>.", (pics[2], pics[3]), max_new_tokens=5)]
    swapped = [GenerationRequest(r.prompt, first[1 - i].images, max_new_tokens=5) for i, r in enumerate(first)]
    a, b = chat.generate(first), chat.generate(swapped)
    assert a[0] != a[1] and (a[0], a[1]) == (b[1], b[0])


# -- log-likelihood -------------------------------------------------------------------------------------
def _direct(model, key: str, context: str, continuation: str, image) -> tuple[float, int, bool]:  # noqa: ANN001
    """Sum of log-softmax at the continuation's positions, computed here from the model's own logits."""
    tok = model.tokenizer
    cont = tok(continuation, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        if key == "t5":
            enc = tok(context, return_tensors="pt")
            logits = model.lm(**enc, labels=torch.tensor([cont])).logits[0]
        elif key == "llama":
            logits = model.lm(**tok(context + continuation, return_tensors="pt")).logits[0, -len(cont) - 1:-1]
        elif key == "blip":
            ids = torch.tensor([[1] + tok(context + continuation, add_special_tokens=False)["input_ids"]])
            pixels = model.processor.image_processor(images=image, return_tensors="pt")["pixel_values"]
            logits = model.model(pixel_values=pixels, input_ids=ids).logits[0, -len(cont) - 1:-1]
        else:
            text = model.processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": context}]}],
                add_generation_prompt=True, tokenize=False) if key != "llava_plain" else "<image>\n" + context
            inputs = model.processor(text=[text + continuation], images=[image], return_tensors="pt")
            logits = model.model(**inputs).logits[0, -len(cont) - 1:-1]
    logprobs = torch.log_softmax(logits.double(), dim=-1)
    target = torch.tensor(cont)
    return float(logprobs[torch.arange(len(cont)), target].sum()), len(cont), bool((logits.argmax(-1) == target).all())


@pytest.mark.parametrize("key", [key for key, _ in ALL])
def test_loglikelihood_is_the_sum_of_log_softmax_at_the_continuation(generative_models: dict[str, Path],  # noqa: F811
                                                                     key: str) -> None:
    model = _load(generative_models, key)
    pics = images(6)
    items = [("Question: what colour? Answer:", " red"), ("what is shown in the picture?", " a green star"),
             ("a photo of", " a cat"), ("describe the image", " two blue squares and a green star"),
             ("Question: colour? Answer:", " yes"), ("the quick brown", " fox jumps")]
    requests = [LoglikelihoodRequest(c, k, (pics[i],)) for i, (c, k) in enumerate(items)]
    batch = model.loglikelihood(requests)
    for request, score in zip(requests, batch):
        logprob, n_tokens, greedy = _direct(model, key, request.context, request.continuation, request.images[0])
        assert score.logprob == pytest.approx(logprob, rel=1e-5, abs=1e-4) and score.logprob <= 0
        assert (score.n_tokens, score.greedy) == (n_tokens, greedy)
    alone = [model.loglikelihood([r])[0] for r in requests]
    for one, many in zip(alone, batch):  # right padding changes nothing
        assert one.n_tokens == many.n_tokens and one.logprob == pytest.approx(many.logprob, rel=1e-6, abs=1e-4)
    # trailing whitespace of the context moves into the continuation (lm-evaluation-harness's rule)
    moved = model.loglikelihood([LoglikelihoodRequest("Question: what colour? Answer: ", "red", (pics[0],))])[0]
    assert moved.logprob == pytest.approx(batch[0].logprob, rel=1e-6, abs=1e-4) and moved.n_tokens == batch[0].n_tokens
    empty = model.loglikelihood([LoglikelihoodRequest("a photo of", "", (pics[0],))])[0]
    assert (empty.logprob, empty.n_tokens, empty.greedy) == (0.0, 0, True)


def _clean_greedy_step(model, tok, pics):  # noqa: ANN001, ANN202
    """A (context, image, answer) whose greedy next token decodes to text that encodes back to it
    (a random byte-level model often picks a partial UTF-8 byte): searched over a few contexts."""
    contexts = ["Question: what colour is the shape? Answer:", "what is shown in the picture? Answer:",
                "describe the image:", "USER: ASSISTANT: the answer is:", "Question: colour? Answer:"]
    for context in contexts:
        for picture in pics:
            step = GenerationRequest(context, (picture,), max_new_tokens=1)
            ids = model._generate_ids([step], model._decoding(step))[0]
            answer = tok.decode(ids)
            if ids and tok(answer, add_special_tokens=False)["input_ids"] == ids and (answer[:1].isalnum()
                                                                                      or answer[:1] == " "):
                return context, picture, answer
    raise AssertionError("no context with a clean greedy token")


@pytest.mark.parametrize("key", [key for key, _ in ALL])
def test_the_models_own_answer_wins_a_multiple_choice_item(generative_models: dict[str, Path], key: str) -> None:  # noqa: F811
    """Choices of one token each: the model's greedy next token must score highest, and be the only
    one flagged greedy; its log-probability is the log-softmax maximum."""
    model = _load(generative_models, key)
    tok = model.tokenizer
    context, picture, answer = _clean_greedy_step(model, tok, images(3))
    others = [w for w in (" red", " blue", " green", " no", " yes", " cat", "a", "the") if w != answer]
    others = [w for w in others if len(tok(w, add_special_tokens=False)["input_ids"]) == 1][:3]
    choices = [others[0], answer, *others[1:]]
    scores = model.loglikelihood([LoglikelihoodRequest(context, c, (picture,)) for c in choices])
    best = max(range(len(choices)), key=lambda i: scores[i].logprob)
    assert choices[best] == answer and [s.greedy for s in scores] == [c == answer for c in choices]
    assert all(s.n_tokens == 1 and s.logprob <= 0 for s in scores)
    ranked = sorted(s.logprob for s in scores)
    assert ranked[-1] > ranked[-2]
    logprob, _, greedy = _direct(model, key, context, answer, picture)
    assert greedy and scores[1].logprob == pytest.approx(logprob, rel=1e-5, abs=1e-4)


def test_a_bpe_merge_across_the_boundary_keeps_the_context_tokens(generative_models: dict[str, Path]) -> None:  # noqa: F811
    """A word split inside ("the quick bro" + "wn") where the whole string merges across the split:
    the context's own tokens are kept and the continuation is encoded alone."""
    model = _load(generative_models, "llama")
    tok = model.tokenizer
    splits = [(f"describe {word[:k]}", word[k:]) for word in ("brown", "quick", "picture", "colour", "squares",
                                                               "background", "kitten", "green")
              for k in range(1, len(word))]
    context, continuation = next((c, k) for c, k in splits
                                 if model._encode(c + k)[:len(model._encode(c))] != model._encode(c))
    context_ids = model._encode(context)
    score = model.loglikelihood([LoglikelihoodRequest(context, continuation)])[0]
    cont = tok(continuation, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model.lm(input_ids=torch.tensor([context_ids + cont])).logits[0, len(context_ids) - 1:-1]
    expected = torch.log_softmax(logits.double(), -1)[torch.arange(len(cont)), torch.tensor(cont)].sum()
    assert score.n_tokens == len(cont) and score.logprob == pytest.approx(float(expected), abs=1e-4)


# -- generation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", [key for key, _ in ALL])
def test_greedy_answers_do_not_depend_on_the_batch(generative_models: dict[str, Path], key: str) -> None:  # noqa: F811
    model = _load(generative_models, key)
    pics = images(len(PROMPTS))
    requests = [GenerationRequest(p, (pics[i],), max_new_tokens=6) for i, p in enumerate(PROMPTS)]
    batch = model.generate(requests)
    alone = [model.generate([r])[0] for r in requests]
    assert batch == alone and len({g.text for g in batch}) > 1  # not vacuous: answers differ
    assert all(0 < g.n_tokens <= 6 for g in batch)
    beams = [GenerationRequest(p, (pics[i],), max_new_tokens=4, num_beams=3) for i, p in enumerate(PROMPTS[:3])]
    assert model.generate(beams) == [model.generate([r])[0] for r in beams]
    if key != "llama" and key != "t5":  # image models: the image matters
        same_prompt = [GenerationRequest("what is shown?", (p,), max_new_tokens=6) for p in pics]
        assert len({g.text for g in model.generate(same_prompt)}) > 1


@pytest.mark.parametrize("key", ["llava", "llama"])
def test_a_tokenizer_that_pads_right_is_fixed_then_refused(generative_models: dict[str, Path], key: str) -> None:  # noqa: F811
    model = _load(generative_models, key)
    saved = json.loads((generative_models[key] / "tokenizer_config.json").read_text())
    assert saved.get("padding_side", "right") == "right"  # saved padding right ...
    assert model.tokenizer.padding_side == "left"  # ... fixed at load
    requests = [GenerationRequest(p, (images(1)[0],), max_new_tokens=2) for p in PROMPTS[:3]]
    model.tokenizer.padding_side = "right"  # broken after load: refused, never silently right-padded
    try:
        with pytest.raises(IncompatibleError, match="padded a generation batch on the right") as error:
            model.generate(requests)
        _one_line(error)
    finally:
        model.tokenizer.padding_side = "left"


@pytest.mark.parametrize("key", [key for key, _ in ALL])
def test_sampling_is_seeded_per_request(generative_models: dict[str, Path], key: str) -> None:  # noqa: F811
    model = _load(generative_models, key)
    pics = images(3)

    def sample(seed: int, prompt: str = "what colour?", image=pics[0]) -> GenerationRequest:  # noqa: ANN001
        return GenerationRequest(prompt, (image,), max_new_tokens=8, temperature=1.0, top_p=0.95, seed=seed)

    state = torch.random.get_rng_state()
    mixed = model.generate([sample(1), GenerationRequest("a", (pics[1],), max_new_tokens=3), sample(2),
                            sample(1, "describe the image", pics[2]), sample(1)])
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    alone = model.generate([sample(1)])[0]
    assert mixed[0] == mixed[4] == alone  # same seed, same text, whatever else is in the batch
    assert mixed[0] != mixed[2]  # another seed, another sample


@pytest.mark.parametrize("key", ["llava", "blip", "t5"])
def test_stop_strings_are_cut(generative_models: dict[str, Path], key: str) -> None:  # noqa: F811
    model = _load(generative_models, key)
    picture = images(1)[0]
    free = model.generate([GenerationRequest("describe the image", (picture,), max_new_tokens=10)])[0]
    assert len(free.text) >= 4
    stop = free.text[2:4]
    cut = model.generate([GenerationRequest("describe the image", (picture,), max_new_tokens=10, stop=(stop, "zzz"))])[0]
    assert cut.text == free.text[:free.text.find(stop)] and cut.n_tokens <= free.n_tokens
    assert model.tokenizer.decode(model._generate_ids(
        [GenerationRequest("describe the image", (picture,), max_new_tokens=10)], {"max_new_tokens": 10,
                                                                                   "do_sample": False})[0][:cut.n_tokens],
        skip_special_tokens=True).startswith(cut.text)


# -- image tokens ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["llava", "blip"])
def test_image_tokens_are_the_vision_towers_hidden_states(generative_models: dict[str, Path], key: str) -> None:  # noqa: F811
    from harness_lm.vlm import vision_tower

    model = _load(generative_models, key)
    pixels = torch.stack([model.preprocess(p) for p in images(2)])
    with torch.no_grad():
        tokens = model.encode_image_tokens(pixels, None)
        states = vision_tower(model.model)(pixel_values=pixels, output_hidden_states=True)
    assert tokens.shape == (2, 17, 32)  # CLS + (32 / 8)^2 patches
    torch.testing.assert_close(tokens, states.last_hidden_state)
    torch.testing.assert_close(model.encode_image_tokens(pixels, 1), states.hidden_states[1])
    with pytest.raises(IncompatibleError, match="layer must be None or in -3..2"):
        model.encode_image_tokens(pixels, 5)


# -- text LMs: chat templates, remote code ------------------------------------------------------------
def test_a_text_lm_uses_its_tokenizers_chat_template(generative_models: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    import shutil

    path = Path(shutil.copytree(generative_models["llama"], tmp_path / "llama-chat"))
    template = "<s>{% for m in messages %}{{ m['role'] }}: {{ m['content'] }} {% endfor %}assistant:"
    (path / "chat_template.jinja").write_text(template)
    model = check_model(harness_resolve_model(name=f"lm:{path}"))
    assert model.chat_template == "sha256:" + hashlib.sha256(template.encode()).hexdigest()
    assert model.provenance()["chat_template"] == model.chat_template
    text = model._text("<image>\nwhat colour?")
    assert text == "<s>user: what colour? assistant:" and model._encode(text).count(1) == 1  # one BOS, the template's
    score = model.loglikelihood([LoglikelihoodRequest("what colour? ", "red")])[0]  # the user's space moves
    cont = model.tokenizer(" red", add_special_tokens=False)["input_ids"]
    ids = model.tokenizer(text + " red", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model.lm(input_ids=torch.tensor([ids])).logits[0, -len(cont) - 1:-1]
    expected = torch.log_softmax(logits.double(), -1)[torch.arange(len(cont)), torch.tensor(cont)].sum()
    assert score.n_tokens == len(cont) and score.logprob == pytest.approx(float(expected), abs=1e-4)
    raw = check_model(harness_resolve_model(name=f"lm:{path}#chat=0"))
    assert raw.chat_template == "none" and raw._text("what colour?") == "what colour?"


@pytest.mark.parametrize("prefix, key", [("vlm:", "llava"), ("lm:", "llama")])
def test_remote_code_only_when_the_name_asks(generative_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                                             prefix: str, key: str) -> None:
    import transformers

    seen: list[object] = []
    original = transformers.AutoConfig.from_pretrained.__func__

    def spy(cls, path, *args, **kwargs):  # noqa: ANN001, ANN202
        seen.append(kwargs.get("trust_remote_code"))
        return original(cls, path, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", classmethod(spy))
    check_model(harness_resolve_model(name=f"{prefix}{generative_models[key]}"))
    assert seen and set(seen) == {False}  # every transformers call: config, tokenizer/processor, model
    seen.clear()
    check_model(harness_resolve_model(name=f"{prefix}{generative_models[key]}#remote_code=1"))
    assert seen and set(seen) == {True}


# -- helpers and edges ---------------------------------------------------------------------------------
def test_prompt_and_token_helpers(tmp_path: Path) -> None:
    import io

    import numpy as np
    from PIL import Image

    from harness_lm import generative as g

    assert g.drop_placeholders("<image>\nWhat colour?") == "What colour?"
    assert g.drop_placeholders("Answer: ") == "Answer: "  # no placeholder: untouched
    assert g.chat_content("A <image> B", 1) == [{"type": "text", "text": "A "}, {"type": "image"},
                                                 {"type": "text", "text": " B"}]
    assert g.chat_content("Q?", 2) == [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Q?"}]
    assert g.move_whitespace("Answer: \n", "red") == ("Answer:", " \nred")
    assert g.continuation_tokens([1, 2], [1, 2, 3, 4], lambda: [9]) == [3, 4]
    assert g.continuation_tokens([1, 2], [1, 5, 4], lambda: [9]) == [9]  # a merge across the boundary
    assert g.cut_at_stop("red. Question:", ("\n", "Question:", ".")) == "red" and g.cut_at_stop("red", ("x",)) is None
    assert g.template_id(None) == g.template_id("") == "none" and g.template_id("t").startswith("sha256:")
    grey = Image.new("L", (4, 4), 7)
    grey.save(tmp_path / "grey.png")
    buffer = io.BytesIO()
    grey.save(buffer, format="PNG")
    for source in (grey, tmp_path / "grey.png", str(tmp_path / "grey.png"), buffer.getvalue(),
                   np.full((4, 4), 7, dtype=np.uint8)):
        rgb = g.as_rgb(source)
        assert rgb.mode == "RGB" and rgb.getpixel((0, 0)) == (7, 7, 7)
    with pytest.raises(IncompatibleError, match="cannot use a dict as an image"):
        g.as_rgb({"bytes": b""})


def test_request_shapes_a_model_cannot_take_are_one_line(generative_models: dict[str, Path]) -> None:  # noqa: F811
    blip, llava = _load(generative_models, "blip"), _load(generative_models, "llava")
    pics = images(2)
    with pytest.raises(IncompatibleError, match="captioner: a request needs exactly one image, got 2") as error:
        blip.generate([GenerationRequest("<image> and <image>", tuple(pics))])
    _one_line(error)
    no_image = llava.generate([GenerationRequest("what colour?", (), max_new_tokens=3)])  # a VLM without images
    assert len(no_image) == 1 and no_image[0].n_tokens <= 3
    assert llava.loglikelihood([LoglikelihoodRequest("what colour?", " red")])[0].n_tokens >= 1
