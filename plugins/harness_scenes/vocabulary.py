"""The words of the scenes: shape, colour and background vocabularies, number words, plurals.

Every class name is a plain English word, so text encoders can be prompted with it
directly. The orders below are the default class orders (ClassLabel indices).
"""

from __future__ import annotations

#: Shape names, in default class order.
SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "diamond", "pentagon", "hexagon", "star", "cross", "heart",
)

#: Object colour names -> RGB. Far apart (RGB distance >= 80) and far from every background.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 35),
    "green": (35, 160, 55),
    "blue": (35, 70, 215),
    "yellow": (245, 215, 30),
    "purple": (125, 45, 170),
    "orange": (245, 125, 20),
    "white": (248, 248, 248),
    "black": (18, 18, 18),
    "pink": (245, 135, 190),
    "brown": (120, 70, 30),
}

#: Background names -> (texture, first tone, second tone). Muted tones no object colour uses.
BACKGROUNDS: dict[str, tuple[str, tuple[int, int, int], tuple[int, int, int]]] = {
    "grey": ("plain", (128, 128, 128), (128, 128, 128)),
    "light grey": ("plain", (182, 182, 182), (182, 182, 182)),
    "dark grey": ("plain", (72, 72, 72), (72, 72, 72)),
    "beige": ("plain", (200, 186, 158), (200, 186, 158)),
    "striped grey": ("stripes", (112, 112, 112), (150, 150, 150)),
    "checkered grey": ("checker", (110, 110, 110), (146, 146, 146)),
}

NUMBER_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
)

#: The most objects a scene may hold (every count has a number word).
MAX_OBJECTS = len(NUMBER_WORDS) - 1


def plural(noun: str) -> str:
    """``cross`` -> ``crosses``, ``circle`` -> ``circles``."""
    return noun + ("es" if noun.endswith(("s", "x", "sh", "ch")) else "s")


def article(word: str) -> str:
    """The indefinite article before ``word``: ``an orange``, ``a red``."""
    return "an" if word[:1] in "aeiou" else "a"


def quantity(count: int, color: str, shape: str) -> str:
    """``a red circle``, ``an orange star``, ``three blue crosses``."""
    if count == 1:
        return f"{article(color)} {color} {shape}"
    return f"{NUMBER_WORDS[count]} {color} {plural(shape)}"


def join(phrases: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]
