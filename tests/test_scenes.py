"""The procedural ``scenes`` dataset builder: determinism, caching, config checks, labels that match pixels."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from harness.dataset import load_dataset
from harness.errors import DataError
from harness.execution import ExecutionConfig
from harness.pluginmanager import get_plugin_manager
from harness.registry import collect
from harness.taskspec import DatasetSource
from harness_scenes import builder
from harness_scenes.config import parse
from harness_scenes.vocabulary import BACKGROUNDS, COLORS, NUMBER_WORDS, SHAPES

MULTI = {"n": 40, "min_objects": 1, "max_objects": 6, "seed": 3}


@pytest.fixture(scope="module")
def registries():
    return collect(get_plugin_manager())


@pytest.fixture(scope="module")
def multi():
    return builder.build(MULTI, "test")


def image_digest(data) -> str:
    """sha256 over the encoded PNG bytes of every row (the same sum the subprocess test computes)."""
    raw = data.cast_column("image", type(data.features["image"])(decode=False))["image"]
    return hashlib.sha256(b"".join(image["bytes"] for image in raw)).hexdigest()


def test_registered_and_loaded_through_the_core(registries):
    assert "scenes" in registries.datasets
    loaded = load_dataset(DatasetSource(split="test", builder="scenes", config={"n": 12}), registries)
    assert len(loaded.data) == 12
    assert loaded.identity == {"source": "builder", "id": "scenes", "revision": "1", "split": "test",
                               "fingerprint": parse({"n": 12}, "test").fingerprint, "config": {"n": 12}}
    assert loaded.data.features["shape"].names == list(SHAPES)
    assert loaded.data.features["color"].names == list(COLORS)


def test_the_disk_cache_lives_under_the_runs_cache_root(registries, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "env"))
    config = {"n": 5, "seed": 41}
    fingerprint = parse(config, "test").fingerprint
    execution = ExecutionConfig(cache_dir=tmp_path / "run")
    loaded = load_dataset(DatasetSource(split="test", builder="scenes", config=config), registries,
                          execution=execution)
    assert len(loaded.data) == 5
    assert (tmp_path / "run" / "scenes" / fingerprint / "state.json").exists()
    assert not (tmp_path / "env").exists()  # the run's --cache-dir, not the default root
    # another root gets its own copy; without an execution nothing is written
    builder.build(config, "test", ExecutionConfig(cache_dir=tmp_path / "other"))
    assert (tmp_path / "other" / "scenes" / fingerprint / "state.json").exists()
    assert builder.cache_dir(None) is None
    builder.build({"n": 4, "seed": 42}, "test")
    assert not (tmp_path / "env").exists()


def test_bad_config_becomes_a_clear_data_error(registries):
    with pytest.raises(DataError, match=r"rejected config .*unknown config key\(s\) 'colours'.*allowed keys: n "):
        load_dataset(DatasetSource(split="test", builder="scenes", config={"colours": ["red"]}), registries)


@pytest.mark.parametrize(("config", "split", "match"), [
    ({"bogus": 1}, "test", r"unknown config key\(s\) 'bogus'"),
    ({}, "dev", r"unknown split 'dev'"),
    ({"n": 0}, "test", r"n must be an integer"),
    ({"n": "10"}, "test", r"n must be an integer"),
    ({"n": True}, "test", r"n must be an integer"),
    ({"n": {"dev": 5}}, "test", r"n: unknown split"),
    ({"image_size": 16}, "test", r"image_size must be an integer in \[32, 512\]"),
    ({"min_objects": 0}, "test", r"min_objects must be"),
    ({"max_objects": 13}, "test", r"max_objects must be"),
    ({"min_objects": 3, "max_objects": 2}, "test", r"max_objects \(2\) is below min_objects \(3\)"),
    ({"shapes": ["circle", "blob"]}, "test", r"shapes: unknown 'blob'"),
    ({"shapes": "circle"}, "test", r"shapes must be a non-empty list"),
    ({"colors": []}, "test", r"colors must be a non-empty list"),
    ({"colors": ["red", "red"]}, "test", r"colors lists a name twice"),
    ({"seed": -1}, "test", r"seed must be"),
])
def test_config_validation(config, split, match):
    with pytest.raises(ValueError, match=match) as info:
        builder.build(config, split)
    message = str(info.value)
    assert "\n" not in message and "allowed keys: n (default 200), image_size" in message


def test_defaults_and_max_objects_following_min_objects():
    cfg = parse({}, "test")
    assert (cfg.n, cfg.image_size, cfg.min_objects, cfg.max_objects, cfg.seed) == (200, 64, 1, 1, 0)
    assert parse({"min_objects": 3}, "test").max_objects == 3
    assert parse({"n": {"train": 50}}, "train").n == 50 and parse({"n": {"train": 50}}, "test").n == 200


def test_deterministic_and_fingerprinted():
    cfg = parse({"n": 16}, "validation")
    first, second = builder.generate(cfg), builder.generate(cfg)
    assert first._fingerprint == second._fingerprint == cfg.fingerprint
    assert image_digest(first) == image_digest(second)
    assert first.remove_columns("image").to_list() == second.remove_columns("image").to_list()
    assert np.array_equal(np.asarray(first[5]["image"]), np.asarray(second[5]["image"]))
    assert builder.build({"n": 16}, "validation")._fingerprint == cfg.fingerprint


def test_splits_and_configs_differ_but_defaults_do_not():
    fingerprints = {parse({"n": 8}, s).fingerprint for s in ("train", "validation", "test")}
    fingerprints |= {parse({"n": 8, "seed": 1}, "test").fingerprint, parse({"n": 9}, "test").fingerprint}
    assert len(fingerprints) == 5
    assert parse({}, "test").fingerprint == parse({"n": 200, "seed": 0, "shapes": list(SHAPES)}, "test").fingerprint
    train, test = builder.build({"n": 8}, "train"), builder.build({"n": 8}, "test")
    assert image_digest(train) != image_digest(test)
    assert train["id"][0] != test["id"][0]


def test_rows_are_prefix_stable_in_n():
    short, long = builder.build({"n": 6}, "train"), builder.build({"n": {"train": 15}}, "train")
    assert short._fingerprint != long._fingerprint
    assert short["id"] == long["id"][:6]
    assert image_digest(short) == image_digest(long.select(range(6)))


def test_same_bytes_and_fingerprint_in_another_process_and_disk_cache_reuse(tmp_path):
    script = (
        "import hashlib, json, sys; from harness import ExecutionConfig; from harness_scenes import builder; "
        "d = builder.build({'n': 10, 'max_objects': 3}, 'test', ExecutionConfig(cache_dir=sys.argv[1])); "
        "raw = d.cast_column('image', type(d.features['image'])(decode=False))['image']; "
        "print(json.dumps([d._fingerprint, hashlib.sha256(b''.join(i['bytes'] for i in raw)).hexdigest(), "
        "bool(d.cache_files)]))"
    )
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "env"), "PYTHONHASHSEED": "123"}
    run = lambda: json.loads(subprocess.run(  # noqa: E731
        [sys.executable, "-c", script, str(tmp_path / "root")], env=env, check=True, capture_output=True, text=True,
    ).stdout.strip().splitlines()[-1])
    here = builder.generate(parse({"n": 10, "max_objects": 3}, "test"))
    fingerprint, digest, from_disk = run()
    assert (fingerprint, digest, from_disk) == (here._fingerprint, image_digest(here), False)
    cached = tmp_path / "root" / "scenes" / fingerprint
    assert (cached / "state.json").exists() and not (tmp_path / "env").exists()
    assert [p.name for p in (tmp_path / "root" / "scenes").iterdir()] == [fingerprint]  # no temporary folders left
    assert run() == [fingerprint, digest, True]  # the second process reads the first one's cache


def test_importing_the_plugin_is_cheap():
    out = subprocess.run([sys.executable, "-c", "import sys, harness_scenes; print('datasets' in sys.modules, "
                          "'numpy' in sys.modules, 'PIL' in sys.modules)"], check=True, capture_output=True, text=True)
    assert out.stdout.split() == ["False", "False", "False"]


def test_returned_datasets_do_not_share_format_state():
    first = builder.build({"n": 5}, "test")
    first.set_format("numpy", columns=["label"])
    second = builder.build({"n": 5}, "test")
    assert second.format["type"] is None and "image" in second[0]


def test_images_are_rgb_of_the_configured_size():
    data = builder.build({"n": 4, "image_size": 40, "max_objects": 2}, "train")
    for image in data["image"]:
        assert image.mode == "RGB" and image.size == (40, 40)
        assert np.asarray(image).std() > 1.0  # not flat: texture, light and noise


def test_counts_present_and_labels_agree_with_objects(multi):
    shapes = multi.features["shape"].names
    assert multi.features["counts"].length == len(shapes)
    assert {n for n in multi["n_objects"]} == set(range(1, 7))
    for row in multi:
        kinds = Counter(obj["shape"] for obj in row["objects"])
        assert row["n_objects"] == len(row["objects"])
        assert row["counts"] == [kinds[s] for s in shapes] and sum(row["counts"]) == row["n_objects"]
        assert row["present"] == [kinds[s] > 0 for s in shapes]
        primary = row["objects"][0]
        assert shapes[row["shape"]] == primary["shape"]
        assert multi.features["color"].int2str(row["color"]) == primary["color"]
        assert multi.features["label"].int2str(row["label"]) == f"{primary['color']} {primary['shape']}"
        areas = [(o["bbox"][2] - o["bbox"][0]) * (o["bbox"][3] - o["bbox"][1]) for o in row["objects"]]
        assert areas[0] >= 0.6 * max(areas)  # the primary object is the largest (up to shape outline)


def parse_caption(caption: str) -> tuple[Counter, str]:
    """Caption -> (Counter of (colour, shape), background)."""
    match = re.fullmatch(r"(.+) on a (.+) background", caption)
    assert match, caption
    things, background = match.groups()
    found: Counter = Counter()
    for phrase in re.split(r", | and ", things):
        number, color, noun = phrase.split(" ")
        count = 1 if number in ("a", "an") else NUMBER_WORDS.index(number)
        assert (number == "an") == (color[0] in "aeiou") or count > 1, phrase
        shape = noun if count == 1 else next(s for s in SHAPES if noun in (s + "s", s + "es"))
        assert (color, shape) not in found, f"group repeated in {caption!r}"
        found[(color, shape)] = count
    return found, background


def test_captions_name_every_object_with_number_words(multi):
    plural_seen = False
    for row in multi:
        found, background = parse_caption(row["caption"])
        assert found == Counter((o["color"], o["shape"]) for o in row["objects"])
        assert background == multi.features["background"].int2str(row["background"])
        plural_seen |= any(count > 1 for count in found.values())
    assert plural_seen
    assert parse_caption("an orange star, two red crosses and a blue circle on a striped grey background")[0] == {
        ("orange", "star"): 1, ("red", "cross"): 2, ("blue", "circle"): 1}


@pytest.mark.parametrize("config", [{"n": 60}, MULTI, {"n": 20, "image_size": 32, "min_objects": 12}])
def test_pixel_at_each_center_has_the_named_colour(config):
    names = list(COLORS)
    palette = np.array([COLORS[c] for c in names], dtype=float)
    data = builder.build(config, "test")
    for row in data:
        pixels = np.asarray(row["image"]).astype(float)
        size = pixels.shape[0]
        for obj in row["objects"]:
            x, y = obj["center"]
            x0, y0, x1, y1 = obj["bbox"]
            assert 0 <= x0 <= x < x1 <= size and 0 <= y0 <= y < y1 <= size
            nearest = names[int(np.argmin(((palette - pixels[y, x]) ** 2).sum(axis=1)))]
            assert nearest == obj["color"], (row["id"], obj)


def test_primary_classes_are_balanced():
    data = builder.build({"n": 18, "shapes": ["star", "heart", "cross"], "colors": ["blue", "white"]}, "train")
    assert sorted(data["label"]) == sorted(list(range(6)) * 3)
    assert data.features["label"].names[:3] == ["blue star", "white star", "blue heart"]
    assert set(data["background"]) <= set(range(len(BACKGROUNDS)))


def test_export_round_trips_through_path_datasets(tmp_path, registries):
    config = {"n": 6, "max_objects": 2}
    original = builder.build(config, "test")
    folder = builder.export(config, "test", tmp_path / "images")
    assert len(list(folder.glob("*.png"))) == 6
    loaded = load_dataset(DatasetSource(split="test", path=tmp_path / "images"), registries).data
    assert sorted(loaded["caption"]) == sorted(original["caption"])
    by_id = {row["id"]: row for row in loaded}
    assert np.array_equal(np.asarray(by_id[original[0]["id"]]["image"]), np.asarray(original[0]["image"]))
    builder.export(config, "test", tmp_path / "arrow", format="disk")
    saved = load_dataset(DatasetSource(split="test", path=tmp_path / "arrow" / "test"), registries).data
    assert saved["caption"] == original["caption"] and saved.features == original.features
    with pytest.raises(ValueError, match="unknown export format"):
        builder.export(config, "test", tmp_path, format="zip")


def test_a_damaged_cache_is_rebuilt(tmp_path):
    config = {"n": 3, "seed": 77}
    broken = tmp_path / "scenes" / parse(config, "test").fingerprint
    broken.mkdir(parents=True)
    (broken / "state.json").write_text("{not json")
    with pytest.warns(UserWarning, match="rebuilding unreadable cache"):
        data = builder.build(config, "test", ExecutionConfig(cache_dir=tmp_path))
    assert len(data) == 3 and data._fingerprint == broken.name
    assert builder._from_disk(parse(config, "test"), tmp_path / "scenes") is not None
