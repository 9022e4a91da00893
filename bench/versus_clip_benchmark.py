"""Benchmark: a whole ``harness run`` process against a whole LAION CLIP_benchmark process, zero-shot
classification, on the same open_clip model and the same image files, class names and templates --
the wall time a user waits for, from the command to its exit.

    .venv/bin/python bench/versus_clip_benchmark.py [--arch ViT-B-32] [--n 500] [--size PX] [--pairs 3]
        [--batch-size 32] [--num-workers auto] [--task tasks/scenes_shapes_zeroshot.yaml] [--workdir DIR]

(``--arch ViT-S-32`` for a quicker check.) Needs ``clip-benchmark==1.6.2`` (the ``bench`` extra; the
script says how to install it and exits 2 without it).

Each of ``--pairs`` rounds runs three subprocesses, timed around the subprocess (interpreter start-up,
imports, loading, evaluation, writing the result and exit are all in it); odd rounds run
CLIP_benchmark first, even rounds last, so drifting load from other processes falls on both sides:

1. **CLIP_benchmark from scratch**: its real CLI, ``clip_benchmark.cli.main()`` with ``eval --dataset
   imagenet1k-unverified --dataset_root DATA --split test --task zeroshot_classification --model_type
   open_clip --model ARCH --pretrained CKPT --no_amp --batch_size B --num_workers W
   --custom_classname_file F --custom_template_file F --output F --quiet``: ``load_clip``, its open_clip
   transform, a ``DataLoader`` over torchvision's ``ImageFolder(DATA/val)`` (``imagenet1k-unverified``
   is its one plain image-folder dataset; our class names and templates replace ImageNet's through the
   two custom files), ``zero_shot_classifier``, ``run_classification``, its metrics, its result JSON.
   ``--no_amp`` (``--precision fp32``, the default): fp32, as harness by default; ``--precision bf16``
   keeps its default ``amp`` (on CPU: both towers under bfloat16 autocast) and gives harness ``--dtype
   bf16``, the same autocast. Its console script (``.venv/bin/clip_benchmark eval ...``) cannot run in
   this environment, so the command is ``python WORK/clip_benchmark_eval.py DUMP eval ...``: a driver
   that applies three shims and calls the CLI's ``main()`` unchanged -- harness's
   ``ensure_torchvision`` (PyPI's CUDA torchvision cannot be imported next to CPU torch without it;
   open_clip imports torchvision); an empty stand-in for ``requests`` when it is not installed (as
   here: ``cli`` imports it at the top, only other datasets' downloads use it; the stand-in saves
   CLIP_benchmark that import's time); ``accuracy`` with ``.item()`` for ``float(array of shape (1,))``,
   which NumPy 2 (2.4.6 here) refuses (LAION-AI/CLIP_benchmark#147) -- and wraps
   ``zero_shot_classifier`` and ``run_classification`` to note when its phases start and to write its
   logits, targets, class names and image paths to DUMP for the parity check (a few milliseconds).
2. **harness cold**: ``harness run --quiet --model openclip:ARCH/CKPT --task WORK/TASK.yaml --dtype fp32
   --batch-size B --num-workers W --cache-dir ROUND/cache --output-dir ROUND/cold`` with an empty
   ``--cache-dir`` and an empty ``HF_DATASETS_CACHE`` (the image folder is read by ``datasets``'
   ``imagefolder``, which caches its Arrow copy there): nothing cached. Issue 13's goal: harness cold /
   CLIP_benchmark <= 0.5.
3. **harness warm**: the same command on those filled caches. Issue 14's goal: harness warm /
   CLIP_benchmark from scratch <= 0.25.

A ratio is the median over rounds of the ratio of two measurements from one round. Subprocesses get
``HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1``; harness loads its plugins as a
user's run does.

Model: open_clip ``--arch`` with seeded random weights, written once as a checkpoint file by
``bench/extraction.py``'s ``random_weights`` and read by each side's own loader (harness's
``openclip:ARCH/PATH.pt``, CLIP_benchmark's ``load_clip("open_clip", ARCH, PATH)``), so loaders,
transforms and tokenizers are compared too. Random weights classify at chance; the point is
agreement and cost.

Data: the task spec's dataset (default ``tasks/scenes_shapes_zeroshot.yaml``: the procedural scenes,
test split, label column ``shape``) with ``n`` (and ``image_size``) overridden, written once (untimed)
as the scenes' own PNG bytes into ``WORK/data/val/<NN>-<class>/<id>.png`` -- the zero-padded index
keeps the spec's class order in both readers' sorted folder order -- with ``val/metadata.jsonl``
(``file_name``, ``id``, ``label``) so that ``datasets``' imagefolder gives harness the same ids and
labels. Class names are the spec's (``params.classnames`` or the label column's ClassLabel names),
templates its ``params.templates``; harness evaluates the task ``WORK/versus_cb_<task>.yaml`` over
that folder with both written inline. Every class needs at least one image (torchvision's
ImageFolder refuses empty class folders): a too small ``--n`` is refused.

Also printed: where each side's time goes (medians): CLIP_benchmark's from its driver's clock
(interpreter start-up, imports, loading model and data, text tower, image tower, metrics and write,
exit), harness's from its result's ``cost`` (as ``bench/warm_cold.py``).

Parity (untimed): CLIP_benchmark's ``acc1``, ``acc5`` and ``mean_per_class_recall`` against harness's
``accuracy``, ``top5_accuracy`` and ``mean_per_class_recall`` (last round); per sample, aligned by id,
the label and the top-1 and top-5 correctness in harness's records (``<stem>.samples.jsonl``; they
hold correctness, not the predicted class) against CLIP_benchmark's logits (last round); the warm
runs' image-feature cache hits, and that every round gives each side the same metrics (and
CLIP_benchmark the same logits). A subprocess that fails ends the rounds: its output's end is
printed, the summary covers the complete rounds, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: every subprocess's environment: the caller's (before this script's imports set anything), offline
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
os.environ.setdefault("HARNESS_DISABLE_PLUGIN_AUTOLOAD", "1")  # this process's setup only
PLUGINS = ["openclip", "scenes", "zeroshot", "metrics"]
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: the ``bench`` extra's pin, installed alone (``-e '.[bench]'`` also works but rebuilds harness,
#: which leaves a plugins/harness.egg-info behind)
INSTALL = "VIRTUAL_ENV=$PWD/.venv .venv/bin/uv pip install -c constraints-cpu.txt clip-benchmark==1.6.2"
#: CLIP_benchmark's one dataset that is a plain torchvision ImageFolder (``ROOT/val`` for split test)
CB_DATASET = "imagenet1k-unverified"
#: harness's metric names for CLIP_benchmark's
METRICS = {"acc1": "accuracy", "acc5": "top5_accuracy", "mean_per_class_recall": "mean_per_class_recall"}

DRIVER = '''\
"""`clip_benchmark eval` (clip_benchmark.cli.main, unchanged) with three shims, written by
bench/versus_clip_benchmark.py. Usage: python THIS DUMP.json eval [clip_benchmark eval options]."""
import time

T0 = time.time()
import importlib.util
import json
import sys
import types

from harness.torchcompat import ensure_torchvision

ensure_torchvision()  # this environment: PyPI's CUDA torchvision next to CPU torch (open_clip imports it)
if importlib.util.find_spec("requests") is None:  # this environment: clip_benchmark.cli imports it at the
    requests = types.ModuleType("requests")       # top, for downloads of other datasets only; not installed

    def get(*args, **kwargs):
        raise RuntimeError("requests is not installed (stub from bench/versus_clip_benchmark.py)")

    requests.get = get
    sys.modules["requests"] = requests
from clip_benchmark.metrics import zeroshot_classification as zc


def accuracy(output, target, topk=(1,)):
    """CLIP_benchmark 1.6.2's own, but .item(): NumPy 2 refuses float(array of shape (1,)) (#147)."""
    pred = output.topk(max(topk), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    return [correct[:k].reshape(-1).float().sum().item() / len(target) for k in topk]


TIMES = {"start": T0}
_classifier, _run = zc.zero_shot_classifier, zc.run_classification


def zero_shot_classifier(*args, **kwargs):
    TIMES["classifier"] = time.time()
    return _classifier(*args, **kwargs)


def run_classification(model, classifier, dataloader, device, amp=True):
    TIMES["images"] = time.time()
    logits, target = _run(model, classifier, dataloader, device, amp=amp)
    TIMES["metrics"] = time.time()
    DUMP["paths"] = [path for path, _ in dataloader.dataset.samples]
    DUMP["classes"] = list(dataloader.dataset.classes)
    DUMP["target"], DUMP["logits"] = target.tolist(), logits.tolist()
    return logits, target


zc.accuracy, zc.zero_shot_classifier, zc.run_classification = accuracy, zero_shot_classifier, run_classification
DUMP, path = {}, sys.argv.pop(1)
from clip_benchmark.cli import main

TIMES["imported"] = time.time()
status = main()
TIMES["end"] = time.time()
with open(path, "w") as f:
    json.dump({**DUMP, "times": TIMES}, f)
sys.exit(status)
'''


class Failed(Exception):
    """A timed subprocess exited non-zero: the message names it and ends with its output's last lines."""


def fail(what: str, log: Path) -> None:
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
    raise Failed(f"{what} failed; the end of its output ({log}):\n{tail}")


def timed(command: list[str], env: dict[str, str], log: Path, what: str) -> tuple[float, float]:
    """Run ``command`` to completion: ``(time.time() at its start, wall seconds)``; output to ``log``."""
    with open(log, "w") as out:
        started, start = time.time(), time.perf_counter()
        status = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
        wall = time.perf_counter() - start
    if status:
        fail(f"{what} (exit {status})", log)
    return started, wall


def write_data(spec, registries, data_dir: Path) -> tuple[list[str], list[str], list[str]]:
    """The spec's rows as ``data_dir/val/<NN>-<class>/<id>.png`` and ``val/metadata.jsonl``: (class
    names, templates, ids)."""
    import datasets

    from harness.dataset import load_dataset

    rows = load_dataset(spec.dataset, registries).data
    image, label = spec.columns["image"], spec.columns["label"]
    classes = list(spec.params.get("classnames") or rows.features[label].names)
    templates = list(spec.params["templates"])
    rows = rows.cast_column(image, datasets.Image(decode=False))
    ids = [str(v) for v in rows["id"]] if "id" in rows.column_names else [f"{i:06d}" for i in range(len(rows))]
    if len(set(ids)) != len(ids):
        ids = [f"{i:06d}" for i in range(len(rows))]
    width = len(str(len(classes) - 1))
    folders = [f"{i:0{width}d}-{name.replace('/', '_')}" for i, name in enumerate(classes)]
    labels = [int(v) for v in rows[label]]
    missing = [classes[c] for c in range(len(classes)) if c not in set(labels)]
    if missing:
        sys.exit(f"--n {len(rows)}: no image of class(es) {missing}; torchvision's ImageFolder (CLIP_benchmark) "
                 "refuses empty class folders: use a larger --n")
    meta = []
    for key, value, y in zip(ids, rows[image], labels):
        suffix = Path(value.get("path") or "x.png").suffix or ".png"
        rel = f"{folders[y]}/{key}{suffix}"
        path = data_dir / "val" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(value["bytes"] if value.get("bytes") is not None else Path(value["path"]).read_bytes())
        meta.append({"file_name": rel, "id": key, "label": y})
    meta.sort(key=lambda m: m["file_name"])
    (data_dir / "val" / "metadata.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
    return classes, templates, ids


def harness_result(out: Path) -> tuple[dict, dict[str, dict]]:
    """The one result JSON under ``out`` and its records by id."""
    (path,) = list(out.rglob("*.json"))
    doc = json.loads(path.read_text())
    records = path.with_name(doc["records"]["file"]) if doc.get("records") else path.with_suffix(".samples.jsonl")
    by_id = {}
    if records.exists():
        for line in records.read_text().splitlines():
            record = json.loads(line)
            by_id[record["id"]] = record
    return doc, by_id


def cb_parity(dump: dict, records: dict[str, dict]) -> dict[str, tuple[int, int]]:
    """Per sample, aligned by id: (equal, compared) for the label and top-1 / top-5 correctness."""
    import torch

    logits, target = torch.tensor(dump["logits"]), torch.tensor(dump["target"])
    k = min(5, logits.shape[1])
    top = logits.topk(k, 1, True, True)[1]
    counts = {"ids": [0, len(dump["paths"])], "labels": [0, 0], "top-1": [0, 0], "top-5": [0, 0]}
    for i, path in enumerate(dump["paths"]):
        record = records.get(Path(path).stem)
        if record is None:
            continue
        counts["ids"][0] += 1
        y = int(target[i])
        scores = record.get("scores", {})
        pairs = [("labels", record.get("class", {}).get("mean_per_class_recall"), y),
                 ("top-1", scores.get("accuracy"), float(top[i, 0] == y))]
        if k == 5:
            pairs.append(("top-5", scores.get("top5_accuracy"), float(bool((top[i] == y).any()))))
        for name, theirs, ours in pairs:
            if theirs is not None:
                counts[name][1] += 1
                counts[name][0] += int(theirs == ours)
    return {name: (a, b) for name, (a, b) in counts.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture (seeded random weights)")
    parser.add_argument("--task", default=str(ROOT / "tasks" / "scenes_shapes_zeroshot.yaml"))
    parser.add_argument("--n", type=int, default=500, help="images (the spec's dataset config n)")
    parser.add_argument("--size", type=int, default=None, help="scene image size (default: the spec's)")
    parser.add_argument("--batch-size", type=int, default=32, help="of both (CLIP_benchmark's default is 64)")
    parser.add_argument("--num-workers", default="auto", help="DataLoader workers of both (auto: harness's choice)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="fp32: CLIP_benchmark --no_amp, harness --dtype fp32; bf16: CLIP_benchmark's default amp "
                             "(bfloat16 autocast on CPU), harness --dtype bf16 (the same autocast)")
    parser.add_argument("--pairs", type=int, default=3, help="rounds (CLIP_benchmark, harness cold, harness warm)")
    parser.add_argument("--harness", default=str(ROOT / ".venv" / "bin" / "harness"))
    parser.add_argument("--python", default=sys.executable, help="the interpreter CLIP_benchmark runs in")
    parser.add_argument("--workdir", default=None, help="keep data, task, driver and results here (default: a "
                        "temporary folder, removed at the end)")
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")

    if importlib.util.find_spec("clip_benchmark") is None:
        print(f"clip_benchmark is not installed (the bench extra); from {ROOT}: {INSTALL}", file=sys.stderr)
        return 2

    from harness.imageloader import auto_workers
    from harness.pluginmanager import get_plugin_manager
    from harness.registry import collect
    from harness.taskspec import load_task_spec

    sys.path.insert(0, str(HERE))
    from extraction import random_weights  # bench/extraction.py; imports torch (and harness.torchcompat)

    import torch

    registries = collect(get_plugin_manager(PLUGINS))
    spec = load_task_spec(Path(args.task), registries)
    if spec.kind != "zeroshot_classification":
        sys.exit(f"{args.task}: kind {spec.kind!r}, expected zeroshot_classification")
    protocol = {"logit_scale": 100.0, "preprocess": "model"}  # CLIP_benchmark's; templates and classnames vary
    beyond = {k: v for k, v in spec.params.items()
              if k not in ("templates", "classnames") and protocol.get(k, object()) != v}
    if beyond:
        sys.exit(f"{args.task}: params {beyond} go beyond CLIP_benchmark's protocol ({protocol})")
    config = {**spec.dataset.config, "n": args.n, **({"image_size": args.size} if args.size else {})}
    spec = dataclasses.replace(spec, dataset=dataclasses.replace(spec.dataset, config=config))

    temporary = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="versus-clip-benchmark-") if temporary else args.workdir).resolve()
    if not temporary and work.exists() and any(work.iterdir()):
        sys.exit(f"--workdir {work}: not empty")
    try:
        return measure(args, spec, registries, work, auto_workers, random_weights, torch)
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)


def measure(args, spec, registries, work: Path, auto_workers, random_weights, torch) -> int:
    # ---- untimed setup: images, task file, CLIP_benchmark's files, checkpoint
    data = work / "data"
    classes, templates, ids = write_data(spec, registries, data)
    n = len(ids)
    workers = auto_workers(n, "cpu") if args.num_workers == "auto" else int(args.num_workers)
    task = work / f"versus_cb_{spec.name}.yaml"
    task.write_text(json.dumps({
        "name": task.stem, "version": 1, "kind": spec.kind,
        "description": f"{spec.name} (dataset {spec.dataset.builder or spec.dataset.path} {spec.dataset.config}) "
                       "as an image folder, for bench/versus_clip_benchmark.py",
        "dataset": {"path": str(data), "split": "validation"},
        "columns": {"image": "image", "label": "label"},
        "params": {**spec.params, "templates": templates, "classnames": classes},
        "metrics": list(spec.metrics), "main_score": spec.main_score}, indent=1) + "\n")
    (work / "classnames.json").write_text(json.dumps({CB_DATASET: classes}))
    (work / "templates.json").write_text(json.dumps({CB_DATASET: templates}))
    driver = work / "clip_benchmark_eval.py"
    driver.write_text(DRIVER)
    name = random_weights(f"random:openclip:{args.arch}")
    checkpoint = name.split("/", 1)[1]

    def commands(round_dir: Path) -> tuple[list[str], list[str], list[str]]:
        cb = [args.python, str(driver), str(round_dir / "cb-dump.json"), "eval", "--dataset", CB_DATASET,
              "--dataset_root", str(data), "--split", "test", "--task", "zeroshot_classification",
              "--model_type", "open_clip", "--model", args.arch, "--pretrained", checkpoint,
              *(["--no_amp"] if args.precision == "fp32" else []), "--batch_size", str(args.batch_size), "--num_workers", str(workers),
              "--custom_classname_file", str(work / "classnames.json"),
              "--custom_template_file", str(work / "templates.json"),
              "--output", str(round_dir / "cb-result.json"), "--quiet"]
        harness = [args.harness, "run", "--quiet", "--model", name, "--task", str(task), "--dtype", args.precision,
                   "--batch-size", str(args.batch_size), "--num-workers", str(workers),
                   "--cache-dir", str(round_dir / "cache")]
        return (cb, harness + ["--output-dir", str(round_dir / "cold")],
                harness + ["--output-dir", str(round_dir / "warm")])

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"bench/versus_clip_benchmark.py: whole processes, open_clip {args.arch} (seeded random weights), "
          f"{'fp32 (CLIP_benchmark --no_amp' if args.precision == 'fp32' else 'bf16 autocast (CLIP_benchmark amp'}, "
          f"harness --dtype {args.precision}), task {spec.name}: {n} images ({spec.dataset.builder} "
          f"{spec.dataset.config}) as PNG files in {data / 'val'}, {len(classes)} classes x {len(templates)} "
          f"templates, batch {args.batch_size}, workers {workers}, {args.pairs} rounds")
    print(f"machine: {os.cpu_count()} cpus ({cpus} usable), torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads, CUDA {'available' if torch.cuda.is_available() else 'not available'}, "
          f"python {sys.version.split()[0]}, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")

    # ---- timed rounds
    rounds, failure = [], None
    for r in range(args.pairs):
        round_dir = work / f"round-{r + 1}"
        round_dir.mkdir()
        cb_cmd, cold_cmd, warm_cmd = commands(round_dir)
        harness_env = {**ENV, "HF_DATASETS_CACHE": str(round_dir / "hf-datasets")}
        load = os.getloadavg()[0]
        out = {}

        def clip_benchmark():
            out["cb"] = timed(cb_cmd, ENV, round_dir / "cb.log", "CLIP_benchmark")

        def harness():
            out["cold"] = timed(cold_cmd, harness_env, round_dir / "cold.log", "harness cold")
            out["warm"] = timed(warm_cmd, harness_env, round_dir / "warm.log", "harness warm")

        try:
            for step in ((clip_benchmark, harness) if r % 2 == 0 else (harness, clip_benchmark)):
                step()
        except Failed as exc:  # e.g. a plugin broken while this ran: keep the rounds measured so far
            failure = exc
            print(f"  round {r + 1}: {exc}", file=sys.stderr)
            if not rounds:
                return 1
            print(f"  round {r + 1} failed (above); the rest is over the {len(rounds)} complete round(s)")
            break
        dump = json.loads((round_dir / "cb-dump.json").read_text())
        cb_metrics = json.loads((round_dir / "cb-result.json").read_text())["metrics"]
        cold_doc, cold_records = harness_result(round_dir / "cold")
        warm_doc, warm_records = harness_result(round_dir / "warm")
        result = {"cb": out["cb"][1], "cold": out["cold"][1], "warm": out["warm"][1], "load": load,
                  "cb_start": out["cb"][0], "dump": dump, "cb_metrics": cb_metrics,
                  "cold_doc": cold_doc, "warm_doc": warm_doc, "records": cold_records,
                  "warm_records_same": warm_records == cold_records}
        rounds.append(result)
        hits = warm_doc["cache"]["image_hits"], warm_doc["cache"]["image_hits"] + warm_doc["cache"]["image_misses"]
        print(f"  round {r + 1} ({'CLIP_benchmark first' if r % 2 == 0 else 'harness first'}, load {load:.2f}): "
              f"CLIP_benchmark {result['cb']:.2f} s, harness cold {result['cold']:.2f} s, warm {result['warm']:.2f} s; "
              f"cold/CB {result['cold'] / result['cb']:.3f}, warm/CB {result['warm'] / result['cb']:.3f} "
              f"(warm image hits {hits[0]}/{hits[1]})")
        if r == 0:
            first = (cb_cmd, cold_cmd, warm_cmd, round_dir)

    # ---- medians, ratios
    med = {k: statistics.median(x[k] for x in rounds) for k in ("cb", "cold", "warm")}
    print(f"median of {len(rounds)}: CLIP_benchmark {med['cb']:.2f} s ({n / med['cb']:.1f} img/s), "
          f"harness cold {med['cold']:.2f} s ({n / med['cold']:.1f} img/s), harness warm {med['warm']:.2f} s")
    for key, goal, issue in (("cold", 0.5, 13), ("warm", 0.25, 14)):
        ratios = [x[key] / x["cb"] for x in rounds]
        ratio = statistics.median(ratios)
        print(f"harness {key} / CLIP_benchmark: {ratio:.3f} (rounds: {', '.join(f'{v:.3f}' for v in ratios)}); "
              f"issue {issue}'s goal <= {goal}: {'met' if ratio <= goal else 'NOT met'}")

    # ---- where the time goes (medians): CLIP_benchmark from its driver's clock, harness from its result's cost
    def cb_parts(x: dict) -> dict[str, float]:
        t = x["dump"]["times"]
        return {"startup": t["start"] - x["cb_start"], "imports": t["imported"] - t["start"],
                "load model+data": t["classifier"] - t["imported"], "text": t["images"] - t["classifier"],
                "images": t["metrics"] - t["images"], "metrics+write": t["end"] - t["metrics"],
                "exit": x["cb_start"] + x["cb"] - t["end"]}

    def harness_parts(doc: dict, wall: float) -> dict[str, float]:
        cost = doc["cost"]
        parts = {"startup+imports+plan": cost["process_s"] - cost["wall_time_s"]}
        parts.update({k: v for k, v in cost["phases_s"].items() if k != "generate" or v})
        parts["write+exit"] = wall - cost["process_s"]
        return parts

    for label, parts in (("CLIP_benchmark", [cb_parts(x) for x in rounds]),
                         ("harness cold", [harness_parts(x["cold_doc"], x["cold"]) for x in rounds]),
                         ("harness warm", [harness_parts(x["warm_doc"], x["warm"]) for x in rounds])):
        print(f"{label + ',':16s} median s: " + ", ".join(
            f"{k} {statistics.median(p.get(k, 0.0) for p in parts):.2f}" for k in parts[0]))

    # ---- parity
    last = rounds[-1]
    cb_m = last["cb_metrics"]
    h_m = {k: v["value"] for k, v in last["cold_doc"]["metrics"].items()}

    def fmt(v) -> str:
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"

    same = []
    for cb_name, h_name in METRICS.items():
        a, b = cb_m.get(cb_name), h_m.get(h_name)
        both_missing = (a is None or (isinstance(a, float) and math.isnan(a))) and b is None
        same.append(both_missing or (a is not None and b is not None and math.isclose(a, b, abs_tol=1e-9)))
    print("CLIP_benchmark / harness: " + ", ".join(
        f"{h} {fmt(cb_m.get(c))} / {fmt(h_m.get(h))}" for c, h in METRICS.items())
        + f"; equal: {all(same)}")
    counts = cb_parity(last["dump"], last["records"])
    print("per sample (by id): " + ", ".join(f"{k} {a}/{b}" for k, (a, b) in counts.items() if b)
          + " identical (harness records hold correctness, not the predicted class)")
    stable_cb = all(x["cb_metrics"] == cb_m and x["dump"]["logits"] == last["dump"]["logits"] for x in rounds)
    stable_h = all(x[d]["metrics"] == last["cold_doc"]["metrics"] for x in rounds for d in ("cold_doc", "warm_doc"))
    print(f"CLIP_benchmark classes == ours: {last['dump']['classes'] == classes}; every round: CLIP_benchmark "
          f"logits and metrics identical {stable_cb}, harness cold and warm metrics identical {stable_h}, "
          f"warm records == cold records {all(x['warm_records_same'] for x in rounds)}")
    device = last["cold_doc"].get("execution", {}).get("device")
    print(f"harness device {device}; load average at the end "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")

    # ---- the commands (round 1's paths; round i uses round-i)
    cb_cmd, cold_cmd, warm_cmd, round_dir = first
    offline = "HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1"
    print(f"commands (work folder {work}{', removed at exit' if args.workdir is None else ''}):")
    print(f"  CLIP_benchmark: {offline} {shlex.join(cb_cmd)}")
    print(f"  harness cold:   {offline} HF_DATASETS_CACHE={round_dir / 'hf-datasets'} {shlex.join(cold_cmd)}")
    print(f"  harness warm:   (the same, --output-dir {round_dir / 'warm'})")
    sys.stdout.flush()
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
