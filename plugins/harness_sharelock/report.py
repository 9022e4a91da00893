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
from typing import TYPE_CHECKING, Any

from harness.errors import UsageError

if TYPE_CHECKING:
    from harness.registry import Registries


def add_command(subparsers: Any, parents: list[Any]) -> None:
    p = subparsers.add_parser("viterb-report", parents=parents, help="compare language models on ViTeRB results")
    p.add_argument("results", nargs="+", type=Path, help="folders of result files (searched recursively)")
    p.add_argument("--task", default=None, help="only this ViTeRB task")
    p.set_defaults(handler=report)


def collect(folders: list[Path], task: str | None) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """task -> model -> result documents of ``viterb`` tasks, the latest of each seed (as the
    leaderboard counts them: a folder given twice, or a rerun, does not add seeds)."""
    from harness.leaderboard import latest_per_seed
    from harness.result import read_result

    docs = []
    for folder in folders:
        if not folder.is_dir():
            raise UsageError(f"{folder}: no such folder")
        docs += [read_result(path) for path in sorted(folder.rglob("*.json"))]
    viterb = [d for d in docs if d["task"]["kind"] == "viterb" and task in (None, d["task"]["name"])]
    found: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for (model, column), seeds in latest_per_seed(viterb).items():
        found.setdefault(column.task, {}).setdefault(model, []).extend(seeds)
    return found


def _stats(docs: list[dict[str, Any]], metric: str) -> tuple[float, float]:
    values = [d["metrics"][metric]["value"] for d in docs if d["metrics"].get(metric, {}).get("value") is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _chance(task: str, registries: Registries) -> str:
    from harness.taskspec import load_task_spec

    if task not in registries.tasks:
        return ""
    unseen = load_task_spec(registries.tasks.get(task)).params.get("unseen") or []
    return f" (unseen: {', '.join(unseen)}; chance {100 / len(unseen):.1f}%)" if unseen else ""


def render(found: dict[str, dict[str, list[dict[str, Any]]]], registries: Registries) -> str:
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


def report(args: argparse.Namespace, registries: Registries) -> int:
    """Handler of ``harness viterb-report``."""
    found = collect(list(args.results), args.task)
    if not found:
        raise UsageError(f"no viterb results under {', '.join(str(p) for p in args.results)}")
    print(render(found, registries), end="")
    return 0
