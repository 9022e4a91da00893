"""Hostile inputs end as one line and no result: YAML bombs, deep nesting, duplicate keys and oversized
task files; images replaced behind the feature cache's back; 16-bit and float images; zero-shot class
names that do not match the labels (refused before any model loads)."""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml
from PIL import Image

from harness import contenthash
from harness.cli import main
from harness.dataset import load_dataset
from harness.errors import DataError, PluginError, SpecError
from harness.imageloader import DecodeFailure, ImageRows
from harness.result import read_result
from harness.taskspec import DatasetSource
from harness.testing import task_context

PLUGIN_NAME = "harness_hostile_plugin"
PLUGIN = '''
import numpy as np
import torch

from harness import ModelSpec, hookimpl

LOADS = []
WORDS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}


class MeanColour:
    """Image embedding: the mean RGB colour; text embedding: the sum of the colour words' unit vectors."""

    embed_dim = 3

    def preprocess(self, image):
        pixels = np.asarray(image, dtype=np.float32).reshape(-1, 3) / 255.0
        return torch.from_numpy(pixels.mean(axis=0))

    def encode_image(self, pixels):
        return pixels

    def encode_text(self, texts):
        rows = [np.sum([WORDS[w] for w in t.lower().replace(".", " ").split() if w in WORDS] or [(0.0, 0.0, 0.0)],
                       axis=0) for t in texts]
        return torch.tensor(np.asarray(rows, dtype=np.float32))

    def provenance(self):
        return {"revision": None, "fingerprint": "0" * 64, "n_parameters": 0}


def load(spec, ctx):
    LOADS.append(spec.name)
    return MeanColour()


@hookimpl
def harness_register_models():
    return [ModelSpec("hostile:colour", "harness_hostile_plugin:load", {"image_embed", "text_embed"},
                      code_version="1")]
'''
MODEL = "hostile:colour"
#: validate reports each failing file on its own line; accepted prefixes of that line.
VALIDATE_PREFIXES = ("harness: error: ", "FAIL\t")
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


@pytest.fixture()
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / f"{PLUGIN_NAME}.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop(PLUGIN_NAME, None)
    import harness_hostile_plugin

    yield harness_hostile_plugin
    sys.modules.pop(PLUGIN_NAME, None)


def spec_text(name: str, data: Path | str = "data", params: str = '{templates: ["a photo of a {c}."]}') -> str:
    return (f"name: {name}\nversion: 1\nkind: zeroshot_classification\n"
            f"dataset: {{path: {str(data)!r}, split: test}}\ncolumns: {{image: image, label: label}}\n"
            f"metrics: [accuracy, mean_per_class_recall]\nmain_score: accuracy\nparams: {params}\n")


def write_spec(folder: Path, name: str, data: Path | str = "data", **params: object) -> Path:
    params = {"templates": ["a photo of a {c}."], **params}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(spec_text(name, data, yaml.safe_dump(params, default_flow_style=True).strip()))
    return path


def run_cli(capsys: pytest.CaptureFixture, tmp_path: Path, task: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["run", "-p", PLUGIN_NAME, "--quiet", "--model", MODEL, "--task", str(task), "--output-dir", str(out),
                 "--cache-dir", str(tmp_path / "cache"), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str, *needles: str, prefixes: tuple[str, ...] = ("harness: error: ",)) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefixes), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- hostile task files ------------------------------------------------------------------------------

LAUGHS = "\n".join(
    [spec_text("bomb", params="")[:-len("params: \n")] + "params:",
     '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"  {x}: &{x} [{','.join([f'*{p}'] * 9)}]" for p, x in zip("abcdefgh", "bcdefghi")]) + "\n"
DEEP = "[" * 5000 + "]" * 5000  # 10 KB


def _oversized() -> str:
    return spec_text("oversized") + "description: " + "x" * (1 << 20) + "\n"


HOSTILE = {
    # case: (spec text, shared files {name: text}, what the one line says)
    "alias_bomb": (LAUGHS, {}, "aliases expand to more than"),
    "recursive_alias": (spec_text("r", params="&p {templates: ['a {c}'], x: *p}"), {}, "recursive"),
    "deep_file": (DEEP, {}, "nested deeper than 64 levels"),
    "deep_params": (spec_text("d", params=f"{{templates: {DEEP}}}"), {}, "nested deeper than 64 levels"),
    "duplicate_key": (spec_text("dup") + "kind: linear_probe\n", {}, "duplicate key 'kind' (first at line 3)"),
    "duplicate_param": (spec_text("dup", params="{templates: ['a {c}'], templates: ['b {c}']}"), {},
                        "duplicate key 'templates'"),
    "non_string_key": (spec_text("k", params="{templates: ['a {c}'], 1: 2024-01-01}"), {}, "keys must be strings"),
    "oversized": (_oversized(), {}, "larger than 1048576 bytes"),
    "not_utf8": (spec_text("u").encode("utf-16").decode("latin-1"), {}, "not UTF-8"),
    "shared_bomb": (spec_text("s", params="{templates: {$file: bomb.yaml}}"),
                    {"bomb.yaml": LAUGHS.split("params:\n", 1)[1]}, "aliases expand to more than"),
    "shared_deep_json": (spec_text("s", params="{templates: {$file: deep.json}}"), {"deep.json": DEEP},
                         "nested deeper than 64 levels"),
    "shared_duplicate_json": (spec_text("s", params="{templates: {$file: t.json}}"),
                              {"t.json": '{"a": 1,\n "a": 2}'}, "duplicate key 'a' (first at line 1)"),
}


def _hostile_file(tmp_path: Path, case: str) -> tuple[Path, str]:
    text, shared, message = HOSTILE[case]
    folder = tmp_path / "specs"
    folder.mkdir()
    for name, content in shared.items():
        (folder / name).write_text(content)
    if text.startswith("name: "):  # the name must be the file stem, or that is the (first) error
        text = f"name: {case}\n" + text.split("\n", 1)[1]
    path = folder / f"{case}.yaml"
    path.write_text(text, encoding="latin-1" if case == "not_utf8" else "utf-8")
    return path, message


def test_the_alias_bomb_is_small() -> None:
    assert len(LAUGHS.encode()) < 1000 and LAUGHS.count("*") == 72


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_task_files_are_one_line(case: str, plugin, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path, message = _hostile_file(tmp_path, case)
    start = time.perf_counter()
    code = main(["validate", str(path)])
    err = capsys.readouterr().err
    assert code != 0
    one_error_line(err, str(path), message, prefixes=VALIDATE_PREFIXES)
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, tmp_path, path, out)
    assert code != 0 and not stdout
    one_error_line(err, str(path), message)
    assert not out.exists() and plugin.LOADS == []
    assert time.perf_counter() - start < 10


def test_honest_aliases_and_dates_still_load(tmp_path: Path) -> None:
    from harness.taskspec import load_task_spec

    path = tmp_path / "reuse.yaml"
    path.write_text(spec_text("reuse", params="{templates: &t ['a {c}', 'the {c}'], classnames: &n [a, b], "
                                              "logit_scale: 50, c: *t, d: *n, <<: {e: *t}}")
                    + "description: 2024-01-01\n")
    spec = load_task_spec(path)
    assert spec.params["c"] == spec.params["e"] == ["a {c}", "the {c}"] and spec.params["d"] == ["a", "b"]
    assert spec.description == "2024-01-01"


# -- content identity of local datasets -----------------------------------------------------------


def colour_folder(root: Path, per_class: int = 2) -> Path:
    """An image folder whose files all have one size (uncompressed PNG), so a replacement keeps it."""
    for name, rgb in COLOURS.items():
        (root / "test" / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shade = tuple(max(0, c - 20 * i) for c in rgb)
            Image.new("RGB", (24, 24), shade).save(root / "test" / name / f"{i}.png", compress_level=0)
    return root


def copy_keeping_times(source: Path, target: Path) -> None:
    """``cp -p source target`` onto an existing file: same inode, new bytes, the old times put back."""
    before = os.stat(target)
    shutil.copyfile(source, target)  # rewrites target in place
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(target)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)


def test_replaced_images_are_recomputed_not_served_stale(plugin, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contenthash, "RACY_NS", 0)  # remember the fresh files' digests: the ctime key must catch it
    data = colour_folder(tmp_path / "data")
    spec = write_spec(tmp_path / "tasks", "colours", data)
    code, stdout, err = run_cli(capsys, tmp_path, spec, tmp_path / "a")
    assert code == 0, err
    first = read_result(Path(stdout.split()[0]))
    assert first["metrics"]["accuracy"]["value"] == 1.0 and first["cache"]["image_misses"] == 6
    before = datasets.load_dataset("imagefolder", data_dir=str(data), split="test")._fingerprint

    time.sleep(0.05)  # past the coarse clock tick of the files' creation
    for i in range(2):
        copy_keeping_times(data / "test" / "blue" / f"{i}.png", data / "test" / "red" / f"{i}.png")
    assert datasets.load_dataset("imagefolder", data_dir=str(data), split="test")._fingerprint == before  # the bug

    code, stdout, err = run_cli(capsys, tmp_path, spec, tmp_path / "b")
    assert code == 0, err
    second = read_result(Path(stdout.split()[0]))
    assert second["dataset"]["fingerprint"] != first["dataset"]["fingerprint"]
    assert second["cache"]["image_hits"] == 0 and second["cache"]["image_misses"] == 6
    assert second["metrics"]["accuracy"]["value"] == pytest.approx(4 / 6)  # red rows now look blue
    code, stdout, err = run_cli(capsys, tmp_path, spec, tmp_path / "c", "--no-cache")
    assert code == 0, err
    fresh = read_result(Path(stdout.split()[0]))
    assert fresh["metrics"]["accuracy"] == second["metrics"]["accuracy"]
    assert fresh["dataset"]["fingerprint"] == second["dataset"]["fingerprint"]


def test_file_digests_are_remembered_by_size_times_and_inode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = colour_folder(tmp_path / "data")
    hashed: list[str] = []
    digest = contenthash.file_digest
    monkeypatch.setattr(contenthash, "file_digest", lambda path: hashed.append(str(path)) or digest(path))
    cache = tmp_path / "cache"

    first = contenthash.content_fingerprint(data, "imagefolder", cache)
    assert len(hashed) == 6
    contenthash.content_fingerprint(data, "imagefolder", cache)
    assert len(hashed) == 12  # just written: too recent to trust their times ("racy"), hashed again

    monkeypatch.setattr(contenthash, "RACY_NS", 0)
    assert contenthash.content_fingerprint(data, "imagefolder", cache) == first and len(hashed) == 18
    assert contenthash.content_fingerprint(data, "imagefolder", cache) == first and len(hashed) == 18  # warm
    assert contenthash.content_fingerprint(data, "imagefolder", None) == first and len(hashed) == 24  # no cache

    time.sleep(0.05)
    target = data / "test" / "green" / "1.png"
    copy_keeping_times(data / "test" / "red" / "0.png", target)
    hashed.clear()
    changed = contenthash.content_fingerprint(data, "imagefolder", cache)
    assert changed != first and hashed == [str(target)]
    copy_keeping_times(data / "test" / "green" / "0.png", data / "test" / "red" / "0.png")  # a swap: same set of bytes
    assert contenthash.content_fingerprint(data, "imagefolder", cache) not in (first, changed)
    assert contenthash.content_fingerprint(data, "load_from_disk", cache) != contenthash.content_fingerprint(
        data, "imagefolder", cache)  # how a path is read is part of its identity

    single = tmp_path / "table.csv"
    single.write_text("image,label\na.png,0\n")
    csv = contenthash.content_fingerprint(single, "csv", cache)
    single.write_text("image,label\na.png,1\n")
    assert contenthash.content_fingerprint(single, "csv", cache) != csv


def test_local_dataset_identity_is_its_content(tmp_path: Path) -> None:
    data = colour_folder(tmp_path / "data")
    copy = colour_folder(tmp_path / "copy")  # the same bytes elsewhere, with other times
    a = load_dataset(DatasetSource(split="test", path=data), None).identity  # type: ignore[arg-type]
    b = load_dataset(DatasetSource(split="test", path=copy), None).identity  # type: ignore[arg-type]
    assert a["source"] == "path" and len(a["fingerprint"]) == 64 and a["fingerprint"] == b["fingerprint"]
    (copy / "test" / "blue" / "0.png").rename(copy / "test" / "green" / "9.png")  # a relabelled image
    c = load_dataset(DatasetSource(split="test", path=copy), None).identity  # type: ignore[arg-type]
    assert c["fingerprint"] != a["fingerprint"]


# -- 16-bit and float images ------------------------------------------------------------------------


def _wide_images(root: Path) -> dict[str, Path]:
    """One image per class folder: name -> file."""
    files = {}

    def save(name: str, image: Image.Image, suffix: str) -> None:
        (root / "test" / name).mkdir(parents=True, exist_ok=True)
        files[name] = root / "test" / name / f"0{suffix}"
        image.save(files[name])

    ramp16 = np.tile(np.linspace(0, 65535, 16).astype(np.uint16), (16, 1))
    ramp16[:, 8:] = 32896  # 128 * 257
    save("grey16", Image.fromarray(ramp16), ".png")
    ramp = np.tile(np.linspace(0, 1, 16, dtype=np.float32), (16, 1))
    ramp[:, 8:] = 0.5
    save("float01", Image.fromarray(ramp), ".tiff")
    save("float_wide", Image.fromarray(ramp * 1000), ".tiff")
    save("int32_wide", Image.fromarray(np.full((16, 16), 70000, dtype=np.int32)), ".tiff")
    return files


def test_16_bit_and_float_images_decode_to_8_bit(tmp_path: Path) -> None:
    files = _wide_images(tmp_path / "wide")
    assert Image.open(files["grey16"]).mode == "I;16" and Image.open(files["float01"]).mode == "F"
    # what PIL's convert("RGB") alone gives: white and black
    assert np.asarray(Image.open(files["grey16"]).convert("RGB"))[:, 1:].min() == 255
    assert np.asarray(Image.open(files["float01"]).convert("RGB")).max() <= 1

    loaded = load_dataset(DatasetSource(split="test", path=tmp_path / "wide"), None).data  # type: ignore[arg-type]
    names = loaded.features["label"].names
    rows = ImageRows(loaded, "image", lambda image: np.asarray(image), "task t")
    decoded = {names[label]: rows[i] for i, label in enumerate(loaded["label"])}
    for name in ("grey16", "float01"):
        pixels = decoded[name]
        assert pixels.dtype == np.uint8 and pixels.shape == (16, 16, 3), name
        assert pixels[:, 0].max() == 0 and pixels[:, 7].min() > 100, name  # a ramp, not all 0 or all 255
        assert (pixels[:, 8:] == 128).all(), name
    wide, int32 = decoded["float_wide"], decoded["int32_wide"]
    assert isinstance(wide, DecodeFailure) and "mode F" in wide.message and "[0, 500]" in wide.message
    assert "\n" not in wide.message and "row" in wide.message
    assert isinstance(int32, DecodeFailure) and "mode I" in int32.message and "70000" in int32.message


def test_an_undecodable_float_image_ends_the_run_in_one_line(plugin, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    data = colour_folder(tmp_path / "data")
    Image.fromarray(np.full((24, 24), 7.5, dtype=np.float32)).save(data / "test" / "green" / "5.tiff")
    spec = write_spec(tmp_path / "tasks", "colours", data)
    code, _, err = run_cli(capsys, tmp_path, spec, tmp_path / "out")
    assert code != 0
    one_error_line(err, "cannot decode image", "mode F", "[7.5, 7.5]")
    assert not list((tmp_path / "out").rglob("*.json"))


# -- zero-shot class names vs labels, before any model loads ----------------------------------------


def _int_labelled(root: Path, labels: list[int]) -> Path:
    """A saved dataset (split ``test``) whose label column is a plain integer, without class names."""
    images = [Image.new("RGB", (8, 8), list(COLOURS.values())[max(0, y) % 3]) for y in labels]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    table = datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)
    datasets.DatasetDict({"test": table}).save_to_disk(str(root))
    return root


MISMATCHES = {
    # case: (label column: None = the class folders red/green/blue, else integer labels; classnames; --limit;
    #        what the line says)
    "fewer_names_than_folders": (None, ["red", "green"], None, "2 names, but column 'label' has 3 classes"),
    "more_names_than_folders": (None, ["red", "green", "blue", "pink"], None, "4 names, but column 'label' has 3"),
    "label_past_the_names": ([0, 1, 2, 5], ["red", "green", "blue"], None, "label 5 outside [0, 3)"),
    "label_past_the_names_outside_the_limit": ([0, 0, 0, 1, 2, 5], ["red", "green", "blue"], "2", "label 5 outside"),
    "more_names_than_labels": ([0, 1, 0, 1], ["red", "green", "blue"], None, "3 names, but the labels"),
    "no_labelled_row": ([-1, -1], ["red", "green"], None, "no evaluated row has a label"),
}


@pytest.mark.parametrize("case", sorted(MISMATCHES))
def test_class_name_mismatches_are_refused_before_the_model_loads(case: str, plugin, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    labels, names, limit, message = MISMATCHES[case]
    data = colour_folder(tmp_path / "data") if labels is None else _int_labelled(tmp_path / "data", labels)
    spec = write_spec(tmp_path / "tasks", "mismatch", data, classnames=names)
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, tmp_path, spec, out, *(["--limit", limit] if limit else []))
    assert code != 0 and not stdout
    one_error_line(err, "task mismatch", message)
    assert plugin.LOADS == [], "the model was loaded before the task was checked"
    assert not list(out.rglob("*.json")) if out.exists() else True


def test_matching_names_run(plugin, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = _int_labelled(tmp_path / "data", [0, 1, 2, 1, -1])
    spec = write_spec(tmp_path / "tasks", "matching", data, classnames=["red", "green", "blue"])
    code, stdout, err = run_cli(capsys, tmp_path, spec, tmp_path / "out")
    assert code == 0, err
    assert read_result(Path(stdout.split()[0]))["metrics"]["accuracy"]["value"] == 1.0 and plugin.LOADS == [MODEL]


def _check_context(rows: dict, params: dict, splits: dict | None = None, split: str = "test"):  # noqa: ANN202
    """A context as the core passes to ``check``: data, no model."""
    return replace(task_context(rows, {"image": "image", "label": "label"}, params, splits=splits, split=split),
                   _features=None)


def test_check_context_has_data_but_no_model() -> None:
    from harness_zeroshot.kind import ZeroShotClassification

    images = [Image.new("RGB", (4, 4))] * 3
    ctx = _check_context({"image": images, "label": [0, 1, 1]}, {"classnames": ["a", "b"], "templates": ["{c}"]})
    ZeroShotClassification().check(ctx)
    assert list(ctx.labels()) == [0, 1, 1] and ctx.class_names() == ["a", "b"] and len(ctx.rows()) == 3
    for call in (lambda: ctx.images("image"), lambda: ctx.texts(["a"]), lambda: ctx.features,
                 lambda: ctx.model("x", "image_embed", "tower")):
        with pytest.raises(PluginError, match="not available in check()"):
            call()
    with pytest.raises(SpecError, match="3 names, but the labels"):
        ZeroShotClassification().check(replace(ctx, params={"classnames": ["a", "b", "c"], "templates": ["{c}"]}))


def test_linear_probe_check_needs_no_model() -> None:
    from harness_linear_probe.kind import LinearProbe

    images = [Image.new("RGB", (4, 4))] * 4
    test = {"image": images, "label": [0, 1, 0, 1]}
    params = {"train_split": "train", "classnames": ["a", "b"], "C_grid": [1.0], "val_fraction": 0.2, "max_iter": 10}
    LinearProbe().check(_check_context(test, params, {"train": test}))
    with pytest.raises(DataError, match="at least 2 classes; found 1"):
        LinearProbe().check(_check_context(test, params, {"train": {"image": images, "label": [1, 1, 1, 1]}}))
    with pytest.raises(DataError, match="at least 2 classes; found 0 in 0 rows"):
        LinearProbe().check(_check_context(test, params, {"train": {"image": [], "label": []}}))
    with pytest.raises(DataError, match="label 2 outside"):
        LinearProbe().check(_check_context(test, params, {"train": {"image": images, "label": [0, 1, 2, 0]}}))
    with pytest.raises(DataError, match="no rows to evaluate"):
        LinearProbe().check(_check_context({"image": [], "label": []}, params, {"train": test}))
    with pytest.raises(SpecError, match="is the evaluated split"):
        LinearProbe().check(_check_context(test, {**params, "train_split": "test"}, {"train": test}))


def test_files_datasets_writes_into_a_saved_dataset_do_not_change_its_identity(tmp_path: Path) -> None:
    path = _int_labelled(tmp_path / "saved", [0, 1, 0, 1])
    source = DatasetSource(split="test", path=path)
    before = load_dataset(source, None).identity["fingerprint"]  # type: ignore[arg-type]
    datasets.load_from_disk(str(path))["test"].filter(lambda row: row["label"] == 1)  # writes cache-*.arrow there
    assert list(path.rglob("cache-*.arrow"))
    assert load_dataset(source, None).identity["fingerprint"] == before  # type: ignore[arg-type]
    (path / "test" / "dataset_info.json").write_text("{}")
    assert load_dataset(source, None).identity["fingerprint"] != before  # type: ignore[arg-type]
