"""The open_clip plugin: name grammar, and the real loading paths on a tiny local architecture."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import ExecutionConfig, IncompatibleError, LoadContext, ModelLoadError, UnknownNameError, state_fingerprint
from harness.features import Features
from harness.models import build_model
from harness.pluginmanager import get_plugin_manager
from harness.registry import collect
from harness_openclip import harness_register_models, harness_resolve_model
from harness_openclip.encoder import OpenClipEncoder

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
Image = pytest.importorskip("PIL.Image")

ARCH = "harness-tiny-clip"
CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
TEXTS = ["a photo of a cat", "a photo of a dog", "Überraschung, mon ami!"]
CAPABILITIES = frozenset({"image_embed", "text_embed", "image_tokens"})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A registered tiny architecture, its seeded random weights as .pt, .safetensors and a local-dir."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("openclip")
    (root / "configs").mkdir()
    (root / "configs" / f"{ARCH}.json").write_text(json.dumps(CONFIG))
    open_clip.add_model_config(root / "configs")
    torch.manual_seed(1234)
    model = open_clip.create_model(ARCH).eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save(state, root / "tiny.pt")
    save_file(state, str(root / "tiny.safetensors"))
    (root / "dir").mkdir()
    (root / "dir" / "open_clip_config.json").write_text(json.dumps({"model_cfg": CONFIG, "preprocess_cfg": {}}))
    save_file(state, str(root / "dir" / "open_clip_model.safetensors"))
    _, transform = open_clip.create_model_from_pretrained(ARCH, pretrained=str(root / "tiny.pt"))
    images = [Image.new("RGB", (48, 40), (200, 30, 10)), Image.new("RGB", (20, 33), (5, 90, 240))]
    return {"root": root, "model": model, "transform": transform, "images": images}


def _resolve(name: str):
    spec = harness_resolve_model(name=name)
    assert spec is not None
    return spec


def load(spec):  # noqa: ANN001, ANN201
    """Build through the core: the factory, then the check of the declared capabilities."""
    return build_model(spec, LoadContext(ExecutionConfig(device="cpu")))


def _load_error(name: str) -> str:
    with pytest.raises(ModelLoadError) as info:
        load(_resolve(name))
    message = str(info.value)
    assert "\n" not in message and repr(_resolve(name).name) in message
    return message


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "source", "model_name", "pretrained"), [
    ("openclip:ViT-B-32/laion2b_s34b_b79k", "tag", "ViT-B-32", "laion2b_s34b_b79k"),
    ("openclip:ViT-L-14/openai", "tag", "ViT-L-14", "openai"),
    ("openclip:ViT-B-32//abs/ckpt.pt", "file", "ViT-B-32", "/abs/ckpt.pt"),
    ("openclip:RN50/weights.safetensors", "file", "RN50", os.path.abspath("weights.safetensors")),
    ("openclip:RN50/runs/epoch_3.pth", "file", "RN50", os.path.abspath("runs/epoch_3.pth")),
    ("openclip:RN50/./w", "file", "RN50", os.path.abspath("w")),
    ("openclip:hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "hf-hub",
     "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", None),
    ("openclip:local-dir:/models/mine", "local-dir", "local-dir:/models/mine", None),
])
def test_names_resolve_syntactically(name: str, source: str, model_name: str, pretrained: str | None) -> None:
    spec = _resolve(name)
    args = spec.args
    assert (args["source"], args["model_name"], args.get("pretrained")) == (source, model_name, pretrained)
    assert spec.capabilities == CAPABILITIES
    assert spec.factory == "harness_openclip.encoder:load"
    assert spec.revision == (pretrained if source == "tag" else None)


def test_relative_paths_become_absolute_in_the_canonical_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert _resolve("openclip:ViT-B-32/ckpts/x.pt").name == f"openclip:ViT-B-32/{tmp_path}/ckpts/x.pt"
    assert _resolve("openclip:local-dir:./m").name == f"openclip:local-dir:{tmp_path}/m"


@pytest.mark.parametrize("name", ["hf:openai/clip-vit-base-patch32", "ViT-B-32", "open_clip:ViT-B-32/openai", ""])
def test_other_prefixes_are_not_ours(name: str) -> None:
    assert harness_resolve_model(name=name) is None


@pytest.mark.parametrize("name", ["openclip:", "openclip:ViT-B-32", "openclip:ViT-B-32/", "openclip:/abs.pt",
                                  "openclip:hf-hub:", "openclip:hf-hub:laion", "openclip:hf-hub:a/b@v1",
                                  "openclip:local-dir:"])
def test_malformed_names_say_the_grammar(name: str) -> None:
    with pytest.raises(UnknownNameError, match="openclip:"):
        harness_resolve_model(name=name)


def test_well_known_names_are_registered_as_tags() -> None:
    specs = {spec.name: spec for spec in harness_register_models()}
    assert {"openclip:ViT-B-32/laion2b_s34b_b79k", "openclip:ViT-B-16/laion2b_s34b_b88k",
            "openclip:ViT-L-14/openai", "openclip:ViT-H-14/laion2b_s32b_b79k"} <= set(specs)
    for name, spec in specs.items():
        resolved = _resolve(name)
        assert (spec.factory, spec.args, spec.revision) == (resolved.factory, resolved.args, spec.args["pretrained"])


def test_registered_through_the_entry_point() -> None:
    registries = collect(get_plugin_manager())
    assert registries.models.entry("openclip:ViT-L-14/openai").plugin == "openclip"
    spec, plugin = registries.resolve_model("openclip:RN50/yfcc15m")
    assert (spec.revision, plugin) == ("yfcc15m", "openclip")


def test_resolving_imports_neither_torch_nor_open_clip() -> None:
    code = ("import sys, harness_openclip as p; p.harness_register_models();"
            "p.harness_resolve_model(name='openclip:ViT-B-32//x.pt');"
            "assert not {'torch', 'open_clip'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- loading -----------------------------------------------------------------------------------


def test_checkpoint_file_matches_open_clip_bit_for_bit(tiny: dict) -> None:
    encoder = load(_resolve(f"openclip:{ARCH}/{tiny['root'] / 'tiny.pt'}"))
    model, reference = encoder.model, tiny["model"]
    assert not model.training and not hasattr(encoder, "modalities") and encoder.embed_dim == 32
    pixels = torch.stack([encoder.preprocess(image) for image in tiny["images"]])
    assert torch.equal(pixels, torch.stack([tiny["transform"](image) for image in tiny["images"]]))
    assert pixels.shape == (2, 3, 32, 32)
    tokens = open_clip.get_tokenizer(ARCH)(TEXTS)
    with torch.inference_mode():
        image, text = encoder.encode_image(pixels), encoder.encode_text(TEXTS)
        assert torch.allclose(image, reference.encode_image(pixels), atol=1e-6)
        assert torch.allclose(text, reference.encode_text(tokens), atol=1e-6)
    assert image.shape == (2, 32) and text.shape == (3, 32)
    assert not torch.allclose(text.norm(dim=-1), torch.ones(3))  # unnormalised
    provenance = encoder.provenance()
    assert provenance == {"revision": None, "fingerprint": state_fingerprint(reference),
                          "n_parameters": sum(p.numel() for p in reference.parameters())}


def test_safetensors_and_local_dir_load_the_same_weights(tiny: dict) -> None:
    expected = state_fingerprint(tiny["model"])
    from_file = load(_resolve(f"openclip:{ARCH}/{tiny['root'] / 'tiny.safetensors'}"))
    from_dir = load(_resolve(f"openclip:local-dir:{tiny['root'] / 'dir'}"))
    assert from_file.provenance()["fingerprint"] == from_dir.provenance()["fingerprint"] == expected
    assert from_dir.embed_dim == 32 and from_dir.provenance()["revision"] is None
    pixels = torch.stack([from_dir.preprocess(image) for image in tiny["images"]])
    with torch.inference_mode():
        assert torch.allclose(from_dir.encode_text(TEXTS), from_file.encode_text(TEXTS))
        assert torch.allclose(from_dir.encode_image(pixels), from_file.encode_image(pixels))


def test_pretrained_tag_path_forces_the_tags_quick_gelu(tiny: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from open_clip.transformer import QuickGELU

    path = str(tiny["root"] / "tiny.pt")  # open_clip reads a tag's "file" entry instead of downloading
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, ARCH, {"harness_test": {"file": path, "quick_gelu": True}})
    encoder = load(_resolve(f"openclip:{ARCH}/harness_test"))
    assert encoder.provenance()["revision"] == "harness_test"
    assert any(isinstance(module, QuickGELU) for module in encoder.model.modules())
    reference = open_clip.create_model(ARCH, pretrained=path, force_quick_gelu=True).eval()
    with torch.inference_mode():
        assert torch.allclose(encoder.encode_text(TEXTS), reference.encode_text(open_clip.tokenize(TEXTS)), atol=1e-6)
        assert not torch.allclose(encoder.encode_text(TEXTS), tiny["model"].encode_text(open_clip.tokenize(TEXTS)))


def test_missing_and_corrupt_checkpoints(tiny: dict, tmp_path: Path) -> None:
    assert "not found" in _load_error(f"openclip:{ARCH}/{tmp_path / 'absent.pt'}")
    (tmp_path / "garbage.pt").write_bytes(b"not a zip archive" * 10)
    assert "refused" in _load_error(f"openclip:{ARCH}/{tmp_path / 'garbage.pt'}")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad}")
    _load_error(f"openclip:{ARCH}/{tmp_path / 'garbage.safetensors'}")
    torch.save({"visual.proj": torch.zeros(3)}, tmp_path / "wrong.pt")
    assert f"do not fit architecture '{ARCH}'" in _load_error(f"openclip:{ARCH}/{tmp_path / 'wrong.pt'}")


def test_pickled_objects_are_refused(tiny: dict, tmp_path: Path) -> None:
    torch.save({"state_dict": {"x": torch.zeros(1)}, "extra": Path("/")}, tmp_path / "pickle.pt")
    assert "pickles objects other than tensors" in _load_error(f"openclip:{ARCH}/{tmp_path / 'pickle.pt'}")


def test_unknown_arch_and_tag_fail_fast_with_suggestions(tiny: dict) -> None:
    assert "did you mean 'ViT-B-32'" in _load_error("openclip:ViT-B-31/openai")
    assert "did you mean 'laion2b_s34b_b79k'" in _load_error("openclip:ViT-B-32/laion2b_s34b_b79")
    assert "no pretrained tags" in _load_error(f"openclip:{ARCH}/openai")


def test_hub_weights_offline_say_the_hub_is_unreachable() -> None:
    assert "hub is unreachable" in _load_error("openclip:ViT-B-32/laion2b_s34b_b79k")
    assert "hub is unreachable" in _load_error("openclip:hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")


def test_local_dir_errors(tiny: dict, tmp_path: Path) -> None:
    assert "not found" in _load_error(f"openclip:local-dir:{tmp_path / 'absent'}")
    assert "open_clip_config.json" in _load_error(f"openclip:local-dir:{tmp_path}")
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": CONFIG}))
    assert "no weights" in _load_error(f"openclip:local-dir:{tmp_path}")


# --- token-level outputs -----------------------------------------------------------------------


def _tokens(encoder, pixels, layer=None) -> torch.Tensor:
    with torch.inference_mode():
        return encoder.encode_image_tokens(pixels, layer)


def test_vit_tokens_are_class_then_patches(tiny: dict) -> None:
    encoder = load(_resolve(f"openclip:{ARCH}/{tiny['root'] / 'tiny.pt'}"))
    pixels = torch.stack([encoder.preprocess(image) for image in tiny["images"]])
    tokens = _tokens(encoder, pixels)
    assert tokens.shape == (2, 1 + (32 // 8) ** 2, 64)
    visual = encoder.model.visual
    with torch.inference_mode():
        assert torch.allclose(encoder.encode_image(pixels), tokens[:, 0] @ visual.proj, atol=1e-6)
        assert visual.transformer.batch_first
        blocks, x = [], visual._embeds(pixels)  # class token + patch embeddings, after ln_pre
        for block in visual.transformer.resblocks:
            x = block(x)
            blocks.append(x)
        assert torch.allclose(visual.ln_post(blocks[1]), tokens, atol=1e-5)
    for layer, expected in ((1, blocks[0]), (2, blocks[1]), (-1, blocks[1]), (-2, blocks[0])):
        assert torch.allclose(_tokens(encoder, pixels, layer), expected, atol=1e-5)
    assert not torch.allclose(_tokens(encoder, pixels, 1), tokens, atol=1e-3)


@pytest.mark.parametrize("layer", [0, 3, -3])
def test_out_of_range_layers_name_the_valid_range(tiny: dict, layer: int) -> None:
    encoder = load(_resolve(f"openclip:{ARCH}/{tiny['root'] / 'tiny.pt'}"))
    with pytest.raises(IncompatibleError, match=rf"2 blocks: layer must be None, 1\.\.2 or -2\.\.-1, got {layer}"):
        _tokens(encoder, torch.zeros(1, 3, 32, 32), layer)


def test_resnet_towers_have_no_token_outputs(tmp_path: Path) -> None:
    config = dict(CONFIG, vision_cfg={"image_size": 32, "layers": [1, 1, 1, 1], "width": 8})
    (tmp_path / "harness-tiny-rn.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "harness-tiny-rn.json")
    model, _, transform = open_clip.create_model_and_transforms("harness-tiny-rn")
    encoder = OpenClipEncoder(model.eval(), transform, open_clip.get_tokenizer(ARCH), 32, None, "cpu")
    with pytest.raises(IncompatibleError, match="ModifiedResNet image towers have no token-level outputs"):
        Features(encoder).images(_image_rows(1), "image", output="tokens")


def _image_rows(n: int):
    datasets = pytest.importorskip("datasets")
    images = [Image.new("RGB", (32, 32), (40 * i, 90, 200)) for i in range(n)]
    return datasets.Dataset.from_dict({"image": images}, features=datasets.Features({"image": datasets.Image()}))


def test_features_extracts_tokens_of_a_chosen_block(tiny: dict) -> None:
    encoder = load(_resolve(f"openclip:{ARCH}/{tiny['root'] / 'tiny.pt'}"))
    rows = _image_rows(3)
    tokens = Features(encoder, batch_size=2).images(rows, "image", output="tokens", layer=-2)
    assert tokens.shape == (3, 17, 64) and tokens.dtype == np.float32
    pixels = torch.stack([encoder.preprocess(image) for image in rows["image"]])
    np.testing.assert_allclose(tokens, _tokens(encoder, pixels, 1).numpy(), atol=1e-6)
