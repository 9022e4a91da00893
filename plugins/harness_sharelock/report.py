"""``harness viterb-report RESULTS_DIR ...``: which language model generalises better, over seeds.

Reads every result file under the given folders (validated, as the leaderboard does), keeps
those of ``viterb`` tasks, the latest of each seed, groups them by task and model, and prints
per model the number of seeds and the mean and sample standard deviation of unseen- and
seen-class accuracy, best first, then one line naming the model that generalises best. The
seeds of one model are its result files ``<task>.json`` and ``<task>.seed-N.json``
(``--seed N``), in one folder or several.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from harness import HarnessError, UsageError, latest_per_seed, read_result, read_yaml_file


def add_command(subparsers: Any, parents: list[Any]) -> None:
    p = subparsers.add_parser("viterb-report", parents=parents, help="compare language models on ViTeRB results")
    p.add_argument("results", nargs="+", type=Path, help="folders of result files (searched recursively)")
    p.add_argument("--task", default=None, help="only this ViTeRB task")
    p.set_defaults(handler=report)


def collect(folders: list[Path], task: str | None) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """task -> model -> result documents of ``viterb`` tasks, the latest of each seed (as the
    leaderboard counts them: a folder given twice, or a rerun, does not add seeds)."""
    docs = []
    for folder in folders:
        if not folder.is_dir():
            raise UsageError(f"{folder}: no such folder")
        docs += [read_result(path) for path in sorted(folder.rglob("*.json"))]
    viterb = [d for d in docs if d["task"]["kind"] == "viterb" and task in (None, d["task"]["name"])]
    found: dict[str, dict[str, list[dict[str, Any]]]] = {}
    cells = latest_per_seed(viterb)
    for (model, column), seeds in cells.items():  # a name with several weights: one row each, told apart
        weights = {m.fingerprint for m, c in cells if m.name == model.name and c.task == column.task}
        label = model.name if len(weights) == 1 else f"{model.name} ({model.fingerprint[:12]})"
        found.setdefault(column.task, {}).setdefault(label, []).extend(seeds)
    return found


def _stats(docs: list[dict[str, Any]], metric: str) -> tuple[float, float]:
    values = [d["metrics"][metric]["value"] for d in docs if d["metrics"].get(metric, {}).get("value") is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _chance(task: str, registries: Any) -> str:
    """`` (unseen: ...; chance ...%)`` from the registered task's ``params.unseen``; empty when unknown."""
    if task not in registries.tasks:
        return ""
    try:
        spec = read_yaml_file(registries.tasks.get(task))
    except HarnessError:
        return ""
    unseen = ((spec or {}).get("params") or {}).get("unseen") if isinstance(spec, dict) else None
    if not isinstance(unseen, list) or not unseen:
        return ""
    return f" (unseen: {', '.join(map(str, unseen))}; chance {100 / len(unseen):.1f}%)"


def render(found: dict[str, dict[str, list[dict[str, Any]]]], registries: Any) -> str:
    """The comparison as text, one block per task."""
    lines = []
    for task, models in sorted(found.items()):
        rows = sorted(((name, len(docs), *_stats(docs, "unseen_accuracy"), *_stats(docs, "seen_accuracy"))
                       for name, docs in models.items()), key=lambda r: -r[2])
        width = max(len(r[0]) for r in rows)
        lines += [f"{task}{_chance(task, registries)}",
                  f"  {'model':{width}s}  seeds  unseen top-1 (mean ± sd)  seen top-1 (mean ± sd)"]
        lines += [f"  {name:{width}s}  {n:5d}  {100 * u:6.1f}% ± {100 * su:4.1f}          {100 * s:6.1f}% ± {100 * ss:4.1f}"
                  for name, n, u, su, s, ss in rows]
        if len(rows) > 1:
            best, runner = rows[0], rows[1]
            lines.append(f"  => {best[0]} generalises better to unseen classes: {100 * best[2]:.1f}% vs "
                         f"{100 * runner[2]:.1f}% for {runner[0]} ({100 * (best[2] - runner[2]):+.1f} points)")
        lines.append("")
    return "\n".join(lines)


def report(args: argparse.Namespace, registries: Any) -> int:
    """Handler of ``harness viterb-report``."""
    found = collect(list(args.results), args.task)
    if not found:
        raise UsageError(f"no viterb results under {', '.join(str(p) for p in args.results)}")
    print(render(found, registries), end="")
    return 0
