"""Paired training data for ShareLock heads: (image feature, caption feature) rows, and class splits.

ViTeRB trains only on captions that never name an unseen class: a row is dropped when its
caption contains any unseen class name as a whole word (case-insensitive; multi-word names
match as phrases), so the language model alone must carry what those words mean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from harness import DataError

if TYPE_CHECKING:
    from harness import TrainData, TrainModel


def word_pattern(words: Sequence[str]) -> re.Pattern[str]:
    """Whole-word, case-insensitive alternation of ``words`` (longest first; spaces match any whitespace)."""
    parts = [r"\s+".join(re.escape(piece) for piece in word.split()) for word in sorted(words, key=len, reverse=True)]
    return re.compile(r"(?<![\w-])(?:" + "|".join(parts) + r")(?![\w-])", re.IGNORECASE)


def clean_rows(captions: Sequence[str], unseen: Sequence[str]) -> np.ndarray:
    """Indices of captions that mention no word of ``unseen``."""
    pattern = word_pattern(unseen)
    return np.asarray([i for i, caption in enumerate(captions) if not pattern.search(caption)], dtype=np.int64)


@dataclass(frozen=True)
class ClassSplit:
    """Class names split into seen and unseen, with each side's indices into ``names``."""

    names: tuple[str, ...]
    unseen: tuple[str, ...]

    @classmethod
    def of(cls, names: Sequence[str], unseen: Sequence[str], where: str) -> ClassSplit:
        """Check ``unseen`` against ``names``: known, distinct, and leaving at least one seen class."""
        unknown = [u for u in unseen if u not in names]
        if unknown:
            raise DataError(f"{where}: unseen classes {unknown} are not class names of the label column {list(names)}")
        if len(set(unseen)) != len(unseen) or len(unseen) >= len(names):
            raise DataError(f"{where}: unseen classes must be distinct and leave at least one seen class")
        return cls(tuple(names), tuple(unseen))

    @property
    def seen(self) -> tuple[str, ...]:
        """Seen class names, in label order."""
        return tuple(n for n in self.names if n not in self.unseen)

    def select(self, labels: np.ndarray, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(rows whose label is in ``classes``, their labels re-indexed into ``classes``)."""
        index = {self.names.index(c): i for i, c in enumerate(classes)}
        rows = np.asarray([i for i, label in enumerate(labels) if int(label) in index], dtype=np.int64)
        return rows, np.asarray([index[int(labels[i])] for i in rows], dtype=np.int64)


def unique_texts(features: Any, texts: Sequence[str]) -> np.ndarray:
    """Embed each distinct text once (captions repeat) with ``features.texts`` (a task context, a
    model of one, or a trainer's frozen model), returned in the order of ``texts``."""
    distinct = list(dict.fromkeys(texts))
    embedded = np.asarray(features.texts(distinct), dtype=np.float32)
    where = {text: i for i, text in enumerate(distinct)}
    return embedded[[where[t] for t in texts]] if len(texts) else embedded


def pair_features(data: TrainData, image_column: str, text_column: str, vision: TrainModel, language: TrainModel,
                  where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(N, Dv)`` image and ``(N, Dl)`` caption features of ``data``'s rows (two frozen models of a
    trainer's context; captions embedded once each)."""
    columns = data.rows.column_names
    for column in (image_column, text_column):
        if column not in columns:
            raise DataError(f"{where}: no column {column!r}; columns are {columns}")
    captions = [str(c) for c in data.rows[text_column]]
    if not captions:
        raise DataError(f"{where}: no pairs to train on")
    images = np.asarray(vision.images(data, image_column), dtype=np.float32)
    return images, unique_texts(language, captions)
