"""The content-addressed feature store: keys, hits and misses, corruption, concurrent writers, `harness cache`."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import warnings
from pathlib import Path
from typing import Any, Sequence

import datasets
import numpy as np
import pytest
from PIL import Image

from harness.cli import main
from harness.dataset import Split
from harness.features import Features
from harness.featurestore import FeatureStore, text_id
from harness.result import read_result

from test_run import task_file


class Recorder:
    """A tiny deterministic encoder that counts what it embeds; ``scale`` stands for its weights."""

    embed_dim = 4

    def __init__(self, scale: float = 1.0, preprocess_fingerprint: str | None = None) -> None:
        self.scale, self.images, self.texts = scale, 0, 0
        if preprocess_fingerprint:
            self.preprocess_fingerprint = preprocess_fingerprint

    def preprocess(self, image: Image.Image) -> Any:
        import torch

        return torch.tensor(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)

    def encode_image(self, pixels: Any) -> Any:
        import torch

        self.images += len(pixels)
        mean = pixels.mean(dim=(2, 3))
        return self.scale * torch.cat([mean, mean.sum(1, keepdim=True)], dim=1)

    def encode_text(self, texts: Sequence[str]) -> Any:
        import torch

        self.texts += len(texts)
        return torch.tensor([[len(t), t.count("a"), self.scale, 1.0] for t in texts], dtype=torch.float32)

    def provenance(self) -> dict[str, Any]:
        return {"revision": None, "fingerprint": f"recorder-{self.scale}", "n_parameters": 0}


def rows(n: int = 10, seed: int = 0) -> datasets.Dataset:
    """Random 4x4 images in two columns (``image`` and ``other``) and a label."""
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)) for _ in range(2 * n)]
    return datasets.Dataset.from_dict(
        {"image": images[:n], "other": images[n:], "label": list(range(n))},
        features=datasets.Features({"image": datasets.Image(), "other": datasets.Image(), "label": datasets.Value("int64")}))


IDENTITY = {"source": "path", "id": "/data/x", "revision": None, "fingerprint": "f0", "split": "test"}


def features(store: FeatureStore, encoder: Recorder, **kwargs: Any) -> Features:
    return Features(encoder, store=store, batch_size=3, shard_size=4, **kwargs)


@pytest.fixture()
def store(tmp_path: Path) -> FeatureStore:
    return FeatureStore(tmp_path / "features")


def test_set_roundtrip_partial_and_duplicate_ids(store: FeatureStore) -> None:
    fset = store.open({"name": "demo"})
    assert fset.read(["a"])[1] is None and not fset.read(["a"])[0].any()
    assert fset.write(["a", "b"], np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert not fset.write(["b", "a"], np.zeros((2, 2)))  # already stored: nothing written
    assert fset.write(["c"], np.array([[5.0, 6.0]]))
    found, values = fset.read(["c", "x", "a", "c"])
    assert found.tolist() == [True, False, True, True]
    assert values[[0, 2, 3]].tolist() == [[5, 6], [1, 2], [5, 6]]
    assert fset.sample_ids() == {"a", "b", "c"} and len(fset.entries()) == 2
    assert json.loads((fset.path / "key.json").read_text())["name"] == "demo"
    assert store.open({"name": "demo"}).id == fset.id != store.open({"name": "demo2"}).id
    assert [s.id for s in store.sets()] == [fset.id] and store.find(fset.id[:6]).id == fset.id


def test_hit_miss_and_subsets_keep_original_row_ids(store: FeatureStore) -> None:
    data = Split(rows(), IDENTITY)
    encoder = Recorder()
    first = features(store, encoder).images(data, "image")
    assert encoder.images == 10 and first.shape == (10, 4)
    again = features(store, encoder)
    np.testing.assert_array_equal(again.images(data, "image"), first)
    assert encoder.images == 10 and again.counters.image_hits == 10 and again.counters.images == 0
    subset = data.select([7, 2])
    assert subset.sample_ids() == ["#7", "#2"] and subset.select([1]).sample_ids() == ["#2"]
    np.testing.assert_array_equal(features(store, encoder).images(subset, "image"), first[[7, 2]])
    assert encoder.images == 10


def test_id_column_names_samples_unless_duplicated() -> None:
    data = rows(3).add_column("id", ["x", "y", "z"])
    assert Split(data, IDENTITY).select([2, 0]).sample_ids() == ["z", "x"]
    dup = rows(3).add_column("id", ["x", "x", "z"])
    assert Split(dup, IDENTITY).sample_ids() == ["#0", "#1", "#2"]


@pytest.mark.parametrize("change", ["weights", "preprocessing", "data", "dtype", "column"])
def test_key_changes_invalidate(store: FeatureStore, change: str) -> None:
    data = rows()
    features(store, Recorder(preprocess_fingerprint="pp1")).images(Split(data, IDENTITY), "image")
    encoder = Recorder(scale=2.0 if change == "weights" else 1.0,
                       preprocess_fingerprint="pp2" if change == "preprocessing" else "pp1")
    identity = {**IDENTITY, "fingerprint": "f1"} if change == "data" else IDENTITY
    extractor = features(store, encoder, dtype="bf16" if change == "dtype" else "fp32")
    extractor.images(Split(data, identity), "other" if change == "column" else "image")
    assert extractor.counters.image_hits == 0 and encoder.images == 10
    same = features(store, Recorder(preprocess_fingerprint="pp1"))
    same.images(Split(data, IDENTITY), "image")
    assert same.counters.image_hits == 10


def test_uncached_without_identity_or_store(store: FeatureStore) -> None:
    encoder = Recorder()
    features(store, encoder).images(rows(), "image")  # a bare Dataset: no identity, no store
    Features(encoder).images(Split(rows(), IDENTITY), "image")
    assert encoder.images == 20 and not store.sets()


def test_texts_are_cached_by_content(store: FeatureStore) -> None:
    encoder = Recorder()
    first = features(store, encoder).texts(["a cat", "a dog", "a cat"])
    assert first[0].tolist() == first[2].tolist() == [5, 2, 1, 1]
    again = features(store, encoder)
    np.testing.assert_array_equal(again.texts(["a dog", "banana"]), [[5, 1, 1, 1], [6, 3, 1, 1]])
    assert again.counters.text_hits == 1 and again.counters.texts == 1
    fset = store.open({"modality": "text", "encoder": again._encoder_key(), "output": "pooled", "dtype": "fp32"})
    assert text_id("banana") in fset.sample_ids()


def test_corrupt_shard_is_detected_dropped_and_recomputed(store: FeatureStore) -> None:
    data = Split(rows(), IDENTITY)
    encoder = Recorder()
    first = features(store, encoder).images(data, "image")
    [fset] = store.sets()
    entries = fset.entries()
    assert len(entries) == 3  # shards of 4, 4 and 2 samples
    shard = fset.path / entries[1]["file"]
    blob = bytearray(shard.read_bytes())
    blob[-3] ^= 0xFF
    shard.write_bytes(bytes(blob))
    with pytest.warns(UserWarning, match="sha256 mismatch"):
        again = features(store, encoder).images(data, "image")
    np.testing.assert_array_equal(again, first)
    assert encoder.images == 14  # only the corrupt shard's 4 samples were recomputed
    # recomputed bit-identically: the content-addressed shard is back under its name, intact
    assert hashlib.sha256(shard.read_bytes()).hexdigest() == shard.stem and len(fset.entries()) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        features(store, encoder).images(data, "image")
    assert encoder.images == 14


def test_missing_shard_and_truncated_manifest_line(store: FeatureStore) -> None:
    fset = store.open({"name": "t"})
    fset.write(["a"], np.ones((1, 2)))
    fset.write(["b"], np.ones((1, 2)) * 2)
    (fset.path / fset.entries()[0]["file"]).unlink()
    with open(fset.manifest, "a") as handle:
        handle.write('{"file": "half a line')  # a writer killed mid-append
    with pytest.warns(UserWarning, match="unreadable"):
        found, values = fset.read(["a", "b"])
    assert found.tolist() == [False, True] and values[1].tolist() == [2, 2]
    fset.write(["c"], np.ones((1, 2)) * 3)
    assert fset.read(["b", "c"])[0].all() and [e["ids"] for e in fset.entries()] == [["b"], ["c"]]


def _writer(root: str, worker: int, start_together: Any) -> None:
    fset = FeatureStore(root).open({"name": "concurrent"})
    start_together.wait()
    for start in range(0, 40, 5):  # every worker writes every shard (values differ by worker): maximal overlap
        ids = [f"s{i}" for i in range(start, start + 5)]
        fset.write(ids, np.arange(start, start + 5, dtype=np.float32)[:, None] * np.ones((1, 3)) + worker / 1e3)


def test_concurrent_writers_leave_a_valid_store(store: FeatureStore) -> None:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(4)
    workers = [context.Process(target=_writer, args=(str(store.root), w, barrier)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    fset = store.open({"name": "concurrent"})
    assert fset.verify() == (8, 0, 0)  # one shard per id group, each checksum valid, no orphans
    found, values = fset.read([f"s{i}" for i in range(40)])
    assert found.all() and np.allclose(values[:, 0], np.arange(40), atol=0.01)
    assert sorted(p.name for p in fset.path.iterdir() if p.suffix != ".safetensors") == [".lock", "key.json", "manifest.jsonl"]
    assert len(list(fset.path.glob("*.safetensors"))) == 8  # the losers' shards were removed, no temp files left


def test_cache_cli(tiny_openclip: dict, image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = task_file(tmp_path / "tasks", image_folder)
    cache = tmp_path / "cache"
    argv = ["run", "--quiet", "--model", tiny_openclip["name"], "--task", str(spec), "--cache-dir", str(cache)]
    assert main([*argv, "--output-dir", str(tmp_path / "a")]) == 0
    assert main([*argv, "--output-dir", str(tmp_path / "b")]) == 0
    docs = [read_result(next((tmp_path / d).rglob("*.json"))) for d in "ab"]
    none = {"response_hits": 0, "response_misses": 0}
    assert docs[0]["cache"] == {"enabled": True, "image_hits": 0, "image_misses": 12, "text_hits": 0, "text_misses": 6, **none}
    assert docs[1]["cache"] == {"enabled": True, "image_hits": 12, "image_misses": 0, "text_hits": 6, "text_misses": 0, **none}
    assert docs[0]["metrics"] == docs[1]["metrics"] and docs[1]["cost"]["images_per_s"] is None
    capsys.readouterr()
    assert main(["cache", "ls", "--cache-dir", str(cache)]) == 0
    listing = capsys.readouterr().out.strip().splitlines()
    assert len(listing) == 2 and any("\timage\t12 samples\t1 shards\t" in line for line in listing)
    assert any("path:" in line and ":test[image]\tpooled\tfp32" in line for line in listing)
    assert main(["cache", "du", "--cache-dir", str(cache)]) == 0
    assert "total (2 feature sets in" in capsys.readouterr().out
    assert main(["cache", "verify", "--cache-dir", str(cache)]) == 0
    image_set = listing[[i for i, line in enumerate(listing) if "\timage\t" in line][0]].split("\t")[0]
    assert main(["cache", "rm", image_set, "--cache-dir", str(cache)]) == 0
    assert main(["cache", "rm", "--cache-dir", str(cache)]) == 4
    assert main(["cache", "rm", "zzzz", "--cache-dir", str(cache)]) == 2
    assert "no feature set" in capsys.readouterr().err
    assert main([*argv, "--output-dir", str(tmp_path / "c"), "--no-cache"]) == 0
    doc = read_result(next((tmp_path / "c").rglob("*.json")))
    assert doc["cache"]["enabled"] is False and doc["metrics"] == docs[0]["metrics"]
    assert main(["cache", "rm", "--all", "--cache-dir", str(cache)]) == 0
    assert not FeatureStore.default(cache).sets()
