"""Built-in result writer: one canonical JSON file per (model, task)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import WriterSpec, dumps, hookimpl, model_id, write_text_atomic


@hookimpl
def harness_register_writers() -> list[WriterSpec]:
    return [WriterSpec("json", "harness_writers:write_json", "OUTPUT_DIR/<model id>/<task>[.seed-N].json, written atomically")]


def write_json(result: dict[str, Any], output_dir: Path) -> Path:
    """Write ``result`` to ``output_dir/<model id>/<task>.json`` atomically (``<task>.seed-N.json``
    for ``--seed N`` other than 0, so the runs of several seeds sit side by side)."""
    seed = f".seed-{result['seed']}" if result["seed"] else ""
    path = Path(output_dir) / model_id(result["model"]["name"]) / f"{result['task']['name']}{seed}.json"
    return write_text_atomic(path, dumps(result))
