"""``torchrun --nproc_per_node 2 -m harness run`` on CPU (gloo) equals a single-process run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_resume import probe_task, subprocess_env
from test_run import task_file

from harness.cli import main
from harness.featurestore import FeatureStore
from harness.result import read_result


def _single_thread_run(argv: list[str]) -> int:
    """In-process, with one intra-op thread like each torchrun rank (so features are bit-identical)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(argv)
    finally:
        torch.set_num_threads(threads)


def _features(cache: Path) -> dict[str, np.ndarray]:
    """Every stored set's features keyed by (set id), rows sorted by sample id."""
    out = {}
    for fset in FeatureStore.default(cache).sets():
        ids = sorted(fset.sample_ids())
        found, values = fset.read(ids)
        assert found.all()
        out[fset.id] = values
    return out


def test_two_gloo_ranks_equal_one_process(tiny_openclip: dict, image_folder: Path, tmp_path: Path) -> None:
    tasks = [str(probe_task(tmp_path / "tasks", train=30, test=14)), str(task_file(tmp_path / "tasks", image_folder))]
    common = ["run", "--quiet", "--model", tiny_openclip["name"], "--task", tasks[0], "--task", tasks[1],
              "--shard-size", "4"]
    env = subprocess_env(tiny_openclip, tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "-m", "harness",
         *common, "-p", "tinyclip", "--cache-dir", str(tmp_path / "cache2"), "--output-dir", str(tmp_path / "out2")],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(proc.stdout.strip().splitlines()) == 2  # rank 0 prints the two result paths; rank 1 nothing
    assert _single_thread_run([*common, "--cache-dir", str(tmp_path / "cache1"), "--output-dir", str(tmp_path / "out1")]) == 0

    for name in ("tiny_scenes_probe", "colours_zeroshot"):
        [single] = [read_result(p) for p in (tmp_path / "out1").rglob(f"{name}-*.json")]
        [multi] = [read_result(p) for p in (tmp_path / "out2").rglob(f"{name}-*.json")]
        assert multi["metrics"] == single["metrics"], name
        assert multi["execution"]["world_size"] == 2 and single["execution"]["world_size"] == 1
        assert multi["n_samples"] == single["n_samples"] and multi["cache"] == single["cache"]
    assert len(list((tmp_path / "out2").rglob("*.json"))) == 2

    one, two = _features(tmp_path / "cache1"), _features(tmp_path / "cache2")
    assert one.keys() == two.keys() and len(one) == 4  # train, test, image folder, texts
    for key in one:
        np.testing.assert_array_equal(two[key], one[key])
    ranks = {entry["rank"] for fset in FeatureStore.default(tmp_path / "cache2").sets() for entry in fset.entries()}
    assert ranks == {0, 1}  # both ranks extracted (and wrote) their share


def test_several_models_share_one_process_group(tmp_path: Path) -> None:
    """``--model A --model B`` under torchrun: the group is joined once, both results written."""
    models = ["torchvision:mobilenet_v3_small/random", "torchvision:resnet18/random"]
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "-m", "harness",
         "run", "--quiet", "--model", models[0], "--model", models[1],
         "--task", str(probe_task(tmp_path / "tasks", train=12, test=8)),
         "--cache-dir", str(tmp_path / "cache"), "--output-dir", str(tmp_path / "out")],
        env={**os.environ, "OMP_NUM_THREADS": "1", "HARNESS_DIST_TIMEOUT_S": "120"},
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    docs = [read_result(Path(p)) for p in proc.stdout.split()]
    assert [d["model"]["name"] for d in docs] == models and all(d["execution"]["world_size"] == 2 for d in docs)


@pytest.mark.parametrize("world", ["1"])
def test_no_torchrun_environment_means_one_process(world: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.processgroup import ProcessGroup

    monkeypatch.setenv("WORLD_SIZE", world)
    group = ProcessGroup.from_env("cpu")
    assert group.main and group.world_size == 1 and group.broadcast(3) == 3 and group.gather(4) == [4]
    assert group.device("cuda") == "cuda" and ProcessGroup(rank=1, world_size=2, local_rank=1).device("cuda") == "cuda:1"
