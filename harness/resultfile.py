"""Where a result and its per-sample records go, checked before a run starts, written so that
nothing is lost at its end.

A result's path is unique for what it measures: ``OUTPUT_DIR/<model id>/<task>-<identity>[.seed-N].json``
where the model id is a readable slug of the model name plus a hash of the whole name (two names
never share a folder, however they slug, and a long name still makes a short folder name), and
the identity is a hash of the weights fingerprint and the task spec's sha256 (other weights under
the same name, or another spec with the same name, land beside the old result instead of over it;
a rerun of the same thing replaces it). The records file sits beside it
(``<same stem>.samples.jsonl``), written first, so a result never names a records file that is
not there.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from .atomicfile import write_text_atomic
from .errors import ResultError, UsageError
from .execution import cache_root
from .records import records_path
from .result import dumps

#: Longest readable part of a model folder name (file systems allow 255 bytes).
MAX_SLUG = 80
#: Where results that could not be written to the output folder are kept (under the cache root).
UNSAVED = "unsaved-results"


def model_id(name: str) -> str:
    """The folder name of a model's results: a file-system-safe slug of ``name`` (at most
    ``MAX_SLUG`` characters) and the first 8 hex digits of sha256(name) (``hf:org/repo`` ->
    ``hf__org__repo-1a2b3c4d``), so distinct names never share a folder."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "__", name).strip("._-")[:MAX_SLUG] or "model"
    return f"{slug}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:8]}"


def result_name(doc: dict[str, Any]) -> str:
    """``<task>-<identity>[.seed-N].json`` (see the module docstring)."""
    identity = f"{doc['model']['fingerprint']}\n{doc['task']['spec_sha256']}"
    if doc.get("rescored"):  # recomputed from records (``harness rescore``): never over the original
        identity += "\nrescored:" + ",".join(doc["rescored"]["metrics"])
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:8]
    seed = f".seed-{doc['seed']}" if doc["seed"] else ""
    return f"{doc['task']['name']}-{digest}{seed}.json"


def result_path(doc: dict[str, Any], output_dir: Path) -> Path:
    """Where ``doc`` is written under ``output_dir``."""
    return Path(output_dir) / model_id(doc["model"]["name"]) / result_name(doc)


def check_output_dir(output_dir: Path) -> Path:
    """``output_dir`` with ``~`` expanded, after checking (before any work) that results can be
    written there: it is a writable folder, or can be created in one. One line otherwise."""
    path = Path(output_dir).expanduser()
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        what = "is a file" if probe == path else f"cannot be created: {probe} is a file"
        raise UsageError(f"--output-dir {output_dir}: {what}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"--output-dir {output_dir}: {probe} is not writable")
    return path


def write_result(doc: dict[str, Any], records: str, output_dir: Path) -> Path:
    """Write the records file, then the result, each atomically; return the result's path."""
    path = result_path(doc, output_dir)
    write_text_atomic(records_path(path), records)
    return write_text_atomic(path, dumps(doc))


def keep_unsaved(doc: dict[str, Any], records: str, error: OSError, target: Path,
                 cache_dir: Path | None = None) -> ResultError:
    """After ``error`` writing to ``target``: keep the result and records under the cache root
    (else the temporary folder) and return the one-line error that says where they are."""
    reason = error.strerror or str(error)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    for root in (cache_root(cache_dir) / UNSAVED / stamp, Path(os.environ.get("TMPDIR", "/tmp")) / f"harness-{UNSAVED}" / stamp):
        try:
            kept = write_result(doc, records, root)
        except OSError:
            continue
        return ResultError(f"cannot write {target}: {reason}; the result was kept at {kept}")
    print(f"harness: could not keep the result anywhere; here it is:\n{dumps(doc)}", file=sys.stderr)
    return ResultError(f"cannot write {target}: {reason}; nowhere else was writable (result printed above)")
