"""Answer normalisation of the VQA evaluators, ported rule for rule (quirks included).

Two processors exist in the wild, and the VQA accuracy modes (:mod:`harness_vqa.metric`) combine
them differently:

- the official GT-Vision-Lab ``vqaEval.py`` (``processPunctuation`` then ``processDigitArticle``),
  ported here as :func:`process_punctuation` and :func:`process_digit_article`;
- the EvalAI / MMF ``EvalAIAnswerProcessor`` (:func:`evalai_process`): lower-case, drop ``,`` and
  ``?``, split ``'s``, then the same two steps (with its own digit-comma regex, which never fires
  because commas are already gone).

Quirks kept on purpose, because scores depend on them:

- ``PERIOD_STRIP`` is ``(?!<=\\d)(\\.)(?!\\d)``: the author meant a look-behind ``(?<!\\d)`` but wrote a
  look-ahead for the text ``<=digit``, which never matches at a period; so it deletes every period
  *not followed by a digit* (``2.5`` keeps its period, ``2.`` and ``a.b`` lose theirs).
- The official code calls ``periodStrip.sub("", text, re.UNICODE)``: the flag lands in the ``count``
  argument, so at most ``re.UNICODE == 32`` periods are deleted.
- Punctuation: if the text contains ``p + " "`` or ``" " + p``, *or any digit-comma-digit anywhere*
  (``1,000``), the mark ``p`` is deleted everywhere; otherwise it becomes a space. The conditions
  look at the text as it was before any mark was processed.
- The number map sends ``none`` to ``0`` (GT-Vision-Lab/VQA issue #7) and only maps ``zero`` ...
  ``ten``; ``eleven`` stays a word.
- The contractions table has the odd entry ``"somebody'd": "somebodyd"`` (it *removes* an
  apostrophe) and capitalised keys (``Im``, ``Ive``, ``Id've``, ``I'dve``) that can never match,
  because the words are lower-cased first.

Everything here is a pure function of its input (the official code mutates ``manualMap`` through
``setdefault``; the mapping is unchanged in effect, and here it is never mutated).
"""

from __future__ import annotations

import re
from functools import lru_cache

#: The official evaluator's ``self.contractions`` (GT-Vision-Lab/VQA a013f00, and identical in
#: MMF's EvalAIAnswerProcessor.CONTRACTIONS), entry for entry, odd ones included.
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's",
    "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll",
    "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've",
    "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
    "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll",
    "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}
#: ``manualMap``: number words to digits; ``none`` is 0.
NUMBER_MAP: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES: tuple[str, ...] = ("a", "an", "the")
#: Deletes periods not followed by a digit (the intended look-behind is mis-written; see above).
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
#: The official digit-comma-digit test: anywhere in the text, it makes every mark deleted, not spaced.
COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
#: MMF's version of the test (commas between digits, look-arounds); never fires after its tokenizer.
EVALAI_COMMA_STRIP = re.compile(r"(?<=\d)(\,)+(?=\d)")
#: The marks ``processPunctuation`` handles, in the official order (the period is handled after).
PUNCTUATION: tuple[str, ...] = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
                                "@", "`", ",", "?", "!")
#: The ``count`` the official code passes by mistake (``re.UNICODE`` as a positional argument).
PERIOD_STRIP_COUNT = int(re.UNICODE)  # 32


def strip_whitespace(text: str) -> str:
    """``\\n`` and ``\\t`` to spaces, then ``strip()`` (the first step of every evaluator)."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def _punctuation(text: str, comma_strip: re.Pattern[str]) -> str:
    out = text
    digit_comma = comma_strip.search(text) is not None
    for mark in PUNCTUATION:
        if (mark + " " in text or " " + mark in text) or digit_comma:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return PERIOD_STRIP.sub("", out, count=PERIOD_STRIP_COUNT)


@lru_cache(maxsize=1 << 16)
def process_punctuation(text: str) -> str:
    """The official ``processPunctuation`` (see the module docstring)."""
    return _punctuation(text, COMMA_STRIP)


@lru_cache(maxsize=1 << 16)
def process_digit_article(text: str) -> str:
    """The official ``processDigitArticle``: lower-case, split on whitespace, number words to digits,
    drop articles, expand contractions, join with single spaces."""
    words = [NUMBER_MAP.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in ARTICLES]
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def official_process(text: str) -> str:
    """``processPunctuation`` then ``processDigitArticle``."""
    return process_digit_article(process_punctuation(text))


@lru_cache(maxsize=1 << 16)
def evalai_process(text: str) -> str:
    """MMF's ``EvalAIAnswerProcessor.__call__``: ``word_tokenize`` (lower-case; delete ``,`` and ``?``;
    ``'s`` -> `` 's``; strip), ``\\n``/``\\t`` to spaces and strip, its ``process_punctuation`` (the
    official one with the look-around digit-comma regex), then ``process_digit_article``."""
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = strip_whitespace(text)
    return process_digit_article(_punctuation(text, EVALAI_COMMA_STRIP))
