"""Benchmark: the whole ``harness run`` process, cold cache against warm cache.

    .venv/bin/python bench/warm_cold.py [--model torchvision:mobilenet_v2]
        [--task scenes_shapes_linear_probe] [--pairs 3] [--harness .venv/bin/harness]

Each pair runs ``harness run --quiet`` twice as subprocesses, back to back: cold (a fresh, empty
``--cache-dir``: the generated dataset, every feature and everything else the cache holds is
made again) and warm (the same command on that cache). The wall time is measured around the
subprocess, so interpreter start-up, imports, plugin loading and writing the result are in it.
Prints each pair, the medians and the median of the per-pair warm / cold ratios (issue 14's goal:
<= 0.10), and where the warm run's time goes, from its result's ``cost``:

* start-up + imports + planning: ``process_s - wall_time_s`` (everything before the task's clock
  starts: the interpreter, ``import torch``, plugins, the plan);
* load_model (building the model and hashing its weights for the feature-store key), load_data
  (the dataset, checked against its sha256 records), extract (cache reads), task (the kind's own
  work: fitting the probe), metrics;
* exit: the subprocess's wall time less ``process_s`` (writing the result, interpreter shutdown).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_once(args: argparse.Namespace, cache: Path, out: Path) -> dict:
    """One ``harness run`` subprocess: its wall time and its result's cost."""
    command = [args.harness, "run", "--quiet", "--model", args.model, "--task", args.task,
               "--output-dir", str(out), "--cache-dir", str(cache)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    (path,) = [p for p in out.rglob("*.json")]
    doc = json.loads(path.read_text())
    return {"wall": wall, "cost": doc["cost"], "cache": doc["cache"], "metrics": doc["metrics"]}


def breakdown(run: dict) -> dict[str, float]:
    """Where one run's time went (see the module docstring)."""
    cost = run["cost"]
    parts = {"startup+imports": cost["process_s"] - cost["wall_time_s"]}
    parts.update({k: v for k, v in cost["phases_s"].items() if k != "generate"})
    parts["exit"] = run["wall"] - cost["process_s"]
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="torchvision:mobilenet_v2")
    parser.add_argument("--task", default="scenes_shapes_linear_probe")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--harness", default=str(ROOT / ".venv" / "bin" / "harness"))
    args = parser.parse_args()
    print(f"bench/warm_cold.py: {args.model} on {args.task}, {args.pairs} pairs (cold: fresh --cache-dir)")
    pairs = []
    for i in range(args.pairs):
        with tempfile.TemporaryDirectory(prefix="harness-warm-cold-") as tmp:
            root = Path(tmp)
            cold = run_once(args, root / "cache", root / "cold")
            warm = run_once(args, root / "cache", root / "warm")
        same = cold["metrics"] == warm["metrics"]
        hits = warm["cache"]["image_hits"], warm["cache"]["image_hits"] + warm["cache"]["image_misses"]
        pairs.append((cold, warm))
        print(f"  pair {i + 1}: cold {cold['wall']:.2f} s, warm {warm['wall']:.2f} s, warm/cold "
              f"{warm['wall'] / cold['wall']:.3f} (warm image hits {hits[0]}/{hits[1]}; metrics identical: {same})")
    colds, warms = [c["wall"] for c, _ in pairs], [w["wall"] for _, w in pairs]
    ratio = statistics.median(w["wall"] / c["wall"] for c, w in pairs)
    print(f"median cold {statistics.median(colds):.2f} s, median warm {statistics.median(warms):.2f} s, "
          f"median warm/cold {ratio:.3f} (goal <= 0.10)")
    for label, runs in (("warm", [w for _, w in pairs]), ("cold", [c for c, _ in pairs])):
        parts = [breakdown(r) for r in runs]
        medians = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
        print(f"{label} run, median seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in medians.items()))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
