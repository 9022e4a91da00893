"""Built-in result writer: one canonical JSON file per (model, task), its per-sample records beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import WriterSpec, hookimpl, write_result


@hookimpl
def harness_register_writers() -> list[WriterSpec]:
    return [WriterSpec("json", "harness_writers:write_json",
                       "OUTPUT_DIR/<model id>/<task>-<identity>[.seed-N].json and .samples.jsonl, written atomically")]


def write_json(result: dict[str, Any], output_dir: Path, records: str) -> Path:
    """Write the records, then ``result``, to their unique paths under ``output_dir`` (see
    ``harness.result_path``), each atomically."""
    return write_result(result, records, output_dir)
