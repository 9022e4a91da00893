"""Reading a count or a yes/no out of a generated answer: GVT's post-processing, and two parsers.

The first sentence (:func:`first_sentence`, GVT's ``postprocess`` in ``modeling_gvt.py`` at
TencentARC/GVT@fead7e3, bit for bit): periods become `` . ``, newlines are deleted, the text is split
on single spaces, empty pieces dropped, one leading ``.`` dropped, everything from the first ``.`` on
dropped, and ``"."`` appended; an answer with nothing but whitespace becomes ``""``. So ``"2.5"`` ->
``"2."``, ``"Three. Maybe four"`` -> ``"Three."``, ``"3\\ndogs"`` -> ``"3dogs."``.

Counts, two modes (each its own metric name, so ``harness rescore --metric`` switches them):

``strict`` (default; :func:`count_strict`)
    Case-insensitive. The first *whole word* that is a number word from zero to twenty, ``no`` or
    ``none`` (both 0), or a run of digits (``1,000`` is 1000) gives the count. A decimal (``2.5``)
    or a digit run glued to letters (``3rd``, ``x2``) is not a count and is skipped; so are words
    that merely contain a number word (``someone``, ``weight``, ``twenty-one``). No count: ``None``
    (scored as wrong; left out of MAE and RMSE, and counted by ``count_answered``).

``gvt_compat`` (:func:`count_gvt`; GVT's ``count.py::extract_digit`` bit for bit)
    Case-sensitive plain substring replacement, in dictionary order, of ``none``->0, ``one``->1, ...,
    ``eight``->8, and ``nive``->9 (a typo in the reference: ``nine`` is never mapped; words from ten
    on are not in it, though ``seventeen`` becomes ``7teen``), then the first run of digits
    (``\\d+``), else 0. So ``someone`` -> 1, ``weight`` -> 8, ``Nine`` -> 0, ``nine`` -> 0,
    ``twelve`` -> 0, ``2.5`` -> 2, ``""`` -> 0.

Yes/no, two modes:

``strict`` (:func:`yesno_strict`)
    The answer's first word, lower-cased and stripped of punctuation: ``yes`` or ``no``, else
    ``None`` (wrong). The target is read the same way.

``gvt_compat`` (:func:`yesno_gvt_correct`; GVT's ``multiclass.py``)
    Correct iff (``"Yes"`` in the target and ``"yes"`` in the lower-cased answer) or (``"No"`` in the
    target and ``"no"`` in the lower-cased answer): substrings, so ``not``, ``know``, ``snow``,
    ``nothing`` and ``none`` say no, and an answer with both ``yes`` and ``no`` is always right.
"""

from __future__ import annotations

import re
from functools import lru_cache

#: GVT's number dictionary, in its order (``count.py``; the "nive" typo is the reference's).
GVT_WORDS: tuple[tuple[str, int], ...] = (
    ("none", 0), ("one", 1), ("two", 2), ("three", 3), ("four", 4), ("five", 5), ("six", 6), ("seven", 7),
    ("eight", 8), ("nive", 9),
)
NUMBER_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
)
STRICT_WORDS: dict[str, int] = {**{word: i for i, word in enumerate(NUMBER_WORDS)}, "no": 0, "none": 0}
#: A token: a word of letters (apostrophes and inner hyphens kept, so ``twenty-one`` is one word and
#: not 20), or a number with its digit groups, decimals and letters glued on (``2.5``, ``1,000``, ``3rd``).
_TOKEN = re.compile(r"\w*\d\w*(?:[.,]\d+)*|[^\W\d_]+(?:['’-][^\W\d_]+)*")
_DIGITS = re.compile(r"\d{1,3}(?:,\d{3})+|\d+")
_GVT_DIGITS = re.compile(r"\d+")
_CACHE = 1 << 16


def first_sentence(text: str) -> str:
    """GVT's ``postprocess`` of one answer (see the module docstring)."""
    text = text.replace(".", " . ").replace("\n", "")
    words = [w for w in text.strip().split(" ") if w]
    if not words:
        return ""
    if words[0] == ".":
        words = words[1:]
    if "." in words:
        words = words[:words.index(".")]
    return " ".join(words) + "."


@lru_cache(maxsize=_CACHE)
def count_strict(text: str) -> int | None:
    """The count an answer states, read strictly (see the module docstring); None if it states none."""
    for token in _TOKEN.findall(text.lower()):
        if token in STRICT_WORDS:
            return STRICT_WORDS[token]
        if _DIGITS.fullmatch(token):
            return int(token.replace(",", ""))
    return None


@lru_cache(maxsize=_CACHE)
def count_gvt(text: str) -> int:
    """GVT's ``extract_digit`` (see the module docstring): never None, 0 when no digit is left."""
    for word, value in GVT_WORDS:
        text = text.replace(word, str(value))
    found = _GVT_DIGITS.findall(text)
    return int(found[0]) if found else 0


def yesno_strict(text: str) -> str | None:
    """``"yes"`` or ``"no"`` from the first word (punctuation stripped, any case); else None."""
    words = text.split()
    if not words:
        return None
    word = re.sub(r"[^\w]", "", words[0].lower())
    return word if word in ("yes", "no") else None


def yesno_gvt_correct(prediction: str, target: str) -> bool:
    """GVT's ``multiclass.py`` test (see the module docstring); ``target`` as written (``"Yes."``)."""
    lowered = prediction.lower()
    return ("Yes" in target and "yes" in lowered) or ("No" in target and "no" in lowered)


def count_bin(count: int) -> str:
    """GVT's bins by ground-truth count (``gt // 3``): ``0-2``, ``3-5``, ``6-8``, ..."""
    low = (int(count) // 3) * 3
    return f"{low}-{low + 2}"


def objects_bin(n_objects: int) -> str:
    """GVT's identification bins by objects in the image: ``<10``, ``10-19``, ``>=20``; ``unknown`` when
    the data does not say (a negative number)."""
    if n_objects < 0:
        return "unknown"
    return "<10" if n_objects < 10 else "10-19" if n_objects < 20 else ">=20"
