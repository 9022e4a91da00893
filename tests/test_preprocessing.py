"""Issue #13: named, model-independent preprocessings (GRAIN's squash resize + ImageNet norm, GVT, ShareLock)
used instead of the model's transform, keyed apart in the feature store and chosen in specs."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import PREPROCESSINGS, UnknownNameError, preprocessing_choices
from harness.cli import main
from harness.featurestore import FeatureStore
from harness.preprocessing import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, preprocessing
from harness.result import read_result, validate_result

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")
transforms = pytest.importorskip("torchvision.transforms")

BICUBIC = transforms.InterpolationMode.BICUBIC


def striped(width: int = 96, height: int = 40, seed: int = 0) -> Image.Image:
    """A non-square noisy image whose leftmost eighth is pure red: squashing keeps it, a centre crop drops it."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    pixels[:, : width // 8] = (255, 0, 0)
    return Image.fromarray(pixels, "RGB")


# -- the transforms ---------------------------------------------------------------------------------

def test_grain_is_a_bicubic_squash_resize_with_imagenet_norm() -> None:
    image = striped()
    got = PREPROCESSINGS["grain"](image)
    direct = transforms.Compose([transforms.Resize((224, 224), interpolation=BICUBIC), transforms.ToTensor(),
                                 transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(image)
    assert got.shape == (3, 224, 224) and got.dtype == torch.float32
    assert torch.equal(got, direct)
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)
    # the aspect ratio is not kept: the whole width is there (the red left edge survives), unlike a crop
    red = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(got[:, 112, 5], torch.tensor([red[0], -IMAGENET_MEAN[1] / IMAGENET_STD[1],
                                                        -IMAGENET_MEAN[2] / IMAGENET_STD[2]]), atol=1e-4)
    cropped = transforms.Compose([transforms.Resize(224, interpolation=BICUBIC), transforms.CenterCrop(224),
                                  transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(image)
    assert not torch.allclose(got, cropped, atol=1e-2)
    assert not torch.allclose(cropped[:, 112, 5], got[:, 112, 5], atol=1e-2)


def test_gvt_and_sharelock_match_their_references() -> None:
    from harness_sharelock.encoder import sharelock_transform

    image = striped(64, 100, seed=1)
    gvt = transforms.Compose([transforms.Resize((224, 224), interpolation=BICUBIC), transforms.ToTensor(),
                              transforms.Normalize(CLIP_MEAN, CLIP_STD)])(image)
    assert torch.equal(PREPROCESSINGS["gvt"](image), gvt)
    assert CLIP_MEAN == (0.48145466, 0.4578275, 0.40821073) and CLIP_STD == (0.26862954, 0.26130258, 0.27577711)
    share = PREPROCESSINGS["sharelock"](image)
    assert share.shape == (3, 224, 224) and torch.equal(share, sharelock_transform()(image))


def test_non_rgb_images_are_converted_first() -> None:
    grey = Image.fromarray(np.arange(40 * 70, dtype=np.uint32).reshape(40, 70).astype(np.uint8), "L")
    got = PREPROCESSINGS["grain"](grey)
    assert got.shape == (3, 224, 224) and torch.equal(got, PREPROCESSINGS["grain"](grey.convert("RGB")))


def test_names_fingerprints_and_sources() -> None:
    assert preprocessing_choices() == ["model", "grain", "gvt", "sharelock"]
    assert {n: p.fingerprint for n, p in PREPROCESSINGS.items()} == {
        "grain": "harness:grain-v1", "gvt": "harness:gvt-v1", "sharelock": "harness:sharelock-v1"}
    for p in PREPROCESSINGS.values():
        doc = p.builder.__doc__ or ""
        assert "\n" not in doc.strip() and "224" in doc and p.description
    with pytest.raises(UnknownNameError) as info:
        preprocessing("clip")
    message = str(info.value)
    assert "\n" not in message and "'clip'" in message and "grain, gvt, sharelock" in message


def test_importing_harness_and_the_names_does_not_import_torch() -> None:
    code = ("import sys, harness; harness.preprocessing_choices(); harness.PREPROCESSINGS['grain'].fingerprint; "
            "import harness_zeroshot, harness_retrieval; print('torch' in sys.modules, 'torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_picklable_and_run_in_dataloader_workers() -> None:
    import datasets

    from harness.imageloader import ImageRows, batches

    grain = pickle.loads(pickle.dumps(PREPROCESSINGS["grain"]))
    assert grain == PREPROCESSINGS["grain"]
    images = [striped(50 + 10 * i, 30, seed=i) for i in range(4)]
    data = datasets.Dataset.from_dict({"image": images}, features=datasets.Features({"image": datasets.Image()}))
    rows = ImageRows(data, "image", grain, "test")
    loaded = list(batches(rows, [[0, 1], [2, 3]], workers=2, pin_memory=False))
    expected = torch.stack([PREPROCESSINGS["grain"](im) for im in images])
    assert torch.equal(torch.cat(loaded), expected)


# -- Features and the feature store --------------------------------------------------------------

def test_features_key_the_named_preprocessing_apart(tmp_path: Path) -> None:
    import datasets

    from harness.dataset import Split
    from harness.features import Features

    class Recording:
        """A tiny image model whose features are the mean of each channel (sees what preprocessing did)."""

        embed_dim = 3

        def __init__(self) -> None:
            self.seen: list[tuple[int, ...]] = []

        def preprocess(self, image: Image.Image) -> torch.Tensor:
            return transforms.ToTensor()(image.resize((16, 16)))

        def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
            self.seen.append(tuple(pixels.shape[1:]))
            return pixels.mean(dim=(2, 3))

        def provenance(self) -> dict:
            return {"revision": None, "fingerprint": "rec", "n_parameters": 0}

    data = datasets.Dataset.from_dict({"image": [striped(60, 30, seed=i) for i in range(3)]},
                                      features=datasets.Features({"image": datasets.Image()}))
    split = Split(data, {"source": "test", "id": "stripes", "split": "test"})
    store = FeatureStore(tmp_path / "features")
    model = Recording()
    features = Features(model, store=store, encoder_key={"name": "rec", "fingerprint": "rec"})
    own = features.images(split, "image")
    grain = features.images(split, "image", preprocess="grain")
    assert model.seen == [(3, 16, 16), (3, 224, 224)]
    assert not np.allclose(own, grain)
    np.testing.assert_allclose(grain, np.stack([PREPROCESSINGS["grain"](im).mean(dim=(1, 2)).numpy()
                                                for im in data["image"]]), rtol=0, atol=1e-6)
    assert features.counters.image_hits == 0 and features.counters.images == 6
    again = features.images(split, "image", preprocess="grain")
    same_as_own = features.images(split, "image", preprocess="model")
    assert features.counters.image_hits == 6 and len(model.seen) == 2  # both from the store
    np.testing.assert_array_equal(again, grain)
    np.testing.assert_array_equal(same_as_own, own)
    keys = sorted(s.key["preprocess"] for s in store.sets())
    assert len(keys) == 2 and "harness:grain-v1" in keys and keys != ["harness:grain-v1"] * 2
    assert features.preprocess_used == ["model", "harness:grain-v1"]
    with pytest.raises(UnknownNameError, match=r"^task t: unknown preprocessing 'nope'; known: grain, gvt, sharelock"):
        features.images(split, "image", where="task t", preprocess="nope")


# -- the zero-shot kind, end to end on a tiny open_clip model ------------------------------------

ARCH_224 = "harness-tiny-clip-224"
CONFIG_224 = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "patch_size": 32, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip_224(tmp_path_factory: pytest.TempPathFactory, openclip_saver) -> dict:  # noqa: ANN001
    """A tiny open_clip ViT at 224 px (the named preprocessings give 224x224): its checkpoint and harness name."""
    model, checkpoint = openclip_saver(tmp_path_factory.mktemp("tiny-clip-224"), ARCH_224, CONFIG_224, seed=7)
    return {"name": f"openclip:{ARCH_224}/{checkpoint}", "model": model, "checkpoint": checkpoint}


@pytest.fixture(scope="module")
def wide_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image folder (split ``test``) of non-square images in two classes."""
    root = tmp_path_factory.mktemp("wide")
    for label, name in enumerate(("left", "right")):
        folder = root / "test" / name
        folder.mkdir(parents=True)
        for i in range(3):
            striped(90 + 10 * i, 40, seed=10 * label + i).save(folder / f"{i}.png")
    return root


def zeroshot_spec(folder: Path, data: Path, preprocess: str | None) -> Path:
    """The same task (name ``pp_zeroshot``) in ``folder``, with ``params.preprocess`` when given."""
    folder.mkdir(parents=True, exist_ok=True)
    params = {"templates": ["a photo of a {c}."], **({"preprocess": preprocess} if preprocess else {})}
    spec = {"name": "pp_zeroshot", "version": 1, "kind": "zeroshot_classification",
            "dataset": {"path": str(data), "split": "test"}, "columns": {"image": "image", "label": "label"},
            "params": params, "metrics": ["accuracy"], "main_score": "accuracy"}
    path = folder / "pp_zeroshot.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def run_task(model: str, spec: Path, out: Path, cache: Path) -> dict:
    assert main(["run", "--quiet", "--model", model, "--task", str(spec), "--output-dir", str(out),
                 "--cache-dir", str(cache)]) == 0
    [path] = [p for p in out.rglob("*.json")]
    return read_result(path)


def test_zeroshot_with_grain_preprocessing_never_reuses_the_models_features(
        tiny_clip_224: dict, wide_images: Path, tmp_path: Path) -> None:
    import open_clip

    cache = tmp_path / "cache"
    own = run_task(tiny_clip_224["name"], zeroshot_spec(tmp_path / "own", wide_images, None), tmp_path / "o1", cache)
    grain = run_task(tiny_clip_224["name"], zeroshot_spec(tmp_path / "grain", wide_images, "grain"),
                     tmp_path / "o2", cache)
    again = run_task(tiny_clip_224["name"], zeroshot_spec(tmp_path / "grain", wide_images, "grain"),
                     tmp_path / "o3", cache)
    # the choice is part of the spec hash; the grain run computed everything (never a stale hit), the third none
    assert own["task"]["spec_sha256"] != grain["task"]["spec_sha256"] == again["task"]["spec_sha256"]
    assert (own["cache"]["image_misses"], own["cache"]["image_hits"]) == (6, 0)
    assert (grain["cache"]["image_misses"], grain["cache"]["image_hits"]) == (6, 0)
    assert (again["cache"]["image_misses"], again["cache"]["image_hits"]) == (0, 6)
    assert again["metrics"] == grain["metrics"]

    # two image feature sets, keyed by the preprocessing; each holds what its transform gives
    sets = {s.key["preprocess"]: s for s in FeatureStore(cache / "features").sets() if s.key["modality"] == "image"}
    assert len(sets) == 2 and "harness:grain-v1" in sets
    [model_key] = [k for k in sets if k != "harness:grain-v1"]

    def stored(feature_set) -> np.ndarray:  # noqa: ANN001
        ids = sorted(feature_set.sample_ids())
        found, values = feature_set.read(ids)
        assert found.all() and len(ids) == 6
        return values

    model = tiny_clip_224["model"]
    _, own_transform = open_clip.create_model_from_pretrained(ARCH_224, pretrained=str(tiny_clip_224["checkpoint"]))
    files = sorted((wide_images / "test").rglob("*.png"))
    images = [Image.open(f).convert("RGB") for f in files]
    with torch.inference_mode():
        direct_grain = model.encode_image(torch.stack([PREPROCESSINGS["grain"](im) for im in images])).numpy()
        direct_own = model.encode_image(torch.stack([own_transform(im) for im in images])).numpy()

    def matches(values: np.ndarray, direct: np.ndarray) -> bool:
        distances = np.abs(values[:, None, :] - direct[None, :, :]).max(axis=-1)
        return bool((distances.min(axis=1) < 1e-4).all())

    assert matches(stored(sets["harness:grain-v1"]), direct_grain)
    assert matches(stored(sets[model_key]), direct_own)
    assert not matches(stored(sets["harness:grain-v1"]), direct_own)

    # the result says which preprocessing fed the features (execution.preprocess)
    assert own["execution"]["preprocess"] == ["model"]
    assert grain["execution"]["preprocess"] == again["execution"]["preprocess"] == ["harness:grain-v1"]


def test_a_model_that_cannot_take_the_named_preprocessings_images_is_one_line(
        tiny_openclip: dict, image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = zeroshot_spec(tmp_path / "s", image_folder, "grain")  # the tiny model is made for 32 px
    code = main(["run", "--quiet", "--model", tiny_openclip["name"], "--task", str(spec),
                 "--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1, err
    assert "failed on the 3x224x224 images of preprocessing 'grain'" in err and "preprocess: model" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.json"))


def test_the_result_schema_accepts_the_preprocess_record(tiny_openclip: dict, image_folder: Path,
                                                         tmp_path: Path) -> None:
    doc = run_task(tiny_openclip["name"], zeroshot_spec(tmp_path / "s", image_folder, None), tmp_path / "o",
                   tmp_path / "c")
    doc["execution"]["preprocess"] = ["harness:grain-v1"]
    validate_result(doc)
    doc["execution"]["preprocess"] = "grain"
    with pytest.raises(Exception, match="preprocess"):
        validate_result(doc)


def test_unknown_preprocessing_in_a_spec_is_one_line_before_any_model_loads(
        tiny_clip_224: dict, wide_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    import harness_openclip.encoder

    def never(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(harness_openclip.encoder, "load", never)
    spec = zeroshot_spec(tmp_path / "bad", wide_images, "imagenet")
    code = main(["run", "--quiet", "--model", tiny_clip_224["name"], "--task", str(spec),
                 "--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("harness: error: ") and "params.preprocess: 'imagenet' is not one of" in err
    assert "'model', 'grain', 'gvt', 'sharelock'" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.json"))


def test_shipped_grain_specs_use_grains_preprocessing() -> None:
    from harness.pluginmanager import get_plugin_manager
    from harness.registry import collect
    from harness.taskspec import load_task_spec

    registries = collect(get_plugin_manager())
    specs = sorted((Path(__file__).resolve().parents[1] / "tasks").glob("grain_*.yaml"))
    assert len(specs) == 12
    for path in specs:
        assert load_task_spec(path, registries).params["preprocess"] == "grain", path.name
    retrieval = load_task_spec(Path(__file__).resolve().parents[1] / "tasks" / "coco_karpathy_retrieval.yaml",
                               registries)
    assert "preprocess" not in retrieval.params  # the model's own (the kinds' default)
