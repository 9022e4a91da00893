"""VQA accuracy: per question, the mean over the leave-one-out subsets of the human answers of
``min(1, matches among the other answers / 3)``; four normalisation modes, each its own metric name.

For a question with answers ``a_1 .. a_n`` (10 in VQAv2, VizWiz and TextVQA; OK-VQA's 5 each given
twice) and prediction ``r``::

    acc = (1/n) * sum_i min(1, #{j != i : match(a_j, r)} / 3)

The answer left out is left out *by position* (the official code compares answer dicts, which
differ by ``answer_id``; a copy without ids must not drop every equal answer at once).

Modes (what is normalised, and when):

``official``  (metric ``vqa_accuracy``; GT-Vision-Lab ``vqaEval.py`` since a013f00, 2021-03-11)
    ``\\n``/``\\t`` to spaces and strip, both sides. Then, *only if the stripped answers are not all
    identical*, ``processPunctuation`` + ``processDigitArticle`` on every answer and on the
    prediction. When they agree nothing else happens: an exact, case-sensitive match.
``evalai``  (metric ``vqa_accuracy_evalai``; the EvalAI server / MMF / lmms-eval OK-VQA / TextVQA)
    The EvalAI processor on every answer and on the prediction, always.
``legacy``  (metric ``vqa_accuracy_legacy``; the official file before 2021, LAVIS and its copies)
    The prediction: strip, ``processPunctuation`` + ``processDigitArticle``, always. The answers:
    nothing, unless they are not all identical: then ``processPunctuation`` only (no lower-casing,
    no number words, no articles).
``gvt_substring``  (metric ``vqa_accuracy_gvt``; TencentARC/GVT, only to reproduce GVT)
    ``legacy`` normalisation, and an answer matches when ``answer.lower() in prediction.lower()``
    (substring containment: lenient, inflates scores).

Every function is pure: the inputs are never changed.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .normalize import evalai_process, official_process, process_punctuation, strip_whitespace

MODES: tuple[str, ...] = ("official", "evalai", "legacy", "gvt_substring")


def _normalised(mode: str, prediction: str, answers: Sequence[str]) -> tuple[str, list[str]]:
    if mode == "official":
        prediction, answers = strip_whitespace(prediction), [strip_whitespace(a) for a in answers]
        if len(set(answers)) > 1:
            prediction, answers = official_process(prediction), [official_process(a) for a in answers]
        return prediction, answers
    if mode == "evalai":
        return evalai_process(prediction), [evalai_process(a) for a in answers]
    if mode in ("legacy", "gvt_substring"):
        prediction = official_process(strip_whitespace(prediction))
        answers = list(answers)
        if len(set(answers)) > 1:
            answers = [process_punctuation(a) for a in answers]
        return prediction, answers
    raise ValueError(f"unknown VQA accuracy mode {mode!r} (modes: {', '.join(MODES)})")


def _matcher(mode: str) -> Callable[[str, str], bool]:
    if mode == "gvt_substring":
        return lambda answer, prediction: answer.lower() in prediction.lower()
    return lambda answer, prediction: answer == prediction


def question_accuracy(prediction: str, answers: Sequence[str], mode: str = "official") -> float:
    """The VQA accuracy of one prediction against its human answers (see the module docstring).
    An empty answer list is a ``ValueError``."""
    if isinstance(answers, str) or len(answers) == 0:
        raise ValueError("VQA accuracy needs a non-empty list of human answers per question")
    if not isinstance(prediction, str) or not all(isinstance(a, str) for a in answers):
        raise ValueError("VQA accuracy compares strings: the prediction and every answer must be str")
    prediction, normalised = _normalised(mode, prediction, answers)
    match = _matcher(mode)
    hits = [match(answer, prediction) for answer in normalised]
    total = sum(hits)
    n = len(hits)
    return sum(min(1.0, (total - hit) / 3.0) for hit in hits) / n


def accuracy(predictions: Any, answers: Any, mode: str = "official") -> np.ndarray | None:
    """Per-question accuracies ``(N,)`` in ``mode``; None (undefined) when no question has answers
    (``answers`` all None: a test split without annotations). Some questions with answers and
    some without is a ``ValueError``."""
    predictions, answers = list(predictions), list(answers)
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} answer lists")
    missing = sum(a is None for a in answers)
    if answers and missing == len(answers):
        return None
    if missing:
        raise ValueError(f"{missing} of {len(answers)} questions have no answers (None) and the others do")
    return np.array([question_accuracy(p, list(a), mode) for p, a in zip(predictions, answers)],
                    dtype=np.float64)


def vqa_accuracy(predictions: Any, answers: Any) -> np.ndarray | None:
    """Metric ``vqa_accuracy``: mode ``official``."""
    return accuracy(predictions, answers, "official")


def vqa_accuracy_evalai(predictions: Any, answers: Any) -> np.ndarray | None:
    """Metric ``vqa_accuracy_evalai``: mode ``evalai``."""
    return accuracy(predictions, answers, "evalai")


def vqa_accuracy_legacy(predictions: Any, answers: Any) -> np.ndarray | None:
    """Metric ``vqa_accuracy_legacy``: mode ``legacy``."""
    return accuracy(predictions, answers, "legacy")


def vqa_accuracy_gvt(predictions: Any, answers: Any) -> np.ndarray | None:
    """Metric ``vqa_accuracy_gvt``: mode ``gvt_substring``."""
    return accuracy(predictions, answers, "gvt_substring")
