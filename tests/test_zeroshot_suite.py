"""Issue #13: GRAIN's zero-shot protocol, retrieval, suites and the products2023 builder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))  # harness_retrieval, until pyproject declares it

from harness import DataError, SpecError  # noqa: E402
from harness.cli import main  # noqa: E402
from harness.result import read_result  # noqa: E402
from harness.testing import task_context  # noqa: E402
from harness_retrieval import kind as retrieval  # noqa: E402
from harness_zeroshot import kind as zeroshot  # noqa: E402
from harness_zeroshot import products  # noqa: E402

P = ["-p", "harness_retrieval"]


# -- 1. GRAIN's protocol -------------------------------------------------------------------------

@pytest.mark.parametrize("descriptor, sentence", [
    ("a long neck", " which is a long neck"),
    ("antlers", " which is antlers"),  # the letter a, not the word: the reference's quirk
    ("used for cutting", " which is used for cutting"),
    ("has stripes", " which has stripes"),
    ("often red", " which often red"),
    ("orange", " which has orange"),
])
def test_grain_descriptor_sentence(descriptor: str, sentence: str) -> None:
    assert zeroshot.descriptor_sentence(descriptor) == sentence


def test_grain_texts_are_every_descriptor_by_every_template() -> None:
    texts, counts = zeroshot.class_texts(["cat", "dog"], ["a {c}.", "the {c},"],
                                         {"cat": ["whiskers", "can purr"], "dog": ["a tail"]})
    assert counts == [4, 2]
    assert texts[:4] == ["a cat. which has whiskers", "the cat, which has whiskers",
                         "a cat. which can purr", "the cat, which can purr"]
    assert texts[4:] == ["a dog. which is a tail", "the dog, which is a tail"]


def test_not_renormalised_mean_is_the_plain_mean_and_can_change_the_argmax() -> None:
    # class 0: two agreeing texts (long mean), class 1: two opposed-ish texts (short mean)
    emb = np.array([[1.0, 0.1], [1.0, -0.1], [0.2, 1.0], [0.9, -1.0]]) * np.array([[3.0], [0.5], [2.0], [1.0]])
    direct = np.stack([(emb[:2] / np.linalg.norm(emb[:2], axis=1, keepdims=True)).mean(0),
                       (emb[2:] / np.linalg.norm(emb[2:], axis=1, keepdims=True)).mean(0)])
    grain = zeroshot.grouped_prototypes(emb, [2, 2], renormalize=False)
    clip = zeroshot.grouped_prototypes(emb, [2, 2], renormalize=True)
    np.testing.assert_allclose(grain, direct, rtol=0, atol=1e-12)
    np.testing.assert_allclose(clip, direct / np.linalg.norm(direct, axis=1, keepdims=True), atol=1e-12)
    assert not np.allclose(grain, clip)
    image = np.array([[0.62, 0.785]])  # nearer class 1 in angle, but class 0's prototype is longer
    assert (image @ grain.T).argmax() == 0 and (image @ clip.T).argmax() == 1
    np.testing.assert_allclose(zeroshot.grouped_prototypes(emb, [2, 2]), zeroshot.class_prototypes(emb, 2, 2))


def _ctx(descriptors: dict, names: list[str] = ["cat", "dog", "fox"]) -> object:  # noqa: B006
    import datasets
    from PIL import Image

    rows = datasets.Dataset.from_dict(
        {"image": [Image.new("RGB", (8, 8), (i * 60, 0, 0)) for i in range(3)], "label": [0, 1, 2]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)}))
    return task_context(rows, {"image": "image", "label": "label"},
                        params={"templates": ["a photo of a {c}."], "descriptors": descriptors, "renormalize": False,
                                "logit_scale": 100.0})


def test_descriptors_checked_against_classes_before_any_model() -> None:
    kind = zeroshot.ZeroShotClassification()
    kind.check(_ctx({"cat": ["whiskers"], "dog": ["a tail"], "fox": ["red fur"]}))
    with pytest.raises(SpecError, match=r"class 1 is 'fox' \(in another position\) but the dataset's class 1 is 'dog'"):
        kind.check(_ctx({"cat": ["x"], "fox": ["y"], "dog": ["z"]}))
    with pytest.raises(SpecError, match=r"class 2 is 'wolf' \(not a class of the dataset\)"):
        kind.check(_ctx({"cat": ["x"], "dog": ["y"], "wolf": ["z"]}))
    with pytest.raises(SpecError, match="first missing: class 2 'fox'"):
        kind.check(_ctx({"cat": ["x"], "dog": ["y"]}))
    outputs = kind.evaluate(_ctx({"cat": ["whiskers"], "dog": ["a tail", "has fur"], "fox": []}))
    assert outputs["logits"].shape == (3, 3)


# -- 2. retrieval --------------------------------------------------------------------------------

def test_retrieval_ranks_and_hits_clip_convention() -> None:
    rng = np.random.default_rng(0)
    images = retrieval._normalize(rng.normal(size=(7, 5)))
    owner = np.repeat(np.arange(7), [1, 2, 3, 1, 2, 1, 2])
    texts = retrieval._normalize(rng.normal(size=(len(owner), 5)))
    i2t, t2i = retrieval.ranks(images, texts, owner)
    scores = texts @ images.T  # CLIP_benchmark: positive_pairs[text, image]
    for k in (1, 5):
        topk_img = np.argsort(-scores, axis=1)[:, :k]
        expected_t2i = np.array([owner[j] in topk_img[j] for j in range(len(owner))])
        np.testing.assert_array_equal(t2i < k, expected_t2i)
        topk_txt = np.argsort(-scores.T, axis=1)[:, :k]
        expected_i2t = np.array([np.isin(np.flatnonzero(owner == i), topk_txt[i]).any() for i in range(7)])
        np.testing.assert_array_equal(i2t < k, expected_i2t)
    rank = np.concatenate([i2t, t2i])
    direction = np.r_[np.zeros(7, int), np.ones(len(owner), int)]
    hit = retrieval.i2t_hit_at_5(rank, direction)
    assert hit.count() == 7 and hit.mean() == pytest.approx((i2t < 5).mean())


# -- 3. suites (end to end, two tiny checkpoints) ------------------------------------------------

@pytest.fixture(scope="module")
def two_models(tiny_openclip: dict, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    import open_clip
    import torch

    torch.manual_seed(1)
    other = tmp_path_factory.mktemp("tiny-openclip-1") / "tiny1.pt"
    torch.save(open_clip.create_model(tiny_openclip["arch"], pretrained=None).state_dict(), other)
    return [tiny_openclip["name"], f"openclip:{tiny_openclip['arch']}/{other}"]


@pytest.fixture(scope="module")
def suite_run(two_models: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("suite")
    out = root / "results"
    argv = [*P, "run", "--quiet", "--task", "scenes_mini", "--output-dir", str(out), "--cache-dir", str(root / "c")]
    for model in two_models:
        argv += ["--model", model]
    assert main(argv) == 0
    return out


def test_suite_runs_its_tasks_for_each_model(suite_run: Path) -> None:
    docs = [read_result(p) for p in suite_run.rglob("*.json")]
    assert sorted(d["task"]["name"] for d in docs) == sorted(
        ["scenes_shapes_zeroshot", "scenes_colors_zeroshot", "scenes_captions_retrieval"] * 2)
    retrieval_doc = next(d for d in docs if d["task"]["kind"] == "zeroshot_retrieval")
    assert set(retrieval_doc["metrics"]) == {f"{d}_hit_at_{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)}
    assert retrieval_doc["records"]["n"] == 200  # 100 image queries + 100 caption queries


def test_suite_leaderboard_table(suite_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    board = tmp_path / "board.md"
    assert main([*P, "leaderboard", str(suite_run), "-o", str(board)]) == 0
    text = board.read_text()
    section = text.split("## suite scenes_mini v1")[1]
    assert "mean of 2 tasks (%, ↑)" in section and "scenes_captions_retrieval (separate)" in section
    docs = [read_result(p) for p in suite_run.rglob("*.json")]
    for name in {d["model"]["name"] for d in docs}:
        mine = [d["main_score"]["value"] for d in docs
                if d["model"]["name"] == name and d["task"]["kind"] == "zeroshot_classification"]
        assert f"{100 * np.mean(mine):.1f}" in section and "2/2" in section


def test_suite_is_listed_and_validated(capsys: pytest.CaptureFixture) -> None:
    assert main([*P, "list", "tasks"]) == 0
    out = capsys.readouterr().out
    assert "scenes_mini\t[tasks]\tsuite of 2 tasks (+1 separate)" in out
    assert "grain11\t[tasks]\tsuite of 11 tasks (+1 separate)" in out
    assert main([*P, "validate", str(ROOT / "tasks" / "suites")]) == 0


def test_suite_file_errors(tmp_path: Path) -> None:
    from harness.suite import load_suite

    bad = tmp_path / "s.yaml"
    bad.write_text("name: s\nversion: 1\ntasks: [a, a]\n")
    with pytest.raises(SpecError, match=r"\['a'\] listed more than once"):
        load_suite(bad)
    bad.write_text("name: s\nversion: 1\ntasks: [a]\naggregate: median\n")
    with pytest.raises(SpecError, match="aggregate: 'median'"):
        load_suite(bad)


# -- 4. products2023 -----------------------------------------------------------------------------

def make_products(root: Path, classes: dict | None = None) -> Path:
    from PIL import Image

    classes = classes or {"gizmo": ["a round body", "has a blue light"], "widget": ["used for fixing"],
                          "doohickey": ["orange"]}
    (root / "images").mkdir(parents=True)
    (root / "classes.json").write_text(json.dumps(classes))
    for i, name in enumerate(classes):
        (root / "images" / name).mkdir()
        for j in range(2):
            Image.new("RGB", (16, 16), (80 * i, 40 * j, 200)).save(root / "images" / name / f"{j}.png")
    return root


def test_products_layout_errors(tmp_path: Path) -> None:
    root = make_products(tmp_path / "ok")
    data = products.build({"root": str(root)}, "test")
    assert data.features["label"].names == ["gizmo", "widget", "doohickey"] and len(data) == 6
    (root / "images" / "thing").mkdir()
    with pytest.raises(DataError, match="folder .*thing' is not a class of classes.json"):
        products.build({"root": str(root)}, "test")
    (root / "images" / "thing").rmdir()
    for f in (root / "images" / "widget").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="class 'widget' of classes.json has no images"):
        products.build({"root": str(root)}, "test")
    (root / "images" / "widget").rmdir()
    with pytest.raises(DataError, match="class 'widget' of classes.json has no folder"):
        products.build({"root": str(root)}, "test")
    broken = make_products(tmp_path / "broken")
    (broken / "images" / "gizmo" / "0.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="unreadable image .*0.png"):
        products.build({"root": str(broken)}, "test")


@pytest.mark.parametrize("with_descriptions", [False, True])
def test_products_with_and_without_descriptions(with_descriptions: bool, tiny_openclip: dict, tmp_path: Path) -> None:
    import yaml

    data = make_products(tmp_path / "products")
    spec = {"name": "products_test", "version": 1, "kind": "zeroshot_classification",
            "dataset": {"builder": "products2023", "config": {"root": str(data)}, "split": "test"},
            "columns": {"image": "image", "label": "label"},
            "params": {"templates": ["a photo of a {c}."], "renormalize": not with_descriptions},
            "metrics": ["accuracy", "mean_per_class_recall"], "main_score": "accuracy"}
    if with_descriptions:
        (tmp_path / "products.json").write_text((data / "classes.json").read_text())
        spec["params"]["descriptors"] = {"$file": "products.json"}
    path = tmp_path / "products_test.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    assert main([*P, "run", "--quiet", "--model", tiny_openclip["name"], "--task", str(path),
                 "--output-dir", str(out), "--cache-dir", str(tmp_path / "c")]) == 0
    [doc] = [read_result(p) for p in out.rglob("*.json")]
    assert doc["n_samples"]["evaluated"] == 6


# -- 5. shipped reference data: GRAIN's templates, ImageNet variants -----------------------------

TASKS = ROOT / "tasks"


def test_grain_templates_are_the_46_of_clip_prompts() -> None:
    lines = (TASKS / "grain" / "templates.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 46 and all(line.count("{c}") == 1 for line in lines)
    assert lines[0] == "a bad photo of a {c}," and lines[-1] == "a photo of a cool {c},"
    assert lines[43] == "a toy {c}, a  type of bird,"  # the reference's double space, kept
    assert sum(line.endswith(", a type of bird,") for line in lines) == 22  # + the toy one


def test_grain_slash_rule() -> None:
    templates = ["a photo of a {c},", "itap of my {c},"]
    texts, counts = zeroshot.class_texts(["cat", "bakery/shop", "/a/abbey"], templates, None, slash_rule=True)
    assert counts == [2, 2, 2]
    assert texts == ["a photo of a cat,", "itap of my cat,",
                     "a photo of a shop, of a bakery", "itap of my shop, of a bakery",
                     "a photo of a abbey,", "itap of my abbey,"]
    # off by default; never with descriptors (the reference applies it only without them)
    assert zeroshot.class_texts(["bakery/shop"], templates, None)[0][0] == "a photo of a bakery/shop,"
    with_desc = zeroshot.class_texts(["bakery/shop", "cat"], templates[:1], {"bakery/shop": ["bread"], "cat": ["fur"]},
                                     slash_rule=True)[0]
    assert with_desc[0] == "a photo of a bakery/shop, which has bread"


def test_grain_slash_rule_param_reaches_the_texts(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    from PIL import Image

    import harness_zeroshot

    rows = datasets.Dataset.from_dict(
        {"image": [Image.new("RGB", (8, 8), (i * 60, 0, 0)) for i in range(2)], "label": [0, 1]},
        features=datasets.Features({"image": datasets.Image(),
                                    "label": datasets.ClassLabel(names=["bakery/shop", "cat"])}))
    [spec] = harness_zeroshot.harness_register_task_kinds()
    seen: list[list[str]] = []
    original = zeroshot.class_texts

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        texts, counts = original(*args, **kwargs)
        seen.append(texts)
        return texts, counts

    monkeypatch.setattr(zeroshot, "class_texts", spy)
    for rule, expected in ((True, ["a shop of a bakery", "a cat"]), (False, ["a bakery/shop", "a cat"])):
        ctx = task_context(rows, {"image": "image", "label": "label"}, kind=spec,
                           params={"templates": ["a {c}"], "grain_slash_rule": rule})
        assert zeroshot.ZeroShotClassification().evaluate(ctx)["logits"].shape == (2, 2)
        assert seen.pop() == expected


def test_imagenet_subset_files_are_200_classes_and_up_to_date() -> None:
    import subprocess

    folder = TASKS / "imagenet"
    names = (folder / "classnames.txt").read_text(encoding="utf-8").splitlines()
    wnids = (folder / "wnids.txt").read_text(encoding="utf-8").splitlines()
    assert len(wnids) == 1000 and wnids == sorted(wnids) and wnids[0] == "n01440764"
    for subset in ("r", "a"):
        indices = [int(x) for x in (folder / f"{subset}_indices.txt").read_text().splitlines()]
        sub_names = (folder / f"{subset}_classnames.txt").read_text(encoding="utf-8").splitlines()
        assert len(indices) == len(set(indices)) == len(sub_names) == 200 and indices == sorted(indices)
        assert sub_names == [names[i] for i in indices]
        assert [wnids[i] for i in indices] == (folder / f"{subset}_wnids.txt").read_text().splitlines()
    assert (folder / "r_classnames.txt").read_text().splitlines()[:2] == ["goldfish", "great white shark"]
    assert (folder / "a_classnames.txt").read_text().splitlines()[:2] == ["stingray", "goldfinch"]
    check = subprocess.run([sys.executable, str(folder / "make_subsets.py"), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


def test_imagenet_variant_specs_validate(capsys: pytest.CaptureFixture) -> None:
    from harness.taskspec import load_task_spec

    paths = [TASKS / f"imagenet_{v}_zeroshot.yaml" for v in ("v2", "sketch", "r", "a")]
    assert main(["validate", *map(str, paths)]) == 0
    assert capsys.readouterr().out.count("ok\t") == 4
    expected = {"v2": 1000, "sketch": 1000, "r": 200, "a": 200}
    for variant, path in zip(expected, paths):
        spec = load_task_spec(path)
        assert len(spec.params["classnames"]) == expected[variant] and len(spec.params["templates"]) == 80
        assert spec.dataset.path is not None and spec.dataset.split == "test"


GRAIN_FOLDERS = ("cifar10", "cifar100", "sun397", "stanford_cars", "dtd", "oxford_pets", "caltech101",
                 "flowers102", "cub200", "places365", "food101")


def test_the_real_grain11_suite_runs_once_its_folders_are_present(
        openclip_saver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """The eleven shipped members of ``grain11`` (GRAIN's templates and preprocessing) on stand-in image
    folders at their documented paths, with a tiny 224 px open_clip model, and the suite's table.
    (ImageNet, reported apart, reads the official 1000-class layout: not stood in for here.)"""
    from PIL import Image

    home = tmp_path / "home"
    for folder in GRAIN_FOLDERS:
        path = home / "harness-data" / "grain" / folder
        for index, name in enumerate(("alpha", "beta")):
            (path / "test" / name).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (40, 30), (60 * index + 30 * i, 90, 200 - 60 * index)).save(
                    path / "test" / name / f"{i}.png")
    monkeypatch.setenv("HOME", str(home))
    (tmp_path / "model").mkdir()
    _, checkpoint = openclip_saver(tmp_path / "model", "harness-grain-suite-224",
                                   {"embed_dim": 16, "vision_cfg": {"image_size": 224, "layers": 1, "width": 32,
                                                                    "patch_size": 32, "head_width": 16},
                                    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32,
                                                 "heads": 2, "layers": 1}}, seed=3)
    model = f"openclip:harness-grain-suite-224/{checkpoint}"
    out = tmp_path / "results"
    argv = [*P, "run", "--quiet", "--model", model, "--output-dir", str(out), "--cache-dir", str(tmp_path / "c")]
    members = [a for name in GRAIN_FOLDERS for a in ("--task", f"grain_{name}")]
    assert main([*argv, *members]) == 0
    docs = [read_result(p) for p in out.rglob("*.json")]
    assert sorted(d["task"]["name"] for d in docs) == sorted(f"grain_{n}" for n in GRAIN_FOLDERS)
    for doc in docs:
        assert doc["n_samples"]["evaluated"] == 4 and doc["execution"]["preprocess"] == ["harness:grain-v1"]
        assert doc["cache"]["text_misses"] + doc["cache"]["text_hits"] == 2 * 46  # 2 classes x 46 templates
    board = tmp_path / "board.md"
    assert main([*P, "leaderboard", str(out), "-o", str(board)]) == 0
    section = board.read_text().split("## suite grain11 v1")[1]
    mean = 100 * np.mean([d["main_score"]["value"] for d in docs])
    assert "mean of 11 tasks" in section and f"{mean:.1f}" in section and "11/11" in section
