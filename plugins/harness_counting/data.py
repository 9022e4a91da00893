"""Dataset builders for counting and identification data in their published formats, read strictly.

``gvtbench`` -- GVTBench (TencentARC/GVT): a JSON list of ``{"image_id", "text_in", "text_out",
"n_obj_exist"}`` records (``coco_oc.json``, ``coco_mci.json``, ``vcr_oc.json``, ``vcr_mci.json``, or any
file in that format) and the image folder: COCO val2017 (an integer ``image_id`` is the file
``{image_id:012d}.jpg``) or VCR's ``vcr1images`` (a string ``image_id`` is the path under it)::

    dataset:
      builder: gvtbench
      config: {records: ${GVTBENCH_ROOT}/coco_oc.json, images: ${COCO_ROOT}/val2017, task: count}
      split: test

  ``task``: ``count`` (``text_out`` must be a non-negative integer, e.g. ``"3"``) or ``identify``
  (``text_out``'s first word must be yes or no, e.g. ``"Yes."``). Columns: ``id`` (the record's
  position, ``000000``...), ``image``, ``image_id`` (as text), ``question`` (``text_in``),
  ``answer`` (``text_out`` as written), ``n_objects`` (``n_obj_exist``), and for ``count``,
  ``count`` (int).

``tallyqa`` -- TallyQA (Acharya et al., AAAI 2019): ``test.json`` or ``train.json``, a JSON list of
``{"answer", "image", "image_id", "issimple", "question", "question_id", "data_source"}``, and the
folder holding the images under the paths the records give (``VG_100K/``, ``VG_100K_2/``,
``train2014/``, ``val2014/``). ``subset``: ``simple``, ``complex`` (by ``issimple``) or ``all``.
Columns: ``id`` (the question id as text), ``image``, ``image_id``, ``question``, ``count`` (int),
``issimple``, ``data_source``.

``countbenchqa`` -- CountBenchQA as published on the Hugging Face hub (``vikhyatk/CountBenchQA``):
the parquet file(s) of ``data/`` (``test-00000-of-00001.parquet``; columns ``image`` with the image
bytes, ``text``, ``question``, ``number``), a file or the folder holding them; or the same rows as
a JSON list / JSON lines with ``image`` a file name under ``images``. Columns: ``id`` (the row's
position), ``image``, ``question``, ``count`` (int), ``text``.

Common config keys: ``records`` and ``images`` paths expand ``~`` and ``${VAR}``; a relative path is
taken inside ``root`` (itself absolute after expansion); builder paths are never read relative to
the task spec or the working folder. ``sha256`` (optional): the records file's expected sha256 (a
different file is refused). The split name is only a label (the files say what the rows are).

Every problem is one line (``DataError``): a missing or unreadable file, JSON that is not the
format, a record without ``n_obj_exist`` (which one), a count that is not an integer (which record,
which value), records whose image file is missing (how many, and the first), an unset
environment variable, an unknown config key.

Identity: ``dataset._fingerprint`` is ``r<first 32 hex of the records file's sha256>i<30 hex>``, the
second part a sha256 over the builder, its version, the task/subset, the image naming and the sha256
of every image file the rows read (digests remembered under the run's cache root,
``harness.FileDigests``: by path, size, mtime, ctime and inode), so a result names the
records file it scored and edited answers or replaced images are a different dataset.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Mapping

from harness import DataError, FileDigests, builder_images, builder_json, builder_paths

from .parsing import yesno_strict

if TYPE_CHECKING:
    import datasets

    from harness import ExecutionConfig

log = logging.getLogger(__name__)
VERSION = "1"
_DIGITS = re.compile(r"\s*\d+\s*")
MAX_JSON_BYTES = 1 << 30
KEYS = {
    "gvtbench": {"root", "records", "images", "task", "image_pattern", "sha256"},
    "tallyqa": {"root", "records", "images", "subset", "sha256"},
    "countbenchqa": {"root", "records", "images", "sha256"},
}
REQUIRED = {"gvtbench": ("records", "images", "task"), "tallyqa": ("records", "images"),
            "countbenchqa": ("records",)}


# -- config -------------------------------------------------------------------------------------
def _config(config: Mapping[str, Any] | None, builder: str) -> tuple[dict[str, Any], dict[str, Path], str]:
    """(the config, its paths resolved and checked, how errors name the builder)."""
    config = dict(config or {})
    where = f"dataset builder {builder!r}"
    records = {"either": ("records",)} if builder == "countbenchqa" else {"files": ("records",)}
    paths = builder_paths(config, builder, KEYS[builder], REQUIRED[builder], folders=("images",), **records)
    expected = config.get("sha256")
    if expected is not None and not (isinstance(expected, str) and re.fullmatch(r"[0-9a-f]{64}", expected)):
        raise DataError(f"{where}: config.sha256 must be 64 lower-case hex digits, got {expected!r}")
    return config, paths, where


def _records(path: Path, what: str) -> list[dict[str, Any]]:
    doc = builder_json(path, what, MAX_JSON_BYTES, lines=path.suffix == ".jsonl")
    if not isinstance(doc, list):
        raise DataError(f"{what} {str(path)!r} is not a JSON list of records")
    if not doc:
        raise DataError(f"{what} {str(path)!r} has no records")
    for i, entry in enumerate(doc):
        if not isinstance(entry, dict):
            raise DataError(f"{what} {str(path)!r}: record {i} is {type(entry).__name__}, not an object")
    return doc


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(value: Any) -> int | None:
    """A non-negative integer count: an int, or a string of digits (GVTBench writes ``"3"``)."""
    if _is_int(value):
        return value if value >= 0 else None
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    return None


def _field(entry: dict[str, Any], name: str, check: Callable[[Any], bool], kind: str, what: str, path: Path,
           label: str) -> Any:
    if name not in entry:
        raise DataError(f"{what} {str(path)!r}: {label} has no {name!r}")
    value = entry[name]
    if not check(value):
        raise DataError(f"{what} {str(path)!r}: {label}: {name!r} must be {kind}, got {value!r}")
    return value


# -- files and identity -------------------------------------------------------------------------
def _check_name(name: str, where: str, label: str) -> str:
    if not name or PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts or "\\" in name:
        raise DataError(f"{where}: {label}: image {name!r} is not a file name inside the images folder")
    return name


def _fingerprint(builder: str, records_sha: str, extra: Mapping[str, Any], images: list[Path],
                 digests: FileDigests) -> str:
    identity = hashlib.sha256(json.dumps({"builder": builder, "version": VERSION, **extra}, sort_keys=True).encode())
    for path in sorted(set(images)):
        identity.update(f"image {path.name} {digests(path)}\n".encode())
    digests.save()
    return f"r{records_sha[:32]}i{identity.hexdigest()[:30]}"


def _records_sha(path: Path, config: Mapping[str, Any], digests: FileDigests, where: str) -> str:
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{where}: config.records: folder {str(path)!r} holds no .parquet files")
    if len(files) == 1:
        sha = digests(files[0])
    else:
        sha = hashlib.sha256("".join(f"{f.name} {digests(f)}\n" for f in files).encode()).hexdigest()
    expected = config.get("sha256")
    if expected is not None and sha != expected:
        raise DataError(f"{where}: config.records {str(path)!r} has sha256 {sha}, the spec expects {expected}")
    log.info("%s: records %s sha256 %s", where, path, sha)
    return sha


def _dataset(name: str, features: dict[str, Any], columns: dict[str, list[Any]], split: str,
             fingerprint: str) -> datasets.Dataset:
    import datasets

    feats = datasets.Features(features)
    data = datasets.Dataset.from_dict({key: columns[key] for key in feats}, features=feats, split=split,
                                      info=datasets.DatasetInfo(features=feats, dataset_name=name))
    data._fingerprint = fingerprint
    return data


# -- the builders -------------------------------------------------------------------------------
def build_gvtbench(config: Mapping[str, Any] | None, split: str,
                   execution: ExecutionConfig | None = None) -> datasets.Dataset:
    """Builder ``gvtbench`` (see the module docstring)."""
    import datasets

    config, paths, where = _config(config, "gvtbench")
    task = config["task"]
    if task not in ("count", "identify"):
        raise DataError(f"{where}: config.task must be 'count' or 'identify', got {task!r}")
    pattern = config.get("image_pattern")
    if pattern is not None and (not isinstance(pattern, str) or "{image_id" not in pattern):
        raise DataError(f"{where}: config.image_pattern must be a string with an {{image_id...}} field, "
                        f"got {pattern!r}")
    path = paths["records"]
    what = "GVTBench records file"
    entries = _records(path, what)
    columns: dict[str, list[Any]] = {k: [] for k in ("id", "image_id", "question", "answer", "n_objects", "count")}
    names = []
    for i, entry in enumerate(entries):
        image_id = entry.get("image_id")
        label = f"record {i}" + (f" (image_id {image_id!r})" if "image_id" in entry else "")
        image_id = _field(entry, "image_id", lambda v: (_is_int(v) and v >= 0) or (isinstance(v, str) and v != ""),
                          "a non-negative integer (COCO) or a path (VCR)", what, path, label)
        question = _field(entry, "text_in", lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string",
                          what, path, label)
        answer = _field(entry, "text_out", lambda v: isinstance(v, str), "a string", what, path, label)
        n_objects = _field(entry, "n_obj_exist", lambda v: _is_int(v) and v >= 0, "a non-negative integer",
                           what, path, label)
        if task == "count":
            count = _count(answer)
            if count is None:
                raise DataError(f"{what} {str(path)!r}: {label}: text_out {answer!r} is not an integer count "
                                "(config.task is 'count')")
        else:
            if yesno_strict(answer) is None:
                raise DataError(f"{what} {str(path)!r}: {label}: text_out {answer!r} is not yes or no "
                                "(config.task is 'identify')")
            count = -1
        if pattern is not None:
            try:
                name = pattern.format(image_id=image_id)
            except (ValueError, IndexError, KeyError) as exc:
                raise DataError(f"{where}: config.image_pattern {pattern!r} cannot name {label}: {exc}") from None
        else:
            name = f"{image_id:012d}.jpg" if _is_int(image_id) else image_id
        names.append(_check_name(name, where, label))
        columns["id"].append(f"{i:06d}")
        columns["image_id"].append(str(image_id))
        columns["question"].append(question)
        columns["answer"].append(answer)
        columns["n_objects"].append(n_objects)
        columns["count"].append(count)
    images = builder_images(paths["images"], names, [f"record {i} (image_id {c!r})" for i, c in
                                                   enumerate(columns["image_id"])], where)
    digests = FileDigests(execution)
    sha = _records_sha(path, config, digests, where)
    fingerprint = _fingerprint("gvtbench", sha, {"task": task, "names": names}, images, digests)
    columns["image"] = [{"path": str(p), "bytes": None} for p in images]
    string = datasets.Value("string")
    features = {"id": string, "image": datasets.Image(), "image_id": string, "question": string, "answer": string,
                "n_objects": datasets.Value("int64")}
    if task == "count":
        features["count"] = datasets.Value("int64")
    return _dataset("gvtbench", features, columns, split, fingerprint)


def build_tallyqa(config: Mapping[str, Any] | None, split: str,
                  execution: ExecutionConfig | None = None) -> datasets.Dataset:
    """Builder ``tallyqa`` (see the module docstring)."""
    import datasets

    config, paths, where = _config(config, "tallyqa")
    subset = config.get("subset", "all")
    if subset not in ("simple", "complex", "all"):
        raise DataError(f"{where}: config.subset must be 'simple', 'complex' or 'all', got {subset!r}")
    path = paths["records"]
    what = "TallyQA file"
    columns: dict[str, list[Any]] = {k: [] for k in ("id", "image_id", "question", "count", "issimple",
                                                     "data_source")}
    names, seen = [], set()
    for i, entry in enumerate(_records(path, what)):
        label = f"record {i}" + (f" (question_id {entry['question_id']!r})" if "question_id" in entry else "")
        question_id = _field(entry, "question_id", _is_int, "an integer", what, path, label)
        if question_id in seen:
            raise DataError(f"{what} {str(path)!r}: question_id {question_id} appears more than once")
        seen.add(question_id)
        if "answer" not in entry:
            raise DataError(f"{what} {str(path)!r}: {label} has no 'answer'")
        count = entry["answer"] if _is_int(entry["answer"]) and entry["answer"] >= 0 else None
        if count is None:
            raise DataError(f"{what} {str(path)!r}: {label}: answer {entry['answer']!r} is not an integer count")
        simple = _field(entry, "issimple", lambda v: isinstance(v, bool), "true or false", what, path, label)
        if subset != "all" and simple != (subset == "simple"):
            continue
        image = _field(entry, "image", lambda v: isinstance(v, str) and v != "", "a path", what, path, label)
        names.append(_check_name(image, where, label))
        columns["id"].append(str(question_id))
        columns["image_id"].append(str(entry.get("image_id", "")))
        columns["question"].append(_field(entry, "question", lambda v: isinstance(v, str) and v.strip() != "",
                                          "a non-empty string", what, path, label))
        columns["count"].append(count)
        columns["issimple"].append(simple)
        columns["data_source"].append(str(entry.get("data_source", "")))
    if not names:
        raise DataError(f"{what} {str(path)!r} has no {subset} questions")
    images = builder_images(paths["images"], names, [f"question_id {q}" for q in columns["id"]], where)
    digests = FileDigests(execution)
    sha = _records_sha(path, config, digests, where)
    fingerprint = _fingerprint("tallyqa", sha, {"subset": subset, "names": names}, images, digests)
    columns["image"] = [{"path": str(p), "bytes": None} for p in images]
    string = datasets.Value("string")
    features = {"id": string, "image": datasets.Image(), "image_id": string, "question": string,
                "count": datasets.Value("int64"), "issimple": datasets.Value("bool"), "data_source": string}
    return _dataset("tallyqa", features, columns, split, fingerprint)


def _parquet_rows(path: Path, where: str) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    rows: list[dict[str, Any]] = []
    for file in files:
        try:
            rows += pq.read_table(file).to_pylist()
        except Exception as exc:  # pyarrow raises its own errors for a damaged file
            raise DataError(f"{where}: cannot read parquet file {str(file)!r}: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not rows:
        raise DataError(f"{where}: {str(path)!r} has no rows")
    return rows


def build_countbenchqa(config: Mapping[str, Any] | None, split: str,
                       execution: ExecutionConfig | None = None) -> datasets.Dataset:
    """Builder ``countbenchqa`` (see the module docstring)."""
    import datasets

    config, paths, where = _config(config, "countbenchqa")
    path = paths["records"]
    parquet = path.is_dir() or path.suffix == ".parquet"
    what = "CountBenchQA file"
    if parquet:
        entries = _parquet_rows(path, where)
    else:
        if "images" not in paths:
            raise DataError(f"{where}: config.images is required with a JSON records file (its images are files)")
        entries = _records(path, what)
    columns: dict[str, list[Any]] = {k: [] for k in ("id", "question", "count", "text")}
    names, embedded = [], []
    for i, entry in enumerate(entries):
        label = f"row {i}"
        question = _field(entry, "question", lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string",
                          what, path, label)
        if "number" not in entry:
            raise DataError(f"{what} {str(path)!r}: {label} has no 'number'")
        count = entry["number"] if _is_int(entry["number"]) and entry["number"] >= 0 else None
        if count is None:
            raise DataError(f"{what} {str(path)!r}: {label}: number {entry['number']!r} is not an integer count")
        image = entry.get("image")
        if parquet:
            if not (isinstance(image, dict) and isinstance(image.get("bytes"), bytes) and image["bytes"]):
                raise DataError(f"{what} {str(path)!r}: {label}: 'image' holds no image bytes")
            embedded.append({"bytes": image["bytes"], "path": None})
        else:
            if not isinstance(image, str):
                raise DataError(f"{what} {str(path)!r}: {label}: 'image' must be a file name, got {image!r}")
            names.append(_check_name(image, where, label))
        columns["id"].append(f"{i:06d}")
        columns["question"].append(question)
        columns["count"].append(count)
        columns["text"].append(str(entry.get("text") or ""))
    digests = FileDigests(execution)
    sha = _records_sha(path, config, digests, where)
    images = [] if parquet else builder_images(paths["images"], names, [f"row {i}" for i in range(len(names))], where)
    fingerprint = _fingerprint("countbenchqa", sha, {"names": names}, images, digests)
    columns["image"] = embedded if parquet else [{"path": str(p), "bytes": None} for p in images]
    string = datasets.Value("string")
    features = {"id": string, "image": datasets.Image(), "question": string, "count": datasets.Value("int64"),
                "text": string}
    return _dataset("countbenchqa", features, columns, split, fingerprint)
