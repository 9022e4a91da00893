"""Dataset builders for VQA data in its published JSON formats, read strictly.

``vqa_json`` -- the official VQA format (VQAv2, OK-VQA, VQA v1): a questions file
(``{"data_subtype": "val2014", "questions": [{"question_id", "image_id", "question"}, ...]}``), an
optional annotations file (``{"annotations": [{"question_id", "image_id", "answers": [{"answer", ...}],
"answer_type", "question_type", "multiple_choice_answer"}, ...]}``; test-dev has none) and a folder
of images named by ``image_pattern``::

    dataset:
      builder: vqa_json
      config: {root: ${VQA_ROOT}, questions: v2_OpenEnded_mscoco_val2014_questions.json,
               annotations: v2_mscoco_val2014_annotations.json, images: val2014}
      split: val2014

``textvqa_json`` -- TextVQA's single file (``{"data": [{"question_id", "image_id", "question",
"answers": [...]}, ...]}``; the test file has no answers) and its image folder (``{image_id}.jpg``).

``vizwiz_json`` -- VizWiz-VQA's list (``[{"image", "question", "answers": [{"answer", ...}],
"answer_type", ...}, ...]``; test has no answers) and its image folder; VizWiz has no question ids,
so a question's id is its position in the file.

Config values that are paths expand ``~`` and ``${VAR}``; a relative path is taken inside ``root``
(itself absolute after expansion). Builder configs are not resolved relative to the task spec's
folder, so a relative path without ``root`` is refused rather than read from wherever the command
runs. The split name is only a label (the files say what the rows are).

Columns: ``id`` (the question id as text: the sample id of records and caches), ``image`` (an
Image column reading the file lazily), ``image_id``, ``question_id`` (int64), ``question``; with
annotations also ``answers`` (list of str, in the file's order: VQAv2 10, OK-VQA 5 each given
twice, TextVQA and VizWiz 10), ``answer_type``, and for ``vqa_json`` ``question_type`` and (when
every annotation has it) ``multiple_choice_answer``.

Every problem is one line (``DataError``): a missing or unreadable file, JSON that is not the
format, repeated question ids, annotations that do not cover the questions one for one, questions
whose image file is missing (how many, and the first), an unset environment variable.

Identity: ``dataset._fingerprint`` is sha256 over the builder version, the format, the sha256 of
the question and annotation files, the image pattern and the sha256 of every image file read
(digests remembered under the run's cache root by ``harness.FileDigests``, by path, size, mtime,
ctime and inode), so replaced images or edited answers are a different dataset.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from harness import DataError, FileDigests, builder_images, builder_json, builder_paths

if TYPE_CHECKING:
    import datasets

    from harness import ExecutionConfig

VERSION = "1"
DEFAULT_PATTERNS = {"vqa_json": "COCO_{data_subtype}_{image_id:012d}.jpg", "textvqa_json": "{image_id}.jpg",
                    "vizwiz_json": "{image}"}
KEYS = {
    "vqa_json": {"root", "questions", "annotations", "images", "image_pattern", "answer_field"},
    "textvqa_json": {"root", "annotations", "images", "image_pattern"},
    "vizwiz_json": {"root", "annotations", "images", "image_pattern"},
}
REQUIRED = {"vqa_json": ("questions", "images"), "textvqa_json": ("annotations", "images"),
            "vizwiz_json": ("annotations", "images")}
#: Largest JSON file read (VQAv2 train annotations are about 330 MB).
MAX_JSON_BYTES = 2 << 30


# -- config -------------------------------------------------------------------------------------
def _paths(config: Mapping[str, Any], builder: str) -> dict[str, Path]:
    return builder_paths(config, builder, KEYS[builder], REQUIRED[builder], files=("questions", "annotations"),
                         folders=("images",))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _entries(doc: Any, key: str | None, what: str, path: Path) -> list[dict[str, Any]]:
    """The list of objects under ``key`` (or the document itself when ``key`` is None)."""
    entries = doc if key is None else (doc.get(key) if isinstance(doc, dict) else None)
    shape = "a JSON list" if key is None else f"a JSON object with a list {key!r}"
    if not isinstance(entries, list):
        raise DataError(f"{what} {str(path)!r} is not {shape}")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DataError(f"{what} {str(path)!r}: entry {i} is {type(entry).__name__}, not an object")
    return entries


def _field(entry: dict[str, Any], name: str, check: Callable[[Any], bool], kind: str, what: str, path: Path,
           label: str) -> Any:
    value = entry.get(name)
    if not check(value):
        raise DataError(f"{what} {str(path)!r}: {label}: {name!r} must be {kind}, got {value!r}")
    return value


def _answers(entry: dict[str, Any], field: str, what: str, path: Path, label: str) -> list[str]:
    raw = entry.get("answers")
    if not isinstance(raw, list):
        raise DataError(f"{what} {str(path)!r}: {label}: 'answers' must be a list, got {raw!r}")
    out = []
    for answer in raw:
        value = answer.get(field) if isinstance(answer, dict) else answer
        if not isinstance(value, str):
            raise DataError(f"{what} {str(path)!r}: {label}: every answer must be a string "
                            f"(field {field!r}), got {answer!r}")
        out.append(value)
    return out


# -- images and identity ------------------------------------------------------------------------
def _image_names(rows: list[dict[str, Any]], pattern: str, fields: Mapping[str, Any], where: str) -> list[str]:
    names = []
    for row in rows:
        try:
            name = pattern.format(**fields, **row)
        except (KeyError, IndexError, ValueError) as exc:
            raise DataError(f"{where}: config.image_pattern {pattern!r} cannot be filled for question "
                            f"{row.get('question_id')}: {type(exc).__name__}: {exc} (fields: "
                            f"{', '.join(sorted({*fields, *row}))})") from None
        if not name or Path(name).is_absolute() or ".." in Path(name).parts:
            raise DataError(f"{where}: config.image_pattern {pattern!r} gives {name!r}, not a file name in the folder")
        names.append(name)
    return names


def _dataset(builder: str, columns: dict[str, list[Any]], image_paths: list[Path], sources: list[Path],
             pattern: str, split: str, execution: ExecutionConfig | None) -> datasets.Dataset:
    import datasets

    digests = FileDigests(execution)
    identity = hashlib.sha256(json.dumps({"builder": builder, "version": VERSION, "pattern": pattern},
                                         sort_keys=True).encode())
    for source in sources:
        identity.update(f"file {source.name} {digests(source)}\n".encode())
    for path in image_paths:
        identity.update(f"image {path.name} {digests(path)}\n".encode())
    digests.save()
    feats: dict[str, Any] = {"id": datasets.Value("string"), "image": datasets.Image(),
                             "image_id": datasets.Value("string") if builder != "vqa_json" else datasets.Value("int64"),
                             "question_id": datasets.Value("int64"), "question": datasets.Value("string")}
    if "answers" in columns:
        feats["answers"] = datasets.List(datasets.Value("string"))
    for name in ("answer_type", "question_type", "multiple_choice_answer"):
        if name in columns:
            feats[name] = datasets.Value("string")
    features = datasets.Features(feats)
    columns = {"id": [str(q) for q in columns["question_id"]],
               "image": [{"path": str(p), "bytes": None} for p in image_paths], **columns}
    data = datasets.Dataset.from_dict({name: columns[name] for name in features}, features=features, split=split)
    data._fingerprint = identity.hexdigest()[:32]
    return data


def _check_unique(ids: list[int], what: str, path: Path) -> None:
    seen: set[int] = set()
    for question in ids:
        if question in seen:
            raise DataError(f"{what} {str(path)!r}: question id {question} appears more than once")
        seen.add(question)


# -- the builders -------------------------------------------------------------------------------
def build_vqa_json(config: Mapping[str, Any] | None, split: str,
                   execution: ExecutionConfig | None = None) -> datasets.Dataset:
    """Builder ``vqa_json`` (see the module docstring). Config: ``questions`` (required),
    ``annotations`` (optional), ``images`` (required), ``image_pattern`` (default
    ``COCO_{data_subtype}_{image_id:012d}.jpg``; fields: the question's keys and ``data_subtype``),
    ``answer_field`` (``answer``, or ``raw_answer`` for OK-VQA's unstemmed answers), ``root``."""
    config = dict(config or {})
    where = "dataset builder 'vqa_json'"
    paths = _paths(config, "vqa_json")
    pattern = config.get("image_pattern", DEFAULT_PATTERNS["vqa_json"])
    field = config.get("answer_field", "answer")
    if not isinstance(pattern, str) or not pattern or field not in ("answer", "raw_answer"):
        raise DataError(f"{where}: config.image_pattern must be a non-empty string and config.answer_field "
                        f"'answer' or 'raw_answer' (got {pattern!r}, {field!r})")
    qpath = paths["questions"]
    qdoc = builder_json(qpath, "questions file", MAX_JSON_BYTES)
    questions = _entries(qdoc, "questions", "questions file", qpath)
    if not questions:
        raise DataError(f"questions file {str(qpath)!r} has no questions")
    rows = []
    for i, entry in enumerate(questions):
        label = f"entry {i}"
        rows.append({"question_id": _field(entry, "question_id", _is_int, "an integer", "questions file", qpath, label),
                     "image_id": _field(entry, "image_id", _is_int, "an integer", "questions file", qpath, label),
                     "question": _field(entry, "question", lambda v: isinstance(v, str), "a string",
                                        "questions file", qpath, label)})
    ids = [row["question_id"] for row in rows]
    _check_unique(ids, "questions file", qpath)
    columns: dict[str, list[Any]] = {"question_id": ids, "image_id": [r["image_id"] for r in rows],
                                     "question": [r["question"] for r in rows]}
    sources = [qpath]
    if "annotations" in paths:
        apath = paths["annotations"]
        sources.append(apath)
        annotations = _entries(builder_json(apath, "annotations file", MAX_JSON_BYTES), "annotations",
                               "annotations file", apath)
        by_id: dict[int, dict[str, Any]] = {}
        for i, entry in enumerate(annotations):
            question = _field(entry, "question_id", _is_int, "an integer", "annotations file", apath, f"entry {i}")
            if question in by_id:
                raise DataError(f"annotations file {str(apath)!r}: question id {question} is annotated more than once")
            by_id[question] = entry
        uncovered = [q for q in ids if q not in by_id]
        if uncovered:
            raise DataError(f"annotations file {str(apath)!r} covers {len(ids) - len(uncovered)} of {len(ids)} "
                            f"questions of {str(qpath)!r} (first without annotation: question {uncovered[0]})")
        extra = sorted(set(by_id) - set(ids))
        if extra:
            raise DataError(f"annotations file {str(apath)!r} annotates {len(extra)} question(s) that "
                            f"{str(qpath)!r} does not have (first: question {extra[0]}); use the matching files")
        for name in ("answers", "answer_type", "question_type"):
            columns[name] = []
        optional = ["multiple_choice_answer"] if all("multiple_choice_answer" in e for e in by_id.values()) else []
        for name in optional:
            columns[name] = []
        for row in rows:
            entry, label = by_id[row["question_id"]], f"question {row['question_id']}"
            if entry.get("image_id", row["image_id"]) != row["image_id"]:
                raise DataError(f"annotations file {str(apath)!r}: {label} is about image {entry.get('image_id')}, "
                                f"the questions file says image {row['image_id']}")
            columns["answers"].append(_answers(entry, field, "annotations file", apath, label))
            for name in ("answer_type", "question_type", *optional):
                columns[name].append(_field(entry, name, lambda v: isinstance(v, str), "a string",
                                            "annotations file", apath, label))
    subtype = qdoc.get("data_subtype")
    fields = {"data_subtype": subtype} if isinstance(subtype, str) else {}
    names = _image_names(rows, pattern, fields, where)
    images = builder_images(paths["images"], names, [f"question {q}" for q in ids], where, "questions")
    return _dataset("vqa_json", columns, images, sources, pattern, split, execution)


def _all_or_none_answered(entries: list[Any], what: str, path: Path) -> bool:
    """Whether the questions of a file with one entry per question have answers: all of them or none
    (one-line DataError otherwise, and for a file without questions)."""
    if not entries:
        raise DataError(f"{what} {str(path)!r} has no questions")
    with_answers = sum("answers" in e for e in entries)
    if with_answers not in (0, len(entries)):
        raise DataError(f"{what} {str(path)!r}: {with_answers} of {len(entries)} questions have answers; "
                        "all or none must")
    return bool(with_answers)


def build_textvqa_json(config: Mapping[str, Any] | None, split: str,
                       execution: ExecutionConfig | None = None) -> datasets.Dataset:
    """Builder ``textvqa_json``: TextVQA's ``TextVQA_0.5.1_{train,val,test}.json`` (``annotations``)
    and its image folder (``images``; ``image_pattern`` default ``{image_id}.jpg``)."""
    config = dict(config or {})
    where = "dataset builder 'textvqa_json'"
    paths = _paths(config, "textvqa_json")
    pattern = config.get("image_pattern", DEFAULT_PATTERNS["textvqa_json"])
    apath = paths["annotations"]
    entries = _entries(builder_json(apath, "TextVQA file", MAX_JSON_BYTES), "data", "TextVQA file", apath)
    with_answers = _all_or_none_answered(entries, "TextVQA file", apath)
    rows, columns = [], {"question_id": [], "image_id": [], "question": []}
    if with_answers:
        columns["answers"] = []
    for i, entry in enumerate(entries):
        label = f"entry {i}"
        row = {"question_id": _field(entry, "question_id", _is_int, "an integer", "TextVQA file", apath, label),
               "image_id": _field(entry, "image_id", lambda v: isinstance(v, str) and v != "", "a non-empty string",
                                  "TextVQA file", apath, label),
               "question": _field(entry, "question", lambda v: isinstance(v, str), "a string", "TextVQA file",
                                  apath, label)}
        rows.append(row)
        for key in ("question_id", "image_id", "question"):
            columns[key].append(row[key])
        if with_answers:
            columns["answers"].append(_answers(entry, "answer", "TextVQA file", apath, label))
    _check_unique(columns["question_id"], "TextVQA file", apath)
    images = builder_images(paths["images"], _image_names(rows, pattern, {}, where),
                            [f"question {q}" for q in columns["question_id"]], where, "questions")
    return _dataset("textvqa_json", columns, images, [apath], pattern, split, execution)


def build_vizwiz_json(config: Mapping[str, Any] | None, split: str,
                      execution: ExecutionConfig | None = None) -> datasets.Dataset:
    """Builder ``vizwiz_json``: VizWiz-VQA's ``{train,val,test}.json`` (``annotations``) and its image
    folder (``images``; ``image_pattern`` default ``{image}``, the file's own image name). A
    question's id is its position in the file."""
    config = dict(config or {})
    where = "dataset builder 'vizwiz_json'"
    paths = _paths(config, "vizwiz_json")
    pattern = config.get("image_pattern", DEFAULT_PATTERNS["vizwiz_json"])
    apath = paths["annotations"]
    entries = _entries(builder_json(apath, "VizWiz file", MAX_JSON_BYTES), None, "VizWiz file", apath)
    with_answers = _all_or_none_answered(entries, "VizWiz file", apath)
    rows, columns = [], {"question_id": [], "image_id": [], "question": []}
    if with_answers:
        columns["answers"], columns["answer_type"] = [], []
    for i, entry in enumerate(entries):
        label = f"entry {i}"
        image = _field(entry, "image", lambda v: isinstance(v, str) and v != "", "a non-empty string",
                       "VizWiz file", apath, label)
        question = _field(entry, "question", lambda v: isinstance(v, str), "a string", "VizWiz file", apath, label)
        rows.append({"question_id": i, "image": image})
        columns["question_id"].append(i)
        columns["image_id"].append(image)
        columns["question"].append(question)
        if with_answers:
            columns["answers"].append(_answers(entry, "answer", "VizWiz file", apath, label))
            columns["answer_type"].append(_field(entry, "answer_type", lambda v: isinstance(v, str), "a string",
                                                 "VizWiz file", apath, label))
    images = builder_images(paths["images"], _image_names(rows, pattern, {}, where),
                            [f"question {q}" for q in columns["question_id"]], where, "questions")
    return _dataset("vizwiz_json", columns, images, [apath], pattern, split, execution)
