"""The transformers plugin: name grammar, capability detection, and real from_pretrained loads of tiny saves."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import ExecutionConfig, IncompatibleError, LoadContext, ModelLoadError, ModelSpec, UnknownNameError
from harness import state_fingerprint
from harness.dataset import Split
from harness.features import Features
from harness.featurestore import FeatureStore
from harness.models import build_model
from harness.pluginmanager import get_plugin_manager
from harness.registry import collect
from harness_hf import harness_register_models, harness_resolve_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2}
VISION = dict(SMALL, image_size=32, patch_size=8)
TEXTS = ["a photo of a cat", "a dog", "Überraschung, mon ami! 42"]
IMAGE = frozenset({"image_embed", "image_tokens"})
IMAGE_TEXT = IMAGE | {"text_embed"}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _clip_tokenizer():
    """HF CLIPTokenizer over open_clip's BPE vocab (environment.md section 3)."""
    from open_clip.tokenizer import SimpleTokenizer, default_bpe

    vocab = dict(SimpleTokenizer().encoder)
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = vocab.pop("<start_of_text>"), vocab.pop("<end_of_text>")
    merges = gzip.open(default_bpe()).read().decode().split("\n")[1:49152 - 256 - 2 + 1]
    return transformers.CLIPTokenizer(vocab=vocab, merges=[tuple(m.split()) for m in merges])


def _save(root: Path, name: str, model, *processors) -> Path:
    path = root / name
    model.save_pretrained(path)
    for processor in processors:
        processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Tiny seeded CLIP, SigLIP, DINOv2, ViT and ResNet models saved with their processors; one also as a
    hub cache entry."""
    root, tf = tmp_path_factory.mktemp("hf"), transformers
    tokenizer = _clip_tokenizer()
    text = dict(SMALL, vocab_size=49408, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    torch.manual_seed(0)
    models = {
        "clip": tf.CLIPModel(tf.CLIPConfig(text_config=dict(text, max_position_embeddings=77),
                                           vision_config=VISION, projection_dim=32)),
        "siglip": tf.SiglipModel(tf.SiglipConfig(text_config=dict(text, max_position_embeddings=16),
                                                 vision_config=VISION)),
        "dinov2": tf.Dinov2Model(tf.Dinov2Config(**VISION)),
        "vit": tf.ViTModel(tf.ViTConfig(**VISION)),
        "resnet": tf.ResNetModel(tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                                 layer_type="basic")),
    }
    square = {"height": 32, "width": 32}
    paths = {
        "clip": _save(root, "clip", models["clip"], tf.CLIPProcessor(
            image_processor=tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=square), tokenizer=tokenizer)),
        "siglip": _save(root, "siglip", models["siglip"], tf.SiglipImageProcessor(size=square), tokenizer),
        "dinov2": _save(root, "dinov2", models["dinov2"],
                        tf.BitImageProcessor(size={"shortest_edge": 32}, crop_size=square)),
        "vit": _save(root, "vit", models["vit"], tf.ViTImageProcessor(size=square)),
        "resnet": _save(root, "resnet", models["resnet"], tf.ViTImageProcessor(size=square)),
    }
    from huggingface_hub import constants

    repo = Path(constants.HF_HUB_CACHE) / "models--harness-test--tiny-dino"
    shutil.copytree(paths["dinov2"], repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    images = [Image.new("RGB", (48, 40), (200, 30, 10)), Image.new("RGB", (20, 33), (5, 90, 240))]
    return {"paths": paths, "models": {k: m.eval() for k, m in models.items()}, "tokenizer": tokenizer,
            "images": images}


def _resolve(name: str) -> ModelSpec:
    spec = harness_resolve_model(name=name)
    assert spec is not None
    return spec


def load(spec: ModelSpec):  # noqa: ANN201
    """Build through the core: the factory, then the check of the declared capabilities."""
    return build_model(spec, LoadContext(ExecutionConfig(device="cpu")))


def _one_line(error: pytest.ExceptionInfo, name: str) -> str:
    message = str(error.value)
    assert "\n" not in message and repr(name) in message
    return message


def _pixels(encoder, images) -> torch.Tensor:
    return torch.stack([encoder.preprocess(image) for image in images])


# --- names and capabilities ----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "canonical", "revision", "capabilities"), [
    ("hf:openai/clip-vit-large-patch14", "hf:openai/clip-vit-large-patch14", None, IMAGE_TEXT),
    ("hf:google/siglip-so400m-patch14-384@main", "hf:google/siglip-so400m-patch14-384@main", "main", IMAGE_TEXT),
    ("hf:facebook/dinov2-large@" + COMMIT, "hf:facebook/dinov2-large@" + COMMIT, COMMIT, IMAGE),
    ("hf:microsoft/resnet-50", "hf:microsoft/resnet-50", None, IMAGE),
    ("hf:gpt2", "hf:gpt2", None, IMAGE),
])
def test_uncached_hub_ids_guess_capabilities_from_the_name(name: str, canonical: str, revision, capabilities) -> None:
    spec = _resolve(name)
    assert (spec.name, spec.revision, spec.capabilities) == (canonical, revision, capabilities)
    assert spec.args == {"path": canonical[3:].partition("@")[0], "hub": True, "guessed": True}


def test_cached_hub_config_decides_capabilities(saved: dict) -> None:
    spec = _resolve("hf:harness-test/tiny-clip-named-dino")  # the name suggests CLIP, nothing cached
    assert spec.capabilities == IMAGE_TEXT and spec.args["guessed"]
    spec = _resolve("hf:harness-test/tiny-dino")
    assert spec.capabilities == IMAGE and not spec.args["guessed"]


@pytest.mark.parametrize("kind", ["clip", "siglip", "dinov2", "vit"])
def test_local_dirs_read_capabilities_from_config_json(saved: dict, kind: str) -> None:
    path = saved["paths"][kind]
    spec = _resolve(f"hf:{path}")
    assert spec.name == f"hf:{path}" and spec.revision is None and spec.args["hub"] is False
    assert spec.capabilities == (IMAGE if kind in ("dinov2", "vit") else IMAGE_TEXT)


def test_relative_and_home_paths_are_local(saved: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    path = saved["paths"]["vit"]
    monkeypatch.chdir(path.parent)
    assert _resolve("hf:./vit").name == f"hf:{path}"
    assert _resolve("hf:vit").name == f"hf:{path}"  # an existing directory wins, as in transformers
    monkeypatch.setenv("HOME", str(path.parent))
    assert _resolve("hf:~/vit").name == f"hf:{path}"


@pytest.mark.parametrize("name", ["openclip:ViT-B-32/openai", "facebook/dinov2-small", "HF:gpt2", ""])
def test_other_prefixes_are_not_ours(name: str) -> None:
    assert harness_resolve_model(name=name) is None


@pytest.mark.parametrize("name", ["hf:", "hf:a/b/c", "hf:org/repo@", "hf:org/re po", "hf:@main"])
def test_malformed_names_say_the_grammar(name: str) -> None:
    with pytest.raises(UnknownNameError, match="hf:ORG/REPO"):
        harness_resolve_model(name=name)


def test_unusable_local_dirs_fail_at_resolve(tmp_path: Path) -> None:
    for sub, config, words in [("absent", None, "directory not found"), ("empty", None, "no config.json"),
                               ("bert", {"model_type": "bert"}, "text-only"),
                               ("naflex", {"model_type": "siglip2"}, "NaFlex"), ("broken", "{", "unreadable")]:
        path = tmp_path / sub
        if sub != "absent":
            path.mkdir()
        if config is not None:
            (path / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
        with pytest.raises(ModelLoadError) as error:
            harness_resolve_model(name=f"hf:{path}")
        assert words in _one_line(error, f"hf:{path}")


def test_well_known_names_are_registered() -> None:
    specs = {spec.name: spec for spec in harness_register_models()}
    assert specs["hf:openai/clip-vit-base-patch32"].capabilities == IMAGE_TEXT
    assert specs["hf:facebook/dinov2-small"].capabilities == IMAGE
    registries = collect(get_plugin_manager())
    assert registries.models.entry("hf:facebook/dinov2-base").plugin == "hf"
    assert registries.resolve_model("hf:org/some-siglip")[1] == "hf"


def test_resolving_imports_no_torch_or_transformers() -> None:
    code = ("import sys, harness_hf as p; p.harness_register_models();"
            "p.harness_resolve_model(name='hf:org/repo@v1');"
            "assert not {'torch', 'transformers'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- loading -----------------------------------------------------------------------------------


def test_clip_matches_transformers(saved: dict) -> None:
    encoder = load(_resolve(f"hf:{saved['paths']['clip']}"))
    reference, images = saved["models"]["clip"], saved["images"]
    assert callable(encoder.encode_text) and encoder.embed_dim == 32 and not encoder.model.training
    assert not hasattr(encoder, "modalities")
    processor = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    pixels = _pixels(encoder, images)
    assert torch.allclose(pixels, processor(images=images, return_tensors="pt")["pixel_values"])
    tokens = saved["tokenizer"](TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        image, text = encoder.encode_image(pixels), encoder.encode_text(TEXTS)
        assert torch.allclose(image, reference.get_image_features(pixel_values=pixels).pooler_output, atol=1e-6)
        assert torch.allclose(text, reference.get_text_features(**tokens).pooler_output, atol=1e-6)
    assert image.shape == (2, 32) and text.shape == (3, 32)
    assert encoder.provenance() == {"revision": None, "fingerprint": state_fingerprint(reference),
                                    "n_parameters": sum(p.numel() for p in reference.parameters())}


def test_siglip_pads_text_to_max_length(saved: dict) -> None:
    encoder = load(_resolve(f"hf:{saved['paths']['siglip']}"))
    reference, tokenizer = saved["models"]["siglip"], saved["tokenizer"]
    full = tokenizer(TEXTS, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
    longest = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        text = encoder.encode_text(TEXTS)
        assert torch.allclose(text, reference.get_text_features(**full).pooler_output, atol=1e-6)
        assert not torch.allclose(text, reference.get_text_features(**longest).pooler_output, atol=1e-3)
        pixels = _pixels(encoder, saved["images"])
        assert torch.allclose(encoder.encode_image(pixels),
                              reference.get_image_features(pixel_values=pixels).pooler_output, atol=1e-6)
    assert encoder.embed_dim == 64


def test_dinov2_embeds_the_normed_cls_token(saved: dict) -> None:
    encoder = load(_resolve(f"hf:{saved['paths']['dinov2']}"))
    reference = saved["models"]["dinov2"]
    assert not hasattr(encoder, "encode_text") and not hasattr(encoder, "tokenizer") and encoder.embed_dim == 64
    pixels = _pixels(encoder, saved["images"])
    with torch.inference_mode():
        out = reference(pixel_values=pixels)
        embedding = encoder.encode_image(pixels)
    assert torch.allclose(embedding, out.last_hidden_state[:, 0], atol=1e-6)  # last_hidden_state is normed
    assert torch.allclose(embedding, out.pooler_output, atol=1e-6)


def test_vit_embeds_the_cls_token_not_the_tanh_pooler(saved: dict) -> None:
    encoder = load(_resolve(f"hf:{saved['paths']['vit']}"))
    pixels = _pixels(encoder, saved["images"])
    with torch.inference_mode():
        out = saved["models"]["vit"](pixel_values=pixels)
        embedding = encoder.encode_image(pixels)
    assert torch.allclose(embedding, out.last_hidden_state[:, 0], atol=1e-6)
    assert not torch.allclose(embedding, out.pooler_output, atol=1e-3)


def test_hub_cache_loads_offline_with_its_commit(saved: dict) -> None:
    expected = state_fingerprint(saved["models"]["dinov2"])
    for name in ("hf:harness-test/tiny-dino", f"hf:harness-test/tiny-dino@{COMMIT}"):
        provenance = load(_resolve(name)).provenance()
        assert provenance["revision"] == COMMIT and provenance["fingerprint"] == expected


def test_uncached_hub_ids_say_the_hub_is_unreachable() -> None:
    for name in ("hf:openai/clip-vit-base-patch32", "hf:harness-test/tiny-dino@v2"):
        with pytest.raises(ModelLoadError) as error:
            load(_resolve(name))
        assert "hub is unreachable (HF_HUB_OFFLINE is set)" in _one_line(error, name)


def test_wrong_guess_is_caught_at_load(saved: dict) -> None:
    spec = ModelSpec(name="hf:harness-test/tiny-dino", factory="harness_hf.encoder:load", capabilities=IMAGE_TEXT,
                     args={"path": "harness-test/tiny-dino", "hub": True, "guessed": True})
    with pytest.raises(ModelLoadError, match="guessed from its name .* as image\\+text but is image"):
        load(spec)


def test_corrupt_or_missing_weights(saved: dict, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(saved["paths"]["dinov2"], broken)
    (broken / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad}")
    spec = _resolve(f"hf:{broken}")
    with pytest.raises(ModelLoadError) as error:
        load(spec)
    _one_line(error, spec.name)
    os.remove(broken / "model.safetensors")
    with pytest.raises(ModelLoadError) as error:
        load(spec)
    _one_line(error, spec.name)
    shutil.rmtree(broken)
    with pytest.raises(ModelLoadError, match="directory not found"):
        load(spec)


# --- token-level outputs -----------------------------------------------------------------------


def _tokens(encoder, pixels, layer=None) -> torch.Tensor:
    with torch.inference_mode():
        return encoder.encode_image_tokens(pixels, layer)


@pytest.mark.parametrize("kind", ["vit", "dinov2"])
def test_vit_tokens_are_cls_then_patches_after_the_final_norm(saved: dict, kind: str) -> None:
    encoder = load(_resolve(f"hf:{saved['paths'][kind]}"))
    pixels = _pixels(encoder, saved["images"])
    tokens = _tokens(encoder, pixels)
    assert tokens.shape == (2, 1 + (32 // 8) ** 2, 64)
    with torch.inference_mode():
        assert torch.allclose(encoder.encode_image(pixels), tokens[:, 0], atol=1e-6)
        states = saved["models"][kind](pixel_values=pixels, output_hidden_states=True).hidden_states
    for layer in (0, 1, 2, -1, -3):
        assert torch.allclose(_tokens(encoder, pixels, layer), states[layer], atol=1e-6)
    assert not torch.allclose(_tokens(encoder, pixels, -1), tokens, atol=1e-3)  # before the final norm


def test_dual_encoder_tokens_come_from_the_vision_tower(saved: dict) -> None:
    encoder = load(_resolve(f"hf:{saved['paths']['clip']}"))
    pixels = _pixels(encoder, saved["images"])
    tokens, first = _tokens(encoder, pixels), _tokens(encoder, pixels, 1)
    assert tokens.shape == first.shape == (2, 17, 64)
    assert torch.equal(_tokens(encoder, pixels, -1), tokens)  # CLIP norms only the pooled token
    assert not torch.allclose(first, tokens, atol=1e-3)
    model = encoder.model
    with torch.inference_mode():
        pooled = model.visual_projection(model.vision_model.post_layernorm(tokens[:, 0]))
        assert torch.allclose(encoder.encode_image(pixels), pooled, atol=1e-6)


def test_conv_feature_maps_become_grid_tokens(saved: dict) -> None:
    encoder = load(_resolve(f"hf:{saved['paths']['resnet']}"))
    pixels = _pixels(encoder, saved["images"])
    tokens = _tokens(encoder, pixels)
    assert tokens.shape == (2, 4 * 4, 16)  # the stem divides 32 pixels by 4, the second stage by 2
    with torch.inference_mode():
        assert torch.allclose(encoder.encode_image(pixels), tokens.mean(1), atol=1e-6)
        stem = saved["models"]["resnet"](pixel_values=pixels, output_hidden_states=True).hidden_states[0]
    assert torch.allclose(_tokens(encoder, pixels, 0), stem.flatten(2).transpose(1, 2), atol=1e-6)
    assert _tokens(encoder, pixels, 0).shape == (2, 8 * 8, 8)


@pytest.mark.parametrize("layer", [3, -4, 100])
def test_out_of_range_layers_name_the_valid_range(saved: dict, layer: int) -> None:
    encoder = load(_resolve(f"hf:{saved['paths']['vit']}"))
    with pytest.raises(IncompatibleError, match=r"3 hidden states .*in -3\.\.2, got " + str(layer)):
        _tokens(encoder, _pixels(encoder, saved["images"]), layer)


def test_token_features_are_cached_per_layer(saved: dict, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    encoder = load(_resolve(f"hf:{saved['paths']['vit']}"))
    data = Split(datasets.Dataset.from_dict({"image": saved["images"] * 2},
                                            features=datasets.Features({"image": datasets.Image()})),
                 {"source": "path", "id": "/data/tiny", "revision": None, "fingerprint": "f0", "split": "test"})
    store = FeatureStore(tmp_path)
    first = Features(encoder, store=store, batch_size=3).images(data, "image", output="tokens", layer=1)
    assert first.shape == (4, 17, 64) and first.dtype == np.float32
    np.testing.assert_allclose(first[:2], _tokens(encoder, _pixels(encoder, saved["images"]), 1).numpy(), atol=1e-6)
    again = Features(encoder, store=store, batch_size=3)
    np.testing.assert_array_equal(again.images(data, "image", output="tokens", layer=1), first)
    assert (again.counters.image_hits, again.counters.images) == (4, 0)
    final = again.images(data, "image", output="tokens")
    assert again.counters.images == 4 and not np.allclose(final, first, atol=1e-3)
    assert {s.key["output"] for s in store.sets()} == {"tokens@1", "tokens@None"}
