"""End to end through the real CLI: tiny open_clip checkpoint, local image folder, result files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.cli import main
from harness.result import read_result

TEMPLATES = ["a photo of a {c}.", "a {c} square."]


def task_file(folder: Path, data: Path | str, name: str = "colours_zeroshot", **extra: object) -> Path:
    spec = {
        "name": name, "version": 1, "kind": "zeroshot_classification",
        "dataset": {"path": str(data), "split": "test"},
        "columns": {"image": "image", "label": "label"},
        "params": {"templates": TEMPLATES},
        "metrics": ["accuracy", "top5_accuracy", "mean_per_class_recall"], "main_score": "accuracy", **extra,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(["run", "--quiet", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def full_run(tiny_openclip: dict, image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("run")
    spec = task_file(root / "tasks", image_folder)
    out = root / "results"
    assert main(["run", "--quiet", "--model", tiny_openclip["name"], "--task", str(spec),
                 "--output-dir", str(out), "--batch-size", "5", "--seed", "1", "--cache-dir", str(root / "cache")]) == 0
    [path] = list(out.rglob("*.json"))
    return {"spec": spec, "out": out, "path": path, "doc": read_result(path)}


def test_result_records_provenance(full_run: dict, tiny_openclip: dict) -> None:
    doc = full_run["doc"]
    assert doc["model"]["name"] == tiny_openclip["name"] and doc["model"]["plugin"] == "openclip"
    assert doc["model"]["n_parameters"] > 0 and len(doc["model"]["fingerprint"]) == 64
    assert doc["task"] == {**doc["task"], "name": "colours_zeroshot", "version": 1, "plugin": "(file)"}
    assert doc["dataset"]["source"] == "path" and doc["dataset"]["split"] == "test"
    assert doc["n_samples"] == {"total": 12, "evaluated": 12, "partial": False}
    assert doc["execution"]["device"] == "cpu" and doc["execution"]["batch_size"] == 5 and doc["seed"] == 1
    assert doc["metrics"]["top5_accuracy"]["value"] is None  # 3 classes
    assert doc["cost"]["images_per_s"] > 0
    assert {p["name"] for p in doc["plugins"]} >= {"openclip", "zeroshot", "metrics"}


def test_zeroshot_equals_direct_open_clip_numpy(full_run: dict, tiny_openclip: dict, image_folder: Path) -> None:
    import open_clip
    import torch
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms(tiny_openclip["arch"], pretrained=str(tiny_openclip["checkpoint"]))
    tokenizer = open_clip.get_tokenizer(tiny_openclip["arch"])
    model.eval()
    classes = sorted(p.name for p in (image_folder / "test").iterdir())
    files = [(f, i) for i, c in enumerate(classes) for f in sorted((image_folder / "test" / c).iterdir())]
    with torch.no_grad():
        images = model.encode_image(torch.stack([preprocess(Image.open(f).convert("RGB")) for f, _ in files])).numpy()
        weights = []
        for c in classes:
            t = model.encode_text(tokenizer([tpl.format(c=c) for tpl in TEMPLATES])).numpy().astype(np.float64)
            t /= np.linalg.norm(t, axis=1, keepdims=True)
            mean = t.mean(0)
            weights.append(mean / np.linalg.norm(mean))
    images = images.astype(np.float64) / np.linalg.norm(images, axis=1, keepdims=True)
    pred = (100.0 * images @ np.stack(weights).T).argmax(1)
    labels = np.array([i for _, i in files])
    recall = np.mean([np.mean(pred[labels == k] == k) for k in range(len(classes))])
    metrics = full_run["doc"]["metrics"]
    assert metrics["accuracy"]["value"] == pytest.approx(np.mean(pred == labels), abs=1e-12)
    assert metrics["mean_per_class_recall"]["value"] == pytest.approx(recall, abs=1e-12)


def test_limit_marks_partial_and_leaderboard_shows_it(full_run: dict, tiny_openclip: dict, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "results"
    code, stdout, _ = run(capsys, "--model", tiny_openclip["name"], "--task", str(full_run["spec"]),
                          "--output-dir", str(out), "--limit", "5")
    assert code == 0
    doc = read_result(Path(stdout.strip()))
    assert doc["n_samples"] == {"total": 12, "evaluated": 5, "partial": True}
    board = tmp_path / "LEADERBOARD.md"
    assert main(["leaderboard", str(out), "-o", str(board)]) == 0
    text = board.read_text()
    assert "harness-tiny-clip" in text and "colours_zeroshot v1" in text and "†" in text


def assert_clean_failure(code: int, err: str, out_dir: Path, *needles: str) -> None:
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), err
    for needle in needles:
        assert needle in lines[0]
    assert not list(out_dir.rglob("*.json")) if out_dir.exists() else True


def test_unknown_model(full_run: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(capsys, "--model", "nosuch:model", "--task", str(full_run["spec"]), "--output-dir", str(tmp_path))
    assert_clean_failure(code, err, tmp_path, "unknown model 'nosuch:model'", "harness list models")


def test_unknown_task_suggests(tiny_openclip: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(capsys, "--model", tiny_openclip["name"], "--task", "scenes_shape_zeroshot",
                       "--output-dir", str(tmp_path))
    assert_clean_failure(code, err, tmp_path, "unknown task", "did you mean 'scenes_shapes_zeroshot'")


def test_malformed_yaml(tiny_openclip: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad_task.yaml"
    bad.write_text("name: bad_task\nmetrics: [accuracy\n")
    code, _, err = run(capsys, "--model", tiny_openclip["name"], "--task", str(bad), "--output-dir", str(tmp_path))
    assert_clean_failure(code, err, tmp_path, "bad_task.yaml: invalid YAML at line")


def test_missing_dataset_path(tiny_openclip: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = task_file(tmp_path, tmp_path / "nowhere")
    code, _, err = run(capsys, "--model", tiny_openclip["name"], "--task", str(spec), "--output-dir", str(tmp_path / "o"))
    assert_clean_failure(code, err, tmp_path / "o", "dataset path", "nowhere", "does not exist")


def test_corrupt_image_leaves_no_result(tiny_openclip: dict, image_folder: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(image_folder, data)
    (data / "test" / "green" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    spec = task_file(tmp_path, data)
    code, _, err = run(capsys, "--model", tiny_openclip["name"], "--task", str(spec), "--output-dir", str(tmp_path / "o"))
    assert_clean_failure(code, err, tmp_path / "o", "cannot decode image")


def test_incompatible_model_fails_before_loading(full_run: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(capsys, "--model", "torchvision:resnet18//no/such/weights.pth", "--task", str(full_run["spec"]),
                       "--output-dir", str(tmp_path))
    assert_clean_failure(code, err, tmp_path, "has capabilities ['image_embed'", "needs ['image_embed', 'text_embed']")


def test_missing_checkpoint(full_run: dict, tiny_openclip: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    name = f"openclip:{tiny_openclip['arch']}/{tmp_path / 'missing.pt'}"
    code, _, err = run(capsys, "--model", name, "--task", str(full_run["spec"]), "--output-dir", str(tmp_path))
    assert_clean_failure(code, err, tmp_path, "missing.pt")


def test_bad_cli_usage_is_one_line(capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "--model", "x"]) == 4
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert main(["run", "--model", "x", "--task", "y", "--batch-size", "0"]) == 4


def test_result_json_is_canonical(full_run: dict) -> None:
    text = full_run["path"].read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_plugin_flag_is_accepted_before_the_subcommand(capsys: pytest.CaptureFixture) -> None:
    assert main(["-p", "no:zeroshot", "list", "kinds"]) == 0
    kinds = capsys.readouterr().out
    assert "linear_probe" in kinds and "zeroshot_classification" not in kinds


def test_a_mapped_column_missing_from_the_dataset_fails_before_extraction(
        tiny_openclip: dict, image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = task_file(tmp_path, image_folder, columns={"image": "image", "label": "labl"})
    cache = tmp_path / "cache"
    code, _, err = run(capsys, "--model", tiny_openclip["name"], "--task", str(spec), "--output-dir", str(tmp_path / "o"),
                       "--cache-dir", str(cache))
    assert_clean_failure(code, err, tmp_path / "o", "['labl']", "which the dataset does not have")
    assert not (cache / "features").exists()  # nothing was extracted


def test_a_template_with_an_unknown_placeholder_fails_validate(image_folder: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    spec = task_file(tmp_path, image_folder, params={"templates": ["{c} {x}"]})
    assert main(["validate", str(spec)]) != 0
    assert "unknown placeholder(s) {x}" in capsys.readouterr().err
