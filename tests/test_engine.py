"""Execution engine: devices, workers, auto batch size, out-of-memory splitting, token outputs,
the determinism check and the v2 result record."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_featurestore import IDENTITY, Recorder, rows
from test_leaderboard import BASE, write_results
from test_run import assert_clean_failure, task_file

from harness.batchsize import DEFAULT_CPU, BatchSizeMemo, find_largest, resolve_auto
from harness.cli import main
from harness.dataset import Split
from harness.errors import DataError, IncompatibleError
from harness.features import Features
from harness.featurestore import FeatureStore
from harness.hardware import DeviceError, resolve_device
from harness.leaderboard import collect, render
from harness.result import read_result, validate_result
from harness.runner import cost_rates


class Fussy(Recorder):
    """Runs out of memory for batches larger than ``limit``; has token-level outputs."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.sizes = limit, []

    def encode_image(self, pixels: Any) -> Any:
        self.sizes.append(len(pixels))
        if len(pixels) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (pretend)")
        return super().encode_image(pixels)

    def encode_image_tokens(self, pixels: Any, layer: int | None) -> Any:
        return pixels.flatten(2).transpose(1, 2) * (layer or 1)  # (N, H*W, C)


def test_find_largest_halves_on_oom() -> None:
    tried = []

    def trial(size: int) -> None:
        tried.append(size)
        if size > 12:
            raise torch.OutOfMemoryError("pretend")

    assert find_largest(trial, start=64) == 8 and tried == [64, 32, 16, 8]
    with pytest.raises(torch.OutOfMemoryError):
        find_largest(lambda size: (_ for _ in ()).throw(torch.OutOfMemoryError("always")), start=4)


def test_auto_batch_size_is_probed_once_and_remembered(tmp_path: Path) -> None:
    encoder = Fussy(limit=100)
    features = Features(encoder, batch_size="auto")
    sample = torch.zeros(3, 4, 4)
    memo = BatchSizeMemo(tmp_path / "batchsize.json")
    assert resolve_auto(features, sample, encoder.encode_image, memo=memo) == DEFAULT_CPU  # CPU: no probing
    assert resolve_auto(features, sample, encoder.encode_image, probe=True, memo=memo) == 64
    assert encoder.sizes == [1024, 512, 256, 128, 64]
    [(key, value)] = json.loads(memo.path.read_text()).items()
    assert value == 64 and '"shape":[3,4,4]' in key and '"device":"cpu"' in key and '"dtype":"fp32"' in key
    assert resolve_auto(features, sample, encoder.encode_image, probe=True, memo=memo) == 64
    assert encoder.sizes == [1024, 512, 256, 128, 64]  # remembered: no second probe
    assert resolve_auto(Features(encoder, dtype="bf16"), sample, encoder.encode_image, probe=True, memo=memo) == 64
    assert len(json.loads(memo.path.read_text())) == 2  # another dtype is another entry


def test_out_of_memory_mid_run_splits_the_batch(caplog: pytest.LogCaptureFixture) -> None:
    data = Split(rows(10), IDENTITY)
    expected = Features(Recorder(), batch_size=8).images(data, "image")
    fussy = Fussy(limit=3)
    np.testing.assert_array_equal(Features(fussy, batch_size=8).images(data, "image"), expected)
    assert fussy.sizes[:4] == [8, 4, 2, 2] and "splitting batches" in caplog.text


def test_workers_give_identical_features_and_one_line_decode_errors() -> None:
    data = rows(12)
    serial = Features(Recorder(), batch_size=5, num_workers=0).images(data, "image")
    parallel = Features(Recorder(), batch_size=5, num_workers=2).images(data, "image")
    np.testing.assert_array_equal(parallel, serial)
    broken = data.cast_column("image", __import__("datasets").Image(decode=False))
    broken = broken.map(lambda row, i: {"image": {"bytes": b"nope" if i == 7 else row["image"]["bytes"], "path": None}},
                        with_indices=True)
    broken = broken.cast_column("image", __import__("datasets").Image())
    with pytest.raises(DataError, match=r"^task t: row 7: cannot decode image in column 'image'") as info:
        Features(Recorder(), batch_size=5, num_workers=2).images(broken, "image", where="task t")
    assert "\n" not in str(info.value)


def test_token_outputs_are_cached_separately(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    data = Split(rows(5), IDENTITY)
    features = Features(Fussy(limit=99), store=store, batch_size=2)
    pooled = features.images(data, "image")
    tokens = features.images(data, "image", output="tokens", layer=-2)
    assert pooled.shape == (5, 4) and tokens.shape == (5, 16, 3)
    again = Features(Fussy(limit=99), store=store, batch_size=2)
    np.testing.assert_array_equal(again.images(data, "image", output="tokens", layer=-2), tokens)
    assert again.counters.image_hits == 5 and len(store.sets()) == 2
    assert {s.key["output"] for s in store.sets()} == {"pooled", "tokens@-2"}
    with pytest.raises(IncompatibleError, match="no token-level outputs"):
        Features(Recorder()).images(data, "image", output="tokens")


def test_bf16_autocast_on_cpu_is_close_to_fp32() -> None:
    class Linear(Recorder):
        embed_dim = 8

        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.layer = torch.nn.Linear(48, 8)

        def encode_image(self, pixels: Any) -> Any:
            return self.layer(pixels.flatten(1))

    encoder = Linear()
    full = Features(encoder, batch_size=4).images(rows(6), "image")
    half = Features(encoder, batch_size=4, dtype="bf16").images(rows(6), "image")
    assert not np.array_equal(full, half) and np.allclose(full, half, atol=0.05)


def test_unavailable_or_malformed_device_is_one_line(full_run: dict, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(DeviceError, match="expected auto, cpu, cuda, cuda:N or mps"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        code = main(["run", "--quiet", "--model", "torchvision:resnet18/random", "--task", "scenes_shapes_linear_probe",
                     "--device", "cuda:1", "--output-dir", str(tmp_path)])
        assert_clean_failure(code, capsys.readouterr().err, tmp_path, "--device cuda:1: CUDA is not available")


@pytest.fixture(scope="module")
def full_run(tiny_openclip: dict, image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One run with --check-determinism and --batch-size auto, with the v2 record."""
    root = tmp_path_factory.mktemp("engine")
    spec = task_file(root / "tasks", image_folder)
    out = root / "out"
    assert main(["run", "--quiet", "--model", tiny_openclip["name"], "--task", str(spec), "--output-dir", str(out),
                 "--cache-dir", str(root / "cache"), "--check-determinism", "--batch-size", "auto",
                 "--num-workers", "0"]) == 0
    path = next(out.rglob("*.json"))
    return {"spec": spec, "path": path, "doc": read_result(path), "root": root}


def test_v2_result_records_execution_cache_and_cost(full_run: dict) -> None:
    doc = full_run["doc"]
    assert doc["schema_version"] == 5
    assert doc["model"]["capabilities"] == ["image_embed", "image_tokens", "text_embed"]
    assert doc["model"]["code_fingerprint"].startswith("sha256:")
    execution = doc["execution"]
    assert execution["dtype_mode"] == "autocast"
    assert execution["batch_size"] == DEFAULT_CPU and execution["batch_size_requested"] == "auto"
    assert execution["world_size"] == 1 and execution["num_workers"] == 0
    record = execution["determinism"]
    assert record["tf32_matmul"] is False and record["cudnn_deterministic"] is False and record["channels_last"] is False
    assert record["attention"] != "none"  # the tiny ViT and text transformer have attention layers
    assert record["check"]["batch_sizes"] == [32, 16] and 0 <= record["check"]["max_abs_diff"] < 1e-4
    assert doc["cache"] == {"enabled": True, "image_hits": 0, "image_misses": 12, "text_hits": 0, "text_misses": 6,
                            "response_hits": 0, "response_misses": 0}
    cost = doc["cost"]
    assert set(cost["phases_s"]) == {"load_model", "load_data", "extract", "generate", "task", "metrics"}
    assert cost["peak_rss_mb"] > 0 and cost["peak_cuda_mb"] is None and cost["images_per_s"] > 0
    assert cost["texts_per_s"] > 0
    assert cost["process_s"] >= cost["wall_time_s"]  # the whole process: start-up, imports, earlier tests


def test_cost_rates_are_each_over_their_own_time() -> None:
    """Images over the time in ``images``, texts over the time in ``texts`` (not their sum); the
    slowest rank's time, all ranks' counts."""
    zero = {"images": 0, "texts": 0, "image_seconds": 0.0, "text_seconds": 0.0, "gen_requests": 0, "gen_tokens": 0,
            "gen_seconds": 0.0}
    one = {**zero, "images": 12, "image_seconds": 3.0, "texts": 6, "text_seconds": 0.5, "seconds": 3.5}
    assert cost_rates([one]) == {"images_per_s": 4.0, "texts_per_s": 12.0, "requests_per_s": None, "tokens_per_s": None}
    other = {**zero, "images": 8, "image_seconds": 4.0, "gen_requests": 3, "gen_tokens": 30, "gen_seconds": 2.0}
    assert cost_rates([one, other]) == {"images_per_s": 5.0, "texts_per_s": 12.0, "requests_per_s": 1.5,
                                        "tokens_per_s": 15.0}
    assert cost_rates([zero]) == dict.fromkeys(["images_per_s", "texts_per_s", "requests_per_s", "tokens_per_s"])


def test_counters_time_images_and_texts_apart() -> None:
    class SlowTexts(Recorder):
        def encode_text(self, texts: Any) -> Any:
            time.sleep(0.4)
            return super().encode_text(texts)

    features = Features(SlowTexts(), batch_size=16, num_workers=0)
    features.images(Split(rows(), IDENTITY), "image")
    features.texts(["a cat", "a dog"])
    counters = features.counters
    assert counters.text_seconds >= 0.4 > counters.image_seconds > 0
    assert counters.seconds == pytest.approx(counters.image_seconds + counters.text_seconds)
    rates = cost_rates([{**asdict(counters), "gen_requests": 0, "gen_tokens": 0, "gen_seconds": 0.0}])
    assert rates["texts_per_s"] == round(2 / counters.text_seconds, 3)
    assert rates["images_per_s"] == round(10 / counters.image_seconds, 3)


def test_process_seconds_count_from_process_start() -> None:
    """Time spent before harness is imported (interpreter start-up, other imports) is counted."""
    code = ("import time; time.sleep(0.5)\nfrom harness.hardware import process_seconds\n"
            "import harness; print(process_seconds(), time.perf_counter() - harness._IMPORTED_AT)")
    age, since_import = map(float, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                  check=True).stdout.split())
    assert 0.5 <= age < 30 and since_import < age


def test_determinism_check_ignores_the_cache(full_run: dict, tiny_openclip: dict, capsys: pytest.CaptureFixture) -> None:
    root = full_run["root"]
    assert main(["run", "--quiet", "--model", tiny_openclip["name"], "--task", str(full_run["spec"]),
                 "--output-dir", str(root / "again"), "--cache-dir", str(root / "cache"), "--check-determinism",
                 "--batch-size", "4"]) == 0
    err = capsys.readouterr().err
    assert "determinism check: largest per-sample |difference| between batch sizes 4 and 2:" in err
    doc = read_result(next((root / "again").rglob("*.json")))
    assert doc["cache"]["image_hits"] == 0 and doc["cache"]["image_misses"] == 12
    assert doc["execution"]["determinism"]["check"]["batch_sizes"] == [4, 2]


def test_v1_results_still_load_and_render_beside_v2(full_run: dict, tmp_path: Path) -> None:
    v1 = copy.deepcopy(BASE)
    validate_result(v1)
    v2 = copy.deepcopy(full_run["doc"])
    v2["model"]["name"] = "newer"
    write_results(tmp_path, [v1, v2])
    text = render(collect(tmp_path))
    assert "newer" in text and BASE["model"]["name"].split(":")[0] in text
    broken = copy.deepcopy(v2)
    broken["execution"].pop("determinism")
    with pytest.raises(Exception, match="'determinism' is a required property"):
        validate_result(broken)


def test_second_task_on_the_same_images_reuses_features(tiny_openclip: dict, image_folder: Path, tmp_path: Path) -> None:
    first = task_file(tmp_path / "tasks", image_folder, name="colours_a")
    second = task_file(tmp_path / "tasks", image_folder, name="colours_b", metrics=["accuracy"])
    assert main(["run", "--quiet", "--model", tiny_openclip["name"], "--task", str(first), "--task", str(second),
                 "--cache-dir", str(tmp_path / "cache"), "--output-dir", str(tmp_path / "out")]) == 0
    a, b = (read_result(next((tmp_path / "out").rglob(f"colours_{x}-*.json"))) for x in "ab")
    assert a["cache"]["image_misses"] == 12 and b["cache"] == {**b["cache"], "image_hits": 12, "image_misses": 0,
                                                               "text_hits": 6, "text_misses": 0}
    assert a["metrics"]["accuracy"] == b["metrics"]["accuracy"]


def test_unwritable_cache_is_one_line(full_run: dict, tiny_openclip: dict, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    code = main(["run", "--quiet", "--model", tiny_openclip["name"], "--task", str(full_run["spec"]),
                 "--cache-dir", str(blocker), "--output-dir", str(tmp_path / "out")])
    assert_clean_failure(code, capsys.readouterr().err, tmp_path / "out", "feature store: cannot write to")


def test_auto_batch_size_is_remembered_under_the_runs_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "default"))
    encoder = Fussy(limit=100)
    features = Features(encoder, batch_size="auto", cache_dir=tmp_path / "mine")
    assert resolve_auto(features, torch.zeros(3, 4, 4), encoder.encode_image, probe=True) == 64
    assert (tmp_path / "mine" / "batchsize.json").exists() and not (tmp_path / "default").exists()


def test_the_allocator_is_tuned_unless_turned_off() -> None:
    code = "import harness.allocator as a; print(a.tune())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    tuned = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip()
    off = subprocess.run([sys.executable, "-c", code], env={**env, "HARNESS_MALLOC_TUNING": "0"},
                         capture_output=True, text=True).stdout.strip()
    mine = subprocess.run([sys.executable, "-c", code], env={**env, "MALLOC_TOP_PAD_": "0"},
                          capture_output=True, text=True).stdout.strip()
    assert tuned == "glibc-tuned" and off == "default (HARNESS_MALLOC_TUNING=0)" and mine.startswith("default (MALLOC_")


def test_auto_workers_follow_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness import imageloader

    for cpus, device, expected in ((2, "cpu", 0), (1, "cpu", 0), (3, "cpu", 2), (16, "cpu", 4), (2, "cuda", 2),
                                   (16, "cuda", 8)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cpus: set(range(n)))
        assert imageloader.auto_workers(1000, device) == expected, (cpus, device)
    assert imageloader.auto_workers(100, "cuda") == 0  # small jobs decode in the main process
